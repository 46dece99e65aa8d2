// The README's main job end to end (the compiled deploy/local/cluster-main.js): real flanneld nodes,
// pods added through our CNI plugin, the table and the all-pairs matrix, and teardown that leaves
// nothing behind, also on Ctrl-C; --keep leaves a usable cluster that --destroy removes; --kube (KUBE=1) runs a real
// kube-apiserver and flanneld --kube-subnet-mgr, each node's subnet its Node's podCIDR.
// --containers (CONTAINERS=1) runs every flanneld in a container of the image, and no container is left.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { containersOf } from '../../deploy/container/cluster-containers.js';
import { missingTools } from '../../deploy/container/image.js';
import { kubeApiserverOrSkip } from '../../deploy/local/kube-apiserver.js';
import { ping } from '../../deploy/local/local-cluster.js';
import { realFlannelOrSkip } from '../../deploy/local/real-flannel.js';
import { runCommand } from '../../lib/run-command.js';

const MAIN = new URL('../../dist/deploy/local/cluster-main.js', import.meta.url).pathname;
const RUN_ROOT = '/run/flannel-ts-cluster';
// The clusters' state and etcd directories go to a private TMPDIR, so that "nothing is left" is exact.
const TMP = mkdtempSync(join(tmpdir(), 'flannel-ts-cni-cluster-'));
t.teardown(() => rmSync(TMP, { recursive: true, force: true }));

interface Run { child: ChildProcess; out: () => string; done: Promise<number | null> }

function start(args: string[]): Run {
  const child = spawn(process.execPath, [MAIN, ...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: TMP } });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, out: () => out, done };
}

const tagOf = (out: string): string => /\(tag (\w+)\)/.exec(out)?.[1] ?? 'no-tag';
const tmpDirs = (): string[] => readdirSync(TMP).sort();
const namespacesOf = async (tag: string): Promise<string[]> =>
  (await runCommand('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(`${tag}-`));
/** Processes whose command line mentions the tag or one of the paths. */
function processesOf(needles: readonly string[]): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)) {
    let cmd = '';
    try { cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '); } catch { continue; }
    if (needles.some((n) => cmd.includes(n))) found.push(`${pid}: ${cmd}`);
  }
  return found;
}

t.test('make cluster\'s run: 2 nodes, 2 CNI pods each, every pair connects, nothing is left', async (t) => {
  const run = start(['--nodes', '2', '--pods', '2']);
  t.teardown(() => { run.child.kill('SIGKILL'); });
  const code = await run.done;
  const out = run.out();
  t.equal(code, 0, out);
  const rows = [...out.matchAll(/^(node\d)\s+(192\.0\.2\.\d+)\s+(10\.244\.(\d+)\.1\/24)\s+(.*)$/gm)];
  t.equal(rows.length, 2, 'a row per node');
  for (const r of rows) {
    const pods = String(r[5]).split(', ');
    t.equal(pods.length, 2, `${r[1]} has 2 pods`);
    t.ok(pods.every((ip) => ip.startsWith(`10.244.${r[4]}.`)), `${r[1]}'s pods are in its subnet ${r[3]}`);
  }
  t.match(out, /^from \\ to(\s+10\.244\.\d+\.\d+){4}$/m);
  t.equal(out.match(/^10\.244\.\d+\.\d+(\s+pass){4}$/gm)?.length, 4, 'every cell of the 4x4 matrix passes');
  t.match(out, /All 16 pairs connected\.\nTearing down\.\.\.\nDone: no namespace, device, process or file of this cluster is left\./);
  t.same(await namespacesOf(tagOf(out)), [], 'no namespace is left');
  t.same(tmpDirs(), [], 'no state or etcd directory is left');
  t.same(processesOf([tagOf(out)]), [], 'no process is left');
});

t.test('make cluster IPV6=dual: pods get an address of each family, every pair connects on both, nothing is left', async (t) => {
  const run = start(['--nodes', '2', '--pods', '1', '--ipv6', 'dual']);
  t.teardown(() => { run.child.kill('SIGKILL'); });
  const code = await run.done;
  const out = run.out();
  t.equal(code, 0, out);
  t.match(out, /2-node dual-stack cluster/);
  const rows6 = [...out.matchAll(/^\s+(2001:db8::\d+)\s+(fd00:10:244:([0-9a-f]+)::1\/64)\s+(\S+)$/gm)];
  t.equal(rows6.length, 2, 'an IPv6 row per node: underlay address, FLANNEL_IPV6_SUBNET, pod');
  for (const r of rows6) t.ok(String(r[4]).startsWith(`fd00:10:244:${r[3]}::`), `the pod ${r[4]} is in ${r[2]}`);
  t.match(out, /IPv4: all 4 pairs connected\./);
  t.match(out, /IPv6: all 4 pairs connected\.\nTearing down\.\.\.\nDone: no namespace, device, process or file of this cluster is left\./);
  t.same(await namespacesOf(tagOf(out)), [], 'no namespace is left');
});

