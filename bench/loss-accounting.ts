// Where the datagrams of a 64-byte UDP flood go: builds data paths as `npm run bench` does (its own
// namespaces each), runs one `iperf3 -u -l 64 -b 0` per path, and prints the change of every counter
// on the way between a snapshot before and one after: each namespace's links (packets, drops), the
// UDP MIB (/proc/net/snmp), each UDP socket's drops (/proc/net/udp), the machine's per-CPU backlog
// drops (/proc/net/softnet_stat, shared by all namespaces) and, for our flanneld, its /metrics.
//
//   npm run build && node dist/bench/loss-accounting.js --datapaths=udp,vxlan --duration=3
//
// Nothing is derived: the figures are the kernel's and the daemon's own; reading them is up to you
// (bench/README.md, "Where a 64-byte flood is lost", walks through one run).
import { execIn } from '../deploy/local/netns.js';
import { UsageError } from './cli/options.js';
import { installCrashHandlers, installSignalHandlers, teardownAll } from './cli/teardown.js';
import { dataPathDef } from './datapaths/catalog.js';
import { type LocalPath, setupLocalPath } from './datapaths/local-paths.js';
import { execOn, withTimeout } from './lib/exec.js';
import { readdir, readFile, readlink, stat } from 'node:fs/promises';
import { ALL_DATAPATH_IDS, type DataPathId } from './report/result-types.js';

const METRICS_PORT = 18490;
const LINK_FIELDS = ['rx_packets', 'tx_packets', 'rx_dropped', 'tx_dropped', 'rx_errors', 'tx_errors', 'rx_missed_errors', 'tx_fifo_errors'] as const;

type Snapshot = Map<string, number>;

interface LinkJson { ifname: string; stats64?: { rx?: Record<string, number>; tx?: Record<string, number> } }

async function linkCounters(ns: string, into: Snapshot): Promise<void> {
  const r = await execIn(ns, 'ip', ['-s', '-s', '-j', 'link', 'show']);
  for (const link of JSON.parse(r.stdout || '[]') as LinkJson[]) {
    if (link.ifname === 'lo') continue;
    for (const dir of ['rx', 'tx'] as const) {
      for (const [k, v] of Object.entries(link.stats64?.[dir] ?? {})) {
        const name = `${dir}_${k}`;
        if ((LINK_FIELDS as readonly string[]).includes(name) || (LINK_FIELDS as readonly string[]).includes(`${dir}_${k}_errors`)) into.set(`${ns} link ${link.ifname} ${name}`, v);
      }
    }
  }
}

async function udpCounters(ns: string, into: Snapshot): Promise<void> {
  const r = await execIn(ns, 'sh', ['-c', 'cat /proc/net/snmp; echo ---; cat /proc/net/udp']);
  const [snmp = '', sockets = ''] = r.stdout.split('---\n');
  const udp = snmp.split('\n').filter((l) => l.startsWith('Udp: '));
  if (udp.length === 2) {
    const names = (udp[0] as string).split(/\s+/).slice(1);
    const values = (udp[1] as string).split(/\s+/).slice(1).map(Number);
    names.forEach((n, i) => into.set(`${ns} snmp Udp ${n}`, values[i] ?? 0));
  }
  for (const line of sockets.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 13) continue;
    const [ip, port] = (f[1] as string).split(':') as [string, string];
    const addr = [3, 2, 1, 0].map((i) => parseInt(ip.slice(i * 2, i * 2 + 2), 16)).join('.');
    into.set(`${ns} udp-socket ${addr}:${parseInt(port, 16)} inode ${f[9]} drops`, Number(f[12]));
  }
}

async function softnetDrops(into: Snapshot): Promise<void> {
  const text = await readFile('/proc/net/softnet_stat', 'utf8');
  let processed = 0, dropped = 0, squeezed = 0;
  for (const line of text.trim().split('\n')) {
    const f = line.split(/\s+/).map((h) => parseInt(h, 16));
    processed += f[0] ?? 0;
    dropped += f[1] ?? 0;
    squeezed += f[2] ?? 0;
  }
  into.set('machine softnet processed', processed);
  into.set('machine softnet dropped (netdev_max_backlog)', dropped);
  into.set('machine softnet time_squeeze', squeezed);
}

