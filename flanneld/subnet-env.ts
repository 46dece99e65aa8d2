// /run/flannel/subnet.env: written atomically (temp file, fsync, rename) with flannel's exact
// variables, mode 0644 whatever the umask, and read back at start so that a restarted node asks for
// the subnet it had before.
import { chmodSync, closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { FlannelError } from '../lib/errors.js';
import { type Cidr4, formatCidr4, formatIp4, parseCidr4 } from '../lib/ip.js';
import { type Cidr6, formatCidr6, formatIp6, parseCidr6 } from '../lib/ip6.js';

export interface SubnetEnv {
  /** Network and the lease's IPv4 subnet; FLANNEL_NETWORK and FLANNEL_SUBNET are written when both are set (not IPv6-only). */
  readonly network?: Cidr4;
  readonly subnet?: Cidr4;
  /** IPv6Network when IPv6 is enabled; FLANNEL_IPV6_* are written when both this and ipv6Subnet are set. */
  readonly ipv6Network?: Cidr6;
  /** The lease's IPv6 subnet. */
  readonly ipv6Subnet?: Cidr6;
  readonly mtu: number;
  readonly ipMasq: boolean;
}

/**
 * The file's text, in flannel's order (pkg/subnet/subnet.go WriteSubnetFile): with IPv4 FLANNEL_NETWORK,
 * FLANNEL_SUBNET (the subnet's first address, e.g. 10.5.72.1/24), then with IPv6 FLANNEL_IPV6_NETWORK
 * and FLANNEL_IPV6_SUBNET (likewise, e.g. 2001:cafe:42::1/64), FLANNEL_MTU, FLANNEL_IPMASQ.
 */
export function formatSubnetEnv(e: SubnetEnv): string {
  const lines: string[] = [];
  if (e.network && e.subnet) {
    lines.push(`FLANNEL_NETWORK=${formatCidr4(e.network)}`, `FLANNEL_SUBNET=${formatIp4(e.subnet.ip + 1)}/${e.subnet.prefixLen}`);
  }
  if (e.ipv6Network && e.ipv6Subnet) {
    lines.push(`FLANNEL_IPV6_NETWORK=${formatCidr6(e.ipv6Network)}`,
      `FLANNEL_IPV6_SUBNET=${formatIp6(e.ipv6Subnet.ip + 1n)}/${e.ipv6Subnet.prefixLen}`);
  }
  lines.push(`FLANNEL_MTU=${e.mtu}`, `FLANNEL_IPMASQ=${e.ipMasq}`, '');
  return lines.join('\n');
}

export function writeSubnetEnv(path: string, e: SubnetEnv): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    // Modes are set explicitly: open() and mkdir() apply the umask (a 077 umask would make 0600).
    const created = mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    for (let dir = dirname(path); created !== undefined; dir = dirname(dir)) {
      chmodSync(dir, 0o755);
      if (dir === created || dir === dirname(dir)) break;
    }
    rmSync(tmp, { force: true }); // a leftover of a crash could be a link or have another mode
    const fd = openSync(tmp, 'wx', 0o644);
    try {
      fchmodSync(fd, 0o644);
      writeSync(fd, formatSubnetEnv(e));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new FlannelError('FLN_ERR_FILE_WRITE', `cannot write the subnet file ${path}: ${(err as Error).message}; check --subnet-file and that its directory is writable`, { cause: err });
  }
}

/** FLANNEL_SUBNET from an existing file, masked to its network (10.5.72.1/24 → 10.5.72.0/24). */
export function readPreviousSubnet(path: string): Cidr4 | undefined {
  const value = readVariable(path, 'FLANNEL_SUBNET');
  return value === undefined ? undefined : parseCidr4(value);
}

/** FLANNEL_IPV6_SUBNET from an existing file, masked to its network (2001:cafe:42::1/64 → 2001:cafe:42::/64). */
export function readPreviousIpv6Subnet(path: string): Cidr6 | undefined {
  const value = readVariable(path, 'FLANNEL_IPV6_SUBNET');
  return value === undefined ? undefined : parseCidr6(value);
}

function readVariable(path: string, name: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const line = text.split('\n').find((l) => l.startsWith(`${name}=`));
  return line ? line.slice(name.length + 1).trim() : undefined;
}
