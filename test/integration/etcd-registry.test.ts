// The etcd registry and subnet manager against a real etcd on loopback (random ports): guarded
// create and renew, a watch that reports compaction, and a lease watch that re-lists and diffs after
// an outage and after etcd compacted past a stalled watch, each telling which path it took.
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { EtcdServer } from '../../deploy/local/etcd-server.js';
import { isFlannelError } from '../../lib/errors.js';
import { createEtcdClient } from '../../subnet/etcd/etcd-client.js';
import { EtcdRegistry } from '../../subnet/etcd/etcd-registry.js';
import { EtcdSubnetManager } from '../../subnet/etcd/etcd-subnet-manager.js';
import { parseCidr4, parseIp4 } from '../../lib/ip.js';
import type { Lease } from '../../subnet/lease.js';
import { parseNetworkConfig } from '../../subnet/network-config.js';
import { ADMIN_IP, CLIENT_IP, stallThenCompact, whileCutOff } from '../helpers/loopback-etcd.js';

const PREFIX = '/coreos.com/network';
const port = 20000 + Math.floor(Math.random() * 20000);
// The code under test connects on CLIENT_IP; the test also on ADMIN_IP, to change etcd while the code is cut off.
const etcd = new EtcdServer({ listenIps: [ADMIN_IP, CLIENT_IP], clientPort: port, peerPort: port + 1 });
const log = pino({ level: 'silent' });
const cidr = (s: string) => parseCidr4(s)!;
const ip = (s: string) => parseIp4(s)!;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

t.before(() => etcd.start());
t.teardown(() => etcd.destroy());

function newRegistry(t: Test): EtcdRegistry {
  const reg = new EtcdRegistry(createEtcdClient({ endpoints: etcd.endpoints([CLIENT_IP]) }), PREFIX);
  t.teardown(() => reg.close());
  return reg;
}

t.test('create is guarded: the second node loses and no key is overwritten', async (t) => {
  const reg = newRegistry(t);
  const subnet = cidr('10.9.1.0/24');
  const a = await reg.createLease(subnet, { publicIp: ip('192.0.2.1'), backendType: 'host-gw' }, 60);
  const err = await reg.createLease(subnet, { publicIp: ip('192.0.2.2'), backendType: 'host-gw' }, 60).catch((e: unknown) => e);
  t.ok(isFlannelError(err, 'FLN_ERR_LEASE_CONFLICT'), 'FLN_ERR_LEASE_CONFLICT');
  t.equal(await etcd.get(`${PREFIX}/subnets/10.9.1.0-24`), '{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"host-gw"}');
  const renewed = await reg.updateLease(subnet, a.attrs, 60, a.etcdLeaseId);
  t.not(renewed.etcdLeaseId, a.etcdLeaseId, 'renewal moves the key to a fresh etcd lease');
  const stale = await reg.updateLease(subnet, a.attrs, 60, a.etcdLeaseId).catch((e: unknown) => e);
  t.ok(isFlannelError(stale, 'FLN_ERR_LEASE_CONFLICT'), 'a renewal with a stale etcd lease id is refused');
  await reg.deleteLease(subnet);
});

t.test('a watch from a compacted revision ends with the compaction, so the caller re-lists', async (t) => {
  const reg = newRegistry(t);
  const { revision } = await reg.listLeases();
  await etcd.put(`${PREFIX}/subnets/10.9.2.0-24`, '{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"host-gw"}');
  await etcd.put(`${PREFIX}/other`, 'x');
  const status = JSON.parse(await etcd.ctlChecked(['endpoint', 'status', '-w', 'json'])) as Array<{ Status: { header: { revision: number } } }>;
  const compactedAt = status[0]!.Status.header.revision;
  await etcd.ctlChecked(['compact', String(compactedAt)]);
  const changes: string[] = [];
  const ended = await new Promise<{ reason: string; kind: string }>((resolve) => {
    void reg.watch(String(BigInt(revision) + 1n), { onChanges: (c) => changes.push(...c.map((x) => x.kind)), onEnd: (reason, kind) => resolve({ reason, kind }) });
  });
  t.same(ended, { reason: `compacted at revision ${compactedAt}`, kind: 'compacted' }, 'ended as compacted, at the revision etcd was compacted at');
  t.same(changes, [], 'no change was delivered from the compacted history');
});

// ---------------------------------------------------------------------------------------------
// runLeaseWatch, with a journal of what it reported in order: "resync <kind>: <detail>" (the watch
// ended and the leases are listed again), the lease events ("added 50"), and "synced" after each full
// list. What a re-list delivers lies between its "resync" and the next "synced"; a live event comes
// after a "synced" with no "resync" in between.

const peer = (n: number) => `${PREFIX}/subnets/10.8.${n}.0-24`;
const value = (n: number) => `{"PublicIP":"192.0.2.${n}","PublicIPv6":null,"BackendType":"host-gw"}`;

interface Watching { journal: string[]; lost: string[]; own: Lease; until(entry: string): Promise<void> }

