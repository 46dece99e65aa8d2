// Command-line flags of `npm run bench`: which data paths and metrics, how long and how often, where
// the results go, and the two-host underlay mode. Unknown flags and bad values are usage errors.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ALL_DATAPATH_IDS, CONTROL_METRICS, type ControlMetric, DATAPATH_IDS, DATAPATH_METRICS, type DataPathId, type DataPathMetric,
  IPV6_DATAPATH_IDS,
} from '../report/result-types.js';

export interface UnderlayOptions {
  readonly iface: string;
  readonly peer: string;
  readonly role: 'a' | 'b';
  readonly etcd: string;
}

export interface BenchOptions {
  readonly datapaths: DataPathId[];
  readonly metrics: DataPathMetric[];
  readonly control: ControlMetric[];
  readonly durationSec: number;
  readonly repeats: number;
  readonly pings: number;
  /** sockperf requests per second in the rpc metric; 0: back to back (ping-pong). */
  readonly rpcRate: number;
  readonly peers: number[];
  readonly quick: boolean;
  /** Path prefix of the result files (.json, .svg, .txt). */
  readonly out: string;
  readonly underlay?: UnderlayOptions;
}

export const USAGE = `usage: npm run bench -- [flags]

  --datapaths=LIST   any of ${DATAPATH_IDS.slice(0, 6).join(',')},
                     ${DATAPATH_IDS.slice(6, 10).join(',')},
                     ${DATAPATH_IDS.slice(10, 13).join(',')},
                     ${IPV6_DATAPATH_IDS.join(',')}, measured in the order given
                     (default: all of them, also named "default" or "all"; flannel-* run the real flannel;
                     the *6 rows are measured over IPv6, their ratios against kernel-vxlan6);
                     e.g. --datapaths=kernel-vxlan,wireguard,wireguard-go-latest,wireguard-go-debian
                     or   --datapaths=kernel-vxlan,host-gw,flannel-host-gw,udp,flannel-udp,vxlan,flannel-vxlan
                     or   --datapaths=kernel-vxlan6,host-gw6,flannel-host-gw6,vxlan6,vxlan-kernel6,flannel-vxlan6
  --metrics=LIST     ${[...DATAPATH_METRICS, ...CONTROL_METRICS].join(',')} (default: all)
  --duration=SEC     seconds per iperf3 run (default 5; --quick 1)
  --repeats=N        repeats of every measurement, reported as median [min-max] (default 3; --quick 2,
                     and program-peers once)
  --pings=N          echo requests per latency measurement, at least 200 (default 300; --quick 200)
  --rpc-rate=N       requests per second of the rpc metric's sockperf client, paced with a pause between
                     round trips as a service under light load sees them (default 0: back to back)
  --peers=LIST       peer counts for program-peers (default 10,100,1000,5000), and for kube-nodes
                     those up to 250 (N Nodes in a real kube-apiserver → flanneld's routes, kube mode)
  --quick            short runs; finishes in about 2 minutes
  --out=PREFIX       result files PREFIX.json/.svg/.txt (default bench/results/<date>[-quick], then
                     <date>-2, -3… so that a second run of the day keeps the first; --out overwrites)
  --underlay=IFACE   two real hosts: use IFACE instead of veth (with --peer, --role, --etcd; see bench/README.md)
  --peer=IP          the other host's address on IFACE
  --role=a|b         a drives and measures, b serves
  --etcd=URL         an etcd both hosts reach, e.g. http://198.51.100.1:2379
  --help`;

/** The checkout this file belongs to (bench/cli/ from source, dist/bench/cli/ compiled). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

function list<T extends string>(flag: string, value: string, allowed: readonly T[]): T[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = items.filter((i) => !(allowed as readonly string[]).includes(i));
  if (bad.length > 0 || items.length === 0) throw new UsageError(`--${flag}: ${bad.join(',') || '(empty)'} is not one of ${allowed.join(', ')}`);
  return [...new Set(items)] as T[];
}

function int(flag: string, value: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${flag}=${value}: expected an integer ≥ ${min}`);
  return n;
}

/** --datapaths: ids in the order given, "default" for the default set, "all" for every known path; no repeats. */
export function parseDataPaths(value: string): DataPathId[] {
  const groups: Record<string, readonly DataPathId[]> = { default: DATAPATH_IDS, all: ALL_DATAPATH_IDS };
  const items = list('datapaths', value, [...ALL_DATAPATH_IDS, ...(Object.keys(groups) as Array<keyof typeof groups>)]);
  return [...new Set(items.flatMap((i) => groups[i] ?? [i as DataPathId]))];
}

