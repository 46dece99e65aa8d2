// The control plane's side of the wireguard table: one SharedArrayBuffer shared with the C packet
// loops (layout: backends/datapath/layout.ts WG_*, authoritative comments in native/src/layout.h,
// "wireguard mode"). Every byte offset of that layout is used in this file only.
//
// Keypair slots: a keypair's local index (the receiver index peers put in messages to us) carries the
// slot in its low bits (index & (capacity-1)), random upper bits. A slot is reserved by allocateIndex()
// (a pending handshake), published by install() (fields written with STATE 0, then STATE = 1), and freed
// by retire() (STATE = 0, keys zeroed): a freed published slot is quarantined, because a worker may still
// hold it. Fields C reads or writes concurrently are accessed with Atomics.
//
// Family 6 (flannel-wg-v6): endpoints are IPv6 (WGP_EP6_*, under the seqlock of layout.h, which C's RX
// workers write too), and a keypair's peerSubnet is the fold of the peer's IPv6 subnet (wgSubnetFold6).
import { randomInt } from 'node:crypto';
import { endianness } from 'node:os';
import { WG_HEADER, WG_KEYPAIR, WG_KEYPAIR_FLAGS, WG_PEER, WG_PEER_FLAGS, wgKeypairsOffset, wgTableBytes } from '../../datapath/layout.js';
import { KEY_LEN, WireGuardError } from '../protocol/index.js';
import { WIREGUARD_TIMERS, monotonicMs, type WireGuardTimers } from './session-timers.js';

/** An endpoint address: IPv4 as a host-order number (lib/ip.ts Ip4), IPv6 as a bigint (lib/ip6.ts Ip6). */
export type WgIp = number | bigint;

/** What a family-6 keypair's WGK_PEER_SUBNET holds: the XOR of the four 32-bit words of the peer's IPv6 subnet. */
export function wgSubnetFold6(subnet: bigint): number {
  let x = 0;
  for (let k = 0n; k < 4n; k++) x ^= Number((subnet >> (32n * k)) & 0xffff_ffffn);
  return x >>> 0;
}

export interface KeypairInstall {
  /** The peer's counter slot (PeerTable.slotOf). */
  readonly peerSlot: number;
  /** The peer's subnet, host order: C checks inner sources against it (family 6: wgSubnetFold6 of it). */
  readonly peerSubnet: number;
  readonly remoteIndex: number;
  readonly sendKey: Uint8Array;
  readonly recvKey: Uint8Array;
  /** We initiated the handshake (C asks for a rekey after REKEY_AFTER_TIME). */
  readonly initiator: boolean;
  /** A responder's keypair, not used to send until C sees a packet on it (and makes it current). */
  readonly next: boolean;
}

export interface Endpoint {
  readonly ip: WgIp;
  readonly port: number;
}

const enum SlotState { Free = 0, Reserved = 1, Installed = 2 }

export class WgTable {
  readonly buffer: SharedArrayBuffer;
  private readonly u8: Uint8Array;
  private readonly u32: Uint32Array;
  private readonly u64: BigUint64Array;
  private readonly kpBase: number;
  private readonly mask: number;
  private readonly slotState: Uint8Array;
  /** The local index a reserved or installed slot was given. */
  private readonly slotIndex: Uint32Array;
  /** Monotonic ms before which a freed slot is not reused. */
  private readonly freeAfter: Float64Array;
  private cursor = 0;

