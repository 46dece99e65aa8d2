// /run/flannel/subnet.env: written atomically (temp file, fsync, rename) with flannel's exact
// variables, mode 0644 whatever the umask, and read back at start so that a restarted node asks for
// the subnet it had before.
import { chmodSync, closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { FlannelError } from '../lib/errors.js';
import { type Cidr4, formatCidr4, formatIp4, parseCidr4 } from '../lib/ip.js';

export interface SubnetEnv {
  readonly network: Cidr4;
  readonly subnet: Cidr4;
  readonly mtu: number;
  readonly ipMasq: boolean;
}

/** The file's text, in flannel's order; FLANNEL_SUBNET is the subnet's first address, e.g. 10.5.72.1/24. */
export function formatSubnetEnv(e: SubnetEnv): string {
  return [
    `FLANNEL_NETWORK=${formatCidr4(e.network)}`,
    `FLANNEL_SUBNET=${formatIp4(e.subnet.ip + 1)}/${e.subnet.prefixLen}`,
    `FLANNEL_MTU=${e.mtu}`,
    `FLANNEL_IPMASQ=${e.ipMasq}`,
    '',
  ].join('\n');
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
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const line = text.split('\n').find((l) => l.startsWith('FLANNEL_SUBNET='));
  return line ? parseCidr4(line.slice('FLANNEL_SUBNET='.length).trim()) : undefined;
}
