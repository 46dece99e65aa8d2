// IPv6-only leases against a real etcd on loopback (issue #18): EnableIPv4 false. flannel has no key for
// them (its regex needs an IPv4 part) and, from its code, gives every IPv6-only node one shared lease.
// Ours: <prefix>/subnets/fd00:…-64 with PublicIP "0.0.0.0" and the node's PublicIPv6. Checked here: two
// nodes get distinct subnets (also when they race for the same one), a node is known again by its
// PublicIPv6 and from subnet.env, flannel's own key regex skips the keys, a watching node sees its peers
// come and go, a renewal keeps the key, and the pool can run out.
import { pino } from 'pino';
import t, { type Test } from 'tap';
import type { EtcdServer } from '../../deploy/local/etcd-server.js';
import { createEtcdClient } from '../../subnet/etcd/etcd-client.js';
import { EtcdRegistry } from '../../subnet/etcd/etcd-registry.js';
import { EtcdSubnetManager, type SubnetEvent } from '../../subnet/etcd/etcd-subnet-manager.js';
import { type Cidr6, formatCidr6, parseCidr6, parseIp6 } from '../../lib/ip6.js';
import { type Lease, type LeaseAttrs, describeSubnets } from '../../subnet/lease.js';
import { type NetworkConfig, parseNetworkConfig } from '../../subnet/network-config.js';
import { clientEndpoints, startLoopbackEtcd } from '../helpers/loopback-etcd.js';