  constructor(
    readonly keypairCapacity: number,
    readonly peerCapacity: number,
    readonly timers: WireGuardTimers = WIREGUARD_TIMERS,
    /** Monotonic ms; CREATED_US is this × 1000, so it must be CLOCK_MONOTONIC (process.hrtime) except in tests. */
    private readonly nowMs: () => number = monotonicMs,
    /** 6: the table of an IPv6 engine (endpoints are IPv6, WGP_EP6_*). */
    readonly family: 4 | 6 = 4,
  ) {
    if (!Number.isInteger(keypairCapacity) || keypairCapacity < 2 || keypairCapacity > 1 << 20 || (keypairCapacity & (keypairCapacity - 1)) !== 0) {
      throw new RangeError(`keypair capacity must be a power of two in [2, 2^20], got ${keypairCapacity}`);
    }
    if (!Number.isInteger(peerCapacity) || peerCapacity < 1) throw new RangeError(`peer capacity must be a positive integer, got ${peerCapacity}`);
    if (endianness() !== 'LE') throw new RangeError('the wireguard table layout is little-endian');
    this.buffer = new SharedArrayBuffer(wgTableBytes(keypairCapacity, peerCapacity));
    this.u8 = new Uint8Array(this.buffer);
    this.u32 = new Uint32Array(this.buffer);
    this.u64 = new BigUint64Array(this.buffer);
    this.kpBase = wgKeypairsOffset(peerCapacity);
    this.mask = keypairCapacity - 1;
    this.slotState = new Uint8Array(keypairCapacity);
    this.slotIndex = new Uint32Array(keypairCapacity);
    this.freeAfter = new Float64Array(keypairCapacity);
    Atomics.store(this.u32, WG_HEADER.KP_CAPACITY / 4, keypairCapacity);
    Atomics.store(this.u32, WG_HEADER.PEER_CAPACITY / 4, peerCapacity);
    Atomics.store(this.u64, WG_HEADER.REJECT_AFTER_US / 8, BigInt(Math.round(timers.rejectAfterMs * 1000)));
    Atomics.store(this.u64, WG_HEADER.REKEY_AFTER_US / 8, BigInt(Math.round(timers.rekeyAfterMs * 1000)));
  }

  // ---- keypair slots ----

  /** The slot a local index names. */
  slotOf(index: number): number {
    return (index & this.mask) >>> 0;
  }

  /** Reserves a free slot (not freed in the last slotQuarantineMs) and returns a fresh random index for it. */
  allocateIndex(): number {
    const now = this.nowMs();
    for (let n = 0; n < this.keypairCapacity; n++) {
      const slot = (this.cursor + n) & this.mask;
      if (this.slotState[slot] !== SlotState.Free || (this.freeAfter[slot] as number) > now) continue;
      this.cursor = (slot + 1) & this.mask;
      let index: number;
      do index = ((randomInt(0x1_0000_0000) & ~this.mask) | slot) >>> 0;
      while (index === 0 || index === this.slotIndex[slot]);
      this.slotState[slot] = SlotState.Reserved;
      this.slotIndex[slot] = index;
      return index;
    }
    throw new WireGuardError('FLN_ERR_WG_TABLE_FULL', undefined, { capacity: this.keypairCapacity });
  }

  /** Gives back a reserved index that was never installed (an abandoned handshake); installed ones: retire(). */
  releaseIndex(index: number): void {
    const slot = this.slotOf(index);
    if (this.slotIndex[slot] !== index || this.slotState[slot] === SlotState.Free) return;
    if (this.slotState[slot] === SlotState.Installed) {
      this.retire(index);
      return;
    }
    this.slotState[slot] = SlotState.Free; // C never saw it: no quarantine
  }

  /** Publishes a keypair in the slot `index` reserved: every field with STATE 0, then STATE = 1. */
  install(index: number, kp: KeypairInstall): void {
    const slot = this.slotOf(index);
    if (this.slotState[slot] !== SlotState.Reserved || this.slotIndex[slot] !== index) {
      throw new WireGuardError('FLN_ERR_WG_BAD_TABLE_INDEX', `index ${index} is not reserved`, { index });
    }
    if (kp.sendKey.length !== KEY_LEN || kp.recvKey.length !== KEY_LEN) throw new WireGuardError('FLN_ERR_WG_BAD_KEY', 'transport keys must be 32 bytes');
    if (!Number.isInteger(kp.peerSlot) || kp.peerSlot < 0 || kp.peerSlot >= this.peerCapacity) {
      throw new RangeError(`peer slot ${kp.peerSlot} outside the table's ${this.peerCapacity}`);
    }
    const base = this.kpBase + slot * WG_KEYPAIR.BYTES;
    Atomics.store(this.u32, (base + WG_KEYPAIR.STATE) / 4, 0);
    this.u8.fill(0, base + 4, base + WG_KEYPAIR.BYTES);
    Atomics.store(this.u32, (base + WG_KEYPAIR.LOCAL_INDEX) / 4, index);
    Atomics.store(this.u32, (base + WG_KEYPAIR.REMOTE_INDEX) / 4, kp.remoteIndex >>> 0);
    Atomics.store(this.u32, (base + WG_KEYPAIR.PEER_SLOT) / 4, kp.peerSlot);
    Atomics.store(this.u64, (base + WG_KEYPAIR.SEND_COUNTER) / 8, 0n);
    Atomics.store(this.u64, (base + WG_KEYPAIR.CREATED_US) / 8, BigInt(Math.floor(this.nowMs() * 1000)));
    this.u8.set(kp.sendKey, base + WG_KEYPAIR.SEND_KEY);
    this.u8.set(kp.recvKey, base + WG_KEYPAIR.RECV_KEY);
    const flags = (kp.initiator ? WG_KEYPAIR_FLAGS.INITIATOR : 0) | (kp.next ? WG_KEYPAIR_FLAGS.NEXT : 0);
    Atomics.store(this.u32, (base + WG_KEYPAIR.FLAGS) / 4, flags);
    Atomics.store(this.u32, (base + WG_KEYPAIR.PEER_SUBNET) / 4, kp.peerSubnet >>> 0);
    // REPLAY_LOCK, REPLAY_LAST, REPLAY_BITS: zeroed by the fill above.
    this.slotState[slot] = SlotState.Installed;
    Atomics.store(this.u32, (base + WG_KEYPAIR.STATE) / 4, 1); // publish
  }

