// Two decisions of the subnet manager against a real etcd on loopback (the unit tests in
// test/unit/metrics.test.ts make them against an in-memory registry): a renewal refused because the
// watch loop already re-created the key after a data loss is adopted, not a revocation; and our key
// found missing on the re-list after an outage (not a data loss) revokes the lease and ends the watch.
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import type { EtcdServer } from '../../deploy/local/etcd-server.js';
import { createEtcdClient } from '../../subnet/etcd/etcd-client.js';
import { EtcdRegistry } from '../../subnet/etcd/etcd-registry.js';
import { ADOPTED_MESSAGE, EtcdSubnetManager, type SubnetEvent } from '../../subnet/etcd/etcd-subnet-manager.js';
import type { Cidr4 } from '../../lib/ip.js';
import { formatCidr4, parseIp4 } from '../../lib/ip.js';
import type { Lease, LeaseAttrs } from '../../subnet/lease.js';
import { parseNetworkConfig } from '../../subnet/network-config.js';
import { clientEndpoints, startLoopbackEtcd, whileCutOff, wipe } from '../helpers/loopback-etcd.js';

const PREFIX = '/coreos.com/network';
const CFG = parseNetworkConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"host-gw"}}', 'test');
const ATTRS: LeaseAttrs = { publicIp: parseIp4('192.0.2.1') as number, backendType: 'host-gw' };

interface LogLine { msg: string; why?: string; [k: string]: unknown }

/**
 * The real registry, with the renewal's write held at a gate when armed: it stands for a renewal
 * whose request is still in flight while the watch loop acts. etcd itself is untouched.
 */
class GatedRegistry extends EtcdRegistry {
  private gate: { entered: (expectedId: string) => void; released: Promise<void> } | undefined;

  /** The next updateLease waits for `release`; resolves with the etcd lease id it will expect. */
  arm(): { entered: Promise<string>; release: () => void } {
    let release = (): void => {};
    let entered: (id: string) => void = () => {};
    const enteredP = new Promise<string>((r) => { entered = r; });
    this.gate = { entered, released: new Promise<void>((r) => { release = r; }) };
    return { entered: enteredP, release };
  }

  override async updateLease(subnet: Cidr4, attrs: LeaseAttrs, ttlSec: number, expectedId: string): Promise<Lease> {
    const gate = this.gate;
    this.gate = undefined;
    if (gate) {
      gate.entered(expectedId);
      await gate.released;
    }
    return super.updateLease(subnet, attrs, ttlSec, expectedId);
  }
}

async function until(what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** The etcd lease id (decimal) that holds `key` now, or undefined when the key is missing. */
async function holderOf(etcd: EtcdServer, key: string): Promise<string | undefined> {
  const out = await etcd.ctlChecked(['get', key, '-w', 'json']);
  const lease = /"lease":(\d+)/.exec(out)?.[1];
  return out.includes('"kvs"') ? (lease ?? '0') : undefined;
}

function newManager(t: Test, etcd: EtcdServer, ttlSec: number): { reg: GatedRegistry; mgr: EtcdSubnetManager; events: SubnetEvent[]; logs: LogLine[] } {
  const reg = new GatedRegistry(createEtcdClient({ endpoints: clientEndpoints(etcd) }), PREFIX);
  const events: SubnetEvent[] = [];
  const logs: LogLine[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => { logs.push(JSON.parse(s) as LogLine); } });
  const mgr = new EtcdSubnetManager(reg, { log, leaseTtlSec: ttlSec, onEvent: (ev) => events.push(ev), dataLossGraceMs: 3000 });
  t.teardown(() => mgr.close());
  return { reg, mgr, events, logs };
}

const count = (events: readonly SubnetEvent[], pred: (e: SubnetEvent) => boolean): number => events.filter(pred).length;