async function daemonCounters(ns: string, into: Snapshot): Promise<void> {
  const r = await execIn(ns, process.execPath, ['-e', `fetch("http://127.0.0.1:${METRICS_PORT}/metrics").then(r=>r.text()).then(console.log,()=>{})`]);
  for (const line of r.stdout.split('\n')) {
    if (!/^flanneld_(datapath|peer|device|udp)_/.test(line)) continue;
    const i = line.lastIndexOf(' ');
    into.set(`${ns} metric ${line.slice(0, i)}`, Number(line.slice(i + 1)));
  }
}

/** CPU seconds (utime + stime) of every thread living in one of `namespaces`, summed by process name and
 * thread name, and the machine's softirq and busy time from /proc/stat. */
async function cpuTimes(namespaces: readonly string[], into: Snapshot): Promise<void> {
  const hz = 100;
  const inodes = new Map<number, string>();
  for (const ns of namespaces) inodes.set((await stat(`/run/netns/${ns}`)).ino, ns);
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const link = await readlink(`/proc/${pid}/ns/net`).catch(() => '');
    const ns = inodes.get(Number(/\[(\d+)\]/.exec(link)?.[1]));
    if (!ns) continue;
    const comm = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '?')).trim();
    for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
      const text = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => '');
      const close = text.lastIndexOf(')');
      if (close < 0) continue;
      const name = text.slice(text.indexOf('(') + 1, close);
      const f = text.slice(close + 2).split(' ');
      const key = `${ns} cpu-ms ${comm}/${name}`;
      into.set(key, (into.get(key) ?? 0) + ((Number(f[11]) + Number(f[12])) * 1000) / hz);
    }
  }
  const cpu = (await readFile('/proc/stat', 'utf8')).split('\n')[0]?.split(/\s+/).slice(1).map(Number) ?? [];
  into.set('machine cpu-ms softirq (all CPUs)', ((cpu[6] ?? 0) * 1000) / hz);
  into.set('machine cpu-ms idle (all CPUs)', (((cpu[3] ?? 0) + (cpu[4] ?? 0)) * 1000) / hz);
}

async function snapshot(path: LocalPath, daemon: boolean): Promise<Snapshot> {
  const s: Snapshot = new Map();
  for (const ns of namespacesOf(path)) {
    await linkCounters(ns, s);
    await udpCounters(ns, s);
  }
  if (daemon) for (const n of path.topo.nodes) await daemonCounters(n.ns, s);
  await softnetDrops(s);
  return s;
}

interface IperfUdp { end?: { sum?: { packets?: number; lost_packets?: number; seconds?: number }; sum_sent?: { packets?: number }; sum_received?: { packets?: number; lost_packets?: number } } }

function namespacesOf(path: LocalPath): string[] {
  return [path.pods[0]?.ns, ...path.topo.nodes.map((n) => n.ns), path.topo.underlayNs, path.pods[1]?.ns].filter((n): n is string => !!n);
}

interface FloodResult { readonly text: string; readonly sent: number; readonly received: number; readonly kpps: number; readonly lossPct: number }

async function flood(path: LocalPath, durationSec: number, cpu: { before?: Snapshot; after?: Snapshot; ms?: number }, v: Variant): Promise<FloodResult> {
  const server = execOn(path.ready.server.ns, 'iperf3', ['-s', '-1', '-B', path.ready.server.ip]);
  await new Promise((r) => setTimeout(r, 500));
  // CPU of every thread in the path's namespaces, from 0.5 s into the flood to 0.5 s before its end.
  const sampler = (async () => {
    await new Promise((r) => setTimeout(r, 500));
    const before: Snapshot = new Map();
    await cpuTimes(namespacesOf(path), before);
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, durationSec * 1000 - 1000));
    const after: Snapshot = new Map();
    await cpuTimes(namespacesOf(path), after);
    Object.assign(cpu, { before, after, ms: Date.now() - t0 });
  })();
  const r = await withTimeout(execOn(path.ready.client.ns, 'iperf3', ['-c', path.ready.server.ip, '-u', '-l', '64', '-b', v.rate, ...(v.window ? ['-w', v.window] : []), '-t', String(durationSec), '-J']), (durationSec + 30) * 1000, 'iperf3 client');
  await withTimeout(server, 10_000, 'iperf3 server');
  await sampler;
  const j = JSON.parse(r.stdout) as IperfUdp;
  const sent = j.end?.sum_sent?.packets ?? j.end?.sum?.packets;
  const rx = j.end?.sum_received ?? j.end?.sum;
  const got = (rx?.packets ?? 0) - (rx?.lost_packets ?? 0);
  const kpps = got / (j.end?.sum?.seconds ?? durationSec) / 1000;
  const lossPct = (100 * (rx?.lost_packets ?? 0)) / (rx?.packets || 1);
  return {
    text: `iperf3: client sent ${sent}, server counted ${rx?.packets} (its highest sequence number), lost ${rx?.lost_packets}, received ${got} = ${kpps.toFixed(0)} kpps, loss ${lossPct.toFixed(1)} %`,
    sent: sent ?? 0, received: got, kpps, lossPct,
  };
}

