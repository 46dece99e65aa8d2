// Unit tests for the IPv6 part of subnet/network-config.ts (issue #18, first slice): flannel's
// CheckNetworkConfig for IPv6 (pkg/subnet/config.go), EnableIPv4/EnableIPv6, and the daemon's
// unchanged refusal of IPv6 through parseNetworkConfig.
import t from 'tap';
import {
  type NetworkConfigAllFamilies, parseNetworkConfig, parseNetworkConfigAllFamilies,
} from '../../../subnet/network-config.js';
import { ConfigError, isFlannelError } from '../../../lib/errors.js';
import { formatCidr4, formatIp4 } from '../../../lib/ip.js';
import { formatCidr6, formatIp6 } from '../../../lib/ip6.js';

const SRC = '/coreos.com/network/config';

function parseAll(cfg: unknown): NetworkConfigAllFamilies {
  return parseNetworkConfigAllFamilies(typeof cfg === 'string' ? cfg : JSON.stringify(cfg), SRC);
}

/** The readable v6 pool of a parsed config. */
function v6(c: NetworkConfigAllFamilies) {
  const p = c.ipv6;
  return p && { network: formatCidr6(p.network), subnetLen: p.subnetLen, subnetMin: formatIp6(p.subnetMin), subnetMax: formatIp6(p.subnetMax) };
}

type Asserts = Pick<typeof t, 'fail' | 'type' | 'ok' | 'match'>;

function failsAll(t: Asserts, cfg: unknown): ConfigError {
  try {
    const c = parseAll(cfg);
    t.fail(`expected a ConfigError for ${JSON.stringify(cfg)}, got ${JSON.stringify(v6(c))}`);
  } catch (err) {
    t.type(err, ConfigError, 'throws a ConfigError');
    if (err instanceof ConfigError) {
      t.ok(isFlannelError(err, 'FLN_ERR_CONFIG_INVALID'), 'code FLN_ERR_CONFIG_INVALID');
      t.match(err.message, SRC, 'message names the source');
      return err;
    }
  }
  return new ConfigError('unreachable', []);
}

const DUAL = { Network: '10.244.0.0/16', EnableIPv6: true };

t.test('dual-stack defaults: fc00::/48 gives /64 subnets from fc00:0:0:1:: to fc00:0:0:ffff::', async (t) => {
  const c = parseAll({ ...DUAL, IPv6Network: 'fc00::/48' });
  t.equal(c.enableIPv4, true, 'EnableIPv4 defaults to true');
  t.equal(c.enableIPv6, true);
  t.same(v6(c), { network: 'fc00::/48', subnetLen: 64, subnetMin: 'fc00:0:0:1::', subnetMax: 'fc00:0:0:ffff::' });
  t.equal(c.ipv4 && formatCidr4(c.ipv4.network), '10.244.0.0/16', 'the IPv4 pool is there too');
  t.equal(c.ipv4 && formatIp4(c.ipv4.subnetMin), '10.244.1.0');
});

t.test('default IPv6SubnetLen: prefix <= 62 -> 64, otherwise prefix + 2; longer than /124 is an error', async (t) => {
  const cases: Array<[string, number, string, string]> = [
    ['fd00::/8', 64, 'fd00:0:0:1::', 'fdff:ffff:ffff:ffff::'],
    ['fd00:10:244::/56', 64, 'fd00:10:244:1::', 'fd00:10:244:ff::'],
    ['fd00:10:244::/61', 64, 'fd00:10:244:1::', 'fd00:10:244:7::'],
    ['fd00:10:244::/62', 64, 'fd00:10:244:1::', 'fd00:10:244:3::'], // the last prefix that gets /64
    ['fd00:10:244::/63', 65, 'fd00:10:244:0:8000::', 'fd00:10:244:1:8000::'], // the first that gets prefix + 2
    ['fd00:10:244::/64', 66, 'fd00:10:244:0:4000::', 'fd00:10:244:0:c000::'],
    ['fd00::/120', 122, 'fd00::40', 'fd00::c0'],
    ['fd00::/124', 126, 'fd00::4', 'fd00::c'], // the smallest useful network
  ];
  for (const [net, len, min, max] of cases) {
    t.same(v6(parseAll({ ...DUAL, IPv6Network: net })), { network: net, subnetLen: len, subnetMin: min, subnetMax: max }, net);
  }
  for (const net of ['fd00::/125', 'fd00::/126', 'fd00::/127', 'fd00::/128']) {
    const err = failsAll(t, { ...DUAL, IPv6Network: net });
    t.same(err.issues.map((i) => i.field), ['IPv6Network'], `${net}: one issue, on IPv6Network`);
    t.match(err.message, /too small/);
    t.match(err.message, /\/124/, 'names the /124 minimum');
  }
});

