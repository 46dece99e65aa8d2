// etcd loses its data under a running cluster (reliability.md §2.1 #4, flannel #610/#752): stopped, its
// data directory deleted, started again and the config re-put. Every running daemon must see the
// revision go back, re-register its own subnet (same subnet) and keep the data path untouched; a
// daemon whose subnet went to another node meanwhile must still exit, never overwrite.
import t, { type Test } from 'tap';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalCluster, readEnvFile } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, runTag } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import {
  daemon, dumpLogsIfFailed, hostGwValue, keyValue, leaseKeyOf, liveLeaseOf, logLines, networkOf, ownRoutes, pingAllPairs, pingStream,
  running, sample, scrape, until, watchDeletions,
} from '../helpers/probes.js';

const TTL = 6;
const PORT = 10262;
const CONFIG = { Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } };
const ETCD_RULE = ['OUTPUT', '-d', '192.0.2.254', '-p', 'tcp', '--dport', '2379', '-j', 'DROP'];

t.setTimeout(10 * 60_000);

async function newCluster(tt: Test, nodes: number): Promise<LocalCluster> {
  const c = await LocalCluster.create({ tag: runTag('rw'), nodes });
  tt.teardown(() => c.destroy());
  await c.putConfig(CONFIG);
  return c;
}

/** Stops etcd, deletes its data directory, starts it empty and puts the config back, as an operator would. */
async function wipeEtcd(c: LocalCluster, listenIps?: string[]): Promise<void> {
  await c.etcd.stop(false);
  rmSync(c.etcd.dataDir, { recursive: true, force: true });
  await c.etcd.start(listenIps);
  await c.etcd.ctlChecked(['put', `${c.prefix}/config`, JSON.stringify(CONFIG)], listenIps?.[0]);
}

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces');
} else {
  t.test('etcd data wiped under 3 running nodes: each re-registers its own subnet, traffic keeps flowing', async (tt) => {
    const c = await newCluster(tt, 3);
    try {
      for (const n of c.nodes) c.startDaemon(n, [`--subnet-lease-ttl=${TTL}`, `--healthz-port=${PORT}`]);
      const subnets: string[] = [];
      for (const n of c.nodes) subnets.push(await c.waitForSubnet(n));
      const pods: PodHost[] = [];
      for (const [i, n] of c.nodes.entries()) pods.push(await c.addPod(n, subnets[i] as string));
      tt.same(await pingAllPairs(c, pods, 20_000), [], 'all pairs ping before the wipe');
      await sleep(8000); // renewals move the revision well past what the empty etcd will reach
      const keys = subnets.map(leaseKeyOf);
      const monitors = c.nodes.map((n) => watchDeletions(n.ns));
      // A ring of streams, 45 s at 10/s each: the wipe, the re-registration and the 30 s grace period.
      const streams = pods.map((p, i) => pingStream(p, (pods[(i + 1) % pods.length] as PodHost).ip, 450));
      await sleep(2000);

      const t0 = Date.now();
      await wipeEtcd(c);
      const wipedMs = Date.now() - t0;
      tt.comment(`etcd stopped, wiped and started again in ${wipedMs} ms; config re-put`);
      const recreated = await Promise.all(c.nodes.map((n, i) => until(`${n.name} to re-register ${networkOf(subnets[i] as string)}`, async () => {
        return (await keyValue(c, keys[i] as string)) === hostGwValue(n.underlayIp) ? Date.now() - t0 : undefined;
      }, 25_000, 200).catch((err: Error) => { tt.fail(err.message); return -1; })));
      tt.comment(`keys back after ${recreated.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(', ')} (from the wipe)`);
      for (const [i, n] of c.nodes.entries()) {
        tt.ok((recreated[i] as number) >= 0 && (recreated[i] as number) <= 20_000, `${n.name} re-registered ${networkOf(subnets[i] as string)} within 20 s`);
      }
      const results = await Promise.all(streams);
      for (const [i, r] of results.entries()) {
        tt.comment(`ping ${pods[i]?.ip} -> ${pods[(i + 1) % 3]?.ip}: ${r.summary}`);
        tt.equal(r.lost, 0, `0 lost packets ${pods[i]?.ip} -> ${pods[(i + 1) % 3]?.ip} (${r.received}/${r.sent})`);
      }
      // The grace period ends with a planned re-list; nothing may be removed by it either.
      for (const n of c.nodes) {
        await until(`${n.name} to re-list at the end of the grace period`, async () => ((sample(await scrape(n, PORT), 'flanneld_etcd_watch_resyncs_total{reason="recovery"}') ?? 0) >= 1 ? true : undefined), 40_000, 500)
          .then(() => tt.pass(`${n.name} re-listed at the end of the grace period`), (err: Error) => tt.fail(err.message));
      }
      const deleted = (await Promise.all(monitors.map((m) => m.stop()))).flat();
      tt.same(deleted, [], 'no route was deleted on any node, the grace period and its end included');

      const listing = (await c.etcd.ctlChecked(['get', '--prefix', '/coreos.com/network/subnets', '--keys-only'])).split('\n').filter(Boolean).sort();
      tt.same(listing, [...keys].sort(), 'exactly the three old keys, nothing else');
      for (const [i, n] of c.nodes.entries()) {
        const ttl = await liveLeaseOf(c, keys[i] as string);
        tt.ok(ttl && ttl.granted === TTL && ttl.remaining > 0, `${n.name}: key held by a live ${ttl?.granted} s etcd lease`);
        tt.equal(readEnvFile(c.subnetFileOf(n)).FLANNEL_SUBNET, subnets[i], `${n.name}: subnet.env unchanged`);
        tt.ok(running(daemon(c, n)), `${n.name}: flanneld still runs`);
        const lines = logLines(daemon(c, n).proc.output());
        tt.ok(lines.some((l) => /etcd lost its data/.test(l.msg ?? '')), `${n.name} logged that etcd lost its data`);
        tt.notOk(lines.some((l) => /Lease has been revoked/.test(l.msg ?? '')), `${n.name} did not give its lease up`);
        const m = await scrape(n, PORT);
        tt.equal(sample(m, 'flanneld_etcd_data_loss_total'), 1, `${n.name}: flanneld_etcd_data_loss_total 1`);
        tt.equal(sample(m, 'flanneld_lease_acquisitions_total{source="recreated"}'), 1, `${n.name}: one lease re-created`);
        tt.equal(sample(m, 'flanneld_peers'), 2, `${n.name}: 2 peers`);
        const routes = await ownRoutes(n);
        tt.equal(routes.length, 2, `${n.name}: one route per peer: ${JSON.stringify(routes)}`);
      }
      // The watch is live in the new etcd: a new node is seen by all.
      await c.etcd.put('/coreos.com/network/subnets/10.244.222.0-24', hostGwValue('192.0.2.222'));
      await until('every node to route a lease made after the wipe', async () => {
        for (const n of c.nodes) if (!(await ownRoutes(n)).some((l) => l.startsWith('10.244.222.0/24 via 192.0.2.222 '))) return undefined;
        return true;
      }, 10_000).then(() => tt.pass('a lease made after the wipe is routed everywhere'), (err: Error) => tt.fail(err.message));
    } finally {
      dumpLogsIfFailed(tt, c);
    }
  });

  t.test('etcd data wiped and our subnet taken before we re-register: exit, never overwrite', async (tt) => {
    const c = await newCluster(tt, 2);
    const [n1, n2] = c.nodes as [NodeHost, NodeHost];
    try {
      for (const n of c.nodes) c.startDaemon(n, [`--subnet-lease-ttl=${TTL}`]);
      const s1 = await c.waitForSubnet(n1);
      const s2 = await c.waitForSubnet(n2);
      await sleep(6000);
      await execCheckedIn(n1.ns, 'iptables', ['-A', ...ETCD_RULE]); // node1 will only look after the theft
      await wipeEtcd(c);
      const thief = hostGwValue('192.0.2.77');
      await c.etcd.put(leaseKeyOf(s1), thief);
      await until('node2 to re-register', async () => ((await keyValue(c, leaseKeyOf(s2))) === hostGwValue(n2.underlayIp) ? true : undefined), 20_000);
      await execCheckedIn(n1.ns, 'iptables', ['-D', ...ETCD_RULE]);
      const healed = Date.now();
      const d1 = daemon(c, n1);
      const code = await Promise.race([d1.proc.exited, sleep(30_000).then(() => 'still running' as const)]);
      tt.comment(`node1 exited ${((Date.now() - healed) / 1000).toFixed(1)} s after reaching etcd again, code ${code}`);
      tt.equal(code, 1, 'node1 exits 1');
      const revoked = logLines(d1.proc.output()).find((l) => (l.msg ?? '').includes('Lease has been revoked'));
      tt.match(revoked?.msg ?? '', /192\.0\.2\.77/, `logs "Lease has been revoked" naming the holder: ${revoked?.msg}`);
      tt.equal(await keyValue(c, leaseKeyOf(s1)), thief, 'the other node\'s key was not overwritten');
      tt.ok(running(daemon(c, n2)), 'node2 keeps running');
      tt.equal(await keyValue(c, leaseKeyOf(s2)), hostGwValue(n2.underlayIp), 'node2 holds its own subnet again');
    } finally {
      await execCheckedIn(n1.ns, 'iptables', ['-D', ...ETCD_RULE]).catch(() => {});
      dumpLogsIfFailed(tt, c);
    }
  });
}
