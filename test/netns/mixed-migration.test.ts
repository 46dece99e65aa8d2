// Migrating a running cluster from the real flannel (flannel-io/flannel, deploy/local/real-flannel.ts) to
// flannel-ts node by node, and rolling one node back, per backend (issue #17). Three nodes start on the real
// flanneld with pods pinging each other every 50 ms; each step stops one node's daemon (SIGTERM) and starts the
// other daemon with the same --public-ip and subnet.env. Every node must keep its subnet; the pings lost during
// each step are counted per backend. host-gw and kernel VXLAN must lose none (their kernel state outlives the
// daemon, and ours adopts flannel's VXLAN device with its MAC); udp and the userspace VTEP replace the device,
// so a short outage is reported and bounded.
import t, { type Test } from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalCluster } from '../../deploy/local/local-cluster.js';
import { type SpawnedProcess, execIn, ipIn, runTag, spawnIn, stopProcess } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import { freshSubnet, realFlannelOrSkipTest, running } from '../helpers/mixed-cluster.js';
import { allPairsPing } from '../helpers/pod-traffic.js';

const SUBNETS = '/coreos.com/network/subnets';
const PING_INTERVAL_S = 0.05;

interface Case {
  readonly name: string;
  readonly backend: Record<string, unknown>;
  /** Extra flags for our daemon. */
  readonly ours: readonly string[];
  /** Zero loss is asserted; otherwise the loss is reported and bounded by `maxLostPerPair`. */
  readonly lossless: boolean;
  /** The device our daemon must leave behind, and what kind it must be (`ip -d link`). */
  readonly device?: { readonly name: string; readonly ours: RegExp; readonly flannel: RegExp };
}

const CASES: readonly Case[] = [
  { name: 'host-gw', backend: { Type: 'host-gw' }, ours: [], lossless: true },
  { name: 'vxlan (kernel)', backend: { Type: 'vxlan' }, ours: ['--vxlan-datapath=kernel'], lossless: true,
    device: { name: 'flannel.1', ours: /\bvxlan id 1\b/, flannel: /\bvxlan id 1\b/ } },
  { name: 'vxlan (userspace)', backend: { Type: 'vxlan' }, ours: ['--vxlan-datapath=userspace'], lossless: false,
    device: { name: 'flannel.1', ours: /\btun type tap\b/, flannel: /\bvxlan id 1\b/ } },
  { name: 'udp', backend: { Type: 'udp' }, ours: [], lossless: false,
    device: { name: 'flannel0', ours: /\btun type tun\b/, flannel: /\btun type tun\b/ } },
];

/** Per pair, at most this many pings (3 s at 50 ms) may be lost in one step where loss is only reported. */
const MAX_LOST_PER_PAIR = 60;

/** A ping stream from one pod to another, stopped with SIGINT; reports the pings that got no answer. */
class Pinger {
  private readonly proc: SpawnedProcess;
  constructor(readonly from: PodHost, readonly to: PodHost) {
    this.proc = spawnIn(from.ns, 'ping', ['-n', '-i', String(PING_INTERVAL_S), '-W', '1', to.ip]);
  }

  /** Stops the stream; lost = sequence numbers sent without an answer (the very last one may be in flight). */
  async stop(): Promise<{ sent: number; lost: number }> {
    await stopProcess(this.proc, 'SIGINT', 3000);
    const out = this.proc.output();
    const sent = Number(/(\d+) packets transmitted/.exec(out)?.[1] ?? NaN);
    const answered = new Set([...out.matchAll(/icmp_seq=(\d+) ttl=/g)].map((m) => Number(m[1])));
    let lost = 0;
    for (let seq = 1; seq < sent; seq++) if (!answered.has(seq)) lost++;
    if (!Number.isFinite(sent)) throw new Error(`ping ${this.from.ip} → ${this.to.ip} printed no summary:\n${out}`);
    return { sent, lost };
  }
}


/** The lease key held by a PublicIP, and its value. */
async function leaseOf(c: LocalCluster, publicIp: string): Promise<{ key: string; value: Record<string, unknown> } | undefined> {
  const out = await c.etcd.ctlChecked(['get', '--prefix', SUBNETS]);
  const lines = out.split('\n').filter(Boolean);
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const value = JSON.parse(lines[i + 1] as string) as Record<string, unknown>;
    if (value.PublicIP === publicIp) return { key: lines[i] as string, value };
  }
  return undefined;
}

const macOf = async (node: NodeHost, dev: string): Promise<string> =>
  (JSON.parse(await ipIn(node.ns, ['-j', 'link', 'show', dev])) as Array<{ address: string }>)[0]!.address;

const keyOf = (flannelSubnet: string): string => `${SUBNETS}/${flannelSubnet.replace(/\.1\//, '.0-')}`;

/** The loss table of the whole file, printed at the end. */
const table: string[] = [];

