// The two wireguard-go builds the project compares against, for the bench and for tests:
//  - Debian's (/usr/bin/wireguard-go from the wireguard-go package, installed by install-deps.sh), and
//  - the latest module, golang.zx2c4.com/wireguard at the version pinned in deploy/local/wireguard-go/go.mod
//    (a `tool` requirement, with its go.sum committed), built from the Go module proxy with the machine's Go
//    into deploy/local/wireguard-go/bin/ (gitignored), once per pinned version: later calls reuse the binary.
// Neither is ever a failure: where a binary is missing or cannot be built, the caller gets the reason.
// To move the pin: `cd deploy/local/wireguard-go && go get -tool golang.zx2c4.com/wireguard@latest && go mod tidy`.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const WIREGUARD_GO_MODULE = 'golang.zx2c4.com/wireguard';
export const DEBIAN_WIREGUARD_GO = '/usr/bin/wireguard-go';
/** A build that takes longer than this is given up (it takes ~15 s on 2 cores with a warm module cache). */
const BUILD_TIMEOUT_MS = 10 * 60_000;

export type WireguardGoBinary =
  | { readonly ok: true; readonly bin: string; readonly version: string }
  | { readonly ok: false; readonly reason: string };

/** deploy/local/wireguard-go, found from this file both under tsx (deploy/local) and compiled (dist/deploy/local). */
export function wireguardGoModuleDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return join(dir, 'deploy', 'local', 'wireguard-go');
}

/** The version of golang.zx2c4.com/wireguard required by a go.mod's text; undefined if it has none. */
export function pinnedVersionIn(goMod: string): string | undefined {
  const escaped = WIREGUARD_GO_MODULE.replace(/\./g, '\\.');
  return new RegExp(`^\\s*(?:require\\s+)?${escaped}\\s+(v[0-9][^\\s/]*)`, 'm').exec(goMod)?.[1];
}

/** Where the build of `version` goes: one file per version, so moving the pin rebuilds. */
export function latestBinaryPath(version: string, moduleDir = wireguardGoModuleDir()): string {
  return join(moduleDir, 'bin', `wireguard-go-${version}`);
}

/** Debian's wireguard-go (the version install-deps.sh installs), or why it is not there. */
export function debianWireguardGo(): WireguardGoBinary {
  if (!existsSync(DEBIAN_WIREGUARD_GO)) {
    return { ok: false, reason: `${DEBIAN_WIREGUARD_GO} is missing: apt-get install wireguard-go (deploy/local/install-deps.sh)` };
  }
  return { ok: true, bin: DEBIAN_WIREGUARD_GO, version: 'debian' };
}

let building: Promise<WireguardGoBinary> | undefined;

/** The pinned latest wireguard-go: the cached binary, or built now with `go build`; or why not (no Go, no
 * network to the module proxy, a Go too old for the module). Concurrent calls share one build. */
export function buildLatestWireguardGo(): Promise<WireguardGoBinary> {
  building ??= build().finally(() => { building = undefined; });
  return building;
}

async function build(): Promise<WireguardGoBinary> {
  const moduleDir = wireguardGoModuleDir();
  let goMod: string;
  try {
    goMod = readFileSync(join(moduleDir, 'go.mod'), 'utf8');
  } catch {
    return { ok: false, reason: `${join(moduleDir, 'go.mod')} is missing` };
  }
  const version = pinnedVersionIn(goMod);
  if (!version) return { ok: false, reason: `${join(moduleDir, 'go.mod')} does not require ${WIREGUARD_GO_MODULE}` };
  const bin = latestBinaryPath(version, moduleDir);
  if (existsSync(bin)) return { ok: true, bin, version };

  const go = await run('go', ['env', 'GOVERSION'], moduleDir, 30_000);
  if (go.missing) return { ok: false, reason: `no Go toolchain (go not on PATH): the latest wireguard-go (${version}) is not built` };
  mkdirSync(dirname(bin), { recursive: true });
  // Into a temporary name first, so that an interrupted or concurrent build never leaves half a binary.
  const tmp = `${bin}.tmp-${process.pid}`;
  const r = await run('go', ['build', '-trimpath', '-mod=readonly', '-buildvcs=false', '-o', tmp, WIREGUARD_GO_MODULE], moduleDir, BUILD_TIMEOUT_MS);
  if (r.code !== 0 || !existsSync(tmp)) {
    rmSync(tmp, { force: true });
    const words = (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ').slice(-400);
    return { ok: false, reason: `go build ${WIREGUARD_GO_MODULE}@${version} (${go.stdout.trim() || 'go'}) failed: ${words || `exit ${r.code}`}` };
  }
  renameSync(tmp, bin);
  return { ok: true, bin, version };
}

/** The latest wireguard-go's path, building it if needed; undefined (and one line on stderr saying why) where
 * it cannot be had. */
export async function latestWireguardGo(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<string | undefined> {
  const b = await buildLatestWireguardGo();
  if (b.ok) return b.bin;
  log(`latest wireguard-go skipped: ${b.reason}`);
  return undefined;
}

interface RunResult { readonly code: number; readonly stdout: string; readonly stderr: string; readonly missing: boolean }

function run(file: string, args: readonly string[], cwd: string, timeout: number): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, timeout, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; killed?: boolean }) | null;
        const missing = e?.code === 'ENOENT';
        const code = !e ? 0 : typeof e.code === 'number' ? e.code : 1;
        resolve({ code, stdout: String(stdout), stderr: `${String(stderr)}${e?.killed ? `\n(killed after ${Math.round(timeout / 1000)} s)` : ''}`, missing });
      });
  });
}