const c6 = (s: string): Cidr6 => parseCidr6(s) as Cidr6;
const attrs = (ip6: string): LeaseAttrs => ({ publicIp: 0, publicIpv6: parseIp6(ip6) as bigint, backendType: 'host-gw' });
const config = (extra: Record<string, unknown> = {}): NetworkConfig => parseNetworkConfig(JSON.stringify({
  EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:8::/48', Backend: { Type: 'host-gw' }, ...extra,
}), 'test');
const V6 = config();
/** flannel's subnetRegex (pkg/subnet/subnet.go): what a flannel node reading the same etcd can parse. */
const FLANNEL_KEY = /(\d+\.\d+.\d+.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$/;

let etcd: EtcdServer;
let prefixes = 0;

t.before(async () => { etcd = await startLoopbackEtcd(t); });

interface Node { reg: EtcdRegistry; mgr: EtcdSubnetManager; events: SubnetEvent[] }

function node(t: Test, prefix: string, random: () => number = () => 0): Node {
  const reg = new EtcdRegistry(createEtcdClient({ endpoints: clientEndpoints(etcd) }), prefix);
  const events: SubnetEvent[] = [];
  const mgr = new EtcdSubnetManager(reg, { log: pino({ level: 'silent' }), leaseTtlSec: 600, random, onEvent: (ev) => events.push(ev) });
  t.teardown(() => mgr.close());
  return { reg, mgr, events };
}

const freshPrefix = (): string => `/v6only-${process.pid}-${++prefixes}/network`;

async function keys(prefix: string): Promise<string[]> {
  const out = await etcd.ctlChecked(['get', `${prefix}/subnets/`, '--prefix', '--keys-only']);
  return out.split('\n').filter((l) => l !== '').map((k) => k.slice(`${prefix}/subnets/`.length)).sort();
}

const acquire = (n: Node, cfg: NetworkConfig, a: LeaseAttrs, o: { previousIpv6Subnet?: Cidr6 } = {}): Promise<Lease> =>
  n.mgr.acquireLease(cfg, a, { ...o, signal: AbortSignal.timeout(20_000) });
const sourceOf = (n: Node): string | undefined => {
  const ev = n.events.findLast((e) => e.type === 'lease-acquired');
  return ev?.type === 'lease-acquired' ? ev.source : undefined;
};
const v6 = (l: Lease): string => (l.ipv6Subnet ? formatCidr6(l.ipv6Subnet) : '-');

t.test('two IPv6-only nodes get distinct subnets under keys flannel skips, PublicIP 0.0.0.0', async (t) => {
  const prefix = freshPrefix();
  const a = node(t, prefix);
  const b = node(t, prefix);
  const la = await acquire(a, V6, attrs('2001:db8::1'));
  const lb = await acquire(b, V6, attrs('2001:db8::2'));
  t.equal(la.subnet, undefined, 'no IPv4 subnet');
  t.equal(v6(la), 'fd00:8:0:1::/64', 'the first free subnet (random 0)');
  t.equal(v6(lb), 'fd00:8:0:2::/64', 'the second node does not get the first node\'s subnet (flannel gives both one lease)');
  t.same(await keys(prefix), ['fd00:8:0:1::-64', 'fd00:8:0:2::-64']);
  for (const k of await keys(prefix)) t.notOk(FLANNEL_KEY.test(`${prefix}/subnets/${k}`), `flannel's key regex skips ${k}`);
  t.equal(await etcd.get(`${prefix}/subnets/fd00:8:0:1::-64`), '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::1","BackendType":"host-gw"}');
  const { leases } = await a.reg.listLeases();
  t.same(leases.map(describeSubnets).sort(), ['fd00:8:0:1::/64', 'fd00:8:0:2::/64'], 'listed back');
});

t.test('reuse by PublicIPv6 (not by the shared PublicIP 0.0.0.0), and from subnet.env', async (t) => {
  const prefix = freshPrefix();
  const first = await acquire(node(t, prefix), V6, attrs('2001:db8::1'));
  const again = node(t, prefix, () => 0.7);
  const second = await acquire(again, V6, attrs('2001:db8::1'));
  t.equal(v6(second), v6(first));
  t.equal(sourceOf(again), 'reused');
  t.not(second.etcdLeaseId, first.etcdLeaseId, 'a new etcd lease');
  const other = node(t, prefix);
  t.equal(v6(await acquire(other, V6, attrs('2001:db8::2'))), 'fd00:8:0:2::/64', 'another PublicIPv6 is another node');
  const env = node(t, prefix);
  t.equal(v6(await acquire(env, V6, attrs('2001:db8::3'), { previousIpv6Subnet: c6('fd00:8:0:42::/64') })), 'fd00:8:0:42::/64');
  t.equal(sourceOf(env), 'previous');
  const taken = node(t, prefix);
  t.equal(v6(await acquire(taken, V6, attrs('2001:db8::4'), { previousIpv6Subnet: c6('fd00:8:0:42::/64') })), 'fd00:8:0:3::/64', 'a taken previous subnet is not reused');
  t.same(await keys(prefix), ['fd00:8:0:1::-64', 'fd00:8:0:2::-64', 'fd00:8:0:3::-64', 'fd00:8:0:42::-64']);
});

t.test('a lease that no longer fits the pool is deleted and a new one taken', async (t) => {
  const prefix = freshPrefix();
  await acquire(node(t, prefix), V6, attrs('2001:db8::1'));
  const n = node(t, prefix);
  const l = await acquire(n, config({ IPv6SubnetLen: 80 }), attrs('2001:db8::1'));
  t.equal(v6(l), 'fd00:8:0:0:1::/80', 'the first /80 after IPv6SubnetMin, printed as Go prints it');
  t.same(await keys(prefix), ['fd00:8:0:0:1::-80'], 'the /64 lease is gone');
});

t.test('two nodes racing for one subnet: the key is the subnet, so etcd refuses the second and it picks again', async (t) => {
  const prefix = freshPrefix();
  class Raced extends EtcdRegistry {
    lists = 0;
    override async listLeases() {
      const res = await super.listLeases();
      if (++this.lists === 1) await etcd.put(`${prefix}/subnets/fd00:8:0:1::-64`, '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::66"}');
      return res;
    }
  }
  const reg = new Raced(createEtcdClient({ endpoints: clientEndpoints(etcd) }), prefix);
  const mgr = new EtcdSubnetManager(reg, { log: pino({ level: 'silent' }), leaseTtlSec: 600, random: () => 0 });
  t.teardown(() => mgr.close());
  const l = await mgr.acquireLease(V6, attrs('2001:db8::1'), { signal: AbortSignal.timeout(20_000) });
  t.equal(reg.lists, 2, 'listed again after the refused create');
  t.equal(v6(l), 'fd00:8:0:2::/64');
  t.equal(await etcd.get(`${prefix}/subnets/fd00:8:0:1::-64`), '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::66"}', 'the other node\'s lease untouched');
});

t.test('a watching node sees IPv6-only peers come, change and go; renewal keeps the key', async (t) => {
  const prefix = freshPrefix();
  const w = node(t, prefix);
  const own = await acquire(w, V6, attrs('2001:db8::1'));
  const seen: string[] = [];
  const ac = new AbortController();
  let synced = false;
  const running = w.mgr.runLeaseWatch(own, {
    onEvents: (evs) => { for (const e of evs) seen.push(`${e.kind} ${v6(e.lease)}`); },
    onOwnLeaseLost: (r) => seen.push(`lost ${r}`),
    onSynced: () => { synced = true; },
  }, ac.signal);
  while (!synced) await new Promise((r) => setTimeout(r, 20));
  const peer = node(t, prefix);
  const lp = await acquire(peer, V6, attrs('2001:db8::2'));
  await peer.reg.updateLease({ ipv6Subnet: lp.ipv6Subnet as Cidr6 }, { ...lp.attrs, backendType: 'vxlan' }, 600, lp.etcdLeaseId);
  await peer.reg.deleteLease({ ipv6Subnet: lp.ipv6Subnet as Cidr6 });
  const deadline = Date.now() + 10_000;
  while (seen.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 300));
  const renewed = await w.reg.updateLease({ ipv6Subnet: own.ipv6Subnet as Cidr6 }, own.attrs, 600, own.etcdLeaseId);
  await new Promise((r) => setTimeout(r, 300));
  ac.abort();
  await running.catch(() => {});
  t.same(seen, ['added fd00:8:0:2::/64', 'removed fd00:8:0:2::/64', 'added fd00:8:0:2::/64', 'removed fd00:8:0:2::/64'], 'no event for our own lease, no loss');
  t.equal(v6(renewed), v6(own));
  t.same(await keys(prefix), ['fd00:8:0:1::-64'], 'renewed under the same key');
});

