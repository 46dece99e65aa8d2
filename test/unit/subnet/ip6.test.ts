// Unit tests for lib/ip6.ts: IPv6 text as Go's net.ParseIP / net.IP.String() handle it (RFC 5952), CIDRs
// as net.ParseCIDR masks them, and the subnet arithmetic flannel's config and allocator need.
import t from 'tap';
import {
  type Cidr6, cidr6Contains, cidr6Equals, cidr6Overlaps, formatCidr6, canonicalIp6Text, formatIp6, isIp4Mapped, isOnBoundary6, lastIp6,
  makeCidr6, maskOf6, nextCidr6, nthSubnet6, parseCidr6, parseIp6, sizeOf6, subnetCount6,
} from '../../../lib/ip6.js';

const ip6 = (text: string): bigint => {
  const v = parseIp6(text);
  if (v === undefined) throw new Error(`test setup: bad IPv6 ${text}`);
  return v;
};
const cidr6 = (text: string): Cidr6 => {
  const c = parseCidr6(text);
  if (c === undefined) throw new Error(`test setup: bad IPv6 CIDR ${text}`);
  return c;
};
const hex = (v: bigint | undefined): string | undefined => (v === undefined ? undefined : v.toString(16).padStart(32, '0'));

t.test('parseIp6: full, compressed and embedded-IPv4 forms', async (t) => {
  const cases: Array<[string, string]> = [
    ['::', '00000000000000000000000000000000'],
    ['::1', '00000000000000000000000000000001'],
    ['1::', '00010000000000000000000000000000'],
    ['2001:db8::1', '20010db8000000000000000000000001'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '20010db8000000000000000000000001'],
    ['2001:DB8::A', '20010db800000000000000000000000a'],
    ['fd00:10:244:1::', 'fd000010024400010000000000000000'],
    ['fc00::', 'fc000000000000000000000000000000'],
    ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008'],
    ['1:2:3:4:5:6:7::', '00010002000300040005000600070000'],
    ['::2:3:4:5:6:7:8', '00000002000300040005000600070008'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ffffffffffffffffffffffffffffffff'],
    ['::ffff:1.2.3.4', '00000000000000000000ffff01020304'],
    ['::1.2.3.4', '00000000000000000000000001020304'],
    ['64:ff9b::192.0.2.33', '0064ff9b0000000000000000c0000221'],
    ['0:0:0:0:0:ffff:10.0.0.1', '00000000000000000000ffff0a000001'],
    ['1:2:3:4:5:6:255.255.255.255', '000100020003000400050006ffffffff'],
  ];
  for (const [text, want] of cases) t.equal(hex(parseIp6(text)), want, text);
});

t.test('parseIp6: rejects garbage, zones, bare IPv4 and malformed forms', async (t) => {
  for (const text of [
    '', ':', ':::', '1:::2', '1::2::3', '::1::', ':1::', '1::2:', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7:8::', '::1:2:3:4:5:6:7:8', '12345::', 'g::', '2001:db8::1 ', ' 2001:db8::1', 'fe80::1%eth0',
    'fe80::1%1', '10.0.0.1', '::1.2.3', '::1.2.3.4.5', '::256.0.0.1', '::01.2.3.4', '::1.2.3.4:5', '1.2.3.4::',
    '1:2:3:4:5:6:7:1.2.3.4', '2001:db8::/64', '[::1]', '0x1::', '-1::', '+1::',
  ]) {
    t.equal(parseIp6(text), undefined, JSON.stringify(text));
  }
});

t.test('formatIp6: RFC 5952 as Go net.IP.String()', async (t) => {
  const cases: Array<[string, string]> = [
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['fd00:0010:0244:0001:0000:0000:0000:0000', 'fd00:10:244:1::'],
    ['2001:cafe:0042:0000:0000:0000:0000:0001', '2001:cafe:42::1'],
    // a single zero group is never "::"
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
    ['1:2:3:4:5:6:7:0', '1:2:3:4:5:6:7:0'],
    // the longest run wins, wherever it is
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['1:0:0:0:2:0:0:3', '1::2:0:0:3'],
    // equal runs: the first is compressed
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['1:0:0:2:3:0:0:4', '1::2:3:0:0:4'],
    ['0:0:1:2:3:4:0:0', '::1:2:3:4:0:0'],
    ['0:0:0:1:0:0:0:1', '::1:0:0:0:1'],
    ['1:2:3:4:5:6:0:0', '1:2:3:4:5:6::'],
    ['0:0:1:2:3:4:5:6', '::1:2:3:4:5:6'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    // the IPv4-compatible form is printed in hex, as Go does
    ['::1.2.3.4', '::102:304'],
    ['::ffff:0:0:1', '::ffff:0:0:1'],
  ];
  for (const [text, want] of cases) t.equal(formatIp6(ip6(text)), want, text);
});

t.test('formatIp6: IPv4-mapped addresses print as a.b.c.d (Go net.IP.String())', async (t) => {
  t.ok(isIp4Mapped(ip6('::ffff:10.0.0.1')));
  t.notOk(isIp4Mapped(ip6('::10.0.0.1')));
  t.notOk(isIp4Mapped(ip6('1::ffff:10.0.0.1')));
  t.equal(formatIp6(ip6('::ffff:10.0.0.1')), '10.0.0.1');
  t.equal(formatIp6(ip6('::ffff:0:0')), '0.0.0.0');
  t.equal(formatIp6(ip6('::ffff:255.255.255.255')), '255.255.255.255');
  t.equal(formatIp6(ip6('::fffe:255.255.255.255')), '::fffe:ffff:ffff', 'next to the range: hex');
});

t.test('parseIp6 / formatIp6 round trip outside ::ffff:0:0/96', async (t) => {
  for (const text of ['::', '::1', '1::', 'fc00::', '2001:db8::1', 'fd00:10:244:1::', '2001:db8::1:0:0:1', '::102:304',
    'fe80::1:2', '1:2:3:4:5:6:7:8', '1::8', '2001:db8:0:1:1:1:1:1', 'ffff::ffff']) {
    t.equal(formatIp6(ip6(text)), text, text);
  }
  let x = 0x0123456789abcdef_fedcba9876543210n;
  for (let i = 0; i < 200; i++) {
    // a deterministic walk through addresses with varied zero groups
    x = (x * 6364136223846793005n + 1442695040888963407n) & ((1n << 128n) - 1n);
    const zeroed = x & ~(0xffffn << BigInt(16 * (i % 8))) & ~(0xffffn << BigInt(16 * ((i * 3) % 8)));
    if (isIp4Mapped(zeroed)) continue;
    t.equal(parseIp6(formatIp6(zeroed)), zeroed);
  }
});

t.test('maskOf6 / sizeOf6', async (t) => {
  t.equal(maskOf6(0), 0n);
  t.equal(hex(maskOf6(64)), 'ffffffffffffffff0000000000000000');
  t.equal(hex(maskOf6(1)), '80000000000000000000000000000000');
  t.equal(hex(maskOf6(127)), 'fffffffffffffffffffffffffffffffe');
  t.equal(hex(maskOf6(128)), 'ffffffffffffffffffffffffffffffff');
  t.equal(sizeOf6(128), 1n);
  t.equal(sizeOf6(64), 1n << 64n);
  t.equal(sizeOf6(0), 1n << 128n);
});

t.test('parseCidr6 / formatCidr6: host bits masked as Go net.ParseCIDR', async (t) => {
  t.equal(formatCidr6(cidr6('fd00:10:244:1::/64')), 'fd00:10:244:1::/64');
  t.equal(formatCidr6(cidr6('2001:cafe:42::1/64')), '2001:cafe:42::/64', 'subnet.env form masks to the network');
  t.equal(formatCidr6(cidr6('fc00::/48')), 'fc00::/48');
  t.equal(formatCidr6(cidr6('FC00:0:0:0:0:0:0:0/7')), 'fc00::/7');
  t.equal(formatCidr6(cidr6('2001:db8:1:2:3:4:5:6/128')), '2001:db8:1:2:3:4:5:6/128');
  t.equal(formatCidr6(cidr6('2001:db8:1:2:3:4:5:6/0')), '::/0');
  t.equal(formatCidr6(cidr6('2001:db8:ffff::/33')), '2001:db8:8000::/33');
  t.same(makeCidr6(ip6('fd00::1'), 126), { ip: ip6('fd00::'), prefixLen: 126 });
  for (const bad of ['', 'fc00::', 'fc00::/', 'fc00::/129', 'fc00::/-1', 'fc00::/1000', 'fc00::/6 4', 'fc00::/0x40',
    '10.0.0.0/8', 'fe80::%eth0/64', 'fc00::/64/1', 'garbage/64']) {
    t.equal(parseCidr6(bad), undefined, JSON.stringify(bad));
  }
});

t.test('contains / overlaps / equals / boundary', async (t) => {
  const net = cidr6('fd00:10:244::/48');
  t.ok(cidr6Contains(net, ip6('fd00:10:244::')));
  t.ok(cidr6Contains(net, ip6('fd00:10:244:ffff:ffff:ffff:ffff:ffff')));
  t.notOk(cidr6Contains(net, ip6('fd00:10:245::')));
  t.notOk(cidr6Contains(net, ip6('fd00:10:243:ffff:ffff:ffff:ffff:ffff')));
  t.ok(cidr6Contains(cidr6('::/0'), ip6('2001:db8::1')));
  t.ok(cidr6Overlaps(net, cidr6('fd00:10:244:7::/64')));
  t.ok(cidr6Overlaps(cidr6('fd00:10:244:7::/64'), net));
  t.notOk(cidr6Overlaps(net, cidr6('fd00:10:245::/64')));
  t.ok(cidr6Equals(cidr6('fc00::/48'), cidr6('fc00::1/48')));
  t.notOk(cidr6Equals(cidr6('fc00::/48'), cidr6('fc00::/49')));
  t.ok(isOnBoundary6(ip6('fd00:10:244:1::'), 64));
  t.notOk(isOnBoundary6(ip6('fd00:10:244:1::1'), 64));
  t.ok(isOnBoundary6(ip6('fd00::4'), 126));
  t.notOk(isOnBoundary6(ip6('fd00::2'), 126));
});

t.test('lastIp6 / nextCidr6', async (t) => {
  t.equal(formatIp6(lastIp6(cidr6('fd00:10:244::/48'))), 'fd00:10:244:ffff:ffff:ffff:ffff:ffff');
  t.equal(formatIp6(lastIp6(cidr6('fd00::/126'))), 'fd00::3');
  t.equal(formatCidr6(nextCidr6(cidr6('fd00:10:244:1::/64'))), 'fd00:10:244:2::/64');
  t.equal(formatCidr6(nextCidr6(cidr6('fd00:10:244:ffff::/64'))), 'fd00:10:245::/64', 'carry into the next group');
  t.equal(formatCidr6(nextCidr6(cidr6('fc00::/48'))), 'fc00:0:1::/48');
  t.equal(formatCidr6(nextCidr6(cidr6('fd00::4/126'))), 'fd00::8/126');
  t.equal(formatCidr6(nextCidr6(cidr6('ffff:ffff:ffff:ffff::/64'))), '::/64', 'wraps at the top');
});

t.test('subnetCount6 / nthSubnet6', async (t) => {
  const net = cidr6('fd00:10:244::/48');
  t.equal(subnetCount6(net, 64), 65536n);
  t.equal(subnetCount6(net, 48), 1n);
  t.equal(subnetCount6(net, 47), 0n, 'a subnet longer than the network: none');
  t.equal(subnetCount6(cidr6('::/0'), 128), 1n << 128n);
  const nth = (n: bigint): string | undefined => {
    const c = nthSubnet6(net, 64, n);
    return c === undefined ? undefined : formatCidr6(c);
  };
  t.equal(nth(0n), 'fd00:10:244::/64');
  t.equal(nth(1n), 'fd00:10:244:1::/64');
  t.equal(nth(255n), 'fd00:10:244:ff::/64');
  t.equal(nth(65535n), 'fd00:10:244:ffff::/64', 'the last one');
  t.equal(nth(65536n), undefined, 'one past the end');
  t.equal(nth(-1n), undefined);
  const small = cidr6('fd00::/124');
  t.equal(formatCidr6(nthSubnet6(small, 126, 3n) as Cidr6), 'fd00::c/126');
  t.equal(nthSubnet6(small, 126, 4n), undefined);
  t.equal(nthSubnet6(small, 120, 0n), undefined, 'subnet shorter than the network');
});

t.test('canonicalIp6Text: any IPv6 spelling in formatIp6\'s, other text unchanged', async (t) => {
  t.equal(canonicalIp6Text('2001:DB8:0:0::0:1'), '2001:db8::1');
  t.equal(canonicalIp6Text('fd00:10:244:3e:0:0:0:0'), 'fd00:10:244:3e::');
  t.equal(canonicalIp6Text('192.0.2.1'), '192.0.2.1');
  t.equal(canonicalIp6Text('not:an:address:at:all'), 'not:an:address:at:all');
});
