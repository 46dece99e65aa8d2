// WireGuardSessions: the handshake side of the wireguard backend, on the main thread. The C packet
// loops encrypt and decrypt with the keypairs published in the WgTable; this class runs the Noise
// handshakes (handshake messages arrive through handleMessage, from the HandshakeQueue), the timers
// (tick(), every ~100 ms) and keepalives, and keeps the table in step with the lease-derived peer list.
//
// Handshake messages pass, in order: size/type → mac1 → (under load: mac2, else a cookie reply; then a
// per-source-IP rate limit) → the handshake itself. Every drop is counted by reason.
import type { Logger } from 'pino';
import {
  consumeInitiation, CookieChecker, decodeCookieReply, decodeResponse, isWireGuardError, KEY_LEN, keyPairFromPrivate,
  MESSAGE_COOKIE_REPLY, MESSAGE_INITIATION, MESSAGE_RESPONSE, messageType, TimestampSource, WireGuardError,
  type KeyPair, type MessageType,
} from '../protocol/index.js';
import { LoadDetector, UNDER_LOAD_THRESHOLD } from './load-detector.js';
import { INITIATION_MIN_INTERVAL_MS, PeerSession, type PeerCounters, type SessionContext, type SessionCounters, type WireGuardPeer } from './peer-session.js';
import { SourceRateLimiter } from './rate-limiter.js';
import { endpointText, ipText, zeroDrops, type DropReason, type PeerSessionStats, type WireGuardSessionStats } from './session-stats.js';
import { monotonicMs } from './session-timers.js';
import type { WgIp, WgTable } from './wg-table.js';

export type { WireGuardPeer, PeerCounters } from './peer-session.js';

export interface WireGuardSessionsOptions {
  readonly privateKey: Buffer;
  readonly presharedKey?: Buffer;
  readonly table: WgTable;
  /** Sends a handshake message or keepalive from the WireGuard listen socket. */
  /** Sends one message to ip:port (an IPv4 number, or an IPv6 bigint in a family-6 network). */
  readonly send: (msg: Uint8Array, ip: WgIp, port: number) => void;
  /** The peer's counters summed over the workers: data packets sent, data packets received (keepalives
   * not included), authenticated keepalives received. */
  readonly counters: (slot: number) => PeerCounters;
  readonly log: Logger;
  /** Monotonic ms (default process.hrtime). */
  readonly now?: () => number;
  /** Unix ms, only for the reported time of the last handshake (default Date.now). */
  readonly wallNow?: () => number;
  /** [0, 1), for timer jitter (default Math.random). */
  readonly random?: () => number;
  /** Handshake messages per second above which we are under load (cookies demanded). */
  readonly underLoadThreshold?: number;
}

/** New peers get their first (eager) handshake from tick(), this many per tick (100 ms): 5000 new peers
 * take 25 s, and the event loop never stalls for more than ~15 ms of X25519. */
export const EAGER_INITIATIONS_PER_TICK = 20;

/** Initiation timestamps remembered for peers that went away, so a replay cannot be answered after a re-add. */
const TIMESTAMP_MEMORY = 65536;

export class WireGuardSessions {
  private readonly ctx: SessionContext;
  private readonly counts: SessionCounters;
  private readonly byKey = new Map<string, PeerSession>();
  private readonly byPublicKey = new Map<string, PeerSession>();
  private readonly timestampMemory = new Map<string, Buffer>();
  private readonly load: LoadDetector;
  private readonly limiter = new SourceRateLimiter();
  private readonly eager: PeerSession[] = [];
  private closed = false;

  constructor(opts: WireGuardSessionsOptions) {
    if (opts.privateKey.length !== KEY_LEN) throw new WireGuardError('FLN_ERR_WG_BAD_KEY', 'private key must be 32 bytes');
    if (opts.presharedKey !== undefined && opts.presharedKey.length !== KEY_LEN) throw new WireGuardError('FLN_ERR_WG_BAD_KEY', 'preshared key must be 32 bytes');
    const now = opts.now ?? monotonicMs;
    const local: KeyPair = keyPairFromPrivate(opts.privateKey);
    this.counts = {
      sent: { initiation: 0, response: 0, cookieReply: 0, keepalive: 0 },
      received: { initiation: 0, response: 0, cookieReply: 0, other: 0 },
      drops: zeroDrops(),
      handshakesCompleted: 0,
      handshakeGiveUps: 0,
      endpointUpdates: 0,
    };
    this.ctx = {
      local,
      presharedKey: opts.presharedKey === undefined ? undefined : Buffer.from(opts.presharedKey),
      checker: new CookieChecker(local.publicKey, now),
      stamps: new TimestampSource(),
      table: opts.table,
      timers: opts.table.timers,
      now,
      wallNow: opts.wallNow ?? Date.now,
      random: opts.random ?? Math.random,
      log: opts.log,
      send: opts.send,
      counters: opts.counters,
      owners: new Map(),
      stats: this.counts,
    };
    this.load = new LoadDetector(opts.underLoadThreshold ?? UNDER_LOAD_THRESHOLD);
  }

