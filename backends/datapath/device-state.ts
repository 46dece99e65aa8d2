// Keeps a userspace-engine device (flannel0, flannel.1) configured: address, MTU, up, and an
// optional route through it. ensure() checks the kernel and fixes only what is missing, in one batch.
import { readFile, writeFile } from 'node:fs/promises';
import { FlannelError } from '../../lib/errors.js';
import { ipBatch } from '../kernel/kernel-routes.js';
import { runCommand } from '../../lib/run-command.js';
import { canonicalIp6Text } from '../../lib/ip6.js';

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
    const { name, address, mtu, route, mac } = this.spec;
    const r = await runCommand('ip', ['-j', 'addr', 'show', 'dev', name]);
    if (r.code !== 0) throw new FlannelError('FLN_ERR_KERNEL_OP', `device ${name} is gone: ${r.stderr.trim()}`);
    const link = (JSON.parse(r.stdout || '[]') as LinkJson[])[0] ?? {};
    const commands: string[] = [];
    const sysctls: string[] = [];
    // Sysctls first: an IPv6 device needs disable_ipv6 0 before its address, and accept_ra 0 before it goes up.
    for (const [key, value] of Object.entries(this.spec.sysctls ?? {})) {
      const [family, setting] = key.split('/') as [string, string];
      const path = `/proc/sys/net/${family}/conf/${name}/${setting}`;
      const current = await readFile(path, 'utf8').catch(() => undefined); // e.g. IPv6 disabled in the kernel
      if (current !== undefined && current.trim() !== value) {
        await writeFile(path, value);
        sysctls.push(`sysctl ${key}=${value}`);
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

function canonicalAddress(cidr: string): string {
  const [addr, len] = cidr.split('/') as [string, string];
  return addr.includes(':') ? `${canonicalIp6Text(addr)}/${len}` : cidr;
}
