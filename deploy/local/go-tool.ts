// Real peers built from their published Go modules, for the tests, the bench and the local cluster.
// Each lives in a small module of ours under deploy/local/<dir>/ (go.mod naming it as a `tool`, or requiring it for a
// main package of ours beside go.mod; go.sum committed) and is built with the machine's Go, through the Go module
// proxy only, into deploy/local/<dir>/bin/ (gitignored).
// The binary's name carries a hash of go.mod and go.sum, so moving a pin rebuilds and nothing else does.
// A build is never a failure of the caller: where Go, the proxy or the build is missing, the caller gets the reason.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type GoToolBinary =
  | { readonly ok: true; readonly bin: string; readonly version: string }
  | { readonly ok: false; readonly reason: string };

export interface GoTool {
  /** The folder under deploy/local holding go.mod and go.sum. */
  readonly dir: string;
  /** The module whose main package is built (a `tool` line of that go.mod); its required version names the build. */
  readonly module: string;
  /** The package to build instead of `module`'s main, relative to the module dir (e.g. '.', a main of ours that
   * runs the module's command where the module cannot be built as a tool). */
  readonly pkg?: string;
  /** The binary's base name in bin/. */
  readonly name: string;
  /** cgo on or off (flannel's udp backend is C, so flanneld needs it). */
  readonly cgo: boolean;
  /** -ldflags for the pinned version (flannel stamps its version this way). */
  readonly ldflags?: (version: string) => string;
  /** How long a build may take; BUILD_TIMEOUT_MS unless given (kube-apiserver needs longer). */
  readonly buildTimeoutMs?: number;
}

/** A build that takes longer than this is given up (flanneld takes ~80 s on 2 cores with a warm module cache). */
const BUILD_TIMEOUT_MS = 15 * 60_000;

/** deploy/local/<dir>, found from this file both under tsx (deploy/local) and compiled (dist/deploy/local). */
export function goToolDir(dir: string): string {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'package.json')) && dirname(d) !== d) d = dirname(d);
  return join(d, 'deploy', 'local', dir);
}

/** The version of `module` required by a go.mod's text; undefined if it has none. */
export function pinnedVersionOf(goMod: string, module: string): string | undefined {
  const escaped = module.replace(/\./g, '\\.');
  return new RegExp(`^\\s*(?:require\\s+)?${escaped}\\s+(v[0-9][^\\s/]*)`, 'm').exec(goMod)?.[1];
}

/** Where the build goes: bin/<name>-<version>-<hash of go.mod and go.sum>. */
export function goToolBinaryPath(tool: GoTool, version: string, goMod: string, goSum: string): string {
  const key = createHash('sha256').update(goMod).update('\0').update(goSum).digest('hex').slice(0, 12);
  return join(goToolDir(tool.dir), 'bin', `${tool.name}-${version}-${key}`);
}

const building = new Map<string, Promise<GoToolBinary>>();

/** The cached binary, or built now with `go build`; or why not. Concurrent calls in one process share one build;
 * across processes a lock file (<binary>.lock, holding the builder's pid) makes the others wait for that build
 * (`make deps` starts the long kube-apiserver build in the background, and the tests that need it wait here). */
export function buildGoTool(tool: GoTool): Promise<GoToolBinary> {
  let p = building.get(tool.name);
  if (!p) {
    p = build(tool).finally(() => building.delete(tool.name));
    building.set(tool.name, p);
  }
  return p;
}

