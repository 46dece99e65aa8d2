// Leases as flannel stores them: the key <prefix>/subnets/10.244.3.0-24 (dual-stack:
// 10.244.3.0-24&fd00:10:244:3::-64) and the LeaseAttrs JSON value. Backends import these types
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
  readonly subnet: Cidr4;
  /** The IPv6 subnet of a dual-stack lease (the key's "&<v6>-<len>" part). */
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

/**
 * `10.244.3.0-24`, or `10.244.3.0-24&fd00:10:244:3::-64` with an IPv6 subnet: the last path element of a
 * lease key. The IPv6 address is printed as Go's net.IP.String() prints it (lib/ip6.ts formatIp6).
 */
export function subnetToKeyPart(subnet: Cidr4, ipv6Subnet?: Cidr6): string {
  const v4 = `${formatIp4(subnet.ip)}-${subnet.prefixLen}`;
  return ipv6Subnet === undefined ? v4 : `${v4}&${formatIp6(ipv6Subnet.ip)}-${ipv6Subnet.prefixLen}`;
}

// flannel's subnetRegex, anchored at the end only as its parser is: the IPv4 part is mandatory, a
// dual-stack key ends in "&<v6>-<len>" (lowercase hex and colons only). The v4 length is at most 31
// (strconv.ParseUint(…, 10, 5)), the v6 length at most 127 (…, 10, 7).
const KEY_PART = /(\d+\.\d+\.\d+\.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$/;

/** The subnets of a lease key: always the IPv4 one, and the IPv6 one of a dual-stack key. */
export interface KeySubnets {
  readonly subnet: Cidr4;
  readonly ipv6Subnet?: Cidr6;
}

/**
 * Parses a lease key with flannel's rules; undefined when the key is not a subnet (flannel skips those),
 * including a dual-stack key whose IPv6 part does not parse. IPv4 host bits make a key no subnet (as
 * before); IPv6 host bits are masked off instead, because flannel reads such a key as a lease, and
 * skipping it would hide its IPv4 subnet from our allocator.
 */
export function subnetsFromKey(key: string): KeySubnets | undefined {
  const m = KEY_PART.exec(key);
  if (!m) return undefined;
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

/** The IPv4 subnet of a lease key (see subnetsFromKey); undefined when the key is not a subnet. */
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

export function sameAttrs(a: LeaseAttrs, b: LeaseAttrs): boolean {
  return a.publicIp === b.publicIp && a.backendType === b.backendType && a.backendData === b.backendData
    && a.publicIpv6 === b.publicIpv6 && a.backendV6Data === b.backendV6Data;
}
