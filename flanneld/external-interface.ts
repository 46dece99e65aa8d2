// Chooses the external interface and public IP the way flannel does: --iface (names or IPs, in
// order), then --iface-regex (IPs first, then names), then --iface-can-reach, else the interface of
// the default route. The address is the interface's first global IPv4 address.
import type { ExternalInterface } from '../backends/backend.js';
import { runChecked } from '../lib/run-command.js';
import { FlannelError } from '../lib/errors.js';
import { type Ip4, parseIp4 } from '../lib/ip.js';

export interface InterfaceFlags {
  readonly iface: readonly string[];
  readonly ifaceRegex: readonly string[];
  readonly ifaceCanReach: string;
  readonly publicIp: string;
}

interface Link { ifindex: number; ifname: string; mtu: number; addr_info?: Array<{ family: string; local: string; scope: string }> }
interface Candidate { link: Link; ip: Ip4 }

export async function findExternalInterface(f: InterfaceFlags): Promise<ExternalInterface> {
  const links = JSON.parse(await runChecked('ip', ['-j', 'addr', 'show'], 'listing interfaces')) as Link[];
  const found = await choose(f, links);
  const publicIp = f.publicIp ? (parseIp4(f.publicIp) as Ip4) : found.ip;
  return { name: found.link.ifname, index: found.link.ifindex, ip: found.ip, publicIp, mtu: found.link.mtu };
}

async function choose(f: InterfaceFlags, links: Link[]): Promise<Candidate> {
  for (const want of f.iface) {
    const c = byIp(links, want) ?? byName(links, want);
    if (c) return c;
  }
  for (const pattern of f.ifaceRegex) {
    const re = new RegExp(pattern);
    const c = links.flatMap((l) => v4(l).filter((a) => re.test(a)).map((a) => ({ link: l, ip: parseIp4(a) as Ip4 })))[0]
      ?? links.filter((l) => re.test(l.ifname)).map((l) => byName(links, l.ifname)).find((x) => x);
    if (c) return c;
  }
  if (f.iface.length > 0 || f.ifaceRegex.length > 0) {
    throw notFound(`no interface matches --iface ${JSON.stringify(f.iface)} or --iface-regex ${JSON.stringify(f.ifaceRegex)}`, links);
  }
  const viaRoute = await routeInterface(f.ifaceCanReach || undefined);
  const c = viaRoute && (viaRoute.src ? byIp(links, viaRoute.src) : undefined) || (viaRoute ? byName(links, viaRoute.dev) : undefined);
  if (!c) throw notFound(f.ifaceCanReach ? `no interface routes to --iface-can-reach ${f.ifaceCanReach}` : 'no default route and no --iface given', links);
  return c;
}

function v4(l: Link): string[] {
  return (l.addr_info ?? []).filter((a) => a.family === 'inet' && a.scope !== 'host').map((a) => a.local);
}

function byIp(links: Link[], ip: string): Candidate | undefined {
  const n = parseIp4(ip);
  if (n === undefined) return undefined;
  const link = links.find((l) => v4(l).includes(ip));
  return link && { link, ip: n };
}

function byName(links: Link[], name: string): Candidate | undefined {
  const link = links.find((l) => l.ifname === name);
  const first = link && v4(link)[0];
  return link && first ? { link, ip: parseIp4(first) as Ip4 } : undefined;
}

async function routeInterface(target: string | undefined): Promise<{ dev: string; src?: string } | undefined> {
  const args = target ? ['-j', 'route', 'get', target] : ['-j', 'route', 'show', 'default'];
  const rows = JSON.parse(await runChecked('ip', args, 'looking up the route').catch(() => '[]') || '[]') as Array<{ dev?: string; prefsrc?: string }>;
  const row = rows.find((r) => r.dev);
  return row?.dev ? { dev: row.dev, ...(row.prefsrc ? { src: row.prefsrc } : {}) } : undefined;
}

function notFound(why: string, links: Link[]): FlannelError {
  const have = links.map((l) => `${l.ifname}${v4(l).length ? ` (${v4(l).join(', ')})` : ''}`).join(', ');
  return new FlannelError('FLN_ERR_IFACE_NOT_FOUND', `cannot choose the external interface: ${why}; interfaces here: ${have}. Pass --iface=<name or IP>`);
}
