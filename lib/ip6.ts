// IPv6 addresses and CIDRs as plain bigints, the IPv6 twin of ip.ts. Base module: imports nothing.
//
// Text follows Go's net package, because that is what flannel writes into etcd keys, lease values and
// subnet.env: parseIp6 accepts what net.ParseIP accepts for IPv6 (full, "::"-compressed, an embedded
// dotted IPv4 tail, any hex case) and rejects zones ("fe80::1%eth0"), bare IPv4 and garbage;
// formatIp6 prints what net.IP.String() prints (RFC 5952).
//
// IPv4-mapped addresses (::ffff:0:0/96): Go's net.IP.String() prints them as plain "a.b.c.d", and
// so do we, so our text matches flannel's byte for byte. Such text does not parse back as IPv6
// (parseIp6 rejects bare IPv4), and flannel's lease key regex ([a-f\d:]+) cannot read it either, so
// a network there cannot work with flannel; callers that need round-trippable text must avoid that
// range. (flannel's own ip.IP6.String() has one more quirk we do not copy: it builds the net.IP from
// the big.Int's minimal bytes, so an address in [::100:0, ::ffff:ffff] — exactly four significant
// bytes — prints as dotted IPv4 too; Go's net.IP.String() prints it in hex, e.g. "::102:304".)

/** An IPv6 address as an unsigned 128-bit integer. */
export type Ip6 = bigint;

export interface Cidr6 {
  /** The network address (host bits are always zero). */
  readonly ip: Ip6;
  readonly prefixLen: number;
}

export const IP6_BITS = 128;
const ALL_ONES = (1n << 128n) - 1n;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** The 16-bit groups of a textual part ("" for none); undefined if any group is malformed. */
function groupsOf(part: string, allowDottedTail: boolean): number[] | undefined {
  if (part === '') return [];
  const texts = part.split(':');
  const out: number[] = [];
  for (let i = 0; i < texts.length; i++) {
    const g = texts[i] as string;
    if (allowDottedTail && i === texts.length - 1 && g.includes('.')) {
      const v4 = parseDotted(g);
      if (v4 === undefined) return undefined;
      out.push(v4 >>> 16, v4 & 0xffff);
    } else if (HEX_GROUP.test(g)) {
      out.push(parseInt(g, 16));
    } else {
      return undefined;
    }
  }
  return out;
}

/** Dotted-quad IPv4 without leading zeros (as Go since 1.17); a private copy so lib files stay independent. */
function parseDotted(text: string): number | undefined {
  const m = DOTTED.exec(text);
  if (!m) return undefined;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i] as string;
    if ((part.length > 1 && part.startsWith('0')) || Number(part) > 255) return undefined;
    v = v * 256 + Number(part);
  }
  return v;
}

