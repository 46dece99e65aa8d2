// Keeps a userspace-engine device (flannel0, flannel.1) configured: address, MTU, up, and an
// optional route through it. ensure() checks the kernel and fixes only what is missing, in one batch.
import { readFile, writeFile } from 'node:fs/promises';
import { FlannelError } from '../../lib/errors.js';
import { ROUTE_PROTOCOL, type Route, ipBatch, listOwnRoutes } from '../kernel/kernel-routes.js';
import { cidrContains, parseCidr4 } from '../../lib/ip.js';
import { runCommand } from '../../lib/run-command.js';
import { canonicalIp6Text, cidr6Contains, parseCidr6 } from '../../lib/ip6.js';
import { datapathAddon } from './native/datapath-addon.js';

export interface DeviceSpec {
  readonly name: string;
  /** e.g. "10.244.3.0/32", or an IPv6 one, e.g. "2001:db8:1::/128" (added with nodad: no DAD delay on an overlay
   * whose peers never answer neighbour solicitations), printed as `ip` prints it (RFC 5952). */
  readonly address: string;
  readonly mtu: number;
  /** e.g. "10.244.0.0/16 dev flannel0"; the first word is the destination. */
  readonly route?: string;
  /** Locally administered MAC for a TAP device. */
  readonly mac?: string;
  /** More addresses, each with its route (flannel-wg of the single-device wireguard modes: the IPv6 /128 and
   * the IPv6Network beside the IPv4 ones). */
  readonly more?: ReadonlyArray<{ readonly address: string; readonly route?: string }>;
  /** Per-device sysctls by family/key (net.<family>.conf.<dev>.<key>), e.g. { 'ipv4/accept_local': '1' }. */
  readonly sysctls?: Readonly<Record<string, string>>;
  /** The device's queue towards its reader (txqueuelen) is at least this long: raised when shorter, never
   * lowered (an operator's longer queue stays). */
  readonly minTxqueuelen?: number;
}

interface LinkJson { mtu?: number; txqlen?: number; flags?: string[]; address?: string; addr_info?: Array<{ family: string; local: string; prefixlen: number }> }

export class DeviceState {
  constructor(readonly spec: DeviceSpec) {}

  /** Returns how many settings had to be fixed. */
  async ensure(): Promise<number> {
    const fixed = await this.ensureIfPresent();
    if (fixed === undefined) throw new FlannelError('FLN_ERR_KERNEL_OP', `device ${this.spec.name} is gone`);
    return fixed;
  }

  /** ensure(), or undefined when the device does not exist (one `ip` run tells both). */
  async ensureIfPresent(): Promise<number | undefined> {
    const { name, address, mtu, route, mac } = this.spec;
    const r = await runCommand('ip', ['-j', 'addr', 'show', 'dev', name]);
    if (r.code !== 0 && /does not exist/i.test(r.stderr)) return undefined;
    if (r.code !== 0) throw new FlannelError('FLN_ERR_KERNEL_OP', `reading device ${name} failed: ${r.stderr.trim()}`);
    const link = (JSON.parse(r.stdout || '[]') as LinkJson[])[0] ?? {};
    const commands: string[] = [];
    const sysctls: string[] = [];
    // Sysctls first: an IPv6 device needs disable_ipv6 0 before its address, and accept_ra 0 before it goes up.
    for (const [key, value] of Object.entries(this.spec.sysctls ?? {})) {
      const [family, setting] = key.split('/') as [string, string];
      const path = `/proc/sys/net/${family}/conf/${name}/${setting}`;
      const current = await readFile(path, 'utf8').catch(() => undefined); // e.g. IPv6 disabled in the kernel
      if (current !== undefined && current.trim() !== value) {
        const how = await writeSysctl(path, name, family, setting, value);
        if (how === 'addrgenmode') commands.push(`link set dev ${name} addrgenmode none`);
        if (how !== 'unchanged') sysctls.push(`sysctl ${key}=${value}${how === 'proc' ? '' : ` (${how})`}`);
      }
    }
    if (mac && link.address !== mac) commands.push(`link set ${name} address ${mac}`);
    const pairs = [{ address, route }, ...(this.spec.more ?? [])];
    for (const { address: addr } of pairs) {
      const v6 = addr.includes(':');
      if (!(link.addr_info ?? []).some((a) => a.family === (v6 ? 'inet6' : 'inet') && `${canonicalIp6Text(a.local)}/${a.prefixlen}` === canonicalAddress(addr))) {
        commands.push(`addr replace ${addr} dev ${name}${v6 ? ' nodad' : ''}`);
      }
    }
    if (link.mtu !== mtu) commands.push(`link set ${name} mtu ${mtu}`);
    const minQueue = this.spec.minTxqueuelen;
    if (minQueue !== undefined && link.txqlen !== undefined && link.txqlen < minQueue) commands.push(`link set ${name} txqueuelen ${minQueue}`);
    if (!(link.flags ?? []).includes('UP')) commands.push(`link set ${name} up`);
    for (const { route: rt } of pairs) {
      if (!rt) continue;
      const dst = rt.split(' ')[0] as string;
      commands.push(...await staleOwnRoutesWithin(dst, name));
      // `ip route show` lists IPv4 routes unless told -6, even for an IPv6 `exact` prefix.
      const have = await runCommand('ip', [...(dst.includes(':') ? ['-6'] : []), 'route', 'show', 'exact', dst, 'dev', name]);
      if (have.stdout.trim() === '') commands.push(`route replace ${rt}`);
    }
    const { failed } = await ipBatch(commands);
    if (failed.length > 0) {
      throw new FlannelError('FLN_ERR_KERNEL_OP', `configuring ${name} failed: ${failed.map((f) => `${f.command}: ${f.error}`).join('; ')}`);
    }
    return commands.length + sysctls.length;
  }
}

