// The DaemonSet's seed-net-conf step (the compiled dist/deploy/kubernetes/seed-net-conf.js) against a
// real etcd on loopback: it writes net-conf.json only when the key is absent, refuses a bad config
// (exit 78) and bad flags (exit 64), and takes flanneld's etcd flags and FLANNELD_* variables.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { EtcdServer } from '../../deploy/local/etcd-server.js';

const SCRIPT = new URL('../../dist/deploy/kubernetes/seed-net-conf.js', import.meta.url).pathname;
const port = 20000 + Math.floor(Math.random() * 20000);
const etcd = new EtcdServer({ listenIps: ['127.0.0.1'], clientPort: port, peerPort: port + 1 });
const dir = mkdtempSync(join(tmpdir(), 'flannel-ts-seed-'));
t.before(() => etcd.start());
t.teardown(async () => { await etcd.destroy(); rmSync(dir, { recursive: true, force: true }); });

const NET_CONF = '{\n  "Network": "10.244.0.0/16",\n  "Backend": { "Type": "vxlan" }\n}\n';

function seed(file: string, args: string[] = [], prefix = '/coreos.com/network') {
  return spawnSync(process.execPath, [SCRIPT, `--net-conf=${file}`, ...args], {
    encoding: 'utf8', env: { ...process.env, FLANNELD_ETCD_ENDPOINTS: etcd.endpoints()[0], FLANNELD_ETCD_PREFIX: prefix },
  });
}

function file(name: string, text: string): string {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
}

t.test('an absent config is written exactly as the ConfigMap has it', async (t) => {
  const r = seed(file('a.json', NET_CONF));
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /wrote \/coreos\.com\/network\/config/);
  t.equal(await etcd.get('/coreos.com/network/config'), NET_CONF);
});

t.test('a config already in etcd wins', async (t) => {
  const r = seed(file('b.json', '{"Network":"10.99.0.0/16","Backend":{"Type":"host-gw"}}'));
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /left \/coreos\.com\/network\/config as it is \(differs from/);
  t.match(await etcd.get('/coreos.com/network/config'), /10\.244\.0\.0\/16/);
  t.match(seed(file('c.json', NET_CONF)).stdout, /as it is \(same as/);
});

t.test('the prefix comes from --etcd-prefix (a flanneld flag) over FLANNELD_ETCD_PREFIX', async (t) => {
  const r = seed(file('d.json', NET_CONF), ['--etcd-prefix=/other/net'], '/ignored');
  t.equal(r.status, 0, r.stderr);
  t.ok(await etcd.get('/other/net/config'));
  t.equal(await etcd.get('/ignored/config'), undefined);
});

t.test('an invalid net-conf.json exits 78 with every problem, and writes nothing', async (t) => {
  const r = seed(file('e.json', '{"Network":"10.244.0.0/33","Backend":{"Type":"nope"}}'), [], '/bad');
  t.equal(r.status, 78);
  t.match(r.stderr, /2 problems/);
  t.match(r.stderr, /Backend\.Type: "nope"/);
  t.equal(await etcd.get('/bad/config'), undefined);
});

t.test('bad usage exits 64', async (t) => {
  t.equal(seed(file('f.json', NET_CONF), ['--no-such-flag']).status, 64);
  t.equal(spawnSync(process.execPath, [SCRIPT], { encoding: 'utf8' }).status, 64, 'no --net-conf');
});
