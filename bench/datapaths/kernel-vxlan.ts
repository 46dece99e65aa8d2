// Kernel VXLAN programmed by hand exactly as flannel's vxlan backend does it (flannel-compat.md §5):
// flannel.1 (vxlan id 1 dstport 8472 nolearning local <ip> dev <ext>, MTU ext−50, <subnet>.0/32), and
// per peer a permanent neighbour, an FDB entry and an onlink route. The reference data path.
import { randomBytes } from 'node:crypto';
import { execOn, execOnChecked, ipBatchOn } from '../lib/exec.js';

export const VTEP_DEV = 'flannel.1';
export const VXLAN_OVERHEAD = 50;

export interface VtepSpec {
  /** Namespace of the host, or undefined for this machine. */
  readonly ns: string | undefined;
  readonly localIp: string;
  readonly extIface: string;
  readonly extMtu: number;
  readonly mac: string;
  /** The host's subnet network address, e.g. 10.244.1.0 (given as <addr>/32 to the device). */
  readonly address: string;
}

export interface VtepPeer {
  /** The peer's subnet, e.g. 10.244.2.0/24; its network address is the peer's VTEP address. */
  readonly subnet: string;
  readonly mac: string;
  readonly publicIp: string;
}

/** A random locally administered unicast MAC, as flannel makes for flannel.1. */
export function randomVtepMac(): string {
  const b = randomBytes(6);
  b[0] = ((b[0] as number) & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export async function createVtep(s: VtepSpec): Promise<void> {
  await ipBatchOn(s.ns, [
    `link add ${VTEP_DEV} address ${s.mac} mtu ${s.extMtu - VXLAN_OVERHEAD} type vxlan id 1 dstport 8472 nolearning local ${s.localIp} dev ${s.extIface}`,
    `addr add ${s.address}/32 dev ${VTEP_DEV}`,
    `link set ${VTEP_DEV} up`,
  ]);
  // flannel sets accept_ra=0; without IPv6 in the namespace the key may not exist, which is fine.
  await execOn(s.ns, 'sysctl', ['-q', '-w', `net/ipv6/conf/${VTEP_DEV}/accept_ra=0`]);
}

/** The three per-peer entries, in flannel's order: neighbour, FDB, then the route. */
export async function addVtepPeer(ns: string | undefined, peer: VtepPeer): Promise<void> {
  const vtepIp = peer.subnet.split('/')[0] as string;
  await ipBatchOn(ns, [`neigh replace ${vtepIp} lladdr ${peer.mac} dev ${VTEP_DEV} nud permanent`]);
  await execOnChecked(ns, 'bridge', ['fdb', 'replace', peer.mac, 'dev', VTEP_DEV, 'dst', peer.publicIp, 'self', 'permanent']);
  await ipBatchOn(ns, [`route replace ${peer.subnet} via ${vtepIp} dev ${VTEP_DEV} onlink`]);
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
