// The measurement loop: repeats outside, data paths inside, so drift on the machine hits every data
// path alike. Each sample records its raw figures and the CPU the daemons used meanwhile.
import type { Progress } from '../cli/progress.js';
import type { BenchOptions } from '../cli/options.js';
import type { DaemonUsage, DataPathDef, ReadyPath } from '../datapaths/catalog.js';
import { errorText } from '../lib/exec.js';
import { round } from '../lib/stats.js';
import { machineBusySeconds, maxPeakRssMB, totalCpuSeconds } from '../metrics/daemon-usage.js';
import { IperfServer, tcpThroughput, udpSmallPackets } from '../metrics/iperf.js';
import { pingLatency } from '../metrics/ping-latency.js';
import { sockperfRpc } from '../metrics/sockperf-rpc.js';
import { type DataPathMetric, type RepeatUsage, type Sample, type Status, idleSeconds } from '../report/result-types.js';

/** A data path as the run sees it: set up (ready), or why not. */
export interface PathUnderTest {
  readonly def: DataPathDef;
  status: Status;
  reason?: string;
  ready?: ReadyPath;
  readonly samples: Sample[];
  readonly usage: RepeatUsage[];
}

/** Keeps an iperf3 server running at the server end (locally, or by asking the other host). */
export interface IperfControl {
  ensure(): Promise<void>;
  restart(): Promise<void>;
}

export function measurableCount(paths: readonly PathUnderTest[]): number {
  return paths.filter((p) => p.ready).length;
}

/** Local mode: every path stays up; one iperf3 server per path, started on first use. */
export async function measureDataPaths(paths: readonly PathUnderTest[], o: BenchOptions, progress: Progress): Promise<void> {
  const servers = new Map<PathUnderTest, IperfServer>();
  try {
    for (let r = 1; r <= o.repeats; r++) {
      for (const p of paths) {
        if (!p.ready) continue;
        let server = servers.get(p);
        if (!server) servers.set(p, (server = new IperfServer(p.ready.server)));
        await measureRepeat(p, p.ready, server, r, o, progress);
      }
    }
  } finally {
    for (const s of servers.values()) await s.stop();
  }
}

/** All selected metrics of one data path in one repeat, then the repeat's daemon usage. */
export async function measureRepeat(p: PathUnderTest, ready: ReadyPath, iperf: IperfControl, r: number, o: BenchOptions, progress: Progress): Promise<void> {
  const samples: Sample[] = [];
  for (const metric of o.metrics) {
    if (metric === 'idle' && ready.daemonPids().length === 0) continue; // a kernel-only path has no process to watch
    progress.start(`repeat ${r}/${o.repeats} · ${p.def.id} · ${metric}`);
    const s = await measureOne(ready, iperf, metric, r, o);
    samples.push(s);
    p.samples.push(s);
    progress.finish(`repeat ${r}/${o.repeats}  ${p.def.id.padEnd(12)} ${metric.padEnd(8)} ${describe(s)}`);
  }
  p.usage.push(usageOf(await snapshot(ready), samples, r));
}

/** Daemon usage now, on this machine and (underlay mode) on the other host. */
async function snapshot(path: ReadyPath): Promise<DaemonUsage & { pids: number }> {
  const pids = path.daemonPids();
  const remote = path.remoteUsage ? await path.remoteUsage().catch(() => ({ cpuSec: null, peakRssMB: null })) : undefined;
  const local = totalCpuSeconds(pids);
  const parts = [local, remote?.cpuSec].filter((v): v is number => typeof v === 'number');
  const rss = [maxPeakRssMB(pids), remote?.peakRssMB].filter((v): v is number => typeof v === 'number');
  return { cpuSec: parts.length > 0 ? parts.reduce((a, b) => a + b, 0) : null, peakRssMB: rss.length > 0 ? Math.max(...rss) : null, pids: pids.length };
}

