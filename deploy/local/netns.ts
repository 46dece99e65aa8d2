// Network namespaces and the processes run inside them, for the local cluster, the tests and the
// benchmark. Everything created here is recorded so that one call tears it all down, on failure too.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { runChecked, runCommand } from '../../lib/run-command.js';

/** A short tag unique to this run, safe inside 15-character interface names. */
export function runTag(prefix = 'f'): string {
  return `${prefix}${(process.pid % 1000).toString(36)}${randomBytes(2).toString('hex')}`;
}

/** Runs `ip` inside a namespace (or the current one when ns is undefined); throws on failure. */
export function ipIn(ns: string | undefined, args: readonly string[]): Promise<string> {
  return runChecked('ip', ns ? ['-n', ns, ...args] : args, `ip ${args.join(' ')}${ns ? ` in ${ns}` : ''}`);
}

/** Runs a program inside a namespace and returns its result without throwing. */
export function execIn(ns: string, file: string, args: readonly string[], input?: string) {
  return runCommand('ip', ['netns', 'exec', ns, file, ...args], input);
}

export function execCheckedIn(ns: string, file: string, args: readonly string[], input?: string): Promise<string> {
  return runChecked('ip', ['netns', 'exec', ns, file, ...args], `${file} in ${ns}`, input);
}

export async function sysctlIn(ns: string, key: string, value: string): Promise<void> {
  await execCheckedIn(ns, 'sysctl', ['-q', '-w', `${key}=${value}`]);
}

export interface SpawnedProcess {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<number | null>;
}

/** Starts a long-running process in a namespace, capturing stdout and stderr together. */
export function spawnIn(ns: string | undefined, file: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): SpawnedProcess {
  const argv = ns ? ['netns', 'exec', ns, file, ...args] : args;
  const child = spawn(ns ? 'ip' : file, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const chunks: Buffer[] = [];
  child.stdout?.on('data', (d: Buffer) => chunks.push(d));
  child.stderr?.on('data', (d: Buffer) => chunks.push(d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  child.on('error', () => { /* reported through `exited` */ });
  return { child, output: () => Buffer.concat(chunks).toString('utf8'), exited };
}

/** Sends a signal and waits (bounded) for the process to exit; SIGKILL after the grace period. */
export async function stopProcess(p: SpawnedProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<number | null> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return p.child.exitCode;
  p.child.kill(signal);
  const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
  const result = await Promise.race([p.exited, timer]);
  if (result !== 'timeout') return result;
  p.child.kill('SIGKILL');
  return p.exited;
}

/** Creates a namespace with loopback up, and remembers it for teardown. */
export async function createNetns(name: string, created: string[]): Promise<void> {
  await ipIn(undefined, ['netns', 'add', name]);
  created.push(name);
  await ipIn(name, ['link', 'set', 'lo', 'up']);
}

/** Deletes namespaces; deleting a namespace also removes the veth ends inside it. Never throws. */
export async function deleteNetns(names: readonly string[]): Promise<void> {
  for (const name of [...names].reverse()) {
    await runCommand('ip', ['netns', 'pids', name]).then(async (r) => {
      for (const pid of r.stdout.split(/\s+/).filter(Boolean)) {
        try { process.kill(Number(pid), 'SIGKILL'); } catch { /* already gone */ }
      }
    });
    await runCommand('ip', ['netns', 'del', name]);
  }
}
