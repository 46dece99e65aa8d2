// The packet engine's counters and lifecycle, with the real native engine over loopback sockets (no
// device, no root): every worker writes a counter region of its own; a removed peer's counter slot is
// not given to a new peer until every worker has published a snapshot without it; concurrent stops
// close the stop eventfd once; the addon refuses bad numbers instead of casting them.
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import type { DatapathThreading } from '../../../dist/backends/backend.js';
// The compiled modules (npm run build): the engine's worker threads load engine.worker.js from dist/.
import { GLOBAL_STATS, GLOBAL_STAT_SLOTS, PEER_STATS, type GlobalStat } from '../../../dist/backends/datapath/layout.js';
import { ENGINE_MODE, PUMP_DIRS, datapathAddon } from '../../../dist/backends/datapath/native/datapath-addon.js';
import { PacketEngine, counterRegion } from '../../../dist/backends/datapath/packet-engine.js';
import { type EnginePeer, PeerTable } from '../../../dist/backends/datapath/peer-table.js';

const addon = datapathAddon();
const LOOPBACK = 0x7f000001;
const OWN = 0x0af40100;   // 10.244.1.0/24
const PEER = 0x0af40200;  // 10.244.2.0/24, at 127.0.0.2
const log = pino({ level: process.env.TEST_LOG ?? 'silent' });

const ipText = (ip: number) => [24, 16, 8, 0].map((s) => (ip >>> s) & 255).join('.');
const peer = (key: string, subnet: number, port = 9): EnginePeer => ({ key, subnet, prefixLen: 24, publicIp: 0x7f000002, port });

