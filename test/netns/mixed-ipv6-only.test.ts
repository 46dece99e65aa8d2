// IPv6-only with the real flannel (v0.28.10) reading the same etcd: what our key format must guarantee.
// flannel's etcd mode has no IPv6-only key (its regex needs an IPv4 part): it writes 0.0.0.0-0&<v6>-<len>
// with PublicIP 0.0.0.0, and a second flannel node would reuse that one lease by PublicIP. Our keys
// (fd00:…-64) are therefore ones flannel cannot read: it logs "Ignoring bad subnet node" for each, keeps
// running, never rewrites or deletes them, and never adopts one as its own. Ours read flannel's lease, keep
// clear of its subnet and route to it. (flannel cannot see our subnets, so a flannel node started after
// ours may pick one of them: mixing flannel into an IPv6-only network is not supported; README.)
// Skipped with one line where flannel cannot be built.
import t from 'tap';
import { LocalCluster, readEnvFile } from '../../deploy/local/local-cluster.js';
import { ipIn, runTag } from '../../deploy/local/netns.js';
import { realFlannelOrSkipTest } from '../helpers/mixed-cluster.js';
import { until } from '../helpers/wait.js';

const NETWORK6 = 'fd00:10:244::/56';
const PREFIX = '/coreos.com/network/subnets/';

t.test('IPv6-only host-gw: a flannel node first, then two of ours', async (t) => {
  const bin = await realFlannelOrSkipTest(t);
  if (!bin) return;
  const cluster = await LocalCluster.create({ tag: runTag('x6o'), nodes: 3, ipv6: true });
  t.teardown(async () => {
    if (!t.passing()) for (const d of cluster.daemons.values()) console.error(`--- ${d.kind} on ${d.node.name}:\n${d.proc.output().split('\n').slice(-30).join('\n')}`);
    await cluster.destroy();
  });
  await cluster.putConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: NETWORK6, Backend: { Type: 'host-gw' } });
  const [flNode, a, b] = cluster.nodes as [typeof cluster.nodes[0], typeof cluster.nodes[0], typeof cluster.nodes[0]];
  const fl = cluster.startFlannel(flNode, bin);
  const env6 = (node: typeof flNode) => until(`${node.name}'s FLANNEL_IPV6_SUBNET`, async () => {
    const d = cluster.daemons.get(node.name);
    if (d && d.proc.child.exitCode !== null) throw new Error(`${d.kind} on ${node.name} exited ${d.proc.child.exitCode}`);
    return readEnvFile(cluster.subnetFileOf(node)).FLANNEL_IPV6_SUBNET;
  }, 30_000);
  const flSubnet = (await env6(flNode)).replace(/::1\//, '::/');
  const flKey = `${PREFIX}0.0.0.0-0&${flSubnet.replace('/', '-')}`;
  t.equal(await cluster.etcd.get(flKey), `{"PublicIP":"0.0.0.0","PublicIPv6":"${flNode.underlayIp6}","BackendType":"host-gw"}`, 'flannel\'s IPv6-only lease: 0.0.0.0-0&<v6>, PublicIP 0.0.0.0');

  for (const node of [a, b]) cluster.startDaemon(node);
  const ours = [];
  for (const node of [a, b]) ours.push({ node, subnet: (await env6(node)).replace(/::1\//, '::/') });
  t.equal(new Set([flSubnet, ...ours.map((o) => o.subnet)]).size, 3, 'our nodes keep clear of flannel\'s subnet and of each other\'s');
  const ourKeys = ours.map((o) => `${PREFIX}${o.subnet.replace('/', '-')}`);
  const before = await Promise.all(ourKeys.map((k) => cluster.etcd.get(k)));
  for (const [i, o] of ours.entries()) {
    t.equal(before[i], `{"PublicIP":"0.0.0.0","PublicIPv6":"${o.node.underlayIp6}","BackendType":"host-gw"}`, `${o.node.name}: our IPv6-only key ${ourKeys[i]}`);
    t.match(await ipIn(o.node.ns, ['-6', 'route', 'show', flSubnet]), `via ${flNode.underlayIp6} dev eth0`, `${o.node.name} routes flannel's subnet via its PublicIPv6`);
  }

  // Its watch reports a put of each of our keys as "skipping malformed etcd event: … PUT "<key>" is not a
  // subnet"; a list as "Ignoring bad subnet node: failed to parse subnet key <key>".
  const skipped = (k: string): boolean => fl.proc.output().includes(`PUT "${k}" is not a subnet`) || fl.proc.output().includes(`failed to parse subnet key ${k}`);
  await until('flannel to report our keys', async () => ourKeys.every(skipped), 20_000);
  t.pass('flannel skips each of our keys as one that is not a subnet');
  await new Promise((r) => setTimeout(r, 2000));
  t.equal(fl.proc.child.exitCode, null, 'flannel keeps running');
  t.same(await Promise.all(ourKeys.map((k) => cluster.etcd.get(k))), before, 'our keys and values are untouched');
  t.equal(readEnvFile(cluster.subnetFileOf(flNode)).FLANNEL_IPV6_SUBNET, `${flSubnet.replace('::/', '::1/')}`, 'flannel kept its own subnet');
  t.equal((await ipIn(flNode.ns, ['-6', 'route', 'show', 'proto', 'boot'])).trim().split('\n').filter((l) => l.startsWith('fd00:10:244:')).length, 0,
    'flannel programs no route to our subnets (it cannot read them)');
  const keys = (await cluster.etcd.ctlChecked(['get', PREFIX, '--prefix', '--keys-only'])).split('\n').filter(Boolean).sort();
  t.same(keys, [flKey, ...ourKeys].sort(), 'three keys, one per node');
});