  get publicKey(): Buffer { return Buffer.from(this.ctx.local.publicKey); }

  /**
   * Replaces the peer list. New peers (with a slot) get an eager handshake; a removed peer, or one whose
   * public key, slot or subnet changed, has its keypairs retired and its handshake state erased at once.
   * Every call resets roamed endpoints to the leases' (flannel #1770).
   */
  setPeers(peers: readonly WireGuardPeer[]): void {
    if (this.closed) return;
    const wanted = new Map<string, WireGuardPeer>();
    for (const p of peers) {
      if (p.publicKey.length !== KEY_LEN) throw new WireGuardError('FLN_ERR_WG_BAD_KEY', `peer ${p.key}: public key must be 32 bytes`);
      wanted.set(p.key, p);
    }
    for (const [key, s] of [...this.byKey]) {
      const p = wanted.get(key);
      const same = p !== undefined && p.publicKey.equals(s.config.publicKey) && p.slot === s.config.slot && p.subnet === s.config.subnet;
      if (!same) this.remove(s, p === undefined ? 'removed' : 'changed');
    }
    for (const p of wanted.values()) {
      const existing = this.byKey.get(p.key);
      if (existing) {
        existing.update(p);
        continue;
      }
      const pub = p.publicKey.toString('base64');
      const holder = this.byPublicKey.get(pub);
      if (holder) {
        this.ctx.log.warn({ peer: p.key, holder: holder.config.key, publicKey: pub }, 'wireguard: two leases carry one public key; the second is ignored');
        continue;
      }
      const s = new PeerSession(this.ctx, p, this.timestampMemory.get(pub));
      this.timestampMemory.delete(pub);
      this.byKey.set(p.key, s);
      this.byPublicKey.set(pub, s);
      this.eager.push(s);
    }
    for (const s of this.byKey.values()) if (s.slot !== undefined) this.ctx.table.resetEndpoint(s.slot);
    // A few new peers (a node joining) are greeted at once; a burst (a restart among thousands) from tick().
    if (this.eager.length <= EAGER_INITIATIONS_PER_TICK) this.greet(this.eager.length);
  }

  /** Sends the first handshake to up to n queued new peers that have no session yet. */
  private greet(n: number): void {
    while (n > 0 && this.eager.length > 0) {
      const s = this.eager.shift() as PeerSession;
      if (this.byKey.get(s.config.key) !== s || s.current || s.next || s.handshakePending) continue;
      s.initiate(false, true);
      n--;
    }
  }

  /** One handshake message (type 1, 2 or 3) from ip:port (host-order IPv4, or an IPv6 bigint). */
  handleMessage(msg: Uint8Array, ip: WgIp, port: number): void {
    if (this.closed) return;
    let type: MessageType;
    try {
      type = messageType(msg);
    } catch {
      this.counts.received.other++;
      this.drop('malformed');
      return;
    }
    try {
      if (type === MESSAGE_COOKIE_REPLY) {
        this.counts.received.cookieReply++;
        this.cookieReply(msg);
      } else if (type === MESSAGE_INITIATION || type === MESSAGE_RESPONSE) {
        if (type === MESSAGE_INITIATION) this.counts.received.initiation++;
        else this.counts.received.response++;
        if (!this.admit(msg, ip, port)) return;
        if (type === MESSAGE_INITIATION) this.initiation(msg, ip, port);
        else this.response(msg, ip, port);
      } else {
        this.counts.received.other++;
        this.drop('malformed');
      }
    } catch (err) {
      if (!isWireGuardError(err)) throw err;
      this.drop(reasonOf(err, type));
    }
  }

  /** The timers; call every ~100 ms. */
  tick(): void {
    if (this.closed) return;
    this.greet(EAGER_INITIATIONS_PER_TICK);
    for (const s of this.byKey.values()) s.tick();
  }

  stats(): WireGuardSessionStats {
    const now = this.ctx.now();
    const { table } = this.ctx;
    const peers: PeerSessionStats[] = [...this.byKey.values()].map((s) => {
      const cur = s.current;
      const ep = s.endpoint();
      return {
        key: s.config.key,
        publicKey: s.config.publicKey.toString('base64'),
        slot: s.slot,
        lastHandshakeUnix: Math.floor(s.lastHandshakeWall / 1000),
        lastHandshakeAgeSeconds: s.lastHandshakeAt === undefined ? undefined : (now - s.lastHandshakeAt) / 1000,
        currentKeypairAgeSeconds: cur === undefined || !table.isLive(cur.index) ? undefined : table.ageMs(cur.index) / 1000,
        handshakePending: s.handshakePending,
        endpoint: endpointText(ep.ip, ep.port),
      };
    });
    const c = this.counts;
    return {
      sent: { ...c.sent }, received: { ...c.received }, drops: { ...c.drops },
      handshakesCompleted: c.handshakesCompleted, handshakeGiveUps: c.handshakeGiveUps, endpointUpdates: c.endpointUpdates,
      underLoad: this.load.underLoad(now), peers,
    };
  }

