// WireGuardSessions end to end in-process: two nodes A and B, each with its own WgTable, connected back
// to back (each one's send() puts the bytes on a wire the test pumps into the other's handleMessage;
// transport messages, which the C data path would take, land in a per-node "C inbox"). Time is injected.
// The C side is simulated with the layout constants of backends/datapath/layout.ts directly (not through
// WgTable): confirming a NEXT keypair, setting WANT, counting traffic. Keys are checked crosswise in the
// raw shared memory, and keepalives are opened with the protocol core's TransportKeypair reference.
import t from 'tap';
import { pino } from 'pino';
import { WG_HEADER, WG_KEYPAIR, WG_KEYPAIR_FLAGS, WG_PEER, wgKeypairsOffset } from '../../backends/datapath/layout.js';
import * as wg from '../../backends/wireguard/protocol/index.js';
import { RETIRE_GRACE_MS } from '../../backends/wireguard/session/peer-session.js';
import { WIREGUARD_TIMERS } from '../../backends/wireguard/session/session-timers.js';
import { EAGER_INITIATIONS_PER_TICK, WireGuardSessions, type PeerCounters } from '../../backends/wireguard/session/sessions.js';
import { WgTable } from '../../backends/wireguard/session/wg-table.js';

const log = pino({ level: 'silent' });
const KP_CAP = 16;
const PEER_CAP = 8;
const IP = { A: 0x0a000001, B: 0x0a000002 } as const;
const PORT = 51820;
const SUBNET = { A: 0x0af40100, B: 0x0af40200 } as const;
/** Different counter slots on each side, so a crosswise mix-up cannot pass. */
const SLOT = { A: 5, B: 3 } as const; // SLOT.B: B's slot in A's table; SLOT.A: A's slot in B's table

type Name = 'A' | 'B';
interface Packet { from: Name; to: Name; msg: Buffer; ip: number; port: number }

/** A raw keypair slot as C sees it. */
interface RawKp { state: number; localIndex: number; remoteIndex: number; peerSlot: number; peerSubnet: number; flags: number; counter: bigint; send: Buffer; recv: Buffer }

class Node {
  readonly keys = wg.generateKeyPair();
  readonly table: WgTable;
  readonly sessions: WireGuardSessions;
  readonly counters = new Map<number, { txPackets: bigint; rxPackets: bigint; rxKeepalives: bigint }>();
  /** Transport messages sent to this node (the C data path would receive them). */
  readonly cInbox: Buffer[] = [];
  private readonly u32: Uint32Array;
  private readonly u64: BigUint64Array;
  private readonly u8: Uint8Array;

  constructor(readonly name: Name, net: Net, opts: { psk?: Buffer; underLoadThreshold?: number } = {}) {
    this.table = new WgTable(KP_CAP, PEER_CAP, WIREGUARD_TIMERS, () => net.now);
    this.u32 = new Uint32Array(this.table.buffer);
    this.u64 = new BigUint64Array(this.table.buffer);
    this.u8 = new Uint8Array(this.table.buffer);
    this.sessions = new WireGuardSessions({
      privateKey: this.keys.privateKey,
      ...(opts.psk ? { presharedKey: opts.psk } : {}),
      ...(opts.underLoadThreshold !== undefined ? { underLoadThreshold: opts.underLoadThreshold } : {}),
      table: this.table,
      send: (msg, ip, port) => net.send(this.name, Buffer.from(msg), ip, port),
      counters: (slot): PeerCounters => this.counter(slot),
      log,
      now: () => net.now,
      wallNow: () => 1_700_000_000_000 + net.now,
      random: () => net.jitter,
    });
  }

  counter(slot: number) {
    let c = this.counters.get(slot);
    if (!c) this.counters.set(slot, (c = { txPackets: 0n, rxPackets: 0n, rxKeepalives: 0n }));
    return c;
  }

  peerWord(slot: number, field: number): number { return (WG_HEADER.BYTES + slot * WG_PEER.BYTES + field) / 4; }
  kpBase(kpSlot: number): number { return wgKeypairsOffset(PEER_CAP) + kpSlot * WG_KEYPAIR.BYTES; }

  /** WGP_CURRENT of a peer slot (raw: keypair slot + 1). */
  currentRaw(peerSlot: number): number { return Atomics.load(this.u32, this.peerWord(peerSlot, WG_PEER.CURRENT)); }

