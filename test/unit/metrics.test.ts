// Unit tests of the control-plane metrics: flanneld/metrics.ts renders what it is fed (Prometheus text,
// every label value present from the start), and the subnet manager feeds it the right events
// (acquire, renew, renewal failure, etcd unavailable and back, watch resync, data loss and re-creation,
// a subnet taken by another node) against an in-memory registry. No root, no etcd. The adoption of a
// refused renewal and the key missing on a re-list are also tested against a real etcd, in
// test/integration/etcd-subnet-manager.test.ts.
import t, { type Test } from 'tap';
import { type Logger, pino } from 'pino';
import { createMetrics } from '../../flanneld/metrics.js';
import type { Network } from '../../backends/backend.js';
import { CompositeNetwork } from '../../backends/composite-network.js';
import { FlannelError, isFlannelError } from '../../lib/errors.js';
import type { CallObserver, EtcdRegistry, WatchHandlers } from '../../subnet/etcd/etcd-registry.js';
import type { EtcdOp } from '../../subnet/subnet-manager.js';
import { ADOPTED_MESSAGE, EtcdSubnetManager, type SubnetEvent } from '../../subnet/etcd/etcd-subnet-manager.js';
import { type Cidr4, formatCidr4, parseCidr4, parseIp4 } from '../../lib/ip.js';
import type { Lease, LeaseAttrs, LeaseEvent } from '../../subnet/lease.js';
import { parseNetworkConfig } from '../../subnet/network-config.js';

const log = pino({ level: 'silent' });
const cidr = (s: string): Cidr4 => parseCidr4(s) as Cidr4;
const ip = (s: string): number => parseIp4(s) as number;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One sample from Prometheus text, e.g. value(text, 'flanneld_lease_renewals_total{result="success"}'). */
function value(text: string, sample: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  if (line === undefined) return undefined;
  const v = line.slice(sample.length + 1);
  return v === '+Inf' ? Infinity : Number(v);
}

