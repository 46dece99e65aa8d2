// The machine and software a result was measured on: kernel, CPU, cores, memory, Node, iperf3, the
// git commit (and whether the tree had local changes), the load average before and after, and what a
// thread wake-up costs (measured at the start, while the machine is quiet).
import { cpus, hostname, loadavg, release, totalmem } from 'node:os';
import { runCommand } from '../../lib/run-command.js';
import type { WakeupCost } from '../metrics/wakeup-cost.js';
import type { Environment } from './result-types.js';

export async function readEnvironment(loadAvgStart: readonly number[], wakeup?: WakeupCost): Promise<Environment> {
  const git = async (args: string[]): Promise<string> => (await runCommand('git', args).catch(() => ({ stdout: '' }))).stdout.trim();
  const iperf = await runCommand('iperf3', ['--version']).catch(() => ({ stdout: '' }));
  return {
    kernel: release(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memTotalMB: Math.round(totalmem() / 2 ** 20),
    nodeVersion: process.version,
    iperf3Version: iperf.stdout.split('\n')[0]?.trim() ?? 'unknown',
    gitCommit: (await git(['rev-parse', 'HEAD'])) || 'unknown',
    gitDirty: (await git(['status', '--porcelain', '--untracked-files=no'])) !== '',
    hostname: hostname(),
    loadAvgStart: loadAvgStart.map((l) => Math.round(l * 100) / 100),
    loadAvgEnd: loadavg().map((l) => Math.round(l * 100) / 100),
    ...(wakeup ? { threadWakeupUs: { sameCpu: wakeup.sameCpuUs, crossCpu: wakeup.crossCpuUs } } : {}),
  };
}