  raw(kpSlot: number): RawKp {
    const b = this.kpBase(kpSlot);
    return {
      state: Atomics.load(this.u32, (b + WG_KEYPAIR.STATE) / 4),
      localIndex: this.u32[(b + WG_KEYPAIR.LOCAL_INDEX) / 4] as number,
      remoteIndex: this.u32[(b + WG_KEYPAIR.REMOTE_INDEX) / 4] as number,
      peerSlot: this.u32[(b + WG_KEYPAIR.PEER_SLOT) / 4] as number,
      peerSubnet: this.u32[(b + WG_KEYPAIR.PEER_SUBNET) / 4] as number,
      flags: Atomics.load(this.u32, (b + WG_KEYPAIR.FLAGS) / 4),
      counter: Atomics.load(this.u64, (b + WG_KEYPAIR.SEND_COUNTER) / 8),
      send: Buffer.from(this.u8.subarray(b + WG_KEYPAIR.SEND_KEY, b + WG_KEYPAIR.SEND_KEY + 32)),
      recv: Buffer.from(this.u8.subarray(b + WG_KEYPAIR.RECV_KEY, b + WG_KEYPAIR.RECV_KEY + 32)),
    };
  }

  /** Every published keypair (STATE 1). */
  live(): RawKp[] {
    const out: RawKp[] = [];
    for (let s = 0; s < KP_CAP; s++) { const k = this.raw(s); if (k.state === 1) out.push(k); }
    return out;
  }

  byIndex(index: number): RawKp { return this.raw(index & (KP_CAP - 1)); }

  /** What C RX does on the first authenticated packet on a NEXT keypair: clear NEXT, store CURRENT. */
  cConfirm(peerSlot: number, index: number): void {
    const slot = index & (KP_CAP - 1);
    const was = Atomics.and(this.u32, (this.kpBase(slot) + WG_KEYPAIR.FLAGS) / 4, ~WG_KEYPAIR_FLAGS.NEXT);
    if (was & WG_KEYPAIR_FLAGS.NEXT) Atomics.store(this.u32, this.peerWord(peerSlot, WG_PEER.CURRENT), slot + 1);
  }

  /** What C TX does when it has no usable keypair (or an old one as initiator). */
  cWant(peerSlot: number): void { Atomics.or(this.u32, this.peerWord(peerSlot, WG_PEER.FLAGS), 1); }

  /** What C TX does per datagram: fetch_add on SEND_COUNTER. */
  cSend(index: number, n: number): void {
    for (let i = 0; i < n; i++) Atomics.add(this.u64, (this.kpBase(index & (KP_CAP - 1)) + WG_KEYPAIR.SEND_COUNTER) / 8, 1n);
  }

  /** Opens a transport message sent to this node, with the keys in this node's table (TS reference). */
  open(msg: Buffer): { counter: bigint; plaintext: Buffer; receiver: number } {
    const receiver = msg.readUInt32LE(4);
    const k = this.byIndex(receiver);
    const ref = new wg.TransportKeypair(k.send, k.recv, k.localIndex, k.remoteIndex, false);
    return { ...ref.open(msg), receiver };
  }
}

class Net {
  now = 1_000_000;
  jitter = 0;
  readonly wire: Packet[] = [];
  readonly log: Packet[] = [];
  /** Return false to lose a packet. */
  filter: (p: Packet) => boolean = () => true;
  nodes = new Map<number, Node>();

  send(from: Name, msg: Buffer, ip: number, port: number): void {
    const to = [...this.nodes.entries()].find(([nip]) => nip === ip)?.[1];
    const p: Packet = { from, to: to?.name ?? (from === 'A' ? 'B' : 'A'), msg, ip, port };
    this.log.push(p);
    if (to) this.wire.push(p);
  }

  /** Delivers until the wire is empty; source address = the sender's lease address unless `srcOf` says otherwise. */
  pump(srcOf: (p: Packet) => { ip: number; port: number } = (p) => ({ ip: IP[p.from], port: PORT })): void {
    for (let p = this.wire.shift(); p; p = this.wire.shift()) {
      if (!this.filter(p)) continue;
      const node = [...this.nodes.values()].find((n) => n.name === p.to) as Node;
      if (p.msg[0] === wg.MESSAGE_TRANSPORT) { node.cInbox.push(p.msg); continue; }
      const src = srcOf(p);
      node.sessions.handleMessage(p.msg, src.ip, src.port);
    }
  }

  /** Advances time in 100 ms ticks (ticking every node), pumping after each. */
  run(ms: number, each?: () => void): void {
    for (let done = 0; done < ms; done += 100) {
      this.now += 100;
      for (const n of this.nodes.values()) n.sessions.tick();
      this.pump();
      each?.();
    }
  }

  sent(from: Name, type: number): Packet[] { return this.log.filter((p) => p.from === from && p.msg[0] === type); }
}

