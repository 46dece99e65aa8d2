// Unit tests for subnet/ip.ts: IPv4 addresses and prefixes as uint32 numbers, with the semantics
// flannel's pkg/ip (IP4 = uint32, IP4Net{IP, PrefixLen}) relies on.
import t from 'tap';
import {
  cidrContains, cidrEquals, cidrOverlaps, formatCidr4, formatIp4, lastIp, makeCidr4, maskOf, nextCidr,
  parseCidr4, parseIp4, sizeOf,
} from '../../../lib/ip.js';

const ip = (text: string): number => {
  const v = parseIp4(text);
  if (v === undefined) throw new Error(`test setup: bad IP ${text}`);
  return v;
};
const cidr = (text: string) => {
  const c = parseCidr4(text);
  if (c === undefined) throw new Error(`test setup: bad CIDR ${text}`);
  return c;
};

t.test('parseIp4 accepts dotted quads as unsigned host-order numbers', async (t) => {
  t.equal(parseIp4('0.0.0.0'), 0);
  t.equal(parseIp4('0.0.0.1'), 1);
  t.equal(parseIp4('0.0.1.0'), 256);
  t.equal(parseIp4('10.0.0.0'), 0x0a000000);
  t.equal(parseIp4('10.244.3.0'), 0x0af40300);
  t.equal(parseIp4('192.168.64.3'), 0xc0a84003);
  t.equal(parseIp4('255.255.255.255'), 0xffffffff, 'top address is positive, not -1');
  t.equal(parseIp4('128.0.0.0'), 0x80000000, 'high bit set stays unsigned');
  t.ok((parseIp4('200.1.2.3') as number) > 0);
});

t.test('parseIp4 rejects anything that is not a plain dotted quad', async (t) => {
  for (const bad of [
    '', '10', '10.0', '10.0.0', '10.0.0.0.0', '256.0.0.0', '10.0.0.256', '10.0.0.-1', '-1.0.0.0',
    '010.0.0.1', '10.00.0.1', '10.0.0.01', ' 10.0.0.1', '10.0.0.1 ', '10.0.0.1/24', 'a.b.c.d',
    '10..0.1', '10.0.0.', '.10.0.0', '::1', 'fc00::1', '::ffff:10.0.0.1', '0x0a.0.0.1', '1e1.0.0.1',
    '1000.0.0.1', '10.0.0.1\n',
  ]) {
    t.equal(parseIp4(bad), undefined, `rejects ${JSON.stringify(bad)}`);
  }
});

t.test('formatIp4 is the inverse of parseIp4', async (t) => {
  for (const text of ['0.0.0.0', '1.2.3.4', '10.244.3.0', '127.0.0.1', '128.0.0.0', '192.168.64.3', '255.255.255.255', '255.0.255.0']) {
    t.equal(formatIp4(ip(text)), text, text);
  }
  t.equal(formatIp4(0xffffffff), '255.255.255.255');
  t.equal(formatIp4(0x80000001), '128.0.0.1');
});

t.test('maskOf and sizeOf', async (t) => {
  t.equal(maskOf(0), 0);
  t.equal(maskOf(1), 0x80000000);
  t.equal(maskOf(8), 0xff000000);
  t.equal(maskOf(16), 0xffff0000);
  t.equal(maskOf(24), 0xffffff00);
  t.equal(maskOf(31), 0xfffffffe);
  t.equal(maskOf(32), 0xffffffff);
  for (let len = 0; len <= 32; len++) {
    const m = maskOf(len);
    if (m < 0 || m > 0xffffffff) t.fail(`maskOf(${len}) out of uint32 range: ${m}`);
  }
  t.equal(sizeOf(32), 1);
  t.equal(sizeOf(31), 2);
  t.equal(sizeOf(24), 256);
  t.equal(sizeOf(16), 65536);
  t.equal(sizeOf(0), 2 ** 32);
});

