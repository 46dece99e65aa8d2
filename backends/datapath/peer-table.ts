// The control plane's side of the shared peer table: replaced as a whole under a seqlock, so the
// packet loops (which snapshot it when the sequence changes) never see half an update. Each peer
// keeps its counter slot for as long as it stays in the table.
import { GLOBAL_STAT_SLOTS, PEER_ENTRY, PEER_FLAGS, PEER_STATS, PEER_TABLE, peerTableWords, statsWords } from './layout.js';

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

export class PeerTable {
  readonly words: Uint32Array;
  readonly stats: BigUint64Array;
  private readonly seq: Int32Array;
  private readonly slots = new Map<string, number>();

  /** `regions`: one counter region per engine queue, so every counter has a single writer. */
  constructor(readonly capacity: number, readonly regions = 1) {
    this.words = new Uint32Array(new SharedArrayBuffer(peerTableWords(capacity) * 4));
    this.seq = new Int32Array(this.words.buffer);
    this.stats = new BigUint64Array(new SharedArrayBuffer(regions * statsWords(capacity) * 8));
    this.words[PEER_TABLE.CAPACITY] = capacity;
  }

  /** The counters written by queue `q`'s workers. */
  region(q: number): BigUint64Array {
    const words = statsWords(this.capacity);
    return this.stats.subarray(q * words, (q + 1) * words);
  }

  /** A counter summed over all queues. */
  sum(index: number): bigint {
    const words = statsWords(this.capacity);
    let total = 0n;
    for (let q = 0; q < this.regions; q++) total += this.stats[q * words + index] ?? 0n;
    return total;
  }

  /** The counter slot of a peer currently in the table. */
  slotOf(key: string): number | undefined {
    return this.slots.get(key);
  }

  /** Replaces the whole table. Throws if there are more peers than the capacity. */
  replace(peers: readonly EnginePeer[]): void {
    if (peers.length > this.capacity) throw new RangeError(`${peers.length} peers exceed the engine's capacity of ${this.capacity}`);
    const slots = this.assignSlots(peers);
    Atomics.add(this.seq, PEER_TABLE.SEQ, 1); // odd: writing
    peers.forEach((p, i) => {
      const base = PEER_TABLE.HEADER_WORDS + i * PEER_ENTRY.WORDS;
      const mac = p.mac ?? new Uint8Array(6);
      this.words[base + PEER_ENTRY.SUBNET] = p.subnet;
      this.words[base + PEER_ENTRY.PREFIX] = p.prefixLen;
      this.words[base + PEER_ENTRY.PUBLIC_IP] = p.publicIp;
      this.words[base + PEER_ENTRY.PORT] = p.port;
      this.words[base + PEER_ENTRY.SLOT] = slots[i] as number;
      this.words[base + PEER_ENTRY.MAC_HI] = ((mac[0] ?? 0) << 8) | (mac[1] ?? 0);
      this.words[base + PEER_ENTRY.MAC_LO] = (((mac[2] ?? 0) << 24) | ((mac[3] ?? 0) << 16) | ((mac[4] ?? 0) << 8) | (mac[5] ?? 0)) >>> 0;
      this.words[base + PEER_ENTRY.FLAGS] = p.partialChecksums ? PEER_FLAGS.PARTIAL_CHECKSUMS : 0;
    });
    Atomics.store(this.seq, PEER_TABLE.COUNT, peers.length);
    Atomics.add(this.seq, PEER_TABLE.SEQ, 1); // even: published
  }

  /** Keeps the slots of peers that stay; gives new peers free slots with zeroed counters. */
  private assignSlots(peers: readonly EnginePeer[]): number[] {
    const keep = new Set(peers.map((p) => p.key));
    for (const key of [...this.slots.keys()]) if (!keep.has(key)) this.slots.delete(key);
    const used = new Set(this.slots.values());
    let next = 0;
    return peers.map((p) => {
      const have = this.slots.get(p.key);
      if (have !== undefined) return have;
      while (used.has(next)) next++;
      used.add(next);
      this.slots.set(p.key, next);
      for (let q = 0; q < this.regions; q++) {
        const first = q * statsWords(this.capacity) + GLOBAL_STAT_SLOTS + next * PEER_STATS.length;
        this.stats.fill(0n, first, first + PEER_STATS.length);
      }
      return next;
    });
  }
}
