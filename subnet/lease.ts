// Leases as flannel stores them: the key <prefix>/subnets/10.244.3.0-24 (dual-stack:
// 10.244.3.0-24&fd00:10:244:3::-64) and the LeaseAttrs JSON value. IPv6-only leases, which flannel
// cannot keep in etcd (its key needs an IPv4 part), are ours alone: <prefix>/subnets/fd00:10:244:3::-64
// (no IPv4 part, so flannel's key regex skips it) with PublicIP "0.0.0.0" and the node in PublicIPv6. Backends import these types
// (type-only); encoding is byte-for-byte what flannel's Go code writes (pkg/subnet/subnet.go
// MakeSubnetKey / ParseSubnetKey, pkg/lease LeaseAttrs).
import { type Cidr4, type Ip4, formatIp4, makeCidr4, parseIp4 } from '../lib/ip.js';
import { type Cidr6, type Ip6, formatIp6, makeCidr6, parseIp6 } from '../lib/ip6.js';
import { parseJsonObject, pickFields } from '../lib/json-fields.js';

export interface LeaseAttrs {
  readonly publicIp: Ip4;
  /** Absent for the udp backend, which (like flannel's) publishes no BackendType. */
  readonly backendType?: string;
  /** Raw backend JSON, e.g. {"VNI":1,"VtepMAC":"…"}; kept as text so it round-trips exactly. */
  readonly backendData?: string;
  /** PublicIPv6: the node's IPv6 underlay address; absent is written as null (flannel has no omitempty there). */
  readonly publicIpv6?: Ip6;
  /** Raw BackendV6Data JSON, e.g. vxlan's {"VNI":1,"VtepMAC":"…"} for flannel-v6.1; omitted when absent. */
  readonly backendV6Data?: string;
}

export interface Lease {
  /** The IPv4 subnet; absent on an IPv6-only lease. */
  readonly subnet?: Cidr4;
  /** The IPv6 subnet of a dual-stack lease (the key's "&<v6>-<len>" part) or of an IPv6-only one. */
  readonly ipv6Subnet?: Cidr6;
  readonly attrs: LeaseAttrs;
  /** Wall-clock expiry in ms since the epoch; Infinity for a reservation (a key with no etcd lease). */
  readonly expiresAtMs: number;
  /** The etcd lease ID holding the key, as a decimal string; '0' for a reservation. */
  readonly etcdLeaseId: string;
}

export type LeaseEvent =
  | { readonly kind: 'added'; readonly lease: Lease }
  | { readonly kind: 'removed'; readonly lease: Lease };

/** The subnets of a lease: the IPv4 one, the IPv6 one, or both; never neither. */
export type KeySubnets =
  | { readonly subnet: Cidr4; readonly ipv6Subnet?: Cidr6 }
  | { readonly subnet?: undefined; readonly ipv6Subnet: Cidr6 };

/**
 * `10.244.3.0-24`, `10.244.3.0-24&fd00:10:244:3::-64` with an IPv6 subnet, or `fd00:10:244:3::-64` for an
 * IPv6-only lease: the last path element of a lease key. The IPv6 address is printed as Go's
 * net.IP.String() prints it (lib/ip6.ts formatIp6).
 */
export function subnetToKeyPart(subnet: Cidr4 | undefined, ipv6Subnet?: Cidr6): string {
  const v6 = ipv6Subnet === undefined ? undefined : `${formatIp6(ipv6Subnet.ip)}-${ipv6Subnet.prefixLen}`;
  if (subnet === undefined) {
    if (v6 === undefined) throw new RangeError('a lease key needs an IPv4 or an IPv6 subnet');
    return v6;
  }
  const v4 = `${formatIp4(subnet.ip)}-${subnet.prefixLen}`;
  return v6 === undefined ? v4 : `${v4}&${v6}`;
}

/**
 * What tells leases apart, in the watch cache and in the backends: the IPv4 subnet (a lease that gains
 * or loses its IPv6 part stays the same lease), or the IPv6 subnet of an IPv6-only lease.
 */
export function leaseIdentity(lease: { readonly subnet?: Cidr4; readonly ipv6Subnet?: Cidr6 }): string {
  return lease.subnet ? subnetToKeyPart(lease.subnet) : subnetToKeyPart(undefined, lease.ipv6Subnet);
}

/** The lease's subnets for logs: "10.244.3.0/24", "10.244.3.0/24 + fd00:10:244:3::/64" or "fd00:10:244:3::/64". */
export function describeSubnets(lease: { readonly subnet?: Cidr4; readonly ipv6Subnet?: Cidr6 }): string {
  const parts = [lease.subnet ? `${formatIp4(lease.subnet.ip)}/${lease.subnet.prefixLen}` : undefined,
    lease.ipv6Subnet ? `${formatIp6(lease.ipv6Subnet.ip)}/${lease.ipv6Subnet.prefixLen}` : undefined];
  return parts.filter((p) => p !== undefined).join(' + ');
}

