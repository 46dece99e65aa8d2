// The terminal table (also saved as .txt): per data path the median of each figure and its ratio to
// the hand-configured kernel VXLAN of its address family (kernel-vxlan, or kernel-vxlan6 for the IPv6 rows),
// with [min–max] underneath; then the control-plane figures.
import type { Stat } from '../lib/stats.js';
import {
  type BenchResult, DATAPATH_METRICS, type DataPathResult, type DataPathSummary, idleSeconds, isIpv6Row, referenceOf,
} from './result-types.js';

interface Column { readonly key: keyof DataPathSummary; readonly title: string; readonly unit: string; readonly fmt: (v: number) => string; readonly ratio: boolean; readonly daemon?: boolean }

const fixed = (d: number) => (v: number): string => v.toFixed(d);
const COLUMNS: readonly Column[] = [
  { key: 'tcp1Gbps', title: 'TCP 1 stream', unit: 'Gbit/s', fmt: fixed(2), ratio: true },
  { key: 'tcp4Gbps', title: 'TCP 4 streams', unit: 'Gbit/s', fmt: fixed(2), ratio: true },
  { key: 'udp64Pps', title: 'UDP 64 B recv', unit: 'kpps', fmt: (v) => (v / 1000).toFixed(0), ratio: true },
  { key: 'udp64LossPct', title: 'UDP loss', unit: '%', fmt: fixed(1), ratio: false },
  { key: 'rttP50Us', title: 'RTT p50', unit: 'µs', fmt: fixed(0), ratio: true },
  { key: 'rttP99Us', title: 'RTT p99', unit: 'µs', fmt: fixed(0), ratio: true },
  { key: 'rpcP50Us', title: 'UDP RPC p50', unit: 'µs', fmt: fixed(0), ratio: true },
  { key: 'rpcP99Us', title: 'UDP RPC p99', unit: 'µs', fmt: fixed(0), ratio: true },
  { key: 'idleCpuPct', title: 'idle CPU', unit: '% of a core', fmt: fixed(2), ratio: false, daemon: true },
  { key: 'cpuSecPerGB', title: 'daemon CPU', unit: 's per GB', fmt: fixed(2), ratio: false, daemon: true },
  { key: 'peakRssMB', title: 'daemon RSS', unit: 'MiB', fmt: fixed(0), ratio: false, daemon: true },
  { key: 'machineCpuSecPerGB', title: 'machine CPU', unit: 's per GB', fmt: fixed(2), ratio: true },
];
/** Width of the label column: 28, or wider when a label (the IPv6 rows' are longer) needs it. */
const labelWidth = (dps: readonly DataPathResult[]): number => Math.max(28, ...dps.map((d) => d.label.length + 2));
const COL_W = 15;

function cell(stat: Stat | null, col: Column, ref: Stat | null, hasDaemon: boolean): [string, string] {
  if (!stat) return [!hasDaemon && col.daemon ? 'n/a' : '-', ''];
  const ratio = col.ratio && ref && ref.median !== 0 ? ` ${(stat.median / ref.median).toFixed(2)}×` : '';
  const range = stat.n > 1 ? `[${col.fmt(stat.min)}–${col.fmt(stat.max)}]` : '';
  return [`${col.fmt(stat.median)}${ratio}`, range];
}

function dataPathRows(dps: readonly DataPathResult[]): string[] {
  const labelW = labelWidth(dps);
  // Each row's reference, measured in this run: kernel VXLAN by hand of the row's address family.
  const refOf = (dp: DataPathResult): DataPathResult | undefined => dps.find((d) => d.id === referenceOf(dp.id) && d.status === 'measured');
  const anyRef = dps.some((d) => refOf(d) !== undefined);
  const lines = [
    `${'data path'.padEnd(labelW)}${COLUMNS.map((c) => c.title.padEnd(COL_W)).join('')}`,
    `${''.padEnd(labelW)}${COLUMNS.map((c) => `${c.unit}${c.ratio && anyRef ? ', ×ref' : ''}`.padEnd(COL_W)).join('')}`,
  ];
  for (const dp of dps) {
    const ref = refOf(dp);
    if (dp.status !== 'measured') {
      lines.push(`${dp.label.padEnd(labelW)}${dp.status}: ${dp.reason ?? ''}`);
      continue;
    }
    const cells = COLUMNS.map((c) => cell(dp.summary[c.key] ?? null, c, ref ? ref.summary[c.key] ?? null : null, dp.hasDaemon));
    lines.push(`${dp.label.padEnd(labelW)}${cells.map(([a]) => a.padEnd(COL_W)).join('')}`);
    if (cells.some(([, b]) => b)) lines.push(`${''.padEnd(labelW)}${cells.map(([, b]) => b.padEnd(COL_W)).join('')}`);
  }
  return lines;
}

