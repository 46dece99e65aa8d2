// Unit tests for subnet/allocator.ts against flannel's allocation rules (flannel-compat.md §1.6;
// pkg/subnet/etcd/local_manager.go allocateSubnet, isSubnetConfigCompat).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  MAX_CANDIDATES, freeSubnets, isCompatible, pickFreeSubnet, poolUsage,
} from '../../../subnet/allocator.js';
import { type Ipv4Pool, parseNetworkConfig } from '../../../subnet/network-config.js';
import { type Cidr4, cidrContains, cidrOverlaps, formatCidr4, maskOf, parseCidr4 } from '../../../lib/ip.js';

const cidr = (text: string): Cidr4 => {
  const c = parseCidr4(text);
  if (c === undefined) throw new Error(`test setup: bad CIDR ${text}`);
  return c;
};
const config = (cfg: Record<string, unknown>): Ipv4Pool => parseNetworkConfig(JSON.stringify(cfg), 'test').ipv4 as Ipv4Pool;
const fmt = (c: Cidr4 | undefined): string | undefined => (c === undefined ? undefined : formatCidr4(c));
const fixed = (v: number) => (): number => v;

/** 10.3.0.0/16: SubnetLen 24, SubnetMin 10.3.1.0, SubnetMax 10.3.255.0 (255 subnets). */
const NET16 = config({ Network: '10.3.0.0/16' });
/** 10.4.0.0/22: SubnetLen 24, SubnetMin 10.4.1.0, SubnetMax 10.4.3.0 (3 subnets). */
const NET22 = config({ Network: '10.4.0.0/22' });

/** 10.3.1.0/24 … 10.3.<n>.0/24 */
const firstN = (n: number): Cidr4[] => Array.from({ length: n }, (_, i) => cidr(`10.3.${i + 1}.0/24`));

t.test('MAX_CANDIDATES is flannel\'s 100', async (t) => {
  t.equal(MAX_CANDIDATES, 100);
});

t.test('the first subnet (the network address) is skipped by default', async (t) => {
  t.equal(fmt(pickFreeSubnet(NET16, [], fixed(0))), '10.3.1.0/24', 'first free is SubnetMin, not 10.3.0.0/24');
  t.equal(fmt(freeSubnets(NET16, [])[0]), '10.3.1.0/24');
  t.notOk(freeSubnets(NET16, [], 1000).some((c) => formatCidr4(c) === '10.3.0.0/24'), '10.3.0.0/24 never offered');
  t.equal(fmt(pickFreeSubnet(NET22, [], fixed(0))), '10.4.1.0/24');
  t.equal(fmt(pickFreeSubnet(config({ Network: '10.4.0.0/24' }), [], fixed(0))), '10.4.0.64/26', '/24 network -> /26, skips .0/26');
});

t.test('freeSubnets walks [SubnetMin, SubnetMax] in SubnetLen steps, at most 100 by default', async (t) => {
  const free = freeSubnets(NET16, []);
  t.equal(free.length, 100, 'stops at 100 candidates');
  t.same(free.map(formatCidr4), firstN(100).map(formatCidr4), '10.3.1.0/24 … 10.3.100.0/24 in order');
  const all = freeSubnets(NET16, [], 1000);
  t.equal(all.length, 255, 'whole pool when the limit allows');
  t.equal(fmt(all.at(-1)), '10.3.255.0/24', 'SubnetMax is included');
  t.ok(all.every((c) => c.prefixLen === 24 && ((c.ip & maskOf(24)) >>> 0) === c.ip), 'all aligned /24s');
  t.same(freeSubnets(NET22, []).map(formatCidr4), ['10.4.1.0/24', '10.4.2.0/24', '10.4.3.0/24']);
  t.same(freeSubnets(NET16, [], 3).map(formatCidr4), ['10.3.1.0/24', '10.3.2.0/24', '10.3.3.0/24'], 'explicit limit');
  t.same(freeSubnets(NET16, [], 0), [], 'limit 0');
});