function setup(opts: { pskA?: Buffer; pskB?: Buffer; loadB?: number; keepalive?: number } = {}) {
  const net = new Net();
  const A = new Node('A', net, { ...(opts.pskA ? { psk: opts.pskA } : {}) });
  const B = new Node('B', net, { ...(opts.pskB ? { psk: opts.pskB } : {}), ...(opts.loadB !== undefined ? { underLoadThreshold: opts.loadB } : {}) });
  net.nodes.set(IP.A, A);
  net.nodes.set(IP.B, B);
  const peerOf = (n: Node, pub = n.keys.publicKey) => ({
    key: n.name, publicKey: pub, slot: n === A ? SLOT.A : SLOT.B, subnet: SUBNET[n.name],
    endpointIp: IP[n.name], endpointPort: PORT, keepaliveSeconds: opts.keepalive ?? 0,
  });
  return { net, A, B, peerOf };
}

const isZero = (b: Buffer) => b.every((x) => x === 0);

t.test('handshake: A initiates; keys crosswise; B is NEXT until C confirms; then both send', async (t) => {
  const { net, A, B, peerOf } = setup();
  net.filter = (p) => !(p.from === 'B' && p.msg[0] === wg.MESSAGE_INITIATION); // B's eager initiation is lost
  B.sessions.setPeers([peerOf(A)]);
  A.sessions.setPeers([peerOf(B)]);
  net.pump();
  net.filter = () => true;

  t.equal(net.sent('A', 1).length, 1, 'A sent one initiation');
  t.equal(net.sent('B', 2).length, 1, 'B answered with one response');
  const [ka] = A.live();
  const [kb] = B.live();
  t.equal(A.live().length, 1);
  t.equal(B.live().length, 1);
  if (!ka || !kb) throw new Error('no keypairs');
  t.ok(ka.send.equals(kb.recv) && !isZero(ka.send), "A's send key = B's receive key");
  t.ok(kb.send.equals(ka.recv) && !isZero(kb.send), "B's send key = A's receive key");
  t.notOk(ka.send.equals(ka.recv), 'the two directions differ');
  t.equal(ka.remoteIndex, kb.localIndex, "A sends to B's index");
  t.equal(kb.remoteIndex, ka.localIndex, "B sends to A's index");
  t.equal(ka.peerSlot, SLOT.B, "A's keypair names B's slot in A's table");
  t.equal(kb.peerSlot, SLOT.A);
  t.equal(ka.peerSubnet, SUBNET.B, "A's keypair carries B's subnet");
  t.equal(kb.peerSubnet, SUBNET.A);
  t.equal(ka.flags, WG_KEYPAIR_FLAGS.INITIATOR, 'A: initiator, not NEXT');
  t.equal(kb.flags, WG_KEYPAIR_FLAGS.NEXT, 'B: responder, NEXT');
  t.equal(A.currentRaw(SLOT.B), (ka.localIndex & (KP_CAP - 1)) + 1, 'A made it current');
  t.equal(B.currentRaw(SLOT.A), 0, 'B does not send with a NEXT keypair');

  // A's keepalive, sent at once, is a valid transport message with counter 0 for B's keypair.
  t.equal(B.cInbox.length, 1, 'A sent a keepalive at once');
  const k0 = B.open(B.cInbox[0] as Buffer);
  t.equal(k0.receiver, kb.localIndex);
  t.equal(k0.counter, 0n);
  t.equal(k0.plaintext.length, 0, 'empty: a keepalive');
  t.equal(A.byIndex(ka.localIndex).counter, 1n, 'the keepalive took counter 0 from SEND_COUNTER');

  // C on B receives that keepalive on the NEXT keypair: confirms it.
  B.cConfirm(SLOT.A, kb.localIndex);
  B.counter(SLOT.A).rxKeepalives++;
  net.run(100);
  t.equal(B.currentRaw(SLOT.A), (kb.localIndex & (KP_CAP - 1)) + 1, 'CURRENT as C left it');
  t.equal(B.byIndex(kb.localIndex).flags, 0, 'B: neither initiator nor NEXT');
  t.equal(B.sessions.stats().peers[0]?.currentKeypairAgeSeconds, 0.1, "B's bookkeeping rotated: current keypair, 0.1 s old");
  t.equal(B.sessions.stats().handshakesCompleted, 1);

  // B received data and sends nothing for KEEPALIVE_TIMEOUT: a passive keepalive from B.
  B.counter(SLOT.A).rxPackets += 3n;
  net.run(9_900);
  t.equal(A.cInbox.length, 0, 'no keepalive before 10 s');
  net.run(200);
  t.equal(A.cInbox.length, 1, 'B sent a passive keepalive');
  const kB = A.open(A.cInbox[0] as Buffer);
  t.equal(kB.receiver, ka.localIndex);
  t.equal(kB.counter, 0n);

  // C on A sent 41 data packets; A receives data, then sends a passive keepalive with counter 42.
  A.cSend(ka.localIndex, 41);
  A.counter(SLOT.B).rxPackets++;
  net.run(10_100);
  t.equal(B.cInbox.length, 2);
  const k42 = B.open(B.cInbox[1] as Buffer);
  t.equal(k42.counter, 42n, 'the keepalive counter follows C\'s fetch_adds');
  t.equal(net.sent('A', 1).length, 1, 'no further initiation from A');
  t.equal(net.sent('B', 1).length, 1, "B's lost initiation was not retransmitted after the handshake completed");

  const s = A.sessions.stats();
  t.same(s.sent, { initiation: 1, response: 0, cookieReply: 0, keepalive: 2 });
  t.same(s.received, { initiation: 0, response: 1, cookieReply: 0, other: 0 });
  t.equal(s.peers[0]?.lastHandshakeUnix, Math.floor((1_700_000_000_000 + 1_000_000) / 1000));
  t.equal(s.peers[0]?.lastHandshakeAgeSeconds, 20.3);
  t.equal(s.peers[0]?.endpoint, '10.0.0.2:51820');
  t.same(Object.values(s.drops).filter((n) => n > 0), [], 'no drops');
});

