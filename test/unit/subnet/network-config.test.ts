// Unit tests for subnet/network-config.ts against flannel's config rules
// (shared/reference/flannel-compat.md §1.2; pkg/subnet/config.go CheckNetworkConfig, parseBackendType).
import t from 'tap';
import { BACKEND_TYPES, type Ipv4Pool, type NetworkConfig, parseNetworkConfig } from '../../../subnet/network-config.js';
import { ConfigError, isFlannelError } from '../../../lib/errors.js';
import { formatCidr4, formatIp4 } from '../../../lib/ip.js';

const SRC = '/coreos.com/network/config';

/** The parsed config with its IPv4 pool's fields at the top, as these IPv4 tests read them. */
function parse(cfg: unknown): NetworkConfig & Ipv4Pool {
  const c = parseNetworkConfig(typeof cfg === 'string' ? cfg : JSON.stringify(cfg), SRC);
  return { ...c, ...(c.ipv4 as Ipv4Pool) };
}

/** The readable shape of a parsed config. */
function view(c: NetworkConfig & Ipv4Pool) {
  return {
    network: formatCidr4(c.network),
    subnetLen: c.subnetLen,
    subnetMin: formatIp4(c.subnetMin),
    subnetMax: formatIp4(c.subnetMax),
    backendType: c.backendType,
  };
}

/** The assertions parseFails uses, shared by the root TAP object and its subtests. */
type Asserts = Pick<typeof t, 'fail' | 'type' | 'ok' | 'match'>;

/** Parses and expects a ConfigError; returns it. */
function parseFails(t: Asserts, cfg: unknown): ConfigError {
  try {
    const c = parse(cfg);
    t.fail(`expected a ConfigError for ${JSON.stringify(cfg)}, got ${JSON.stringify(view(c))}`);
  } catch (err) {
    t.type(err, ConfigError, 'throws a ConfigError');
    if (err instanceof ConfigError) {
      t.ok(isFlannelError(err, 'FLN_ERR_CONFIG_INVALID'), 'code FLN_ERR_CONFIG_INVALID');
      t.ok(err.issues.length >= 1, 'has at least one issue');
      t.match(err.message, SRC, 'message names the source');
      return err;
    }
  }
  return new ConfigError('unreachable', []);
}


t.test('defaults: {"network":"10.3.0.0/16"} (flannel config_test.go)', async (t) => {
  t.same(view(parse({ network: '10.3.0.0/16' })), {
    network: '10.3.0.0/16', subnetLen: 24, subnetMin: '10.3.1.0', subnetMax: '10.3.255.0', backendType: 'udp',
  });
});

t.test('keys match case-insensitively, like Go encoding/json', async (t) => {
  const want = { network: '10.3.0.0/16', subnetLen: 24, subnetMin: '10.3.1.0', subnetMax: '10.3.255.0', backendType: 'udp' };
  t.same(view(parse({ Network: '10.3.0.0/16' })), want, 'Network');
  t.same(view(parse({ NETWORK: '10.3.0.0/16' })), want, 'NETWORK');
  t.same(view(parse({ nEtWoRk: '10.3.0.0/16' })), want, 'nEtWoRk');
  t.same(view(parse({ network: '10.3.0.0/16', subnetlen: 26, subnetmin: '10.3.8.0', SUBNETMAX: '10.3.9.0' })), {
    network: '10.3.0.0/16', subnetLen: 26, subnetMin: '10.3.8.0', subnetMax: '10.3.9.0', backendType: 'udp',
  }, 'SubnetLen / SubnetMin / SubnetMax in any case');
  const c = parse({ network: '10.3.0.0/16', backend: { type: 'vxlan', vni: 4 } });
  t.equal(c.backendType, 'vxlan', 'backend / type lowercase');
  t.equal(c.backend.vni, 4, 'raw backend object kept as written');
  t.equal(parse({ network: '10.3.0.0/16', enablenftables: true }).enableNFTables, true, 'enablenftables');
});

t.test('the same field twice in different case: the last one wins, as in Go', async (t) => {
  t.equal(formatCidr4(parse('{"Network":"10.1.0.0/16","network":"10.2.0.0/16"}').network), '10.2.0.0/16');
  t.equal(formatCidr4(parse('{"network":"10.2.0.0/16","Network":"10.1.0.0/16"}').network), '10.1.0.0/16');
});