t.test('explicit IPv6SubnetLen: at most 126 and at least prefix + 2', async (t) => {
  t.equal(parseAll({ ...DUAL, IPv6Network: 'fd00::/48', IPv6SubnetLen: 50 }).ipv6?.subnetLen, 50, 'prefix + 2 is allowed');
  t.equal(parseAll({ ...DUAL, IPv6Network: 'fd00::/48', IPv6SubnetLen: 80 }).ipv6?.subnetLen, 80);
  t.equal(parseAll({ ...DUAL, IPv6Network: 'fd00::/48', IPv6SubnetLen: 126 }).ipv6?.subnetLen, 126, '126 is allowed');
  t.same(v6(parseAll({ ...DUAL, IPv6Network: 'fd00::/124', IPv6SubnetLen: 126 })),
    { network: 'fd00::/124', subnetLen: 126, subnetMin: 'fd00::4', subnetMax: 'fd00::c' });
  t.same(v6(parseAll({ ...DUAL, IPv6Network: 'fd00::/62', IPv6SubnetLen: 80 })),
    { network: 'fd00::/62', subnetLen: 80, subnetMin: 'fd00::1:0:0:0', subnetMax: 'fd00:0:0:3:ffff::' }, 'explicit wins over the /64 default');
  for (const len of [127, 128, 129]) {
    const err = failsAll(t, { ...DUAL, IPv6Network: 'fd00::/48', IPv6SubnetLen: len });
    t.same(err.issues.map((i) => i.field), ['IPv6SubnetLen'], `${len}`);
    t.match(err.message, /less than \/127/);
  }
  for (const [net, len] of [['fd00::/48', 49], ['fd00::/48', 48], ['fd00::/48', 20], ['fd00::/63', 64], ['fd00::/125', 126]] as const) {
    const err = failsAll(t, { ...DUAL, IPv6Network: net, IPv6SubnetLen: len });
    t.same(err.issues.map((i) => i.field), ['IPv6SubnetLen'], `${net} with /${len}`);
    t.match(err.message, /at least four subnets/);
  }
  for (const bad of [64.5, '64', -1, true, [64]]) {
    const err = failsAll(t, { ...DUAL, IPv6Network: 'fd00::/48', IPv6SubnetLen: bad });
    t.same(err.issues.map((i) => i.field), ['IPv6SubnetLen'], JSON.stringify(bad));
  }
  t.same(v6(parseAll({ ...DUAL, IPv6Network: 'fd00::/48', IPv6SubnetLen: 0 })),
    { network: 'fd00::/48', subnetLen: 64, subnetMin: 'fd00:0:0:1::', subnetMax: 'fd00:0:0:ffff::' }, '0 means unset, as in flannel');
});

t.test('IPv6SubnetMin / IPv6SubnetMax: defaults skip the first subnet and end at the last one (no off-by-one)', async (t) => {
  const c = parseAll({ ...DUAL, IPv6Network: 'fd00:10:244::/56' });
  const p = c.ipv6;
  t.ok(p);
  if (!p) return;
  t.equal(p.subnetMin - p.network.ip, 1n << 64n, 'min is exactly one subnet above the network address');
  t.equal(p.network.ip + (1n << 72n) - p.subnetMax, 1n << 64n, 'max is exactly one subnet below the end of the network');
  t.equal(formatIp6(p.subnetMin), 'fd00:10:244:1::');
  t.equal(formatIp6(p.subnetMax), 'fd00:10:244:ff::');
});

