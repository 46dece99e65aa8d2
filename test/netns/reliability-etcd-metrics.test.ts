// The control-plane metrics scraped from /metrics of real daemons in a namespace cluster: lease
// acquisition by source (new, reused after a crash, previous from subnet.env), renewals and the expiry
// timestamp, peers and lease events, routes programmed, and reconcile corrections after a route is
// deleted by hand or a stale one is planted. The etcd fault metrics are checked by the fault tests
// (reliability-etcd*.test.ts) under the faults themselves.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalCluster } from '../../deploy/local/local-cluster.js';
import { ipIn, runTag } from '../../deploy/local/netns.js';
import type { NodeHost } from '../../deploy/local/topology.js';
import { dumpLogsIfFailed, leaseKeyOf, networkOf, ownRoutes, sample, scrape, until } from '../helpers/probes.js';

const TTL = 6;
const PORT = 10264;

t.setTimeout(5 * 60_000);

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces');
} else {
  t.test('control-plane metrics of a running host-gw cluster', async (tt) => {
    const c = await LocalCluster.create({ tag: runTag('rm'), nodes: 3 });
    tt.teardown(() => c.destroy());
    const [n1, n2, n3] = c.nodes as [NodeHost, NodeHost, NodeHost];
    const args = [`--subnet-lease-ttl=${TTL}`, `--healthz-port=${PORT}`];
    try {
      await c.putConfig({ Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } });
      for (const n of c.nodes) c.startDaemon(n, args);
      const [s1, s2, s3] = [await c.waitForSubnet(n1), await c.waitForSubnet(n2), await c.waitForSubnet(n3)] as [string, string, string];
      await until('node1 to route both peers', async () => ((await ownRoutes(n1)).length === 2 ? true : undefined), 15_000);
      const m = (text: string, name: string): number | undefined => sample(text, name);

      await tt.test('after start: one new lease, its expiry, 2 peers, 2 routes programmed, renewals', async (t) => {
        await sleep(TTL * 1000); // two renewals
        const text = await scrape(n1, PORT);
        t.equal(m(text, 'flanneld_lease_acquisitions_total{source="new"}'), 1, 'acquisitions{source="new"} 1');
        for (const source of ['reused', 'previous', 'recreated', 'reservation']) t.equal(m(text, `flanneld_lease_acquisitions_total{source="${source}"}`), 0, `acquisitions{source="${source}"} 0`);
        const renewals = m(text, 'flanneld_lease_renewals_total{result="success"}') ?? 0;
        t.ok(renewals >= 1, `renewals{result="success"} ${renewals} (every ${TTL / 2} s)`);
        t.equal(m(text, 'flanneld_lease_renewals_total{result="failure"}'), 0, 'no renewal failure');
        const expiry = (m(text, 'flanneld_lease_expiry_timestamp_seconds') ?? 0) * 1000;
        t.ok(expiry > Date.now() && expiry <= Date.now() + TTL * 1000 + 1000, `expiry ${new Date(expiry).toISOString()} within the next ${TTL} s`);
        t.equal(m(text, 'flanneld_peers'), 2, 'peers 2');
        t.equal(m(text, 'flanneld_lease_events_total{kind="added"}'), 2, 'lease_events{kind="added"} 2');
        t.equal(m(text, 'flanneld_routes_programmed_total'), 2, 'routes_programmed 2');
        t.equal(m(text, 'flanneld_etcd_up'), 1, 'etcd_up 1');
        t.equal(m(text, 'flanneld_etcd_unavailable_total'), 0, 'etcd never unavailable');
        t.ok((m(text, 'flanneld_reconcile_runs_total{result="ok"}') ?? 0) >= 1, 'reconcile ran');
        t.equal(m(text, 'flanneld_reconcile_corrections_total{kind="fixed"}'), 0, 'nothing to fix yet');
        const later = await scrape(n1, PORT);
        t.ok((m(later, 'flanneld_lease_renewals_total{result="success"}') ?? 0) >= renewals, 'renewals only grow');
      });

      await tt.test('a route deleted by hand and a stale route planted: reconcile corrections fixed and removed', async (t) => {
        const before = await scrape(n1, PORT);
        await ipIn(n1.ns, ['route', 'del', networkOf(s2)]);
        await ipIn(n1.ns, ['route', 'add', '10.244.250.0/24', 'via', n2.underlayIp, 'dev', 'eth0', 'proto', '241']);
        const t0 = Date.now();
        await until('reconcile to count both corrections', async () => {
          const text = await scrape(n1, PORT);
          const fixed = (m(text, 'flanneld_reconcile_corrections_total{kind="fixed"}') ?? 0) - (m(before, 'flanneld_reconcile_corrections_total{kind="fixed"}') ?? 0);
          const removed = (m(text, 'flanneld_reconcile_corrections_total{kind="removed"}') ?? 0) - (m(before, 'flanneld_reconcile_corrections_total{kind="removed"}') ?? 0);
          return fixed >= 1 && removed >= 1 ? true : undefined;
        }, 25_000, 500).then(() => t.pass(`fixed +1 and removed +1 after ${((Date.now() - t0) / 1000).toFixed(1)} s (reconcile every 10 s)`), (err: Error) => t.fail(err.message));
        const routes = await ownRoutes(n1);
        t.ok(routes.some((l) => l.startsWith(`${networkOf(s2)} via ${n2.underlayIp} `)), 'the deleted route is back');
        t.notOk(routes.some((l) => l.startsWith('10.244.250.0/24 ')), 'the stale route is gone');
        t.equal(m(await scrape(n1, PORT), 'flanneld_reconcile_corrections_total{kind="failed"}'), 0, 'no failed correction');
      });

      await tt.test('a peer leaves: lease_events removed, peers 1', async (t) => {
        await c.stopDaemon(n3, 'SIGKILL');
        await c.etcd.ctlChecked(['del', leaseKeyOf(s3)]);
        await until('node1 to count the removal', async () => {
          const text = await scrape(n1, PORT);
          return m(text, 'flanneld_lease_events_total{kind="removed"}') === 1 && m(text, 'flanneld_peers') === 1 ? true : undefined;
        }, 10_000).then(() => t.pass('lease_events{kind="removed"} 1 and peers 1'), (err: Error) => t.fail(err.message));
      });

      await tt.test('restarts: the lease reused after SIGKILL, the previous subnet from subnet.env after the key was deleted', async (t) => {
        await c.stopDaemon(n1, 'SIGKILL');
        c.startDaemon(n1, args);
        const reused = await until('node1 to reuse its lease', async () => {
          const text = await scrape(n1, PORT).catch(() => '');
          return m(text, 'flanneld_lease_acquisitions_total{source="reused"}') === 1 ? text : undefined;
        }, 20_000).catch((err: Error) => { t.fail(err.message); return ''; });
        t.equal(m(reused, 'flanneld_lease_acquisitions_total{source="reused"}'), 1, 'after SIGKILL: acquisitions{source="reused"} 1');
        t.equal(m(reused, 'flanneld_lease_acquisitions_total{source="new"}'), 0, 'not a new one');
        await c.stopDaemon(n1, 'SIGTERM');
        await c.etcd.ctlChecked(['del', leaseKeyOf(s1)]);
        c.startDaemon(n1, args);
        const previous = await until('node1 to take its previous subnet', async () => {
          const text = await scrape(n1, PORT).catch(() => '');
          return m(text, 'flanneld_lease_acquisitions_total{source="previous"}') === 1 ? text : undefined;
        }, 20_000).catch((err: Error) => { t.fail(err.message); return ''; });
        t.equal(m(previous, 'flanneld_lease_acquisitions_total{source="previous"}'), 1, 'key deleted: acquisitions{source="previous"} 1');
        t.equal(m(previous, 'flanneld_lease_acquisitions_total{source="new"}'), 0, 'not a new one');
        t.equal(await c.waitForSubnet(n1), s1, 'the same subnet');
      });
    } finally {
      dumpLogsIfFailed(tt, c);
    }
  });
}
