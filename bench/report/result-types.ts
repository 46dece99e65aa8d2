// The shape of a benchmark result file (bench/results/<date>.json): every raw figure, the summary
// (median, min, max over repeats) and the environment. Checked by result-schema.ts.
import type { Stat } from '../lib/stats.js';

export const SCHEMA_ID = 'flannel-ts-bench/1';

/** The rows measured over the pods' IPv6 addresses (dual-stack nodes, an IPv6 underlay), last in the table:
 * the hand-built reference first, then ours and the real flannel's of each backend. */
export const IPV6_DATAPATH_IDS = ['kernel-vxlan6', 'host-gw6', 'flannel-host-gw6', 'vxlan6', 'vxlan-kernel6', 'flannel-vxlan6', 'wireguard6'] as const;
/** The data paths a run measures by default (also named "default" in --datapaths): every row the harness
 * knows, in table order; the real flannel's rows (flannel-*) each right after ours of the same backend, and the
 * IPv6 rows last. In local mode each must measure (test/netns/bench-smoke.test.ts), with one exception: the rows
 * built with Go (`flannel-*`, `wireguard-go-latest`) may be unavailable where the machine has neither Go nor an
 * earlier build. */
export const DATAPATH_IDS = [
  'raw', 'kernel-vxlan', 'host-gw', 'flannel-host-gw', 'tun-relay', 'udp', 'flannel-udp', 'vxlan', 'vxlan-kernel',
  'flannel-vxlan', 'wireguard', 'wireguard-go-latest', 'wireguard-go-debian', ...IPV6_DATAPATH_IDS,
] as const;
/** The rows run by the real flannel (deploy/local/real-flannel.ts), built from its Go module. */
export const REAL_FLANNEL_IDS = ['flannel-host-gw', 'flannel-udp', 'flannel-vxlan', 'flannel-host-gw6', 'flannel-vxlan6'] as const;
/** Every data path the harness knows ("all" in --datapaths; today the same rows as the default set). */
export const ALL_DATAPATH_IDS = DATAPATH_IDS;
export type DataPathId = (typeof ALL_DATAPATH_IDS)[number];

/** True for the rows measured over IPv6. */
export const isIpv6Row = (id: DataPathId): boolean => (IPV6_DATAPATH_IDS as readonly string[]).includes(id);
/** The row a data path's ratios (×ref) are taken against, measured in the same run: kernel VXLAN by hand over
 * the same family (kernel-vxlan for the IPv4 rows, kernel-vxlan6 for the IPv6 rows). */
export const referenceOf = (id: DataPathId): DataPathId => (isIpv6Row(id) ? 'kernel-vxlan6' : 'kernel-vxlan');

/** Data-path metrics, measured for every data path in every repeat. */
export const DATAPATH_METRICS = ['tcp1', 'tcp4', 'udp64', 'latency', 'rpc', 'idle'] as const;
export type DataPathMetric = (typeof DATAPATH_METRICS)[number];
/** Control-plane micro-benchmarks. */
export const CONTROL_METRICS = ['program-peers', 'lease-to-packet', 'kube-nodes'] as const;
export type ControlMetric = (typeof CONTROL_METRICS)[number];

export const STATUSES = ['measured', 'unavailable', 'failed', 'skipped'] as const;
export type Status = (typeof STATUSES)[number];

export interface TcpRaw {
  readonly bitsPerSecond: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly retransmits: number | null;
}

export interface UdpRaw {
  /** Datagrams the receiver counted as sent (iperf3's sum_received.packets) and of those lost. */
  readonly packets: number;
  readonly lostPackets: number;
  readonly lostPercent: number;
  readonly seconds: number;
  /** Datagrams received per second. */
  readonly pps: number;
}

export interface LatencyRaw {
  readonly sent: number;
  readonly received: number;
  readonly p50Us: number;
  readonly p99Us: number;
  /** Every round-trip time, in microseconds, in order. */
  readonly rttUs: readonly number[];
}

/** sockperf UDP ping-pong (64-byte messages, back to back, full round trips). */
export interface RpcRaw {
  readonly observations: number;
  readonly dropped: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly seconds: number;
}

/** The daemons' CPU while no traffic flows: percent of one core, per daemon (their sum over their count). */
export interface IdleRaw {
  readonly seconds: number;
  readonly daemons: number;
  readonly cpuPctPerDaemon: number;
}

/** How long the idle metric watches the daemons with no traffic: two iperf3 runs' time, at least 3 s. */
export const idleSeconds = (o: { readonly durationSec: number }): number => Math.max(3, 2 * o.durationSec);

export interface Sample {
  readonly repeat: number;
  readonly metric: DataPathMetric;
  /** The headline figure: Gbit/s (tcp), received datagrams/s (udp64), p50 µs (latency, rpc), % of a core
   * per daemon (idle); null on error. */
  readonly value: number | null;
  readonly error?: string;
  readonly tcp?: TcpRaw;
  readonly udp?: UdpRaw;
  readonly latency?: LatencyRaw;
  readonly rpc?: RpcRaw;
  readonly idle?: IdleRaw;
  /** CPU seconds (utime+stime) used by every flanneld during this sample; null without a daemon. */
  readonly daemonCpuSec: number | null;
  /** CPU seconds the whole machine was busy during this sample (local mode; null between two hosts). */
  readonly machineCpuSec?: number | null;
}