t.test('IPv6SubnetMin / IPv6SubnetMax: explicit values inside the network and on a boundary', async (t) => {
  const base = { ...DUAL, IPv6Network: 'fd00:10:244::/56' };
  t.same(v6(parseAll({ ...base, IPv6SubnetMin: 'fd00:10:244:10::', IPv6SubnetMax: 'fd00:10:244:20::' })),
    { network: 'fd00:10:244::/56', subnetLen: 64, subnetMin: 'fd00:10:244:10::', subnetMax: 'fd00:10:244:20::' });
  t.same(v6(parseAll({ ...base, IPv6SubnetMin: 'fd00:10:244::', IPv6SubnetMax: 'fd00:10:244:ff::' })),
    { network: 'fd00:10:244::/56', subnetLen: 64, subnetMin: 'fd00:10:244::', subnetMax: 'fd00:10:244:ff::' }, 'the very first and last subnets may be named');
  t.same(v6(parseAll({ ...base, IPv6SubnetMin: '::', IPv6SubnetMax: '0::0' })),
    { network: 'fd00:10:244::/56', subnetLen: 64, subnetMin: 'fd00:10:244:1::', subnetMax: 'fd00:10:244:ff::' }, ':: means unset (flannel ip.IsEmpty)');
  t.same(v6(parseAll({ ...base, IPv6SubnetMin: 'FD00:0010:0244:0005:0000:0000:0000:0000' })),
    { network: 'fd00:10:244::/56', subnetLen: 64, subnetMin: 'fd00:10:244:5::', subnetMax: 'fd00:10:244:ff::' }, 'any textual form');

  const cases: Array<[Record<string, unknown>, string, RegExp]> = [
    [{ IPv6SubnetMin: 'fd00:10:245::' }, 'IPv6SubnetMin', /not in the range of the IPv6Network fd00:10:244::\/56/],
    [{ IPv6SubnetMin: 'fd00:10:243:ff::' }, 'IPv6SubnetMin', /not in the range/],
    [{ IPv6SubnetMax: 'fd00:10:244:100::' }, 'IPv6SubnetMax', /not in the range/], // one subnet past the last
    [{ IPv6SubnetMin: 'fd00:10:244:1::1' }, 'IPv6SubnetMin', /not on an IPv6SubnetLen boundary \(\/64\)/],
    [{ IPv6SubnetMax: 'fd00:10:244:ff:ffff:ffff:ffff:ffff' }, 'IPv6SubnetMax', /boundary/], // the last address, not the last subnet
    [{ IPv6SubnetMin: '10.244.1.0' }, 'IPv6SubnetMin', /not an IPv6 address/],
    [{ IPv6SubnetMax: 'fd00::%eth0' }, 'IPv6SubnetMax', /not an IPv6 address/],
    [{ IPv6SubnetMin: 42 }, 'IPv6SubnetMin', /not an IPv6 address/],
    [{ IPv6SubnetMin: '' }, 'IPv6SubnetMin', /not an IPv6 address/],
  ];
  for (const [extra, field, msg] of cases) {
    const err = failsAll(t, { ...base, ...extra });
    t.same(err.issues.map((i) => i.field), [field], JSON.stringify(extra));
    t.match(err.message, msg);
  }
  const both = failsAll(t, { ...base, IPv6SubnetMin: 'fd00:10:244:1::8', IPv6SubnetMax: 'fe00::' });
  t.same(both.issues.map((i) => i.field), ['IPv6SubnetMin', 'IPv6SubnetMax'], 'both reported at once');
  t.same(both.issues.map((i) => i.value), ['fd00:10:244:1::8', 'fe00::'], 'values printed as IPv6 text');
});

t.test('IPv6Network: required with EnableIPv6, an IPv6 CIDR', async (t) => {
  for (const missing of [{}, { IPv6Network: '' }, { IPv6Network: null }]) {
    const err = failsAll(t, { ...DUAL, ...missing });
    t.same(err.issues.map((i) => i.field), ['IPv6Network'], JSON.stringify(missing));
    t.match(err.message, /please define a correct IPv6Network parameter/);
  }
  for (const bad of ['10.0.0.0/8', 'fd00::', 'fd00::/129', 'fe80::%eth0/64', 'garbage', 48, { ip: 'fd00::' }]) {
    const err = failsAll(t, { ...DUAL, IPv6Network: bad });
    t.same(err.issues.map((i) => i.field), ['IPv6Network'], JSON.stringify(bad));
    t.match(err.message, /not an IPv6 CIDR/);
  }
  t.equal(v6(parseAll({ ...DUAL, IPv6Network: '2001:cafe:42::1/56' }))?.network, '2001:cafe:42::/56', 'host bits masked as Go does');
});

