// Polling with a deadline, for tests that wait on real processes, kernels and etcd.
import { setTimeout as sleep } from 'node:timers/promises';

/** Calls `fn` every 200 ms until it returns something truthy; throws after `timeoutMs`. */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}
