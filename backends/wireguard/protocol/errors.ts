// Stable error codes of the WireGuard protocol core. Every rejection the core makes is one of these, so
// a caller (later: a drop counter in /metrics) branches on the code, never on the message text.
import { ERROR_CODES, FlannelError, type ErrorCode } from '../../../lib/errors.js';

/** The WireGuard codes of the shared registry (subnet/errors.ts ERROR_CODES). */
export type WireGuardErrorCode = Extract<ErrorCode, `FLN_ERR_WG_${string}`>;

/** A FlannelError whose code is one of the WireGuard codes; `wgCode` carries the narrower type. */
export class WireGuardError extends FlannelError {
  readonly wgCode: WireGuardErrorCode;

  constructor(code: WireGuardErrorCode, message: string = ERROR_CODES[code], details?: Record<string, unknown>) {
    super(code, message, details ? { details } : {});
    this.name = 'WireGuardError';
    this.wgCode = code;
  }
}

export function isWireGuardError(err: unknown, code?: WireGuardErrorCode): err is WireGuardError {
  return err instanceof WireGuardError && (code === undefined || err.wgCode === code);
}