t.test('make cluster IPV6=only BACKEND=vxlan: pods get an IPv6 address only, every pair connects, nothing is left', async (t) => {
  const run = start(['--nodes', '2', '--pods', '1', '--ipv6', 'only', '--backend', 'vxlan']);
  t.teardown(() => { run.child.kill('SIGKILL'); });
  const code = await run.done;
  const out = run.out();
  t.equal(code, 0, out);
  t.match(out, /2-node IPv6-only cluster/);
  const rows = [...out.matchAll(/^node\d\s+(2001:db8::\d+)\s+(fd00:10:244:([0-9a-f]+)::1\/64)\s+(\S+)$/gm)];
  t.equal(rows.length, 2, 'a row per node: underlay IPv6 address, FLANNEL_IPV6_SUBNET, pod');
  for (const r of rows) t.ok(String(r[4]).startsWith(`fd00:10:244:${r[3]}::`), `the pod ${r[4]} is in ${r[2]}`);
  t.notMatch(out, /10\.244\./, 'no IPv4 pod address anywhere');
  t.match(out, /IPv6: all 4 pairs connected\.\nTearing down\.\.\.\nDone: no namespace, device, process or file of this cluster is left\./);
  t.same(await namespacesOf(tagOf(out)), [], 'no namespace is left');
});

t.test('make cluster KUBE=1: a real kube-apiserver, each subnet its Node\'s podCIDR, every pair connects, nothing is left', async (t) => {
  let reason = '';
  if (!await kubeApiserverOrSkip((line) => { reason = line; })) { t.skip(reason); return; }
  const run = start(['--kube', '--nodes', '2', '--pods', '1', '--backend', 'vxlan']);
  t.teardown(() => { run.child.kill('SIGKILL'); });
  const code = await run.done;
  const out = run.out();
  t.equal(code, 0, out);
  t.match(out, /2-node cluster \(tag \w+\) with a real kube-apiserver v1\.\d+\.\d+ \(on etcd\) and the vxlan backend/);
  t.match(out, /^node\s+underlay IP\s+subnet \(FLANNEL_SUBNET\)\s+from Node podCIDR\s+pods/m, 'the table has a podCIDR column');
  const rows = [...out.matchAll(/^(node\d)\s+(192\.0\.2\.\d+)\s+(10\.244\.(\d+)\.1\/24)\s+(10\.244\.(\d+)\.0\/24)\s+(\S+)$/gm)];
  t.equal(rows.length, 2, 'a row per node: underlay IP, FLANNEL_SUBNET, the Node\'s podCIDR, pod');
  for (const r of rows) {
    t.equal(r[4], r[6], `${r[1]}: FLANNEL_SUBNET ${r[3]} is its podCIDR ${r[5]}`);
    t.ok(String(r[7]).startsWith(`10.244.${r[4]}.`), `${r[1]}'s pod ${r[7]} is in it`);
  }
  t.match(out, /Every node's subnet is its Node's podCIDR \(spec\.podCIDR, read from the kube-apiserver\)\./);
  t.equal(out.match(/^10\.244\.\d+\.\d+(\s+pass){2}$/gm)?.length, 2, 'every cell of the 2x2 matrix passes');
  t.match(out, /All 4 pairs connected\.\nTearing down\.\.\.\nDone: no namespace, device, process or file of this cluster is left\./);
  t.same(await namespacesOf(tagOf(out)), [], 'no namespace is left');
  t.same(tmpDirs(), [], 'no state, etcd or kube-apiserver directory is left');
  t.same(processesOf([tagOf(out)]), [], 'no process is left');
});

