// The flannel CNI plugin (the built dist/cni/flannel) in real namespaces, driven the way a container
// runtime drives it and delegating to Debian's real bridge and host-local plugins: ADD, CHECK, DEL,
// spec versions, bridge masquerading, and 50 pods added and deleted with nothing leaked.
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { type CniCall, callPlugin, callPluginChecked, flannelNetConf, resultIp } from '../../deploy/cni/runtime.js';
import { ping } from '../../deploy/local/local-cluster.js';
import { createNetns, deleteNetns, execCheckedIn, ipIn, runTag } from '../../deploy/local/netns.js';

const SUBNET_ENV = 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n';

interface Node {
  readonly ns: string;
  readonly dir: string;
  readonly netConf: Record<string, unknown>;
  readonly ipamDir: string;
  readonly dataDir: string;
  pod(): Promise<string>;
  call(command: string, pod: string, over?: Partial<CniCall>): ReturnType<typeof callPlugin>;
}

/** A node namespace with its own subnet.env and data dirs in a temp dir; all removed at teardown. */
async function node(t: Test, subnetEnv = SUBNET_ENV): Promise<Node> {
  const tag = runTag('cn');
  const created: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-cni-'));
  t.teardown(async () => { await deleteNetns(created); rmSync(dir, { recursive: true, force: true }); });
  await createNetns(`${tag}-n`, created);
  writeFileSync(join(dir, 'subnet.env'), subnetEnv);
  const dataDir = join(dir, 'flannel');
  const ipamDir = join(dir, 'networks');
  const netConf = flannelNetConf({ subnetFile: join(dir, 'subnet.env'), dataDir, ipamDataDir: ipamDir });
  let pods = 0;
  return {
    ns: `${tag}-n`, dir, netConf, ipamDir, dataDir,
    pod: async () => { const ns = `${tag}-p${++pods}`; await createNetns(ns, created); return ns; },
    call: (command, pod, over = {}) => callPlugin({ nodeNs: `${tag}-n`, command, containerId: `c-${pod}`, netns: `/run/netns/${pod}`, config: netConf, ...over }),
  };
}

const ipFiles = (dir: string): string[] => readdirSync(join(dir, 'cbr0')).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
const bridgePorts = async (ns: string): Promise<Array<{ ifname: string; linkinfo?: { info_slave_data?: { hairpin?: boolean } } }>> =>
  JSON.parse(await ipIn(ns, ['-j', '-d', 'link', 'show', 'master', 'cni0'])) as Array<{ ifname: string }>;

t.test('ADD, CHECK, DEL of pods on one node', async (t) => {
  const n = await node(t);
  const [p1, p2] = [await n.pod(), await n.pod()];

  const r1 = await n.call('ADD', p1, { env: {} });
  t.equal(r1.code, 0, `ADD with an empty environment (no PATH) succeeds: ${r1.stdout}`);
  const result = r1.json ?? {};
  const ip1 = resultIp(result);
  await t.test('the pod gets an address in the node\'s subnet behind cni0, with flannel\'s MTU and routes', async (t) => {
    t.match(result, { cniVersion: '1.0.0', ips: [{ address: /^10\.244\.7\.\d+\/24$/, gateway: '10.244.7.1' }] });
    t.match(await ipIn(p1, ['-o', '-4', 'addr', 'show', 'eth0']), new RegExp(`inet ${ip1.replace(/\./g, '\\.')}/24`));
    t.match(await ipIn(p1, ['link', 'show', 'eth0']), /mtu 1450 /);
    const routes = await ipIn(p1, ['route']);
    t.match(routes, /^default via 10\.244\.7\.1 dev eth0/m);
    t.match(routes, /^10\.244\.0\.0\/16 via 10\.244\.7\.1 dev eth0/m);
    t.match(await ipIn(n.ns, ['-o', '-4', 'addr', 'show', 'cni0']), /inet 10\.244\.7\.1\/24/);
    t.equal((await bridgePorts(n.ns))[0]?.linkinfo?.info_slave_data?.hairpin, true, 'hairpin mode on the bridge port');
    t.same(ipFiles(n.ipamDir), [ip1], 'host-local reserved exactly this address');
  });

  await t.test('the delegate config is saved before ADD: dir 0700, file 0600', async (t) => {
    t.equal(statSync(n.dataDir).mode & 0o777, 0o700);
    const file = join(n.dataDir, `c-${p1}`);
    t.equal(statSync(file).mode & 0o777, 0o600);
    t.same(JSON.parse(readFileSync(file, 'utf8')), {
      hairpinMode: true, isDefaultGateway: true, name: 'cbr0', type: 'bridge', ipMasq: false, mtu: 1450, isGateway: true, cniVersion: '1.0.0',
      ipam: { dataDir: n.ipamDir, type: 'host-local', ranges: [[{ subnet: '10.244.7.0/24' }]], routes: [{ dst: '10.244.0.0/16' }] },
    });
  });

  await t.test('a second pod (spec 0.4.0) reaches the first', async (t) => {
    const r2 = await callPluginChecked({ nodeNs: n.ns, command: 'ADD', containerId: `c-${p2}`, netns: `/run/netns/${p2}`, config: { ...n.netConf, cniVersion: '0.4.0' } });
    t.match(r2, { cniVersion: '0.4.0', ips: [{ version: '4', address: /^10\.244\.7\.\d+\/24$/ }] });
    t.not(resultIp(r2), ip1);
    t.ok(await ping(p2, ip1), 'ping pod2 → pod1');
    t.ok(await ping(p1, resultIp(r2)), 'ping pod1 → pod2');
  });

  await t.test('CHECK passes on a healthy pod and fails when its route is gone', async (t) => {
    const check = () => n.call('CHECK', p1, { config: { ...n.netConf, prevResult: result } });
    t.equal((await check()).code, 0, 'healthy');
    await ipIn(p1, ['route', 'del', '10.244.0.0/16']);
    const broken = await check();
    t.equal(broken.code, 1);
    t.match(broken.json?.msg, /bridge CHECK failed: .*10\.244\.0\.0/);
    await ipIn(p1, ['route', 'add', '10.244.0.0/16', 'via', '10.244.7.1']);
    t.equal((await check()).code, 0, 'healthy again once the route is back');
    t.match((await n.call('CHECK', p1)).json, { code: 7, msg: /prevResult/ }, 'CHECK without the cached result');
  });

  await t.test('DEL frees the address, the saved config and the veth; a second DEL succeeds too', async (t) => {
    const first = await n.call('DEL', p1);
    t.equal(first.code, 0, first.stdout);
    t.equal(first.stdout, '');
    t.notOk(ipFiles(n.ipamDir).includes(ip1), 'the address is free');
    t.notOk(readdirSync(n.dataDir).includes(`c-${p1}`), 'the saved config is gone');
    t.notMatch(await ipIn(p1, ['link']), /eth0/, 'the pod has no eth0 any more');
    t.equal((await bridgePorts(n.ns)).length, 1, 'only pod2 is left on cni0');
    t.equal((await n.call('DEL', p1)).code, 0, 'the second DEL succeeds');
    t.equal((await n.call('DEL', p1, { netns: '' })).code, 0, 'and so does a DEL without a netns');
    t.equal((await n.call('DEL', p2)).code, 0);
    t.same(readdirSync(n.dataDir), []);
  });
});