t.test('simultaneous handshakes both ways: each side current = its own, the other one kept as previous', async (t) => {
  const { net, A, B, peerOf } = setup();
  A.sessions.setPeers([peerOf(B)]);
  B.sessions.setPeers([peerOf(A)]);
  net.pump();
  t.equal(A.live().length, 2);
  t.equal(B.live().length, 2);
  for (const [x, y, slotOfY] of [[A, B, SLOT.B], [B, A, SLOT.A]] as const) {
    const mine = x.live().find((k) => k.flags & WG_KEYPAIR_FLAGS.INITIATOR) as RawKp;
    const theirs = x.live().find((k) => !(k.flags & WG_KEYPAIR_FLAGS.INITIATOR)) as RawKp;
    t.equal(theirs.flags, 0, `${x.name}: the responder keypair is no longer NEXT (C must not promote it)`);
    t.equal(x.currentRaw(slotOfY), (mine.localIndex & (KP_CAP - 1)) + 1, `${x.name}: its own initiator keypair is current`);
    const peerKp = y.byIndex(mine.remoteIndex);
    t.ok(peerKp.recv.equals(mine.send) && peerKp.send.equals(mine.recv), `${x.name}'s keypair matches ${y.name}'s crosswise`);
  }
  t.equal(A.sessions.stats().handshakesCompleted, 1);
});

t.test('retransmission every REKEY_TIMEOUT (+ jitter), give-up after REKEY_ATTEMPT_TIME', async (t) => {
  const { net, A, B, peerOf } = setup();
  net.nodes.delete(IP.B); // B is unreachable
  A.sessions.setPeers([peerOf(B)]);
  const times: number[] = [];
  let t0 = net.now;
  let seen = 0;
  const note = () => { for (; seen < net.sent('A', 1).length; seen++) times.push(net.now - t0); };
  note();
  // The greeting of a new peer nobody asked for: 3 initiations, then quiet until traffic wants the peer.
  net.run(120_000, note);
  t.same(times, [0, 5000, 10000], 'a new peer is greeted 3 times, 5 s apart, then left alone');
  t.equal(A.sessions.stats().handshakeGiveUps, 0, 'a speculative greeting is not a given-up handshake');

  // Traffic wants a session: a full attempt, every REKEY_TIMEOUT for REKEY_ATTEMPT_TIME.
  times.length = 0;
  t0 = net.now;
  A.cWant(SLOT.B);
  net.run(120_000, note);
  t.equal(times.length, 18, 'initiations at 0, 5, …, 85 s: 18');
  t.same(times.slice(0, 4), [100, 5100, 10100, 15100], 'every REKEY_TIMEOUT (jitter 0), from the tick that saw WANT');
  t.equal(times.at(-1), 85_100);
  const st = A.sessions.stats();
  t.equal(st.handshakeGiveUps, 1);
  t.equal(st.peers[0]?.handshakePending, false);
  const indices = net.sent('A', 1).map((p) => p.msg.readUInt32LE(4));
  t.equal(new Set(indices).size, 21, 'a new sender index per initiation');
  t.equal(A.table.slotsInUse, 1, 'only the last one still reserved');

  // Traffic wants a session again: a new attempt at once.
  A.cWant(SLOT.B);
  net.run(100);
  t.equal(net.sent('A', 1).length, 22);

  // Jitter: up to 333 ms on top of REKEY_TIMEOUT (the next retransmission is scheduled when one is sent).
  net.jitter = 0.9999;
  const sends: number[] = [];
  let count = net.sent('A', 1).length;
  net.run(12_000, () => { const n = net.sent('A', 1).length; if (n > count) { sends.push(net.now); count = n; } });
  t.equal(sends.length, 2);
  t.equal((sends[1] as number) - (sends[0] as number), 5_400, 'REKEY_TIMEOUT + 333 ms, seen at the next 100 ms tick');
});

