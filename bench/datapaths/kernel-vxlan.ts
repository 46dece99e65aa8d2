// Kernel VXLAN programmed by hand exactly as flannel's vxlan backend does it (flannel-compat.md §5):
// flannel.1 (vxlan id 1 dstport 8472 nolearning local <ip> dev <ext>, MTU ext−50, <subnet>.0/32), and
// per peer a permanent neighbour, an FDB entry and an onlink route. The reference data path.
// Over an IPv6 underlay (dual-stack) the same with flannel-v6.1: local <ext's IPv6 address>, <subnet>::/128,
// MTU ext−70 (the IPv6 header is 20 bytes longer; flannel itself keeps ext−50 there, a latent bug), and per peer
// the neighbour <subnet>::, the FDB entry to the peer's IPv6 address and the onlink route. The family of a VTEP
// follows from its addresses.
import { randomBytes } from 'node:crypto';
import { execOn, execOnChecked, ipBatchOn } from '../lib/exec.js';

export const VTEP_DEV = 'flannel.1';
export const VXLAN_OVERHEAD = 50;
export const VTEP6_DEV = 'flannel-v6.1';
/** Outer IPv6 (40) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN6_OVERHEAD = 70;

export interface VtepSpec {
  /** Namespace of the host, or undefined for this machine. */
  readonly ns: string | undefined;
  /** The underlay address: IPv4 makes flannel.1, IPv6 flannel-v6.1. */
  readonly localIp: string;
  readonly extIface: string;
  readonly extMtu: number;
  readonly mac: string;
  /** The host's subnet network address, e.g. 10.244.1.0 or fd00:10:244:1:: (given as /32 or /128 to the device). */
  readonly address: string;
}

export interface VtepPeer {
  /** The peer's subnet, e.g. 10.244.2.0/24 or fd00:10:244:2::/64; its network address is the peer's VTEP address. */
  readonly subnet: string;
  readonly mac: string;
  /** The peer's underlay address, of the subnet's family. */
  readonly publicIp: string;
}

const isIpv6 = (ip: string): boolean => ip.includes(':');
/** The VTEP device of an address family, and its MTU overhead. */
export const vtepDevOf = (ip: string): string => (isIpv6(ip) ? VTEP6_DEV : VTEP_DEV);
export const vxlanOverheadOf = (ip: string): number => (isIpv6(ip) ? VXLAN6_OVERHEAD : VXLAN_OVERHEAD);

/** A random locally administered unicast MAC, as flannel makes for flannel.1. */
export function randomVtepMac(): string {
  const b = randomBytes(6);
  b[0] = ((b[0] as number) & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export async function createVtep(s: VtepSpec): Promise<void> {
  const dev = vtepDevOf(s.localIp);
  await ipBatchOn(s.ns, [
    `link add ${dev} address ${s.mac} mtu ${s.extMtu - vxlanOverheadOf(s.localIp)} type vxlan id 1 dstport 8472 nolearning local ${s.localIp} dev ${s.extIface}`,
    `addr add ${s.address}/${isIpv6(s.address) ? 128 : 32} dev ${dev}`,
    `link set ${dev} up`,
  ]);
  // flannel sets accept_ra=0; without IPv6 in the namespace the key may not exist, which is fine.
  await execOn(s.ns, 'sysctl', ['-q', '-w', `net/ipv6/conf/${dev}/accept_ra=0`]);
}

/** The three per-peer entries, in flannel's order: neighbour, FDB, then the route (on the subnet's family's VTEP). */
export async function addVtepPeer(ns: string | undefined, peer: VtepPeer): Promise<void> {
  const vtepIp = peer.subnet.split('/')[0] as string;
  const dev = vtepDevOf(vtepIp);
  await ipBatchOn(ns, [`neigh replace ${vtepIp} lladdr ${peer.mac} dev ${dev} nud permanent`]);
  await execOnChecked(ns, 'bridge', ['fdb', 'replace', peer.mac, 'dev', dev, 'dst', peer.publicIp, 'self', 'permanent']);
  await ipBatchOn(ns, [`route replace ${peer.subnet} via ${vtepIp} dev ${dev} onlink`]);
}

/** MTU of a link, e.g. of the underlay interface. */
export async function linkMtu(ns: string | undefined, dev: string): Promise<number> {
  const out = await execOnChecked(ns, 'ip', ['-j', 'link', 'show', 'dev', dev]);
  const mtu = (JSON.parse(out) as Array<{ mtu?: number }>)[0]?.mtu;
  if (!mtu) throw new Error(`cannot read the MTU of ${dev}`);
  return mtu;
}

/** Sets the MTU of a pod's eth0 and of every port of the node's cni0, as the CNI bridge plugin does. */
export async function setPodMtu(nodeNs: string | undefined, podNs: string, mtu: number): Promise<void> {
  await ipBatchOn(podNs, [`link set eth0 mtu ${mtu}`]);
  const ports = JSON.parse(await execOnChecked(nodeNs, 'ip', ['-j', 'link', 'show', 'master', 'cni0'])) as Array<{ ifname: string }>;
  await ipBatchOn(nodeNs, ports.map((p) => `link set ${p.ifname} mtu ${mtu}`));
}