t.test('unknown keys are ignored', async (t) => {
  const c = parse({ Network: '10.3.0.0/16', Foo: 1, Bar: { baz: true }, Comment: 'hi', IPv6Whatever: 'x' });
  t.same(view(c), { network: '10.3.0.0/16', subnetLen: 24, subnetMin: '10.3.1.0', subnetMax: '10.3.255.0', backendType: 'udp' });
});

t.test('EnableNFTables defaults to false', async (t) => {
  t.equal(parse({ Network: '10.3.0.0/16' }).enableNFTables, false);
  t.equal(parse({ Network: '10.3.0.0/16', EnableNFTables: false }).enableNFTables, false);
  t.equal(parse({ Network: '10.3.0.0/16', EnableNFTables: true }).enableNFTables, true);
});

t.test('EnableIPv4 true / EnableIPv6 false explicitly are accepted', async (t) => {
  t.equal(parse({ Network: '10.3.0.0/16', EnableIPv4: true, EnableIPv6: false }).subnetLen, 24);
});

t.test('computed SubnetLen (step 3 of CheckNetworkConfig)', async (t) => {
  const cases: Array<[string, number, string, string]> = [
    ['10.0.0.0/8', 24, '10.0.1.0', '10.255.255.0'],
    ['10.244.0.0/16', 24, '10.244.1.0', '10.244.255.0'],
    ['10.4.0.0/22', 24, '10.4.1.0', '10.4.3.0'], // <= /22 -> 24
    ['10.4.0.0/23', 25, '10.4.0.128', '10.4.1.128'], // else prefix + 2
    ['10.4.0.0/24', 26, '10.4.0.64', '10.4.0.192'],
    ['10.4.0.0/27', 29, '10.4.0.8', '10.4.0.24'],
    ['10.4.0.0/28', 30, '10.4.0.4', '10.4.0.12'],
  ];
  for (const [net, len, min, max] of cases) {
    t.same(view(parse({ Network: net })), { network: net, subnetLen: len, subnetMin: min, subnetMax: max, backendType: 'udp' }, net);
  }
});

t.test('network too small: /29 and longer', async (t) => {
  for (const net of ['10.4.0.0/29', '10.4.0.0/30', '10.4.0.0/32']) {
    const err = parseFails(t, { Network: net });
    t.equal(err.issues.length, 1, `${net}: one issue`);
    t.equal(err.issues[0]?.field, 'Network');
    t.match(err.message, /network is too small|too small/i);
    t.match(err.message, /\/28/, 'mentions the /28 minimum');
  }
});

t.test('explicit SubnetLen', async (t) => {
  t.same(view(parse({ Network: '10.3.0.0/16', SubnetLen: 20 })),
    { network: '10.3.0.0/16', subnetLen: 20, subnetMin: '10.3.16.0', subnetMax: '10.3.240.0', backendType: 'udp' });
  t.same(view(parse({ Network: '10.3.0.0/16', SubnetLen: 18 })),
    { network: '10.3.0.0/16', subnetLen: 18, subnetMin: '10.3.64.0', subnetMax: '10.3.192.0', backendType: 'udp' }, 'prefix+2 is the minimum');
  t.same(view(parse({ Network: '10.3.0.0/16', SubnetLen: 30 })),
    { network: '10.3.0.0/16', subnetLen: 30, subnetMin: '10.3.0.4', subnetMax: '10.3.255.252', backendType: 'udp' }, '/30 is the maximum');
  t.same(view(parse({ Network: '10.3.0.0/16', SubnetLen: 0 })).subnetLen, 24, 'SubnetLen 0 means computed');
  t.same(view(parse({ Network: '10.4.0.0/28', SubnetLen: 30 })).subnetLen, 30, '/28 network with explicit /30');
  // With an explicit SubnetLen the /28 minimum does not apply (step 2 replaces step 3), but /31 still does.
  t.same(view(parse({ Network: '10.4.0.0/26', SubnetLen: 28 })),
    { network: '10.4.0.0/26', subnetLen: 28, subnetMin: '10.4.0.16', subnetMax: '10.4.0.48', backendType: 'udp' });
});