/** One flood's settings: iperf3 -b (0: unthrottled) and -w (socket buffers, 0: the default), and the
 * txqueuelen of the path's TUN/TAP devices (0: as created). */
interface Variant { readonly name: string; readonly rate: string; readonly window: string; readonly txqueuelen: number }

function parseVariant(text: string): Variant {
  const v = { name: text, rate: '0', window: '', txqueuelen: 0 };
  for (const part of text.split('+')) {
    const [k, val = ''] = part.split('=');
    if (k === 'base') continue;
    if (k === 'rate') v.rate = val;
    else if (k === 'window') v.window = val;
    else if (k === 'txqueuelen') v.txqueuelen = Number(val);
    else throw new UsageError(`--variants: ${part} is not base, rate=<iperf3 -b>, window=<iperf3 -w> or txqueuelen=<n>`);
  }
  return v;
}

const TUNNEL_DEVICES = ['flannel0', 'flannel.1', 'trelay0'];

async function setTxqueuelen(path: LocalPath, len: number): Promise<void> {
  for (const n of path.topo.nodes) {
    for (const dev of TUNNEL_DEVICES) await execIn(n.ns, 'ip', ['link', 'set', 'dev', dev, 'txqueuelen', String(len)]);
  }
}

const summary: string[] = [];

/** Where the datagrams the receiver did not get went, by the counters that moved: sent − received =
 * the tunnel device's tx_dropped (sender side) + rx_dropped + drops at the nodes' UDP sockets (ours, or
 * the kernel VXLAN socket: the nodes' Udp RcvbufErrors) + our engine's drops by reason + drops of any
 * other link (veth, bridge) + the backlog (softnet, machine-wide) + the receiving application's socket
 * (the server pod's Udp RcvbufErrors) + what is left (in flight when iperf3 stopped, or unexplained). */
function accountFor(path: LocalPath, before: Snapshot, after: Snapshot, r: FloodResult): string {
  const delta = (match: (k: string) => boolean): number => {
    let n = 0;
    for (const [k, v] of after) if (match(k)) n += v - (before.get(k) ?? 0);
    return n;
  };
  const nodes = path.topo.nodes.map((n) => n.ns);
  const server = path.pods[1]?.ns ?? '';
  const onNode = (k: string): boolean => nodes.some((n) => k.startsWith(`${n} `));
  const tunnel = (k: string): boolean => TUNNEL_DEVICES.some((d) => k.includes(` link ${d} `));
  const parts: Array<[string, number]> = [
    ['device tx_dropped', delta((k) => onNode(k) && tunnel(k) && k.endsWith(' tx_dropped'))],
    ['device rx_dropped', delta((k) => onNode(k) && tunnel(k) && k.endsWith(' rx_dropped'))],
    ['node UDP sockets', delta((k) => onNode(k) && k.endsWith(' snmp Udp RcvbufErrors'))],
    ['engine drops', delta((k) => onNode(k) && k.includes(' metric flanneld_datapath_dropped_packets_total'))],
    ['other links', delta((k) => !tunnel(k) && / link .* (rx|tx)_dropped$/.test(k))],
    ['backlog', delta((k) => k === 'machine softnet dropped (netdev_max_backlog)')],
    ['receiver socket', delta((k) => k.startsWith(`${server} `) && k.endsWith(' snmp Udp RcvbufErrors'))],
  ];
  const lost = r.sent - r.received;
  const rest = lost - parts.reduce((n, [, v]) => n + v, 0);
  const pct = (n: number): string => `${((100 * n) / (r.sent || 1)).toFixed(1)} %`;
  return `sent ${r.sent}, received ${r.received} (${r.kpps.toFixed(0)} kpps), lost ${lost} (${pct(lost)}) = ` +
    [...parts, ['rest', rest] as [string, number]].map(([name, n]) => `${name} ${n} (${pct(n)})`).join(' + ');
}

