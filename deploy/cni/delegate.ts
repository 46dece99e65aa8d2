// Runs the delegate plugin (bridge, …) through the CNI protocol: found by name in CNI_PATH, given our
// environment with CNI_COMMAND set and the config on stdin. Its CNI error keeps its own code.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { join } from 'node:path';
import { CNI_CODES, CniError } from './cni-error.js';

/** The first executable file named `type` in the CNI_PATH directories. */
export function findDelegate(type: string, cniPath: readonly string[]): string {
  for (const dir of cniPath) {
    const path = join(dir, type);
    try {
      if (statSync(path).isFile()) {
        accessSync(path, constants.X_OK);
        return path;
      }
    } catch { /* not here */ }
  }
  throw new CniError(CNI_CODES.DELEGATE_NOT_FOUND,
    `failed to find plugin "${type}" in path ${JSON.stringify(cniPath)}: install the CNI reference plugins (bridge, host-local) there`);
}

export interface DelegateCall {
  readonly path: string;
  readonly command: 'ADD' | 'DEL' | 'CHECK';
  readonly config: string;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** Runs the delegate; returns its stdout, or throws its error as a CniError. */
export function invokeDelegate(c: DelegateCall): string {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(c.env)) if (v !== undefined) env[k] = v;
  env.CNI_COMMAND = c.command;
  const r = spawnSync(c.path, [], { input: c.config, env, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  if (r.stderr) process.stderr.write(r.stderr);
  const what = `delegate ${c.path} ${c.command}`;
  if (r.error) throw new CniError(CNI_CODES.DELEGATE_FAILED, `${what} could not run: ${r.error.message}`);
  if (r.status === 0) return r.stdout;
  const reported = parseCniError(r.stdout);
  if (reported) throw new CniError(reported.code, `${what} failed: ${reported.msg}`, reported.details);
  const why = r.signal ? `was killed by ${r.signal}` : `exited ${r.status}`;
  throw new CniError(CNI_CODES.DELEGATE_FAILED, `${what} ${why}`, (r.stdout || r.stderr).trim().slice(0, 2000));
}

function parseCniError(stdout: string): { code: number; msg: string; details: string } | undefined {
  try {
    const e = JSON.parse(stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof e.code !== 'number') return undefined;
    return { code: e.code, msg: String(e.msg ?? ''), details: typeof e.details === 'string' ? e.details : '' };
  } catch {
    return undefined;
  }
}
