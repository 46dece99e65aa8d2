// Parses and validates the network config stored at <prefix>/config, with flannel's defaults and
// rules (pkg/subnet/config.go): keys match case-insensitively, every problem is reported at once.
import { ConfigError, type ConfigIssue } from '../lib/errors.js';
import { isPlainObject, pickFields } from '../lib/json-fields.js';
import {
  type Cidr4, type Ip4, cidrContains, formatCidr4, formatIp4, lastIp, maskOf, parseCidr4, parseIp4, sizeOf,
} from '../lib/ip.js';

export const BACKEND_TYPES = ['udp', 'vxlan', 'host-gw', 'wireguard'] as const;
export type BackendType = (typeof BACKEND_TYPES)[number];

export interface NetworkConfig {
  readonly network: Cidr4;
  readonly subnetLen: number;
  readonly subnetMin: Ip4;
  readonly subnetMax: Ip4;
  readonly enableNFTables: boolean;
  readonly backendType: BackendType;
  /** The Backend object as written, for the backend to parse its own options. */
  readonly backend: Readonly<Record<string, unknown>>;
}

const FIELDS = ['Network', 'SubnetLen', 'SubnetMin', 'SubnetMax', 'EnableIPv4', 'EnableIPv6', 'IPv6Network',
  'IPv6SubnetLen', 'IPv6SubnetMin', 'IPv6SubnetMax', 'EnableNFTables', 'Backend'] as const;
type Field = (typeof FIELDS)[number];

/** Parses the config text from etcd. Throws ConfigError listing every problem. */
export function parseNetworkConfig(text: string, source: string): NetworkConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(source, [{ field: '(document)', value: text.slice(0, 80), expected: `is not valid JSON (${(err as Error).message})` }]);
  }
  if (!isPlainObject(raw)) {
    throw new ConfigError(source, [{ field: '(document)', value: raw, expected: 'must be a JSON object, e.g. {"Network":"10.244.0.0/16"}' }]);
  }
  const issues: ConfigIssue[] = [];
  const f = pickFields<Field>(raw, FIELDS);
  checkUnsupportedFamilies(f, issues);
  const enableNFTables = readBool(f, 'EnableNFTables', false, issues);
  const backend = readBackend(f.Backend, issues);
  const net = readNetwork(f, issues);
  if (issues.length > 0 || !net || !backend) throw new ConfigError(source, issues);
  return { ...net, enableNFTables, backendType: backend.type, backend: backend.raw };
}

function checkUnsupportedFamilies(f: Partial<Record<Field, unknown>>, issues: ConfigIssue[]): void {
  const v4 = readBool(f, 'EnableIPv4', true, issues);
  const v6 = readBool(f, 'EnableIPv6', false, issues);
  if (!v4) issues.push({ field: 'EnableIPv4', value: false, expected: 'is not supported: flannel-ts needs an IPv4 network; remove it or set it to true' });
  if (v6) issues.push({ field: 'EnableIPv6', value: true, expected: 'is not supported yet by flannel-ts; remove it or set it to false' });
}

function readBool(f: Partial<Record<Field, unknown>>, field: Field, dflt: boolean, issues: ConfigIssue[]): boolean {
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

interface NetworkPart { network: Cidr4; subnetLen: number; subnetMin: Ip4; subnetMax: Ip4 }

/** flannel's CheckNetworkConfig for IPv4, in its order, collecting rather than stopping. */
function readNetwork(f: Partial<Record<Field, unknown>>, issues: ConfigIssue[]): NetworkPart | undefined {
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

function readSubnetLen(v: unknown, issues: ConfigIssue[]): number | undefined {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  issues.push({ field: 'SubnetLen', value: v, expected: 'must be a whole number of prefix bits, e.g. 24' });
  return undefined;
}

function readIp(f: Partial<Record<Field, unknown>>, field: 'SubnetMin' | 'SubnetMax', issues: ConfigIssue[]): Ip4 | undefined {
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
