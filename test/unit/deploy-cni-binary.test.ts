// The built plugin dist/cni/flannel as a runtime sees it, without namespaces: a self-contained
// executable (no Node.js, empty PATH), VERSION, and CNI errors with the right codes on stdout.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, openSync, readSync, closeSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cniPluginPath } from '../../deploy/cni/runtime.js';

const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-cni-bin-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const plugin = cniPluginPath();
const subnetEnv = join(dir, 'subnet.env');
writeFileSync(subnetEnv, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
const dataDir = join(dir, 'data');

function run(env: Record<string, string>, stdin = '', file = plugin) {
  const r = spawnSync(file, [], { env, input: stdin, encoding: 'utf8', cwd: join(file, '..') });
  let json: Record<string, unknown> | undefined;
  try { json = JSON.parse(r.stdout) as Record<string, unknown>; } catch { json = undefined; }
  return { code: r.status, stdout: r.stdout, json };
}

const conf = (over: Record<string, unknown> = {}): string => JSON.stringify({ cniVersion: '1.0.0', name: 'cbr0', type: 'flannel', subnetFile: subnetEnv, dataDir, ...over });
const cni = (command: string, over: Record<string, string> = {}): Record<string, string> =>
  ({ CNI_COMMAND: command, CNI_CONTAINERID: 'ctr1', CNI_NETNS: '/run/netns/none', CNI_IFNAME: 'eth0', CNI_PATH: join(dir, 'no-plugins'), ...over });

t.test('it is an ELF executable carrying the bundled plugin (a Node single-executable application)', async (t) => {
  const fd = openSync(plugin, 'r');
  const head = Buffer.alloc(4);
  readSync(fd, head, 0, 4, 0);
  closeSync(fd);
  t.same([...head], [0x7f, 0x45, 0x4c, 0x46], 'ELF magic');
  t.ok(existsSync(join(plugin, '..', 'flannel.cjs')), 'the esbuild bundle it was made from is next to it');
});

t.test('copied alone to an empty directory and run with an empty environment, VERSION answers', async (t) => {
  const lone = mkdtempSync(join(dir, 'lone-'));
  copyFileSync(plugin, join(lone, 'flannel'));
  t.same(readdirSync(lone), ['flannel']);
  const r = run({ CNI_COMMAND: 'VERSION' }, '', join(lone, 'flannel'));
  t.equal(r.code, 0);
  t.same(r.json, { cniVersion: '1.0.0', supportedVersions: ['0.3.1', '0.4.0', '1.0.0'] });
  t.equal(run({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"0.4.0"}').json?.cniVersion, '0.4.0', 'answers in the version asked for');
});

t.test('a missing subnet.env says flanneld is not running, with code 11 (try again later)', async (t) => {
  const r = run(cni('ADD'), conf({ subnetFile: join(dir, 'absent.env') }));
  t.equal(r.code, 1);
  t.equal(r.json?.code, 11);
  t.match(String(r.json?.msg), /failed to load flannel 'subnet.env' file: open .*absent\.env: no such file or directory\. flanneld is not running on this node/);
  t.equal(r.json?.cniVersion, '1.0.0');
});

t.test('errors come back as CNI error JSON with the spec\'s codes', async (t) => {
  t.equal(run({}).json?.code, 4, 'no CNI_COMMAND');
  t.match(run(cni('GC'), conf()).json, { code: 4, msg: 'unknown CNI_COMMAND: GC' });
  t.match(run(cni('ADD', { CNI_NETNS: '' }), conf()).json, { code: 4, msg: 'required env variables [CNI_NETNS] missing' });
  t.equal(run(cni('ADD', { CNI_CONTAINERID: '../../etc/passwd' }), conf()).json?.code, 4, 'a container ID that is a path');
  t.equal(run(cni('ADD', { CNI_IFNAME: 'a-much-too-long-name' }), conf()).json?.code, 4);
  t.equal(run(cni('ADD'), '{"cniVersion":').json?.code, 6, 'undecodable config');
  t.match(run(cni('ADD'), conf({ cniVersion: '9.9.9' })).json, { code: 1, msg: /incompatible CNI versions/ });
  t.equal(run(cni('ADD'), conf({ delegate: { name: 'x' } })).json?.code, 2);
  const missing = run(cni('ADD'), conf());
  t.match(missing.json, { code: 100, msg: /failed to find plugin "bridge" in path/ });
  t.notOk(existsSync(join(dataDir, 'ctr1')), 'nothing is saved when the delegate cannot be found');
});

t.test('DEL with no saved state succeeds and prints nothing, also without a subnet.env', async (t) => {
  const r = run(cni('DEL', { CNI_NETNS: '' }), conf({ subnetFile: join(dir, 'absent.env') }));
  t.equal(r.code, 0);
  t.equal(r.stdout, '');
  t.same(existsSync(dataDir) ? readdirSync(dataDir) : [], []);
});

t.test('CHECK of a container that was never added is "unknown container" (3)', async (t) => {
  t.equal(run(cni('CHECK'), conf({ prevResult: {} })).json?.code, 3);
});
