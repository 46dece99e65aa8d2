// One peer's handshake state, keypair bookkeeping and timers (wireguard-go device/timers.go, whitepaper
// §6), driven by WireGuardSessions: handshake messages arrive through it, tick() every ~100 ms.
//
// Keypairs: current (C sends with it: WGP_CURRENT), previous (still received on), next (a responder's
// keypair that C promotes to current on the peer's first packet; tick() notices and rotates).
// Timer events come from the per-peer counters C keeps (data sent, data received, keepalives received),
// read as changes between ticks.
import type { Logger } from 'pino';
import {
  aeadSeal, createInitiation, createResponse, encodeTransport, handshakePeer, MacGenerator, consumeResponse,
  type CookieChecker, type HandshakePeer, type InitiatorState, type KeyPair, type ResponderState, type TimestampSource,
  type TransportKeypair,
} from '../protocol/index.js';
import type { WireGuardTimers } from './session-timers.js';
import type { DropReason, MessageCounts } from './session-stats.js';
import { endpointText } from './session-stats.js';
import type { Endpoint, WgIp, WgTable } from './wg-table.js';

export interface WireGuardPeer {
  /** Stable identity of the peer (the PeerTable key, e.g. its subnet as text). */
  readonly key: string;
  readonly publicKey: Buffer;
  /** The peer's counter slot (PeerTable.slotOf); undefined: no counters yet, so no session is possible. */
  readonly slot: number | undefined;
  /** The peer's subnet (host order), the allowed inner sources (family 6: wgSubnetFold6 of its IPv6 subnet). */
  readonly subnet: number;
  /** The lease's endpoint: IPv4 as a host-order number, IPv6 (family 6) as a bigint. */
  readonly endpointIp: WgIp;
  readonly endpointPort: number;
  /** Persistent keepalive interval; 0: off. */
  readonly keepaliveSeconds: number;
}

export interface PeerCounters {
  readonly txPackets: bigint;
  readonly rxPackets: bigint;
  readonly rxKeepalives: bigint;
}

/** What every PeerSession shares: WireGuardSessions owns it. */
export interface SessionContext {
  readonly local: KeyPair;
  readonly presharedKey: Buffer | undefined;
  readonly checker: CookieChecker;
  readonly stamps: TimestampSource;
  readonly table: WgTable;
  readonly timers: WireGuardTimers;
  readonly now: () => number;
  readonly wallNow: () => number;
  readonly random: () => number;
  readonly log: Logger;
  readonly send: (msg: Uint8Array, ip: WgIp, port: number) => void;
  readonly counters: (slot: number) => PeerCounters;
  /** Local index → the peer that owns it (pending initiations and our keypairs). */
  readonly owners: Map<number, PeerSession>;
  readonly stats: SessionCounters;
}

export interface SessionCounters {
  sent: MessageCounts & { keepalive: number };
  received: MessageCounts & { other: number };
  drops: Record<DropReason, number>;
  handshakesCompleted: number;
  handshakeGiveUps: number;
  endpointUpdates: number;
}

interface Keypair {
  readonly index: number;
  readonly remoteIndex: number;
  readonly sendKey: Buffer;
  readonly initiator: boolean;
}

interface Pending {
  readonly index: number;
  readonly state: InitiatorState;
}

const EMPTY = new Uint8Array(0);
/** wireguard-go HandshakeInitationRate: at most 50 initiations per second consumed per peer. */
export const INITIATION_MIN_INTERVAL_MS = 1000 / 50;
/** A speculative handshake (a new peer) is sent 3 times, 5 s apart (REKEY_TIMEOUT), then waits for traffic. */
export const EAGER_ATTEMPT_MS = 14_000;
/** How long a keypair pushed out by a rotation still decrypts what the peer sent on it. */
export const RETIRE_GRACE_MS = 10_000;

export class PeerSession {
  readonly hp: HandshakePeer;
  config: WireGuardPeer;
  current: Keypair | undefined;
  previous: Keypair | undefined;
  next: Keypair | undefined;
  private pending: Pending | undefined;
  /** Keypairs rotated out, still open for receiving until `at` (retireLater). */
  private readonly retiring: Array<{ readonly kp: Keypair; readonly at: number }> = [];

