// Chooses the external interface and public addresses the way flannel does: --iface (names or IPs, in
// order), then --iface-regex (addresses first, then names), then --iface-can-reach, else the interface
// of the default route. The IPv4 address is the interface's first global IPv4 address.
// With IPv6 (dual-stack) the same interface must also have an IPv6 address, ranked as flannel's #2293
// asks: permanent before dynamic, non-temporary before temporary, and no deprecated or DAD-failed
// address. Link-local addresses are never chosen (flannel ranks them last, but a link-local PublicIPv6
// cannot be routed to and a VXLAN local address needs a global one). Unlike flannel (its open #2081), --iface,
// --iface-regex and --iface-can-reach may name or reach the IPv6 address itself.
// IPv6-only (EnableIPv4 false): no IPv4 address is needed or used (ip and publicIp are 0.0.0.0, the
// PublicIP of an IPv6-only lease), and without flags the interface is the IPv6 default route's.
import { isIPv4, isIPv6 } from 'node:net';
import type { ExternalInterface } from '../backends/backend.js';
import { runChecked } from '../lib/run-command.js';
import { FlannelError } from '../lib/errors.js';
import { type Ip4, parseIp4 } from '../lib/ip.js';
import { type Ip6, formatIp6, parseIp6 } from '../lib/ip6.js';

export interface InterfaceFlags {
  readonly iface: readonly string[];
  readonly ifaceRegex: readonly string[];
  readonly ifaceCanReach: string;
  readonly publicIp: string;
  /** --public-ipv6; used only with `ipv6`. */
  readonly publicIpv6?: string;
  /** The network config enables IPv6: the interface must have an IPv6 address too. */
  readonly ipv6?: boolean;
  /** The network config enables IPv4 (default true); false for IPv6-only, which needs no IPv4 address. */
  readonly ipv4?: boolean;
}

interface AddrJson {
  family: string; local: string; scope: string;
  dynamic?: boolean; temporary?: boolean; deprecated?: boolean; tentative?: boolean; dadfailed?: boolean;
}
interface Link { ifindex: number; ifname: string; mtu: number; addr_info?: AddrJson[] }
interface Candidate { link: Link; ip: Ip4 | undefined; ip6: Ip6 | undefined }

export async function findExternalInterface(f: InterfaceFlags): Promise<ExternalInterface> {
  const links = JSON.parse(await runChecked('ip', ['-j', 'addr', 'show'], 'listing interfaces')) as Link[];
  const found = await choose(f, links);
  const ip = f.ipv4 === false ? 0 : found.ip as Ip4;
  const publicIp = f.ipv4 !== false && f.publicIp ? (parseIp4(f.publicIp) as Ip4) : ip;
  const base = { name: found.link.ifname, index: found.link.ifindex, ip, publicIp, mtu: found.link.mtu };
  if (!f.ipv6) return base;
  const ip6 = found.ip6 as Ip6;
  return { ...base, ip6, publicIp6: f.publicIpv6 ? (parseIp6(f.publicIpv6) as Ip6) : ip6 };
}

/** A candidate is usable when it has every address the enabled families need. */
function usable(f: InterfaceFlags, c: Candidate | undefined): boolean {
  return c !== undefined && (f.ipv4 === false || c.ip !== undefined) && (!f.ipv6 || c.ip6 !== undefined);
}

/** The family a candidate lacks, for messages. */
function lacking(f: InterfaceFlags, c: Candidate | undefined): string {
  return f.ipv4 !== false && c?.ip === undefined ? 'IPv4' : 'IPv6';
}

