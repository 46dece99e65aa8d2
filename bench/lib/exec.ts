// Running commands on a bench host: inside a network namespace of this machine (local mode), or on
// this machine itself when `ns` is undefined (underlay mode, a real host with a given interface).
import { type CommandResult, runChecked, runCommand } from '../../lib/run-command.js';

/** argv for running `file args` in `ns` (or directly when ns is undefined). */
export function inNs(ns: string | undefined, file: string, args: readonly string[]): [string, string[]] {
  return ns ? ['ip', ['netns', 'exec', ns, file, ...args]] : [file, [...args]];
}

export function execOn(ns: string | undefined, file: string, args: readonly string[], input?: string): Promise<CommandResult> {
  const [f, a] = inNs(ns, file, args);
  return runCommand(f, a, input);
}

export function execOnChecked(ns: string | undefined, file: string, args: readonly string[], input?: string): Promise<string> {
  const [f, a] = inNs(ns, file, args);
  return runChecked(f, a, `${file} ${args.slice(0, 4).join(' ')}${ns ? ` in ${ns}` : ''}`, input);
}

/** Runs many iproute2 commands in one `ip -batch` (fails on the first error, naming it). */
export async function ipBatchOn(ns: string | undefined, commands: readonly string[]): Promise<void> {
  if (commands.length === 0) return;
  await execOnChecked(ns, 'ip', ['-batch', '-'], `${commands.join('\n')}\n`);
}

/** Like Promise.race with a deadline: rejects with `what` timed out after `ms`. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${Math.round(ms / 1000)} s`)), ms);
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