  // timers (ctx.now ms; undefined: not armed)
  private lastInitiationSentAt = -Infinity;
  private attemptStartedAt: number | undefined;
  /** How long the current attempt retries: REKEY_ATTEMPT_TIME, or EAGER_ATTEMPT_MS for a speculative one. */
  private attemptLimitMs = Infinity;
  private attemptEager = false;
  private retransmitAt: number | undefined;
  private newHandshakeAt: number | undefined;
  private sendKeepaliveAt: number | undefined;
  private needAnotherKeepalive = false;
  private persistentAt: number | undefined;
  private zeroKeyMaterialAt: number | undefined;
  private sentLastMinuteHandshake = false;
  lastInitiationConsumedAt = -Infinity;
  lastHandshakeAt: number | undefined;
  lastHandshakeWall = 0;
  private seen: PeerCounters | undefined;

  constructor(private readonly ctx: SessionContext, config: WireGuardPeer, lastTimestamp: Buffer | undefined) {
    this.config = config;
    this.hp = handshakePeer(Buffer.from(config.publicKey), ctx.presharedKey, new MacGenerator(config.publicKey, ctx.now));
    this.hp.lastTimestamp = lastTimestamp;
    if (config.slot !== undefined) {
      ctx.table.resetPeer(config.slot);
      const c = ctx.counters(config.slot);
      this.seen = { txPackets: c.txPackets, rxPackets: c.rxPackets, rxKeepalives: c.rxKeepalives };
    }
    this.armPersistent();
  }

  get slot(): number | undefined { return this.config.slot; }
  get pendingIndex(): number | undefined { return this.pending?.index; }
  get handshakePending(): boolean { return this.retransmitAt !== undefined; }

  /** Endpoint and keepalive changes (identity changes replace the session instead). */
  update(config: WireGuardPeer): void {
    const keepaliveChanged = config.keepaliveSeconds !== this.config.keepaliveSeconds;
    this.config = config;
    if (keepaliveChanged) {
      this.persistentAt = undefined;
      this.armPersistent();
    }
  }

  /** Where to send: the roamed endpoint (WGP_ENDPOINT) or the lease's. */
  endpoint(): Endpoint {
    const roamed = this.config.slot === undefined ? undefined : this.ctx.table.endpoint(this.config.slot);
    return roamed ?? { ip: this.config.endpointIp, port: this.config.endpointPort };
  }

  // ---- handshake ----

  /** wireguard-go SendHandshakeInitiation: at most one per REKEY_TIMEOUT; a non-retry restarts the attempt.
   * `eager`: a handshake no packet asked for (a new peer, so its first packets find a session): it retries
   * only for EAGER_ATTEMPT_MS, so thousands of peers that are not up yet cost a few initiations each, not
   * one every 5 s for 90 s; traffic to the peer then starts a full attempt. */
  initiate(isRetry: boolean, eager = false): void {
    const { ctx } = this;
    const now = ctx.now();
    if (!isRetry) {
      this.attemptStartedAt = now;
      this.attemptEager = eager;
      this.attemptLimitMs = eager ? EAGER_ATTEMPT_MS : ctx.timers.rekeyAttemptMs;
    }
    if (this.config.slot === undefined) return;
    if (now - this.lastInitiationSentAt < ctx.timers.rekeyTimeoutMs) return;
    this.dropPending();
    let index: number;
    try {
      index = ctx.table.allocateIndex();
    } catch (err) {
      ctx.log.warn({ err, peer: this.config.key }, 'wireguard: no keypair slot for a handshake initiation');
      this.retransmitAt = now + this.retransmitDelay();
      return;
    }
    const { message, state } = createInitiation(ctx.local, this.hp, { localIndex: index, timestamp: ctx.stamps.next() });
    this.pending = { index, state };
    ctx.owners.set(index, this);
    const to = this.endpoint();
    ctx.send(message, to.ip, to.port);
    ctx.stats.sent.initiation++;
    this.lastInitiationSentAt = now;
    if (this.attemptStartedAt === undefined) this.attemptStartedAt = now;
    this.retransmitAt = now + this.retransmitDelay();
    this.traversal();
    this.sendKeepaliveAt = undefined; // any authenticated packet sent
    ctx.log.debug({ peer: this.config.key, index, retry: isRetry }, 'wireguard: handshake initiation sent');
  }

