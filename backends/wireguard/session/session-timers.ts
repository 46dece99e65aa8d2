// The timer values the session layer uses (whitepaper §6, wireguard-go device/constants.go), in ms.
// One object, shared by the WgTable (which writes REJECT/REKEY_AFTER into the header C reads) and
// WireGuardSessions, so the two sides never disagree; only tests shorten them.
import {
  KEEPALIVE_TIMEOUT_MS, REJECT_AFTER_TIME_MS, REKEY_AFTER_TIME_MS, REKEY_ATTEMPT_TIME_MS, REKEY_TIMEOUT_MS,
} from '../protocol/index.js';

export interface WireGuardTimers {
  readonly rekeyAfterMs: number;
  readonly rejectAfterMs: number;
  readonly rekeyAttemptMs: number;
  readonly rekeyTimeoutMs: number;
  /** Retransmissions wait rekeyTimeoutMs plus a random 0..rekeyJitterMs. */
  readonly rekeyJitterMs: number;
  readonly keepaliveTimeoutMs: number;
  /** A freed keypair slot is not reused for this long (a worker may still hold it). */
  readonly slotQuarantineMs: number;
}

export const WIREGUARD_TIMERS: WireGuardTimers = Object.freeze({
  rekeyAfterMs: REKEY_AFTER_TIME_MS,
  rejectAfterMs: REJECT_AFTER_TIME_MS,
  rekeyAttemptMs: REKEY_ATTEMPT_TIME_MS,
  rekeyTimeoutMs: REKEY_TIMEOUT_MS,
  rekeyJitterMs: 333,
  keepaliveTimeoutMs: KEEPALIVE_TIMEOUT_MS,
  slotQuarantineMs: 10_000,
});

/** CLOCK_MONOTONIC in ms (process.hrtime), the clock C's CREATED_US ages are measured with. */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}
