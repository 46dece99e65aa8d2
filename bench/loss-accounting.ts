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
import { readFile } from 'node:fs/promises';
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

async function snapshot(path: LocalPath, daemon: boolean): Promise<Snapshot> {
  const s: Snapshot = new Map();
  const namespaces = [path.pods[0]?.ns, ...path.topo.nodes.map((n) => n.ns), path.topo.underlayNs, path.pods[1]?.ns].filter((n): n is string => !!n);
  for (const ns of namespaces) {
    await linkCounters(ns, s);
    await udpCounters(ns, s);
  }
  if (daemon) for (const n of path.topo.nodes) await daemonCounters(n.ns, s);
  await softnetDrops(s);
  return s;
}

interface IperfUdp { end?: { sum?: { packets?: number; lost_packets?: number; seconds?: number }; sum_sent?: { packets?: number }; sum_received?: { packets?: number; lost_packets?: number } } }

async function flood(path: LocalPath, durationSec: number): Promise<string> {
  const server = execOn(path.ready.server.ns, 'iperf3', ['-s', '-1', '-B', path.ready.server.ip]);
  await new Promise((r) => setTimeout(r, 500));
  const r = await withTimeout(execOn(path.ready.client.ns, 'iperf3', ['-c', path.ready.server.ip, '-u', '-l', '64', '-b', '0', '-t', String(durationSec), '-J']), (durationSec + 30) * 1000, 'iperf3 client');
  await withTimeout(server, 10_000, 'iperf3 server');
  const j = JSON.parse(r.stdout) as IperfUdp;
  const sent = j.end?.sum_sent?.packets ?? j.end?.sum?.packets;
  const rx = j.end?.sum_received ?? j.end?.sum;
  const got = (rx?.packets ?? 0) - (rx?.lost_packets ?? 0);
  return `iperf3: client sent ${sent}, server counted ${rx?.packets} (its highest sequence number), lost ${rx?.lost_packets}, received ${got} = ${(got / (j.end?.sum?.seconds ?? durationSec) / 1000).toFixed(0)} kpps, loss ${((100 * (rx?.lost_packets ?? 0)) / (rx?.packets || 1)).toFixed(1)} %`;
}

async function account(id: DataPathId, durationSec: number): Promise<void> {
  const def = dataPathDef(id);
  const ours = def.backend !== undefined && def.daemon !== 'flannel';
  const path = await setupLocalPath(def, ours ? { daemonArgs: [`--healthz-port=${METRICS_PORT}`] } : {});
  try {
    const before = await snapshot(path, ours);
    const summary = await flood(path, durationSec);
    await new Promise((r) => setTimeout(r, 300));
    const after = await snapshot(path, ours);
    process.stdout.write(`\n== ${def.label} (${id}): client ${path.ready.client.ns} ${path.ready.client.ip} → server ${path.ready.server.ns} ${path.ready.server.ip}\n${summary}\n`);
    for (const [k, v] of after) {
      const d = v - (before.get(k) ?? 0);
      if (d !== 0 && !/ (Out|In)CsumErrors|IgnoredMulti|MemErrors/.test(k)) process.stdout.write(`  ${String(d).padStart(10)}  ${k}\n`);
    }
  } finally {
    await path.destroy();
  }
}

async function main(argv: readonly string[]): Promise<number> {
  let ids: DataPathId[] = ['kernel-vxlan', 'tun-relay', 'udp', 'vxlan'];
  let duration = 3;
  for (const arg of argv) {
    const m = /^--(datapaths|duration)=(.+)$/.exec(arg);
    if (!m) throw new UsageError(`usage: loss-accounting [--datapaths=${ids.join(',')}] [--duration=3]`);
    if (m[1] === 'duration') duration = Number(m[2]);
    else ids = (m[2] as string).split(',').map((s) => {
      if (!(ALL_DATAPATH_IDS as readonly string[]).includes(s)) throw new UsageError(`unknown data path ${s}`);
      return s as DataPathId;
    });
  }
  for (const id of ids) await account(id, duration);
  return 0;
}

installSignalHandlers();
installCrashHandlers();
main(process.argv.slice(2)).then(
  async (code) => { await teardownAll(); process.exit(code); },
  async (err: unknown) => { process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`); await teardownAll(); process.exit(1); },
);