export interface RepeatUsage {
  readonly repeat: number;
  /** Daemon CPU seconds over the TCP samples of this repeat, divided by the GB (1e9 B) they moved. */
  readonly cpuSecPerGB: number | null;
  /** Largest VmHWM of the daemons at the end of this repeat, MiB. */
  readonly peakRssMB: number | null;
  /** The whole machine's busy CPU seconds over the same TCP samples, per GB (local mode only). */
  readonly machineCpuSecPerGB?: number | null;
}

export interface DataPathSummary {
  readonly tcp1Gbps: Stat | null;
  readonly tcp4Gbps: Stat | null;
  readonly udp64Pps: Stat | null;
  readonly udp64LossPct: Stat | null;
  readonly rttP50Us: Stat | null;
  readonly rttP99Us: Stat | null;
  readonly rpcP50Us?: Stat | null;
  readonly rpcP99Us?: Stat | null;
  readonly idleCpuPct?: Stat | null;
  readonly cpuSecPerGB: Stat | null;
  readonly peakRssMB: Stat | null;
  readonly machineCpuSecPerGB?: Stat | null;
}
export const SUMMARY_KEYS = ['tcp1Gbps', 'tcp4Gbps', 'udp64Pps', 'udp64LossPct', 'rttP50Us', 'rttP99Us', 'rpcP50Us', 'rpcP99Us', 'idleCpuPct', 'cpuSecPerGB', 'peakRssMB', 'machineCpuSecPerGB'] as const;
/** Summary keys added after results were first committed: files written before them lack them. */
export const LATER_SUMMARY_KEYS: ReadonlySet<string> = new Set(['machineCpuSecPerGB', 'rpcP50Us', 'rpcP99Us', 'idleCpuPct']);

export interface DataPathResult {
  readonly id: DataPathId;
  readonly label: string;
  readonly hasDaemon: boolean;
  readonly status: Status;
  readonly reason?: string;
  readonly samples: Sample[];
  readonly usage: RepeatUsage[];
  readonly summary: DataPathSummary;
}

export interface ProgramPeersSample {
  readonly repeat: number;
  readonly peers: number;
  /** backend.prepare() + backend.start(): local device setup. */
  readonly setupMs: number;
  /** network.apply() of N "added" lease events, until the kernel (or the data path) has them. */
  readonly applyMs: number;
  /** One network.reconcile() with all N peers in place (the periodic check's cost). */
  readonly reconcileMs: number;
  /** network.apply() of N "removed" events. */
  readonly removeMs: number;
  /** Main-table routes inside the overlay network after apply (informational). */
  readonly routesAfterApply: number;
}

export interface ProgramPeersResult {
  readonly datapath: DataPathId;
  readonly status: Status;
  readonly reason?: string;
  readonly samples: ProgramPeersSample[];
  readonly summary: Array<{ readonly peers: number; readonly applyMs: Stat | null; readonly perPeerUs: Stat | null; readonly reconcileMs: Stat | null; readonly removeMs: Stat | null }>;
}

export interface LeaseToPacketResult {
  readonly datapath: DataPathId;
  readonly status: Status;
  readonly reason?: string;
  readonly samples: Array<{ readonly repeat: number; readonly ms: number | null; readonly error?: string }>;
  readonly summary: Stat | null;
}

export interface Environment {
  readonly kernel: string;
  readonly cpuModel: string;
  readonly cores: number;
  readonly memTotalMB: number;
  readonly nodeVersion: string;
  readonly iperf3Version: string;
  readonly gitCommit: string;
  readonly gitDirty: boolean;
  readonly hostname: string;
  readonly loadAvgStart: readonly number[];
  readonly loadAvgEnd: readonly number[];
  /** Median µs per thread wake-up on one CPU and across CPUs (bench/metrics/wakeup-cost.c); absent without cc or a second CPU. */
  readonly threadWakeupUs?: { readonly sameCpu: number; readonly crossCpu: number };
}

export interface ResultOptions {
  readonly mode: 'local' | 'underlay';
  readonly datapaths: readonly DataPathId[];
  readonly metrics: readonly string[];
  readonly durationSec: number;
  readonly repeats: number;
  readonly pings: number;
  /** The rpc metric's requests per second; absent: back to back. */
  readonly rpcRate?: number;
  readonly peers: readonly number[];
  readonly quick: boolean;
}

export interface KubeNodesSample {
  readonly repeat: number;
  readonly nodes: number;
  /** From the first POST of a Node to the last one answered (16 in flight). */
  readonly createMs: number;
  /** From the first POST to flanneld's route to every one of them. */
  readonly routedMs: number;
  /** From one DELETE of them all (a label selector) to every route gone. */
  readonly removedMs: number;
}

/** N Nodes in the Kubernetes API → routes programmed by flanneld --kube-subnet-mgr (host-gw). */
export interface KubeNodesResult {
  readonly backend: 'host-gw';
  readonly status: Status;
  readonly reason?: string;
  readonly samples: KubeNodesSample[];
  readonly summary: Array<{ readonly nodes: number; readonly createMs: Stat | null; readonly routedMs: Stat | null; readonly perNodeUs: Stat | null; readonly removedMs: Stat | null }>;
}

export interface BenchResult {
  readonly schema: typeof SCHEMA_ID;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly elapsedSec: number;
  readonly environment: Environment;
  readonly options: ResultOptions;
  readonly datapaths: DataPathResult[];
  readonly controlPlane: {
    readonly programPeers: ProgramPeersResult[];
    readonly leaseToPacket: LeaseToPacketResult[];
    /** Kube mode (absent in results written before it, and when not asked for). */
    readonly kubeNodes?: KubeNodesResult;
  };
  /** Caveats seen during the run (machine load, failed samples). */
  readonly notes: string[];
}
