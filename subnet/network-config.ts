// Parses and validates the network config stored at <prefix>/config, with flannel's defaults and
// rules (pkg/subnet/config.go): keys match case-insensitively, every problem is reported at once.
//
// Two entry points over one parser:
//  - parseNetworkConfigAllFamilies: the complete parser, flannel's CheckNetworkConfig for both families
//    (EnableIPv4 default true, EnableIPv6 default false, IPv6Network / IPv6SubnetLen / IPv6SubnetMin /
//    IPv6SubnetMax with flannel's defaults and checks; the checks of a disabled family are skipped).
//  - parseNetworkConfig: what the daemon uses: the same, and EnableIPv6 with the IPv4-only udp backend
//    refused. IPv4, dual-stack and IPv6-only (EnableIPv4 false) all run.
import { ConfigError, type ConfigIssue } from '../lib/errors.js';
import { isPlainObject, pickFields } from '../lib/json-fields.js';
import {
  type Cidr4, type Ip4, cidrContains, formatCidr4, formatIp4, lastIp, maskOf, parseCidr4, parseIp4, sizeOf,
} from '../lib/ip.js';
import {
  type Cidr6, type Ip6, cidr6Contains, cidr6Overlaps, formatCidr6, formatIp6, isOnBoundary6, lastIp6, parseCidr6, parseIp6, sizeOf6,
} from '../lib/ip6.js';

export const BACKEND_TYPES = ['udp', 'vxlan', 'host-gw', 'wireguard'] as const;
export type BackendType = (typeof BACKEND_TYPES)[number];

/** The IPv4 pool: Network, SubnetLen, SubnetMin, SubnetMax after flannel's defaults. */
export interface Ipv4Pool {
  readonly network: Cidr4;
  readonly subnetLen: number;
  readonly subnetMin: Ip4;
  readonly subnetMax: Ip4;
}

/** The IPv6 pool: IPv6Network, IPv6SubnetLen, IPv6SubnetMin, IPv6SubnetMax after flannel's defaults. */
export interface Ipv6Pool {
  readonly network: Cidr6;
  readonly subnetLen: number;
  /** The first subnet that may be leased (its network address). */
  readonly subnetMin: Ip6;
  /** The last subnet that may be leased (its network address). */
  readonly subnetMax: Ip6;
}

/** The network config of either or both families, as the daemon runs it. */
export interface NetworkConfig {
  /** The IPv4 pool; absent exactly when EnableIPv4 is false (IPv6-only). */
  readonly ipv4?: Ipv4Pool;
  /** The IPv6 pool; present exactly when EnableIPv6 is true. */
  readonly ipv6?: Ipv6Pool;
  readonly enableNFTables: boolean;
  readonly backendType: BackendType;
  /** The Backend object as written, for the backend to parse its own options. */
  readonly backend: Readonly<Record<string, unknown>>;
}

/** The complete config of either or both families (parseNetworkConfigAllFamilies), with the two switches. */
export interface NetworkConfigAllFamilies extends NetworkConfig {
  readonly enableIPv4: boolean;
  readonly enableIPv6: boolean;
}

const FIELDS = ['Network', 'SubnetLen', 'SubnetMin', 'SubnetMax', 'EnableIPv4', 'EnableIPv6', 'IPv6Network',
  'IPv6SubnetLen', 'IPv6SubnetMin', 'IPv6SubnetMax', 'EnableNFTables', 'Backend'] as const;
type Field = (typeof FIELDS)[number];

/**
 * Parses the config text from etcd for the daemon: IPv4, dual-stack, or IPv6-only (EnableIPv4 false);
 * EnableIPv6 with the udp backend is refused, as flannel does. Throws ConfigError listing every problem.
 */
export function parseNetworkConfig(text: string, source: string): NetworkConfig {
  const { enableIPv4: _v4, enableIPv6: _v6, ...config } = parse(text, source, true);
  return config;
}

/**
 * The complete parser: flannel's ParseConfig + CheckNetworkConfig for IPv4 and IPv6, every problem
 * collected, IPv6-only included. Throws ConfigError.
 */