t.test('a burst of new peers is greeted EAGER_INITIATIONS_PER_TICK per tick', async (t) => {
  let now = 0;
  const count = 3 * EAGER_INITIATIONS_PER_TICK + 5;
  const table = new WgTable(256, count, WIREGUARD_TIMERS, () => now);
  const sent: Buffer[] = [];
  const sessions = new WireGuardSessions({
    privateKey: wg.generateKeyPair().privateKey, table, log, now: () => now, random: () => 0,
    send: (msg) => { sent.push(Buffer.from(msg)); },
    counters: () => ({ txPackets: 0n, rxPackets: 0n, rxKeepalives: 0n }),
  });
  t.teardown(() => sessions.close());
  sessions.setPeers(Array.from({ length: count }, (_, i) => ({
    key: `10.250.${i}.0/24`, publicKey: wg.generateKeyPair().publicKey, slot: i, subnet: ((10 << 24) | (250 << 16) | (i << 8)) >>> 0,
    endpointIp: IP.B, endpointPort: PORT, keepaliveSeconds: 0,
  })));
  t.equal(sent.length, 0, 'nothing sent from setPeers for a burst');
  now += 100;
  sessions.tick();
  t.equal(sent.length, EAGER_INITIATIONS_PER_TICK, 'one tick greets a batch');
  for (let i = 0; i < 3; i++) { now += 100; sessions.tick(); }
  t.equal(sent.length, count, 'the rest over the next ticks');
  t.ok(sent.every((m) => m[0] === wg.MESSAGE_INITIATION && m.length === 148), 'initiations');
});

t.test('rekey: WANT after REKEY_AFTER_TIME starts a new handshake; rotation retires the oldest', async (t) => {
  const { net, A, B, peerOf } = setup();
  net.filter = (p) => !(p.from === 'B' && p.msg[0] === wg.MESSAGE_INITIATION);
  B.sessions.setPeers([peerOf(A)]);
  A.sessions.setPeers([peerOf(B)]);
  net.pump();
  net.filter = () => true;
  const first = A.live()[0] as RawKp;
  B.cConfirm(SLOT.A, first.remoteIndex);
  net.run(120_000);
  t.equal(net.sent('A', 1).length, 1, 'no initiation without a reason');
  A.cWant(SLOT.B); // C TX: the initiator keypair is older than REKEY_AFTER_TIME
  net.run(100);
  t.equal(net.sent('A', 1).length, 2, 'WANT: a new initiation');
  const second = A.live().find((k) => k.localIndex !== first.localIndex) as RawKp;
  t.ok(second, 'a second keypair');
  t.equal(A.currentRaw(SLOT.B), (second.localIndex & (KP_CAP - 1)) + 1, 'the new keypair is current');
  t.equal(A.byIndex(first.localIndex).state, 1, 'the old one stays as previous');
  A.cWant(SLOT.B);
  net.run(100);
  t.equal(net.sent('A', 1).length, 2, 'at most one initiation per REKEY_TIMEOUT');

  // B confirms the second one; a third handshake retires the first everywhere.
  B.cConfirm(SLOT.A, second.remoteIndex);
  net.run(5_000);
  A.cWant(SLOT.B);
  net.run(100);
  t.equal(net.sent('A', 1).length, 3);
  t.equal(A.byIndex(first.localIndex).state, 1, "A's oldest still decrypts for RETIRE_GRACE_MS (B may still send on it)");
  t.equal(A.byIndex(first.localIndex).flags & WG_KEYPAIR_FLAGS.NEXT, 0, 'but can never be promoted');
  B.cConfirm(SLOT.A, (A.live().find((k) => k.localIndex !== first.localIndex && k.localIndex !== second.localIndex) as RawKp).remoteIndex);
  net.run(100);
  t.equal(B.byIndex(first.remoteIndex).state, 1, "B's oldest too, for the grace");
  net.run(RETIRE_GRACE_MS);
  const r = A.byIndex(first.localIndex);
  t.equal(r.state, 0, "A's oldest keypair retired after the grace");
  t.ok(isZero(r.send) && isZero(r.recv), 'its keys zeroed in the SAB');
  t.equal(B.byIndex(first.remoteIndex).state, 0, "B's oldest retired too");
  t.equal(A.live().length, 2);
  t.equal(B.live().length, 2);
});

t.test('as initiator, data received on a keypair older than 165 s: a new handshake', async (t) => {
  const { net, A, B, peerOf } = setup();
  net.filter = (p) => !(p.from === 'B' && p.msg[0] === wg.MESSAGE_INITIATION);
  B.sessions.setPeers([peerOf(A)]);
  A.sessions.setPeers([peerOf(B)]);
  net.pump();
  const kp = A.live()[0] as RawKp;
  // Keep both directions busy so no other timer fires.
  const busy = () => { A.counter(SLOT.B).rxPackets++; A.counter(SLOT.B).txPackets++; };
  net.run(164_900, busy);
  t.equal(net.sent('A', 1).length, 1);
  net.run(200, busy);
  t.equal(net.sent('A', 1).length, 2, 'initiated at 165 s');
  t.not(A.currentRaw(SLOT.B), (kp.localIndex & (KP_CAP - 1)) + 1, 'and switched keypairs');
});