async function migrate(tt: Test, bin: string, k: Case): Promise<void> {
  const c = await LocalCluster.create({ tag: runTag('mm'), nodes: 3 });
  tt.teardown(() => c.destroy());
  await c.putConfig({ Network: '10.244.0.0/16', Backend: k.backend });
  const publicIp = (n: NodeHost): string => `--public-ip=${n.underlayIp}`;
  const startedAt = Date.now();
  for (const n of c.nodes) c.startFlannel(n, bin, [publicIp(n)]);
  const subnets = new Map<string, string>();
  for (const n of c.nodes) subnets.set(n.name, await freshSubnet(c, n, startedAt));
  const pods: PodHost[] = [];
  for (const n of c.nodes) pods.push(await c.addPod(n, subnets.get(n.name) as string));
  await allPairsPing(c, pods, 30_000);
  const [n1, n2, n3] = c.nodes as [NodeHost, NodeHost, NodeHost];

  const steps: Array<{ node: NodeHost; to: 'flannel-ts' | 'flannel' }> = [
    { node: n1, to: 'flannel-ts' }, { node: n2, to: 'flannel-ts' }, { node: n3, to: 'flannel-ts' }, { node: n1, to: 'flannel' },
  ];
  const row: string[] = [];
  for (const step of steps) {
    const { node } = step;
    const label = `${node.name} ${step.to === 'flannel-ts' ? 'flannel → flannel-ts' : 'flannel-ts → flannel'}`;
    const before = await leaseOf(c, node.underlayIp);
    const macBefore = k.device?.name === 'flannel.1' ? await macOf(node, 'flannel.1') : undefined;
    const pingers = pods.flatMap((from) => pods.filter((to) => to !== from).map((to) => new Pinger(from, to)));
    await sleep(300);
    const stopped = Date.now();
    tt.equal(await c.stopDaemon(node, 'SIGTERM'), 0, `${k.name}, ${label}: the old daemon exits 0 on SIGTERM`);
    if (step.to === 'flannel-ts') c.startDaemon(node, [publicIp(node), ...k.ours]);
    else c.startFlannel(node, bin, [publicIp(node)]);
    const subnet = await freshSubnet(c, node, stopped);
    await allPairsPing(c, pods, 20_000);
    await sleep(1000);
    const results = await Promise.all(pingers.map((p) => p.stop()));
    const lost = results.reduce((a, r) => a + r.lost, 0);
    const sent = results.reduce((a, r) => a + r.sent, 0);
    const worst = Math.max(...results.map((r) => r.lost));
    row.push(`${label}: ${lost}/${sent} lost (worst pair ${worst}, ${(worst * PING_INTERVAL_S).toFixed(2)} s)`);
    tt.comment(`${k.name}, ${label}: ${lost} of ${sent} pings lost (6 pairs, worst pair ${worst} ≈ ${(worst * PING_INTERVAL_S).toFixed(2)} s)`);

    tt.equal(subnet, subnets.get(node.name), `${k.name}, ${label}: the node keeps its subnet ${subnets.get(node.name)}`);
    const after = await leaseOf(c, node.underlayIp);
    tt.equal(after?.key, keyOf(subnets.get(node.name) as string), `${k.name}, ${label}: its lease key is unchanged (${before?.key})`);
    tt.ok(running(c, node), `${k.name}, ${label}: the new daemon runs`);
    if (k.device) {
      const link = await ipIn(node.ns, ['-d', 'link', 'show', k.device.name]).catch(() => '');
      tt.match(link, step.to === 'flannel-ts' ? k.device.ours : k.device.flannel, `${k.name}, ${label}: ${k.device.name} is the ${step.to} data path's device`);
    }
    if (macBefore !== undefined) {
      const mac = await macOf(node, 'flannel.1');
      const vtepMac = (after?.value.BackendData as { VtepMAC?: string } | undefined)?.VtepMAC;
      tt.equal(vtepMac, mac, `${k.name}, ${label}: the lease publishes flannel.1's MAC`);
      if (k.lossless) tt.equal(mac, macBefore, `${k.name}, ${label}: the kernel VXLAN device is adopted with its MAC ${macBefore}`);
    }
    // Both daemons keep the same FLANNEL-FWD rules (flannel leaves its rules behind on SIGTERM; ours removes
    // its own): after the switch they are there exactly once.
    const fwd = (await execIn(node.ns, 'iptables', ['-S'])).stdout.split('\n').filter((l) => l.includes('flanneld forward'));
    tt.same(fwd.sort(), [
      '-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
      '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
      '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
    ], `${k.name}, ${label}: the forward rules are there once`);
    if (k.lossless) tt.equal(lost, 0, `${k.name}, ${label}: no ping lost`);
    else tt.ok(worst <= MAX_LOST_PER_PAIR, `${k.name}, ${label}: at most ${MAX_LOST_PER_PAIR} pings (${MAX_LOST_PER_PAIR * PING_INTERVAL_S} s) lost per pair (worst ${worst})`);
  }
  table.push(`${k.name}: ${row.join('; ')}`);
  // Every node's subnet is where it started, all three leases are there.
  for (const n of c.nodes) tt.equal((await leaseOf(c, n.underlayIp))?.key, keyOf(subnets.get(n.name) as string), `${k.name}: ${n.name} ends on its first subnet`);
}

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces');
} else {
  const bin = await realFlannelOrSkipTest(t);
  if (bin) {
    for (const k of CASES) await t.test(`migration, ${k.name}: 3 flannel nodes → flannel-ts one by one → one back to flannel`, (tt) => migrate(tt, bin, k));
    t.comment(`lost pings per step (50 ms interval, 6 pod pairs):\n${table.join('\n')}`);
  }
}