/** An ICMP echo request src → dst with a valid IPv4 header (ICMP has no checksum the engine checks). */
function icmpPacket(src: number, dst: number, ttl: number): Buffer {
  const p = Buffer.alloc(28);
  p[0] = 0x45; p.writeUInt16BE(28, 2); p[8] = ttl; p[9] = 1;
  p.writeUInt32BE(src >>> 0, 12); p.writeUInt32BE(dst >>> 0, 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += p.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  p.writeUInt16BE(~sum & 0xffff, 10);
  p[20] = 8;
  return p;
}

/** A free UDP port on `ip` (bound by a throwaway socket, then released). */
async function freePort(ip: string): Promise<number> {
  const s = createSocket('udp4');
  s.bind(0, ip);
  await once(s, 'listening');
  const { port } = s.address();
  s.close();
  return port;
}

async function boundSocket(ip: string): Promise<Socket> {
  const s = createSocket('udp4');
  s.bind(0, ip);
  await once(s, 'listening');
  return s;
}

function engineSpec(table: PeerTable, region: number, fds: { dev: number; udp: number; stop: number }) {
  return {
    mode: ENGINE_MODE.UDP, devFd: fds.dev, udpFd: fds.udp, stopFd: fds.stop, peerTable: table.words, stats: table.region(region),
    devIp: OWN, ownSubnet: OWN, ownMask: 0xffffff00, mtu: 1472, vni: 0, devMac: new Uint8Array(6), txFds: new Int32Array(0), offload: false,
  };
}

function regionStat(table: PeerTable, region: number, name: GlobalStat): bigint {
  return table.region(region)[GLOBAL_STATS.indexOf(name)] ?? 0n;
}

async function until(what: string, fn: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A running engine over loopback sockets: the "device" is a UDP socket a pod socket writes into (and whose
 * writes fail: it has no destination), the peer a socket at 127.0.0.2 that collects what is forwarded. */
async function loopbackEngine(t: Test, threading: DatapathThreading, udpBufBytes = 1 << 20) {
  const [devPort, udpPort] = [await freePort('127.0.0.1'), await freePort('127.0.0.1')];
  const devFd = addon.udpOpen(LOOPBACK, devPort, false, 1 << 20);
  const udpFd = addon.udpOpen(LOOPBACK, udpPort, false, udpBufBytes);
  const peerSock = await boundSocket('127.0.0.2');
  const pod = await boundSocket('127.0.0.1');
  const table = new PeerTable(4, 2);
  const engine = new PacketEngine({ table, log, threading, queues: [{ devFd, udpFd, txFds: new Int32Array(0) }],
    spec: { mode: ENGINE_MODE.UDP, devIp: OWN, ownSubnet: OWN, ownMask: 0xffffff00, mtu: 1472, vni: 0, devMac: new Uint8Array(6), offload: false } });
  t.teardown(async () => { await engine.stop(); addon.closeFd(devFd); addon.closeFd(udpFd); peerSock.close(); pod.close(); });
  await engine.start();
  engine.replacePeers([peer('10.244.2.0/24', PEER, peerSock.address().port)]);
  const forwarded: Buffer[] = [];
  peerSock.on('message', (m) => forwarded.push(m));
  return { devPort, udpPort, devFd, udpFd, peerSock, pod, table, engine, forwarded };
}

t.test('pair mode: the TX and the RX worker each count into their own region', async (t) => {
  const threading = { workers: 'pair' as const, spinUs: 0 };
  const { devPort, udpPort, devFd, udpFd, peerSock, pod, table, engine, forwarded } = await loopbackEngine(t, threading);

  // TX: two "device reads" (datagrams into the engine's device socket): one forwarded, one TTL-expired.
  pod.send(icmpPacket(OWN | 2, PEER | 7, 64), devPort, '127.0.0.1');
  pod.send(icmpPacket(OWN | 2, PEER | 7, 1), devPort, '127.0.0.1');
  // RX: two datagrams from the peer: one TTL-expired, one written to the "device" (a socket with no
  // destination, so the write fails and is counted as a write error, by the RX worker).
  peerSock.send(icmpPacket(PEER | 7, OWN | 2, 1), udpPort, '127.0.0.1');
  peerSock.send(icmpPacket(PEER | 7, OWN | 2, 64), udpPort, '127.0.0.1');

  const tx = counterRegion(threading, 'tx', 0), rx = counterRegion(threading, 'rx', 0);
  t.not(tx, rx, 'the two workers of a queue get different regions');
  await until('both workers counted', () => regionStat(table, tx, 'drop_ttl_expired') === 1n && regionStat(table, rx, 'drop_ttl_expired') === 1n
    && regionStat(table, rx, 'rx_write_errors') === 1n && forwarded.length === 1);
  t.equal(regionStat(table, tx, 'tx_packets'), 1n, 'TX region: the forwarded packet');
  t.equal(regionStat(table, tx, 'rx_write_errors'), 0n, 'TX region: no RX counter');
  t.equal(regionStat(table, rx, 'tx_packets'), 0n, 'RX region: no TX counter');
  t.equal(engine.stats().drop_ttl_expired, 2n, 'ttl_expired, written by both directions, sums over the regions');
  t.equal(forwarded[0]?.readUInt32BE(16), (PEER | 7) >>> 0, 'the peer received the forwarded packet');
  t.same(engine.peerStats('10.244.2.0/24'), { tx_packets: 1n, tx_bytes: 28n, rx_packets: 0n, rx_bytes: 0n, rx_keepalives: 0n }, 'per-peer counters');
  t.throws(() => new PacketEngine({ table: new PeerTable(4, 1), log, threading, queues: [{ devFd, udpFd, txFds: new Int32Array(0) }],
    spec: { mode: ENGINE_MODE.UDP, devIp: OWN, ownSubnet: OWN, ownMask: 0xffffff00, mtu: 1472, vni: 0, devMac: new Uint8Array(6), offload: false } }),
  /1 counter regions; 2 workers need one each/, 'a table without a region per worker is refused');
});

t.test('adaptive mode: the lead serves both directions until an RX flood makes it lend RX to the assist, which gives it back', async (t) => {
  const threading = { workers: 'adaptive' as const, spinUs: 50 };
  const { devPort, udpPort, peerSock, pod, table, engine, forwarded } = await loopbackEngine(t, threading, 4 << 20);
  const lead = counterRegion(threading, 'lead', 0), assist = counterRegion(threading, 'assist', 0);
  t.not(lead, assist, 'the lead and the assist get different regions');

  // Light: a packet each way; the lead moves both (RX writes to the "device", a socket with no destination, fail and count).
  pod.send(icmpPacket(OWN | 2, PEER | 7, 64), devPort, '127.0.0.1');
  peerSock.send(icmpPacket(PEER | 7, OWN | 2, 64), udpPort, '127.0.0.1');
  await until('the lead moved both', () => regionStat(table, lead, 'tx_packets') === 1n && regionStat(table, lead, 'rx_write_errors') === 1n);
  t.equal(forwarded.length, 1, 'TX forwarded by the lead');
  t.equal(regionStat(table, assist, 'rx_write_errors'), 0n, 'light traffic: nothing in the assist\'s region');
  t.equal(engine.stats().assist_joins, 0n, 'light traffic: RX not lent');

  // Heavy: an RX flood, sent in bursts, keeps the lead busy round after round; it lends RX, the assist takes it.
  const packet = icmpPacket(PEER | 7, OWN | 2, 64);
  const flood = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i += 500) {
      await Promise.all(Array.from({ length: 500 }, () => new Promise<void>((resolve) => peerSock.send(packet, udpPort, '127.0.0.1', () => resolve()))));
    }
  };
  for (let round = 0; round < 10 && engine.stats().assist_joins === 0n; round++) await flood(20_000);
  t.ok(engine.stats().assist_joins >= 1n, `an RX flood: RX lent to the assist (${engine.stats().assist_joins} time(s))`);
  await until('the assist moved RX', () => regionStat(table, assist, 'rx_write_errors') > 0n);
  t.pass(`the assist wrote ${regionStat(table, assist, 'rx_write_errors')} of them, the lead ${regionStat(table, lead, 'rx_write_errors')}`);
  // Quiet again: within a rate window (20 ms) the assist hands RX back, and the lead serves it again.
  await until('RX handed back', () => engine.stats().assist_leaves === engine.stats().assist_joins, 2000);
  const before = regionStat(table, lead, 'rx_write_errors');
  peerSock.send(packet, udpPort, '127.0.0.1');
  await until('the lead serves RX again', () => regionStat(table, lead, 'rx_write_errors') === before + 1n);
  t.equal(engine.stats().assist_joins, engine.stats().assist_leaves, `RX handed back as often as lent (${engine.stats().assist_leaves})`);
  // The lead crashes and comes back (the owner word and the eventfds outlive it): RX and TX still flow.
  engine.crashWorker('tx');
  await until('the lead restarted', () => engine.restarts === 1 && engine.alive === 2, 5000);
  pod.send(icmpPacket(OWN | 2, PEER | 7, 64), devPort, '127.0.0.1');
  await until('TX after the restart', () => forwarded.length === 2);
  t.pass('a restarted lead forwards');
});