t.test('data sent, nothing received for 15 s: new handshake; keypairs expire at 180 s; erase at 540 s', async (t) => {
  const { net, A, B, peerOf } = setup();
  net.filter = (p) => !(p.from === 'B' && p.msg[0] === wg.MESSAGE_INITIATION);
  B.sessions.setPeers([peerOf(A)]);
  A.sessions.setPeers([peerOf(B)]);
  net.pump();
  const kp = A.live()[0] as RawKp;
  net.nodes.delete(IP.B); // B goes away
  A.counter(SLOT.B).txPackets += 10n;
  net.run(14_900);
  t.equal(net.sent('A', 1).length, 1);
  net.run(200);
  t.equal(net.sent('A', 1).length, 2, 'a new handshake 15 s after unanswered data');
  net.run(180_000 - 15_100 - 100);
  t.equal(A.byIndex(kp.localIndex).state, 1, 'still live at 179.9 s');
  net.run(100);
  const r = A.byIndex(kp.localIndex);
  t.equal(r.state, 0, 'retired at REJECT_AFTER_TIME');
  t.ok(isZero(r.send) && isZero(r.recv), 'keys zeroed');
  t.equal(A.currentRaw(SLOT.B), 0);
  t.equal(A.table.slotsInUse, 1, 'the pending handshake still holds its index');
  net.run(540_000 - 180_000);
  t.equal(A.table.slotsInUse, 0, 'all handshake state erased after 3 × REJECT_AFTER_TIME');
});

t.test('a request and its reply within one tick: a passive keepalive, no new handshake 15 s later', async (t) => {
  const { net, A, B, peerOf } = setup();
  B.sessions.setPeers([peerOf(A)]);
  A.sessions.setPeers([peerOf(B)]);
  net.pump();
  net.run(1_000);
  const initiations = net.sent('A', 1).length + net.sent('B', 1).length;
  const keepalives = net.sent('A', 4).length;
  A.counter(SLOT.B).txPackets += 1n; // a ping out and its reply back, both seen by the same tick
  A.counter(SLOT.B).rxPackets += 1n;
  net.run(20_000);
  t.equal(net.sent('A', 1).length + net.sent('B', 1).length, initiations, 'no handshake after the exchange');
  t.equal(net.sent('A', 4).length, keepalives + 1, 'one passive keepalive, 10 s after the reply');
});

t.test('a changed public key retires the peer\'s keypairs at once; removal too', async (t) => {
  const { net, A, B, peerOf } = setup();
  A.sessions.setPeers([peerOf(B)]);
  B.sessions.setPeers([peerOf(A)]);
  net.pump();
  const had = A.live();
  t.equal(had.length, 2);
  const other = wg.generateKeyPair();
  A.sessions.setPeers([peerOf(B, other.publicKey)]);
  for (const k of had) {
    const r = A.byIndex(k.localIndex);
    t.equal(r.state, 0, 'retired');
    t.ok(isZero(r.send) && isZero(r.recv), 'keys zeroed in the SAB');
  }
  t.equal(A.currentRaw(SLOT.B), 0, 'no current keypair');
  t.equal(net.sent('A', 1).length, 2, 'an eager handshake to the new key');
  net.pump();
  t.equal(B.sessions.stats().drops.bad_mac1, 1, 'B is not the new key: mac1 fails there');
  t.equal(A.sessions.stats().peers[0]?.publicKey, other.publicKey.toString('base64'));

  const bKeys = B.live();
  B.sessions.setPeers([]);
  t.same(B.live(), [], 'removal retires every keypair');
  for (const k of bKeys) t.ok(isZero(B.byIndex(k.localIndex).send), 'zeroed');
  t.same(B.sessions.stats().peers, []);
  A.sessions.close();
  t.same(A.live(), []);
  t.equal(A.table.slotsInUse, 0);
});