t.test('SubnetLen 31 or more: "SubnetLen must be less than /31"', async (t) => {
  for (const len of [31, 32]) {
    const err = parseFails(t, { Network: '10.3.0.0/16', SubnetLen: len });
    t.equal(err.issues.length, 1);
    t.equal(err.issues[0]?.field, 'SubnetLen');
    t.equal(err.issues[0]?.value, len);
    t.match(err.message, /SubnetLen must be less than \/31/);
  }
  // A /29 network with SubnetLen 31: /31 check comes first.
  const err = parseFails(t, { Network: '10.4.0.0/29', SubnetLen: 31 });
  t.match(err.message, /less than \/31/);
});

t.test('SubnetLen < prefix+2: "at least four subnets"', async (t) => {
  for (const len of [8, 16, 17]) {
    const err = parseFails(t, { Network: '10.3.0.0/16', SubnetLen: len });
    t.equal(err.issues.length, 1, `SubnetLen ${len}`);
    t.equal(err.issues[0]?.field, 'SubnetLen');
    t.match(err.message, /at least four subnets/);
  }
  const err = parseFails(t, { Network: '10.4.0.0/29', SubnetLen: 30 });
  t.match(err.message, /at least four subnets/, '/29 with SubnetLen 30: only two subnets');
});

t.test('SubnetLen must be a whole non-negative number', async (t) => {
  for (const v of ['24', 24.5, -1, true, [24], { len: 24 }]) {
    const err = parseFails(t, { Network: '10.3.0.0/16', SubnetLen: v });
    t.equal(err.issues[0]?.field, 'SubnetLen', `SubnetLen ${JSON.stringify(v)}`);
  }
});

t.test('host bits in Network are masked', async (t) => {
  t.same(view(parse({ Network: '10.5.0.1/16' })),
    { network: '10.5.0.0/16', subnetLen: 24, subnetMin: '10.5.1.0', subnetMax: '10.5.255.0', backendType: 'udp' });
  t.equal(formatCidr4(parse({ Network: '10.244.7.9/20' }).network), '10.244.0.0/20');
});

t.test('Network missing or empty: "please define a correct Network parameter"', async (t) => {
  for (const cfg of [{}, { Network: '' }, { Network: null }, { SubnetLen: 24 }, { Backend: { Type: 'vxlan' } }]) {
    const err = parseFails(t, cfg);
    t.ok(err.issues.some((i) => i.field === 'Network'), `${JSON.stringify(cfg)}: a Network issue`);
    t.match(err.message, /please define a correct Network parameter/);
  }
});

t.test('Network must be an IPv4 CIDR: v6 and garbage rejected', async (t) => {
  for (const v of ['fc00::/48', '2001:db8::/32', '::/0', '10.3.0.0', '10.3.0.0/33', 'ten/8', '10.3.0.0/16 ', 42, ['10.3.0.0/16'], { ip: '10.3.0.0' }]) {
    const err = parseFails(t, { Network: v });
    t.equal(err.issues.length, 1, `${JSON.stringify(v)}: one issue`);
    t.equal(err.issues[0]?.field, 'Network');
    t.same(err.issues[0]?.value, v, 'issue carries the value as written');
    t.match(err.message, /invalid IPv4 CIDR format/);
  }
});

t.test('SubnetMin / SubnetMax as given', async (t) => {
  t.same(view(parse({ Network: '10.3.0.0/16', SubnetMin: '10.3.10.0', SubnetMax: '10.3.20.0' })),
    { network: '10.3.0.0/16', subnetLen: 24, subnetMin: '10.3.10.0', subnetMax: '10.3.20.0', backendType: 'udp' });
  t.same(view(parse({ Network: '10.3.0.0/16', SubnetMin: '10.3.0.0' })).subnetMin, '10.3.0.0',
    'the network address itself may be chosen explicitly');
  t.same(view(parse({ Network: '10.3.0.0/16', SubnetMin: '0.0.0.0', SubnetMax: '0.0.0.0' })),
    { network: '10.3.0.0/16', subnetLen: 24, subnetMin: '10.3.1.0', subnetMax: '10.3.255.0', backendType: 'udp' },
    '0.0.0.0 counts as unset');
  t.same(view(parse({ Network: '10.3.0.0/16', SubnetMin: '10.3.200.0', SubnetMax: '10.3.100.0' })).subnetMin, '10.3.200.0',
    'no Min <= Max check (flannel has none)');
  t.same(view(parse({ Network: '10.3.0.0/16', SubnetLen: 26, SubnetMin: '10.3.0.64', SubnetMax: '10.3.0.192' })),
    { network: '10.3.0.0/16', subnetLen: 26, subnetMin: '10.3.0.64', subnetMax: '10.3.0.192', backendType: 'udp' });
});

