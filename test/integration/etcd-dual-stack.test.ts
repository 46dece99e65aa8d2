// Dual-stack leases against a real etcd on loopback (issue #18): the subnet manager and registry with
// an IPv6 pool in the config. Two nodes get distinct IPv4+IPv6 pairs; a lease is reused by PublicIP
// and from subnet.env; an IPv4-only lease of ours becomes dual-stack with the same IPv4 subnet (flannel
// would reallocate it), in a transaction that cannot clobber another node; a lease written by a flannel
// node is read, counted as taken in both families and renewed under its own key; each family can run out.
import { pino } from 'pino';
import t, { type Test } from 'tap';
import type { EtcdServer } from '../../deploy/local/etcd-server.js';
import { createEtcdClient } from '../../subnet/etcd/etcd-client.js';
import { EtcdRegistry } from '../../subnet/etcd/etcd-registry.js';
import { EtcdSubnetManager, type SubnetEvent } from '../../subnet/etcd/etcd-subnet-manager.js';
import { type Cidr4, formatCidr4, parseCidr4, parseIp4 } from '../../lib/ip.js';
import { type Cidr6, formatCidr6, parseCidr6, parseIp6 } from '../../lib/ip6.js';
import { isFlannelError } from '../../lib/errors.js';
import type { Lease, LeaseAttrs } from '../../subnet/lease.js';
import { type NetworkConfig, parseNetworkConfig, parseNetworkConfigAllFamilies } from '../../subnet/network-config.js';
import { clientEndpoints, startLoopbackEtcd } from '../helpers/loopback-etcd.js';

const c4 = (s: string): Cidr4 => parseCidr4(s) as Cidr4;
const c6 = (s: string): Cidr6 => parseCidr6(s) as Cidr6;
const attrs = (ip: string, ip6?: string): LeaseAttrs => ({
  publicIp: parseIp4(ip) as number, ...(ip6 ? { publicIpv6: parseIp6(ip6) as bigint } : {}), backendType: 'host-gw',
});

/** A dual-stack NetworkConfig, as the daemon will build it once IPv6 is wired in. */
function dualConfig(extra: Record<string, unknown> = {}): NetworkConfig {
  const all = parseNetworkConfigAllFamilies(JSON.stringify({
    Network: '10.7.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:7::/48', Backend: { Type: 'host-gw' }, ...extra,
  }), 'test');
  if (!all.ipv4 || !all.ipv6) throw new Error('test setup: not dual-stack');
  return { ipv4: all.ipv4, enableNFTables: all.enableNFTables, backendType: all.backendType, backend: all.backend, ipv6: all.ipv6 };
}
const V4_CFG = parseNetworkConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"host-gw"}}', 'test');
const DUAL = dualConfig();

let etcd: EtcdServer;
let prefixes = 0;

t.before(async () => { etcd = await startLoopbackEtcd(t); });

interface Node { reg: EtcdRegistry; mgr: EtcdSubnetManager; events: SubnetEvent[]; logs: string[] }

function node(t: Test, prefix: string, random: () => number = () => 0): Node {
  const reg = new EtcdRegistry(createEtcdClient({ endpoints: clientEndpoints(etcd) }), prefix);
  const events: SubnetEvent[] = [];
  const logs: string[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => { logs.push((JSON.parse(s) as { msg: string }).msg); } });
  const mgr = new EtcdSubnetManager(reg, { log, leaseTtlSec: 600, random, onEvent: (ev) => events.push(ev) });
  t.teardown(() => mgr.close());
  return { reg, mgr, events, logs };
}

const freshPrefix = (): string => `/dual-${process.pid}-${++prefixes}/network`;

async function keys(prefix: string): Promise<string[]> {
  const out = await etcd.ctlChecked(['get', `${prefix}/subnets/`, '--prefix', '--keys-only']);
  return out.split('\n').filter((l) => l !== '').map((k) => k.slice(`${prefix}/subnets/`.length)).sort();
}

