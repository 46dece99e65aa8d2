// Starts one of the bench's helper scripts with this Node, compiled (.js under dist/) or from source
// (.ts under tsx, whose loader flags are passed on), inside a namespace, and reads its JSON line.
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execOn, withTimeout } from './exec.js';

/** Runs `<dir of from>/<name>.{js|ts}` with `arg` as its only argument; returns its last stdout line, parsed. */
export async function runChildScript<T>(from: string, name: string, ns: string | undefined, arg: unknown, timeoutMs: number): Promise<T> {
  const self = fileURLToPath(from);
  const script = fileURLToPath(new URL(`./${name}${extname(self)}`, from));
  const r = await withTimeout(execOn(ns, process.execPath, [...process.execArgv, script, JSON.stringify(arg)]), timeoutMs, name);
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(last) as T;
  } catch {
    throw new Error(`${name} exited ${r.code} without a result: ${(r.stderr || r.stdout).trim().slice(-300)}`);
  }
}
