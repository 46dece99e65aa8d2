// Unit tests of the CNI plugin's pure parts: subnet.env parsing with flannel's rules, the network
// config checks, and the delegate config built from them (flannel's own test example included).
import t from 'tap';
import { formatCidr6, parseCidr6 } from '../../deploy/cni/cidr6.js';
import { CNI_CODES, CniError } from '../../deploy/cni/cni-error.js';
import { type FlannelEnv, parseFlannelEnv } from '../../deploy/cni/flannel-env.js';
import { buildDelegate, checkVersion, parseNetConf } from '../../deploy/cni/netconf.js';

const ENV = 'FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n';

function codeOf(fn: () => unknown): number | string {
  try {
    fn();
    return 'no error';
  } catch (err) {
    return err instanceof CniError ? err.code : String(err);
  }
}

t.test('subnet.env: masked subnet, de-duplicated network list, MTU, IPMASQ', async (t) => {
  const env = parseFlannelEnv('FLANNEL_NETWORK=10.1.0.0/16,10.2.0.0/16,10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n', 'f');
  t.same(env, { networks: ['10.1.0.0/16', '10.2.0.0/16'], subnet: '10.1.17.0/24', ipv6Networks: [], ipv6Subnet: undefined, mtu: 1450, ipMasq: false });
  t.equal(parseFlannelEnv(ENV.replace('true', 'TRUE'), 'f').ipMasq, false, 'only "true" is true');
  const v6 = parseFlannelEnv(`${ENV}FLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42:0:0:0:0:1/64\n`, 'f');
  t.equal(v6.ipv6Subnet, '2001:cafe:42::/64');
  t.same(v6.ipv6Networks, ['2001:cafe:42::/56']);
});

t.test('subnet.env: a missing or bad variable is an invalid-config error naming it', async (t) => {
  const err = (() => { try { parseFlannelEnv('FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_IPMASQ=true\n', '/run/flannel/subnet.env'); } catch (e) { return e as CniError; } return undefined; })();
  t.equal(err?.code, CNI_CODES.INVALID_CONFIG);
  t.match(err?.message, /\/run\/flannel\/subnet\.env is missing FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET, FLANNEL_MTU/);
  t.equal(codeOf(() => parseFlannelEnv(ENV.replace('1472', '-1'), 'f')), CNI_CODES.INVALID_CONFIG);
  t.equal(codeOf(() => parseFlannelEnv(ENV.replace('10.1.17.1/24', '10.1.17.1'), 'f')), CNI_CODES.INVALID_CONFIG);
});

t.test('IPv6 CIDRs are masked and printed the way Go prints them', async (t) => {
  const fmt = (s: string): string | undefined => { const c = parseCidr6(s); return c && formatCidr6(c); };
  t.equal(fmt('fc00:0:0:1::5/64'), 'fc00:0:0:1::/64');
  t.equal(fmt('::/0'), '::/0');
  t.equal(fmt('2001:db8:0:0:1:0:0:1/128'), '2001:db8::1:0:0:1/128');
  t.equal(fmt('::ffff:192.0.2.1/128'), '::ffff:c000:201/128');
  t.equal(fmt('10.0.0.0/8'), undefined);
  t.equal(fmt('fc00::/129'), undefined);
});

const fenv = (over: Partial<FlannelEnv> = {}): FlannelEnv => ({ ...parseFlannelEnv(ENV, 'f'), ...over });

t.test('the delegate config is flannel\'s, plus hairpin mode', async (t) => {
  const conf = parseNetConf('{"cniVersion":"0.3.1","name":"cni-flannel","type":"flannel"}');
  t.same(buildDelegate(conf, fenv({ ipMasq: false })), {
    name: 'cni-flannel', type: 'bridge', mtu: 1472, ipMasq: true, isGateway: true, hairpinMode: true, cniVersion: '0.3.1',
    ipam: { type: 'host-local', ranges: [[{ subnet: '10.1.17.0/24' }]], routes: [{ dst: '10.1.0.0/16' }] },
  }, 'flannel-io/cni-plugin\'s example, ipMasq the opposite of FLANNEL_IPMASQ');
  t.equal(buildDelegate(conf, fenv()).ipMasq, false, 'flanneld masquerades, so the bridge must not');
});