export function parseNetworkConfigAllFamilies(text: string, source: string): NetworkConfigAllFamilies {
  return parse(text, source, false);
}

function parse(text: string, source: string, daemon: boolean): NetworkConfigAllFamilies {
  const f = readDocument(text, source);
  const issues: ConfigIssue[] = [];
  const { v4, v6 } = readFamilies(f, issues);
  const enableNFTables = readBool(f, 'EnableNFTables', false, issues);
  const backend = readBackend(f.Backend, issues);
  const ipv4 = v4 ? readNetwork(f, issues) : undefined;
  const ipv6 = v6 ? readNetwork6(f, issues) : undefined;
  if (!v4 && !v6) issues.push({ field: 'EnableIPv4', value: false, expected: 'leaves no address family: set EnableIPv4 or EnableIPv6 to true' });
  if (daemon && v6 && backend?.type === 'udp') {
    issues.push({ field: 'EnableIPv6', value: true, expected: 'cannot be used with the udp backend, which is IPv4-only as in flannel: use the vxlan, host-gw or wireguard backend for IPv6, or set EnableIPv6 to false' });
  }
  if (daemon && !v4 && ipv6 && isV4Mapped(ipv6.network)) {
    // Such subnets print as IPv4 text in lease keys (Go's net.IP.String()), which flannel would misread.
    issues.push({ field: 'IPv6Network', value: formatCidr6(ipv6.network), expected: 'must not lie in ::ffff:0:0/96 (IPv4-mapped addresses) in an IPv6-only config; use a ULA such as "fd00:10:244::/56"' });
  }
  if (issues.length > 0 || !backend || (v4 && !ipv4) || (v6 && !ipv6)) throw new ConfigError(source, issues);
  return {
    enableIPv4: v4,
    enableIPv6: v6,
    ...(ipv4 ? { ipv4 } : {}),
    ...(ipv6 ? { ipv6 } : {}),
    enableNFTables,
    backendType: backend.type,
    backend: backend.raw,
  };
}

/** ::ffff:0:0/96: addresses Go prints as IPv4 text. */
const V4_MAPPED: Cidr6 = { ip: 0xffffn << 32n, prefixLen: 96 };
function isV4Mapped(c: Cidr6): boolean {
  return cidr6Overlaps(c, V4_MAPPED);
}

type Fields = Partial<Record<Field, unknown>>;

function readDocument(text: string, source: string): Fields {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(source, [{ field: '(document)', value: text.slice(0, 80), expected: `is not valid JSON (${(err as Error).message})` }]);
  }
  if (!isPlainObject(raw)) {
    throw new ConfigError(source, [{ field: '(document)', value: raw, expected: 'must be a JSON object, e.g. {"Network":"10.244.0.0/16"}' }]);
  }
  return pickFields<Field>(raw, FIELDS);
}

/** EnableIPv4 (flannel sets it true before decoding) and EnableIPv6 (default false). */
function readFamilies(f: Fields, issues: ConfigIssue[]): { v4: boolean; v6: boolean } {
  return { v4: readBool(f, 'EnableIPv4', true, issues), v6: readBool(f, 'EnableIPv6', false, issues) };
}

function readBool(f: Fields, field: Field, dflt: boolean, issues: ConfigIssue[]): boolean {
  const v = f[field];
  if (v === undefined || v === null) return dflt;
  if (typeof v === 'boolean') return v;
  issues.push({ field, value: v, expected: 'must be true or false' });
  return dflt;
}

function readBackend(raw: unknown, issues: ConfigIssue[]): { type: BackendType; raw: Record<string, unknown> } | undefined {
  // flannel: a missing Backend means udp; a Backend without Type is an unknown (empty) type.
  if (raw === undefined) return { type: 'udp', raw: { Type: 'udp' } };
  if (!isPlainObject(raw)) {
    issues.push({ field: 'Backend', value: raw, expected: 'must be an object, e.g. {"Type":"vxlan"}' });
    return undefined;
  }
  const { Type: type } = pickFields(raw, ['Type']);
  const allowed = `expected one of ${BACKEND_TYPES.join(', ')}`;
  if (typeof type !== 'string') {
    issues.push({ field: 'Backend.Type', value: type, expected: `is missing or not a string (unknown backend type); ${allowed}` });
    return undefined;
  }
  const lower = type.toLowerCase();
  if (!(BACKEND_TYPES as readonly string[]).includes(lower)) {
    issues.push({ field: 'Backend.Type', value: type, expected: `is an unknown backend type; ${allowed}` });
    return undefined;
  }
  return { type: lower as BackendType, raw };
}