t.test('adaptive mode: the lead busy-polls for an answer it predicts, and not for traffic nobody answers', async (t) => {
  // A window wide enough for a JS echo (event-loop latency, not the engine's, sets the gap here).
  const threading = { workers: 'adaptive' as const, spinUs: 10_000 };
  const { devPort, udpPort, peerSock, pod, engine, forwarded } = await loopbackEngine(t, threading);
  const polls = () => ({ answered: engine.stats().busy_polls_answered, expired: engine.stats().busy_polls_expired });
  const request = icmpPacket(OWN | 2, PEER | 7, 64), reply = icmpPacket(PEER | 7, OWN | 2, 64);
  const exchange = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const sent = forwarded.length;
      pod.send(request, devPort, '127.0.0.1');
      await until('the request forwarded', () => forwarded.length > sent);
      await new Promise((r) => setTimeout(r, 15)); // well past the window: the next request comes after a pause
    }
  };
  // Request/response: the peer answers each request at once. The first answer teaches the lead the gap;
  // from then on it stays awake for the answers instead of sleeping in poll.
  const echo = (): void => { peerSock.send(reply, udpPort, '127.0.0.1'); };
  peerSock.on('message', echo);
  await exchange(20);
  const rpc = polls();
  t.ok(rpc.answered >= 5n, `request/response: answers caught while busy-polling (${rpc.answered} answered, ${rpc.expired} expired of 20)`);
  // One-way traffic (the peer stops answering): the first busy-poll expires, the lead forgets the gap, and
  // no further request makes it spin.
  peerSock.off('message', echo);
  await new Promise((r) => setTimeout(r, 50)); // the last answer is in
  const before = polls();
  await exchange(20);
  const oneWay = polls();
  t.equal(oneWay.answered, before.answered, 'one-way traffic: nothing answered');
  t.ok(oneWay.expired - before.expired <= 1n, `one-way traffic: at most the first busy-poll expires (${oneWay.expired - before.expired})`);
});