/** The etcd lease id (decimal) holding `key`, '0' for none, undefined when missing. */
async function holderOf(key: string): Promise<string | undefined> {
  const out = await etcd.ctlChecked(['get', key, '-w', 'json']);
  if (!out.includes('"kvs"')) return undefined;
  return /"lease":(\d+)/.exec(out)?.[1] ?? '0';
}

/** An etcd lease granted by etcdctl (as another node would), in hex for etcdctl put --lease. */
async function grant(ttlSec: number): Promise<string> {
  const out = await etcd.ctlChecked(['lease', 'grant', String(ttlSec)]);
  return /lease ([0-9a-f]+) granted/.exec(out)?.[1] as string;
}

const acquire = (n: Node, cfg: NetworkConfig, a: LeaseAttrs, o: { previousSubnet?: Cidr4; previousIpv6Subnet?: Cidr6 } = {}): Promise<Lease> =>
  n.mgr.acquireLease(cfg, a, { ...o, signal: AbortSignal.timeout(20_000) });

const pair = (l: Lease): string => `${formatCidr4(l.subnet)} ${l.ipv6Subnet ? formatCidr6(l.ipv6Subnet) : '-'}`;
const sourceOf = (n: Node): string | undefined => {
  const ev = n.events.findLast((e) => e.type === 'lease-acquired');
  return ev?.type === 'lease-acquired' ? ev.source : undefined;
};

t.test('two nodes get distinct IPv4+IPv6 pairs under dual-stack keys, with flannel\'s value', async (t) => {
  const prefix = freshPrefix();
  const a = node(t, prefix);
  const b = node(t, prefix);
  const la = await acquire(a, DUAL, attrs('192.0.2.1', '2001:db8::1'));
  const lb = await acquire(b, DUAL, attrs('192.0.2.2', '2001:db8::2'));
  t.equal(pair(la), '10.7.1.0/24 fd00:7:0:1::/64', 'the first free of each family (random 0)');
  t.equal(pair(lb), '10.7.2.0/24 fd00:7:0:2::/64', 'the second node skips both of the first node\'s subnets');
  t.same(await keys(prefix), ['10.7.1.0-24&fd00:7:0:1::-64', '10.7.2.0-24&fd00:7:0:2::-64']);
  t.equal(await etcd.get(`${prefix}/subnets/10.7.1.0-24&fd00:7:0:1::-64`),
    '{"PublicIP":"192.0.2.1","PublicIPv6":"2001:db8::1","BackendType":"host-gw"}');
  t.equal(await holderOf(`${prefix}/subnets/10.7.1.0-24&fd00:7:0:1::-64`), la.etcdLeaseId, 'held by the etcd lease we hold');
  const { leases } = await a.reg.listLeases();
  t.same(leases.map(pair).sort(), ['10.7.1.0/24 fd00:7:0:1::/64', '10.7.2.0/24 fd00:7:0:2::/64'], 'listed back with both subnets');
});

t.test('random among the free subnets of each family; the pair can differ in position', async (t) => {
  const prefix = freshPrefix();
  const draws = [0.5, 0.999];
  const a = node(t, prefix, () => draws.shift() ?? 0);
  t.equal(pair(await acquire(a, DUAL, attrs('192.0.2.1'))), '10.7.51.0/24 fd00:7:0:64::/64', 'index 50 of 100 (IPv4), 99 of 100 (IPv6)');
});

t.test('reuse by PublicIP: the same pair, same key, renewed on a fresh etcd lease', async (t) => {
  const prefix = freshPrefix();
  const first = await acquire(node(t, prefix), DUAL, attrs('192.0.2.1'));
  const again = node(t, prefix, () => 0.7);
  const second = await acquire(again, DUAL, attrs('192.0.2.1'));
  t.equal(pair(second), pair(first));
  t.equal(sourceOf(again), 'reused');
  t.not(second.etcdLeaseId, first.etcdLeaseId, 'a new etcd lease');
  t.same(await keys(prefix), ['10.7.1.0-24&fd00:7:0:1::-64'], 'no second key');
  t.equal(await holderOf(`${prefix}/subnets/10.7.1.0-24&fd00:7:0:1::-64`), second.etcdLeaseId);
});