t.test('make cluster KUBE=1 IPV6=only: the Nodes\' podCIDRs IPv6 only, every pair connects over IPv6, nothing is left', async (t) => {
  let reason = '';
  if (!await kubeApiserverOrSkip((line) => { reason = line; })) { t.skip(reason); return; }
  const run = start(['--kube', '--ipv6', 'only', '--nodes', '2', '--pods', '1', '--backend', 'host-gw']);
  t.teardown(() => { run.child.kill('SIGKILL'); });
  const code = await run.done;
  const out = run.out();
  t.equal(code, 0, out);
  t.match(out, /2-node IPv6-only cluster \(tag \w+\) with a real kube-apiserver/);
  const rows = [...out.matchAll(/^(node\d)\s+(2001:db8::\d+)\s+(fd00:10:244:([0-9a-f]+)::1\/64)\s+(fd00:10:244:([0-9a-f]+)::\/64)\s+(\S+)$/gm)];
  t.equal(rows.length, 2, 'a row per node: underlay IPv6 address, FLANNEL_IPV6_SUBNET, the Node\'s podCIDR, pod');
  for (const r of rows) t.equal(r[4], r[6], `${r[1]}: FLANNEL_IPV6_SUBNET ${r[3]} is its podCIDR ${r[5]}`);
  t.notMatch(out, /10\.244\./, 'no IPv4 subnet or pod address anywhere');
  t.match(out, /IPv6: all 4 pairs connected\.\nTearing down\.\.\.\nDone: no namespace, device, process or file of this cluster is left\./);
  t.same(await namespacesOf(tagOf(out)), [], 'no namespace is left');
});