async function measureOne(path: ReadyPath, iperf: IperfControl, metric: DataPathMetric, repeat: number, o: BenchOptions): Promise<Sample> {
  const before = await snapshot(path);
  // Between two hosts this machine is only half of the path: no machine-wide figure then.
  const busyBefore = path.remoteUsage ? undefined : machineBusySeconds();
  const cpu = async (): Promise<number | null> => {
    const after = await snapshot(path);
    return before.cpuSec === null || after.cpuSec === null || after.pids !== before.pids ? null : round(after.cpuSec - before.cpuSec, 3);
  };
  const machine = (): number | null => (busyBefore === undefined ? null : round(machineBusySeconds() - busyBefore, 3));
  const serverIp = path.server.ip;
  try {
    switch (metric) {
      case 'tcp1':
      case 'tcp4': {
        await iperf.ensure();
        const tcp = await retryControlError(iperf, () => tcpThroughput(path.client, serverIp, o.durationSec, metric === 'tcp1' ? 1 : 4));
        return { repeat, metric, value: round(tcp.bitsPerSecond / 1e9, 3), tcp, machineCpuSec: machine(), daemonCpuSec: await cpu() };
      }
      case 'udp64': {
        await iperf.ensure();
        const udp = await retryControlError(iperf, () => udpSmallPackets(path.client, serverIp, o.durationSec));
        return { repeat, metric, value: Math.round(udp.pps), udp, daemonCpuSec: await cpu() };
      }
      case 'latency': {
        const latency = await pingLatency(path.client, serverIp, o.pings);
        return { repeat, metric, value: latency.p50Us, latency, daemonCpuSec: await cpu() };
      }
      case 'rpc': {
        const rpc = await sockperfRpc(path.client, path.server, o.durationSec, o.rpcRate);
        return { repeat, metric, value: rpc.p50Us, rpc, daemonCpuSec: await cpu() };
      }
      case 'idle': {
        if (path.remoteUsage) throw new Error('idle CPU is measured in local mode only');
        // What the last traffic left to do (a hand-back, a GC) is not idle cost: settle first.
        await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS));
        const settled = await snapshot(path);
        if (settled.cpuSec === null || settled.pids === 0) throw new Error('the path\'s processes went away');
        const startedAt = Date.now();
        await new Promise((r) => setTimeout(r, idleSeconds(o) * 1000));
        const after = await snapshot(path);
        if (after.cpuSec === null || after.pids !== settled.pids) throw new Error('a daemon restarted or went away while idle');
        const used = round(after.cpuSec - settled.cpuSec, 3);
        const seconds = (Date.now() - startedAt) / 1000;
        const cpuPctPerDaemon = round((used / seconds / settled.pids) * 100, 3);
        return { repeat, metric, value: cpuPctPerDaemon, idle: { seconds: round(seconds, 2), daemons: settled.pids, cpuPctPerDaemon }, daemonCpuSec: used };
      }
    }
  } catch (err) {
    if (metric === 'tcp1' || metric === 'tcp4' || metric === 'udp64') await iperf.restart().catch(() => {});
    return { repeat, metric, value: null, error: errorText(err), daemonCpuSec: await cpu() };
  }
}

/** The idle metric waits this long after the last traffic before it starts counting. */
const IDLE_SETTLE_MS = 3000;

/** iperf3's errors of its control connection (not of the data it measures). */
const IPERF_CONTROL_ERROR = /iperf3: (unable to (receive|send|read|write) control message|the server is busy)|control socket has closed unexpectedly/i;

/**
 * One retry on a fresh server when iperf3's control connection broke: seen once in many runs right after a
 * 64-byte flood through a slow path (the server reset the connection while draining the flood). A data
 * error (no figures, a timeout) is not retried.
 */
async function retryControlError<T>(iperf: IperfControl, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (!IPERF_CONTROL_ERROR.test(errorText(err))) throw err;
    await iperf.restart();
    return run();
  }
}

/** Daemon and machine CPU per GB over this repeat's TCP samples, and the daemons' peak RSS so far. */
function usageOf(now: DaemonUsage, samples: readonly Sample[], repeat: number): RepeatUsage {
  return {
    repeat,
    cpuSecPerGB: now.cpuSec === null ? null : secondsPerGB(samples, (s) => s.daemonCpuSec),
    peakRssMB: now.peakRssMB === null ? null : round(now.peakRssMB, 1),
    machineCpuSecPerGB: secondsPerGB(samples, (s) => s.machineCpuSec),
  };
}

/** CPU seconds per GB received over the TCP samples that have a figure for `seconds`; null without any. */
function secondsPerGB(samples: readonly Sample[], seconds: (s: Sample) => number | null | undefined): number | null {
  const measured = samples.filter((s) => s.tcp && typeof seconds(s) === 'number');
  const gb = measured.reduce((sum, s) => sum + (s.tcp?.bytes ?? 0), 0) / 1e9;
  return gb > 0 ? round(measured.reduce((sum, s) => sum + (seconds(s) ?? 0), 0) / gb, 4) : null;
}

function describe(s: Sample): string {
  if (s.error) return `error: ${s.error}`;
  const cpu = s.daemonCpuSec === null ? '' : `  (daemon CPU ${s.daemonCpuSec.toFixed(2)} s)`;
  if (s.tcp) return `${(s.value ?? 0).toFixed(2)} Gbit/s, ${s.tcp.retransmits ?? '?'} retransmits${cpu}`;
  if (s.udp) return `${(s.udp.pps / 1000).toFixed(0)} kpps received, ${s.udp.lostPercent.toFixed(1)} % lost${cpu}`;
  if (s.latency) return `rtt p50 ${s.latency.p50Us} µs, p99 ${s.latency.p99Us} µs (${s.latency.received}/${s.latency.sent})`;
  if (s.rpc) return `sockperf rtt p50 ${s.rpc.p50Us} µs, p99 ${s.rpc.p99Us} µs (${s.rpc.observations} round trips, ${s.rpc.dropped} dropped)`;
  if (s.idle) return `idle: ${s.idle.cpuPctPerDaemon.toFixed(2)} % of a core per daemon (${s.idle.daemons} daemon(s), ${s.idle.seconds} s)`;
  return '';
}