t.test('SubnetMin / SubnetMax outside the network: "not in the range of the Network"', async (t) => {
  let err = parseFails(t, { Network: '10.3.0.0/16', SubnetMin: '10.4.1.0' });
  t.equal(err.issues.length, 1);
  t.equal(err.issues[0]?.field, 'SubnetMin');
  t.equal(err.issues[0]?.value, '10.4.1.0');
  t.match(err.message, /SubnetMin.*10\.4\.1\.0.*not in the range of the Network/);

  err = parseFails(t, { Network: '10.3.0.0/16', SubnetMax: '10.2.255.0' });
  t.equal(err.issues.length, 1);
  t.equal(err.issues[0]?.field, 'SubnetMax');
  t.match(err.message, /SubnetMax.*10\.2\.255\.0.*not in the range of the Network/);

  err = parseFails(t, { Network: '10.3.0.0/16', SubnetMin: '192.168.0.0', SubnetMax: '10.4.0.0' });
  t.same(err.issues.map((i) => i.field), ['SubnetMin', 'SubnetMax'], 'both bounds reported');
});

t.test('SubnetMin / SubnetMax not aligned: "not on a SubnetLen boundary"', async (t) => {
  let err = parseFails(t, { Network: '10.3.0.0/16', SubnetMin: '10.3.1.5' });
  t.equal(err.issues.length, 1);
  t.equal(err.issues[0]?.field, 'SubnetMin');
  t.equal(err.issues[0]?.value, '10.3.1.5');
  t.match(err.message, /SubnetMin.*10\.3\.1\.5.*not on a SubnetLen boundary/);

  err = parseFails(t, { Network: '10.3.0.0/16', SubnetMax: '10.3.255.128' });
  t.equal(err.issues[0]?.field, 'SubnetMax');
  t.match(err.message, /SubnetMax.*10\.3\.255\.128.*not on a SubnetLen boundary/);

  err = parseFails(t, { Network: '10.3.0.0/16', SubnetLen: 20, SubnetMin: '10.3.1.0' });
  t.match(err.message, /SubnetMin.*not on a SubnetLen boundary/, 'aligned to /24 but not /20');
});

t.test('SubnetMin / SubnetMax that are not IPv4 addresses', async (t) => {
  for (const v of ['10.3.1', 'fc00::', 'abc', 5, true]) {
    const err = parseFails(t, { Network: '10.3.0.0/16', SubnetMin: v });
    t.ok(err.issues.some((i) => i.field === 'SubnetMin'), `SubnetMin ${JSON.stringify(v)}`);
  }
  const err = parseFails(t, { Network: '10.3.0.0/16', SubnetMax: 'nope' });
  t.ok(err.issues.some((i) => i.field === 'SubnetMax'));
});

t.test('Backend: absent means udp', async (t) => {
  const c = parse({ Network: '10.3.0.0/16' });
  t.equal(c.backendType, 'udp');
  t.equal(c.backend.Type, 'udp');
});

t.test('Backend.Type selects the backend, lowercased', async (t) => {
  for (const type of BACKEND_TYPES) {
    t.equal(parse({ Network: '10.3.0.0/16', Backend: { Type: type } }).backendType, type, type);
  }
  t.equal(parse({ Network: '10.3.0.0/16', Backend: { Type: 'VXLAN' } }).backendType, 'vxlan', 'VXLAN -> vxlan');
  t.equal(parse({ Network: '10.3.0.0/16', Backend: { Type: 'Host-GW' } }).backendType, 'host-gw', 'Host-GW -> host-gw');
  t.equal(parse({ Network: '10.3.0.0/16', Backend: { Type: 'UDP', Port: 8286 } }).backendType, 'udp');
  const c = parse({ Network: '10.3.0.0/16', Backend: { Type: 'vxlan', VNI: 7, Port: 4789, DirectRouting: true } });
  t.same(c.backend, { Type: 'vxlan', VNI: 7, Port: 4789, DirectRouting: true }, 'backend options kept raw');
});

t.test('Backend present without Type is an error naming Backend.Type', async (t) => {
  for (const backend of [{}, { VNI: 1 }, { Type: null }, { Type: 5 }]) {
    const err = parseFails(t, { Network: '10.3.0.0/16', Backend: backend });
    t.equal(err.issues.length, 1, JSON.stringify(backend));
    t.equal(err.issues[0]?.field, 'Backend.Type');
    t.match(err.message, /Backend\.Type/);
  }
});

