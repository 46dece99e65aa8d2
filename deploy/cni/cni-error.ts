// CNI errors as the spec defines them: a numeric code, a message and optional details, printed as
// JSON on stdout with a non-zero exit. Codes 1-11 are the spec's; 100 and up are this plugin's own.

export const CNI_CODES = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODE_FAILURE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  /** The delegate plugin (e.g. bridge) is in none of the CNI_PATH directories. */
  DELEGATE_NOT_FOUND: 100,
  /** The delegate ran but failed without printing a CNI error of its own. */
  DELEGATE_FAILED: 101,
} as const;

export interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export class CniError extends Error {
  constructor(readonly code: number, message: string, readonly details = '') {
    super(message);
    this.name = 'CniError';
  }

  toJSON(cniVersion: string): CniErrorJson {
    return { cniVersion, code: this.code, msg: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}
