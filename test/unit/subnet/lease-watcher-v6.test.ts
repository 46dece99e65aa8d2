// subnet/lease-watcher.ts with dual-stack keys: a lease is known by its IPv4 subnet; a lease moving to
// the dual-stack key (new key written, then the old one deleted, in one etcd transaction) is one
// change, not a removal; an IPv6 subnet change is a change even with the same attributes.
import t from 'tap';
import { LeaseWatcher } from '../../../subnet/lease-watcher.js';
import type { Lease } from '../../../subnet/lease.js';
import { type Cidr4, parseCidr4, parseIp4 } from '../../../lib/ip.js';
import { type Cidr6, parseCidr6 } from '../../../lib/ip6.js';

const c4 = (s: string): Cidr4 => parseCidr4(s) as Cidr4;
const c6 = (s: string): Cidr6 => parseCidr6(s) as Cidr6;
const ip = (s: string): number => parseIp4(s) as number;
const lease = (subnet: string, publicIp: string, v6?: string): Lease => ({
  subnet: c4(subnet), ...(v6 ? { ipv6Subnet: c6(v6) } : {}),
  attrs: { publicIp: ip(publicIp), backendType: 'host-gw' }, etcdLeaseId: '7', expiresAtMs: Number.NaN,
});
const OWN = { subnet: c4('10.5.1.0/24'), attrs: { publicIp: ip('192.0.2.1') }, ipv6Subnet: c6('fd00:5:0:1::/64') };

t.test('a peer moved from its IPv4 key to the dual-stack key: changed once, the old key\'s delete ignored', async (t) => {
  const w = new LeaseWatcher(OWN);
  w.reset([lease('10.5.2.0/24', '192.0.2.2')]);
  const moved = lease('10.5.2.0/24', '192.0.2.2', 'fd00:5:0:2::/64');
  const put = w.put(moved);
  t.same(put.events.map((e) => e.kind), ['removed', 'added'], 'the IPv6 subnet is new: reprogrammed');
  t.same(w.delete({ subnet: c4('10.5.2.0/24') }).events, [], 'the delete of the old IPv4-only key removes nothing');
  t.same(w.leases(), [moved]);
  t.same(w.put(moved).events, [], 'a renewal of the dual-stack key: nothing');
  t.same(w.delete({ subnet: c4('10.5.2.0/24'), ipv6Subnet: c6('fd00:5:0:2::/64') }).events.map((e) => e.kind), ['removed'], 'its own key\'s delete removes it');
});

t.test('our own key: only the delete of the key we hold is a loss', async (t) => {
  const w = new LeaseWatcher(OWN);
  t.same(w.delete({ subnet: c4('10.5.1.0/24') }), { events: [] }, 'the IPv4-only key we moved away from');
  t.same(w.delete({ subnet: c4('10.5.1.0/24'), ipv6Subnet: c6('fd00:5:0:9::/64') }), { events: [] }, 'another dual-stack spelling');
  t.equal(w.delete({ subnet: c4('10.5.1.0/24'), ipv6Subnet: c6('fd00:5:0:1::/64') }).own?.kind, 'lost', 'ours');
  const v4only = new LeaseWatcher({ subnet: c4('10.5.1.0/24'), attrs: { publicIp: ip('192.0.2.1') } });
  t.equal(v4only.delete({ subnet: c4('10.5.1.0/24') }).own?.kind, 'lost', 'IPv4-only, as before');
});

t.test('a dual-stack peer\'s IPv6 subnet changing with the same attributes is a change', async (t) => {
  const w = new LeaseWatcher(OWN);
  w.reset([lease('10.5.3.0/24', '192.0.2.3', 'fd00:5:0:3::/64')]);
  const out = w.reset([lease('10.5.3.0/24', '192.0.2.3', 'fd00:5:0:4::/64')]);
  t.same(out.events.map((e) => e.kind), ['removed', 'added']);
});

const ip6 = (s: string): bigint => parseCidr6(`${s}/128`)?.ip as bigint;
const lease6 = (v6: string, publicIpv6: string): Lease => ({
  ipv6Subnet: c6(v6), attrs: { publicIp: 0, publicIpv6: ip6(publicIpv6), backendType: 'host-gw' }, etcdLeaseId: '7', expiresAtMs: Number.NaN,
});

t.test('IPv6-only leases: known by their IPv6 subnet, our own by it and our PublicIPv6', async (t) => {
  const own = lease6('fd00:6:0:1::/64', '2001:db8::1');
  const w = new LeaseWatcher(own);
  const peer = lease6('fd00:6:0:2::/64', '2001:db8::2');
  t.same(w.reset([own, peer]).events.map((e) => e.kind), ['added'], 'the peer is added, our own lease is ours');
  t.equal(w.reset([own, peer]).own?.kind, 'renewed');
  const peerMoved = lease6('fd00:6:0:2::/64', '2001:db8::22');
  t.same(w.put(peerMoved).events.map((e) => e.kind), ['removed', 'added'], 'a new PublicIPv6 is a change');
  t.same(w.delete({ ipv6Subnet: c6('fd00:6:0:3::/64') }).events, [], 'an unknown key');
  t.same(w.delete({ ipv6Subnet: c6('fd00:6:0:2::/64') }).events.map((e) => e.kind), ['removed']);
  t.equal(w.put(lease6('fd00:6:0:1::/64', '2001:db8::9')).own?.kind, 'lost', 'our subnet under another PublicIPv6: taken');
  t.match(w.put(lease6('fd00:6:0:1::/64', '2001:db8::9')).own, { cause: 'taken', reason: /fd00:6:0:1::\/64 is now leased by another node, 2001:db8::9/ });
  t.equal(w.delete({ ipv6Subnet: c6('fd00:6:0:1::/64') }).own?.kind, 'lost', 'our key deleted');
});
