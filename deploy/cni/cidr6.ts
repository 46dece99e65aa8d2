// IPv6 CIDRs for subnet.env's FLANNEL_IPV6_* variables: parse, mask host bits (as Go's
// net.ParseCIDR does), and print in the compressed form Go prints (RFC 5952).
import { isIPv6 } from 'node:net';

export interface Cidr6 {
  readonly addr: bigint;
  readonly prefixLen: number;
}

function parseIp6(text: string): bigint | undefined {
  if (!isIPv6(text)) return undefined;
  let s = text;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    s = `${s.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = s.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** Parses "addr/len" and masks the host bits; undefined for anything else. */
export function parseCidr6(text: string): Cidr6 | undefined {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? undefined : parseIp6(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (addr === undefined || !/^\d{1,3}$/.test(lenText) || Number(lenText) > 128) return undefined;
  const len = Number(lenText);
  const mask = len === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - len)) - 1n);
  return { addr: addr & mask, prefixLen: len };
}

export function formatCidr6(c: Cidr6): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((c.addr >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
  }
  const hex = groups.map((g) => g.toString(16));
  const text = best.at < 0 ? hex.join(':')
    : `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.len).join(':')}`;
  return `${text}/${c.prefixLen}`;
}