t.test('out of IPv6 subnets in an IPv6-only pool: named, nothing written', async (t) => {
  const prefix = freshPrefix();
  const tiny = config({ IPv6Network: 'fd00:8::/62' }); // 3 subnets: fd00:8:0:1:: … fd00:8:0:3::
  for (let i = 1; i <= 3; i++) await acquire(node(t, prefix), tiny, attrs(`2001:db8::${i}`));
  const logs: string[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => { logs.push((JSON.parse(s) as { msg: string }).msg); } });
  const mgr = new EtcdSubnetManager(new EtcdRegistry(createEtcdClient({ endpoints: clientEndpoints(etcd) }), prefix), { log, leaseTtlSec: 600 });
  t.teardown(() => mgr.close());
  const ac = new AbortController();
  const done = mgr.acquireLease(tiny, attrs('2001:db8::9'), { signal: ac.signal }).catch((e: unknown) => e);
  const deadline = Date.now() + 10_000;
  while (!logs.some((m) => m.startsWith('failed to acquire lease')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  ac.abort();
  await done;
  t.match(logs.find((m) => m.startsWith('failed to acquire lease')),
    /^failed to acquire lease: out of IPv6 subnets: IPv6Network fd00:8::\/62 has 3 subnets of \/64 \(fd00:8:0:1:: to fd00:8:0:3::\) and 3 of them are taken/);
  t.same(await keys(prefix), ['fd00:8:0:1::-64', 'fd00:8:0:2::-64', 'fd00:8:0:3::-64']);
});
