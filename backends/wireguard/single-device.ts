// flannel's single-device wireguard modes (Mode auto, ipv4, ipv6 with EnableIPv6: one flannel-wg on
// ListenPort for both families), the parts that decide where a peer is dialed and what our lease says.
// From flannel's pkg/backend/wireguard (wireguard_network.go, handleSubnetEvents and selectPublicEndpoint;
// pkg/ip IsPrivate):
// - ipv4 dials the peer's PublicIP, ipv6 its PublicIPv6, auto chooses per peer:
//     no PublicIPv6 in its lease → PublicIP;
//     its PublicIP is not RFC 1918 (10/8, 172.16/12, 192.168/16) and we have an IPv4 address → PublicIP;
//     its PublicIPv6 is not RFC 4193 (fc00::/7) and ours is not either → [PublicIPv6];
//     otherwise PublicIP.
//   flannel's IsPrivate is only RFC 1918 / RFC 4193: link-local, loopback and documentation addresses
//   (192.0.2.0/24, 2001:db8::/32) count as public there, and so they do here.
// - The port: flannel before v0.26.6 dials its own ListenPort. The lease's Port arrived later; in these
//   modes a flannel node may advertise ListenPortV6 in BackendV6Data although only ListenPort listens.
//   Decision: we advertise ListenPort in both BackendData and BackendV6Data (the one port that listens,
//   whichever of the two a peer reads), and dial BackendData's Port, falling back to BackendV6Data's only
//   when the lease has no BackendData (an IPv6-only lease), then to our ListenPort. A flannel peer that
//   wrongly advertises ListenPortV6 in BackendV6Data is therefore dialed on its real ListenPort.
import type { Ip4 } from '../../lib/ip.js';
import type { Ip6 } from '../../lib/ip6.js';
import type { LeaseAttrs } from '../backend.js';
import { type WireGuardPeerData, encodeWireGuardBackendData, parseWireGuardBackendData } from './lease-data.js';
import type { WireGuardMode } from './wireguard-config.js';

export type SingleDeviceMode = Exclude<WireGuardMode, 'separate'>;

/** flannel's ip.IP4.IsPrivate: RFC 1918 only. */
export function isFlannelPrivate4(ip: Ip4): boolean {
  const a = ip >>> 24, b = (ip >>> 16) & 0xff;
  return a === 10 || (a === 172 && (b & 0xf0) === 16) || (a === 192 && b === 168);
}

/** flannel's ip.IP6.IsPrivate: RFC 4193 (fc00::/7) only. */
export function isFlannelPrivate6(ip: Ip6): boolean {
  return ((ip >> 120n) & 0xfen) === 0xfcn;
}

/** Our side of the choice: the addresses flannel calls ExtAddr and ExtV6Addr (our PublicIP and PublicIPv6). */
export interface OwnAddresses { readonly publicIp?: Ip4; readonly publicIp6?: Ip6 }

/**
 * The outer address a single-device mode dials for a peer: its PublicIP (a number) or its PublicIPv6 (a
 * bigint); undefined when the mode needs an address the lease lacks (Mode ipv6 and no PublicIPv6).
 */
export function singleDeviceEndpoint(mode: SingleDeviceMode, peer: Pick<LeaseAttrs, 'publicIp' | 'publicIpv6'>, own: OwnAddresses): Ip4 | Ip6 | undefined {
  if (mode === 'ipv4') return peer.publicIp;
  if (mode === 'ipv6') return peer.publicIpv6;
  const ip4 = peer.publicIp, ip6 = peer.publicIpv6;
  if (ip6 === undefined) return ip4;
  if (!isFlannelPrivate4(ip4) && own.publicIp !== undefined) return ip4;
  if (!isFlannelPrivate6(ip6) && own.publicIp6 !== undefined && !isFlannelPrivate6(own.publicIp6)) return ip6;
  return ip4;
}

/** The IPv4 or IPv6 outer family every peer of the mode is dialed over, when the mode fixes it. */
export function singleDeviceOuterFamily(mode: SingleDeviceMode): 4 | 6 | undefined {
  return mode === 'ipv4' ? 4 : mode === 'ipv6' ? 6 : undefined;
}

/** A peer's key and port in a single-device mode (see the port decision above); undefined without a valid key. */
export function singleDevicePeerData(attrs: Pick<LeaseAttrs, 'backendData' | 'backendV6Data'>, listenPort: number): WireGuardPeerData | undefined {
  if (attrs.backendData !== undefined) return parseWireGuardBackendData(attrs.backendData, listenPort);
  return parseWireGuardBackendData(attrs.backendV6Data, listenPort);
}

/** Our lease's BackendData and BackendV6Data in a single-device mode: the same key, both on ListenPort. */
export function singleDeviceLeaseData(publicKey: Uint8Array, listenPort: number, families: { readonly v4: boolean; readonly v6: boolean }): { backendData?: string; backendV6Data?: string } {
  const data = encodeWireGuardBackendData(publicKey, listenPort);
  return { ...(families.v4 ? { backendData: data } : {}), ...(families.v6 ? { backendV6Data: data } : {}) };
}