/** Parses argv (without node and script). Returns undefined for --help. */
export function parseOptions(argv: readonly string[], today = new Date()): BenchOptions | undefined {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!m) throw new UsageError(`unexpected argument ${arg}`);
    flags.set(m[1] as string, m[2] ?? 'true');
  }
  if (flags.has('help')) return undefined;
  const known = ['datapaths', 'metrics', 'duration', 'repeats', 'pings', 'rpc-rate', 'peers', 'quick', 'out', 'underlay', 'peer', 'role', 'etcd'];
  const unknown = [...flags.keys()].filter((k) => !known.includes(k));
  if (unknown.length > 0) throw new UsageError(`unknown flag --${unknown[0]}`);
  const quick = flags.get('quick') === 'true';
  const all = [...DATAPATH_METRICS, ...CONTROL_METRICS];
  const metrics = flags.has('metrics') ? list('metrics', flags.get('metrics') as string, all) : all;
  const date = today.toISOString().slice(0, 10);
  return {
    datapaths: flags.has('datapaths') ? parseDataPaths(flags.get('datapaths') as string) : [...DATAPATH_IDS],
    metrics: metrics.filter((m): m is DataPathMetric => (DATAPATH_METRICS as readonly string[]).includes(m)),
    control: metrics.filter((m): m is ControlMetric => (CONTROL_METRICS as readonly string[]).includes(m)),
    durationSec: int('duration', flags.get('duration') ?? (quick ? '1' : '5'), 1),
    repeats: int('repeats', flags.get('repeats') ?? (quick ? '2' : '3'), 1),
    pings: int('pings', flags.get('pings') ?? (quick ? '200' : '300'), 200),
    rpcRate: int('rpc-rate', flags.get('rpc-rate') ?? '0', 0),
    peers: (flags.get('peers') ?? '10,100,1000,5000').split(',').map((p) => int('peers', p, 1)),
    quick,
    out: flags.get('out') ?? freshPrefix(join(repoRoot(), 'bench', 'results', `${date}${quick ? '-quick' : ''}`)),
    ...underlay(flags),
  };
}

/** The default result prefix never overwrites an earlier run of the same day: PREFIX, then PREFIX-2, -3… */
export function freshPrefix(prefix: string): string {
  const taken = (p: string): boolean => ['.json', '.txt', '.svg'].some((ext) => existsSync(`${p}${ext}`));
  let candidate = prefix;
  for (let n = 2; taken(candidate); n++) candidate = `${prefix}-${n}`;
  return candidate;
}

function underlay(flags: Map<string, string>): { underlay?: UnderlayOptions } {
  const iface = flags.get('underlay');
  const rest = ['peer', 'role', 'etcd'].filter((k) => flags.has(k));
  if (!iface) {
    if (rest.length > 0) throw new UsageError(`--${rest[0]} only makes sense with --underlay=IFACE`);
    return {};
  }
  const peer = flags.get('peer');
  const role = flags.get('role');
  const etcd = flags.get('etcd');
  if (!peer || !/^\d+\.\d+\.\d+\.\d+$/.test(peer)) throw new UsageError('--underlay needs --peer=<the other host\'s IPv4 address>');
  if (role !== 'a' && role !== 'b') throw new UsageError('--underlay needs --role=a (drives and measures) or --role=b (serves)');
  if (!etcd || !/^https?:\/\//.test(etcd)) throw new UsageError('--underlay needs --etcd=http://<host>:2379, an etcd both hosts reach');
  return { underlay: { iface, peer, role, etcd } };
}