t.test('SubnetMin / SubnetMax bound the walk', async (t) => {
  const cfg = config({ Network: '10.3.0.0/16', SubnetMin: '10.3.10.0', SubnetMax: '10.3.12.0' });
  t.same(freeSubnets(cfg, []).map(formatCidr4), ['10.3.10.0/24', '10.3.11.0/24', '10.3.12.0/24']);
  t.equal(fmt(pickFreeSubnet(cfg, [], fixed(0))), '10.3.10.0/24');
  t.equal(fmt(pickFreeSubnet(cfg, [], fixed(0.999))), '10.3.12.0/24');
  const explicitZero = config({ Network: '10.3.0.0/16', SubnetMin: '10.3.0.0', SubnetMax: '10.3.1.0' });
  t.same(freeSubnets(explicitZero, []).map(formatCidr4), ['10.3.0.0/24', '10.3.1.0/24'], 'explicit SubnetMin at the network address');
  const inverted = config({ Network: '10.3.0.0/16', SubnetMin: '10.3.20.0', SubnetMax: '10.3.10.0' });
  t.same(freeSubnets(inverted, []), [], 'Min > Max: nothing');
  t.equal(pickFreeSubnet(inverted, [], fixed(0)), undefined);
});

t.test('pickFreeSubnet picks among the first 100 free, by the random argument', async (t) => {
  t.equal(fmt(pickFreeSubnet(NET16, [], fixed(0))), '10.3.1.0/24', '0 -> first free');
  t.equal(fmt(pickFreeSubnet(NET16, [], fixed(0.999))), '10.3.100.0/24', '0.999 -> 100th free');
  t.equal(fmt(pickFreeSubnet(NET16, [], fixed(0.9999999))), '10.3.100.0/24', 'never beyond the 100th');
  t.equal(fmt(pickFreeSubnet(NET16, [], fixed(0.5))), '10.3.51.0/24', '0.5 -> 51st');
  t.equal(fmt(pickFreeSubnet(NET16, [], fixed(0.01))), '10.3.2.0/24', '0.01 -> 2nd');
  t.equal(fmt(pickFreeSubnet(NET22, [], fixed(0.999))), '10.4.3.0/24', 'fewer than 100 free: 0.999 -> last');
  t.equal(fmt(pickFreeSubnet(NET22, [], fixed(0.5))), '10.4.2.0/24');
});

t.test('pickFreeSubnet calls random once and covers every index uniformly', async (t) => {
  let calls = 0;
  pickFreeSubnet(NET16, [], () => { calls++; return 0.3; });
  t.equal(calls, 1, 'one random draw');
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const c = pickFreeSubnet(NET16, [], fixed((i + 0.5) / 100));
    if (c) seen.add(formatCidr4(c));
  }
  t.equal(seen.size, 100, 'each of the 100 candidates is reachable');
  t.same([...seen].sort(), firstN(100).map(formatCidr4).sort());
});

t.test('leased subnets are skipped; the candidate window slides past them', async (t) => {
  const leased = firstN(50);
  t.equal(fmt(pickFreeSubnet(NET16, leased, fixed(0))), '10.3.51.0/24', 'first free after 50 leases');
  t.equal(fmt(pickFreeSubnet(NET16, leased, fixed(0.999))), '10.3.150.0/24', '100th free after 50 leases');
  const holes = [cidr('10.3.1.0/24'), cidr('10.3.3.0/24'), cidr('10.3.5.0/24')];
  t.same(freeSubnets(NET16, holes, 4).map(formatCidr4), ['10.3.2.0/24', '10.3.4.0/24', '10.3.6.0/24', '10.3.7.0/24']);
  t.equal(fmt(pickFreeSubnet(NET16, holes, fixed(0))), '10.3.2.0/24');
});

t.test('overlap is checked under the shorter mask: supernet and sub-subnet leases block', async (t) => {
  t.equal(fmt(pickFreeSubnet(NET16, [cidr('10.3.0.0/20')], fixed(0))), '10.3.16.0/24', 'a /20 lease blocks 10.3.1–15');
  t.equal(fmt(pickFreeSubnet(NET16, [cidr('10.3.1.128/25')], fixed(0))), '10.3.2.0/24', 'a /25 inside 10.3.1.0/24 blocks it');
  t.equal(fmt(pickFreeSubnet(NET16, [cidr('10.3.1.4/30')], fixed(0))), '10.3.2.0/24', 'a /30 inside blocks it');
  t.equal(pickFreeSubnet(NET16, [cidr('10.3.0.0/16')], fixed(0)), undefined, 'the whole network leased');
  t.equal(pickFreeSubnet(NET16, [cidr('10.0.0.0/8')], fixed(0.5)), undefined, 'a supernet of the network leased');
  t.equal(fmt(pickFreeSubnet(NET16, [cidr('10.4.0.0/16'), cidr('192.168.1.0/24'), cidr('10.2.255.0/24')], fixed(0))),
    '10.3.1.0/24', 'leases outside the network do not matter');
  t.equal(fmt(pickFreeSubnet(NET16, [cidr('10.3.0.0/24')], fixed(0))), '10.3.1.0/24', 'lease on the skipped first subnet');
});