// flannel's subnetRegex, anchored at the end only as its parser is: the IPv4 part is mandatory, a
// dual-stack key ends in "&<v6>-<len>" (lowercase hex and colons only). The v4 length is at most 31
// (strconv.ParseUint(…, 10, 5)), the v6 length at most 127 (…, 10, 7).
const KEY_PART = /(\d+\.\d+.\d+.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$/;
// Ours alone: an IPv6-only key, the whole last element "<v6>-<len>" (no dots, so KEY_PART never matches).
const KEY_PART_V6_ONLY = /\/([a-f\d:]+)-(\d+)$/;

/**
 * Parses a lease key with flannel's rules; undefined when the key is not a subnet (flannel skips those),
 * including a dual-stack key whose IPv6 part does not parse. IPv4 host bits make a key no subnet (as
 * before); IPv6 host bits are masked off instead, because flannel reads such a key as a lease, and
 * skipping it would hide its IPv4 subnet from our allocator. An IPv6-only key (ours) must be exact:
 * no host bits, a prefix of at most 127.
 */
export function subnetsFromKey(key: string): KeySubnets | undefined {
  const m = KEY_PART.exec(key);
  if (!m) return v6OnlyFromKey(key);
  const ip = parseIp4(m[1] as string);
  const len = Number(m[2]);
  if (ip === undefined || len > 31) return undefined;
  const subnet = makeCidr4(ip, len);
  if (subnet.ip !== ip) return undefined;
  if (m[3] === undefined) return { subnet };
  const ip6 = parseIp6(m[3]);
  const len6 = Number(m[4]);
  if (ip6 === undefined || len6 > 127) return undefined;
  return { subnet, ipv6Subnet: makeCidr6(ip6, len6) };
}

function v6OnlyFromKey(key: string): KeySubnets | undefined {
  const m = KEY_PART_V6_ONLY.exec(key);
  if (!m) return undefined;
  const ip6 = parseIp6(m[1] as string);
  const len6 = Number(m[2]);
  if (ip6 === undefined || len6 > 127 || m[2] !== String(len6)) return undefined;
  const ipv6Subnet = makeCidr6(ip6, len6);
  return ipv6Subnet.ip === ip6 ? { ipv6Subnet } : undefined;
}

/** The IPv4 subnet of a lease key (see subnetsFromKey); undefined when the key is not a subnet or is IPv6-only. */
export function subnetFromKey(key: string): Cidr4 | undefined {
  return subnetsFromKey(key)?.subnet;
}

/**
 * The value flannel writes: PublicIP, PublicIPv6 (null when absent), then BackendType, BackendData and
 * BackendV6Data when set (omitempty).
 */
export function encodeLeaseAttrs(attrs: LeaseAttrs): string {
  const v6 = attrs.publicIpv6 === undefined ? 'null' : JSON.stringify(formatIp6(attrs.publicIpv6));
  let json = `{"PublicIP":${JSON.stringify(formatIp4(attrs.publicIp))},"PublicIPv6":${v6}`;
  if (attrs.backendType) json += `,"BackendType":${JSON.stringify(attrs.backendType)}`;
  if (attrs.backendData) json += `,"BackendData":${attrs.backendData}`;
  if (attrs.backendV6Data) json += `,"BackendV6Data":${attrs.backendV6Data}`;
  return `${json}}`;
}

/**
 * Parses a lease value leniently (any key case, extra fields ignored); undefined if unusable. A
 * PublicIPv6 that is neither null nor an address makes the value unusable, as it makes Go's
 * json.Unmarshal fail in flannel; IPv4 text there is read as IPv4-mapped, as Go's net.ParseIP does.
 */
export function decodeLeaseAttrs(text: string): LeaseAttrs | undefined {
  const raw = parseJsonObject(text);
  if (!raw) return undefined;
  const f = pickFields(raw, ['PublicIP', 'PublicIPv6', 'BackendType', 'BackendData', 'BackendV6Data']);
  const publicIp = typeof f.PublicIP === 'string' ? parseIp4(f.PublicIP) : undefined;
  if (publicIp === undefined) return undefined;
  const attrs: { publicIp: Ip4; backendType?: string; backendData?: string; publicIpv6?: Ip6; backendV6Data?: string } = { publicIp };
  if (f.PublicIPv6 !== undefined && f.PublicIPv6 !== null) {
    const v6 = typeof f.PublicIPv6 === 'string' ? parsePublicIpv6(f.PublicIPv6) : undefined;
    if (v6 === undefined) return undefined;
    attrs.publicIpv6 = v6;
  }
  if (typeof f.BackendType === 'string' && f.BackendType !== '') attrs.backendType = f.BackendType;
  if (f.BackendData !== undefined && f.BackendData !== null) attrs.backendData = JSON.stringify(f.BackendData);
  if (f.BackendV6Data !== undefined && f.BackendV6Data !== null) attrs.backendV6Data = JSON.stringify(f.BackendV6Data);
  return attrs;
}

function parsePublicIpv6(text: string): Ip6 | undefined {
  const v6 = parseIp6(text);
  if (v6 !== undefined) return v6;
  const v4 = parseIp4(text);
  return v4 === undefined ? undefined : (0xffffn << 32n) | BigInt(v4);
}

/**
 * Whether two lease values come from the same node: by PublicIP, as flannel matches them, or by
 * PublicIPv6 when both PublicIPs are 0.0.0.0 (IPv6-only leases, whose nodes have no IPv4 identity).
 */
export function sameNode(a: LeaseAttrs, b: LeaseAttrs): boolean {
  if (a.publicIp !== 0 || b.publicIp !== 0) return a.publicIp === b.publicIp;
  return a.publicIpv6 !== undefined && a.publicIpv6 === b.publicIpv6;
}

/** The node a lease value names, for logs: its PublicIP, or its PublicIPv6 on an IPv6-only lease. */
export function describeNode(attrs: LeaseAttrs): string {
  return attrs.publicIp === 0 && attrs.publicIpv6 !== undefined ? formatIp6(attrs.publicIpv6) : formatIp4(attrs.publicIp);
}

export function sameAttrs(a: LeaseAttrs, b: LeaseAttrs): boolean {
  return a.publicIp === b.publicIp && a.backendType === b.backendType && a.backendData === b.backendData
    && a.publicIpv6 === b.publicIpv6 && a.backendV6Data === b.backendV6Data;
}