t.test('reuse from subnet.env: FLANNEL_SUBNET and FLANNEL_IPV6_SUBNET when both are free and fit', async (t) => {
  const prefix = freshPrefix();
  const n = node(t, prefix);
  const l = await acquire(n, DUAL, attrs('192.0.2.1'), { previousSubnet: c4('10.7.42.0/24'), previousIpv6Subnet: c6('fd00:7:0:42::/64') });
  t.equal(pair(l), '10.7.42.0/24 fd00:7:0:42::/64');
  t.equal(sourceOf(n), 'previous');
  // Another node whose subnet.env names an IPv6 subnet now taken: its IPv4 subnet is still reused.
  const m = node(t, prefix);
  const lm = await acquire(m, DUAL, attrs('192.0.2.2'), { previousSubnet: c4('10.7.43.0/24'), previousIpv6Subnet: c6('fd00:7:0:42::/64') });
  t.equal(pair(lm), '10.7.43.0/24 fd00:7:0:1::/64', 'the previous IPv4 subnet, a free IPv6 one');
  // An IPv6 subnet outside the pool (the first subnet, skipped by IPv6SubnetMin) is not reused.
  const o = node(t, prefix);
  const lo = await acquire(o, DUAL, attrs('192.0.2.3'), { previousSubnet: c4('10.7.44.0/24'), previousIpv6Subnet: c6('fd00:7::/64') });
  t.equal(pair(lo), '10.7.44.0/24 fd00:7:0:2::/64');
});

t.test('turning IPv6 on: our IPv4-only lease keeps its IPv4 subnet and gains an IPv6 one (flannel would reallocate)', async (t) => {
  const prefix = freshPrefix();
  const other = await acquire(node(t, prefix), V4_CFG, attrs('192.0.2.9'));
  const v4 = await acquire(node(t, prefix, () => 0.5), V4_CFG, attrs('192.0.2.1'));
  t.equal(formatCidr4(v4.subnet), '10.7.52.0/24', 'an IPv4-only lease away from the first subnet');
  t.same(await keys(prefix), ['10.7.1.0-24', '10.7.52.0-24']);
  const n = node(t, prefix);
  const up = await acquire(n, DUAL, attrs('192.0.2.1', '2001:db8::1'), { previousIpv6Subnet: c6('fd00:7:0:77::/64') });
  t.equal(pair(up), '10.7.52.0/24 fd00:7:0:77::/64', 'the same IPv4 subnet; the IPv6 one from subnet.env');
  t.equal(sourceOf(n), 'reused');
  t.same(await keys(prefix), ['10.7.1.0-24', '10.7.52.0-24&fd00:7:0:77::-64'], 'the old key is gone, the other node untouched');
  t.equal(await holderOf(`${prefix}/subnets/10.7.52.0-24&fd00:7:0:77::-64`), up.etcdLeaseId, 'held by our new etcd lease');
  t.equal(await holderOf(`${prefix}/subnets/10.7.1.0-24`), other.etcdLeaseId);
  t.ok(n.logs.some((m) => m.startsWith('keeping the IPv4 subnet')), 'logged');
  // And back: IPv6 turned off again keeps the IPv4 subnet too, under the IPv4-only key.
  const down = await acquire(node(t, prefix), V4_CFG, attrs('192.0.2.1'));
  t.equal(pair(down), '10.7.52.0/24 -');
  t.same(await keys(prefix), ['10.7.1.0-24', '10.7.52.0-24']);
});