/** Parses IPv6 text as Go's net.ParseIP does for IPv6; undefined for anything else (zones, bare IPv4, garbage). */
export function parseIp6(text: string): Ip6 | undefined {
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  let groups: number[];
  if (halves.length === 1) {
    const all = groupsOf(text, true);
    if (!all || all.length !== 8) return undefined;
    groups = all;
  } else {
    const head = groupsOf(halves[0] as string, false);
    const tail = groupsOf(halves[1] as string, true);
    // "::" stands for at least one zero group (Go rejects "1:2:3:4:5:6:7:8::").
    if (!head || !tail || head.length + tail.length > 7) return undefined;
    groups = [...head, ...Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  let ip = 0n;
  for (const g of groups) ip = (ip << 16n) | BigInt(g);
  return ip;
}

/** ::ffff:a.b.c.d, the IPv6 form of an IPv4 address (a socket of both families sees and dials IPv4 so). */
export function ip4Mapped(ip: number): Ip6 {
  return 0xffff00000000n | BigInt(ip >>> 0);
}

/** True for ::ffff:a.b.c.d, which Go's net.IP.String() prints as a.b.c.d. */
export function isIp4Mapped(ip: Ip6): boolean {
  return ip >> 32n === 0xffffn;
}

/** An address as text in formatIp6's spelling (e.g. iproute2's output, to compare with ours); text that is no
 *  IPv6 address (an IPv4 address, say) comes back unchanged. */
export function canonicalIp6Text(text: string): string {
  const ip = text.includes(':') ? parseIp6(text) : undefined;
  return ip === undefined ? text : formatIp6(ip);
}

/** Prints as Go's net.IP.String() does: lowercase, no leading zeros, the longest run of two or more
 *  zero groups (the first of equal runs) as "::"; IPv4-mapped addresses as a.b.c.d. */
export function formatIp6(ip: Ip6): string {
  if (isIp4Mapped(ip)) {
    const v4 = Number(ip & 0xffffffffn);
    return `${v4 >>> 24}.${(v4 >>> 16) & 255}.${(v4 >>> 8) & 255}.${v4 & 255}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(Number((ip >> BigInt(112 - 16 * i)) & 0xffffn));
  let runAt = -1;
  let runLen = 1; // a run must be longer than this: "::" never replaces a single zero group
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > runLen) {
      runAt = i;
      runLen = j - i;
    }
    if (j > i) i = j - 1;
  }
  const hex = groups.map((g) => g.toString(16));
  if (runAt < 0) return hex.join(':');
  return `${hex.slice(0, runAt).join(':')}::${hex.slice(runAt + runLen).join(':')}`;
}

export function maskOf6(prefixLen: number): bigint {
  return prefixLen === 0 ? 0n : (ALL_ONES << BigInt(128 - prefixLen)) & ALL_ONES;
}

/** Number of addresses in a prefix (2^(128-len)). */
export function sizeOf6(prefixLen: number): bigint {
  return 1n << BigInt(128 - prefixLen);
}

export function makeCidr6(ip: Ip6, prefixLen: number): Cidr6 {
  return { ip: ip & maskOf6(prefixLen), prefixLen };
}

/**
 * Parses "addr/len". Host bits are masked off, as Go's net.ParseCIDR does for the network, so
 * "2001:cafe:42::1/64" gives 2001:cafe:42::/64. Undefined for anything that is not an IPv6 CIDR.
 */
export function parseCidr6(text: string): Cidr6 | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIp6(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (ip === undefined || !/^\d{1,3}$/.test(lenText)) return undefined;
  const len = Number(lenText);
  if (len > 128) return undefined;
  return makeCidr6(ip, len);
}

export function formatCidr6(c: Cidr6): string {
  return `${formatIp6(c.ip)}/${c.prefixLen}`;
}

/** True when ip has no bits set below prefixLen, i.e. it starts a subnet of that length. */
export function isOnBoundary6(ip: Ip6, prefixLen: number): boolean {
  return (ip & maskOf6(prefixLen)) === ip;
}

export function cidr6Contains(c: Cidr6, ip: Ip6): boolean {
  return (ip & maskOf6(c.prefixLen)) === c.ip;
}

/** True when the two prefixes share any address (compared under the shorter mask, as flannel does). */
export function cidr6Overlaps(a: Cidr6, b: Cidr6): boolean {
  const m = maskOf6(Math.min(a.prefixLen, b.prefixLen));
  return (a.ip & m) === (b.ip & m);
}

export function cidr6Equals(a: Cidr6, b: Cidr6): boolean {
  return a.ip === b.ip && a.prefixLen === b.prefixLen;
}

/** The last address of the prefix. */
export function lastIp6(c: Cidr6): Ip6 {
  return c.ip + sizeOf6(c.prefixLen) - 1n;
}

/** The next prefix of the same length, e.g. fd00:10:244:1::/64 → fd00:10:244:2::/64; wraps past ffff…. */
export function nextCidr6(c: Cidr6): Cidr6 {
  return { ip: (c.ip + sizeOf6(c.prefixLen)) & ALL_ONES, prefixLen: c.prefixLen };
}

/** How many subnets of subnetLen the network holds (2^(subnetLen-prefix)); 0n if subnetLen is shorter. */
export function subnetCount6(network: Cidr6, subnetLen: number): bigint {
  return subnetLen < network.prefixLen || subnetLen > 128 ? 0n : 1n << BigInt(subnetLen - network.prefixLen);
}

/** The n-th (from 0) subnet of length subnetLen inside network; undefined when n is out of range. */
export function nthSubnet6(network: Cidr6, subnetLen: number, n: bigint): Cidr6 | undefined {
  if (n < 0n || n >= subnetCount6(network, subnetLen)) return undefined;
  return { ip: network.ip + n * sizeOf6(subnetLen), prefixLen: subnetLen };
}
