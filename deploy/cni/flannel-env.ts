// Reads flanneld's subnet.env the way flannel's CNI plugin does: KEY=VALUE lines split on the first
// "=", networks as de-duplicated comma lists, FLANNEL_SUBNET masked to its network (10.1.17.1/24 →
// 10.1.17.0/24), FLANNEL_MTU an unsigned integer, FLANNEL_IPMASQ true only when it reads "true".
import { readFileSync } from 'node:fs';
import { formatCidr4, parseCidr4 } from '../../lib/ip.js';
import { formatCidr6, parseCidr6 } from './cidr6.js';
import { CNI_CODES, CniError } from './cni-error.js';

export interface FlannelEnv {
  /** FLANNEL_NETWORK entries, e.g. ["10.244.0.0/16"]. */
  readonly networks: readonly string[];
  /** FLANNEL_SUBNET masked, e.g. "10.244.3.0/24"; undefined on an IPv6-only node. */
  readonly subnet: string | undefined;
  readonly ipv6Networks: readonly string[];
  readonly ipv6Subnet: string | undefined;
  readonly mtu: number;
  readonly ipMasq: boolean;
}

export function loadFlannelEnv(path: string): FlannelEnv {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') {
      throw new CniError(CNI_CODES.TRY_AGAIN_LATER,
        `failed to load flannel 'subnet.env' file: open ${path}: no such file or directory. flanneld is not running on ` +
        'this node, or has not leased a subnet yet: check the flanneld log for this node ' +
        '(Kubernetes: the flannel pod on this node; systemd: journalctl -u flanneld)', path);
    }
    throw new CniError(CNI_CODES.IO_FAILURE, `failed to load flannel 'subnet.env' file: ${e.message}`, path);
  }
  return parseFlannelEnv(text, path);
}

export function parseFlannelEnv(text: string, path: string): FlannelEnv {
  const vars = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const eq = line.indexOf('=');
    if (eq > 0) vars.set(line.slice(0, eq), line.slice(eq + 1));
  }
  const bad = (key: string, why: string): CniError =>
    new CniError(CNI_CODES.INVALID_CONFIG, `${path}: ${key}=${JSON.stringify(vars.get(key))} ${why}`, path);
  const v4 = (key: string, s: string): string => {
    const c = parseCidr4(s.trim());
    if (!c) throw bad(key, 'is not an IPv4 CIDR');
    return formatCidr4(c);
  };
  const v6 = (key: string, s: string): string => {
    const c = parseCidr6(s.trim());
    if (!c) throw bad(key, 'is not an IPv6 CIDR');
    return formatCidr6(c);
  };
  const list = (key: string, parse: (key: string, s: string) => string): string[] =>
    [...new Set((vars.get(key) ?? '').split(',').filter((s) => s.trim() !== '').map((s) => parse(key, s)))];
  const one = (key: string, parse: (key: string, s: string) => string): string | undefined => {
    const s = vars.get(key);
    return s === undefined || s === '' ? undefined : parse(key, s);
  };
  const env = {
    networks: list('FLANNEL_NETWORK', v4),
    subnet: one('FLANNEL_SUBNET', v4),
    ipv6Networks: list('FLANNEL_IPV6_NETWORK', v6),
    ipv6Subnet: one('FLANNEL_IPV6_SUBNET', v6),
    mtu: NaN,
    ipMasq: vars.get('FLANNEL_IPMASQ') === 'true',
  };
  const mtu = vars.get('FLANNEL_MTU');
  if (mtu !== undefined) {
    if (!/^\d+$/.test(mtu) || Number(mtu) > 0xffffffff) throw bad('FLANNEL_MTU', 'is not an unsigned integer');
    env.mtu = Number(mtu);
  }
  const missing = [
    env.networks.length === 0 && env.ipv6Networks.length === 0 && 'FLANNEL_NETWORK or FLANNEL_IPV6_NETWORK',
    env.subnet === undefined && env.ipv6Subnet === undefined && 'FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET',
    mtu === undefined && 'FLANNEL_MTU',
    !vars.has('FLANNEL_IPMASQ') && 'FLANNEL_IPMASQ',
  ].filter((m): m is string => typeof m === 'string');
  if (missing.length > 0) throw new CniError(CNI_CODES.INVALID_CONFIG, `${path} is missing ${missing.join(', ')}`, path);
  return env;
}