  /** A valid initiation from this peer (consumeInitiation done by the caller): respond, keypair as NEXT. */
  acceptInitiation(state: ResponderState, ip: WgIp, port: number): void {
    const { ctx } = this;
    const slot = this.config.slot as number;
    let index: number;
    try {
      index = ctx.table.allocateIndex();
    } catch (err) {
      zeroResponder(state);
      throw err;
    }
    this.noteSource(ip, port);
    this.anyAuthenticatedReceived();
    this.traversal();
    const { message, keypair } = createResponse(state, { localIndex: index });
    zeroResponder(state);
    ctx.table.install(index, {
      peerSlot: slot, peerSubnet: this.config.subnet, remoteIndex: keypair.remoteIndex,
      sendKey: keypair.sendKey, recvKey: keypair.receiveKey, initiator: false, next: true,
    });
    const kp = this.record(keypair);
    // wireguard-go BeginSymmetricSession (responder): the new one is next; the old next and previous go.
    this.retireLater(this.next);
    this.retireLater(this.previous);
    this.previous = undefined;
    this.next = kp;
    ctx.send(message, ip, port);
    ctx.stats.sent.response++;
    this.traversal();
    this.sendKeepaliveAt = undefined;
    this.sessionDerived();
    ctx.log.debug({ peer: this.config.key, index, remoteIndex: kp.remoteIndex }, 'wireguard: handshake response sent');
  }

  /** A response to our pending initiation: throws (WireGuardError) when it does not verify. */
  acceptResponse(msg: Uint8Array, ip: WgIp, port: number): void {
    const { ctx } = this;
    const pending = this.pending;
    const slot = this.config.slot;
    if (!pending || slot === undefined) return;
    const keypair = consumeResponse(ctx.local, ctx.checker, pending.state, msg);
    zeroInitiator(pending.state);
    this.pending = undefined;
    this.noteSource(ip, port);
    this.anyAuthenticatedReceived();
    this.traversal();
    ctx.table.install(pending.index, {
      peerSlot: slot, peerSubnet: this.config.subnet, remoteIndex: keypair.remoteIndex,
      sendKey: keypair.sendKey, recvKey: keypair.receiveKey, initiator: true, next: false,
    });
    const kp = this.record(keypair);
    // wireguard-go BeginSymmetricSession (initiator): a pending next becomes previous (no longer
    // promotable), else current does; whatever falls out is retired. CURRENT moves first, so TX never
    // sees a gap.
    const old = { current: this.current, previous: this.previous, next: this.next };
    ctx.table.setCurrent(slot, kp.index);
    this.current = kp;
    this.next = undefined;
    if (old.next) {
      ctx.table.clearNext(old.next.index);
      this.previous = old.next;
      this.retireLater(old.current);
    } else {
      this.previous = old.current;
    }
    this.retireLater(old.previous);
    this.handshakeComplete();
    this.sessionDerived();
    ctx.log.debug({ peer: this.config.key, index: kp.index, remoteIndex: kp.remoteIndex }, 'wireguard: handshake complete (initiator)');
    // The responder cannot send before it has a packet from us on this keypair.
    this.sendKeepalive();
  }

  // ---- keepalives ----

  /** An empty transport message on the current keypair; without one, a handshake instead. */
  sendKeepalive(): boolean {
    const { ctx } = this;
    const kp = this.current;
    if (!kp || !ctx.table.isLive(kp.index) || ctx.table.ageMs(kp.index) >= ctx.timers.rejectAfterMs) {
      this.initiate(false);
      return false;
    }
    const counter = ctx.table.nextSendCounter(kp.index);
    const msg = encodeTransport(kp.remoteIndex, counter, aeadSeal(kp.sendKey, counter, EMPTY, EMPTY));
    const to = this.endpoint();
    ctx.send(msg, to.ip, to.port);
    ctx.stats.sent.keepalive++;
    this.traversal();
    this.sendKeepaliveAt = undefined;
    // keepKeyFreshSending
    if (kp.initiator && ctx.table.ageMs(kp.index) >= ctx.timers.rekeyAfterMs) this.initiate(false);
    return true;
  }

  // ---- the tick ----

