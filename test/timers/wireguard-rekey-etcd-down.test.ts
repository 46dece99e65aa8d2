// Reliability of the wireguard backend, WR2 of test/RELIABILITY.md (C3 on wireguard, and a rekey while
// etcd is down): etcd down, longer than the 6 s lease TTL, under pod ping streams both ways, timed so that
// the session's keypair reaches REKEY_AFTER_TIME (120 s, the real timer) while etcd is down: the
// established session forwards (0 lost), the rekey completes without etcd (the handshake does not need
// it), and the daemons recover when etcd returns, as C3 asks.
// In test/timers/ (see .taprc): it spends two minutes waiting for the real timer with two ping streams of
// 10/s, so it runs beside the other timer test rather than alone like the CPU-bound tests of test/netns/.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { readEnvFile } from '../../deploy/local/local-cluster.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import { dumpLogsIfFailed, keyValue, leaseKeyOf, liveLeaseOf, running, sample, scrape, startPingStream, watchDeletions } from '../helpers/probes.js';
import { METRICS_PORT, daemonOf, errorLines, networkOf, startEnv, until } from '../netns/fixtures/datapath-harness.js';

const TTL = 6;
/** REKEY_AFTER_TIME, not shortened. */
const REKEY_AFTER_S = 120;
/** etcd goes down this long before the oldest keypair reaches REKEY_AFTER_TIME… */
const OUTAGE_LEAD_S = 12;
/** …and stays down at least this long (C3: 20 s, longer than the TTL), and until both nodes completed the rekey. */
const MIN_OUTAGE_MS = 20_000;
/** The rekey must come within this much of etcd going down (lead + retries on a loaded host). */
const MAX_OUTAGE_MS = 60_000;

