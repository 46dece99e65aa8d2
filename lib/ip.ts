// IPv4 addresses and CIDRs as plain uint32 numbers. Base module: imports nothing, allocates little,
// and is safe to use from any layer, the packet path included.

/** An IPv4 address as an unsigned 32-bit integer in host order. */
export type Ip4 = number;

export interface Cidr4 {
  /** The network address (host bits are always zero). */
  readonly ip: Ip4;
  readonly prefixLen: number;
}

const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses dotted-quad IPv4; returns undefined for anything else (no shorthand, no leading zeros). */
export function parseIp4(text: string): Ip4 | undefined {
  const m = DOTTED.exec(text);
  if (!m) return undefined;
  let ip = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i] as string;
    if (part.length > 1 && part.startsWith('0')) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    ip = ip * 256 + n;
  }
  return ip;
}

export function formatIp4(ip: Ip4): string {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

export function maskOf(prefixLen: number): number {
  return prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
}

/** Number of addresses in a prefix (2^(32-len)). */
export function sizeOf(prefixLen: number): number {
  return 2 ** (32 - prefixLen);
}

export function makeCidr4(ip: Ip4, prefixLen: number): Cidr4 {
  return { ip: (ip & maskOf(prefixLen)) >>> 0, prefixLen };
}

/**
 * Parses "a.b.c.d/len". Host bits are masked off, as Go's net.ParseCIDR does for the network, so
 * "10.5.72.1/24" gives 10.5.72.0/24. Returns undefined for anything that is not an IPv4 CIDR.
 */
export function parseCidr4(text: string): Cidr4 | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIp4(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (ip === undefined || !/^\d{1,2}$/.test(lenText)) return undefined;
  const len = Number(lenText);
  if (len > 32) return undefined;
  return makeCidr4(ip, len);
}

export function formatCidr4(c: Cidr4): string {
  return `${formatIp4(c.ip)}/${c.prefixLen}`;
}

export function cidrContains(c: Cidr4, ip: Ip4): boolean {
  return ((ip & maskOf(c.prefixLen)) >>> 0) === c.ip;
}

/** True when the two prefixes share any address (compared under the shorter mask, as flannel does). */
export function cidrOverlaps(a: Cidr4, b: Cidr4): boolean {
  const len = Math.min(a.prefixLen, b.prefixLen);
  const m = maskOf(len);
  return ((a.ip & m) >>> 0) === ((b.ip & m) >>> 0);
}

export function cidrEquals(a: Cidr4, b: Cidr4): boolean {
  return a.ip === b.ip && a.prefixLen === b.prefixLen;
}

/** The last address of the prefix (its broadcast address). */
export function lastIp(c: Cidr4): Ip4 {
  return (c.ip + sizeOf(c.prefixLen) - 1) >>> 0;
}

/** The next prefix of the same length, e.g. 10.5.1.0/24 → 10.5.2.0/24. */
export function nextCidr(c: Cidr4): Cidr4 {
  return { ip: (c.ip + sizeOf(c.prefixLen)) >>> 0, prefixLen: c.prefixLen };
}
