// The control plane's side of the shared peer table: replaced as a whole under a seqlock, so the
// packet loops (which snapshot it when the sequence changes) never see half an update.
//
// Counters: one region per writer (each worker thread), summed when read. Each peer keeps its counter
// slot for as long as it stays in the table. A removed peer's slot is quarantined until every writer
// has published (SNAPSHOT_SEQ_SLOT) a snapshot taken after the removal: until then a worker on the old
// snapshot may still count the removed peer into it, and a new peer given that slot would start with
// the old one's history.
import type { Ip6 } from '../../lib/ip6.js';
import { GLOBAL_STAT_SLOTS, PEER_ENTRY, PEER_ENTRY46, PEER_ENTRY6, type TableFamily, PEER_FLAGS, PEER_STATS, PEER_TABLE, SNAPSHOT_SEQ_SLOT, peerTableWords, statsWords } from './layout.js';

export interface EnginePeer {
  /** Stable identity of the peer, e.g. its subnet as text. */
  readonly key: string;
  readonly subnet: number;
  readonly prefixLen: number;
  readonly publicIp: number;
  readonly port: number;
  /** vxlan: the peer's VTEP MAC. */
  readonly mac?: Uint8Array;
  /** The peer's lease advertises AcceptsPartialChecksums (see partial-checksums.ts). */
  readonly partialChecksums?: boolean;
}

/** A peer of an IPv6 engine (the IPv6 VTEP): its IPv6 subnet and PublicIPv6. */
export interface EnginePeer6 {
  readonly key: string;
  /** The subnet's network address (host bits are masked off by the engine anyway). */
  readonly subnet: Ip6;
  readonly prefixLen: number;
  readonly publicIp: Ip6;
  readonly port: number;
  /** The peer's IPv6 VTEP MAC. */
  readonly mac?: Uint8Array;
  readonly partialChecksums?: boolean;
}

/** A peer of a dual engine (flannel-wg of the single-device wireguard modes): either subnet or both, and
 * the endpoint in each outer family (the engine uses its own family's; an absent one is written as 0). */
export interface EnginePeerDual {
  readonly key: string;
  readonly subnet4?: { readonly ip: number; readonly prefixLen: number };
  readonly subnet6?: { readonly ip: Ip6; readonly prefixLen: number };
  readonly publicIp: number;
  readonly publicIp6?: Ip6;
  readonly port: number;
  readonly dual: true;
}

/** The four entry words of an IPv6 address: word k = bytes 4k..4k+3, big-endian. */
export function ip6Words(ip: Ip6): [number, number, number, number] {
  return [Number((ip >> 96n) & 0xffffffffn), Number((ip >> 64n) & 0xffffffffn), Number((ip >> 32n) & 0xffffffffn), Number(ip & 0xffffffffn)];
}

/** An IPv6 address as 16 bytes, network order (what the addon takes). */
export function ip6Bytes(ip: Ip6): Uint8Array {
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = Number((ip >> BigInt(120 - 8 * i)) & 0xffn);
  return out;
}

/** PE_SLOT of a peer that has no counters yet (every slot in use or quarantined): the C side skips it. */
export const NO_SLOT = 0xffffffff;

export class PeerTable<P extends EnginePeer | EnginePeer6 | EnginePeerDual = EnginePeer> {
  readonly words: Uint32Array;
  readonly stats: BigUint64Array;
  /** Counter slots per region: twice the capacity, so that quarantined slots never starve new peers. */
  readonly slotCount: number;
  private readonly slots = new Map<string, number>();
  /** Slots of removed peers → the table sequence that no longer has them. */
  private readonly quarantine = new Map<number, number>();