t.setTimeout(10 * 60_000);

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces and TUN');
} else {
  t.test(`wireguard: etcd down > ${TTL} s TTL across the ${REKEY_AFTER_S} s rekey, under pod ping streams`, async (t) => {
    const env = await startEnv(t, { dp: 'wireguard', nodes: 2, tag: 'rwe', flags: () => [`--subnet-lease-ttl=${TTL}`] });
    const c = env.cluster;
    const [n1, n2] = env.nodes as [NodeHost, NodeHost];
    const pods = [env.pods.get(n1.name), env.pods.get(n2.name)] as [PodHost, PodHost];
    const subnets = [env.subnets.get(n1.name), env.subnets.get(n2.name)] as [string, string];
    const peers = [networkOf(subnets[1]), networkOf(subnets[0])];
    try {
      const keys = subnets.map(leaseKeyOf);
      const values = await Promise.all(keys.map((k) => keyValue(c, k)));
      const text = (): Promise<string[]> => Promise.all([scrape(n1, METRICS_PORT), scrape(n2, METRICS_PORT)]);
      // Counters still at 0 are not exported: absent means 0.
      const completed = (s: string): number => sample(s, 'flanneld_wireguard_handshakes_total{result="completed"}') ?? 0;
      const lastHs = (s: string, i: number): number => sample(s, `flanneld_wireguard_peer_last_handshake_seconds{peer="${peers[i]}"}`) ?? Number.NaN;
      const age = (s: string, i: number): number | undefined => sample(s, `flanneld_wireguard_peer_keypair_age_seconds{peer="${peers[i]}"}`);
      const noSession = (s: string): number => sample(s, 'flanneld_datapath_dropped_packets_total{reason="no_session"}') ?? 0;

      // Streams first, so the sessions carry traffic the whole time; then wait until the oldest keypair
      // is OUTAGE_LEAD_S short of REKEY_AFTER_TIME.
      const monitors = env.nodes.map((n) => watchDeletions(n.ns));
      const streams = [startPingStream(pods[0], pods[1].ip), startPingStream(pods[1], pods[0].ip)];
      const initial = await until('a keypair on both nodes', async () => {
        const s = await text();
        return s.every((x, i) => age(x, i) !== undefined) ? s : undefined;
      }, 20_000);
      const oldest = Math.max(...initial.map((s, i) => age(s, i) as number));
      t.comment(`keypair ages ${initial.map((s, i) => age(s, i)?.toFixed(1)).join(' / ')} s; etcd goes down in ${(REKEY_AFTER_S - OUTAGE_LEAD_S - oldest).toFixed(0)} s`);
      await sleep(Math.max(0, (REKEY_AFTER_S - OUTAGE_LEAD_S - oldest) * 1000));

      const before = await text();
      const t0 = Date.now();
      await c.etcd.stop(false);
      // The rekey, while etcd is down: both nodes' handshake counts move.
      const rekeyedAt = await until('both nodes to complete a handshake while etcd is down', async () => {
        const s = await text();
        return s.every((x, i) => completed(x) > completed(before[i] as string)) ? Date.now() - t0 : undefined;
      }, MAX_OUTAGE_MS, 500).catch((err: Error) => { t.fail(err.message); return -1; });
      await sleep(Math.max(0, MIN_OUTAGE_MS - (Date.now() - t0)));
      const during = await text();
      t.comment(`rekey completed on both nodes ${rekeyedAt} ms after etcd went down; keypair ages now ${during.map((s, i) => age(s, i)?.toFixed(1)).join(' / ')} s`);
      during.forEach((s, i) => t.equal(sample(s, 'flanneld_etcd_up'), 0, `${env.nodes[i]?.name}: flanneld_etcd_up is 0 while etcd is down`));
      await c.etcd.start();
      const outageMs = Date.now() - t0;
      t.comment(`etcd was down ${(outageMs / 1000).toFixed(1)} s (lease TTL ${TTL} s)`);

      const back = Date.now();
      const renewedAfter = await until('a renewal after etcd came back', async () => {
        const s = sample(await scrape(n1, METRICS_PORT), 'flanneld_lease_renewals_total{result="success"}') ?? 0;
        return s > (sample(during[0] as string, 'flanneld_lease_renewals_total{result="success"}') ?? 0) ? Date.now() - back : undefined;
      }, 20_000, 250).catch((err: Error) => { t.fail(err.message); return -1; });
      t.comment(`node1 renewed its lease ${renewedAfter} ms after etcd came back`);
      await sleep(5000); // traffic after the recovery too

      // Both nodes may initiate the rekey (crossed sessions): a rotated-out keypair keeps decrypting for 10 s, so
      // nothing in flight on it is lost either way (wireguard-rekey.test.ts, RELIABILITY.md "WireGuard reliability findings").
      const initiations = (x: string): number => sample(x, 'flanneld_wireguard_handshake_messages_total{direction="sent",type="initiation"}') ?? 0;
      const crossed = during.every((x, i) => initiations(x) > initiations(before[i] as string));
      t.comment(`initiations sent while etcd was down: ${during.map((x, i) => initiations(x) - initiations(before[i] as string)).join(' / ')}${crossed ? ' (crossed sessions)' : ''}`);
      const results = await Promise.all(streams.map((s) => s.stop()));
      for (const [i, r] of results.entries()) {
        t.comment(`ping ${pods[i]?.ip} -> ${pods[1 - i]?.ip}: ${r.summary}`);
        t.ok(r.sent >= 10 * (outageMs / 1000 + OUTAGE_LEAD_S), `the stream ran through the outage (${r.sent} sent)`);
        t.equal(r.lost, 0, `0 lost packets ${pods[i]?.ip} -> ${pods[1 - i]?.ip} (${r.received}/${r.sent})`);
      }
      const deleted = (await Promise.all(monitors.map((m) => m.stop()))).flat();
      t.same(deleted, [], 'no route or neighbour was deleted on either node');

      // The wireguard side: the rekey happened without etcd, nothing dropped for want of a session.
      for (const [i, n] of env.nodes.entries()) {
        const [b, d] = [before[i] as string, during[i] as string];
        t.ok(completed(d) - completed(b) >= 1, `${n.name}: handshakes completed while etcd was down: +${completed(d) - completed(b)}`);
        t.ok(lastHs(d, i) > lastHs(b, i) && lastHs(d, i) * 1000 >= t0 - 1000, `${n.name}: last handshake ${lastHs(b, i)} → ${lastHs(d, i)}, during the outage`);
        t.ok((age(d, i) ?? Infinity) < MAX_OUTAGE_MS / 1000 + 5, `${n.name}: a fresh keypair (${age(d, i)?.toFixed(1)} s old, the previous one would be ${((age(b, i) ?? 0) + (Date.now() - t0) / 1000).toFixed(0)} s)`);
        t.equal(sample(d, 'flanneld_wireguard_handshakes_total{result="given_up"}') ?? 0, 0, `${n.name}: no handshake given up`);
      }

      // C3's control-plane checks: same keys for 2 × TTL after the recovery, live leases, metrics.
      const missing: string[] = [];
      const end = Date.now() + 2 * TTL * 1000;
      while (Date.now() < end) {
        for (const k of keys) if ((await keyValue(c, k)) === undefined) missing.push(`${k} at +${Date.now() - back} ms`);
        await sleep(500);
      }
      t.same(missing, [], 'both keys present for 2 × TTL after the recovery');
      t.same(await Promise.all(keys.map((k) => keyValue(c, k))), values, 'same keys with the same values (PublicKey included)');
      t.same(env.nodes.map((n) => readEnvFile(c.subnetFileOf(n)).FLANNEL_SUBNET), subnets, 'subnet.env unchanged on both nodes');
      for (const k of keys) {
        const ttl = await liveLeaseOf(c, k);
        t.ok(ttl && ttl.granted === TTL && ttl.remaining > 0, `${k} held by a live etcd lease (TTL ${ttl?.granted} s, ${ttl?.remaining} s left)`);
      }
      const after = await text();
      for (const [i, n] of env.nodes.entries()) {
        t.ok(running(daemonOf(env, n)), `${n.name}: flanneld still runs`);
        const s = after[i] as string;
        const dm = (name: string): number => (sample(s, name) ?? 0) - (sample(before[i] as string, name) ?? 0);
        t.ok(dm('flanneld_lease_renewals_total{result="failure"}') >= 3, `${n.name}: renewal failures counted (${dm('flanneld_lease_renewals_total{result="failure"}')})`);
        t.ok(dm('flanneld_lease_renewals_total{result="success"}') >= 2, `${n.name}: renewals succeed again (${dm('flanneld_lease_renewals_total{result="success"}')})`);
        t.equal(dm('flanneld_etcd_unavailable_total'), 1, `${n.name}: one transition to unavailable`);
        t.ok(dm('flanneld_etcd_watch_resyncs_total{reason="error"}') >= 1, `${n.name}: the watch resynced after the outage`);
        t.equal(sample(s, 'flanneld_etcd_up'), 1, `${n.name}: flanneld_etcd_up is 1 again`);
        t.equal(dm('flanneld_etcd_data_loss_total'), 0, `${n.name}: no data loss detected`);
        t.equal(sample(s, 'flanneld_lease_acquisitions_total{source="new"}'), 1, `${n.name}: the lease was acquired once`);
        t.equal(sample(s, 'flanneld_lease_acquisitions_total{source="recreated"}'), 0, `${n.name}: and never re-created`);
        const drops = (x: string): Map<string, number> => new Map(x.split('\n').flatMap((l) => {
          const m = /^flanneld_datapath_dropped_packets_total\{reason="([^"]+)"\} (\S+)$/.exec(l);
          return m ? [[m[1] as string, Number(m[2])] as const] : [];
        }));
        const [db, da] = [drops(before[i] as string), drops(s)];
        const moved = [...da].filter(([r, v]) => v !== (db.get(r) ?? 0)).map(([r, v]) => `${r} +${v - (db.get(r) ?? 0)}`);
        t.comment(`${n.name}: data-path drops from before the outage to the end: ${moved.join(', ') || 'none'}`);
        t.same(moved.filter((m) => !m.startsWith('unknown_index ')), [], `${n.name}: no packet dropped for any reason but unknown_index`);
        t.equal((da.get('unknown_index') ?? 0) - (db.get('unknown_index') ?? 0), 0, `${n.name}: none as unknown_index either`);
        t.equal(noSession(s) - noSession(before[i] as string), 0, `${n.name}: no packet dropped for want of a session from before the outage to the end (no_session ${noSession(before[i] as string)} → ${noSession(s)})`);
        t.same(errorLines(daemonOf(env, n)).map((l) => l.msg), [], `${n.name}: no error logged`);
      }
    } finally {
      dumpLogsIfFailed(t, c);
    }
  });
}