t.test('never returns a leased or overlapping subnet (property check)', async (t) => {
  let seed = 12345;
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
  const lens = [22, 23, 24, 24, 24, 25, 26, 30];
  let bad = 0;
  let picks = 0;
  for (let round = 0; round < 200; round++) {
    const leased: Cidr4[] = [];
    const n = Math.floor(rnd() * 300);
    for (let i = 0; i < n; i++) {
      const len = lens[Math.floor(rnd() * lens.length)] as number;
      const ipNum = (0x0a030000 + Math.floor(rnd() * 65536)) >>> 0;
      leased.push({ ip: (ipNum & maskOf(len)) >>> 0, prefixLen: len });
    }
    const c = pickFreeSubnet(NET16, leased, rnd);
    if (c === undefined) {
      if (freeSubnets(NET16, leased, 1).length !== 0) bad++;
      continue;
    }
    picks++;
    const ok = c.prefixLen === 24 && isCompatible(NET16, c) && cidrContains(NET16.network, c.ip)
      && !leased.some((l) => cidrOverlaps(l, c));
    if (!ok) bad++;
  }
  t.ok(picks > 50, `made ${picks} picks`);
  t.equal(bad, 0, 'every pick is free, compatible and inside the network; undefined only when none is free');
});

t.test('returns undefined when the pool is exhausted', async (t) => {
  const all = [cidr('10.4.1.0/24'), cidr('10.4.2.0/24'), cidr('10.4.3.0/24')];
  t.equal(pickFreeSubnet(NET22, all, fixed(0)), undefined);
  t.equal(pickFreeSubnet(NET22, all, fixed(0.999)), undefined);
  t.same(freeSubnets(NET22, all), []);
  t.equal(fmt(pickFreeSubnet(NET22, all.slice(0, 2), fixed(0.999))), '10.4.3.0/24', 'one left');
  t.equal(pickFreeSubnet(NET16, firstN(255), fixed(0)), undefined, 'all 255 subnets of the /16 leased');
  t.equal(fmt(pickFreeSubnet(NET16, firstN(254), fixed(0.999))), '10.3.255.0/24', 'only SubnetMax left');
});

t.test('default random (Math.random) stays within the first 100 free', async (t) => {
  const allowed = new Set(firstN(100).map(formatCidr4));
  let outside = 0;
  for (let i = 0; i < 500; i++) {
    const c = pickFreeSubnet(NET16, []);
    if (!c || !allowed.has(formatCidr4(c))) outside++;
  }
  t.equal(outside, 0);
});

t.test('isCompatible: right length and inside [SubnetMin, SubnetMax] (isSubnetConfigCompat)', async (t) => {
  t.ok(isCompatible(NET16, cidr('10.3.1.0/24')), 'SubnetMin');
  t.ok(isCompatible(NET16, cidr('10.3.128.0/24')));
  t.ok(isCompatible(NET16, cidr('10.3.255.0/24')), 'SubnetMax');
  t.notOk(isCompatible(NET16, cidr('10.3.0.0/24')), 'below SubnetMin (the skipped first subnet)');
  t.notOk(isCompatible(NET16, cidr('10.4.0.0/24')), 'outside the network, above');
  t.notOk(isCompatible(NET16, cidr('10.2.255.0/24')), 'outside the network, below');
  t.notOk(isCompatible(NET16, cidr('192.168.1.0/24')), 'another network');
  t.notOk(isCompatible(NET16, cidr('10.3.1.0/25')), 'wrong length (longer)');
  t.notOk(isCompatible(NET16, cidr('10.3.2.0/23')), 'wrong length (shorter)');
  t.notOk(isCompatible(NET16, cidr('10.3.0.0/16')), 'the network itself');
  const cfg = config({ Network: '10.3.0.0/16', SubnetLen: 26, SubnetMin: '10.3.1.0', SubnetMax: '10.3.2.192' });
  t.ok(isCompatible(cfg, cidr('10.3.1.64/26')));
  t.ok(isCompatible(cfg, cidr('10.3.2.192/26')), 'custom SubnetMax');
  t.notOk(isCompatible(cfg, cidr('10.3.3.0/26')), 'above custom SubnetMax');
  t.notOk(isCompatible(cfg, cidr('10.3.0.192/26')), 'below custom SubnetMin');
  t.notOk(isCompatible(cfg, cidr('10.3.1.0/24')), '/24 under a /26 config');
  // subnet.env's FLANNEL_SUBNET=10.3.7.1/24 masks to 10.3.7.0/24, which is compatible.
  t.ok(isCompatible(NET16, cidr('10.3.7.1/24')));
});