t.test('with FLANNEL_IPMASQ=false the bridge masquerades, and DEL removes its rules', async (t) => {
  const n = await node(t, SUBNET_ENV.replace('FLANNEL_IPMASQ=true', 'FLANNEL_IPMASQ=false'));
  const pod = await n.pod();
  const ip = resultIp(await callPluginChecked({ nodeNs: n.ns, command: 'ADD', containerId: `c-${pod}`, netns: `/run/netns/${pod}`, config: n.netConf }));
  const nat = await execCheckedIn(n.ns, 'iptables-save', ['-t', 'nat']);
  t.match(nat, new RegExp(`-A POSTROUTING -s ${ip.replace(/\./g, '\\.')}/32 .*-j CNI-`), 'the pod\'s traffic goes through a CNI- chain');
  t.match(nat, /-j MASQUERADE/);
  t.equal((await n.call('DEL', pod)).code, 0);
  t.notMatch(await execCheckedIn(n.ns, 'iptables-save', ['-t', 'nat']), /CNI-/, 'no CNI- chain or rule is left');
});

t.test('spec 0.3.1: ADD and DEL', async (t) => {
  const n = await node(t);
  const pod = await n.pod();
  const conf = { ...n.netConf, cniVersion: '0.3.1' };
  const r = await n.call('ADD', pod, { config: conf });
  t.match(r.json, { cniVersion: '0.3.1', ips: [{ version: '4', address: /^10\.244\.7\./ }] });
  t.match((await n.call('CHECK', pod, { config: { ...conf, prevResult: r.json } })).json, { code: 1, msg: /does not allow CHECK/ });
  t.equal((await n.call('DEL', pod, { config: conf })).code, 0);
  t.same(ipFiles(n.ipamDir), []);
});

t.test('50 pods added and deleted: no leaked address, file, interface or rule', async (t) => {
  const n = await node(t);
  const pods: string[] = [];
  for (let i = 0; i < 50; i++) pods.push(await n.pod());
  const ips: string[] = [];
  for (const pod of pods) ips.push(resultIp(await callPluginChecked({ nodeNs: n.ns, command: 'ADD', containerId: `c-${pod}`, netns: `/run/netns/${pod}`, config: n.netConf })));
  t.equal(new Set(ips).size, 50, '50 distinct addresses');
  t.ok(ips.every((ip) => ip.startsWith('10.244.7.')), 'all in the node\'s subnet');
  t.equal(ipFiles(n.ipamDir).length, 50);
  t.equal(readdirSync(n.dataDir).length, 50);
  t.equal((await bridgePorts(n.ns)).length, 50);
  for (const pod of pods) {
    const r = await n.call('DEL', pod);
    if (r.code !== 0) t.fail(`DEL ${pod}: ${r.stdout}`);
  }
  t.same(ipFiles(n.ipamDir), [], 'host-local holds no address');
  t.same(readdirSync(join(n.ipamDir, 'cbr0')).sort(), ['last_reserved_ip.0', 'lock'], 'only host-local\'s own bookkeeping is left');
  t.same(readdirSync(n.dataDir), [], 'our dataDir is empty');
  t.same((await bridgePorts(n.ns)).map((p) => p.ifname), [], 'no veth is left on cni0');
  t.notMatch(await execCheckedIn(n.ns, 'iptables-save', []), /CNI-/, 'no CNI rule is left');
});