t.test('Backend that is not an object is an error', async (t) => {
  for (const backend of ['vxlan', 1, null, ['vxlan']]) {
    const err = parseFails(t, { Network: '10.3.0.0/16', Backend: backend });
    t.ok(err.issues.some((i) => i.field.startsWith('Backend')), JSON.stringify(backend));
  }
});

t.test('unknown backend type lists udp, vxlan, host-gw, wireguard', async (t) => {
  for (const type of ['wire-guard', 'ipip', 'hostgw', '', 'vxlan ']) {
    const err = parseFails(t, { Network: '10.3.0.0/16', Backend: { Type: type } });
    t.equal(err.issues.length, 1, JSON.stringify(type));
    t.equal(err.issues[0]?.field, 'Backend.Type');
    t.equal(err.issues[0]?.value, type);
    t.match(err.message, /unknown backend type/);
    t.match(err.message, /udp/);
    t.match(err.message, /vxlan/);
    t.match(err.message, /host-gw/);
    t.match(err.message, /wireguard/);
    t.match(err.message, JSON.stringify(type), 'message quotes the value');
  }
});

t.test('several problems at once: one ConfigError with every issue', async (t) => {
  const err = parseFails(t, { Network: '10.3.0.0/16', SubnetMin: '10.9.0.0', Backend: { Type: 'wireguardd' } });
  t.equal(err.issues.length, 2, 'both problems');
  const fields = err.issues.map((i) => i.field).sort();
  t.same(fields, ['Backend.Type', 'SubnetMin']);
  t.match(err.message, /SubnetMin/);
  t.match(err.message, /"10\.9\.0\.0"/);
  t.match(err.message, /Backend\.Type/);
  t.match(err.message, /"wireguardd"/);
  t.match(err.message, /2 problems/);

  const err2 = parseFails(t, { Network: '10.3.0.0/16', SubnetLen: 31, Backend: { Type: 'nope' }, EnableNFTables: 'yes' });
  t.same(err2.issues.map((i) => i.field).sort(), ['Backend.Type', 'EnableNFTables', 'SubnetLen']);

  const err3 = parseFails(t, { Backend: {}, SubnetMax: 'x' });
  t.same(err3.issues.map((i) => i.field).sort(), ['Backend.Type', 'Network', 'SubnetMax'],
    'missing Network, Backend without Type, bad SubnetMax');
});

t.test('invalid JSON or a non-object document is a ConfigError', async (t) => {
  for (const text of ['', '{', '{"Network": "10.3.0.0/16",}', 'Network: 10.3.0.0/16', "{'Network':'10.3.0.0/16'}"]) {
    const err = parseFails(t, text);
    t.equal(err.issues[0]?.field, '(document)', JSON.stringify(text));
    t.match(err.message, /not valid JSON/);
  }
  for (const text of ['null', '[]', '"10.3.0.0/16"', '42', 'true']) {
    const err = parseFails(t, text);
    t.equal(err.issues[0]?.field, '(document)', text);
  }
});

t.test('boolean fields must be booleans', async (t) => {
  const err = parseFails(t, { Network: '10.3.0.0/16', EnableNFTables: 'true' });
  t.equal(err.issues[0]?.field, 'EnableNFTables');
});

t.test('dual-stack and IPv6-only parse; IPv6-only with the udp backend does not', async (t) => {
  t.equal(parse({ Network: '10.3.0.0/16', EnableIPv6: true, IPv6Network: 'fc00::/48', Backend: { Type: 'vxlan' } }).ipv6?.subnetLen, 64);
  t.equal(parseNetworkConfig(JSON.stringify({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fc00::/48', Backend: { Type: 'host-gw' } }), SRC).ipv6?.subnetLen, 64);
  const err = parseFails(t, { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fc00::/48' });
  t.same(err.issues.map((i) => i.field), ['EnableIPv6']);
});

t.test('the ConfigError is JSON-serialisable with its issues', async (t) => {
  const err = parseFails(t, { Network: 'fc00::/48' });
  const json = err.toJSON();
  t.equal(json.code, 'FLN_ERR_CONFIG_INVALID');
  t.same((json.details as { issues: unknown[] }).issues, err.issues);
  t.equal(err.name, 'ConfigError');
});
