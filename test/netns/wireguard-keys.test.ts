// Key changes in our wireguard backend, checked against real WireGuard (issue 16). One LocalCluster:
// node1 and node2 run our flanneld (wireguard backend) with a pod each; node3 runs no flanneld and is a
// WireGuard peer built by hand the way flannel builds one (Debian's wireguard-go, fixtures/wg-hand-peer.ts).
//  1. Our node restarts with a new key file (flanneld stopped, its key file deleted, restarted): a new key
//     in its lease, the same subnet; node2 (ours) and the wireguard-go peer (re-configured from the new
//     lease) reconnect; the old key is gone from node2's sessions: node2's log says the session was
//     erased, and a handshake made with the old private key is refused and counted as unknown_peer.
//  2. The hand-played peer's lease changes key (rewritten with a new PublicKey, wireguard-go given the new
//     private key): node1 handshakes with the new key at once (before its 5 s retry), traffic flows, and
//     handshakes made with the old key are refused and counted as unknown_peer.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { LocalCluster, ping } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, runTag, spawnIn } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import { debianWireguardGo } from '../../deploy/local/wireguard-go.js';
import { until } from '../helpers/wait.js';
import { HandPeer, NETWORK, genKey, readLease, toolsPresent, tryMetric, type OurLease, type WgKey } from './fixtures/wg-hand-peer.js';

const METRICS_PORT = 18094;
const PEER_SUBNET = '10.244.201.0/24';

