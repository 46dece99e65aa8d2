// The one registry of error codes. Every thrown error that a caller may branch on is a FlannelError
// with a stable `code`; branch on the code, never on message text. Base module: imports nothing.

export const ERROR_CODES = {
  FLN_ERR_USAGE: 'bad command-line flag or environment variable',
  FLN_ERR_CONFIG_NOT_FOUND: 'the network config key is missing in etcd',
  FLN_ERR_CONFIG_INVALID: 'the network config in etcd is invalid',
  FLN_ERR_BACKEND_UNKNOWN: 'Backend.Type names no known backend',
  FLN_ERR_BACKEND_UNSUPPORTED: 'the backend cannot run on this host or in this build',
  FLN_ERR_IFACE_NOT_FOUND: 'no external interface matches the flags',
  FLN_ERR_ETCD_UNAVAILABLE: 'etcd could not be reached',
  FLN_ERR_LEASE_CONFLICT: 'another node took the subnet first (retried internally)',
  FLN_ERR_SUBNETS_EXHAUSTED: 'every subnet of the network is leased',
  FLN_ERR_LEASE_REVOKED: "this node's lease was deleted or expired in etcd",
  FLN_ERR_KERNEL_OP: 'a route, link or firewall change failed',
  FLN_ERR_FILE_WRITE: 'a state file could not be written',
  // The Kubernetes subnet manager (subnet/kube).
  FLN_ERR_KUBE_CONFIG: 'the Kubernetes client config (kubeconfig, in-cluster files, --kube-api-url) is missing or unusable',
  FLN_ERR_KUBE_UNAVAILABLE: 'the Kubernetes API server could not be reached or answered with a server error (retried)',
  FLN_ERR_KUBE_FORBIDDEN: 'the Kubernetes API server refused our credentials (401) or a permission flannel needs (403)',
  FLN_ERR_KUBE_NOT_FOUND: 'a Node or Pod named in the config does not exist in the Kubernetes API',
  FLN_ERR_KUBE_API: 'the Kubernetes API server refused a request (another 4xx) or answered with something unreadable',
  FLN_ERR_KUBE_WATCH_GONE: 'a Kubernetes watch resourceVersion is too old (410 Gone): list again',
  FLN_ERR_KUBE_POD_CIDR: "this node's podCIDR is invalid or does not fit the network config",
  FLN_ERR_WG_KEY_FILE: 'the WireGuard key file cannot be read or written, or is damaged',
  // The WireGuard protocol core (backends/wireguard/protocol): every rejection it makes.
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
  // The WireGuard session layer (backends/wireguard/session).
  FLN_ERR_WG_TABLE_FULL: 'every keypair slot of the wireguard table is in use or quarantined',
  FLN_ERR_WG_BAD_TABLE_INDEX: 'a keypair index does not name a slot in the expected state of the wireguard table',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class FlannelError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'FlannelError';
    this.code = code;
    this.details = opts.details;
  }

  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details ? { code: this.code, message: this.message, details: this.details } : { code: this.code, message: this.message };
  }
}

/** One problem in a config: which field, what value arrived, and what is allowed. */
export interface ConfigIssue {
  readonly field: string;
  readonly value: unknown;
  readonly expected: string;
}

export function formatIssue(issue: ConfigIssue): string {
  return `${issue.field}: ${JSON.stringify(issue.value) ?? 'undefined'} ${issue.expected}`;
}

/** Every problem of one config source at once, so the user fixes them in one round. */
export class ConfigError extends FlannelError {
  readonly issues: readonly ConfigIssue[];

  constructor(source: string, issues: readonly ConfigIssue[], code: ErrorCode = 'FLN_ERR_CONFIG_INVALID') {
    const lines = issues.map((i) => `  - ${formatIssue(i)}`);
    super(code, `invalid config in ${source} (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n${lines.join('\n')}`, {
      details: { source, issues },
    });
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export function isFlannelError(err: unknown, code?: ErrorCode): err is FlannelError {
  return err instanceof FlannelError && (code === undefined || err.code === code);
}

export function isAbortError(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
