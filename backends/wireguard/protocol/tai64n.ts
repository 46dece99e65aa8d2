// TAI64N timestamps for initiations (whitepaper §5.1): 8 bytes big-endian seconds (2^62 + 10 + Unix
// seconds, as wireguard-go and the kernel write it) and 4 bytes big-endian nanoseconds. The nanoseconds
// are rounded down to 2^24 ns (wireguard-go's whitening, so the stamp is no fine-grained clock), and a
// stamper never repeats or goes back, even when the wall clock does.
import { TIMESTAMP_LEN } from './constants.js';

const TAI64_BASE = (1n << 62n) + 10n;
const WHITEN_MASK = ~((1 << 24) - 1) >>> 0;

export function tai64n(unixMs: number, extraNs = 0): Buffer {
  const b = Buffer.alloc(TIMESTAMP_LEN);
  const secs = Math.floor(unixMs / 1000);
  const nanos = ((unixMs - secs * 1000) * 1_000_000 + extraNs) & WHITEN_MASK;
  b.writeBigUInt64BE(TAI64_BASE + BigInt(secs), 0);
  b.writeUInt32BE(nanos >>> 0, 8);
  return b;
}

/** > 0 when a is later than b (both 12-byte TAI64N). */
export function compareTimestamps(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length));
}

/** Strictly increasing timestamps for one local identity. */
export class TimestampSource {
  private last: Buffer = Buffer.alloc(TIMESTAMP_LEN);

  constructor(private readonly now: () => number = Date.now) {}

  next(): Buffer {
    let t = tai64n(this.now());
    if (compareTimestamps(t, this.last) <= 0) t = successor(this.last);
    this.last = t;
    return Buffer.from(t);
  }
}

/** The next whitened stamp after t (one 2^24 ns step; carries into the seconds). */
function successor(t: Buffer): Buffer {
  const out = Buffer.from(t);
  const nanos = t.readUInt32BE(8) + (1 << 24);
  if (nanos >= 1_000_000_000) {
    out.writeBigUInt64BE(t.readBigUInt64BE(0) + 1n, 0);
    out.writeUInt32BE(0, 8);
  } else {
    out.writeUInt32BE(nanos, 8);
  }
  return out;
}