t.test('EnableIPv6 false (the default): the IPv6 fields are not checked and no IPv6 pool', async (t) => {
  const c = parseAll({ Network: '10.244.0.0/16', IPv6Network: 'garbage', IPv6SubnetLen: 200 });
  t.equal(c.enableIPv6, false);
  t.equal(c.ipv6, undefined);
  t.notOk('ipv6' in c, 'no ipv6 key at all');
  t.equal(parseAll({ Network: '10.244.0.0/16', EnableIPv6: false, IPv6Network: 'fd00::/48' }).ipv6, undefined);
});

t.test('EnableIPv4 false: IPv6-only, every IPv4 check skipped', async (t) => {
  const c = parseAll({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/48' });
  t.equal(c.enableIPv4, false);
  t.equal(c.ipv4, undefined);
  t.notOk('ipv4' in c, 'no ipv4 key at all');
  t.same(v6(c), { network: 'fd00::/48', subnetLen: 64, subnetMin: 'fd00:0:0:1::', subnetMax: 'fd00:0:0:ffff::' });
  const odd = parseAll({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/48', Network: '10.0.0.0/30', SubnetLen: 99, SubnetMin: '1.2.3.4' });
  t.equal(odd.ipv4, undefined, 'a bad IPv4 pool is ignored when IPv4 is off');
  const none = failsAll(t, { EnableIPv4: false, Network: '10.0.0.0/16' });
  t.same(none.issues.map((i) => i.field), ['EnableIPv4'], 'neither family enabled is an error');
  t.match(none.message, /no address family/);
});

t.test('every problem of both families at once', async (t) => {
  const err = failsAll(t, { Network: '10.0.0.0/16', SubnetLen: 33, EnableIPv6: true, IPv6Network: 'fd00::/48', IPv6SubnetLen: 127, Backend: { Type: 'nope' } });
  t.same(err.issues.map((i) => i.field), ['Backend.Type', 'SubnetLen', 'IPv6SubnetLen']);
  const err2 = failsAll(t, { EnableIPv4: 'yes', EnableIPv6: 1, Network: '10.0.0.0/16' });
  t.same(err2.issues.map((i) => i.field), ['EnableIPv4', 'EnableIPv6'], 'non-boolean flags');
  t.doesNotThrow(() => JSON.stringify(err.toJSON()), 'issues are JSON-serialisable (no bigint values)');
});

t.test('keys match case-insensitively, like Go encoding/json', async (t) => {
  const c = parseAll({ network: '10.3.0.0/16', enableipv6: true, ipv6network: 'fd00::/56', ipv6subnetlen: 72, IPV6SUBNETMIN: 'fd00:0:0:2::', ipv6SubnetMax: 'fd00:0:0:3::' });
  t.same(v6(c), { network: 'fd00::/56', subnetLen: 72, subnetMin: 'fd00:0:0:2::', subnetMax: 'fd00:0:0:3::' });
});

t.test('IPv4-only configs parse as before through the complete parser', async (t) => {
  const c = parseAll({ Network: '10.3.0.0/16', Backend: { Type: 'vxlan' } });
  t.same({ ...c, ipv4: c.ipv4 && { network: formatCidr4(c.ipv4.network), subnetLen: c.ipv4.subnetLen, subnetMin: formatIp4(c.ipv4.subnetMin), subnetMax: formatIp4(c.ipv4.subnetMax) } }, {
    enableIPv4: true, enableIPv6: false,
    ipv4: { network: '10.3.0.0/16', subnetLen: 24, subnetMin: '10.3.1.0', subnetMax: '10.3.255.0' },
    enableNFTables: false, backendType: 'vxlan', backend: { Type: 'vxlan' },
  });
});

// ---- the daemon's parser: IPv4 or dual-stack; IPv6-only refused until it has a key format -------

t.test('parseNetworkConfig accepts dual-stack and carries the IPv6 pool', async (t) => {
  const c = parseNetworkConfig(JSON.stringify({ ...DUAL, IPv6Network: 'fd00:10:244::/56', Backend: { Type: 'host-gw' } }), SRC);
  t.equal(c.ipv4 && formatCidr4(c.ipv4.network), '10.244.0.0/16');
  t.equal(c.ipv6 && formatCidr6(c.ipv6.network), 'fd00:10:244::/56');
  t.equal(c.ipv6?.subnetLen, 64);
  t.equal(c.backendType, 'host-gw');
});

t.test('parseNetworkConfig checks the IPv6 pool with the IPv4 one, every problem at once', async (t) => {
  for (const [cfg, fields] of [
    [{ ...DUAL, Backend: { Type: 'vxlan' } }, ['IPv6Network']],
    [{ ...DUAL, Backend: { Type: 'vxlan' }, IPv6Network: 'garbage', IPv6SubnetLen: 500 }, ['IPv6Network']],
    [{ ...DUAL, Backend: { Type: 'vxlan' }, Network: 'nope', IPv6Network: 'fd00::/48', IPv6SubnetLen: 47 }, ['Network', 'IPv6SubnetLen']],
  ] as const) {
    try {
      parseNetworkConfig(JSON.stringify(cfg), SRC);
      t.fail('expected a ConfigError');
    } catch (err) {
      t.type(err, ConfigError);
      t.same((err as ConfigError).issues.map((i) => i.field), fields, JSON.stringify(cfg));
    }
  }
});

t.test('parseNetworkConfig refuses EnableIPv6 with the udp backend (IPv4-only, as in flannel)', async (t) => {
  for (const backend of [undefined, { Type: 'udp' }]) {
    try {
      parseNetworkConfig(JSON.stringify({ ...DUAL, IPv6Network: 'fd00::/48', ...(backend ? { Backend: backend } : {}) }), SRC);
      t.fail('expected a ConfigError');
    } catch (err) {
      t.equal((err as ConfigError).issues.length, 1);
      t.match((err as Error).message, /EnableIPv6: true cannot be used with the udp backend, which is IPv4-only as in flannel/);
    }
  }
});

t.test('parseNetworkConfig runs IPv6-only (EnableIPv4 false): no IPv4 pool, the IPv6 one', async (t) => {
  const c = parseNetworkConfig(JSON.stringify({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/48', Backend: { Type: 'vxlan' } }), SRC);
  t.notOk('ipv4' in c, 'no IPv4 pool');
  t.same(v6(c), { network: 'fd00::/48', subnetLen: 64, subnetMin: 'fd00:0:0:1::', subnetMax: 'fd00:0:0:ffff::' });
  t.same(Object.keys(c).sort(), ['backend', 'backendType', 'enableNFTables', 'ipv6']);
  for (const [cfg, fields, what] of [
    [{ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/48' }, ['EnableIPv6'], 'no Backend means udp, which is IPv4-only'],
    [{ EnableIPv4: false, Backend: { Type: 'vxlan' } }, ['EnableIPv4'], 'neither family'],
    [{ EnableIPv4: false, EnableIPv6: true, IPv6Network: '::ffff:0:0/100', Backend: { Type: 'vxlan' } }, ['IPv6Network'], 'IPv4-mapped subnets print as IPv4 text in keys'],
    [{ EnableIPv4: false, EnableIPv6: true, IPv6Network: '::/64', Backend: { Type: 'host-gw' } }, ['IPv6Network'], 'a pool holding ::ffff:0:0/96 too'],
  ] as const) {
    try {
      parseNetworkConfig(JSON.stringify(cfg), SRC);
      t.fail(`expected a ConfigError: ${what}`);
    } catch (err) {
      t.type(err, ConfigError);
      t.same((err as ConfigError).issues.map((i) => i.field), fields, what);
    }
  }
});

t.test('parseNetworkConfig sets no ipv6 member', async (t) => {
  const c = parseNetworkConfig(JSON.stringify({ Network: '10.3.0.0/16', EnableIPv6: false, IPv6Network: 'fd00::/48' }), SRC);
  t.notOk('ipv6' in c);
  t.same(Object.keys(c).sort(), ['backend', 'backendType', 'enableNFTables', 'ipv4']);
});