const debian = debianWireguardGo();
if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces and TUN');
} else if (!toolsPresent()) {
  t.plan(0, 'wg or tcpdump missing: apt-get install wireguard-tools tcpdump (deploy/local/install-deps.sh)');
} else if (!debian.ok) {
  t.plan(0, debian.reason);
} else {
  const wgBin = debian.bin;
  const tag = runTag('wk');
  const dir = mkdtempSync(join(tmpdir(), 'wg-keys-'));
  const cluster = await LocalCluster.create({ tag, nodes: 3 });
  const [n1, n2, n3] = cluster.nodes as [NodeHost, NodeHost, NodeHost];
  const peer = new HandPeer({ cluster, node: n3, subnet: PEER_SUBNET, bin: wgBin, dev: `${tag}g`, dir });
  /** wireguard-go devices that play an old key, to see it refused. */
  const ghosts: HandPeer[] = [];
  t.teardown(async () => {
    for (const g of ghosts) await g.destroy();
    await peer.destroy();
    await cluster.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const metric = async (node: NodeHost, name: string, labels = ''): Promise<number> => {
    const v = await tryMetric(node.ns, METRICS_PORT, name, labels);
    if (v === undefined) throw new Error(`${node.name} /metrics does not answer:\n${cluster.daemons.get(node.name)?.proc.output().slice(-2000)}`);
    return v;
  };
  const unknownPeer = (node: NodeHost) => metric(node, 'flanneld_wireguard_handshake_drops_total', 'reason="unknown_peer"');
  const args = [`--healthz-port=${METRICS_PORT}`, '--log-level=debug'];

  await cluster.putConfig({ Network: NETWORK, Backend: { Type: 'wireguard' } });
  await peer.newKey();
  await peer.writeLease();
  for (const n of [n1, n2]) cluster.startDaemon(n, args);
  const p1: PodHost = await cluster.addPod(n1, await cluster.waitForSubnet(n1));
  const p2: PodHost = await cluster.addPod(n2, await cluster.waitForSubnet(n2));
  let l1 = await readLease(cluster, await cluster.waitForSubnet(n1));
  const l2 = await readLease(cluster, await cluster.waitForSubnet(n2));
  await peer.start();
  await peer.addPeer(l1);
  await peer.addPeer(l2);

  /** A wireguard-go on node3 that holds `key` and tries to handshake with `target` (persistent keepalive
   * makes it initiate at once and keep trying); its latest handshake with the target, after `ms`. */
  async function ghostTries(name: string, key: WgKey, target: OurLease, ms: number): Promise<number> {
    const g = new HandPeer({ cluster, node: n3, subnet: '10.244.254.0/24', bin: wgBin, dev: `${tag}${name}`, dir });
    ghosts.push(g);
    g.key = key;
    // Its own address and listen port; no route: it only handshakes.
    const proc = spawnIn(n3.ns, wgBin, ['-f', g.o.dev], { LOG_LEVEL: 'error', WG_PROCESS_FOREGROUND: '1' });
    g.proc = proc;
    await until(`${g.o.dev} socket`, async () => existsSync(`/var/run/wireguard/${g.o.dev}.sock`) || (proc.child.exitCode !== null && Promise.reject(new Error(proc.output()))), 15_000);
    const keyFile = join(dir, `${g.o.dev}.key`);
    writeFileSync(keyFile, `${key.priv}\n`, { mode: 0o600 });
    await execCheckedIn(n3.ns, 'ip', ['link', 'set', g.o.dev, 'up']);
    await execCheckedIn(n3.ns, 'wg', ['set', g.o.dev, 'private-key', keyFile, 'listen-port', '51899',
      'peer', target.publicKey, 'endpoint', `${target.publicIp}:${target.port}`, 'allowed-ips', target.subnet, 'persistent-keepalive', '1']);
    await sleep(ms);
    const hs = (await g.peers()).get(target.publicKey)?.latestHandshake ?? -1;
    await g.stop();
    return hs;
  }

  t.test('all connected before the changes', async (t) => {
    const m = await until('p1 ↔ p2 ↔ wireguard-go', async () => {
      const r = [await ping(p1.ns, p2.ip), await ping(p2.ns, p1.ip), await ping(p1.ns, peer.devAddress), await ping(p2.ns, peer.devAddress), await ping(n3.ns, p1.ip), await ping(n3.ns, p2.ip)];
      return r.every(Boolean) && r;
    }, 30_000);
    t.same(m, [true, true, true, true, true, true], 'pods of node1 and node2, and wireguard-go on node3, reach each other');
  });

  t.test('our node restarts with a new key file', async (t) => {
    const keyFile = cluster.wgKeyFileOf(n1);
    const oldPriv = readFileSync(keyFile, 'utf8').trim();
    const oldKey: WgKey = { priv: oldPriv, pub: l1.publicKey };
    const erasedBefore = cluster.daemons.get(n2.name)!.proc.output().split('\n').filter((l) => l.includes('peer session erased')).length;
    t.equal(await cluster.stopDaemon(n1, 'SIGTERM'), 0, 'flanneld on node1 stopped');
    rmSync(keyFile);
    const restartedAt = Date.now() / 1000;
    cluster.startDaemon(n1, args);
    const fresh = await until('node1\'s lease with a new key', async () => {
      const l = await readLease(cluster, l1.subnet).catch(() => undefined);
      return l && l.publicKey !== oldKey.pub && l;
    }, 30_000);
    t.equal(fresh.subnet, l1.subnet, `same subnet ${fresh.subnet}, new key ${fresh.publicKey} (was ${oldKey.pub})`);
    t.ok(existsSync(keyFile) && readFileSync(keyFile, 'utf8').trim() !== oldPriv, 'a new private key in the key file');
    t.equal(statSync(keyFile).mode & 0o777, 0o400, 'key file mode 0400');
    t.match(cluster.daemons.get(n1.name)!.proc.output(), /generated a new private key/, 'flanneld says it generated a key');

    // node2 (ours) reconnects.
    const back = await until('p2 → p1 again', async () => ping(p2.ns, p1.ip), 20_000);
    t.ok(back, 'node2\'s pod reaches node1\'s pod again');
    t.ok(await ping(p1.ns, p2.ip), 'and back');
    const hs2 = await metric(n2, 'flanneld_wireguard_peer_last_handshake_seconds', `peer="${l1.subnet}"`);
    t.ok(hs2 >= Math.floor(restartedAt), `node2's last handshake with node1 is after the restart (${hs2} ≥ ${Math.floor(restartedAt)})`);
    t.ok((await metric(n2, 'flanneld_wireguard_peer_keypair_age_seconds', `peer="${l1.subnet}"`)) < Date.now() / 1000 - restartedAt + 1, 'its keypair is younger than the restart');
    const erased = cluster.daemons.get(n2.name)!.proc.output().split('\n').filter((l) => l.includes('peer session erased')).slice(erasedBefore);
    t.ok(erased.some((l) => l.includes(`"peer":"${l1.subnet}"`) && l.includes('"why":"changed"')), `node2 erased node1's old session: ${erased.join(' | ').slice(0, 300)}`);

    // The wireguard-go peer, re-configured from the new lease, reconnects.
    await peer.removePeer(oldKey.pub);
    await peer.addPeer(fresh);
    t.ok(await until('wireguard-go → p1', async () => ping(n3.ns, p1.ip), 20_000), 'wireguard-go\'s node reaches node1\'s pod');
    t.ok(await ping(p1.ns, peer.devAddress), 'and back');
    const wgView = await peer.peers();
    t.ok((wgView.get(fresh.publicKey)?.latestHandshake ?? 0) >= Math.floor(restartedAt), 'wg show: a handshake with node1\'s new key');
    t.notOk(wgView.has(oldKey.pub), 'the old key is no peer of wireguard-go any more');

    // The old key is refused by node2: a wireguard-go holding it tries to handshake with node2.
    const refusedBefore = await unknownPeer(n2);
    const ghost = await ghostTries('o', oldKey, l2, 4000);
    t.equal(ghost, 0, 'a wireguard-go with node1\'s old private key gets no handshake with node2');
    t.ok((await unknownPeer(n2)) > refusedBefore, `node2 counted its initiations as unknown_peer (${refusedBefore} → ${await unknownPeer(n2)})`);
    l1 = fresh;
  });

  t.test('the hand-played peer\'s lease changes key', async (t) => {
    const oldKey = peer.key;
    const newKey = await genKey();
    t.ok(await until('p1 → wireguard-go', async () => ping(p1.ns, peer.devAddress), 15_000), 'connected with the old key');
    const completed = await metric(n1, 'flanneld_wireguard_handshakes_total', 'result="completed"');
    const responses = await metric(n1, 'flanneld_wireguard_handshake_messages_total', 'direction="received",type="response"');
    // wireguard-go takes the new private key, then its lease says so.
    await peer.setKey(newKey);
    const changedAt = Date.now();
    await peer.writeLease();
    t.equal(JSON.parse((await cluster.etcd.get(`${cluster.prefix}/subnets/${PEER_SUBNET.replace('/', '-')}`))!).BackendData.PublicKey, newKey.pub, 'the lease carries the new key');
    // Our node erases the old session and initiates to the new key at once: no 5 s retry in between.
    const hs = await until('node1 handshakes with the new key', async () => {
      const v = (await peer.peers()).get(l1.publicKey)?.latestHandshake ?? 0;
      return v * 1000 >= changedAt - 1000 && v;
    }, 15_000);
    const tookMs = Date.now() - changedAt;
    t.ok(tookMs < 4500, `wireguard-go completed a handshake with node1 ${tookMs} ms after the lease change (latest handshake ${hs})`);
    t.ok((await metric(n1, 'flanneld_wireguard_handshakes_total', 'result="completed"')) > completed, 'node1 counted a completed handshake');
    t.ok((await metric(n1, 'flanneld_wireguard_handshake_messages_total', 'direction="received",type="response"')) > responses, 'node1 initiated it: it received a response');
    t.ok(await ping(p1.ns, peer.devAddress), 'node1\'s pod reaches wireguard-go');
    t.ok(await ping(n3.ns, p1.ip), 'and back');
    t.ok(await until('p2 → wireguard-go', async () => ping(p2.ns, peer.devAddress), 15_000), 'node2 moved to the new key too');

    // The old key is refused.
    const refusedBefore = await unknownPeer(n1);
    const ghost = await ghostTries('k', oldKey, l1, 4000);
    t.equal(ghost, 0, 'a wireguard-go with the old key gets no handshake with node1');
    const refused = (await unknownPeer(n1)) - refusedBefore;
    t.ok(refused >= 1, `node1 counted ${refused} initiations from the old key as unknown_peer`);
    t.ok(await ping(p1.ns, peer.devAddress), 'the new key still works afterwards');
    for (const n of [n1, n2]) t.equal(cluster.daemons.get(n.name)!.proc.child.exitCode, null, `flanneld on ${n.name} still running`);
  });
}