t.test('a replayed initiation is dropped and counted; an unknown key too', async (t) => {
  const { net, A, B, peerOf } = setup();
  net.filter = (p) => !(p.from === 'B' && p.msg[0] === wg.MESSAGE_INITIATION);
  B.sessions.setPeers([peerOf(A)]);
  A.sessions.setPeers([peerOf(B)]);
  net.pump();
  const init = net.sent('A', 1)[0]?.msg as Buffer;
  const liveBefore = B.live().map((k) => k.localIndex);
  net.now += 1000;
  B.sessions.handleMessage(init, IP.A, PORT);
  t.equal(B.sessions.stats().drops.replayed_initiation, 1);
  t.equal(net.sent('B', 2).length, 1, 'no second response');
  t.same(B.live().map((k) => k.localIndex), liveBefore, 'no new keypair');

  // The same replay after the peer was removed and re-added is still refused.
  B.sessions.setPeers([]);
  B.sessions.setPeers([peerOf(A)]);
  net.wire.length = 0;
  net.now += 1000;
  B.sessions.handleMessage(init, IP.A, PORT);
  t.equal(B.sessions.stats().drops.replayed_initiation, 2, 'remembered across a removal');

  // An initiation from a key that holds no lease.
  const stranger = wg.generateKeyPair();
  const m = wg.createInitiation(stranger, wg.handshakePeer(A.keys.publicKey, undefined, new wg.MacGenerator(A.keys.publicKey)), { localIndex: 7, timestamp: new wg.TimestampSource().next() });
  A.sessions.handleMessage(m.message, 0x0a0000fe, 4444);
  const s = A.sessions.stats();
  t.equal(s.drops.unknown_peer, 1);
  t.equal(s.sent.response, 0);
  // Junk: a short message, a transport message, a bad mac1.
  A.sessions.handleMessage(Buffer.from([1, 0, 0, 0, 1]), IP.B, PORT);
  A.sessions.handleMessage(Buffer.alloc(32, 0).fill(4, 0, 1), IP.B, PORT);
  const bad = Buffer.from(m.message); bad[120] = (bad[120] as number) ^ 1;
  A.sessions.handleMessage(bad, IP.B, PORT);
  const d = A.sessions.stats().drops;
  t.equal(d.malformed, 2);
  t.equal(d.bad_mac1, 1);
  // A response nobody waits for.
  const resp = net.sent('B', 2)[0]?.msg as Buffer;
  A.sessions.handleMessage(resp, IP.B, PORT);
  t.equal(A.sessions.stats().drops.unexpected_response, 1);
});

t.test('wrong PSK: the initiator cannot open the response, counted as a handshake decryption failure', async (t) => {
  const { net, A, B, peerOf } = setup({ pskA: Buffer.alloc(32, 1), pskB: Buffer.alloc(32, 2) });
  net.filter = (p) => !(p.from === 'B' && p.msg[0] === wg.MESSAGE_INITIATION);
  B.sessions.setPeers([peerOf(A)]);
  A.sessions.setPeers([peerOf(B)]);
  net.pump();
  t.equal(net.sent('B', 2).length, 1, 'B responded (a responder cannot see the PSK mismatch)');
  t.equal(A.sessions.stats().drops.handshake_decrypt, 1);
  t.same(A.live(), [], 'A installed nothing');
  t.equal(A.currentRaw(SLOT.B), 0);
  t.equal(A.sessions.stats().peers[0]?.handshakePending, true, 'still pending: A will retry');
});

t.test('under load: no mac2 → cookie reply only; the retry carries mac2 and succeeds; then the rate limit', async (t) => {
  const { net, A, B, peerOf } = setup({ loadB: 0 }); // B always under load
  net.filter = (p) => !(p.from === 'B' && p.msg[0] === wg.MESSAGE_INITIATION);
  B.sessions.setPeers([peerOf(A)]);
  A.sessions.setPeers([peerOf(B)]);
  net.pump();
  let sb = B.sessions.stats();
  t.equal(sb.drops.bad_mac2, 1, 'no mac2 under load');
  t.equal(sb.sent.cookieReply, 1, 'a cookie reply');
  t.equal(sb.sent.response, 0, 'and nothing else');
  t.same(B.live(), []);
  const first = net.sent('A', 1)[0]?.msg as Buffer;
  t.ok(isZero(first.subarray(132)), 'the first initiation has no mac2');
  t.equal(A.sessions.stats().received.cookieReply, 1);
  t.equal(A.sessions.stats().drops.unexpected_cookie_reply + A.sessions.stats().drops.bad_cookie_reply, 0, 'A consumed it');

  net.run(5_000);
  const retry = net.sent('A', 1)[1]?.msg as Buffer;
  t.ok(retry, 'A retried after REKEY_TIMEOUT');
  t.notOk(isZero(retry.subarray(132)), 'the retry carries mac2');
  sb = B.sessions.stats();
  t.equal(sb.sent.response, 1, 'B answered the retry');
  t.equal(sb.drops.bad_mac2, 1);
  t.equal(A.live().length, 1, 'A completed the handshake');
  t.equal(A.sessions.stats().handshakesCompleted, 1);

  // Valid mac2 from one source IP: burst 5 (the retry took one token), then rate limited.
  for (let i = 0; i < 6; i++) B.sessions.handleMessage(retry, IP.A, PORT);
  sb = B.sessions.stats();
  t.equal(sb.drops.replayed_initiation, 4, '4 more got through the limiter (and are replays)');
  t.equal(sb.drops.rate_limited, 2);
  t.equal(sb.underLoad, true);
});

