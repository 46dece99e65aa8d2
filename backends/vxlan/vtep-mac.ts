// A stable VTEP MAC: derived from the node's PublicIP and the VNI, so it is the same after a restart
// or a reboot and peers never hold a stale one (flannel issues #1795, #1788). Locally administered,
// unicast.
import { createHash } from 'node:crypto';
import { type Ip4, formatIp4 } from '../../lib/ip.js';
import { type Ip6, formatIp6 } from '../../lib/ip6.js';

/** From the PublicIP for flannel.<VNI>, from the PublicIPv6 for flannel-v6.<VNI> (k3s #9957: flannel's changed at every reboot). */
export function stableVtepMac(publicIp: Ip4 | Ip6, vni: number): string {
  const text = typeof publicIp === 'bigint' ? `vtep6 ${formatIp6(publicIp)}` : `vtep ${formatIp4(publicIp)}`;
  const d = createHash('sha256').update(`flannel-ts ${text} ${vni}`).digest();
  const bytes = [...d.subarray(0, 6)];
  bytes[0] = ((bytes[0] as number) & 0xfe) | 0x02;
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

export function macToBytes(mac: string): Uint8Array {
  return Uint8Array.from(mac.split(':').map((h) => parseInt(h, 16)));
}
