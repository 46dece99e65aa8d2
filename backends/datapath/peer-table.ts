// The control plane's side of the shared peer table: replaced as a whole under a seqlock, so the
// packet loops (which snapshot it when the sequence changes) never see half an update.
//
// Counters: one region per writer (each worker thread), summed when read. Each peer keeps its counter
// slot for as long as it stays in the table. A removed peer's slot is quarantined until every writer
// has published (SNAPSHOT_SEQ_SLOT) a snapshot taken after the removal: until then a worker on the old
// snapshot may still count the removed peer into it, and a new peer given that slot would start with
// the old one's history.
import { GLOBAL_STAT_SLOTS, PEER_ENTRY, PEER_FLAGS, PEER_STATS, PEER_TABLE, SNAPSHOT_SEQ_SLOT, peerTableWords, statsWords } from './layout.js';

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

/** PE_SLOT of a peer that has no counters yet (every slot in use or quarantined): the C side skips it. */
export const NO_SLOT = 0xffffffff;

export class PeerTable {
  readonly words: Uint32Array;
  readonly stats: BigUint64Array;
  /** Counter slots per region: twice the capacity, so that quarantined slots never starve new peers. */
  readonly slotCount: number;
  private readonly slots = new Map<string, number>();
  /** Slots of removed peers → the table sequence that no longer has them. */
  private readonly quarantine = new Map<number, number>();

  /** `writers`: one counter region per packet-engine worker thread, so every counter has a single writer. */
  constructor(readonly capacity: number, readonly writers = 1) {
    this.words = new Uint32Array(new SharedArrayBuffer(peerTableWords(capacity) * 4));
    this.slotCount = capacity * 2;
    this.stats = new BigUint64Array(new SharedArrayBuffer(writers * statsWords(this.slotCount) * 8));
    Atomics.store(this.words, PEER_TABLE.CAPACITY, capacity);
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
  replace(peers: readonly EnginePeer[]): void {
    if (peers.length > this.capacity) throw new RangeError(`${peers.length} peers exceed the engine's capacity of ${this.capacity}`);
    const seq = Atomics.load(this.words, PEER_TABLE.SEQ);
    const slots = this.assignSlots(peers, (seq + 2) >>> 0);
    // The writer half of the seqlock: every store is an Atomics (sequentially consistent) store, so on
    // any CPU no entry is visible before the odd sequence or after the even one.
    Atomics.add(this.words, PEER_TABLE.SEQ, 1); // odd: writing
    peers.forEach((p, i) => {
      const base = PEER_TABLE.HEADER_WORDS + i * PEER_ENTRY.WORDS;
      const mac = p.mac ?? new Uint8Array(6);
      const put = (field: number, v: number) => Atomics.store(this.words, base + field, v);
      put(PEER_ENTRY.SUBNET, p.subnet);
      put(PEER_ENTRY.PREFIX, p.prefixLen);
      put(PEER_ENTRY.PUBLIC_IP, p.publicIp);
      put(PEER_ENTRY.PORT, p.port);
      put(PEER_ENTRY.SLOT, slots[i] as number);
      put(PEER_ENTRY.MAC_HI, ((mac[0] ?? 0) << 8) | (mac[1] ?? 0));
      put(PEER_ENTRY.MAC_LO, (((mac[2] ?? 0) << 24) | ((mac[3] ?? 0) << 16) | ((mac[4] ?? 0) << 8) | (mac[5] ?? 0)) >>> 0);
      put(PEER_ENTRY.FLAGS, p.partialChecksums ? PEER_FLAGS.PARTIAL_CHECKSUMS : 0);
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
  private assignSlots(peers: readonly EnginePeer[], next: number): number[] {
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