t.test('poolUsage counts total and taken', async (t) => {
  t.same(poolUsage(NET16, []), { total: 255, taken: 0 });
  t.same(poolUsage(NET22, []), { total: 3, taken: 0 });
  t.same(poolUsage(NET16, firstN(3)), { total: 255, taken: 3 });
  t.same(poolUsage(NET16, [...firstN(3), cidr('10.4.1.0/24'), cidr('10.3.0.0/24')]), { total: 255, taken: 3 },
    'leases outside [min, max] are not counted');
  t.same(poolUsage(NET16, [cidr('10.3.0.0/20')]), { total: 255, taken: 15 }, 'a /20 takes 10.3.1–15');
  t.same(poolUsage(NET16, [cidr('10.3.1.0/25'), cidr('10.3.1.128/25')]), { total: 255, taken: 1 }, 'two halves of one /24');
  t.same(poolUsage(NET16, [cidr('10.3.0.0/16')]), { total: 255, taken: 255 });
  t.same(poolUsage(NET16, firstN(255)), { total: 255, taken: 255 });
  t.same(poolUsage(NET22, [cidr('10.4.1.0/24'), cidr('10.4.1.0/24')]), { total: 3, taken: 1 }, 'duplicates counted once');
  t.same(poolUsage(config({ Network: '10.3.0.0/16', SubnetMin: '10.3.20.0', SubnetMax: '10.3.10.0' }), []), { total: 0, taken: 0 },
    'Min > Max');
  t.same(poolUsage(config({ Network: '10.0.0.0/8' }), []), { total: 65535, taken: 0 }, 'a /8 of /24s');
});

// ---- the top of the address space --------------------------------------------------------------
// A Network that ends at 255.255.255.255 has SubnetMax = the last subnet; stepping past it wraps the
// uint32 to 0.0.0.0, which is again <= SubnetMax. flannel's Go loop (sn.IP <= SubnetMax, IP4 is a uint32)
// has the same wrap, but the rule it implements is "walk [SubnetMin, SubnetMax]"; a subnet outside the
// Network must never be offered.

/** 255.255.255.0/24: SubnetLen 26, SubnetMin 255.255.255.64, SubnetMax 255.255.255.192 (3 subnets). */
const TOP = config({ Network: '255.255.255.0/24' });

t.test('top of the address space: the walk stays inside the network', async (t) => {
  t.equal(formatCidr4(TOP.network), '255.255.255.0/24');
  const free = freeSubnets(TOP, [], 10);
  t.same(free.map(formatCidr4), ['255.255.255.64/26', '255.255.255.128/26', '255.255.255.192/26'],
    'only the 3 subnets of the network');
  t.equal(fmt(pickFreeSubnet(TOP, [], fixed(0.999))), '255.255.255.192/26', '0.999 -> the last of 3, not a wrapped 0.0.x.x subnet');
  t.equal(pickFreeSubnet(TOP, [cidr('255.255.255.0/24')], fixed(0)), undefined, 'exhausted, not 0.0.0.0/26');
});

t.test('top of the address space: poolUsage terminates', async (t) => {
  // Run in a child process with a timeout and a small heap: a non-terminating walk must not hang this file.
  const allocator = fileURLToPath(new URL('../../../subnet/allocator.ts', import.meta.url));
  const netcfg = fileURLToPath(new URL('../../../subnet/network-config.ts', import.meta.url));
  const code = `
    const { poolUsage } = await import(${JSON.stringify(allocator)});
    const { parseNetworkConfig } = await import(${JSON.stringify(netcfg)});
    const cfg = parseNetworkConfig('{"Network":"255.255.255.0/24"}', 'test');
    process.stdout.write(JSON.stringify(poolUsage(cfg.ipv4, [])));
  `;
  const r = spawnSync(process.execPath, ['--max-old-space-size=64', '--import', 'tsx', '--input-type=module', '-e', code], {
    encoding: 'utf8', timeout: 15_000,
  });
  t.equal(r.signal, null, `child not killed (signal ${String(r.signal)}; timed out or ran out of memory)`);
  const why = (r.stderr ?? '').split('\n').find((l) => /error/i.test(l)) ?? '';
  t.equal(r.status, 0, `child exited 0 (${why})`);
  t.equal(r.stdout, '{"total":3,"taken":0}');
});
