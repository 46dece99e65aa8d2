// The wireguard slice of the network config, with flannel's keys and defaults (pkg/backend/wireguard):
// ListenPort 51820, ListenPortV6 51821, MTU = the interface MTU before the 80-byte overhead, PSK (base64,
// the same on every node), PersistentKeepaliveInterval (integer seconds), Mode. Every problem is
// reported at once, naming the field, the value and what is allowed.
import { ConfigError, type ConfigIssue } from '../../lib/errors.js';
import { pickFields } from '../../lib/json-fields.js';
import { keyFromBase64 } from './protocol/keys.js';

/** IPv6 worst case: 40 IP + 8 UDP + 16 WireGuard header + 16 tag, as flannel reserves for both families. */
export const WIREGUARD_OVERHEAD = 80;
export const WIREGUARD_DEFAULT_PORT = 51820;
export const WIREGUARD_DEFAULT_PORT_V6 = 51821;
export const WIREGUARD_MODES = ['separate', 'auto', 'ipv4', 'ipv6'] as const;
export type WireGuardMode = (typeof WIREGUARD_MODES)[number];

export interface WireGuardConfig {
  readonly listenPort: number;
  readonly listenPortV6: number;
  /** Underlay MTU to assume; 0 = the external interface's. */
  readonly mtu: number;
  /** The pre-shared key, 32 bytes, or undefined for none. */
  readonly psk: Buffer | undefined;
  /** Seconds between keepalives to each peer; 0 = none. */
  readonly persistentKeepaliveSec: number;
  readonly mode: WireGuardMode;
}

const FIELDS = ['ListenPort', 'ListenPortV6', 'MTU', 'PSK', 'PersistentKeepaliveInterval', 'Mode'] as const;
type Field = (typeof FIELDS)[number];

/** `ipv6`: the network config's EnableIPv6 (Mode ipv6 needs it). */
export function parseWireGuardConfig(backend: Readonly<Record<string, unknown>>, opts: { readonly ipv6?: boolean } = {}): WireGuardConfig {
  const f = pickFields<Field>(backend, FIELDS);
  const issues: ConfigIssue[] = [];
  const int = (field: Field, dflt: number, min: number, max: number, what: string): number => {
    const v = f[field];
    if (v === undefined || v === null) return dflt;
    if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max) return v;
    issues.push({ field: `Backend.${field}`, value: v, expected: `must be ${what}` });
    return dflt;
  };
  const listenPort = int('ListenPort', WIREGUARD_DEFAULT_PORT, 1, 65_535, `a UDP port from 1 to 65535 (default ${WIREGUARD_DEFAULT_PORT})`);
  const listenPortV6 = int('ListenPortV6', WIREGUARD_DEFAULT_PORT_V6, 1, 65_535, `a UDP port from 1 to 65535 (default ${WIREGUARD_DEFAULT_PORT_V6})`);
  const mtu = int('MTU', 0, 0, 65_535, 'the underlay MTU in bytes, or 0 for the interface MTU');
  if (mtu !== 0 && mtu < 68 + WIREGUARD_OVERHEAD) {
    issues.push({ field: 'Backend.MTU', value: mtu, expected: `is too small: at least ${68 + WIREGUARD_OVERHEAD} leaves room for the ${WIREGUARD_OVERHEAD}-byte WireGuard overhead` });
  }
  // flannel reads a Go time.Duration multiplied by a second: JSON must hold an integer ("25s" fails there too).
  const persistentKeepaliveSec = int('PersistentKeepaliveInterval', 0, 0, 65_535, 'whole seconds from 0 (off) to 65535, as a number (e.g. 25, not "25s")');
  const psk = readPsk(f.PSK, issues);
  const mode = readMode(f.Mode, issues, opts.ipv6 ?? false);
  if (issues.length > 0) throw new ConfigError('the Backend section of the network config', issues);
  return { listenPort, listenPortV6, mtu, psk, persistentKeepaliveSec, mode };
}

function readPsk(v: unknown, issues: ConfigIssue[]): Buffer | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'string') {
    try {
      return keyFromBase64(v);
    } catch {
      // reported below
    }
  }
  issues.push({ field: 'Backend.PSK', value: '[redacted]', expected: 'must be base64 of 32 bytes, as `wg genpsk` prints it, or empty for none' });
  return undefined;
}

function readMode(v: unknown, issues: ConfigIssue[], ipv6: boolean): WireGuardMode {
  if (v === undefined || v === null || v === '') return 'separate';
  if (typeof v !== 'string' || !(WIREGUARD_MODES as readonly string[]).includes(v)) {
    issues.push({ field: 'Backend.Mode', value: v, expected: `is no valid Mode: expected one of ${WIREGUARD_MODES.join(', ')} (default separate)` });
    return 'separate';
  }
  if (v === 'ipv6' && !ipv6) {
    issues.push({ field: 'Backend.Mode', value: v, expected: 'dials the peers\' PublicIPv6 and needs EnableIPv6 in the network config: enable IPv6, or use separate, auto or ipv4' });
  }
  return v as WireGuardMode;
}