t.test('adaptive mode without a spin window never busy-polls', async (t) => {
  const threading = { workers: 'adaptive' as const, spinUs: 0 };
  const { devPort, udpPort, peerSock, pod, engine, forwarded } = await loopbackEngine(t, threading);
  peerSock.on('message', () => peerSock.send(icmpPacket(PEER | 7, OWN | 2, 64), udpPort, '127.0.0.1'));
  for (let i = 1; i <= 10; i++) {
    pod.send(icmpPacket(OWN | 2, PEER | 7, 64), devPort, '127.0.0.1');
    await until('the request forwarded', () => forwarded.length === i);
  }
  await until('the answers moved', () => engine.stats().rx_write_errors === 10n);
  t.same([engine.stats().busy_polls_answered, engine.stats().busy_polls_expired], [0n, 0n], 'no busy-polls');
});

t.test('a removed peer\'s counter slot is quarantined until every worker has moved on', async (t) => {
  const fds = [addon.udpOpen(LOOPBACK, 0, false, 1 << 16), addon.udpOpen(LOOPBACK, 0, false, 1 << 16), addon.eventfdOpen()];
  t.teardown(() => { for (const fd of fds) addon.closeFd(fd); });
  const table = new PeerTable(4, 2);
  // Two real engine contexts, one per counter region, pumped by hand: each pump loads the table if it
  // changed and publishes the snapshot's sequence, as a worker does before each step.
  const workers = [0, 1].map((r) => addon.engineCreate(engineSpec(table, r, { dev: fds[0] as number, udp: fds[1] as number, stop: fds[2] as number })));
  t.teardown(() => { for (const w of workers) addon.engineDestroy(w); });
  const syncAll = () => { for (const w of workers) addon.pump(w, PUMP_DIRS.RX, 0, 1); };
  const rxPackets = (key: string) => {
    const slot = table.slotOf(key);
    return slot === undefined ? undefined : table.sum(GLOBAL_STAT_SLOTS + slot * PEER_STATS.length + PEER_STATS.indexOf('rx_packets'));
  };

  table.replace([peer('a', PEER)]);
  syncAll();
  const slotA = table.slotOf('a') as number;
  table.replace([]);
  table.replace([peer('b', 0x0af40300)]);
  t.not(table.slotOf('b'), slotA, 'no worker has loaded the table without a yet: b gets another slot');
  t.equal(table.quarantined, 1, 'a\'s slot is quarantined');
  // A worker still on the old snapshot counts a packet from a into a's slot (as it would mid-step).
  const late = GLOBAL_STAT_SLOTS + slotA * PEER_STATS.length + PEER_STATS.indexOf('rx_packets');
  (table.region(1)[late] as bigint) += 5n;
  t.equal(rxPackets('b'), 0n, 'b does not inherit a\'s late counts');

  syncAll();
  table.replace([peer('b', 0x0af40300), peer('c', 0x0af40400)]);
  t.equal(table.slotOf('c'), slotA, 'once every worker published a later snapshot, the slot is reused');
  t.equal(rxPackets('c'), 0n, 'zeroed for its new peer');
  t.equal(table.quarantined, 0);
});

t.test('with every slot in use or quarantined, a new peer waits for one without counters', async (t) => {
  const fds = [addon.udpOpen(LOOPBACK, 0, false, 1 << 16), addon.udpOpen(LOOPBACK, 0, false, 1 << 16), addon.eventfdOpen()];
  t.teardown(() => { for (const fd of fds) addon.closeFd(fd); });
  const table = new PeerTable(1, 1); // two counter slots
  const w = addon.engineCreate(engineSpec(table, 0, { dev: fds[0] as number, udp: fds[1] as number, stop: fds[2] as number }));
  t.teardown(() => addon.engineDestroy(w));
  addon.pump(w, PUMP_DIRS.RX, 0, 1);
  table.replace([peer('a', PEER)]);
  addon.pump(w, PUMP_DIRS.RX, 0, 1);
  table.replace([peer('b', PEER)]);
  table.replace([peer('c', PEER)]);
  t.equal(table.slotOf('c'), undefined, 'c has no slot yet (a\'s and b\'s are quarantined)');
  addon.pump(w, PUMP_DIRS.RX, 0, 1);
  table.replace([peer('c', PEER)]);
  t.type(table.slotOf('c'), 'number', 'c gets one at the next replace after the worker moved on');
});

