// "Under load" for handshake messages. wireguard-go is under load while its handshake queue holds at
// least 1/8 of its capacity, and stays so for 1 s after. Our queue is the pipe from the C workers, whose
// backlog we cannot see, so the rule is on the arrival rate instead: more than `threshold` handshake
// messages (initiations and responses) arrived within the last `windowMs`; the state lasts `holdMs`
// after the rate last exceeded the threshold. Under load, messages without a valid mac2 get a cookie reply.
export const UNDER_LOAD_THRESHOLD = 128;

export class LoadDetector {
  /** Arrival times of the last threshold + 1 messages (a ring). */
  private readonly ring: Float64Array;
  private head = 0;
  private filled = 0;
  private overUntil = -Infinity;

  constructor(readonly threshold = UNDER_LOAD_THRESHOLD, readonly windowMs = 1000, readonly holdMs = 1000) {
    if (!Number.isInteger(threshold) || threshold < 0) throw new RangeError(`under-load threshold must be a non-negative integer, got ${threshold}`);
    this.ring = new Float64Array(threshold + 1);
  }

  /** Records one arrival at `now` and returns whether we are under load. */
  record(now: number): boolean {
    this.ring[this.head] = now;
    this.head = (this.head + 1) % this.ring.length;
    if (this.filled < this.ring.length) this.filled++;
    // With the ring full, the slot at head is the oldest of the last threshold + 1 arrivals.
    if (this.filled === this.ring.length && now - (this.ring[this.head] as number) < this.windowMs) this.overUntil = now + this.holdMs;
    return this.underLoad(now);
  }

  underLoad(now: number): boolean {
    return now < this.overUntil;
  }
}