const ms = (s: Stat | null): string => (s ? `${fmtMs(s.median)}${s.n > 1 ? ` [${fmtMs(s.min)}–${fmtMs(s.max)}]` : ''}` : '-');
const fmtMs = (v: number): string => (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0));

function controlRows(r: BenchResult): string[] {
  const lines: string[] = [];
  const pp = r.controlPlane.programPeers;
  if (pp.length > 0) {
    lines.push('', 'Control plane: time to program N peers (backend.apply of N lease events, one namespace per run), ms');
    lines.push(`${'data path'.padEnd(16)}${'step'.padEnd(11)}${r.options.peers.map((n) => `N=${n}`.padEnd(22)).join('')}`);
    for (const e of pp) {
      if (e.status !== 'measured') {
        lines.push(`${e.datapath.padEnd(16)}${e.status}: ${e.reason ?? ''}`);
        continue;
      }
      for (const step of ['applyMs', 'reconcileMs', 'removeMs'] as const) {
        lines.push(`${(step === 'applyMs' ? e.datapath : '').padEnd(16)}${step.replace('Ms', '').padEnd(11)}${e.summary.map((s) => ms(s[step]).padEnd(22)).join('')}`);
      }
    }
  }
  const lp = r.controlPlane.leaseToPacket;
  if (lp.length > 0) {
    lines.push('', 'Control plane: lease created in etcd → first packet forwarded to the new peer (pod pings every 1 ms), ms');
    const w = Math.max(16, ...lp.map((e) => e.datapath.length + 2));
    for (const e of lp) lines.push(`${e.datapath.padEnd(w)}${e.status === 'measured' ? ms(e.summary) : `${e.status}: ${e.reason ?? ''}`}`);
  }
  const kn = r.controlPlane.kubeNodes;
  if (kn) {
    lines.push('', `Control plane, kube mode: N Nodes created in a real kube-apiserver → ${kn.backend} routes to all of them programmed by flanneld --kube-subnet-mgr, ms from the first create`);
    if (kn.status !== 'measured') {
      lines.push(`kube-nodes      ${kn.status}: ${kn.reason ?? ''}`);
    } else {
      lines.push(`${'step'.padEnd(16)}${kn.summary.map((s) => `N=${s.nodes}`.padEnd(22)).join('')}`);
      for (const [step, label] of [['createMs', 'created'], ['routedMs', 'routed'], ['removedMs', 'removed']] as const) {
        lines.push(`${label.padEnd(16)}${kn.summary.map((s) => ms(s[step]).padEnd(22)).join('')}`);
      }
    }
  }
  return lines;
}

export function renderTable(r: BenchResult): string {
  const env = r.environment;
  const head = [
    `flannel-ts benchmark, ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC, ${r.options.mode} mode: ${r.options.repeats} repeat(s), ${r.options.durationSec} s per iperf3 run, ${r.options.pings} pings`,
    `${env.cpuModel}, ${env.cores} cores, Linux ${env.kernel}, Node ${env.nodeVersion}, commit ${env.gitCommit.slice(0, 12)}${env.gitDirty ? ' (dirty)' : ''}`,
    ...(env.threadWakeupUs ? [`Thread wake-up (eventfd, median): ${env.threadWakeupUs.sameCpu} µs on one CPU, ${env.threadWakeupUs.crossCpu} µs across CPUs; udp and userspace vxlan take 2-4 per round trip, the TUN relay 2, kernel paths none.`] : []),
    'Figures: median, [min–max] over repeats; ×ref = ratio to kernel VXLAN configured by hand (for RTT, above 1 is slower).',
    ...(r.options.metrics.includes('rpc') ? [`UDP RPC: sockperf ping-pong, 64-byte UDP messages ${r.options.rpcRate ? `paced at ${r.options.rpcRate} requests/s` : 'back to back'} between the pods, full round trips (both ends wake in user space, as an RPC does); RTT: ping, answered by the kernel.`] : []),
    ...(r.options.metrics.includes('idle') ? [`idle CPU: each daemon's CPU over ${idleSeconds(r.options)} s with no traffic (after the repeat's other measurements and 3 s to settle), percent of one core.`] : []),
    ...(r.datapaths.some((d) => isIpv6Row(d.id)) ? ['IPv6 rows (… IPv6): measured between the pods\' IPv6 addresses over an IPv6 underlay; their ×ref is to kernel VXLAN IPv6 by hand (kernel-vxlan6).'] : []),
    '',
  ];
  const notes = r.notes.length > 0 ? ['', 'Notes:', ...r.notes.map((n) => `- ${n}`)] : [];
  const measuredDataPaths = r.options.metrics.some((m) => (DATAPATH_METRICS as readonly string[]).includes(m));
  return [...head, ...(measuredDataPaths ? dataPathRows(r.datapaths) : []), ...controlRows(r), ...notes, ''].join('\n');
}