t.test('concurrent stops close the stop eventfd once', async (t) => {
  const devFd = addon.udpOpen(LOOPBACK, 0, false, 1 << 16), udpFd = addon.udpOpen(LOOPBACK, 0, false, 1 << 16);
  t.teardown(() => { addon.closeFd(devFd); addon.closeFd(udpFd); });
  const engine = new PacketEngine({ table: new PeerTable(4, 1), log, threading: { workers: 'shared', spinUs: 0 }, queues: [{ devFd, udpFd, txFds: new Int32Array(0) }],
    spec: { mode: ENGINE_MODE.UDP, devIp: OWN, ownSubnet: OWN, ownMask: 0xffffff00, mtu: 1472, vni: 0, devMac: new Uint8Array(6), offload: false } });
  await engine.start();
  t.equal(engine.alive, 1);
  await t.resolves(Promise.all([engine.stop(), engine.stop()]), 'both stops resolve');
  await t.resolves(engine.stop(), 'a later stop too');
  t.equal(engine.alive, 0);
});

t.test('the addon refuses bad numbers instead of casting them', async (t) => {
  const table = new PeerTable(4, 1);
  const good = engineSpec(table, 0, { dev: 0, udp: 0, stop: 0 });
  for (const [field, value, message] of [
    ['mtu', -1, /mtu must be an integer from 68 to 65535/], ['devFd', -3, /devFd must be an integer from 0/],
    ['devIp', 2 ** 32, /devIp must be an integer from 0 to 4294967295/], ['vni', 1.5, /vni must be an integer/],
    ['mode', 7, /mode must be an integer from 0 to 2/], ['udpFd', undefined, /udpFd must be an integer/], ['spinUs', -1, /spinUs must be an integer/],
  ] as const) {
    t.throws(() => addon.engineCreate({ ...good, [field]: value }), { code: 'ERR_INVALID_ARG_VALUE', message }, `${field} = ${String(value)}`);
  }
  t.throws(() => addon.engineCreate({ ...good, offload: 1 as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' }, 'offload must be a boolean');
  t.throws(() => addon.closeFd(-1), { code: 'ERR_INVALID_ARG_VALUE' }, 'closeFd(-1)');
  t.throws(() => addon.udpOpen(LOOPBACK, 70000, false, 0), { code: 'ERR_INVALID_ARG_VALUE', message: /port/ }, 'a port above 65535');
  const fds = [addon.udpOpen(LOOPBACK, 0, false, 1 << 16), addon.eventfdOpen()];
  t.teardown(() => { for (const fd of fds) addon.closeFd(fd); });
  const e = addon.engineCreate(engineSpec(table, 0, { dev: fds[0] as number, udp: fds[0] as number, stop: fds[1] as number }));
  t.teardown(() => addon.engineDestroy(e));
  t.throws(() => addon.pump(e, 9, 0, 1), { code: 'ERR_INVALID_ARG_VALUE', message: /dirs/ }, 'pump dirs 9');
  t.throws(() => addon.pump(e, PUMP_DIRS.RX, -5, 1), { code: 'ERR_INVALID_ARG_VALUE', message: /timeoutMs/ }, 'a negative timeout');
  t.equal(addon.pump(e, PUMP_DIRS.RX, 0, 1), 0, 'good arguments pump');
  t.throws(() => addon.pump(e, PUMP_DIRS.LEAD, 0, 1), { code: 'ERR_INVALID_ARG_TYPE', message: /adaptive role needs/ }, 'an adaptive role on an engine without rxOwner');
  t.throws(() => addon.engineCreate({ ...good, rxOwner: new Uint32Array(new SharedArrayBuffer(4)) }), { code: 'ERR_INVALID_ARG_TYPE', message: /go together/ }, 'rxOwner without joinFd and backFd');
  t.throws(() => addon.engineCreate({ ...good, joinFd: 1, backFd: 1, rxOwner: new Uint32Array(0) }), { code: 'ERR_INVALID_ARG_TYPE', message: /rxOwner/ }, 'an empty rxOwner');
  t.comment(`checked with peers at ${ipText(0x7f000002)}`);
});