  /** `writers`: one counter region per packet-engine worker thread, so every counter has a single writer.
   * `family` 6: a table of IPv6 entries (EnginePeer6) for an IPv6 engine; 46: of EnginePeerDual for a dual one. */
  constructor(readonly capacity: number, readonly writers = 1, readonly family: TableFamily = 4) {
    this.words = new Uint32Array(new SharedArrayBuffer(peerTableWords(capacity, family) * 4));
    this.slotCount = capacity * 2;
    this.stats = new BigUint64Array(new SharedArrayBuffer(writers * statsWords(this.slotCount) * 8));
    Atomics.store(this.words, PEER_TABLE.CAPACITY, capacity);
    Atomics.store(this.words, PEER_TABLE.FAMILY, family === 4 ? 0 : family);
  }

  /** The counters of writer `w`. */
  region(w: number): BigUint64Array {
    if (!Number.isInteger(w) || w < 0 || w >= this.writers) throw new RangeError(`counter region ${w} does not exist (${this.writers} writers)`);
    const words = statsWords(this.slotCount);
    return this.stats.subarray(w * words, (w + 1) * words);
  }

  /** A counter summed over all writers. */
  sum(index: number): bigint {
    const words = statsWords(this.slotCount);
    let total = 0n;
    for (let w = 0; w < this.writers; w++) total += this.stats[w * words + index] ?? 0n;
    return total;
  }

  /** The counter slot of a peer currently in the table (undefined also while it waits for a free slot). */
  slotOf(key: string): number | undefined {
    const slot = this.slots.get(key);
    return slot === NO_SLOT ? undefined : slot;
  }

  /** Slots of removed peers that a worker may still count into. */
  get quarantined(): number { return this.quarantine.size; }

  /** Replaces the whole table. Throws if there are more peers than the capacity. */
  replace(peers: readonly P[]): void {
    if (peers.length > this.capacity) throw new RangeError(`${peers.length} peers exceed the engine's capacity of ${this.capacity}`);
    for (const p of peers) {
      if ('dual' in p || this.family === 46) {
        if (!('dual' in p) || this.family !== 46) throw new TypeError(`peer ${p.key}: only a dual (family 46) peer table takes dual peers`);
        continue;
      }
      if ((typeof p.subnet === 'bigint') !== (this.family === 6) || typeof p.publicIp !== typeof p.subnet) {
        throw new TypeError(`peer ${p.key}: an IPv${this.family} peer table takes IPv${this.family} peers`);
      }
    }
    const seq = Atomics.load(this.words, PEER_TABLE.SEQ);
    const slots = this.assignSlots(peers, (seq + 2) >>> 0);
    // The writer half of the seqlock: every store is an Atomics (sequentially consistent) store, so on
    // any CPU no entry is visible before the odd sequence or after the even one.
    Atomics.add(this.words, PEER_TABLE.SEQ, 1); // odd: writing
    peers.forEach((p, i) => {
      if ('dual' in p) {
        const base = PEER_TABLE.HEADER_WORDS + i * PEER_ENTRY6.WORDS;
        const put = (field: number, v: number) => Atomics.store(this.words, base + field, v);
        ip6Words(p.subnet6?.ip ?? 0n).forEach((w, k) => put(PEER_ENTRY6.SUBNET + k, w));
        put(PEER_ENTRY6.PREFIX, p.subnet6 ? p.subnet6.prefixLen : PEER_ENTRY46.NO_SUBNET);
        ip6Words(p.publicIp6 ?? 0n).forEach((w, k) => put(PEER_ENTRY6.PUBLIC_IP + k, w));
        put(PEER_ENTRY6.PORT, p.port);
        put(PEER_ENTRY6.SLOT, slots[i] as number);
        put(PEER_ENTRY46.SUBNET4, p.subnet4?.ip ?? 0);
        put(PEER_ENTRY46.PREFIX4, p.subnet4 ? p.subnet4.prefixLen : PEER_ENTRY46.NO_SUBNET);
        put(PEER_ENTRY6.FLAGS, 0);
        put(PEER_ENTRY46.PUBLIC_IP4, p.publicIp);
        put(15, 0);
        return;
      }
      const mac = p.mac ?? new Uint8Array(6);
      const macHi = ((mac[0] ?? 0) << 8) | (mac[1] ?? 0);
      const macLo = (((mac[2] ?? 0) << 24) | ((mac[3] ?? 0) << 16) | ((mac[4] ?? 0) << 8) | (mac[5] ?? 0)) >>> 0;
      const flags = p.partialChecksums ? PEER_FLAGS.PARTIAL_CHECKSUMS : 0;
      if (this.family === 6) {
        const base = PEER_TABLE.HEADER_WORDS + i * PEER_ENTRY6.WORDS;
        const put = (field: number, v: number) => Atomics.store(this.words, base + field, v);
        const p6 = p as EnginePeer6;
        ip6Words(p6.subnet).forEach((w, k) => put(PEER_ENTRY6.SUBNET + k, w));
        put(PEER_ENTRY6.PREFIX, p6.prefixLen);
        ip6Words(p6.publicIp).forEach((w, k) => put(PEER_ENTRY6.PUBLIC_IP + k, w));
        put(PEER_ENTRY6.PORT, p6.port);
        put(PEER_ENTRY6.SLOT, slots[i] as number);
        put(PEER_ENTRY6.MAC_HI, macHi);
        put(PEER_ENTRY6.MAC_LO, macLo);
        put(PEER_ENTRY6.FLAGS, flags);
        return;
      }
      const base = PEER_TABLE.HEADER_WORDS + i * PEER_ENTRY.WORDS;
      const put = (field: number, v: number) => Atomics.store(this.words, base + field, v);
      const p4 = p as EnginePeer;
      put(PEER_ENTRY.SUBNET, p4.subnet);
      put(PEER_ENTRY.PREFIX, p4.prefixLen);
      put(PEER_ENTRY.PUBLIC_IP, p4.publicIp);
      put(PEER_ENTRY.PORT, p4.port);
      put(PEER_ENTRY.SLOT, slots[i] as number);
      put(PEER_ENTRY.MAC_HI, macHi);
      put(PEER_ENTRY.MAC_LO, macLo);
      put(PEER_ENTRY.FLAGS, flags);
    });
    Atomics.store(this.words, PEER_TABLE.COUNT, peers.length);
    Atomics.add(this.words, PEER_TABLE.SEQ, 1); // even: published
  }

