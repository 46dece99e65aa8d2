// A stable VTEP MAC: derived from the node's PublicIP and the VNI, so it is the same after a restart
// or a reboot and peers never hold a stale one (flannel issues #1795, #1788). Locally administered,
// unicast.
import { createHash } from 'node:crypto';
import { type Ip4, formatIp4 } from '../../lib/ip.js';

export function stableVtepMac(publicIp: Ip4, vni: number): string {
  const d = createHash('sha256').update(`flannel-ts vtep ${formatIp4(publicIp)} ${vni}`).digest();
  const bytes = [...d.subarray(0, 6)];
  bytes[0] = ((bytes[0] as number) & 0xfe) | 0x02;
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

export function macToBytes(mac: string): Uint8Array {
  return Uint8Array.from(mac.split(':').map((h) => parseInt(h, 16)));
}