async function leaseWatch(t: Test, publicIp: string): Promise<Watching> {
  const journal: string[] = [];
  const mgr = new EtcdSubnetManager(newRegistry(t), {
    log, leaseTtlSec: 60, onEvent: (ev) => { if (ev.type === 'watch-resync') journal.push(`resync ${ev.reason}: ${ev.detail}`); },
  });
  // Our own lease comes from 10.8.100.0 up, so it never collides with the hand-made peers.
  const cfg = parseNetworkConfig('{"Network":"10.8.0.0/16","SubnetMin":"10.8.100.0","Backend":{"Type":"host-gw"}}', 'test');
  const own = await mgr.acquireLease(cfg, { publicIp: ip(publicIp), backendType: 'host-gw' }, { signal: AbortSignal.timeout(10_000) });
  const lost: string[] = [];
  const stop = new AbortController();
  const running = mgr.runLeaseWatch(own, {
    onEvents: (evs) => { for (const e of evs) journal.push(`${e.kind} ${e.lease.subnet.ip >>> 8 & 255}`); },
    onSynced: () => journal.push('synced'),
    onOwnLeaseLost: (r) => lost.push(r),
  }, stop.signal).catch(() => {});
  t.teardown(async () => { stop.abort(); await running; });
  const until = async (entry: string) => {
    for (let i = 0; i < 200 && !journal.includes(entry); i++) await sleep(100);
    t.ok(journal.includes(entry), `${entry} (journal: ${journal.join(', ')})`);
  };
  return { journal, lost, own, until };
}

/** The entries delivered by the first re-list after a resync of `kind`: between that resync and the next "synced". */
function relistAfter(journal: readonly string[], kind: string): { resync: string; delivered: string[] } | undefined {
  const r = journal.findIndex((e) => e.startsWith(`resync ${kind}:`));
  if (r < 0) return undefined;
  const s = journal.indexOf('synced', r);
  return s < 0 ? undefined : { resync: journal[r] as string, delivered: journal.slice(r + 1, s) };
}

t.test('runLeaseWatch delivers the snapshot and live changes, and after an outage a re-list delivers the difference', async (t) => {
  await etcd.put(peer(50), value(50));
  const w = await leaseWatch(t, '192.0.2.1');
  await w.until('added 50');
  const firstSync = w.journal.indexOf('synced');
  t.ok(firstSync > w.journal.indexOf('added 50'), 'the first list delivers the snapshot');
  await etcd.put(peer(51), value(51));
  await w.until('added 51');
  t.same(w.journal.slice(firstSync + 1), ['added 51'], 'a change made while watching arrives as a live event (no re-list)');

  const mark = w.journal.length;
  await whileCutOff(etcd, async () => {
    await etcd.ctlChecked(['del', peer(50)]);
    await etcd.put(peer(52), value(52));
  });
  await w.until('removed 50');
  await w.until('added 52');
  const after = w.journal.slice(mark);
  const relist = relistAfter(after, 'error');
  t.ok(relist, `the watch ended with the outage (reason error) and the leases were listed again: ${after.join(', ')}`);
  t.same([...(relist?.delivered ?? [])].sort(), ['added 52', 'removed 50'], 'the re-list delivered exactly the difference made during the outage');
  t.notOk(after.some((e) => e.startsWith('resync compacted')), 'no compaction involved');
  t.same(w.lost, [], 'our own lease was never reported lost');

  await etcd.ctlChecked(['del', `${PREFIX}/subnets/${w.own.subnet.ip >>> 24}.${w.own.subnet.ip >>> 16 & 255}.${w.own.subnet.ip >>> 8 & 255}.0-24`]);
  for (let i = 0; i < 50 && w.lost.length === 0; i++) await sleep(100);
  t.match(w.lost[0], /deleted/, 'deleting our own key is reported (a live delete)');
});

t.test('runLeaseWatch after etcd compacted past a stalled watch: ended as compacted, the re-list delivers the difference', async (t) => {
  await etcd.put(peer(60), value(60));
  const w = await leaseWatch(t, '192.0.2.2');
  await w.until('added 60');
  const mark = w.journal.length;
  // This process stalls (its event loop blocked) while etcd is flooded, changed and compacted: the
  // changes never reach the watch, and neither does an outage (etcd stays up throughout).
  const compactedAt = stallThenCompact(etcd, `${PREFIX}/subnets/flood-`, [['del', peer(60)], ['put', peer(61), value(61)]]);
  await w.until('removed 60');
  await w.until('added 61');
  const after = w.journal.slice(mark);
  const relist = relistAfter(after, 'compacted');
  t.equal(relist?.resync, `resync compacted: compacted at revision ${compactedAt}`, `the watch ended as compacted, at the revision we compacted at: ${after.join(', ')}`);
  t.same([...(relist?.delivered ?? [])].sort(), ['added 61', 'removed 60'], 'the re-list delivered exactly the difference');
  t.notOk(after.some((e) => /^resync (error|ended|canceled)/.test(e)), 'no other interruption');
  t.same(w.lost, [], 'our own lease was never reported lost');
});
