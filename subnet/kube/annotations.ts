// flannel's Node annotations and the Node → lease conversion, as pure functions (pkg/subnet/kube/annotations.go
// and kube.go): the prefix rules of --kube-annotation-prefix, the annotations a node writes about itself, and
// which Nodes are peers with which lease.
import { FlannelError } from '../../lib/errors.js';
import { type Cidr4, type Ip4, formatIp4, parseCidr4, parseIp4 } from '../../lib/ip.js';
import { type Cidr6, type Ip6, formatIp6, parseCidr6, parseIp6 } from '../../lib/ip6.js';
import type { Lease, LeaseAttrs } from '../lease.js';
import type { KubeNode } from './kube-client.js';

export const DEFAULT_ANNOTATION_PREFIX = 'flannel.alpha.coreos.com';

export interface AnnotationNames {
  readonly subnetKubeManaged: string;
  readonly backendData: string;
  readonly backendV6Data: string;
  readonly backendType: string;
  readonly backendPublicIp: string;
  readonly backendPublicIpv6: string;
  readonly backendPublicIpOverwrite: string;
  readonly backendPublicIpv6Overwrite: string;
  readonly nodePublicIp: string;
  readonly nodePublicIpv6: string;
}

// fqdn "/" [name ("-" | "/")]: a DNS subdomain, then optionally a name part ending in the separator added below.
const PREFIX_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/([a-z0-9]([-a-z0-9._]*[a-z0-9])?[-/])?$/;

/**
 * The full prefix of every annotation name, by flannel's rules: no slash → "<prefix>/"; a slash not at the end
 * and no trailing "-" → "<prefix>-"; at most one slash; must be "fqdn/" or "fqdn/name-". Throws FLN_ERR_USAGE.
 */
export function annotationPrefix(prefix: string): string {
  const slashes = prefix.split('/').length - 1;
  if (slashes > 1) throw new FlannelError('FLN_ERR_USAGE', `invalid --kube-annotation-prefix ${JSON.stringify(prefix)}: it can contain at most one slash`);
  let p = slashes === 0 ? `${prefix}/` : prefix;
  if (!p.endsWith('/') && !p.endsWith('-')) p += '-';
  if (!PREFIX_RE.test(p)) {
    throw new FlannelError('FLN_ERR_USAGE', `invalid --kube-annotation-prefix ${JSON.stringify(prefix)}: it must be a lowercase FQDN with an optional name, ` +
      `e.g. "${DEFAULT_ANNOTATION_PREFIX}" or "example.com/flannel"`);
  }
  return p;
}

/** Every annotation name under the prefix (validated as annotationPrefix does). */
export function annotationNames(prefix: string = DEFAULT_ANNOTATION_PREFIX): AnnotationNames {
  const p = annotationPrefix(prefix);
  return {
    subnetKubeManaged: `${p}kube-subnet-manager`,
    backendData: `${p}backend-data`,
    backendV6Data: `${p}backend-v6-data`,
    backendType: `${p}backend-type`,
    backendPublicIp: `${p}public-ip`,
    backendPublicIpv6: `${p}public-ipv6`,
    backendPublicIpOverwrite: `${p}public-ip-overwrite`,
    backendPublicIpv6Overwrite: `${p}public-ipv6-overwrite`,
    nodePublicIp: `${p}node-public-ip`,
    nodePublicIpv6: `${p}node-public-ipv6`,
  };
}

/**
 * The attrs this node advertises once the node's overwrite annotations are applied: public-ip-overwrite (and
 * public-ipv6-overwrite) replace the PublicIP when they parse.
 */
export function applyOverwrites(attrs: LeaseAttrs, names: AnnotationNames, current: Readonly<Record<string, string>> | undefined): LeaseAttrs {
  const ow4 = current?.[names.backendPublicIpOverwrite];
  const ow6 = current?.[names.backendPublicIpv6Overwrite];
  const ip4 = ow4 ? parseIp4(ow4.trim()) : undefined;
  const ip6 = ow6 && attrs.publicIpv6 !== undefined ? parseIp6(ow6.trim()) : undefined;
  return { ...attrs, ...(ip4 !== undefined ? { publicIp: ip4 } : {}), ...(ip6 !== undefined ? { publicIpv6: ip6 } : {}) };
}

/** The annotations flannel writes about its own node: kube-subnet-manager, backend-type/-data, public-ip (and the IPv6 ones). */
export function desiredAnnotations(attrs: LeaseAttrs, names: AnnotationNames): Record<string, string> {
  const out: Record<string, string> = {
    [names.subnetKubeManaged]: 'true',
    [names.backendData]: attrs.backendData ?? 'null',
    [names.backendType]: attrs.backendType ?? '',
    [names.backendPublicIp]: formatIp4(attrs.publicIp),
  };
  if (attrs.publicIpv6 !== undefined) {
    out[names.backendV6Data] = attrs.backendV6Data ?? 'null';
    out[names.backendPublicIpv6] = formatIp6(attrs.publicIpv6);
  }
  return out;
}