t.test('the move is one guarded transaction: never over another node\'s key, never from a key we lost', async (t) => {
  const prefix = freshPrefix();
  const n = node(t, prefix);
  const mine = await acquire(n, V4_CFG, attrs('192.0.2.1'));
  const target = { subnet: mine.subnet, ipv6Subnet: c6('fd00:7:0:5::/64') };
  const targetKey = `${prefix}/subnets/10.7.1.0-24&fd00:7:0:5::-64`;
  await etcd.put(targetKey, '{"PublicIP":"192.0.2.66","PublicIPv6":null}');
  const taken = await n.reg.moveLease(mine, target, mine.attrs, 600, mine.etcdLeaseId).catch((e: unknown) => e);
  t.ok(isFlannelError(taken, 'FLN_ERR_LEASE_CONFLICT'), 'refused: the dual-stack key exists');
  t.equal(await etcd.get(targetKey), '{"PublicIP":"192.0.2.66","PublicIPv6":null}', 'the other key untouched');
  t.equal(await holderOf(`${prefix}/subnets/10.7.1.0-24`), mine.etcdLeaseId, 'ours untouched');
  await etcd.ctlChecked(['del', targetKey]);
  const stale = await n.reg.moveLease(mine, target, mine.attrs, 600, '12345').catch((e: unknown) => e);
  t.ok(isFlannelError(stale, 'FLN_ERR_LEASE_CONFLICT'), 'refused: the old key is not held by the etcd lease we name');
  t.same(await keys(prefix), ['10.7.1.0-24'], 'nothing written');
  const moved = await n.reg.moveLease(mine, target, mine.attrs, 600, mine.etcdLeaseId);
  t.same(await keys(prefix), ['10.7.1.0-24&fd00:7:0:5::-64']);
  t.equal(await holderOf(targetKey), moved.etcdLeaseId);
});

const VX4 = '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}';
const VX6 = '{"VNI":1,"VtepMAC":"5e:21:a0:9b:0c:7d"}';
/** What a flannel vxlan node writes for a dual-stack lease. */
const FLANNEL_VALUE = `{"PublicIP":"192.0.2.50","PublicIPv6":"2001:db8::50","BackendType":"vxlan","BackendData":${VX4},"BackendV6Data":${VX6}}`;

t.test('a flannel node\'s dual-stack lease: read, taken in both families, renewed under its own key byte for byte', async (t) => {
  const prefix = freshPrefix();
  const flannelKey = `${prefix}/subnets/10.7.1.0-24&fd00:7:0:1::-64`;
  await etcd.ctlChecked(['put', `--lease=${await grant(600)}`, flannelKey, FLANNEL_VALUE]);
  const n = node(t, prefix);
  const { leases } = await n.reg.listLeases();
  t.equal(leases.length, 1);
  const fl = leases[0] as Lease;
  t.equal(pair(fl), '10.7.1.0/24 fd00:7:0:1::/64');
  t.equal(fl.attrs.backendV6Data, VX6);
  const ours = await acquire(n, DUAL, attrs('192.0.2.1'));
  t.equal(pair(ours), '10.7.2.0/24 fd00:7:0:2::/64', 'both of its subnets are taken');
  // That node restarts as flannel-ts: its lease is reused under the key flannel wrote, the value unchanged.
  const same = node(t, prefix);
  const flAttrs = { ...attrs('192.0.2.50', '2001:db8::50'), backendType: 'vxlan', backendData: VX4, backendV6Data: VX6 };
  const renewed = await acquire(same, DUAL, flAttrs);
  t.equal(pair(renewed), '10.7.1.0/24 fd00:7:0:1::/64');
  t.equal(sourceOf(same), 'reused');
  t.equal(await etcd.get(flannelKey), FLANNEL_VALUE, 'the value round-trips byte for byte');
  t.equal(await holderOf(flannelKey), renewed.etcdLeaseId);
});

