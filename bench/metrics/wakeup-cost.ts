// The cost of one thread wake-up on this machine, on one CPU and across two CPUs, measured by a tiny
// C program (wakeup-cost.c, built with cc into a temporary directory). A userspace data path wakes 2–4
// sleeping threads per round trip (the TUN relay 2) where kernel VXLAN wakes none, so this figure bounds its added RTT;
// on some VMs a wake-up across vCPUs costs far more than one on the same vCPU.
import { join } from 'node:path';
import { runCommand } from '../../lib/run-command.js';
import { buildCProgram } from '../lib/c-program.js';

export interface WakeupCost {
  /** Median µs per wake-up, both threads on one CPU. */
  readonly sameCpuUs: number;
  /** Median µs per wake-up, the threads on CPUs 0 and 1. */
  readonly crossCpuUs: number;
}

/** Undefined when there is no C compiler or fewer than 2 CPUs. */
export async function measureWakeupCost(repoRoot: string, cores: number): Promise<WakeupCost | undefined> {
  if (cores < 2) return undefined;
  const program = await buildCProgram(join(repoRoot, 'bench', 'metrics', 'wakeup-cost.c')).catch(() => undefined);
  if (!program) return undefined;
  const { bin } = program;
  try {
    const run = async (mode: string): Promise<number> => {
      const r = await runCommand(bin, [mode]);
      const us = Number(r.stdout.trim());
      if (r.code !== 0 || !Number.isFinite(us)) throw new Error(`wakeup-cost ${mode} failed: ${(r.stderr || r.stdout).trim()}`);
      return us;
    };
    return { sameCpuUs: await run('same'), crossCpuUs: await run('cross') };
  } finally {
    program.remove();
  }
}