/**
 * `route del` for every route of ours (flannel's protocol number) inside `dst` that does not go through `dev`: the
 * per-node routes a host-gw or vxlan flanneld left (as flannel, it keeps them when it stops) would shadow this
 * device's route to the whole network after a switch to udp or wireguard.
 */
async function staleOwnRoutesWithin(dst: string, dev: string): Promise<string[]> {
  const v6 = dst.includes(':');
  const net4 = v6 ? undefined : parseCidr4(dst);
  const net6 = v6 ? parseCidr6(dst) : undefined;
  const inside = (r: Route): boolean => {
    if (net4) { const c = parseCidr4(r.dst); return c !== undefined && c.prefixLen >= net4.prefixLen && cidrContains(net4, c.ip); }
    const c = parseCidr6(r.dst);
    return net6 !== undefined && c !== undefined && c.prefixLen >= net6.prefixLen && cidr6Contains(net6, c.ip);
  };
  const own = await listOwnRoutes(v6 ? 6 : 4);
  return own.filter((r) => r.dev !== dev && inside(r)).map((r) => `route del ${r.dst} via ${r.via} dev ${r.dev} proto ${ROUTE_PROTOCOL}`);
}

/**
 * Writes net.<family>.conf.<dev>.<setting> through /proc/sys; where that is read-only (a container without
 * privileges: Kubernetes mounts /proc/sys read-only), the same with CAP_NET_ADMIN alone: an IPv4 setting through
 * rtnetlink (the datapath addon), IPv6 disable_ipv6=1 (no IPv6 chatter on an IPv4 overlay) as `addrgenmode none`
 * (no link-local address, so no router solicitations), accept_ra=0 skipped where the device forwards (the kernel
 * then ignores router advertisements anyway). Anything else throws, naming the setting and the way out.
 */
async function writeSysctl(path: string, dev: string, family: string, setting: string, value: string): Promise<'proc' | 'netlink' | 'addrgenmode' | 'unchanged'> {
  try {
    await writeFile(path, value);
    return 'proc';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EROFS' && code !== 'EACCES' && code !== 'EPERM') throw err;
    if (family === 'ipv4') {
      datapathAddon().ipv4DevconfSet(dev, setting, Number(value));
      return 'netlink';
    }
    if (setting === 'disable_ipv6' && value === '1') {
      const link = await runCommand('ip', ['-d', '-j', 'link', 'show', 'dev', dev]);
      const mode = (JSON.parse(link.stdout || '[]') as Array<{ inet6_addr_gen_mode?: string }>)[0]?.inet6_addr_gen_mode;
      return mode === 'none' ? 'unchanged' : 'addrgenmode';
    }
    if (setting === 'accept_ra' && value === '0' && (await readFile(`/proc/sys/net/ipv6/conf/${dev}/forwarding`, 'utf8').catch(() => '')).trim() === '1') {
      return 'unchanged';
    }
    throw new FlannelError('FLN_ERR_KERNEL_OP', `cannot set net.${family}.conf.${dev}.${setting}=${value}: ${path} is read-only (${code}) and there is no other way to set it; ` +
      'set it on the node, or run flanneld where /proc/sys is writable', { cause: err });
  }
}

function canonicalAddress(cidr: string): string {
  const [addr, len] = cidr.split('/') as [string, string];
  return addr.includes(':') ? `${canonicalIp6Text(addr)}/${len}` : cidr;
}