t.test('at most 50 initiations per second consumed per peer', async (t) => {
  const { net, A, B, peerOf } = setup();
  A.sessions.setPeers([peerOf(B)]);
  const hp = wg.handshakePeer(A.keys.publicKey, undefined, new wg.MacGenerator(A.keys.publicKey));
  const stamps = new wg.TimestampSource();
  const mk = (i: number) => wg.createInitiation(B.keys, hp, { localIndex: 100 + i, timestamp: stamps.next() }).message;
  const m1 = mk(1), m2 = mk(2), m3 = mk(3);
  A.sessions.handleMessage(m1, IP.B, PORT);
  A.sessions.handleMessage(m2, IP.B, PORT); // same ms
  const s = A.sessions.stats();
  t.equal(s.sent.response, 1);
  t.equal(s.drops.initiation_flood, 1);
  net.now += 20;
  A.sessions.handleMessage(m3, IP.B, PORT);
  t.equal(A.sessions.stats().sent.response, 2, '20 ms later: accepted');
});

t.test('roaming: a handshake from a new address moves the endpoint; setPeers puts the lease back', async (t) => {
  const { net, A, B, peerOf } = setup();
  net.filter = (p) => !(p.from === 'A' && p.msg[0] === wg.MESSAGE_INITIATION);
  A.sessions.setPeers([peerOf(B)]);
  B.sessions.setPeers([peerOf(A)]);
  net.pump((p) => (p.from === 'B' ? { ip: 0xc0a80007, port: 34567 } : { ip: IP.A, port: PORT }));
  const st = A.sessions.stats();
  t.equal(st.endpointUpdates, 1);
  t.equal(st.peers[0]?.endpoint, '192.168.0.7:34567');
  const resp = net.sent('A', 2).at(-1) as Packet;
  t.equal(resp.ip, 0xc0a80007, 'the response went to the new address');
  t.equal(resp.port, 34567);
  const u64 = new BigUint64Array(A.table.buffer);
  t.equal(u64[(WG_HEADER.BYTES + SLOT.B * WG_PEER.BYTES + WG_PEER.ENDPOINT) / 8], (0xc0a80007n << 16n) | 34567n, 'WGP_ENDPOINT as C writes it');
  A.sessions.setPeers([peerOf(B)]);
  t.equal(u64[(WG_HEADER.BYTES + SLOT.B * WG_PEER.BYTES + WG_PEER.ENDPOINT) / 8], 0n, 'reset to the lease');
  t.equal(A.sessions.stats().peers[0]?.endpoint, '10.0.0.2:51820');
});

t.test('persistent keepalive every N seconds', async (t) => {
  const { net, A, B, peerOf } = setup({ keepalive: 25 });
  net.filter = (p) => !(p.from === 'B' && p.msg[0] === wg.MESSAGE_INITIATION);
  B.sessions.setPeers([peerOf(A)]);
  A.sessions.setPeers([peerOf(B)]);
  net.pump();
  net.filter = () => true;
  t.equal(B.cInbox.length, 1, 'the handshake keepalive');
  B.cConfirm(SLOT.A, (B.live()[0] as RawKp).localIndex); // C on B received it: B's handshake completes too
  B.counter(SLOT.A).rxKeepalives++;
  net.run(24_900);
  t.equal(B.cInbox.length, 1);
  net.run(200);
  t.equal(B.cInbox.length, 2, 'a persistent keepalive 25 s after the last packet');
  t.equal(B.open(B.cInbox[1] as Buffer).counter, 1n);
});

t.test('a peer without a counter slot: no handshake either way until it gets one', async (t) => {
  const { net, A, B, peerOf } = setup();
  A.sessions.setPeers([{ ...peerOf(B), slot: undefined }]);
  t.equal(net.sent('A', 1).length, 0, 'no initiation without a slot');
  B.sessions.setPeers([peerOf(A)]);
  net.pump();
  t.equal(A.sessions.stats().drops.peer_without_slot, 1, "B's initiation dropped");
  t.equal(net.sent('A', 2).length, 0);
  net.now += 1000;
  A.sessions.setPeers([peerOf(B)]);
  t.equal(net.sent('A', 1).length, 1, 'the slot arrived: an eager handshake');
  net.pump();
  t.equal(A.live().length, 1);
  // B's first initiation was not accepted, so its timestamp did not raise the replay bar: B's retry works.
  net.run(5_000);
  t.equal(A.sessions.stats().drops.replayed_initiation, 0);
  t.equal(A.sessions.stats().sent.response, 1, "B's retry was answered");
});
