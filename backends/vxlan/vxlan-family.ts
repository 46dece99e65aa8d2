// One address family's view of a vxlan lease. Dual-stack vxlan runs two VTEPs, as flannel does:
// flannel.<VNI> carries IPv4 over an IPv4 underlay with the lease's subnet, PublicIP and BackendData;
// flannel-v6.<VNI> carries IPv6 over an IPv6 underlay with its IPv6 subnet, PublicIPv6 and
// BackendV6Data. A lease without the family's part has no peer in that family's VTEP.
import { formatCidr4, formatIp4 } from '../../lib/ip.js';
import { formatCidr6, formatIp6 } from '../../lib/ip6.js';
import type { Lease } from '../backend.js';
import type { VxlanPeer, VxlanPeer6 } from './vtep.js';
import { parseVtepMac } from './vxlan-config.js';
import { acceptsPartialChecksums } from '../datapath/partial-checksums.js';

export type Family = 4 | 6;

/** A lease's part in one family, in the text forms iproute2 takes, plus the engine's peer. */
export interface FamilyPart {
  /** The subnet, e.g. "10.244.3.0/24" or "fd00:10:244:3::/64": the destination of the peer's route. */
  readonly dst: string;
  /** The subnet's own address: the gateway of the onlink route and the neighbour entry. */
  readonly gateway: string;
  /** PublicIP or PublicIPv6: the FDB destination, and the next hop of a direct route. */
  readonly publicIp: string;
  readonly mac: string;
  /** What the VTEP's data path takes: a VxlanPeer in IPv4, a VxlanPeer6 in IPv6. */
  readonly peer: VxlanPeer | VxlanPeer6;
}

export const DEVICE_PREFIX: Record<Family, string> = { 4: 'flannel.', 6: 'flannel-v6.' };

/**
 * The family's part of a vxlan lease; undefined when the lease is not vxlan, lacks this family, or has
 * no valid VtepMAC for it. The engine's peer is named by the family's subnet (its counters' label).
 */
export function familyPart(family: Family, lease: Lease): FamilyPart | undefined {
  if (lease.attrs.backendType !== 'vxlan') return undefined;
  if (family === 4) {
    const { subnet } = lease;
    const mac = parseVtepMac(lease.attrs.backendData);
    if (!mac || !subnet) return undefined;
    const key = formatCidr4(subnet);
    const publicIp = lease.attrs.publicIp;
    return {
      dst: key, gateway: formatIp4(subnet.ip), publicIp: formatIp4(publicIp), mac,
      peer: { key, subnet, publicIp, mac, partialChecksums: acceptsPartialChecksums(lease.attrs.backendData) },
    };
  }
  const subnet = lease.ipv6Subnet;
  const publicIp = lease.attrs.publicIpv6;
  const mac = parseVtepMac(lease.attrs.backendV6Data);
  if (subnet === undefined || publicIp === undefined || !mac) return undefined;
  const dst = formatCidr6(subnet);
  // The engine names the peer by its IPv6 subnet: its counters are told apart from the IPv4 engine's.
  return {
    dst, gateway: formatIp6(subnet.ip), publicIp: formatIp6(publicIp), mac,
    peer: { key: dst, subnet, publicIp, mac, partialChecksums: acceptsPartialChecksums(lease.attrs.backendV6Data) },
  };
}
