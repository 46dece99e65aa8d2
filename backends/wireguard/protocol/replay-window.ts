// The receive-side replay window of one keypair (whitepaper §5.4.6, RFC 6479): a ring of 128 blocks of
// 64 bits; the newest block is always being filled, so 127 full blocks (8128 counters) lie behind the
// highest counter seen. A counter is marked only after its message authenticated.
import { REJECT_AFTER_MESSAGES, REPLAY_BLOCKS, REPLAY_BLOCK_BITS, REPLAY_WINDOW_SIZE } from './constants.js';

export type ReplayVerdict = 'ok' | 'replayed' | 'too-old' | 'exhausted';

const BLOCK_SHIFT = 6n; // log2(64)
const RING_MASK = BigInt(REPLAY_BLOCKS - 1);
const WINDOW = BigInt(REPLAY_WINDOW_SIZE);

export class ReplayWindow {
  /** Each 64-bit block as two 32-bit words, low word first. */
  private readonly bits = new Uint32Array(REPLAY_BLOCKS * 2);
  private highest = 0n;

  /** What accept() would say, without changing anything (a cheap check before decrypting). */
  check(counter: bigint): ReplayVerdict {
    if (counter >= REJECT_AFTER_MESSAGES || counter < 0n) return 'exhausted';
    if (counter > this.highest) return 'ok';
    if (this.highest - counter > WINDOW) return 'too-old';
    const { word, mask } = this.slot(counter);
    return ((this.bits[word] as number) & mask) !== 0 ? 'replayed' : 'ok';
  }

  /** Marks the counter as received when it is new and inside the window. */
  accept(counter: bigint): ReplayVerdict {
    const verdict = this.check(counter);
    if (verdict !== 'ok') return verdict;
    if (counter > this.highest) {
      const current = this.highest >> BLOCK_SHIFT;
      let advance = (counter >> BLOCK_SHIFT) - current;
      if (advance > BigInt(REPLAY_BLOCKS)) advance = BigInt(REPLAY_BLOCKS);
      for (let i = 1n; i <= advance; i++) {
        const block = Number((current + i) & RING_MASK);
        this.bits[block * 2] = 0;
        this.bits[block * 2 + 1] = 0;
      }
      this.highest = counter;
    }
    const { word, mask } = this.slot(counter);
    this.bits[word] = ((this.bits[word] as number) | mask) >>> 0;
    return 'ok';
  }

  private slot(counter: bigint): { word: number; mask: number } {
    const block = Number((counter >> BLOCK_SHIFT) & RING_MASK);
    const bit = Number(counter & BigInt(REPLAY_BLOCK_BITS - 1));
    return { word: block * 2 + (bit >> 5), mask: (1 << (bit & 31)) >>> 0 };
  }
}