t.test('makeCidr4 masks host bits', async (t) => {
  t.same(makeCidr4(ip('10.5.72.1'), 24), { ip: ip('10.5.72.0'), prefixLen: 24 });
  t.same(makeCidr4(ip('10.5.0.1'), 16), { ip: ip('10.5.0.0'), prefixLen: 16 });
  t.same(makeCidr4(ip('255.255.255.255'), 24), { ip: ip('255.255.255.0'), prefixLen: 24 }, 'high addresses stay unsigned');
  t.same(makeCidr4(ip('10.1.2.3'), 32), { ip: ip('10.1.2.3'), prefixLen: 32 });
  t.same(makeCidr4(ip('10.1.2.3'), 0), { ip: 0, prefixLen: 0 });
  t.ok(makeCidr4(ip('200.1.2.3'), 8).ip >= 0, 'never negative');
});

t.test('parseCidr4 parses v4 CIDRs and masks host bits like Go net.ParseCIDR', async (t) => {
  t.same(parseCidr4('10.244.0.0/16'), { ip: ip('10.244.0.0'), prefixLen: 16 });
  t.same(parseCidr4('10.5.0.1/16'), { ip: ip('10.5.0.0'), prefixLen: 16 }, '10.5.0.1/16 -> 10.5.0.0/16');
  t.same(parseCidr4('10.5.72.1/24'), { ip: ip('10.5.72.0'), prefixLen: 24 }, 'subnet.env FLANNEL_SUBNET form');
  t.same(parseCidr4('0.0.0.0/0'), { ip: 0, prefixLen: 0 });
  t.same(parseCidr4('1.2.3.4/32'), { ip: ip('1.2.3.4'), prefixLen: 32 });
  t.same(parseCidr4('192.168.255.255/17'), { ip: ip('192.168.128.0'), prefixLen: 17 });
});

t.test('parseCidr4 rejects everything else', async (t) => {
  for (const bad of [
    '', '10.0.0.0', '10.0.0.0/', '/24', '10.0.0.0/33', '10.0.0.0/100', '10.0.0.0/-1', '10.0.0.0/a',
    '10.0.0.0/24/24', '10.0.0/24', '256.0.0.0/8', '10.0.0.0 /24', '10.0.0.0/ 24', 'fc00::/48',
    '::/0', '2001:db8::1/64', '10.0.0.0/24 ',
  ]) {
    t.equal(parseCidr4(bad), undefined, `rejects ${JSON.stringify(bad)}`);
  }
});

t.test('formatCidr4 round trip', async (t) => {
  for (const text of ['10.244.0.0/16', '10.244.3.0/24', '0.0.0.0/0', '255.255.255.252/30', '1.2.3.4/32']) {
    t.equal(formatCidr4(cidr(text)), text, text);
  }
  t.equal(formatCidr4(cidr('10.5.0.1/16')), '10.5.0.0/16', 'formats the masked network');
});

t.test('cidrContains', async (t) => {
  const n = cidr('10.244.0.0/16');
  t.ok(cidrContains(n, ip('10.244.0.0')), 'network address');
  t.ok(cidrContains(n, ip('10.244.3.7')));
  t.ok(cidrContains(n, ip('10.244.255.255')), 'broadcast address');
  t.notOk(cidrContains(n, ip('10.245.0.0')));
  t.notOk(cidrContains(n, ip('10.243.255.255')));
  t.notOk(cidrContains(n, ip('0.0.0.0')));
  const high = cidr('240.0.0.0/4');
  t.ok(cidrContains(high, ip('255.255.255.255')), 'high-bit prefixes compare unsigned');
  t.ok(cidrContains(high, ip('240.0.0.0')));
  t.notOk(cidrContains(high, ip('239.255.255.255')));
  t.ok(cidrContains(cidr('0.0.0.0/0'), ip('200.1.2.3')), '/0 contains everything');
  t.ok(cidrContains(cidr('1.2.3.4/32'), ip('1.2.3.4')));
  t.notOk(cidrContains(cidr('1.2.3.4/32'), ip('1.2.3.5')));
});

