// What the daemon costs: CPU seconds (utime+stime of all its threads, /proc/<pid>/stat) and peak
// resident memory (VmHWM, /proc/<pid>/status). Kernel-only data paths have no daemon: n/a.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let clockTicks: number | undefined;

function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime+stime of one process in seconds; undefined if it is gone. */
export function processCpuSeconds(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after "(comm)": state is field 3, so utime (14) and stime (15) are at 11 and 12.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond();
}

/** CPU seconds this whole machine has been busy, all cores together (user, nice, system, irq and
 * softirq from the first line of /proc/stat; idle, iowait and time stolen by the hypervisor are not). */
export function machineBusySeconds(): number {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0] = fields;
  return (user + nice + system + irq + softirq) / ticksPerSecond();
}

/** Total CPU seconds of the given processes; null when there are none. */
export function totalCpuSeconds(pids: readonly number[]): number | null {
  if (pids.length === 0) return null;
  return pids.reduce((sum, pid) => sum + (processCpuSeconds(pid) ?? 0), 0);
}

/** VmHWM (peak resident set) in MiB; undefined if the process is gone. */
export function peakRssMB(pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** The largest peak RSS among the processes; null when there are none. */
export function maxPeakRssMB(pids: readonly number[]): number | null {
  const values = pids.flatMap((pid) => peakRssMB(pid) ?? []);
  return values.length > 0 ? Math.max(...values) : null;
}