  /** Retires every keypair (keys zeroed in the table) and forgets every peer. */
  close(): void {
    if (this.closed) return;
    for (const s of [...this.byKey.values()]) this.remove(s, 'closed');
    this.closed = true;
  }

  // ---- internals ----

  /** mac1 always; under load mac2 (else a cookie reply) and the per-source rate limit. */
  private admit(msg: Uint8Array, ip: WgIp, port: number): boolean {
    const { checker } = this.ctx;
    const underLoad = this.load.record(this.ctx.now());
    checker.verifyMac1(msg); // throws FLN_ERR_WG_BAD_MAC1
    if (!underLoad) return true;
    const src = { address: ipText(ip), port };
    try {
      checker.verifyMac2(msg, src);
    } catch (err) {
      if (!isWireGuardError(err, 'FLN_ERR_WG_BAD_MAC2')) throw err;
      this.ctx.send(checker.createCookieReply(msg, src), ip, port);
      this.counts.sent.cookieReply++;
      this.drop('bad_mac2');
      return false;
    }
    // wireguard-go's rate limiter keys IPv4 sources by address, IPv6 ones by their /64.
    if (!this.limiter.allow(typeof ip === 'bigint' ? ip >> 64n : ip >>> 0, this.ctx.now())) {
      this.drop('rate_limited');
      return false;
    }
    return true;
  }

  private initiation(msg: Uint8Array, ip: WgIp, port: number): void {
    const { ctx } = this;
    const hit: { session?: PeerSession; before?: Buffer | undefined } = {};
    const state = consumeInitiation(ctx.local, ctx.checker, msg, (pub) => {
      const s = this.byPublicKey.get(pub.toString('base64'));
      if (s) {
        hit.session = s;
        hit.before = s.hp.lastTimestamp;
      }
      return s?.hp;
    });
    const s = hit.session as PeerSession;
    const now = ctx.now();
    const refuse = (reason: DropReason) => {
      s.hp.lastTimestamp = hit.before; // not accepted: it must not raise the replay bar
      state.chainingKey.fill(0);
      state.hash.fill(0);
      this.drop(reason);
    };
    if (s.slot === undefined) return refuse('peer_without_slot');
    if (now - s.lastInitiationConsumedAt < INITIATION_MIN_INTERVAL_MS) return refuse('initiation_flood');
    s.lastInitiationConsumedAt = now;
    s.syncCurrent();
    s.acceptInitiation(state, ip, port);
  }

  private response(msg: Uint8Array, ip: WgIp, port: number): void {
    const receiver = decodeResponse(msg).receiver;
    const s = this.ctx.owners.get(receiver);
    if (!s || s.pendingIndex !== receiver) {
      this.drop('unexpected_response');
      return;
    }
    s.syncCurrent();
    s.acceptResponse(msg, ip, port);
  }

  private cookieReply(msg: Uint8Array): void {
    const s = this.ctx.owners.get(decodeCookieReply(msg).receiver);
    if (!s) {
      this.drop('unexpected_cookie_reply');
      return;
    }
    s.hp.macs.consumeCookieReply(msg);
  }

  private remove(s: PeerSession, why: string): void {
    s.destroy();
    const pub = s.config.publicKey.toString('base64');
    this.byKey.delete(s.config.key);
    if (this.byPublicKey.get(pub) === s) this.byPublicKey.delete(pub);
    if (s.hp.lastTimestamp) {
      this.timestampMemory.delete(pub);
      this.timestampMemory.set(pub, s.hp.lastTimestamp);
      if (this.timestampMemory.size > TIMESTAMP_MEMORY) {
        const oldest = this.timestampMemory.keys().next().value;
        if (oldest !== undefined) this.timestampMemory.delete(oldest);
      }
    }
    this.ctx.log.debug({ peer: s.config.key, why }, 'wireguard: peer session erased');
  }

  private drop(reason: DropReason): void {
    this.counts.drops[reason]++;
  }
}

function reasonOf(err: WireGuardError, type: MessageType): DropReason {
  switch (err.wgCode) {
    case 'FLN_ERR_WG_BAD_MAC1': return 'bad_mac1';
    case 'FLN_ERR_WG_BAD_MAC2': return 'bad_mac2';
    case 'FLN_ERR_WG_HANDSHAKE_DECRYPT': return 'handshake_decrypt';
    case 'FLN_ERR_WG_UNKNOWN_PEER': return 'unknown_peer';
    case 'FLN_ERR_WG_REPLAYED_INITIATION': return 'replayed_initiation';
    case 'FLN_ERR_WG_BAD_DH': return 'bad_dh';
    case 'FLN_ERR_WG_BAD_COOKIE_REPLY': return 'bad_cookie_reply';
    case 'FLN_ERR_WG_TABLE_FULL': return 'table_full';
    case 'FLN_ERR_WG_UNKNOWN_INDEX': return type === MESSAGE_COOKIE_REPLY ? 'unexpected_cookie_reply' : 'unexpected_response';
    default: return 'malformed';
  }
}
