// Reliability with several etcd members and with a dead connection (reliability.md §2.1 #16, Calico's
// black-holed datastore): a 3-member etcd cluster that loses one member at a time (the leader
// included) while daemons with all three endpoints keep working and new nodes still register; and a
// node whose etcd connection silently drops (iptables DROP both ways, no RST), which gRPC keepalive
// must detect, after which the watch reconnects and sees what changed meanwhile.
import t, { type Test } from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalCluster } from '../../deploy/local/local-cluster.js';
import { execCheckedIn, execIn, runTag } from '../../deploy/local/netns.js';
import type { NodeHost, PodHost } from '../../deploy/local/topology.js';
import { EtcdCluster } from '../helpers/etcd-cluster.js';
import {
  daemon, dumpLogsIfFailed, hostGwValue, leaseKeyOf, logLines, networkOf, ownRoutes, pingAllPairs, running, sample, scrape, startPingStream, until,
} from '../helpers/probes.js';

const TTL = 6;
const PORT = 10263;
const CONFIG = { Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } };

t.setTimeout(10 * 60_000);

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces');
} else {
  t.test('3-member etcd cluster loses one member at a time: no interruption, new nodes still register', async (tt) => {
    // Nodes 1 and 2 run throughout; nodes 3, 4 and 5 join while member 1, 2 and 3 is down.
    const c = await LocalCluster.create({ tag: runTag('rc'), nodes: 5 });
    const ec = new EtcdCluster(c.topo.underlayNs);
    tt.teardown(async () => { await c.destroy(); await ec.destroy(); });
    try {
      await c.etcd.stop(true); // the single-member etcd on 192.0.2.254 is not used here
      await ec.start();
      await ec.ctlChecked(['put', '/coreos.com/network/config', JSON.stringify(CONFIG)]);
      const endpoints = `--etcd-endpoints=${ec.endpoints.join(',')}`;
      const [n1, n2, ...joiners] = c.nodes as [NodeHost, NodeHost, NodeHost, NodeHost, NodeHost];
      for (const n of [n1, n2]) c.startDaemon(n, [endpoints, `--subnet-lease-ttl=${TTL}`, `--healthz-port=${PORT}`]);
      const s1 = await c.waitForSubnet(n1);
      const s2 = await c.waitForSubnet(n2);
      const pods: PodHost[] = [await c.addPod(n1, s1), await c.addPod(n2, s2)];
      tt.same(await pingAllPairs(c, pods, 20_000), [], 'node1 and node2 pods ping each other');
      const firstLeader = await ec.leader();
      tt.ok(firstLeader, `a leader: ${firstLeader?.name}`);

      // Both keys sampled throughout: with a 6 s TTL, any stall in renewals would show as a gap.
      const ownKeys = [leaseKeyOf(s1), leaseKeyOf(s2)];
      const gaps: string[] = [];
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const live = ec.members.filter((m) => m.proc).map((m) => m.ip);
          for (const k of ownKeys) {
            const r = await ec.ctl(['get', k, '--print-value-only'], live);
            if (r.code === 0 && r.stdout.trim() === '') gaps.push(`${k} missing at ${new Date().toISOString()}`);
          }
          await sleep(500);
        }
      })();
      const streams = [startPingStream(pods[0] as PodHost, (pods[1] as PodHost).ip), startPingStream(pods[1] as PodHost, (pods[0] as PodHost).ip)];
      const phases = Date.now();

      // Kill the leader first, then the others in turn.
      const order = [firstLeader ?? ec.members[0], ...ec.members.filter((m) => m !== firstLeader)].slice(0, 3);
      for (const [i, member] of order.entries()) {
        if (!member) continue;
        const joiner = joiners[i] as NodeHost;
        await ec.stop(member);
        const down = Date.now();
        c.startDaemon(joiner, [endpoints, `--subnet-lease-ttl=${TTL}`]);
        const sj = await c.waitForSubnet(joiner, 30_000).catch((err: Error) => { tt.fail(err.message); return undefined; });
        tt.ok(sj, `${member.name} (${member.ip}) down: ${joiner.name} registered ${sj} in ${((Date.now() - down) / 1000).toFixed(1)} s`);
        if (sj) {
          for (const n of [n1, n2]) {
            await until(`${n.name} to route ${joiner.name}`, async () => (await ownRoutes(n)).some((l) => l.startsWith(`${networkOf(sj)} via ${joiner.underlayIp} `)), 15_000)
              .then(() => tt.pass(`${n.name} routes ${joiner.name}'s ${networkOf(sj)} (its watch works with ${member.name} down)`), (err: Error) => tt.fail(err.message));
          }
        }
        await sleep(4000); // more than half a TTL with the member down: renewals must go on
        await ec.restart(member);
        tt.comment(`${member.name} was down ${((Date.now() - down) / 1000).toFixed(1)} s; now leader: ${(await ec.leader())?.name}`);
      }

      const results = await Promise.all(streams.map((st) => st.stop()));
      sampling = false;
      await sampler;
      tt.comment(`member failures took ${((Date.now() - phases) / 1000).toFixed(1)} s`);
      for (const [i, r] of results.entries()) {
        tt.comment(`ping ${pods[i]?.ip} -> ${pods[1 - i]?.ip}: ${r.summary}`);
        tt.equal(r.lost, 0, `0 lost packets ${pods[i]?.ip} -> ${pods[1 - i]?.ip} (${r.received}/${r.sent})`);
      }
      tt.same(gaps, [], 'node1\'s and node2\'s keys never went missing');
      for (const n of c.nodes) tt.ok(running(daemon(c, n)), `${n.name}: flanneld runs`);
      for (const [n, s] of [[n1, s1], [n2, s2]] as const) {
        tt.equal((await ec.ctlChecked(['get', leaseKeyOf(s), '--print-value-only'])).trim(), hostGwValue(n.underlayIp), `${n.name} still holds ${networkOf(s)}`);
        tt.notOk(logLines(daemon(c, n).proc.output()).some((l) => /Lease has been revoked/.test(l.msg ?? '')), `${n.name} never lost its lease`);
      }
      const keys = (await ec.ctlChecked(['get', '--prefix', '/coreos.com/network/subnets', '--keys-only'])).split('\n').filter(Boolean);
      tt.equal(new Set(keys).size, 5, `5 distinct leases: ${keys.map((k) => k.split('/').at(-1)).join(' ')}`);
      const m = await scrape(n1, PORT);
      tt.comment(`node1: ${sample(m, 'flanneld_lease_renewals_total{result="failure"}')} renewal failures, ` +
        `${sample(m, 'flanneld_etcd_watch_resyncs_total{reason="error"}')} watch resyncs after errors, ${sample(m, 'flanneld_etcd_unavailable_total')} unavailable transitions`);
      tt.equal(sample(m, 'flanneld_peers'), 4, 'node1 knows 4 peers');
    } finally {
      dumpLogsIfFailed(tt, c, { 'etcd cluster': ec.output() });
    }
  });

  t.test('a silently dropped etcd connection is detected by keepalive; the watch reconnects and catches up', async (tt: Test) => {
    const c = await LocalCluster.create({ tag: runTag('rb'), nodes: 2 });
    tt.teardown(() => c.destroy());
    const [n1, n2] = c.nodes as [NodeHost, NodeHost];
    const rules = [['INPUT', '-s', '192.0.2.254', '-p', 'tcp', '--sport', '2379', '-j', 'DROP'], ['OUTPUT', '-d', '192.0.2.254', '-p', 'tcp', '--dport', '2379', '-j', 'DROP']];
    try {
      await c.putConfig(CONFIG);
      // A TTL that outlasts the block: this is about the connection, not the lease.
      for (const n of c.nodes) c.startDaemon(n, ['--subnet-lease-ttl=300', `--healthz-port=${PORT}`]);
      await c.waitForSubnet(n1);
      await c.waitForSubnet(n2);
      await sleep(1000);
      const ss = await execIn(n1.ns, 'ss', ['-tn', 'state', 'established', 'dst', '192.0.2.254:2379']);
      tt.match(ss.stdout, /192\.0\.2\.254:2379/, `node1 has an established etcd connection:\n${ss.stdout.trim()}`);
      const d1 = daemon(c, n1);
      const mark = d1.proc.output().length;
      const before = await scrape(n1, PORT);

      for (const r of rules) await execCheckedIn(n1.ns, 'iptables', ['-I', ...r]);
      const t0 = Date.now();
      await sleep(2000);
      await c.etcd.put('/coreos.com/network/subnets/10.244.210.0-24', hostGwValue('192.0.2.210'));
      const detectedMs = await until('the dead connection to be detected', () => (/lease watch interrupted/.test(d1.proc.output().slice(mark)) ? Date.now() - t0 : undefined), 30_000, 200)
        .catch(() => -1);
      tt.comment(`the dead watch was detected ${detectedMs} ms into the block (keepalive 10 s + 5 s)`);
      tt.ok(detectedMs > 0 && detectedMs <= 25_000, 'detected within 25 s, while still blocked');
      tt.notOk((await ownRoutes(n1)).some((l) => l.startsWith('10.244.210.0/24 ')), 'the lease made during the block is not routed yet');
      await sleep(Math.max(0, 25_000 - (Date.now() - t0)));
      for (const r of rules) await execCheckedIn(n1.ns, 'iptables', ['-D', ...r]);
      const lifted = Date.now();
      const seenMs = await until('node1 to route the lease made during the block', async () => ((await ownRoutes(n1)).some((l) => l.startsWith('10.244.210.0/24 via 192.0.2.210 ')) ? Date.now() - lifted : undefined), 30_000, 200)
        .catch(() => -1);
      tt.comment(`the lease made during the ${((lifted - t0) / 1000).toFixed(1)} s block was routed ${seenMs} ms after it was lifted`);
      tt.ok(seenMs >= 0 && seenMs <= 30_000, 'seen within 30 s of the block being lifted');
      tt.ok(running(d1), 'node1 still runs');
      const after = await scrape(n1, PORT);
      const d = (name: string): number => (sample(after, name) ?? 0) - (sample(before, name) ?? 0);
      tt.ok(d('flanneld_etcd_watch_resyncs_total{reason="error"}') >= 1, `watch resync counted (${d('flanneld_etcd_watch_resyncs_total{reason="error"}')})`);
      tt.ok(d('flanneld_etcd_unavailable_total') >= 1, `unavailability counted (${d('flanneld_etcd_unavailable_total')})`);
      tt.equal(sample(after, 'flanneld_etcd_up'), 1, 'etcd up again');
    } finally {
      for (const r of rules) await execCheckedIn(n1.ns, 'iptables', ['-D', ...r]).catch(() => {});
      dumpLogsIfFailed(tt, c);
    }
  });
}