  /** Unpublishes a keypair (STATE 0 first), zeroes its keys and replay state, quarantines the slot, and
   * clears WGP_CURRENT of its peer if that still names it. */
  retire(index: number): void {
    const slot = this.slotOf(index);
    if (this.slotIndex[slot] !== index || this.slotState[slot] === SlotState.Free) return;
    if (this.slotState[slot] === SlotState.Reserved) {
      this.slotState[slot] = SlotState.Free;
      return;
    }
    const base = this.kpBase + slot * WG_KEYPAIR.BYTES;
    Atomics.store(this.u32, (base + WG_KEYPAIR.STATE) / 4, 0);
    const peerSlot = Atomics.load(this.u32, (base + WG_KEYPAIR.PEER_SLOT) / 4);
    if (peerSlot < this.peerCapacity) Atomics.compareExchange(this.u32, this.peerWord(peerSlot, WG_PEER.CURRENT), slot + 1, 0);
    this.u8.fill(0, base + WG_KEYPAIR.SEND_KEY, base + WG_KEYPAIR.RECV_KEY + KEY_LEN);
    Atomics.store(this.u32, (base + WG_KEYPAIR.FLAGS) / 4, 0);
    this.u8.fill(0, base + WG_KEYPAIR.REPLAY_LAST, base + WG_KEYPAIR.BYTES);
    this.slotState[slot] = SlotState.Free;
    this.freeAfter[slot] = this.nowMs() + this.timers.slotQuarantineMs;
  }

  /** A published keypair: STATE 1 and the index matches. */
  isLive(index: number): boolean {
    const base = this.kpBase + this.slotOf(index) * WG_KEYPAIR.BYTES;
    return Atomics.load(this.u32, (base + WG_KEYPAIR.STATE) / 4) === 1
      && Atomics.load(this.u32, (base + WG_KEYPAIR.LOCAL_INDEX) / 4) === index >>> 0;
  }

  /** WGK_F_NEXT still set (C clears it when the peer's first packet on the keypair arrives). */
  isNext(index: number): boolean {
    return (this.keypairFlags(index) & WG_KEYPAIR_FLAGS.NEXT) !== 0;
  }

  keypairFlags(index: number): number {
    return Atomics.load(this.u32, (this.kpOffset(index) + WG_KEYPAIR.FLAGS) / 4);
  }

  /** Clears NEXT of a responder keypair that a newer handshake of ours superseded: C must not promote it. */
  clearNext(index: number): void {
    Atomics.and(this.u32, (this.kpOffset(index) + WG_KEYPAIR.FLAGS) / 4, ~WG_KEYPAIR_FLAGS.NEXT);
  }

  /** The nonce for one more message on this keypair (atomic fetch_add, shared with C TX). */
  nextSendCounter(index: number): bigint {
    return Atomics.add(this.u64, (this.kpOffset(index) + WG_KEYPAIR.SEND_COUNTER) / 8, 1n);
  }

  /** Age of a keypair in ms, on the clock of CREATED_US. */
  ageMs(index: number): number {
    const created = Atomics.load(this.u64, (this.kpOffset(index) + WG_KEYPAIR.CREATED_US) / 8);
    return this.nowMs() - Number(created) / 1000;
  }