t.test('a renewal refused because the watch loop already re-created the key (etcd lost its data): adopted, no revocation', async (t) => {
  const etcd = await startLoopbackEtcd(t);
  const { reg, mgr, events, logs } = newManager(t, etcd, 4); // renewed every 2 s (half the TTL)
  const own = await mgr.acquireLease(CFG, ATTRS, { signal: AbortSignal.timeout(10_000) });
  const key = reg.leaseKey(own.subnet);
  const stop = new AbortController();
  const lost: string[] = [];
  const renewal = mgr.runRenewal(own, { renewMarginMs: 60_000, signal: stop.signal }).then(() => 'returned', (err: unknown) => err);
  const watch = mgr.runLeaseWatch(own, { onEvents: () => {}, onOwnLeaseLost: (r) => { lost.push(r); stop.abort(); } }, stop.signal)
    .then(() => 'returned', (err: unknown) => err);
  t.teardown(async () => { stop.abort(); await Promise.all([renewal, watch]); });
  await until('a first renewal', () => count(events, (e) => e.type === 'lease-renewed') >= 1);

  // The next renewal is in flight (held before it reaches etcd) with the etcd lease it holds now.
  const gate = reg.arm();
  const expected = await gate.entered;
  t.equal(await holderOf(etcd, key), expected, `the renewal in flight expects the lease that holds our key (${expected})`);
  await wipe(etcd);
  await until('the watch loop re-creating our key', () => count(events, (e) => e.type === 'lease-acquired' && e.source === 'recreated') === 1);
  const recreated = mgr.currentLease as Lease;
  t.not(recreated.etcdLeaseId, expected, 'the watch loop re-created our key on a new etcd lease');
  t.equal(await holderOf(etcd, key), recreated.etcdLeaseId, 'etcd holds our key under the re-created lease');
  t.equal(count(events, (e) => e.type === 'data-loss'), 1, 'the data loss was seen (revision went back)');

  gate.release(); // etcd now refuses the renewal: our key is no longer held by `expected`
  await until('the refused renewal adopting the key', () => logs.some((l) => l.msg === ADOPTED_MESSAGE));
  const adopted = logs.find((l) => l.msg === ADOPTED_MESSAGE) as LogLine;
  t.match(adopted.why, new RegExp(`no longer held by etcd lease ${expected}$`), `refused by etcd, then adopted: ${adopted.why}`);
  const renewedAfter = count(events, (e) => e.type === 'lease-renewed');
  await until('renewals going on', () => count(events, (e) => e.type === 'lease-renewed') >= renewedAfter + 2, 10_000);
  t.same(lost, [], 'the lease was never reported lost');
  t.equal(count(events, (e) => e.type === 'lease-acquired' && e.source === 'recreated'), 1, 'the key was re-created once (by the watch loop), not again by the renewal');
  t.equal(await holderOf(etcd, key), mgr.currentLease?.etcdLeaseId, 'etcd holds our key under the lease the manager renews');
  t.equal(await Promise.race([renewal, sleep(10).then(() => 'running')]), 'running', 'the renewal loop is still running');
});

t.test('our key missing on the re-list after an outage (it expired meanwhile, no data loss): revoked, and the watch loop ends', async (t) => {
  const etcd = await startLoopbackEtcd(t);
  const { reg, mgr, events, logs } = newManager(t, etcd, 60);
  const own = await mgr.acquireLease(CFG, ATTRS, { signal: AbortSignal.timeout(10_000) });
  const key = reg.leaseKey(own.subnet);
  const stop = new AbortController();
  const lost: string[] = [];
  let synced = 0;
  const watch = mgr.runLeaseWatch(own, {
    onEvents: () => {}, onSynced: () => { synced++; }, onOwnLeaseLost: (r) => { lost.push(r); stop.abort(); },
  }, stop.signal).then(() => 'returned', (err: unknown) => err);
  t.teardown(async () => { stop.abort(); await watch; });
  await until('the first list', () => synced >= 1);

  // Cut off from the manager, the etcd lease ends as an expiry ends it: the key goes with it.
  await whileCutOff(etcd, async () => {
    await etcd.ctlChecked(['lease', 'revoke', BigInt(own.etcdLeaseId).toString(16)]);
    t.equal(await holderOf(etcd, key), undefined, `our key ${formatCidr4(own.subnet)} is gone while the manager is cut off`);
  });
  const ended = await Promise.race([watch, sleep(20_000, undefined, { ref: false }).then(() => 'still running after 20 s')]);
  t.equal(ended, 'returned', 'runLeaseWatch returned');
  t.equal(lost.length, 1, 'the loss was reported once');
  t.match(lost[0], /our lease key 10\.7\.\d+\.0\/24 is missing from etcd: it expired or was deleted/, `found missing on the re-list and confirmed by a read: ${lost[0]}`);
  t.notMatch(lost[0], /was deleted in etcd/, 'not the live delete event of the watch');
  t.ok(count(events, (e) => e.type === 'watch-resync' && e.reason === 'error') >= 1, 'the watch ended with the outage (reason error) and re-listed');
  t.equal(count(events, (e) => e.type === 'data-loss'), 0, 'no data loss was assumed (the revision did not go back)');
  t.equal(await holderOf(etcd, key), undefined, 'our key was not re-created');
  t.ok(logs.some((l) => l.msg === 'lease watch interrupted; re-listing leases' && l.kind === 'error'), 'the re-list is logged with its reason');
});