  tick(): void {
    const { ctx } = this;
    const slot = this.config.slot;
    if (slot === undefined) return;
    const now = ctx.now();
    this.syncCurrent();

    const got = ctx.counters(slot);
    const c: PeerCounters = { txPackets: got.txPackets, rxPackets: got.rxPackets, rxKeepalives: got.rxKeepalives }; // a copy: the caller may reuse its object
    const seen = this.seen ?? c;
    this.seen = c;
    const dataSent = c.txPackets !== seen.txPackets;
    const dataReceived = c.rxPackets !== seen.rxPackets;
    const keepaliveReceived = c.rxKeepalives !== seen.rxKeepalives;
    // Sends first, then receives: when both fell within one tick their order is unknown, and this one
    // ends with the 15 s "no reply" timer cancelled by the receive and a passive keepalive armed (at
    // worst a keepalive too many), never with a new handshake after every request and reply.
    if (dataSent) {
      this.traversal();
      this.sendKeepaliveAt = undefined;
      if (this.newHandshakeAt === undefined) this.newHandshakeAt = now + ctx.timers.keepaliveTimeoutMs + ctx.timers.rekeyTimeoutMs + this.jitter();
    }
    if (dataReceived || keepaliveReceived) {
      this.anyAuthenticatedReceived();
      this.traversal();
    }
    if (dataReceived) {
      if (this.sendKeepaliveAt === undefined) this.sendKeepaliveAt = now + ctx.timers.keepaliveTimeoutMs;
      else this.needAnotherKeepalive = true;
      this.keepKeyFreshReceiving();
    }

    if (ctx.table.takeFlags(slot).wantHandshake) this.initiate(false);

    if (this.retransmitAt !== undefined && now >= this.retransmitAt) this.expiredRetransmit(now);
    if (this.sendKeepaliveAt !== undefined && now >= this.sendKeepaliveAt) {
      this.sendKeepaliveAt = undefined;
      this.sendKeepalive();
      if (this.needAnotherKeepalive) {
        this.needAnotherKeepalive = false;
        this.sendKeepaliveAt = now + ctx.timers.keepaliveTimeoutMs;
      }
    }
    if (this.newHandshakeAt !== undefined && now >= this.newHandshakeAt) {
      this.newHandshakeAt = undefined;
      ctx.log.debug({ peer: this.config.key }, 'wireguard: data sent but nothing received: new handshake');
      this.initiate(false);
    }
    if (this.persistentAt !== undefined && now >= this.persistentAt) {
      this.persistentAt = undefined;
      this.sendKeepalive();
      this.armPersistent();
    }
    this.expireKeypairs();
    while (this.retiring.length > 0 && now >= (this.retiring[0] as { at: number }).at) this.retireKeypair(this.retiring.shift()?.kp);
    if (this.zeroKeyMaterialAt !== undefined && now >= this.zeroKeyMaterialAt) {
      this.zeroKeyMaterialAt = undefined;
      ctx.log.debug({ peer: this.config.key }, 'wireguard: no handshake for 3 × REJECT_AFTER_TIME: key material erased');
      this.eraseAll();
    }
  }

  /** C promotes a NEXT keypair to WGP_CURRENT on the peer's first packet: rotate the bookkeeping. A
   * CURRENT naming anything else (a race with a retire or a demotion) is put back to ours. */
  syncCurrent(): void {
    const slot = this.config.slot;
    if (slot === undefined) return;
    const { table } = this.ctx;
    const cur = table.currentSlot(slot);
    if (this.next && cur === table.slotOf(this.next.index)) {
      const confirmed = this.next;
      this.retireLater(this.previous);
      this.previous = this.current;
      this.current = confirmed;
      this.next = undefined;
      this.handshakeComplete();
      this.ctx.log.debug({ peer: this.config.key, index: confirmed.index }, 'wireguard: handshake complete (responder, confirmed by the data path)');
      return;
    }
    const ours = this.current === undefined ? undefined : table.slotOf(this.current.index);
    if (cur !== ours) table.replaceCurrent(slot, cur, this.current?.index);
  }

  /** Retires every keypair, drops the pending handshake and erases its secrets (the last accepted
   * initiation timestamp stays: it guards against replays). */
  eraseAll(): void {
    for (const r of this.retiring.splice(0)) this.retireKeypair(r.kp);
    this.retireKeypair(this.current);
    this.retireKeypair(this.previous);
    this.retireKeypair(this.next);
    this.current = this.previous = this.next = undefined;
    this.dropPending();
    this.retransmitAt = undefined;
    this.attemptStartedAt = undefined;
  }

  /** The peer goes (removed, or its identity changed). */
  destroy(): void {
    this.eraseAll();
    if (this.config.slot !== undefined) this.ctx.table.resetPeer(this.config.slot);
    this.sendKeepaliveAt = this.newHandshakeAt = this.persistentAt = this.zeroKeyMaterialAt = undefined;
  }

  // ---- internals ----

  private expiredRetransmit(now: number): void {
    const { ctx } = this;
    if (now - (this.attemptStartedAt ?? now) >= Math.min(this.attemptLimitMs, ctx.timers.rekeyAttemptMs)) {
      this.retransmitAt = undefined;
      if (this.attemptEager) {
        ctx.log.debug({ peer: this.config.key }, 'wireguard: no answer to the first handshakes with a new peer: waiting for traffic to it');
        return;
      }
      ctx.stats.handshakeGiveUps++;
      ctx.log.info({ peer: this.config.key }, 'wireguard: handshake did not complete within REKEY_ATTEMPT_TIME: giving up');
      if (this.zeroKeyMaterialAt === undefined) this.zeroKeyMaterialAt = now + 3 * ctx.timers.rejectAfterMs;
      return;
    }
    this.initiate(true);
  }