/** The binary's path, building it if needed; undefined (and one line on stderr saying why) where it cannot be had. */
export async function goToolOrSkip(tool: GoTool, what: string, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<string | undefined> {
  const b = await buildGoTool(tool);
  if (b.ok) return b.bin;
  log(`${what} skipped: ${b.reason}`);
  return undefined;
}

async function build(tool: GoTool): Promise<GoToolBinary> {
  const moduleDir = goToolDir(tool.dir);
  let goMod: string;
  let goSum: string;
  try {
    goMod = readFileSync(join(moduleDir, 'go.mod'), 'utf8');
    goSum = readFileSync(join(moduleDir, 'go.sum'), 'utf8');
  } catch {
    return { ok: false, reason: `${moduleDir}/go.mod or go.sum is missing` };
  }
  const version = pinnedVersionOf(goMod, tool.module);
  if (!version) return { ok: false, reason: `${join(moduleDir, 'go.mod')} does not require ${tool.module}` };
  const bin = goToolBinaryPath(tool, version, goMod, goSum);
  if (existsSync(bin)) return { ok: true, bin, version };

  const go = await run('go', ['env', 'GOVERSION'], moduleDir, 30_000, {});
  if (go.missing) return { ok: false, reason: `no Go toolchain (go not on PATH): ${tool.module}@${version} is not built` };
  mkdirSync(dirname(bin), { recursive: true });
  const lock = await takeBuildLock(bin, tool.buildTimeoutMs ?? BUILD_TIMEOUT_MS);
  if (lock === 'built') return { ok: true, bin, version };
  try {
    return await compile(tool, moduleDir, bin, version, go.stdout.trim());
  } finally {
    lock();
  }
}

/** The path `buildGoTool` builds `tool` into, when go.mod and go.sum pin it; undefined otherwise. */
export function goToolBinaryOf(tool: GoTool): string | undefined {
  try {
    const moduleDir = goToolDir(tool.dir);
    const goMod = readFileSync(join(moduleDir, 'go.mod'), 'utf8');
    const version = pinnedVersionOf(goMod, tool.module);
    return version ? goToolBinaryPath(tool, version, goMod, readFileSync(join(moduleDir, 'go.sum'), 'utf8')) : undefined;
  } catch {
    return undefined;
  }
}

/** Marks `bin` as being built by process `pid` (a builder started in the background takes it over). */
export function markBuilding(bin: string, pid: number): void {
  mkdirSync(dirname(bin), { recursive: true });
  const fd = openSync(`${bin}.lock`, 'w');
  writeSync(fd, String(pid));
  closeSync(fd);
}

/**
 * The build lock of `bin`: a release function when this process may build, or 'built' when another process built
 * it meanwhile. A lock left by a dead process (or by this one, handed over by markBuilding) is taken over.
 */
export async function takeBuildLock(bin: string, timeoutMs: number): Promise<(() => void) | 'built'> {
  const lock = `${bin}.lock`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (existsSync(bin)) return 'built';
    try {
      const fd = openSync(lock, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(lock, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number(readFileSync(lock, 'utf8').trim());
    if (holder === process.pid || !alive(holder)) {
      rmSync(lock, { force: true });
      continue;
    }
    if (Date.now() > deadline) return () => {}; // a stuck builder: build anyway (the rename is atomic)
    await sleep(2000);
  }
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function compile(tool: GoTool, moduleDir: string, bin: string, version: string, goVersion: string): Promise<GoToolBinary> {
  // Into a temporary name first, so that an interrupted or concurrent build never leaves half a binary.
  const tmp = `${bin}.tmp-${process.pid}`;
  const args = ['build', '-trimpath', '-mod=readonly', '-buildvcs=false', '-o', tmp];
  if (tool.ldflags) args.push('-ldflags', tool.ldflags(version));
  const r = await run('go', [...args, tool.pkg ?? tool.module], moduleDir, tool.buildTimeoutMs ?? BUILD_TIMEOUT_MS, { CGO_ENABLED: tool.cgo ? '1' : '0' });
  if (r.code !== 0 || !existsSync(tmp)) {
    rmSync(tmp, { force: true });
    const words = (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ').slice(-400);
    return { ok: false, reason: `go build ${tool.module}@${version} (${goVersion || 'go'}) failed: ${words || `exit ${r.code}`}` };
  }
  renameSync(tmp, bin);
  return { ok: true, bin, version };
}

interface RunResult { readonly code: number; readonly stdout: string; readonly stderr: string; readonly missing: boolean }

function run(file: string, args: readonly string[], cwd: string, timeout: number, env: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, timeout, maxBuffer: 16 << 20, env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; killed?: boolean }) | null;
        const missing = e?.code === 'ENOENT';
        const code = !e ? 0 : typeof e.code === 'number' ? e.code : 1;
        resolve({ code, stdout: String(stdout), stderr: `${String(stderr)}${e?.killed ? `\n(killed after ${Math.round(timeout / 1000)} s)` : ''}`, missing });
      });
  });
}
