// Unit tests for the dual-stack part of subnet/lease.ts (issue #18, first slice): flannel's key
// <prefix>/subnets/10.244.1.0-24&fd00:10:244:1::-64 (pkg/subnet/subnet.go subnetRegex, ParseSubnetKey,
// MakeSubnetKey) and the PublicIPv6 / BackendV6Data fields of the value (pkg/lease LeaseAttrs).
import t from 'tap';
import {
  type LeaseAttrs, decodeLeaseAttrs, describeSubnets, encodeLeaseAttrs, leaseIdentity, sameAttrs, sameNode, subnetFromKey, subnetToKeyPart, subnetsFromKey,
} from '../../../subnet/lease.js';
import { type Cidr4, formatCidr4, parseCidr4, parseIp4 } from '../../../lib/ip.js';
import { type Cidr6, formatCidr6, parseCidr6, parseIp6 } from '../../../lib/ip6.js';

const ip = (text: string): number => {
  const v = parseIp4(text);
  if (v === undefined) throw new Error(`test setup: bad IP ${text}`);
  return v;
};
const ip6 = (text: string): bigint => {
  const v = parseIp6(text);
  if (v === undefined) throw new Error(`test setup: bad IPv6 ${text}`);
  return v;
};
const cidr = (text: string): Cidr4 => {
  const c = parseCidr4(text);
  if (c === undefined) throw new Error(`test setup: bad CIDR ${text}`);
  return c;
};
const cidr6 = (text: string): Cidr6 => {
  const c = parseCidr6(text);
  if (c === undefined) throw new Error(`test setup: bad IPv6 CIDR ${text}`);
  return c;
};
const keyView = (key: string): string[] | undefined => {
  const k = subnetsFromKey(key);
  return k && (k.ipv6Subnet ? [formatCidr4(k.subnet), formatCidr6(k.ipv6Subnet)] : [formatCidr4(k.subnet)]);
};

const PREFIX = '/coreos.com/network/subnets/';
const VX4 = '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}';
const VX6 = '{"VNI":1,"VtepMAC":"5e:21:a0:9b:0c:7d"}';

// ---- keys -----------------------------------------------------------------------------------------

t.test('subnetToKeyPart writes flannel\'s dual-stack key (MakeSubnetKey)', async (t) => {
  t.equal(subnetToKeyPart(cidr('10.244.1.0/24'), cidr6('fd00:10:244:1::/64')), '10.244.1.0-24&fd00:10:244:1::-64');
  t.equal(subnetToKeyPart(cidr('10.5.1.0/24'), cidr6('fc00::/64')), '10.5.1.0-24&fc00::-64');
  t.equal(subnetToKeyPart(cidr('10.42.3.0/24'), cidr6('2001:cafe:42:3::/64')), '10.42.3.0-24&2001:cafe:42:3::-64');
  t.equal(subnetToKeyPart(cidr('10.4.0.128/25'), cidr6('fd00::c/126')), '10.4.0.128-25&fd00::c-126');
  t.equal(subnetToKeyPart(cidr('10.244.1.0/24'), cidr6('fd00:0:0:0:1::/80')), '10.244.1.0-24&fd00::1:0:0:0-80',
    'equal zero runs: the first is compressed, as Go does');
  t.equal(subnetToKeyPart(cidr('10.244.1.0/24'), cidr6('2001:db8:0:1:1::/80')), '10.244.1.0-24&2001:db8:0:1:1::-80',
    'a single zero group is not compressed');
  t.equal(subnetToKeyPart(cidr('10.244.1.0/24')), '10.244.1.0-24', 'no v6 subnet: the IPv4 key as before');
  t.equal(subnetToKeyPart(cidr('10.244.1.0/24'), undefined), '10.244.1.0-24');
});

