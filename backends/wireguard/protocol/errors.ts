// Stable error codes of the WireGuard protocol core. Every rejection the core makes is one of these, so
// a caller (later: a drop counter in /metrics) branches on the code, never on the message text.
import { FlannelError, type ErrorCode } from '../../../subnet/errors.js';

export const WG_ERROR_CODES = {
  FLN_ERR_WG_BAD_KEY: 'a key is not 32 bytes (or not valid base64 of 32 bytes)',
  FLN_ERR_WG_BAD_LENGTH: 'a message has the wrong length for its type',
  FLN_ERR_WG_BAD_TYPE: 'a message has an unknown type or non-zero reserved bytes',
  FLN_ERR_WG_BAD_MAC1: 'mac1 of a handshake message does not verify',
  FLN_ERR_WG_BAD_MAC2: 'mac2 of a handshake message does not verify against our current cookie',
  FLN_ERR_WG_HANDSHAKE_DECRYPT: 'an encrypted field of a handshake message does not authenticate',
  FLN_ERR_WG_UNKNOWN_PEER: 'an initiation carries a static key that is not a configured peer',
  FLN_ERR_WG_REPLAYED_INITIATION: 'an initiation timestamp is not newer than the last one accepted from this peer',
  FLN_ERR_WG_UNKNOWN_INDEX: 'a message names a receiver index we have no state for',
  FLN_ERR_WG_BAD_DH: 'a Diffie-Hellman result is all zeros (low-order public key)',
  FLN_ERR_WG_BAD_COOKIE_REPLY: 'a cookie reply does not decrypt against the mac1 we last sent',
  FLN_ERR_WG_TRANSPORT_DECRYPT: 'a transport message does not authenticate',
  FLN_ERR_WG_REPLAYED_COUNTER: 'a transport counter was already received',
  FLN_ERR_WG_COUNTER_TOO_OLD: 'a transport counter is older than the replay window',
  FLN_ERR_WG_COUNTER_EXHAUSTED: 'a keypair reached REJECT_AFTER_MESSAGES',
} as const;

export type WireGuardErrorCode = keyof typeof WG_ERROR_CODES;

/**
 * A FlannelError whose code is one of WG_ERROR_CODES. The shared registry (subnet/errors.ts ERROR_CODES)
 * does not list these codes yet; until it does, the one cast below is the seam, and `wgCode` carries the
 * precise type.
 */
export class WireGuardError extends FlannelError {
  readonly wgCode: WireGuardErrorCode;

  constructor(code: WireGuardErrorCode, message: string = WG_ERROR_CODES[code], details?: Record<string, unknown>) {
    super(code as unknown as ErrorCode, message, details ? { details } : {});
    this.name = 'WireGuardError';
    this.wgCode = code;
  }
}

export function isWireGuardError(err: unknown, code?: WireGuardErrorCode): err is WireGuardError {
  return err instanceof WireGuardError && (code === undefined || err.wgCode === code);
}
