// Reliability against etcd faults (reliability.md §2.1 #2 and #3), with real etcd, real daemons and
// short lease TTLs: etcd down longer than the TTL under a pod ping stream (host-gw and vxlan); a node
// cut off from etcd past its TTL while another node takes its subnet; a subnet taken while a daemon's
// watch was down (the daemon must exit, it used to hang).
import t, { type Test } from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalCluster, readEnvFile } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, runTag } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import {
  daemon, dumpLogsIfFailed, hostGwValue, keyHistory, keyValue, leaseKeyOf, liveLeaseOf, logLines, networkOf, ownRoutes,
  pingAllPairs, pingStream, running, sample, scrape, until, watchDeletions,
} from '../helpers/probes.js';

const TTL = 6;
const PORT = 10261;
const ETCD_RULE = ['OUTPUT', '-d', '192.0.2.254', '-p', 'tcp', '--dport', '2379', '-j', 'DROP'];

t.setTimeout(15 * 60_000);

async function newCluster(tt: Test, nodes: number, backend: string): Promise<LocalCluster> {
  const c = await LocalCluster.create({ tag: runTag('re'), nodes });
  tt.teardown(() => c.destroy());
  await c.putConfig({ Network: '10.244.0.0/16', Backend: { Type: backend } });
  return c;
}

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces');
} else {
  for (const backend of ['host-gw', 'vxlan']) {
    t.test(`etcd down 20 s, longer than the ${TTL} s lease TTL, under a pod ping stream (${backend})`, async (tt) => {
      const c = await newCluster(tt, 2, backend);
      const [n1, n2] = c.nodes as [NodeHost, NodeHost];
      try {
        for (const n of c.nodes) c.startDaemon(n, [`--subnet-lease-ttl=${TTL}`, `--healthz-port=${PORT}`]);
        const subnets = [await c.waitForSubnet(n1), await c.waitForSubnet(n2)];
        const pods: PodHost[] = [await c.addPod(n1, subnets[0] as string), await c.addPod(n2, subnets[1] as string)];
        tt.same(await pingAllPairs(c, pods, 20_000), [], 'pods ping each other before the outage');
        const keys = subnets.map(leaseKeyOf);
        const values = await Promise.all(keys.map((k) => keyValue(c, k)));
        await sleep(2 * TTL * 1000 / 2); // a few renewals first

        const monitors = c.nodes.map((n) => watchDeletions(n.ns));
        // 35 s of pings each way at 10/s, covering the 20 s outage and its recovery.
        const streams = [pingStream(pods[0] as PodHost, (pods[1] as PodHost).ip, 350), pingStream(pods[1] as PodHost, (pods[0] as PodHost).ip, 350)];
        await sleep(3000);
        const before = await scrape(n1, PORT);
        const t0 = Date.now();
        await c.etcd.stop(false);
        await sleep(10_000);
        const during = await scrape(n1, PORT);
        tt.equal(sample(during, 'flanneld_etcd_up'), 0, 'flanneld_etcd_up is 0 while etcd is down');
        await sleep(Math.max(0, 20_000 - (Date.now() - t0)));
        await c.etcd.start();
        const outageMs = Date.now() - t0;
        tt.comment(`etcd was down ${(outageMs / 1000).toFixed(1)} s (lease TTL ${TTL} s)`);

        const back = Date.now();
        const renewedAfter = await until('a renewal after etcd came back', async () => {
          const s = sample(await scrape(n1, PORT), 'flanneld_lease_renewals_total{result="success"}') ?? 0;
          return s > (sample(during, 'flanneld_lease_renewals_total{result="success"}') ?? 0) ? Date.now() - back : undefined;
        }, 20_000, 250).catch((err: Error) => { tt.fail(err.message); return -1; });
        tt.comment(`node1 renewed its lease ${renewedAfter} ms after etcd came back`);

        const results = await Promise.all(streams);
        for (const [i, r] of results.entries()) {
          tt.comment(`ping ${pods[i]?.ip} -> ${pods[1 - i]?.ip}: ${r.summary}`);
          tt.ok(r.sent >= 300, `the stream ran (${r.sent} sent)`);
          tt.equal(r.lost, 0, `0 lost packets ${pods[i]?.ip} -> ${pods[1 - i]?.ip} (${r.received}/${r.sent})`);
        }
        const deleted = (await Promise.all(monitors.map((m) => m.stop()))).flat();
        tt.same(deleted, [], 'no route or neighbour was deleted on either node');

        // Same subnet and key, and the key stays for 2 × TTL after the recovery.
        const missing: string[] = [];
        const end = Date.now() + 2 * TTL * 1000;
        while (Date.now() < end) {
          for (const k of keys) if ((await keyValue(c, k)) === undefined) missing.push(`${k} at +${Date.now() - back} ms`);
          await sleep(500);
        }
        tt.same(missing, [], `both keys present for 2 × TTL after the recovery`);
        tt.same(await Promise.all(keys.map((k) => keyValue(c, k))), values, 'same keys with the same values');
        tt.same(c.nodes.map((n) => readEnvFile(c.subnetFileOf(n)).FLANNEL_SUBNET), subnets, 'subnet.env unchanged on both nodes');
        for (const k of keys) {
          const ttl = await liveLeaseOf(c, k);
          tt.ok(ttl && ttl.granted === TTL && ttl.remaining > 0, `${k} held by a live etcd lease (TTL ${ttl?.granted} s, ${ttl?.remaining} s left)`);
        }
        for (const n of c.nodes) tt.ok(running(daemon(c, n)), `${n.name}: flanneld still runs`);

        const after = await scrape(n1, PORT);
        const d = (name: string): number => (sample(after, name) ?? 0) - (sample(before, name) ?? 0);
        tt.ok(d('flanneld_lease_renewals_total{result="failure"}') >= 3, `renewal failures counted (${d('flanneld_lease_renewals_total{result="failure"}')})`);
        tt.ok(d('flanneld_lease_renewals_total{result="success"}') >= 2, `renewals succeed again (${d('flanneld_lease_renewals_total{result="success"}')})`);
        tt.equal(d('flanneld_etcd_unavailable_total'), 1, 'one transition to unavailable');
        tt.ok(d('flanneld_etcd_watch_resyncs_total{reason="error"}') >= 1, 'the watch resynced after the outage');
        tt.ok(d('flanneld_etcd_request_errors_total{op="grant"}') + d('flanneld_etcd_request_errors_total{op="update"}') >= 1, 'failed renewal requests counted by op');
        tt.equal(sample(after, 'flanneld_etcd_up'), 1, 'flanneld_etcd_up is 1 again');
        tt.equal(d('flanneld_etcd_data_loss_total'), 0, 'no data loss detected (etcd kept its data)');
        tt.equal(sample(after, 'flanneld_lease_acquisitions_total{source="new"}'), 1, 'the lease was acquired once');
        tt.equal(sample(after, 'flanneld_lease_acquisitions_total{source="recreated"}'), 0, 'and never re-created');
        const expiry = sample(after, 'flanneld_lease_expiry_timestamp_seconds') ?? 0;
        tt.ok(expiry * 1000 > Date.now() - 1000 && expiry * 1000 <= Date.now() + TTL * 1000 + 1000, `lease expiry ${new Date(expiry * 1000).toISOString()} is within the next TTL`);
      } finally {
        dumpLogsIfFailed(tt, c);
      }
    });
  }

  t.test(`a node cut off from etcd past its ${TTL} s TTL while another node takes its subnet`, async (tt) => {
    const c = await newCluster(tt, 3, 'host-gw');
    const [n1, n2, n3] = c.nodes as [NodeHost, NodeHost, NodeHost];
    try {
      for (const n of [n1, n2]) c.startDaemon(n, [`--subnet-lease-ttl=${TTL}`]);
      const s1 = await c.waitForSubnet(n1);
      const s2 = await c.waitForSubnet(n2);
      const key = leaseKeyOf(s1);
      tt.equal(await keyValue(c, key), hostGwValue(n1.underlayIp), `node1 holds ${networkOf(s1)}`);
      await until('node2 routes node1', async () => (await ownRoutes(n2)).some((l) => l.startsWith(`${networkOf(s1)} via ${n1.underlayIp} `)), 10_000);

      const history = keyHistory(c, key);
      const t0 = Date.now();
      await execCheckedIn(n1.ns, 'iptables', ['-A', ...ETCD_RULE]);
      const expiredAt = await until('node1\'s key to expire', async () => ((await keyValue(c, key)) === undefined ? Date.now() - t0 : undefined), 3 * TTL * 1000, 200);
      tt.comment(`node1's key expired ${expiredAt} ms into the cut (TTL ${TTL} s)`);
      tt.ok(expiredAt >= (TTL - 1) * 1000, 'not before the TTL');
      const gone = await until('node2 to drop its route to node1', async () => !(await ownRoutes(n2)).some((l) => l.startsWith(`${networkOf(s1)} `)), 10_000)
        .then(() => true, () => false);
      tt.ok(gone, 'node2 removed its route to the expired subnet');

      // node3 is new, with a stale subnet.env naming node1's subnet, which is free now.
      const f3 = c.subnetFileOf(n3);
      mkdirSync(dirname(f3), { recursive: true });
      writeFileSync(f3, `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=${s1}\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n`);
      c.startDaemon(n3, [`--subnet-lease-ttl=${TTL}`]);
      await until('node3 to take node1\'s subnet', async () => ((await keyValue(c, key)) === hostGwValue(n3.underlayIp) ? true : undefined), 20_000);
      tt.pass(`node3 took ${networkOf(s1)} from its stale subnet.env`);
      await until('node3 to write its subnet.env', () => running(daemon(c, n3)) && logLines(daemon(c, n3).proc.output()).some((l) => l.msg === 'wrote subnet file'), 10_000);
      tt.equal(readEnvFile(f3).FLANNEL_SUBNET, s1, `node3's subnet.env names ${s1}`);

      const d1 = daemon(c, n1);
      await sleep(Math.max(0, 3 * TTL * 1000 - (Date.now() - t0)));
      tt.ok(running(d1), `node1 still runs while cut off (${((Date.now() - t0) / 1000).toFixed(1)} s, 3 × TTL)`);
      await execCheckedIn(n1.ns, 'iptables', ['-D', ...ETCD_RULE]);
      const healed = Date.now();
      const code = await Promise.race([d1.proc.exited, sleep(30_000).then(() => 'still running' as const)]);
      tt.comment(`node1 exited ${((Date.now() - healed) / 1000).toFixed(1)} s after the cut was lifted, code ${code}`);
      tt.ok(typeof code === 'number' && code !== 0, `node1 exits non-zero once it can see its lease is gone (${code})`);
      const revoked = logLines(d1.proc.output()).find((l) => (l.msg ?? '').includes('Lease has been revoked'));
      tt.ok(revoked, `logs "Lease has been revoked": ${revoked?.msg}`);

      await sleep(1000);
      const seen = await history.stop();
      tt.comment(`${key} over time: ${seen.map((s) => `+${s.atMs} ms ${s.value}`).join('; ')}`);
      tt.same(seen.map((s) => s.value), [hostGwValue(n1.underlayIp), '<missing>', hostGwValue(n3.underlayIp)],
        'the key went node1 → missing → node3 and never back: the cut-off node never overwrote it');

      // The supervisor restarts node1: it must take another subnet.
      c.startDaemon(n1, [`--subnet-lease-ttl=${TTL}`]);
      const again = await until('node1\'s new subnet.env', () => {
        const s = readEnvFile(c.subnetFileOf(n1)).FLANNEL_SUBNET;
        return s && s !== s1 ? s : undefined;
      }, 20_000);
      tt.not(again, s1, `node1 restarted with another subnet: ${again}`);
      const s3 = readEnvFile(f3).FLANNEL_SUBNET;
      tt.equal(new Set([again, s2, s3]).size, 3, `three distinct subnets: ${again} ${s2} ${s3}`);
      for (const [n, s] of [[n1, again], [n2, s2], [n3, s3]] as const) {
        tt.equal(await keyValue(c, leaseKeyOf(s as string)), hostGwValue(n.underlayIp), `${n.name}'s key ${networkOf(s as string)} carries its PublicIP`);
      }
      tt.equal(await keyValue(c, key), hostGwValue(n3.underlayIp), `${networkOf(s1)} still belongs to node3`);
      await until('node2 routes the subnet to node3', async () => (await ownRoutes(n2)).some((l) => l.startsWith(`${networkOf(s1)} via ${n3.underlayIp} `)), 15_000)
        .then(() => tt.pass(`node2 routes ${networkOf(s1)} via node3`), (err: Error) => tt.fail(err.message));
    } finally {
      await execCheckedIn(n1.ns, 'iptables', ['-D', ...ETCD_RULE]).catch(() => {});
      dumpLogsIfFailed(tt, c);
    }
  });

  t.test('our subnet taken by another node while the watch was down: the daemon exits (regression: it hung)', async (tt) => {
    const c = await newCluster(tt, 1, 'host-gw');
    const n1 = c.nodes[0] as NodeHost;
    try {
      // A 24 h TTL: no renewal runs, so only the watch's re-list can find the loss.
      c.startDaemon(n1);
      const s1 = await c.waitForSubnet(n1);
      const d1 = daemon(c, n1);
      await sleep(1000);
      await c.etcd.stop(false);
      await c.etcd.start(['127.0.0.1']); // up, but unreachable from the node
      const other = hostGwValue('192.0.2.77');
      await c.etcd.ctlChecked(['put', leaseKeyOf(s1), other], '127.0.0.1');
      await c.etcd.stop(false);
      await c.etcd.start();
      const back = Date.now();
      const code = await Promise.race([d1.proc.exited, sleep(20_000).then(() => 'still running' as const)]);
      tt.comment(`exited ${((Date.now() - back) / 1000).toFixed(1)} s after etcd came back, code ${code}`);
      tt.equal(code, 1, 'exits with code 1 (a revoked lease)');
      const revoked = logLines(d1.proc.output()).find((l) => (l.msg ?? '').includes('Lease has been revoked'));
      tt.match(revoked?.msg ?? '', /192\.0\.2\.77/, `logs "Lease has been revoked" naming the new holder: ${revoked?.msg}`);
      tt.equal(await keyValue(c, leaseKeyOf(s1)), other, 'the other node\'s key is untouched');
    } finally {
      dumpLogsIfFailed(tt, c);
    }
  });
}