t.test('subnetsFromKey reads both subnets of a dual-stack key (ParseSubnetKey)', async (t) => {
  t.same(keyView(`${PREFIX}10.244.1.0-24&fd00:10:244:1::-64`), ['10.244.1.0/24', 'fd00:10:244:1::/64']);
  t.same(keyView('10.5.1.0-24&fc00::-64'), ['10.5.1.0/24', 'fc00::/64'], 'bare key part');
  t.same(keyView(`${PREFIX}10.244.1.0-24&fc00:0:0:1::-64`), ['10.244.1.0/24', 'fc00:0:0:1::/64'], 'uncompressed zeros in the key');
  t.same(keyView(`${PREFIX}10.244.1.0-24&fc00:0000:0000:0001:0000:0000:0000:0000-64`), ['10.244.1.0/24', 'fc00:0:0:1::/64'], 'full form');
  t.same(keyView(`${PREFIX}10.4.0.128-25&fd00::c-126`), ['10.4.0.128/25', 'fd00::c/126']);
  t.same(keyView(`${PREFIX}10.244.1.0-24&::-0`), ['10.244.1.0/24', '::/0'], 'v6 length 0');
  t.same(keyView(`${PREFIX}10.244.1.0-24&fd00::-127`), ['10.244.1.0/24', 'fd00::/127'], 'v6 length 127 is the longest (7-bit parse)');
  t.same(keyView(`${PREFIX}0.0.0.0-0&fd00:0:0:5::-64`), ['0.0.0.0/0', 'fd00:0:0:5::/64'], 'flannel\'s IPv6-only lease: v4 part 0.0.0.0-0');
  t.same(keyView(`${PREFIX}10.244.1.0-24`), ['10.244.1.0/24'], 'an IPv4 key has no ipv6Subnet');
  t.notOk('ipv6Subnet' in (subnetsFromKey(`${PREFIX}10.244.1.0-24`) ?? {}), 'no ipv6Subnet key at all');
  t.equal(formatCidr4(subnetFromKey(`${PREFIX}10.244.1.0-24&fd00:10:244:1::-64`) as Cidr4), '10.244.1.0/24', 'subnetFromKey: the IPv4 part');
});

t.test('subnetsFromKey: round trip through subnetToKeyPart', async (t) => {
  const pairs: Array<[string, string]> = [
    ['10.244.1.0/24', 'fd00:10:244:1::/64'], ['10.5.1.0/24', 'fc00::/64'], ['10.4.0.128/25', 'fd00::c/126'],
    ['10.244.255.0/24', 'fd00:10:244:ff::/64'], ['172.16.0.0/12', '2001:db8::/32'], ['10.244.1.0/24', 'fd00::1:0:0:0/80'],
    ['10.244.1.0/24', '2001:db8:0:1:1::/80'], ['250.0.1.0/24', 'ffff:ffff:ffff:ffff::/64'],
  ];
  for (const [v4, v6] of pairs) {
    const key = `${PREFIX}${subnetToKeyPart(cidr(v4), cidr6(v6))}`;
    t.same(subnetsFromKey(key), { subnet: cidr(v4), ipv6Subnet: cidr6(v6) }, key);
  }
});

t.test('subnetsFromKey: IPv6 host bits are masked, not refused (flannel reads the key; its IPv4 subnet must stay visible)', async (t) => {
  t.same(keyView(`${PREFIX}10.244.1.0-24&fd00::1-64`), ['10.244.1.0/24', 'fd00::/64']);
  t.same(keyView(`${PREFIX}10.244.1.0-24&fd00:0:0:1::-48`), ['10.244.1.0/24', 'fd00::/48']);
});

t.test('subnetsFromKey: keys flannel does not read are not subnets', async (t) => {
  for (const key of [
    '10.244.1.0-24&fd00:10:244:1::-128', // v6 length above 127 (strconv.ParseUint(…, 10, 7))
    '10.244.1.0-24&fd00:10:244:1::-999',
    '10.244.1.0-24&1:::2-64', // the regex matches, net.ParseIP does not
    '10.244.1.0-24&1::2::3-64',
    '10.244.1.0-24&1:2:3:4:5:6:7:8:9-64',
    '10.244.1.0-24&12345::-64',
    '10.244.1.0-24&FD00::-64', // uppercase is outside the regex's [a-f\d:]
    '10.244.1.0-24&zz::-64',
    '10.244.1.0-24&-64',
    '10.244.1.0-24&fd00::',
    '10.244.1.0-24&fd00::-64x',
    '10.244.1.0-24&fd00::%eth0-64',
    '10.244.1.0-24&::ffff:10.0.0.0-120', // no dots in the v6 part
    '10.244.1.0-32&fd00::-64', // v4 length above 31
    '10.244.1.1-24&fd00::-64', // v4 host bits
    '&fd00:10:244:1::-64',
    'fd00:10:244:1::1-64', // IPv6-only (ours): host bits
    'fd00:10:244:1::-128',
    'fd00:10:244:1::-064',
    'FD00:10:244:1::-64',
    'x/fd00:10:244:1::-64x',
  ]) {
    t.equal(subnetsFromKey(`${PREFIX}${key}`), undefined, key);
    t.equal(subnetFromKey(`${PREFIX}${key}`), undefined, `subnetFromKey ${key}`);
  }
});