t.test('cidrOverlaps compares under the shorter mask (flannel IP4Net.Overlaps)', async (t) => {
  const a = cidr('10.244.0.0/16');
  const b = cidr('10.244.3.0/24');
  t.ok(cidrOverlaps(a, b), 'supernet overlaps its subnet');
  t.ok(cidrOverlaps(b, a), 'symmetric');
  t.ok(cidrOverlaps(b, b), 'identical prefixes overlap');
  t.notOk(cidrOverlaps(b, cidr('10.244.4.0/24')), 'adjacent /24s do not overlap');
  t.notOk(cidrOverlaps(cidr('10.244.2.0/24'), b));
  t.ok(cidrOverlaps(b, cidr('10.244.3.128/25')), 'a /25 inside the /24');
  t.notOk(cidrOverlaps(cidr('10.244.2.0/23'), cidr('10.244.4.0/24')));
  t.ok(cidrOverlaps(cidr('10.244.2.0/23'), b), '/23 covers 10.244.3.0/24');
  t.notOk(cidrOverlaps(a, cidr('10.245.0.0/16')));
  t.ok(cidrOverlaps(cidr('0.0.0.0/0'), cidr('200.0.0.0/8')), '/0 overlaps everything');
  t.ok(cidrOverlaps(cidr('255.255.255.0/24'), cidr('255.255.0.0/16')), 'high addresses compare unsigned');
  t.notOk(cidrOverlaps(cidr('128.0.0.0/1'), cidr('127.0.0.0/8')));
});

t.test('cidrEquals', async (t) => {
  t.ok(cidrEquals(cidr('10.244.3.0/24'), cidr('10.244.3.0/24')));
  t.ok(cidrEquals(cidr('10.244.3.9/24'), cidr('10.244.3.0/24')), 'after masking');
  t.notOk(cidrEquals(cidr('10.244.3.0/24'), cidr('10.244.3.0/25')), 'same IP, other length');
  t.notOk(cidrEquals(cidr('10.244.3.0/24'), cidr('10.244.4.0/24')));
});

t.test('lastIp is the broadcast address', async (t) => {
  t.equal(formatIp4(lastIp(cidr('10.244.0.0/16'))), '10.244.255.255');
  t.equal(formatIp4(lastIp(cidr('10.244.3.0/24'))), '10.244.3.255');
  t.equal(formatIp4(lastIp(cidr('10.0.0.4/30'))), '10.0.0.7');
  t.equal(formatIp4(lastIp(cidr('1.2.3.4/32'))), '1.2.3.4');
  t.equal(lastIp(cidr('0.0.0.0/0')), 0xffffffff);
  t.equal(lastIp(cidr('255.255.255.0/24')), 0xffffffff, 'unsigned at the top of the space');
});

t.test('nextCidr steps by the prefix size', async (t) => {
  t.equal(formatCidr4(nextCidr(cidr('10.5.1.0/24'))), '10.5.2.0/24');
  t.equal(formatCidr4(nextCidr(cidr('10.5.255.0/24'))), '10.6.0.0/24', 'carries into the next octet');
  t.equal(formatCidr4(nextCidr(cidr('10.0.0.0/30'))), '10.0.0.4/30');
  t.equal(formatCidr4(nextCidr(cidr('10.0.0.0/25'))), '10.0.0.128/25');
  t.equal(formatCidr4(nextCidr(cidr('127.255.255.0/24'))), '128.0.0.0/24', 'crosses the sign bit unsigned');
  t.equal(nextCidr(cidr('10.5.1.0/24')).prefixLen, 24);
  // Like Go's uint32 IP4, the step past the last /24 wraps to 0.0.0.0 (documented, not a rule).
  t.equal(formatCidr4(nextCidr(cidr('255.255.255.0/24'))), '0.0.0.0/24');
});