  /** Copies of the keys and indices as C sees them (tests, diagnostics). */
  readKeypair(index: number): { state: number; localIndex: number; remoteIndex: number; peerSlot: number; peerSubnet: number; flags: number; sendCounter: bigint; sendKey: Buffer; recvKey: Buffer } {
    const base = this.kpOffset(index);
    return {
      state: Atomics.load(this.u32, (base + WG_KEYPAIR.STATE) / 4),
      localIndex: Atomics.load(this.u32, (base + WG_KEYPAIR.LOCAL_INDEX) / 4),
      remoteIndex: Atomics.load(this.u32, (base + WG_KEYPAIR.REMOTE_INDEX) / 4),
      peerSlot: Atomics.load(this.u32, (base + WG_KEYPAIR.PEER_SLOT) / 4),
      peerSubnet: Atomics.load(this.u32, (base + WG_KEYPAIR.PEER_SUBNET) / 4),
      flags: Atomics.load(this.u32, (base + WG_KEYPAIR.FLAGS) / 4),
      sendCounter: Atomics.load(this.u64, (base + WG_KEYPAIR.SEND_COUNTER) / 8),
      sendKey: Buffer.from(this.u8.subarray(base + WG_KEYPAIR.SEND_KEY, base + WG_KEYPAIR.SEND_KEY + KEY_LEN)),
      recvKey: Buffer.from(this.u8.subarray(base + WG_KEYPAIR.RECV_KEY, base + WG_KEYPAIR.RECV_KEY + KEY_LEN)),
    };
  }

  /** Slots neither free nor quarantined (reserved or installed). */
  get slotsInUse(): number {
    let n = 0;
    for (const s of this.slotState) if (s !== SlotState.Free) n++;
    return n;
  }

  // ---- peers ----

  /** Sets WGP_CURRENT: the keypair C TX sends with (undefined: none). */
  setCurrent(peerSlot: number, index: number | undefined): void {
    Atomics.store(this.u32, this.peerWord(peerSlot, WG_PEER.CURRENT), index === undefined ? 0 : this.slotOf(index) + 1);
  }

  /** Replaces WGP_CURRENT only if it still holds `expected` (C may have just confirmed a keypair). */
  replaceCurrent(peerSlot: number, expected: number | undefined, index: number | undefined): boolean {
    const want = expected === undefined ? 0 : this.slotOf(expected) + 1;
    const put = index === undefined ? 0 : this.slotOf(index) + 1;
    return Atomics.compareExchange(this.u32, this.peerWord(peerSlot, WG_PEER.CURRENT), want, put) === want;
  }

  /** The local index of the keypair WGP_CURRENT names, undefined when none (or not published). */
  current(peerSlot: number): number | undefined {
    const v = Atomics.load(this.u32, this.peerWord(peerSlot, WG_PEER.CURRENT));
    if (v === 0 || v > this.keypairCapacity) return undefined;
    const base = this.kpBase + (v - 1) * WG_KEYPAIR.BYTES;
    if (Atomics.load(this.u32, (base + WG_KEYPAIR.STATE) / 4) !== 1) return undefined;
    return Atomics.load(this.u32, (base + WG_KEYPAIR.LOCAL_INDEX) / 4);
  }

  /** The raw WGP_CURRENT slot (0-based), undefined when 0. */
  currentSlot(peerSlot: number): number | undefined {
    const v = Atomics.load(this.u32, this.peerWord(peerSlot, WG_PEER.CURRENT));
    return v === 0 ? undefined : v - 1;
  }

  /** Reads and clears the peer's WGP_F_* flags (atomic exchange). */
  takeFlags(peerSlot: number): { wantHandshake: boolean; raw: number } {
    const raw = Atomics.exchange(this.u32, this.peerWord(peerSlot, WG_PEER.FLAGS), 0);
    return { wantHandshake: (raw & WG_PEER_FLAGS.WANT_HANDSHAKE) !== 0, raw };
  }

  /** Sets WGP_F_* bits (atomic OR), as C does. */
  orFlags(peerSlot: number, bits: number): void {
    Atomics.or(this.u32, this.peerWord(peerSlot, WG_PEER.FLAGS), bits);
  }

  /** The roamed endpoint (WGP_ENDPOINT; family 6: WGP_EP6_*), undefined when none (the lease's endpoint applies). */
  endpoint(peerSlot: number): Endpoint | undefined {
    if (this.family === 6) return this.endpoint6(peerSlot);
    const v = Atomics.load(this.u64, this.peerWord(peerSlot, WG_PEER.ENDPOINT) / 2);
    if (v === 0n) return undefined;
    return { ip: Number(v >> 16n) >>> 0, port: Number(v & 0xffffn) };
  }

