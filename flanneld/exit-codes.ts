// Exit codes, in one place: systemd's RestartPreventExitStatus=64 69 78 stops crash loops on errors
// that a restart cannot fix.
import type { ErrorCode } from '../lib/errors.js';

export const EXIT = { OK: 0, FAILURE: 1, USAGE: 64, UNAVAILABLE: 69, CONFIG: 78 } as const;

export function exitCodeFor(code: ErrorCode | undefined): number {
  switch (code) {
    case 'FLN_ERR_USAGE': return EXIT.USAGE;
    case 'FLN_ERR_BACKEND_UNSUPPORTED': return EXIT.UNAVAILABLE;
    case 'FLN_ERR_CONFIG_INVALID': return EXIT.CONFIG;
    default: return EXIT.FAILURE;
  }
}
