// Leases as flannel stores them: the key <prefix>/subnets/10.244.3.0-24 and the LeaseAttrs JSON value.
// Backends import these types (type-only); encoding is byte-for-byte what flannel's Go code writes.
import { type Cidr4, type Ip4, formatIp4, makeCidr4, parseIp4 } from '../lib/ip.js';
import { parseJsonObject, pickFields } from '../lib/json-fields.js';

export interface LeaseAttrs {
  readonly publicIp: Ip4;
  /** Absent for the udp backend, which (like flannel's) publishes no BackendType. */
  readonly backendType?: string;
  /** Raw backend JSON, e.g. {"VNI":1,"VtepMAC":"…"}; kept as text so it round-trips exactly. */
  readonly backendData?: string;
}

export interface Lease {
  readonly subnet: Cidr4;
  readonly attrs: LeaseAttrs;
  /** Wall-clock expiry in ms since the epoch; Infinity for a reservation (a key with no etcd lease). */
  readonly expiresAtMs: number;
  /** The etcd lease ID holding the key, as a decimal string; '0' for a reservation. */
  readonly etcdLeaseId: string;
}

export type LeaseEvent =
  | { readonly kind: 'added'; readonly lease: Lease }
  | { readonly kind: 'removed'; readonly lease: Lease };

/** `10.244.3.0-24`, the last path element of a lease key. */
export function subnetToKeyPart(subnet: Cidr4): string {
  return `${formatIp4(subnet.ip)}-${subnet.prefixLen}`;
}

// Anchored at the end only, as flannel's parser is; a dual-stack key ends in "&<v6>-<len>", of which
// we use the IPv4 part. The v4 length is at most 31 (a 5-bit parse).
const KEY_PART = /(\d+\.\d+\.\d+\.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$/;

/** Parses the subnet out of a lease key; undefined when the key is not a subnet (flannel skips those). */
export function subnetFromKey(key: string): Cidr4 | undefined {
  const m = KEY_PART.exec(key);
  if (!m) return undefined;
  const ip = parseIp4(m[1] as string);
  const len = Number(m[2]);
  if (ip === undefined || len > 31 || (m[4] !== undefined && Number(m[4]) > 127)) return undefined;
  const c = makeCidr4(ip, len);
  return c.ip === ip ? c : undefined;
}

/** The value flannel writes: PublicIP, PublicIPv6 (null), then BackendType and BackendData if set. */
export function encodeLeaseAttrs(attrs: LeaseAttrs): string {
  let json = `{"PublicIP":${JSON.stringify(formatIp4(attrs.publicIp))},"PublicIPv6":null`;
  if (attrs.backendType) json += `,"BackendType":${JSON.stringify(attrs.backendType)}`;
  if (attrs.backendData) json += `,"BackendData":${attrs.backendData}`;
  return `${json}}`;
}

/** Parses a lease value leniently (any key case, extra fields ignored); undefined if unusable. */
export function decodeLeaseAttrs(text: string): LeaseAttrs | undefined {
  const raw = parseJsonObject(text);
  if (!raw) return undefined;
  const f = pickFields(raw, ['PublicIP', 'BackendType', 'BackendData']);
  const publicIp = typeof f.PublicIP === 'string' ? parseIp4(f.PublicIP) : undefined;
  if (publicIp === undefined) return undefined;
  const attrs: { publicIp: Ip4; backendType?: string; backendData?: string } = { publicIp };
  if (typeof f.BackendType === 'string' && f.BackendType !== '') attrs.backendType = f.BackendType;
  if (f.BackendData !== undefined && f.BackendData !== null) attrs.backendData = JSON.stringify(f.BackendData);
  return attrs;
}

export function sameAttrs(a: LeaseAttrs, b: LeaseAttrs): boolean {
  return a.publicIp === b.publicIp && a.backendType === b.backendType && a.backendData === b.backendData;
}