async function until(what: string, fn: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const lease = (subnet: string, publicIp: string, id: string, ttlSec = 60): Lease =>
  ({ subnet: cidr(subnet), attrs: { publicIp: ip(publicIp), backendType: 'host-gw' }, etcdLeaseId: id, expiresAtMs: Date.now() + ttlSec * 1000 });

t.test('createMetrics: every control-plane metric, its labels at 0, then what it was fed', async (t) => {
  const m = createMetrics({ network: () => undefined });
  let text = await m.registry.metrics();
  for (const sample of [
    'flanneld_lease_acquisitions_total{source="new"}', 'flanneld_lease_acquisitions_total{source="recreated"}',
    'flanneld_lease_renewals_total{result="success"}', 'flanneld_lease_renewals_total{result="failure"}',
    'flanneld_lease_expiry_timestamp_seconds', 'flanneld_etcd_request_errors_total{op="update"}',
    'flanneld_etcd_unavailable_total', 'flanneld_etcd_watch_resyncs_total{reason="compacted"}',
    'flanneld_etcd_watch_resyncs_total{reason="error"}', 'flanneld_etcd_data_loss_total', 'flanneld_peers',
    'flanneld_lease_events_total{kind="added"}', 'flanneld_lease_events_total{kind="removed"}', 'flanneld_routes_programmed_total',
    'flanneld_reconcile_corrections_total{kind="fixed"}', 'flanneld_reconcile_corrections_total{kind="removed"}',
    'flanneld_reconcile_corrections_total{kind="failed"}', 'flanneld_reconcile_runs_total{result="ok"}',
  ]) t.equal(value(text, sample), 0, `${sample} is 0 at start`);
  t.match(text, /# TYPE flanneld_lease_renewals_total counter/);
  t.match(text, /# TYPE flanneld_peers gauge/);

  const own = lease('10.5.1.0/24', '192.0.2.1', '7', 30);
  const peer = lease('10.5.2.0/24', '192.0.2.2', '8');
  const evs: SubnetEvent[] = [
    { type: 'lease-acquired', lease: own, source: 'new' },
    { type: 'lease-renewed', lease: own },
    { type: 'lease-renewed', lease: own },
    { type: 'etcd-request', op: 'update', ok: false },
    { type: 'etcd-unavailable', op: 'update', error: 'down' },
    { type: 'lease-renewal-failed', error: 'down' },
    { type: 'etcd-request', op: 'list', ok: false },
    { type: 'watch-resync', reason: 'error', detail: 'Connection dropped' },
    { type: 'watch-resync', reason: 'compacted', detail: 'compacted at revision 9' },
    { type: 'etcd-request', op: 'list', ok: true },
    { type: 'etcd-available' },
    { type: 'data-loss', fromRevision: '90', toRevision: '3' },
    { type: 'lease-acquired', lease: own, source: 'recreated' },
    { type: 'peers', count: 3 },
  ];
  for (const ev of evs) m.subnetEvent(ev);
  const added: LeaseEvent[] = [{ kind: 'added', lease: peer }, { kind: 'added', lease: own }, { kind: 'removed', lease: peer }];
  m.leaseEventsApplied(added);
  m.leaseEventsFailed([{ kind: 'added', lease: peer }]);
  m.reconciled({ fixed: 2, removed: 1, failed: 0 });
  m.reconciled({ fixed: 0, removed: 0, failed: 3 });
  m.reconciled(undefined);

  text = await m.registry.metrics();
  const want: Record<string, number> = {
    'flanneld_lease_acquisitions_total{source="new"}': 1,
    'flanneld_lease_acquisitions_total{source="recreated"}': 1,
    'flanneld_lease_acquisitions_total{source="previous"}': 0,
    'flanneld_lease_renewals_total{result="success"}': 2,
    'flanneld_lease_renewals_total{result="failure"}': 1,
    'flanneld_lease_expiry_timestamp_seconds': own.expiresAtMs / 1000,
    'flanneld_etcd_request_errors_total{op="update"}': 1,
    'flanneld_etcd_request_errors_total{op="list"}': 1,
    'flanneld_etcd_request_errors_total{op="grant"}': 0,
    'flanneld_etcd_unavailable_total': 1,
    'flanneld_etcd_up': 1,
    'flanneld_etcd_watch_resyncs_total{reason="error"}': 1,
    'flanneld_etcd_watch_resyncs_total{reason="compacted"}': 1,
    'flanneld_etcd_watch_resyncs_total{reason="periodic"}': 0,
    'flanneld_etcd_data_loss_total': 1,
    'flanneld_peers': 3,
    'flanneld_lease_events_total{kind="added"}': 2,
    'flanneld_lease_events_total{kind="removed"}': 1,
    'flanneld_lease_event_errors_total': 1,
    'flanneld_routes_programmed_total': 2,
    'flanneld_reconcile_corrections_total{kind="fixed"}': 2,
    'flanneld_reconcile_corrections_total{kind="removed"}': 1,
    'flanneld_reconcile_corrections_total{kind="failed"}': 3,
    'flanneld_reconcile_runs_total{result="ok"}': 2,
    'flanneld_reconcile_runs_total{result="error"}': 1,
  };
  for (const [sample, v] of Object.entries(want)) t.equal(value(text, sample), v, `${sample} = ${v}`);

  m.subnetEvent({ type: 'lease-acquired', lease: { ...own, etcdLeaseId: '0', expiresAtMs: Infinity }, source: 'reservation' });
  t.equal(value(await m.registry.metrics(), 'flanneld_lease_expiry_timestamp_seconds'), Infinity, 'a reservation expires at +Inf');
});

// ---------------------------------------------------------------------------------------------
// The subnet manager against an in-memory registry with etcd's semantics (guarded create and
// update, a revision counter, a watch that ends when etcd goes away).

class FakeRegistry {
  readonly prefix = '/coreos.com/network';
  readonly configKey = '/coreos.com/network/config';
  private readonly observers: CallObserver[] = [];
  private readonly keys = new Map<string, Lease>();
  private revision = 20n;
  private nextId = 100;
  down = false;
  watchers = new Set<WatchHandlers>();

  observe(fn: CallObserver): void { this.observers.push(fn); }

  private call<T>(op: EtcdOp, fn: () => T): Promise<T> {
    if (this.down) {
      const err = new FlannelError('FLN_ERR_ETCD_UNAVAILABLE', `etcd: ${op} failed: 14 UNAVAILABLE`);
      for (const o of this.observers) o(op, err);
      return Promise.reject(err);
    }
    let r: T;
    try {
      r = fn();
    } finally {
      for (const o of this.observers) o(op, undefined);
    }
    return Promise.resolve(r);
  }

  private write(subnet: Cidr4, l: Lease | undefined): void {
    this.revision++;
    if (l) this.keys.set(formatCidr4(subnet), l);
    else this.keys.delete(formatCidr4(subnet));
    for (const w of this.watchers) w.onChanges([l ? { kind: 'put', lease: l } : { kind: 'delete', subnet }], this.revision.toString());
  }

  get(subnet: string): Lease | undefined { return this.keys.get(subnet); }
  /** A write by someone else (another node, an administrator). */
  put(l: Lease): void { this.write(l.subnet, l); }
  del(subnet: string): void { this.write(cidr(subnet), undefined); }
  /** Gone without a watch event reaching us, as a key that expired while we were cut off. */
  vanish(subnet: string): void { this.revision++; this.keys.delete(subnet); }

  /** etcd restarted with an empty data directory: every watch breaks, the revision starts again. */
  wipe(): void {
    this.keys.clear();
    this.revision = 1n;
    for (const w of [...this.watchers]) w.onEnd('14 UNAVAILABLE: Connection dropped', 'error');
  }

  /** etcd went away (or came back): watches break while it is down. */
  setDown(down: boolean): void {
    this.down = down;
    if (down) for (const w of [...this.watchers]) w.onEnd('14 UNAVAILABLE: Connection dropped', 'error');
  }

  listLeases() { return this.call('list', () => ({ leases: [...this.keys.values()], revision: this.revision.toString() })); }
  getLease(subnet: Cidr4) { return this.call('get', () => ({ lease: this.keys.get(formatCidr4(subnet)), revision: this.revision.toString() })); }

  createLease(subnet: Cidr4, attrs: LeaseAttrs, ttlSec: number) {
    return this.call('create', () => {
      if (this.keys.has(formatCidr4(subnet))) throw new FlannelError('FLN_ERR_LEASE_CONFLICT', 'exists');
      const l: Lease = { subnet, attrs, etcdLeaseId: String(this.nextId++), expiresAtMs: Date.now() + ttlSec * 1000 };
      this.write(subnet, l);
      return l;
    });
  }

  /** When set, the next updateLease waits for `released` first: a renewal still in flight. */
  hold: { entered: () => void; released: Promise<void> } | undefined;

  async updateLease(subnet: Cidr4, attrs: LeaseAttrs, ttlSec: number, expectedId: string) {
    const hold = this.hold;
    this.hold = undefined;
    if (hold) {
      hold.entered();
      await hold.released;
    }
    return this.call('update', () => {
      if (this.keys.get(formatCidr4(subnet))?.etcdLeaseId !== expectedId) {
        throw new FlannelError('FLN_ERR_LEASE_CONFLICT', `lease ${formatCidr4(subnet)} is no longer held by etcd lease ${expectedId}`);
      }
      const l: Lease = { subnet, attrs, etcdLeaseId: String(this.nextId++), expiresAtMs: Date.now() + ttlSec * 1000 };
      this.write(subnet, l);
      return l;
    });
  }

  watch(_from: string, h: WatchHandlers) {
    return this.call('watch', () => {
      this.watchers.add(h);
      setImmediate(() => h.onEstablished?.());
      return { cancel: () => { this.watchers.delete(h); } };
    });
  }

  deleteLease(subnet: Cidr4) { return this.call('delete', () => this.write(subnet, undefined)); }
  readConfig() { return this.call('read_config', () => '{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}'); }
  async close(): Promise<void> {}
}

interface Harness {
  reg: FakeRegistry;
  mgr: EtcdSubnetManager;
  events: SubnetEvent[];
  own: Lease;
  lost: string[];
  peerEvents: string[];
  renewal: Promise<unknown>;
  watch: Promise<unknown>;
}

async function start(t: Test, o: { graceMs?: number; ttlSec?: number; log?: Logger } = {}): Promise<Harness> {
  const reg = new FakeRegistry();
  const events: SubnetEvent[] = [];
  const mgr = new EtcdSubnetManager(reg as unknown as EtcdRegistry, {
    log: o.log ?? log, leaseTtlSec: o.ttlSec ?? 2, onEvent: (ev) => events.push(ev), dataLossGraceMs: o.graceMs ?? 1500, random: () => 0,
  });
  reg.put(lease('10.5.9.0/24', '192.0.2.9', '9'));
  const cfg = parseNetworkConfig('{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}', 'test');
  const own = await mgr.acquireLease(cfg, { publicIp: ip('192.0.2.1'), backendType: 'host-gw' }, { signal: AbortSignal.timeout(5000) });
  const stop = new AbortController();
  const lost: string[] = [];
  const peerEvents: string[] = [];
  const renewal = mgr.runRenewal(own, { renewMarginMs: 60_000, signal: stop.signal }).catch((err: unknown) => err);
  const watch = mgr.runLeaseWatch(own, {
    onEvents: (evs) => { for (const e of evs) peerEvents.push(`${e.kind} ${formatCidr4(e.lease.subnet)}`); },
    onOwnLeaseLost: (r) => { lost.push(r); stop.abort(); },
  }, stop.signal).catch((err: unknown) => err);
  t.teardown(async () => { stop.abort(); await Promise.all([renewal, watch]); });
  return { reg, mgr, events, own, lost, peerEvents, renewal, watch };
}

const count = (h: Harness, type: SubnetEvent['type'], pred: (e: SubnetEvent) => boolean = () => true): number =>
  h.events.filter((e) => e.type === type && pred(e)).length;

t.test('manager events: acquired, renewed, renewal failures while etcd is down, unavailable once, back', async (t) => {
  const h = await start(t);
  t.equal(count(h, 'lease-acquired', (e) => e.type === 'lease-acquired' && e.source === 'new'), 1, 'one new lease acquired');
  await until('a renewal', () => count(h, 'lease-renewed') >= 1);
  t.pass('renewed (TTL 2 s, so every second)');
  await until('the peer added', () => h.peerEvents.includes('added 10.5.9.0/24'));
  t.ok(h.events.some((e) => e.type === 'peers' && e.count === 1), 'peers gauge event: 1');

  h.reg.setDown(true);
  await until('two renewal failures', () => count(h, 'lease-renewal-failed') >= 2);
  t.equal(count(h, 'etcd-unavailable'), 1, 'etcd-unavailable reported once for a whole outage');
  t.ok(count(h, 'watch-resync', (e) => e.type === 'watch-resync' && e.reason === 'error') >= 1, 'the watch resynced with reason error');
  h.reg.setDown(false);
  const renewedBefore = count(h, 'lease-renewed');
  await until('a renewal after the outage', () => count(h, 'lease-renewed') > renewedBefore);
  t.equal(count(h, 'etcd-available'), 2, 'etcd-available at start and after the outage');
  t.same(h.lost, [], 'the lease was never lost');
  t.equal(h.reg.get('10.5.1.0/24')?.attrs.publicIp, ip('192.0.2.1'), 'our key is still ours');
});

t.test('data loss: our key re-created on the same subnet, peers kept for the grace period, then removed', async (t) => {
  const h = await start(t, { graceMs: 1500, ttlSec: 60 });
  await until('the peer added', () => h.peerEvents.includes('added 10.5.9.0/24'));
  h.reg.wipe();
  await until('our key re-created', () => h.reg.get('10.5.1.0/24') !== undefined);
  const re = h.reg.get('10.5.1.0/24') as Lease;
  t.equal(re.attrs.publicIp, ip('192.0.2.1'), 'same subnet, our PublicIP');
  t.not(re.etcdLeaseId, h.own.etcdLeaseId, 'on a fresh etcd lease');
  t.equal(count(h, 'data-loss'), 1, 'one data-loss event');
  t.equal(count(h, 'lease-acquired', (e) => e.type === 'lease-acquired' && e.source === 'recreated'), 1, 'acquired with source recreated');
  t.equal(h.mgr.currentLease?.etcdLeaseId, re.etcdLeaseId, 'the manager holds the re-created lease');
  t.notOk(h.peerEvents.includes('removed 10.5.9.0/24'), 'the missing peer is kept during the grace period');
  await until('the recovery re-list', () => count(h, 'watch-resync', (e) => e.type === 'watch-resync' && e.reason === 'recovery') >= 1);
  await until('the peer removed after the grace period', () => h.peerEvents.includes('removed 10.5.9.0/24'));
  t.pass('a peer that did not re-register is removed once the grace period is over');
  t.same(h.lost, [], 'the daemon would keep running');
});

t.test('data loss, but another node took our subnet first: revoked', async (t) => {
  const h = await start(t, { ttlSec: 60 });
  h.reg.setDown(true); // our watch breaks; meanwhile etcd is wiped and another node takes our subnet
  h.reg.wipe();
  h.reg.put(lease('10.5.1.0/24', '192.0.2.7', '555'));
  h.reg.setDown(false);
  await until('the lease lost', () => h.lost.length > 0, 8000);
  t.match(h.lost[0], /10\.5\.1\.0\/24 is now leased by (another node, )?192\.0\.2\.7/, `reason: ${h.lost[0]}`);
  t.equal(h.reg.get('10.5.1.0/24')?.attrs.publicIp, ip('192.0.2.7'), 'the other node\'s key is untouched');
});

t.test('our key deleted (no data loss): revoked, never re-created', async (t) => {
  const h = await start(t, { ttlSec: 60 });
  await until('watching', () => h.reg.watchers.size > 0);
  h.reg.del('10.5.1.0/24');
  await until('the lease lost', () => h.lost.length > 0);
  t.match(h.lost[0], /deleted/, `reason: ${h.lost[0]}`);
  await sleep(200);
  t.equal(h.reg.get('10.5.1.0/24'), undefined, 'not re-created');
});

t.test('our key expired while etcd was unreachable (found missing on re-list): revoked, and the watch loop ends', async (t) => {
  const h = await start(t, { ttlSec: 60 });
  await until('watching', () => h.reg.watchers.size > 0);
  h.reg.setDown(true);
  h.reg.vanish('10.5.1.0/24');
  h.reg.setDown(false);
  await until('the lease lost', () => h.lost.length > 0, 8000);
  t.match(h.lost[0], /missing from etcd/, `reason: ${h.lost[0]}`);
  const done = await Promise.race([h.watch.then(() => 'ended'), sleep(3000).then(() => 'hung')]);
  t.equal(done, 'ended', 'runLeaseWatch returns after reporting the loss (it used to hang)');
});

t.test('a renewal refused because the other loop already re-created the key: adopted, no revocation', async (t) => {
  const lines: Array<{ msg: string; why?: string }> = [];
  const h = await start(t, { ttlSec: 2, log: pino({ level: 'info' }, { write: (s: string) => { lines.push(JSON.parse(s) as { msg: string }); } }) });
  await until('a renewal', () => count(h, 'lease-renewed') >= 1);
  // The next renewal is in flight with the etcd lease it holds now while etcd is wiped and the watch loop re-creates the key.
  let release = (): void => {};
  let entered = false;
  h.reg.hold = { entered: () => { entered = true; }, released: new Promise<void>((r) => { release = r; }) };
  await until('the renewal in flight', () => entered);
  const inFlight = h.mgr.currentLease?.etcdLeaseId as string;
  h.reg.wipe();
  await until('our key re-created', () => h.reg.get('10.5.1.0/24') !== undefined);
  t.not(h.reg.get('10.5.1.0/24')?.etcdLeaseId, inFlight, 're-created by the watch loop on a new etcd lease');
  release();
  await until('the refused renewal adopting the key', () => lines.some((l) => l.msg === ADOPTED_MESSAGE));
  t.match(lines.find((l) => l.msg === ADOPTED_MESSAGE)?.why, new RegExp(`no longer held by etcd lease ${inFlight}$`), 'refused, then adopted');
  t.equal(count(h, 'lease-acquired', (e) => e.type === 'lease-acquired' && e.source === 'recreated'), 1, 're-created once, not again by the renewal');
  const renewed = count(h, 'lease-renewed');
  await until('renewals go on', () => count(h, 'lease-renewed') >= renewed + 2);
  t.same(h.lost, [], 'not lost');
  t.equal(h.reg.get('10.5.1.0/24')?.etcdLeaseId, h.mgr.currentLease?.etcdLeaseId, 'the key is held by the lease the manager renews');
  const renewal = await Promise.race([h.renewal, sleep(10).then(() => 'running')]);
  t.equal(renewal, 'running', 'the renewal loop is still running');
  t.notOk(isFlannelError(renewal), 'no error');
});

t.test('etcd unreachable from the start: not counted as a transition to unavailable until it was once reachable', async (t) => {
  const reg = new FakeRegistry();
  const events: SubnetEvent[] = [];
  const mgr = new EtcdSubnetManager(reg as unknown as EtcdRegistry, { log, leaseTtlSec: 60, onEvent: (ev) => events.push(ev), random: () => 0 });
  reg.down = true;
  const cfg = parseNetworkConfig('{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}', 'test');
  const acquiring = mgr.acquireLease(cfg, { publicIp: ip('192.0.2.1'), backendType: 'host-gw' }, { signal: AbortSignal.timeout(10_000) });
  await until('two failed requests', () => events.filter((e) => e.type === 'etcd-request' && !e.ok).length >= 2);
  t.equal(events.filter((e) => e.type === 'etcd-unavailable').length, 0, 'no etcd-unavailable while etcd was never reachable');
  reg.down = false;
  await acquiring;
  t.equal(events.filter((e) => e.type === 'etcd-available').length, 1, 'etcd-available once it answers');
  reg.setDown(true);
  await mgr.acquireLease(cfg, { publicIp: ip('192.0.2.1'), backendType: 'host-gw' }, { signal: AbortSignal.timeout(1500) }).catch(() => undefined);
  t.equal(events.filter((e) => e.type === 'etcd-unavailable').length, 1, 'then a failure is a transition to unavailable');
});

t.test('createMetrics: the kernel\'s drops at a data path\'s devices and sockets, read on each scrape, added up over a dual-stack network\'s parts', async (t) => {
  let drops = { v4: { tx: 0n, rx: 0n, socket: 0n }, v6: { tx: 0n, rx: 0n, socket: 0n } };
  const part = (device: string, family: 'v4' | 'v6'): Network => ({
    lease: {} as Lease, apply: async () => {}, reconcile: async () => ({ fixed: 0, removed: 0, failed: 0 }), close: async () => {},
    datapathStats: () => ({
      counters: {}, peers: [], workerRestarts: 0,
      kernelDrops: { devices: [{ device, txDropped: drops[family].tx, rxDropped: drops[family].rx }], socketReceive: drops[family].socket },
    }),
  });
  const network = new CompositeNetwork({} as Lease, [part('flannel.1', 'v4'), part('flannel-v6.1', 'v6')]);
  const m = createMetrics({ network: () => network });
  const TX = 'flanneld_datapath_device_dropped_packets_total{device="flannel.1",direction="tx"}';
  const RX6 = 'flanneld_datapath_device_dropped_packets_total{device="flannel-v6.1",direction="rx"}';
  const SOCKET = 'flanneld_datapath_socket_receive_drops_total';
  let text = await m.registry.metrics();
  t.same([value(text, TX), value(text, RX6), value(text, SOCKET)], [0, 0, 0], 'each device\'s series and the socket drops are present at 0');
  drops = { v4: { tx: 1500n, rx: 0n, socket: 7n }, v6: { tx: 0n, rx: 3n, socket: 5n } };
  text = await m.registry.metrics();
  t.same([value(text, TX), value(text, RX6), value(text, SOCKET)], [1500, 3, 12], 'the next scrape reads them again; socket drops of both parts added');
  const none = createMetrics({ network: () => undefined });
  t.equal(value(await none.registry.metrics(), SOCKET), 0, 'no userspace data path: the socket drops read 0');
});