t.test('IPv6-only keys (ours): fd00:10:244:1::-64, which flannel\'s key regex never matches', async (t) => {
  const flannelRegex = /(\d+\.\d+.\d+.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$/;
  const v6only = { ip: parseIp6('fd00:10:244:1::') as bigint, prefixLen: 64 };
  t.equal(subnetToKeyPart(undefined, v6only), 'fd00:10:244:1::-64');
  t.equal(flannelRegex.test(`${PREFIX}fd00:10:244:1::-64`), false, 'flannel skips the key');
  t.same(subnetsFromKey(`${PREFIX}fd00:10:244:1::-64`), { ipv6Subnet: v6only });
  t.equal(subnetFromKey(`${PREFIX}fd00:10:244:1::-64`), undefined, 'no IPv4 subnet');
  t.equal(leaseIdentity({ ipv6Subnet: v6only }), 'fd00:10:244:1::-64', 'an IPv6-only lease is known by its IPv6 subnet');
  t.equal(leaseIdentity({ subnet: { ip: 0x0af40100, prefixLen: 24 }, ipv6Subnet: v6only }), '10.244.1.0-24', 'a dual-stack lease by its IPv4 one');
  t.equal(describeSubnets({ ipv6Subnet: v6only }), 'fd00:10:244:1::/64');
  t.throws(() => subnetToKeyPart(undefined), RangeError, 'a key needs a subnet');
});

t.test('sameNode: by PublicIP, or by PublicIPv6 when both PublicIPs are 0.0.0.0 (IPv6-only)', async (t) => {
  const a6 = parseIp6('2001:db8::1') as bigint;
  const b6 = parseIp6('2001:db8::2') as bigint;
  t.ok(sameNode({ publicIp: 0, publicIpv6: a6 }, { publicIp: 0, publicIpv6: a6 }));
  t.notOk(sameNode({ publicIp: 0, publicIpv6: a6 }, { publicIp: 0, publicIpv6: b6 }), 'two IPv6-only nodes are told apart');
  t.notOk(sameNode({ publicIp: 0 }, { publicIp: 0 }), 'two leases without any address are not one node');
  t.ok(sameNode({ publicIp: 0x0a000001, publicIpv6: a6 }, { publicIp: 0x0a000001, publicIpv6: b6 }), 'IPv4 nodes by PublicIP, as flannel');
  t.notOk(sameNode({ publicIp: 0x0a000001, publicIpv6: a6 }, { publicIp: 0, publicIpv6: a6 }));
});

// ---- values -------------------------------------------------------------------------------------

t.test('encodeLeaseAttrs: PublicIPv6 and BackendV6Data in flannel\'s order', async (t) => {
  t.equal(encodeLeaseAttrs({ publicIp: ip('192.0.2.1'), publicIpv6: ip6('2001:db8::1'), backendType: 'host-gw' }),
    '{"PublicIP":"192.0.2.1","PublicIPv6":"2001:db8::1","BackendType":"host-gw"}');
  t.equal(encodeLeaseAttrs({ publicIp: ip('192.0.2.1'), publicIpv6: ip6('2001:db8::1'), backendType: 'vxlan', backendData: VX4, backendV6Data: VX6 }),
    `{"PublicIP":"192.0.2.1","PublicIPv6":"2001:db8::1","BackendType":"vxlan","BackendData":${VX4},"BackendV6Data":${VX6}}`);
  t.equal(encodeLeaseAttrs({ publicIp: ip('192.0.2.1'), backendType: 'vxlan', backendData: VX4, backendV6Data: '' }),
    `{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":${VX4}}`, 'empty BackendV6Data omitted');
  t.equal(encodeLeaseAttrs({ publicIp: ip('192.0.2.1'), publicIpv6: ip6('2001:0DB8:0000:0000:0001:0000:0000:0001') }),
    '{"PublicIP":"192.0.2.1","PublicIPv6":"2001:db8::1:0:0:1"}', 'PublicIPv6 printed as Go prints it');
  t.equal(encodeLeaseAttrs({ publicIp: 0, publicIpv6: ip6('2001:db8::7'), backendType: 'host-gw' }),
    '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::7","BackendType":"host-gw"}', 'flannel\'s IPv6-only form');
  t.same(Object.keys(JSON.parse(encodeLeaseAttrs({ publicIp: 1, publicIpv6: 1n, backendType: 'vxlan', backendData: VX4, backendV6Data: VX6 })) as object),
    ['PublicIP', 'PublicIPv6', 'BackendType', 'BackendData', 'BackendV6Data']);
});

t.test('encodeLeaseAttrs: IPv4-only values are written exactly as before', async (t) => {
  t.equal(encodeLeaseAttrs({ publicIp: ip('10.0.0.5'), backendType: 'host-gw' }), '{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendType":"host-gw"}');
  t.equal(encodeLeaseAttrs({ publicIp: ip('10.0.0.5') }), '{"PublicIP":"10.0.0.5","PublicIPv6":null}');
  t.equal(encodeLeaseAttrs({ publicIp: ip('10.0.0.5'), backendType: 'vxlan', backendData: VX4 }),
    `{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendType":"vxlan","BackendData":${VX4}}`);
});

t.test('a dual-stack flannel lease read from etcd round-trips byte for byte', async (t) => {
  const values = [
    `{"PublicIP":"192.168.64.3","PublicIPv6":"2001:db8:1::3","BackendType":"vxlan","BackendData":${VX4},"BackendV6Data":${VX6}}`,
    '{"PublicIP":"192.168.64.4","PublicIPv6":"2001:db8:1::4","BackendType":"host-gw"}',
    '{"PublicIP":"192.168.64.5","PublicIPv6":null,"BackendType":"host-gw"}',
    '{"PublicIP":"0.0.0.0","PublicIPv6":"fd00::1","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}',
    '{"PublicIP":"10.0.0.1","PublicIPv6":"10.0.0.1"}', // IPv4 text in PublicIPv6: Go reads it as ::ffff:10.0.0.1 and prints it back
    '{"PublicIP":"192.168.64.6","PublicIPv6":"fe80::1:2:3:4","BackendType":"wireguard","BackendData":{"PublicKey":"abc="},"BackendV6Data":{"PublicKey":"abc="}}',
  ];
  for (const text of values) {
    const attrs = decodeLeaseAttrs(text);
    t.ok(attrs, text);
    if (attrs) t.equal(encodeLeaseAttrs(attrs), text, 're-encoded identically');
  }
  const vx = decodeLeaseAttrs(values[0] as string);
  t.same(vx, { publicIp: ip('192.168.64.3'), publicIpv6: ip6('2001:db8:1::3'), backendType: 'vxlan', backendData: VX4, backendV6Data: VX6 });
});

t.test('decodeLeaseAttrs: PublicIPv6 and BackendV6Data, leniently', async (t) => {
  t.same(decodeLeaseAttrs('{"publicip":"10.0.0.5","publicipv6":"FD00::5","backendv6data":{"VNI":2}}'),
    { publicIp: ip('10.0.0.5'), publicIpv6: ip6('fd00::5'), backendV6Data: '{"VNI":2}' }, 'any key case, any hex case');
  t.same(decodeLeaseAttrs('{"PublicIP":"10.0.0.5"}'), { publicIp: ip('10.0.0.5') }, 'PublicIPv6 absent');
  t.same(decodeLeaseAttrs('{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendV6Data":null}'), { publicIp: ip('10.0.0.5') }, 'nulls mean none');
  t.same(decodeLeaseAttrs('{"PublicIP":"10.0.0.5","BackendV6Data":{ "VNI" : 1 }}'), { publicIp: ip('10.0.0.5'), backendV6Data: '{"VNI":1}' }, 'compacted');
});

t.test('decodeLeaseAttrs: a PublicIPv6 Go cannot decode makes the value unusable, as in flannel', async (t) => {
  for (const v6 of ['""', '"garbage"', '"fe80::1%eth0"', '"1:::2"', '42', 'true', '["fd00::1"]', '{}']) {
    t.equal(decodeLeaseAttrs(`{"PublicIP":"10.0.0.5","PublicIPv6":${v6}}`), undefined, v6);
  }
});

t.test('sameAttrs compares the IPv6 fields', async (t) => {
  const a: LeaseAttrs = { publicIp: ip('10.0.0.5'), publicIpv6: ip6('2001:db8::5'), backendType: 'vxlan', backendData: VX4, backendV6Data: VX6 };
  t.ok(sameAttrs(a, { ...a }));
  t.ok(sameAttrs(a, { ...a, publicIpv6: ip6('2001:DB8:0::5') }), 'same address, other text');
  t.notOk(sameAttrs(a, { ...a, publicIpv6: ip6('2001:db8::6') }), 'other PublicIPv6');
  const { publicIpv6: _p, ...noV6 } = a;
  t.notOk(sameAttrs(a, noV6), 'PublicIPv6 dropped');
  t.notOk(sameAttrs(a, { ...a, backendV6Data: '{"VNI":1,"VtepMAC":"5e:21:a0:9b:0c:7e"}' }), 'new v6 VtepMAC');
  const { backendV6Data: _b, ...noV6Data } = a;
  t.notOk(sameAttrs(a, noV6Data), 'BackendV6Data dropped');
});