  /** The oldest table sequence any writer's snapshot may still have. */
  private oldestSnapshot(current: number): number {
    const words = statsWords(this.slotCount);
    let oldest = current;
    for (let w = 0; w < this.writers; w++) {
      const seen = Number(Atomics.load(this.stats, w * words + SNAPSHOT_SEQ_SLOT) & 0xffffffffn);
      if (((seen - oldest) | 0) < 0) oldest = seen;
    }
    return oldest;
  }

  /** Keeps the slots of peers that stay; quarantines those of removed peers (freed by table `next`);
   * gives new peers free slots with zeroed counters. */
  private assignSlots(peers: readonly P[], next: number): number[] {
    const oldest = this.oldestSnapshot(Atomics.load(this.words, PEER_TABLE.SEQ));
    for (const [slot, freedBy] of this.quarantine) if (((oldest - freedBy) | 0) >= 0) this.quarantine.delete(slot);
    const keep = new Set(peers.map((p) => p.key));
    for (const [key, slot] of [...this.slots]) {
      if (keep.has(key)) continue;
      this.slots.delete(key);
      if (slot !== NO_SLOT) this.quarantine.set(slot, next);
    }
    const used = new Set([...this.slots.values(), ...this.quarantine.keys()]);
    let free = 0;
    return peers.map((p) => {
      const have = this.slots.get(p.key);
      if (have !== undefined && have !== NO_SLOT) return have;
      while (used.has(free)) free++;
      if (free >= this.slotCount) { this.slots.set(p.key, NO_SLOT); return NO_SLOT; }
      const slot = free;
      used.add(slot);
      this.slots.set(p.key, slot);
      for (let w = 0; w < this.writers; w++) {
        const first = w * statsWords(this.slotCount) + GLOBAL_STAT_SLOTS + slot * PEER_STATS.length;
        this.stats.fill(0n, first, first + PEER_STATS.length);
      }
      return slot;
    });
  }
}