/** flannel's CheckNetworkConfig for IPv4, in its order, collecting rather than stopping. */
function readNetwork(f: Fields, issues: ConfigIssue[]): Ipv4Pool | undefined {
  const network = readCidr(f.Network, issues);
  const explicitLen = readSubnetLen(f.SubnetLen, issues);
  const min = readIp(f, 'SubnetMin', issues);
  const max = readIp(f, 'SubnetMax', issues);
  if (!network || explicitLen === undefined) return undefined;

  let subnetLen = explicitLen;
  if (subnetLen > 0) {
    if (subnetLen > 30) issues.push({ field: 'SubnetLen', value: subnetLen, expected: 'is too long: SubnetLen must be less than /31' });
    else if (subnetLen < network.prefixLen + 2) {
      issues.push({ field: 'SubnetLen', value: subnetLen, expected: `is too short: the network must be able to accommodate at least four subnets, so SubnetLen must be at least ${network.prefixLen + 2} for ${formatCidr4(network)}` });
    }
  } else if (network.prefixLen > 28) {
    issues.push({ field: 'Network', value: formatCidr4(network), expected: 'is too small: the minimum useful network prefix is /28' });
  } else {
    subnetLen = network.prefixLen <= 22 ? 24 : network.prefixLen + 2;
  }
  if (issues.some((i) => i.field === 'SubnetLen' || i.field === 'Network')) return undefined;

  const step = sizeOf(subnetLen);
  const subnetMin = min === undefined || min === 0 ? network.ip + step : min;
  const subnetMax = max === undefined || max === 0 ? lastIp(network) + 1 - step : max;
  checkBound('SubnetMin', subnetMin, network, subnetLen, issues);
  checkBound('SubnetMax', subnetMax, network, subnetLen, issues);
  return { network, subnetLen, subnetMin, subnetMax };
}

function readCidr(v: unknown, issues: ConfigIssue[]): Cidr4 | undefined {
  if (v === undefined || v === null || v === '') {
    issues.push({ field: 'Network', value: v ?? null, expected: 'is missing: please define a correct Network parameter in the flannel config, e.g. "10.244.0.0/16"' });
    return undefined;
  }
  const c = typeof v === 'string' ? parseCidr4(v) : undefined;
  if (!c) issues.push({ field: 'Network', value: v, expected: 'is not an IPv4 CIDR (invalid IPv4 CIDR format), e.g. "10.244.0.0/16"' });
  return c;
}

function readSubnetLen(v: unknown, issues: ConfigIssue[], field: 'SubnetLen' | 'IPv6SubnetLen' = 'SubnetLen'): number | undefined {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  issues.push({ field, value: v, expected: `must be a whole number of prefix bits, e.g. ${field === 'SubnetLen' ? 24 : 64}` });
  return undefined;
}

function readIp(f: Fields, field: 'SubnetMin' | 'SubnetMax', issues: ConfigIssue[]): Ip4 | undefined {
  const v = f[field];
  if (v === undefined || v === null) return undefined;
  const ip = typeof v === 'string' ? parseIp4(v) : undefined;
  if (ip === undefined) issues.push({ field, value: v, expected: 'is not an IPv4 address, e.g. "10.244.1.0"' });
  return ip;
}

function checkBound(field: 'SubnetMin' | 'SubnetMax', ip: Ip4, network: Cidr4, subnetLen: number, issues: ConfigIssue[]): void {
  if (!cidrContains(network, ip)) {
    issues.push({ field, value: formatIp4(ip), expected: `is not in the range of the Network ${formatCidr4(network)}` });
  } else if (((ip & maskOf(subnetLen)) >>> 0) !== ip) {
    issues.push({ field, value: formatIp4(ip), expected: `is not on a SubnetLen boundary (/${subnetLen})` });
  }
}