async function choose(f: InterfaceFlags, links: Link[]): Promise<Candidate> {
  const tried: string[] = [];
  for (const want of f.iface) {
    const c = byIp(links, want) ?? byName(links, want);
    if (c && usable(f, c)) return c;
    if (c) tried.push(c.link.ifname);
  }
  for (const pattern of f.ifaceRegex) {
    const re = new RegExp(pattern);
    const byAddr = links.map((l) => {
      const ip = v4(l).find((a) => re.test(a));
      const ip6 = v6Ranked(l).find((a) => re.test(a));
      return ip === undefined && ip6 === undefined ? undefined : candidate(l, ip, ip6);
    });
    const byLinkName = links.filter((l) => re.test(l.ifname)).map((l) => candidate(l));
    const c = [...byAddr, ...byLinkName].find((x): x is Candidate => usable(f, x));
    if (c) return c;
  }
  if (f.iface.length > 0 || f.ifaceRegex.length > 0) {
    const needs = f.ipv4 === false ? 'an IPv6 address' : 'an IPv4 and an IPv6 address';
    const why = tried.length > 0 && f.ipv6 ? ` with ${needs} (${tried.join(', ')} lacks one)` : '';
    throw notFound(`no interface${why} matches --iface ${JSON.stringify(f.iface)} or --iface-regex ${JSON.stringify(f.ifaceRegex)}`, links);
  }
  if (f.ifaceCanReach) {
    const route = await routeTo(f.ifaceCanReach);
    const link = route && links.find((l) => l.ifname === route.dev);
    const v6Target = isIPv6(f.ifaceCanReach);
    const c = link && candidate(link, v6Target ? undefined : route.src, v6Target ? route.src : undefined);
    if (c && usable(f, c)) return c;
    throw notFound(link ? `${link.ifname}, which routes to --iface-can-reach ${f.ifaceCanReach}, lacks an ${lacking(f, c)} address` : `no interface routes to --iface-can-reach ${f.ifaceCanReach}`, links);
  }
  const route = await defaultRoute(f.ipv4 === false ? 6 : 4);
  const link = route && links.find((l) => l.ifname === route.dev);
  if (!link) throw notFound(`no ${f.ipv4 === false ? 'IPv6 ' : ''}default route and no --iface given`, links);
  if (f.ipv6 && f.ipv4 !== false) {
    const route6 = await defaultRoute(6);
    if (route6 && route6.dev !== link.ifname) {
      throw notFound(`the IPv6 default route's interface ${route6.dev} must be the same as the IPv4 default route's interface ${link.ifname}`, links);
    }
  }
  const c = f.ipv4 === false ? candidate(link, undefined, route.src) : candidate(link, route.src);
  if (usable(f, c)) return c;
  throw notFound(`${link.ifname}, the interface of the default route, lacks an ${lacking(f, c)} address`, links);
}

/** The candidate of a link: the given addresses if they are the link's, else its first IPv4 and best IPv6. */
function candidate(link: Link, ip?: string, ip6?: string): Candidate {
  const want4 = ip !== undefined && v4(link).includes(ip) ? ip : v4(link)[0];
  const own6 = ip6 === undefined ? undefined : parseIp6(ip6);
  const want6 = own6 !== undefined && v6Ranked(link).some((a) => parseIp6(a) === own6) ? own6 : first6(link);
  return { link, ip: want4 === undefined ? undefined : parseIp4(want4), ip6: want6 };
}

function v4(l: Link): string[] {
  return (l.addr_info ?? []).filter((a) => a.family === 'inet' && a.scope !== 'host').map((a) => a.local);
}

/** The link's usable IPv6 addresses, best first (a stable sort keeps the kernel's order among equals). */
function v6Ranked(l: Link): string[] {
  const rank = (a: AddrJson): number => (a.dynamic ? 2 : 0) + (a.temporary ? 1 : 0);
  return (l.addr_info ?? [])
    .filter((a) => a.family === 'inet6' && a.scope !== 'host' && a.scope !== 'link' && !a.deprecated && !a.dadfailed)
    .sort((a, b) => rank(a) - rank(b))
    .map((a) => a.local);
}

function first6(l: Link): Ip6 | undefined {
  const a = v6Ranked(l)[0];
  return a === undefined ? undefined : parseIp6(a);
}

function byIp(links: Link[], ip: string): Candidate | undefined {
  if (isIPv4(ip)) {
    const link = links.find((l) => v4(l).includes(ip));
    return link && candidate(link, ip);
  }
  const n = parseIp6(ip);
  if (n === undefined) return undefined;
  const link = links.find((l) => v6Ranked(l).some((a) => parseIp6(a) === n));
  return link && candidate(link, undefined, formatIp6(n));
}

function byName(links: Link[], name: string): Candidate | undefined {
  const link = links.find((l) => l.ifname === name);
  return link && candidate(link);
}

async function routeTo(target: string): Promise<{ dev: string; src?: string } | undefined> {
  return firstRoute(['-j', 'route', 'get', target]);
}

async function defaultRoute(family: 4 | 6): Promise<{ dev: string; src?: string } | undefined> {
  return firstRoute([`-${family}`, '-j', 'route', 'show', 'default']);
}

async function firstRoute(args: string[]): Promise<{ dev: string; src?: string } | undefined> {
  const rows = JSON.parse(await runChecked('ip', args, 'looking up the route').catch(() => '[]') || '[]') as Array<{ dev?: string; prefsrc?: string }>;
  const row = rows.find((r) => r.dev);
  return row?.dev ? { dev: row.dev, ...(row.prefsrc ? { src: row.prefsrc } : {}) } : undefined;
}

function notFound(why: string, links: Link[]): FlannelError {
  const have = links.map((l) => {
    const addrs = [...v4(l), ...v6Ranked(l)];
    return `${l.ifname}${addrs.length ? ` (${addrs.join(', ')})` : ''}`;
  }).join(', ');
  return new FlannelError('FLN_ERR_IFACE_NOT_FOUND', `cannot choose the external interface: ${why}; interfaces here: ${have}. Pass --iface=<name or IP>`);
}
