// Per-source-IP token bucket for handshake messages under load (wireguard-go ratelimiter: 20 per second,
// a burst of 5; an entry idle for a second is forgotten).
export const RATE_PER_SECOND = 20;
export const RATE_BURST = 5;

interface Bucket { tokens: number; last: number }

export class SourceRateLimiter {
  private readonly buckets = new Map<number | bigint, Bucket>();
  private lastSweep = -Infinity;

  constructor(readonly perSecond = RATE_PER_SECOND, readonly burst = RATE_BURST, readonly maxEntries = 65536) {}

  /** Takes a token for `ip` at `now` (ms); false when the source is over its rate. */
  allow(ip: number | bigint, now: number): boolean {
    this.sweep(now);
    let b = this.buckets.get(ip);
    if (!b) {
      if (this.buckets.size >= this.maxEntries) return false;
      b = { tokens: this.burst, last: now };
      this.buckets.set(ip, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.last) * this.perSecond) / 1000);
    b.last = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  get size(): number { return this.buckets.size; }

  private sweep(now: number): void {
    if (now - this.lastSweep < 1000) return;
    this.lastSweep = now;
    for (const [ip, b] of this.buckets) if (now - b.last >= 1000) this.buckets.delete(ip);
  }
}