/** flannel's CheckNetworkConfig for IPv6, in its order, collecting rather than stopping. */
function readNetwork6(f: Fields, issues: ConfigIssue[]): Ipv6Pool | undefined {
  const before = issues.length;
  const network = readCidr6(f.IPv6Network, issues);
  const explicitLen = readSubnetLen(f.IPv6SubnetLen, issues, 'IPv6SubnetLen');
  const min = readIp6(f, 'IPv6SubnetMin', issues);
  const max = readIp6(f, 'IPv6SubnetMax', issues);
  if (!network || explicitLen === undefined) return undefined;

  let subnetLen = explicitLen;
  if (subnetLen > 0) {
    if (subnetLen > 126) issues.push({ field: 'IPv6SubnetLen', value: subnetLen, expected: 'is too long: IPv6SubnetLen must be less than /127' });
    else if (subnetLen < network.prefixLen + 2) {
      issues.push({ field: 'IPv6SubnetLen', value: subnetLen, expected: `is too short: the network must be able to accommodate at least four subnets, so IPv6SubnetLen must be at least ${network.prefixLen + 2} for ${formatCidr6(network)}` });
    }
  } else if (network.prefixLen > 124) {
    issues.push({ field: 'IPv6Network', value: formatCidr6(network), expected: 'is too small: the minimum useful IPv6 network prefix is /124' });
  } else {
    subnetLen = network.prefixLen <= 62 ? 64 : network.prefixLen + 2;
  }
  if (issues.length > before) return undefined;

  // flannel treats "::" like an unset bound (ip.IsEmpty).
  const step = sizeOf6(subnetLen);
  const subnetMin = min === undefined || min === 0n ? network.ip + step : min;
  const subnetMax = max === undefined || max === 0n ? lastIp6(network) + 1n - step : max;
  checkBound6('IPv6SubnetMin', subnetMin, network, subnetLen, issues);
  checkBound6('IPv6SubnetMax', subnetMax, network, subnetLen, issues);
  if (issues.length > before) return undefined;
  return { network, subnetLen, subnetMin, subnetMax };
}

function readCidr6(v: unknown, issues: ConfigIssue[]): Cidr6 | undefined {
  if (v === undefined || v === null || v === '') {
    issues.push({ field: 'IPv6Network', value: v ?? null, expected: 'is missing: please define a correct IPv6Network parameter in the flannel config when EnableIPv6 is true, e.g. "fd00:10:244::/56"' });
    return undefined;
  }
  const c = typeof v === 'string' ? parseCidr6(v) : undefined;
  if (!c) issues.push({ field: 'IPv6Network', value: v, expected: 'is not an IPv6 CIDR (invalid IPv6 CIDR format), e.g. "fd00:10:244::/56"' });
  return c;
}

function readIp6(f: Fields, field: 'IPv6SubnetMin' | 'IPv6SubnetMax', issues: ConfigIssue[]): Ip6 | undefined {
  const v = f[field];
  if (v === undefined || v === null) return undefined;
  const ip = typeof v === 'string' ? parseIp6(v) : undefined;
  if (ip === undefined) issues.push({ field, value: v, expected: 'is not an IPv6 address, e.g. "fd00:10:244:1::"' });
  return ip;
}

function checkBound6(field: 'IPv6SubnetMin' | 'IPv6SubnetMax', ip: Ip6, network: Cidr6, subnetLen: number, issues: ConfigIssue[]): void {
  if (!cidr6Contains(network, ip)) {
    issues.push({ field, value: formatIp6(ip), expected: `is not in the range of the IPv6Network ${formatCidr6(network)}` });
  } else if (!isOnBoundary6(ip, subnetLen)) {
    issues.push({ field, value: formatIp6(ip), expected: `is not on an IPv6SubnetLen boundary (/${subnetLen})` });
  }
}
