// Unit tests for the IPv6 pool of subnet/allocator.ts (issue #18): flannel's allocateSubnet for IPv6
// (pkg/subnet/etcd/local_manager.go: walk IPv6SubnetMin..IPv6SubnetMax, skip subnets overlapping a
// lease's IPv6Subnet, at most 100 candidates, one at random) and isIPv6SubnetConfigCompat.
import t from 'tap';
import {
  MAX_CANDIDATES, freeSubnets6, isCompatible6, pickFreeSubnet6, poolUsage6,
} from '../../../subnet/allocator.js';
import { type Ipv6Pool, parseNetworkConfigAllFamilies } from '../../../subnet/network-config.js';
import { type Cidr6, formatCidr6, parseCidr6 } from '../../../lib/ip6.js';

const c6 = (text: string): Cidr6 => {
  const c = parseCidr6(text);
  if (c === undefined) throw new Error(`test setup: bad CIDR ${text}`);
  return c;
};
const pool = (extra: Record<string, unknown>): Ipv6Pool => {
  const cfg = parseNetworkConfigAllFamilies(JSON.stringify({ Network: '10.3.0.0/16', EnableIPv6: true, ...extra }), 'test');
  if (!cfg.ipv6) throw new Error('test setup: no IPv6 pool');
  return cfg.ipv6;
};
const fmt = (c: Cidr6 | undefined): string | undefined => (c === undefined ? undefined : formatCidr6(c));

/** fd00:10::/48: /64 subnets fd00:10:0:1:: … fd00:10:0:ffff:: (65535). */
const P48 = pool({ IPv6Network: 'fd00:10::/48' });
/** fd00:20::/62: /64 subnets, min fd00:20:0:1::, max fd00:20:0:3:: (3 subnets). */
const P62 = pool({ IPv6Network: 'fd00:20::/62' });

t.test('free IPv6 subnets: from IPv6SubnetMin in subnet steps, at most 100', async (t) => {
  const free = freeSubnets6(P48, []);
  t.equal(free.length, MAX_CANDIDATES);
  t.equal(fmt(free[0]), 'fd00:10:0:1::/64', 'the first subnet of the network is skipped (IPv6SubnetMin default)');
  t.equal(fmt(free[1]), 'fd00:10:0:2::/64');
  t.equal(fmt(free[99]), 'fd00:10:0:64::/64', 'the 100th');
});

t.test('leased IPv6 subnets are skipped, by overlap (a shorter or longer leased prefix too)', async (t) => {
  const free = freeSubnets6(P48, [c6('fd00:10:0:1::/64'), c6('fd00:10:0:2::/63'), c6('fd00:10:0:5:8000::/65')], 4);
  t.same(free.map(fmt), ['fd00:10:0:4::/64', 'fd00:10:0:6::/64', 'fd00:10:0:7::/64', 'fd00:10:0:8::/64']);
});

t.test('the pick is uniform among the candidates: random() selects the index', async (t) => {
  t.equal(fmt(pickFreeSubnet6(P48, [], () => 0)), 'fd00:10:0:1::/64');
  t.equal(fmt(pickFreeSubnet6(P48, [], () => 0.5)), 'fd00:10:0:33::/64', 'index 50 of 100');
  t.equal(fmt(pickFreeSubnet6(P48, [], () => 0.999999)), 'fd00:10:0:64::/64', 'index 99');
});

t.test('an exhausted IPv6 pool gives no subnet; poolUsage6 counts it', async (t) => {
  const all = [c6('fd00:20:0:1::/64'), c6('fd00:20:0:2::/64'), c6('fd00:20:0:3::/64')];
  t.equal(pickFreeSubnet6(P62, all, () => 0), undefined);
  t.equal(fmt(pickFreeSubnet6(P62, all.slice(1), () => 0.9)), 'fd00:20:0:1::/64', 'the one left');
  t.same(poolUsage6(P62, all), { total: 3n, taken: 3n });
  t.same(poolUsage6(P62, [c6('fd00:20:0:2::/64'), c6('fd00:99::/64')]), { total: 3n, taken: 1n }, 'a lease outside the pool is not counted');
});

t.test('isCompatible6: the configured length, between IPv6SubnetMin and IPv6SubnetMax', async (t) => {
  t.ok(isCompatible6(P48, c6('fd00:10:0:1::/64')), 'the minimum');
  t.ok(isCompatible6(P48, c6('fd00:10:0:ffff::/64')), 'the maximum');
  t.notOk(isCompatible6(P48, c6('fd00:10::/64')), 'the skipped first subnet');
  t.notOk(isCompatible6(P48, c6('fd00:10:0:1::/80')), 'another length');
  t.notOk(isCompatible6(P48, c6('fd00:11::/64')), 'outside the network');
  const narrowed = pool({ IPv6Network: 'fd00:10::/48', IPv6SubnetMin: 'fd00:10:0:10::', IPv6SubnetMax: 'fd00:10:0:20::' });
  t.notOk(isCompatible6(narrowed, c6('fd00:10:0:f::/64')), 'below an explicit IPv6SubnetMin');
  t.notOk(isCompatible6(narrowed, c6('fd00:10:0:21::/64')), 'above an explicit IPv6SubnetMax');
  t.equal(fmt(freeSubnets6(narrowed, [])[0]), 'fd00:10:0:10::/64', 'the walk starts at IPv6SubnetMin');
  t.equal(freeSubnets6(narrowed, []).length, 17, 'and ends at IPv6SubnetMax');
});
