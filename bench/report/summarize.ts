// Turns a data path's samples into its result entry: the summary figures (median, min, max over the
// repeats) next to every raw sample, and the status (a path whose every sample failed is "failed").
import { summarize } from '../lib/stats.js';
import type { PathUnderTest } from '../runner/measure-datapaths.js';
import type { DataPathMetric, DataPathResult, Sample } from './result-types.js';

export function dataPathResult(p: PathUnderTest): DataPathResult {
  const of = (metric: DataPathMetric, f: (s: Sample) => number | null | undefined) =>
    summarize(p.samples.filter((s) => s.metric === metric && !s.error).map(f));
  const failedAll = p.status === 'measured' && p.samples.length > 0 && p.samples.every((s) => s.error);
  const firstError = p.samples.find((s) => s.error)?.error;
  return {
    id: p.def.id,
    label: p.def.label,
    hasDaemon: p.def.backend !== undefined,
    status: failedAll ? 'failed' : p.status,
    ...(failedAll ? { reason: `every sample failed, e.g. ${firstError}` } : p.reason ? { reason: p.reason } : {}),
    samples: p.samples,
    usage: p.usage,
    summary: {
      tcp1Gbps: of('tcp1', (s) => s.value),
      tcp4Gbps: of('tcp4', (s) => s.value),
      udp64Pps: of('udp64', (s) => s.udp?.pps),
      udp64LossPct: of('udp64', (s) => s.udp?.lostPercent),
      rttP50Us: of('latency', (s) => s.latency?.p50Us),
      rttP99Us: of('latency', (s) => s.latency?.p99Us),
      rpcP50Us: of('rpc', (s) => s.rpc?.p50Us),
      rpcP99Us: of('rpc', (s) => s.rpc?.p99Us),
      idleCpuPct: of('idle', (s) => s.idle?.cpuPctPerDaemon),
      cpuSecPerGB: summarize(p.usage.map((u) => u.cpuSecPerGB)),
      peakRssMB: summarize(p.usage.map((u) => u.peakRssMB)),
      machineCpuSecPerGB: summarize(p.usage.map((u) => u.machineCpuSecPerGB)),
    },
  };
}