  /** Sets the roamed endpoint: an IPv4 number in a family-4 table, an IPv6 bigint in a family-6 one. */
  setEndpoint(peerSlot: number, ip: WgIp, port: number): void {
    if (this.family === 6) {
      if (typeof ip !== 'bigint') throw new TypeError('a family-6 wireguard table takes IPv6 endpoints');
      this.writeEndpoint6(peerSlot, ip, port & 0xffff);
      return;
    }
    if (typeof ip !== 'number') throw new TypeError('a family-4 wireguard table takes IPv4 endpoints');
    Atomics.store(this.u64, this.peerWord(peerSlot, WG_PEER.ENDPOINT) / 2, (BigInt(ip >>> 0) << 16n) | BigInt(port & 0xffff));
  }

  resetEndpoint(peerSlot: number): void {
    if (this.family === 6) {
      this.writeEndpoint6(peerSlot, 0n, 0);
      return;
    }
    Atomics.store(this.u64, this.peerWord(peerSlot, WG_PEER.ENDPOINT) / 2, 0n);
  }

  /** The reader half of the WGP_EP6 seqlock: retries while a writer (a C RX worker) is busy; should one
   * never finish, undefined (the lease's endpoint), as C falls back. */
  private endpoint6(peerSlot: number): Endpoint | undefined {
    const seqWord = this.peerWord(peerSlot, WG_PEER.EP6_SEQ);
    const portWord = this.peerWord(peerSlot, WG_PEER.EP6_PORT);
    const addrWord = this.peerWord(peerSlot, WG_PEER.EP6_ADDR);
    for (let tries = 0; tries < 100_000; tries++) {
      const s1 = Atomics.load(this.u32, seqWord);
      if (s1 & 1) continue;
      const port = Atomics.load(this.u32, portWord);
      let ip = 0n;
      // The address bytes are in network order; each word is read as little-endian memory.
      for (let k = 0; k < 4; k++) {
        const w = Atomics.load(this.u32, addrWord + k);
        const be = ((w & 0xff) << 24 | ((w >>> 8) & 0xff) << 16 | ((w >>> 16) & 0xff) << 8 | (w >>> 24)) >>> 0;
        ip = (ip << 32n) | BigInt(be);
      }
      if (Atomics.load(this.u32, seqWord) !== s1) continue;
      return port === 0 ? undefined : { ip, port };
    }
    return undefined;
  }

  /** The writer half: SEQ even → odd by compare-and-swap (C writers take it the same way), fields, SEQ + 1.
   * Nothing is written if another writer never lets go of the lock. */
  private writeEndpoint6(peerSlot: number, ip: bigint, port: number): void {
    const seqWord = this.peerWord(peerSlot, WG_PEER.EP6_SEQ);
    let s = 0;
    for (let tries = 0; ; tries++) {
      if (tries === 100_000) return;
      s = Atomics.load(this.u32, seqWord);
      if ((s & 1) === 0 && Atomics.compareExchange(this.u32, seqWord, s, (s + 1) >>> 0) === s) break;
    }
    Atomics.store(this.u32, this.peerWord(peerSlot, WG_PEER.EP6_PORT), port);
    const addrWord = this.peerWord(peerSlot, WG_PEER.EP6_ADDR);
    for (let k = 0; k < 4; k++) {
      const be = Number((ip >> BigInt(96 - 32 * k)) & 0xffff_ffffn);
      const w = ((be & 0xff) << 24 | ((be >>> 8) & 0xff) << 16 | ((be >>> 16) & 0xff) << 8 | (be >>> 24)) >>> 0;
      Atomics.store(this.u32, addrWord + k, w);
    }
    Atomics.store(this.u32, seqWord, (s + 2) >>> 0);
  }

  /** Clears a peer entry (CURRENT, FLAGS, ENDPOINT): a slot given to a new peer, or a removed one. */
  resetPeer(peerSlot: number): void {
    this.setCurrent(peerSlot, undefined);
    Atomics.store(this.u32, this.peerWord(peerSlot, WG_PEER.FLAGS), 0);
    this.resetEndpoint(peerSlot);
  }

  private peerWord(peerSlot: number, field: number): number {
    if (!Number.isInteger(peerSlot) || peerSlot < 0 || peerSlot >= this.peerCapacity) {
      throw new RangeError(`peer slot ${peerSlot} outside the table's ${this.peerCapacity}`);
    }
    return (WG_HEADER.BYTES + peerSlot * WG_PEER.BYTES + field) / 4;
  }

  private kpOffset(index: number): number {
    return this.kpBase + this.slotOf(index) * WG_KEYPAIR.BYTES;
  }
}
