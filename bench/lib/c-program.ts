// The harness's small C helpers (metrics/wakeup-cost.c, datapaths/tun-relay.c) are built with the
// machine's cc at run time into a temporary directory, never into the checkout.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { runCommand } from '../../lib/run-command.js';

export interface CProgram {
  readonly bin: string;
  /** Deletes the binary and its directory. */
  readonly remove: () => void;
}

/** Builds `source` (-O2 -pthread). Throws with the compiler's last words, or "no C compiler". */
export async function buildCProgram(source: string): Promise<CProgram> {
  const name = basename(source, '.c');
  const dir = mkdtempSync(join(tmpdir(), `flannel-bench-${name}-`));
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  const bin = join(dir, name);
  const cc = await runCommand('cc', ['-O2', '-pthread', source, '-o', bin]).catch(() => undefined);
  if (!cc || cc.code !== 0) {
    remove();
    throw new Error(`cannot build ${name}.c: ${cc ? cc.stderr.trim().slice(-300) : 'no C compiler (cc); install gcc'}`);
  }
  return { bin, remove };
}