t.test('a dual-stack key in another IPv6 spelling is renewed and deleted under that exact key', async (t) => {
  const prefix = freshPrefix();
  const odd = `${prefix}/subnets/10.7.3.0-24&fd00:7:0:3:0:0:0:0-64`;
  await etcd.ctlChecked(['put', `--lease=${await grant(600)}`, odd, '{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"host-gw"}']);
  const n = node(t, prefix);
  const l = await acquire(n, DUAL, attrs('192.0.2.1'));
  t.equal(pair(l), '10.7.3.0/24 fd00:7:0:3::/64');
  t.same(await keys(prefix), ['10.7.3.0-24&fd00:7:0:3:0:0:0:0-64'], 'no second key in our spelling');
  t.equal(await holderOf(odd), l.etcdLeaseId, 'renewed under it');
  // Out of the pool now (a narrower IPv4 range): deleted under that key, and a new lease made.
  const narrowed = dualConfig({ SubnetMin: '10.7.10.0' });
  const moved = await acquire(node(t, prefix), narrowed, attrs('192.0.2.1'));
  t.equal(formatCidr4(moved.subnet), '10.7.10.0/24');
  t.same(await keys(prefix), ['10.7.10.0-24&fd00:7:0:1::-64'], 'the odd key deleted');
});