t.test('make cluster CONTAINERS=1: every flanneld in a container of the image, every pair connects, no container is left', async (t) => {
  const refused = start(['--containers', '--mixed']);
  t.equal(await refused.done, 64, 'CONTAINERS=1 with MIXED=1 is refused');
  let reason = '';
  const missing = await missingTools();
  if (missing.length) { t.skip(`CONTAINERS=1 skipped: ${missing.join(', ')} not installed`); return; }
  if (!await kubeApiserverOrSkip((line) => { reason = line; })) { t.skip(reason); return; }
  const run = start(['--containers', '--nodes', '2', '--pods', '1', '--backend', 'udp']);
  t.teardown(() => { run.child.kill('SIGKILL'); });
  const code = await run.done;
  const out = run.out();
  t.equal(code, 0, out);
  t.match(out, /^Image localhost\/flannel-ts:0\.1\.0 \(\d+ MB\): flanneld runs in it on every node, from deploy\/kubernetes\/kube-flannel-ts\.yml's pod spec\.$/m);
  t.match(out, /Every node's subnet is its Node's podCIDR/);
  t.match(out, /All 4 pairs connected\.\nTearing down\.\.\.\nDone: no namespace, device, process or file of this cluster is left\./);
  t.same(await containersOf(tagOf(out)), [], 'no container is left');
  t.same(await namespacesOf(tagOf(out)), [], 'no namespace is left');
  t.same(tmpDirs(), [], 'no state directory is left');
});

t.test('make cluster KUBE=1 MIXED=1: the real flannel in kube mode on node2, ours on node1, one apiserver, every pair connects', async (t) => {
  let reason = '';
  if (!await kubeApiserverOrSkip((line) => { reason = line; }) || !await realFlannelOrSkip((line) => { reason = line; })) { t.skip(reason); return; }
  const run = start(['--kube', '--mixed', '--nodes', '2', '--pods', '1', '--backend', 'host-gw']);
  t.teardown(() => { run.child.kill('SIGKILL'); });
  const code = await run.done;
  const out = run.out();
  t.equal(code, 0, out);
  t.match(out, /with a real kube-apiserver v1\.\d+\.\d+ \(on etcd\) and the host-gw backend, mixed: the real flannel v\d+\.\d+\.\d+ on the even nodes/);
  t.match(out, /^node1\s+flannel-ts\s+192\.0\.2\.1\s+10\.244\.1\.1\/24\s+10\.244\.1\.0\/24\s+10\.244\.1\.\d+$/m, 'node1: ours, its podCIDR');
  t.match(out, /^node2\s+flannel v\d+\.\d+\.\d+\s+192\.0\.2\.2\s+10\.244\.2\.1\/24\s+10\.244\.2\.0\/24\s+10\.244\.2\.\d+$/m, 'node2: the real flannel, its podCIDR');
  t.match(out, /All 4 pairs connected\.\nTearing down\.\.\.\nDone: no namespace, device, process or file of this cluster is left\./);
  t.same(await namespacesOf(tagOf(out)), [], 'no namespace is left');
  t.same(tmpDirs(), [], 'no state, etcd or kube-apiserver directory is left');
});

t.test('make cluster IPV6=dual with udp, and IPV6=only with MIXED=1, are refused, saying why', async (t) => {
  const mixedOnly = start(['--ipv6', 'only', '--mixed']);
  t.equal(await mixedOnly.done, 64);
  t.match(mixedOnly.out(), /the real flannel cannot run an IPv6-only network on etcd/);
  const udp = start(['--ipv6', 'dual', '--backend', 'udp']);
  t.equal(await udp.done, 64);
  t.match(udp.out(), /udp is IPv4-only, as in flannel/);
});

t.test('Ctrl-C in the middle tears everything down', async (t) => {
  const run = start(['--nodes', '2']);
  t.teardown(() => { run.child.kill('SIGKILL'); });
  for (let i = 0; i < 300 && !/pods \(added by/.test(run.out()); i++) await sleep(100);
  process.kill(-(run.child.pid as number), 'SIGINT'); // the whole process group, as a terminal does
  t.equal(await run.done, 130, run.out());
  t.match(run.out(), /SIGINT: stopping/);
  t.match(run.out(), /Done: no namespace, device, process or file of this cluster is left\./);
  t.same(await namespacesOf(tagOf(run.out())), []);
  t.same(tmpDirs(), []);
  t.same(processesOf([tagOf(run.out())]), []);
});

t.test('Ctrl-C also tears down when the reader of the output is gone (make cluster | tee)', async (t) => {
  const run = start(['--nodes', '2', '--pods', '1']);
  t.teardown(() => { run.child.kill('SIGKILL'); });
  for (let i = 0; i < 300 && !/pods \(added by/.test(run.out()); i++) await sleep(100);
  const tag = tagOf(run.out());
  run.child.stdout?.destroy();
  run.child.stderr?.destroy();
  process.kill(-(run.child.pid as number), 'SIGINT');
  t.equal(await run.done, 130);
  t.same(await namespacesOf(tag), []);
  t.same(tmpDirs(), []);
  t.same(processesOf([tag]), []);
});

t.test('--keep leaves a working cluster; --destroy removes all of it', async (t) => {
  const kept = start(['--keep', '--nodes', '2', '--pods', '1']);
  t.equal(await kept.done, 0, kept.out());
  const tag = tagOf(kept.out());
  t.teardown(async () => { await start(['--destroy', tag]).done; });
  t.match(kept.out(), new RegExp(`tear it down: +make cluster ARGS="--destroy ${tag}"`));
  const shell = /a shell in a pod: +ip netns exec (\S+) bash/.exec(kept.out());
  const across = /ping across nodes: +ip netns exec (\S+) ping (\S+)/.exec(kept.out());
  t.ok(shell && across, 'instructions for exec\'ing into a pod');
  t.ok(await ping(String(across?.[1]), String(across?.[2])), 'the printed ping works after main exited');
  const paths = JSON.parse(readFileSync(join(RUN_ROOT, tag, 'paths.json'), 'utf8')) as string[];
  const cniDirs = readdirSync(join(paths[0] as string, 'node1', 'cni', 'flannel'));
  t.same(cniDirs, [`${tag}-n1-p1`], 'the pod was added by the CNI plugin (its saved delegate config)');
  t.equal((await namespacesOf(tag)).length, 5, 'switch, 2 nodes, 2 pods');

  const destroyed = start(['--destroy', tag]);
  t.equal(await destroyed.done, 0, destroyed.out());
  t.match(destroyed.out(), new RegExp(`Cluster ${tag} destroyed\\.`));
  t.match(destroyed.out(), /Done: no namespace, device, process or file of this cluster is left\./, 'the keeper tore it down');
  t.same(await namespacesOf(tag), []);
  t.same(tmpDirs(), []);
  t.notOk(existsSync(join(RUN_ROOT, tag)), 'the run directory is gone');
  t.same(processesOf([tag, ...paths]), []);
  t.equal(await start(['--destroy', tag]).done, 1, 'a second --destroy says there is nothing');
});

t.test('a wrong backend or option fails clearly before anything is built', async (t) => {
  const bad = start(['--backend', 'geneve']);
  t.equal(await bad.done, 64);
  t.match(bad.out(), /unknown backend "geneve": expected one of udp, vxlan, host-gw, wireguard/);
  const opt = start(['--nodes', '0']);
  t.equal(await opt.done, 64);
  t.match(opt.out(), /--nodes must be 1-20/);
});
