// Cancellable sleeps and capped exponential backoff with jitter, so that retry loops against an
// unreachable etcd neither spin the CPU nor wait long after it returns. Base module: imports nothing.
import { setTimeout as sleepTimer } from 'node:timers/promises';

/** Sleeps, rejecting with an AbortError as soon as the signal fires. */
export async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  await sleepTimer(Math.max(0, ms), undefined, { signal });
}

export class Backoff {
  private attempt = 0;

  constructor(private readonly initialMs: number, private readonly maxMs: number, private readonly random: () => number = Math.random) {}

  /** The next delay: initial·2^n capped at max, then ±20 % jitter so many nodes do not retry in step. */
  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(base * (0.8 + 0.4 * this.random()));
  }

  reset(): void {
    this.attempt = 0;
  }
}