/** The annotations among `desired` that differ from the node's; undefined when none does (no patch needed). */
export function annotationsToPatch(desired: Readonly<Record<string, string>>, current: Readonly<Record<string, string>> | undefined): Record<string, string> | undefined {
  const diff = Object.entries(desired).filter(([k, v]) => current?.[k] !== v);
  return diff.length === 0 ? undefined : Object.fromEntries(diff);
}

/** The NetworkUnavailable=False condition flannel sets, as a strategic-merge patch of the node's status. */
export function networkAvailablePatch(now: Date): unknown {
  const t = now.toISOString().replace(/\.\d+Z$/, 'Z');
  return {
    status: {
      conditions: [{ type: 'NetworkUnavailable', status: 'False', reason: 'FlannelIsUp', message: 'Flannel is running on this node', lastTransitionTime: t, lastHeartbeatTime: t }],
    },
  };
}

export interface PodCidrs {
  readonly v4?: Cidr4;
  readonly v6?: Cidr6;
}

/**
 * A node's pod CIDRs: spec.podCIDRs (one or two entries, at most one per family), else spec.podCIDR.
 * Throws FLN_ERR_KUBE_POD_CIDR on 3+ entries, text that is no CIDR, or two of one family.
 */
export function podCidrsOf(node: KubeNode): PodCidrs {
  const name = node.metadata.name;
  const list = node.spec?.podCIDRs && node.spec.podCIDRs.length > 0 ? node.spec.podCIDRs : node.spec?.podCIDR ? [node.spec.podCIDR] : [];
  if (list.length > 2) {
    throw new FlannelError('FLN_ERR_KUBE_POD_CIDR', `node ${JSON.stringify(name)} has ${list.length} podCIDRs (${list.join(', ')}): at most one IPv4 and one IPv6`);
  }
  let v4: Cidr4 | undefined;
  let v6: Cidr6 | undefined;
  for (const text of list) {
    const c4 = text.includes(':') ? undefined : parseCidr4(text);
    const c6 = text.includes(':') ? parseCidr6(text) : undefined;
    if (c4 && !v4) v4 = c4;
    else if (c6 && !v6) v6 = c6;
    else throw new FlannelError('FLN_ERR_KUBE_POD_CIDR', `node ${JSON.stringify(name)}: podCIDR ${JSON.stringify(text)} is ${c4 || c6 ? 'a second one of its family' : 'not a CIDR'}`);
  }
  return { ...(v4 ? { v4 } : {}), ...(v6 ? { v6 } : {}) };
}

/** Which address families the network runs, for the leases built from Nodes. */
export interface Families { readonly ipv4: boolean; readonly ipv6: boolean }

/**
 * A Node as a peer lease, as flannel reads it: only with kube-subnet-manager "true", a public-ip that parses
 * (0.0.0.0 only with a public-ipv6, IPv6-only), and a pod CIDR of an enabled family. BackendData is the raw
 * backend-data text ("null" or empty: none). Undefined when the node is no peer.
 */
export function leaseFromNode(node: KubeNode, names: AnnotationNames, families: Families): Lease | undefined {
  const a = node.metadata.annotations ?? {};
  if (a[names.subnetKubeManaged] !== 'true') return undefined;
  const publicIp: Ip4 | undefined = parseIp4((a[names.backendPublicIp] ?? '').trim());
  if (publicIp === undefined) return undefined;
  const v6Text = (a[names.backendPublicIpv6] ?? '').trim();
  const publicIpv6: Ip6 | undefined = v6Text ? parseIp6(v6Text) : undefined;
  let cidrs: PodCidrs;
  try { cidrs = podCidrsOf(node); } catch { return undefined; }
  const subnet = families.ipv4 ? cidrs.v4 : undefined;
  const ipv6Subnet = families.ipv6 && publicIpv6 !== undefined ? cidrs.v6 : undefined;
  if (!subnet && !ipv6Subnet) return undefined;
  if (publicIp === 0 && publicIpv6 === undefined) return undefined;
  const raw = (v: string | undefined): string | undefined => (v === undefined || v === '' || v === 'null' ? undefined : v);
  const backendType = a[names.backendType] || undefined;
  const backendData = raw(a[names.backendData]);
  const backendV6Data = publicIpv6 !== undefined ? raw(a[names.backendV6Data]) : undefined;
  const attrs: LeaseAttrs = {
    publicIp,
    ...(backendType ? { backendType } : {}),
    ...(backendData ? { backendData } : {}),
    ...(publicIpv6 !== undefined ? { publicIpv6 } : {}),
    ...(backendV6Data ? { backendV6Data } : {}),
  };
  return { ...(subnet ? { subnet } : {}), ...(ipv6Subnet ? { ipv6Subnet } : {}), attrs, expiresAtMs: Infinity, etcdLeaseId: '0' } as Lease;
}