async function account(id: DataPathId, durationSec: number, variants: readonly Variant[]): Promise<void> {
  const def = dataPathDef(id);
  const ours = def.backend !== undefined && def.daemon !== 'flannel';
  const path = await setupLocalPath(def, ours ? { daemonArgs: [`--healthz-port=${METRICS_PORT}`] } : {});
  try {
    const initialQueue = /qlen (\d+)/.exec((await Promise.all(path.topo.nodes.map((n) => execIn(n.ns, 'ip', ['link', 'show'])))).map((r) => r.stdout).join('\n').split('\n').find((l) => TUNNEL_DEVICES.some((d) => l.includes(` ${d}:`))) ?? '')?.[1];
    for (const v of variants) {
      await setTxqueuelen(path, v.txqueuelen || Number(initialQueue ?? 500));
      const before = await snapshot(path, ours);
      const cpu: { before?: Snapshot; after?: Snapshot; ms?: number } = {};
      const result = await flood(path, durationSec, cpu, v);
      await new Promise((r) => setTimeout(r, 300));
      const after = await snapshot(path, ours);
      process.stdout.write(`\n== ${def.label} (${id}), ${v.name}: client ${path.ready.client.ns} ${path.ready.client.ip} → server ${path.ready.server.ns} ${path.ready.server.ip}\n${result.text}\n`);
      const line = accountFor(path, before, after, result);
      process.stdout.write(`  ${line}\n`);
      summary.push(`${id.padEnd(13)} ${v.name.padEnd(26)} ${line}`);
      for (const [k, val] of after) {
        const d = val - (before.get(k) ?? 0);
        if (d !== 0 && !/ (Out|In)CsumErrors|IgnoredMulti|MemErrors/.test(k)) process.stdout.write(`  ${String(d).padStart(10)}  ${k}\n`);
      }
      process.stdout.write(`  CPU during ${cpu.ms} ms of the flood, % of one CPU:\n`);
      for (const [k, val] of cpu.after ?? []) {
        const d = val - (cpu.before?.get(k) ?? 0);
        if (d > 0) process.stdout.write(`  ${((100 * d) / (cpu.ms ?? 1)).toFixed(0).padStart(10)}  ${k.replace(' cpu-ms', '')}\n`);
      }
    }
  } finally {
    await path.destroy();
  }
}

const USAGE = 'usage: loss-accounting [--datapaths=kernel-vxlan,tun-relay,udp,vxlan] [--duration=3] [--variants=base,txqueuelen=4096,window=4M,rate=30M,…] (+ joins settings)';

async function main(argv: readonly string[]): Promise<number> {
  let ids: DataPathId[] = ['kernel-vxlan', 'tun-relay', 'udp', 'vxlan'];
  let duration = 3;
  let variants: Variant[] = [parseVariant('base')];
  for (const arg of argv) {
    const m = /^--(datapaths|duration|variants)=(.+)$/.exec(arg);
    if (!m) throw new UsageError(USAGE);
    if (m[1] === 'duration') duration = Number(m[2]);
    else if (m[1] === 'variants') variants = (m[2] as string).split(',').map(parseVariant);
    else ids = (m[2] as string).split(',').map((s) => {
      if (!(ALL_DATAPATH_IDS as readonly string[]).includes(s)) throw new UsageError(`unknown data path ${s}`);
      return s as DataPathId;
    });
  }
  if (!(duration >= 2)) throw new UsageError(`--duration must be at least 2 s\n${USAGE}`);
  for (const id of ids) await account(id, duration, variants);
  process.stdout.write(`\nSummary (loss as a share of what the client sent):\n${summary.join('\n')}\n`);
  return 0;
}

installSignalHandlers();
installCrashHandlers();
main(process.argv.slice(2)).then(
  async (code) => { await teardownAll(); process.exit(code); },
  async (err: unknown) => { process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`); await teardownAll(); process.exit(1); },
);