async function exhaustion(t: Test, cfg: NetworkConfig, fill: readonly string[]): Promise<string> {
  const prefix = freshPrefix();
  for (const [i, part] of fill.entries()) await etcd.put(`${prefix}/subnets/${part}`, `{"PublicIP":"192.0.2.${100 + i}","PublicIPv6":null}`);
  const n = node(t, prefix);
  const ac = new AbortController();
  const done = n.mgr.acquireLease(cfg, attrs('192.0.2.1'), { signal: ac.signal }).catch((e: unknown) => e);
  const deadline = Date.now() + 10_000;
  while (!n.logs.some((m) => m.startsWith('failed to acquire lease')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  ac.abort();
  await done;
  t.same(await keys(prefix), [...fill].sort(), 'nothing written');
  return n.logs.find((m) => m.startsWith('failed to acquire lease')) ?? '';
}

t.test('out of IPv6 subnets: named, while IPv4 subnets are free', async (t) => {
  const cfg = dualConfig({ IPv6Network: 'fd00:8::/62' }); // 3 subnets: fd00:8:0:1:: … fd00:8:0:3::
  const msg = await exhaustion(t, cfg, ['10.7.1.0-24&fd00:8:0:1::-64', '10.7.2.0-24&fd00:8:0:2::-64', '10.7.3.0-24&fd00:8:0:3::-64']);
  t.match(msg, /^failed to acquire lease: out of IPv6 subnets: IPv6Network fd00:8::\/62 has 3 subnets of \/64 \(fd00:8:0:1:: to fd00:8:0:3::\) and 3 of them are taken/);
});

t.test('out of IPv4 subnets: named, while IPv6 subnets are free', async (t) => {
  const cfg = dualConfig({ Network: '10.9.0.0/22' }); // 3 subnets: 10.9.1.0 … 10.9.3.0
  const msg = await exhaustion(t, cfg, ['10.9.1.0-24', '10.9.2.0-24&fd00:7:0:9::-64', '10.9.3.0-24']);
  t.match(msg, /^failed to acquire lease: out of IPv4 subnets: network 10\.9\.0\.0\/22 has 3 subnets of \/24 .* and 3 of them are taken/);
});

t.test('a watching node sees a peer become dual-stack as one change, not a removal', async (t) => {
  const prefix = freshPrefix();
  const w = node(t, prefix);
  const own = await acquire(w, V4_CFG, attrs('192.0.2.1'));
  const peer = node(t, prefix, () => 0.5);
  await acquire(peer, V4_CFG, attrs('192.0.2.2'));
  const seen: string[] = [];
  const ac = new AbortController();
  let synced = false;
  const running = w.mgr.runLeaseWatch(own, {
    onEvents: (evs) => { for (const e of evs) seen.push(`${e.kind} ${pair(e.lease)}`); },
    onOwnLeaseLost: (r) => seen.push(`lost ${r}`),
    onSynced: () => { synced = true; },
  }, ac.signal);
  while (!synced) await new Promise((r) => setTimeout(r, 20));
  await acquire(node(t, prefix), DUAL, attrs('192.0.2.2'));
  const deadline = Date.now() + 10_000;
  while (seen.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 300)); // anything more would arrive now
  ac.abort();
  await running.catch(() => {});
  t.same(seen, ['added 10.7.52.0/24 -', 'removed 10.7.52.0/24 -', 'added 10.7.52.0/24 fd00:7:0:1::/64']);
});

t.test('a dual-stack create is refused when another node leased a subnet since our list (not by renewals)', async (t) => {
  const prefix = freshPrefix();
  const n = node(t, prefix);
  await etcd.put(`${prefix}/subnets/10.7.9.0-24`, '{"PublicIP":"192.0.2.9","PublicIPv6":null}');
  const { revision } = await n.reg.listLeases();
  await etcd.put(`${prefix}/subnets/10.7.9.0-24`, '{"PublicIP":"192.0.2.9","PublicIPv6":null,"BackendType":"host-gw"}');
  const ok = await n.reg.createLease({ subnet: c4('10.7.1.0/24'), ipv6Subnet: c6('fd00:7:0:1::/64') }, attrs('192.0.2.1'), 600, { listedAt: revision });
  t.equal(pair(ok), '10.7.1.0/24 fd00:7:0:1::/64', 'a renewal of an existing key since the list does not block');
  const listed = await n.reg.listLeases();
  await etcd.put(`${prefix}/subnets/10.7.200.0-24&fd00:7:0:2::-64`, '{"PublicIP":"192.0.2.66","PublicIPv6":null}');
  const err = await n.reg.createLease({ subnet: c4('10.7.2.0/24'), ipv6Subnet: c6('fd00:7:0:2::/64') }, attrs('192.0.2.2'), 600, { listedAt: listed.revision })
    .catch((e: unknown) => e);
  t.ok(isFlannelError(err, 'FLN_ERR_LEASE_CONFLICT'), 'refused: a key created after the list');
  t.same(await keys(prefix), ['10.7.1.0-24&fd00:7:0:1::-64', '10.7.200.0-24&fd00:7:0:2::-64', '10.7.9.0-24'], 'nothing written');
});

t.test('two nodes racing for the same IPv6 subnet under different IPv4 subnets: the loser picks again', async (t) => {
  const prefix = freshPrefix();
  const racer = `${prefix}/subnets/10.7.200.0-24&fd00:7:0:1::-64`;
  /** Right after our first list, another node takes fd00:7:0:1:: (the subnet random 0 picks) with another IPv4 subnet. */
  class Raced extends EtcdRegistry {
    lists = 0;
    override async listLeases() {
      const res = await super.listLeases();
      if (++this.lists === 1) await etcd.put(racer, '{"PublicIP":"192.0.2.66","PublicIPv6":null}');
      return res;
    }
  }
  const reg = new Raced(createEtcdClient({ endpoints: clientEndpoints(etcd) }), prefix);
  const mgr = new EtcdSubnetManager(reg, { log: pino({ level: 'silent' }), leaseTtlSec: 600, random: () => 0 });
  t.teardown(() => mgr.close());
  const l = await mgr.acquireLease(DUAL, attrs('192.0.2.1'), { signal: AbortSignal.timeout(20_000) });
  t.equal(reg.lists, 2, 'listed again after the refused create');
  t.equal(pair(l), '10.7.1.0/24 fd00:7:0:2::/64', 'a distinct IPv6 subnet');
  t.same(await keys(prefix), ['10.7.1.0-24&fd00:7:0:2::-64', '10.7.200.0-24&fd00:7:0:1::-64']);
});