  private keepKeyFreshReceiving(): void {
    const { ctx } = this;
    const kp = this.current;
    if (!kp || !kp.initiator || this.sentLastMinuteHandshake) return;
    const limit = ctx.timers.rejectAfterMs - ctx.timers.keepaliveTimeoutMs - ctx.timers.rekeyTimeoutMs;
    if (ctx.table.ageMs(kp.index) >= limit) {
      this.sentLastMinuteHandshake = true;
      this.initiate(false);
    }
  }

  private expireKeypairs(): void {
    const { table, timers } = this.ctx;
    const old = (kp: Keypair | undefined) => kp !== undefined && table.ageMs(kp.index) >= timers.rejectAfterMs;
    if (old(this.previous)) { this.retireKeypair(this.previous); this.previous = undefined; }
    if (old(this.next)) { this.retireKeypair(this.next); this.next = undefined; }
    if (old(this.current)) { this.retireKeypair(this.current); this.current = undefined; }
  }

  /** A keypair a rotation pushed out: it stops being promotable at once, but stays open for receiving
   * for RETIRE_GRACE_MS, because the peer may still be sending on it. When both ends rekey at once
   * (two handshakes crossing), each retires the keypair the other sends on until its own handshake
   * completes; retiring it at once dropped those packets (unknown_index) at every rekey. */
  private retireLater(kp: Keypair | undefined): void {
    if (!kp) return;
    this.ctx.table.clearNext(kp.index);
    this.retiring.push({ kp, at: this.ctx.now() + RETIRE_GRACE_MS });
  }

  private retireKeypair(kp: Keypair | undefined): void {
    if (!kp) return;
    this.ctx.table.retire(kp.index); // also clears WGP_CURRENT if it still names it
    kp.sendKey.fill(0);
    this.ctx.owners.delete(kp.index);
  }

  private dropPending(): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    zeroInitiator(p.state);
    this.ctx.table.releaseIndex(p.index);
    this.ctx.owners.delete(p.index);
  }

  /** Keeps the send key (for keepalives); the receive key lives only in the table. */
  private record(k: TransportKeypair): Keypair {
    k.receiveKey.fill(0);
    this.ctx.owners.set(k.localIndex, this);
    return { index: k.localIndex, remoteIndex: k.remoteIndex, sendKey: k.sendKey, initiator: k.isInitiator };
  }

  /** A valid handshake message from an address that is not the current endpoint: roam (as C does for data). */
  private noteSource(ip: WgIp, port: number): void {
    const slot = this.config.slot;
    if (slot === undefined) return;
    const ep = this.endpoint();
    const src = typeof ip === 'number' ? ip >>> 0 : ip;
    if (ep.ip === src && ep.port === port) return;
    this.ctx.table.setEndpoint(slot, src, port);
    this.ctx.stats.endpointUpdates++;
    this.ctx.log.info({ peer: this.config.key, from: endpointText(ep.ip, ep.port), to: endpointText(src, port) }, 'wireguard: peer endpoint moved');
  }

  private handshakeComplete(): void {
    this.retransmitAt = undefined;
    this.attemptStartedAt = undefined;
    this.sentLastMinuteHandshake = false;
    this.lastHandshakeAt = this.ctx.now();
    this.lastHandshakeWall = this.ctx.wallNow();
    this.ctx.stats.handshakesCompleted++;
  }

  private sessionDerived(): void {
    this.zeroKeyMaterialAt = this.ctx.now() + 3 * this.ctx.timers.rejectAfterMs;
  }

  private anyAuthenticatedReceived(): void {
    this.newHandshakeAt = undefined;
  }

  /** Any authenticated packet in either direction restarts the persistent keepalive. */
  private traversal(): void {
    if (this.config.keepaliveSeconds > 0) this.persistentAt = this.ctx.now() + this.config.keepaliveSeconds * 1000;
  }

  private armPersistent(): void {
    if (this.config.keepaliveSeconds > 0 && this.persistentAt === undefined) this.persistentAt = this.ctx.now() + this.config.keepaliveSeconds * 1000;
  }

  private retransmitDelay(): number {
    return this.ctx.timers.rekeyTimeoutMs + this.jitter();
  }

  private jitter(): number {
    return Math.floor(this.ctx.random() * (this.ctx.timers.rekeyJitterMs + 1));
  }
}

function zeroInitiator(s: InitiatorState): void {
  s.ephemeral.privateKey.fill(0);
  s.chainingKey.fill(0);
  s.hash.fill(0);
}

function zeroResponder(s: ResponderState): void {
  s.chainingKey.fill(0);
  s.hash.fill(0);
}