t.test('delegate and ipam settings from the config are kept; flannel fills only what is missing', async (t) => {
  const conf = parseNetConf(JSON.stringify({
    cniVersion: '1.0.0', name: 'cbr0', type: 'flannel', runtimeConfig: { portMappings: [] },
    delegate: { mtu: 1400, ipMasq: true, isDefaultGateway: true, hairpinMode: false },
    ipam: { dataDir: '/tmp/x', routes: [{ dst: '192.0.2.0/24' }] },
  }));
  const d = buildDelegate(conf, fenv({ ipv6Subnet: 'fc00:0:0:1::/64', ipv6Networks: ['fc00::/48'] }));
  t.match(d, { mtu: 1400, ipMasq: true, isDefaultGateway: true, hairpinMode: false, runtimeConfig: { portMappings: [] } });
  t.same(d.ipam, {
    dataDir: '/tmp/x', type: 'host-local', ranges: [[{ subnet: '10.1.17.0/24' }], [{ subnet: 'fc00:0:0:1::/64' }]],
    routes: [{ dst: '192.0.2.0/24' }, { dst: '10.1.0.0/16' }, { dst: 'fc00::/48' }],
  });
  const ptp = buildDelegate(parseNetConf('{"cniVersion":"1.0.0","name":"n","delegate":{"type":"ptp"}}'), fenv());
  t.notOk('isGateway' in ptp || 'hairpinMode' in ptp, 'bridge-only settings are not given to other delegates');
});

t.test('bad configs get the CNI codes of the spec', async (t) => {
  t.equal(codeOf(() => parseNetConf('{not json')), CNI_CODES.DECODE_FAILURE);
  t.equal(codeOf(() => parseNetConf('[1]')), CNI_CODES.DECODE_FAILURE);
  t.equal(codeOf(() => parseNetConf('{"cniVersion":"1.0.0","name":"n","delegate":"bridge"}')), CNI_CODES.INVALID_CONFIG);
  t.equal(codeOf(() => parseNetConf('{"cniVersion":"1.0.0","name":"n","ipam":{"routes":{}}}')), CNI_CODES.INVALID_CONFIG);
  const add = (delegate: unknown) => () => buildDelegate(parseNetConf(JSON.stringify({ cniVersion: '1.0.0', name: 'n', delegate })), fenv());
  t.equal(codeOf(add({ name: 'x' })), CNI_CODES.UNSUPPORTED_FIELD, 'delegate.name');
  t.equal(codeOf(add({ ipam: {} })), CNI_CODES.UNSUPPORTED_FIELD, 'delegate.ipam');
  t.equal(codeOf(add({ type: 7 })), CNI_CODES.INVALID_CONFIG, 'delegate.type not a string');
  t.equal(codeOf(add({ type: '../../bin/sh' })), CNI_CODES.INVALID_CONFIG, 'delegate.type with a path');
  const v = (cniVersion: string, cmd: string) => () => checkVersion(parseNetConf(JSON.stringify({ cniVersion, name: 'n' })), cmd);
  t.equal(codeOf(v('9.9.9', 'ADD')), CNI_CODES.INCOMPATIBLE_VERSION);
  t.equal(codeOf(v('0.2.0', 'ADD')), CNI_CODES.INCOMPATIBLE_VERSION);
  t.equal(codeOf(v('0.3.1', 'CHECK')), CNI_CODES.INCOMPATIBLE_VERSION, 'CHECK needs 0.4.0');
  for (const ok of ['0.3.1', '0.4.0', '1.0.0']) t.equal(codeOf(v(ok, 'ADD')), 'no error', ok);
  t.equal(codeOf(v('0.4.0', 'CHECK')), 'no error');
});
