// Opens the TUN or TAP device of a userspace backend. With offloads wanted, it asks for
// IFF_VNET_HDR and TSO (checksum + TCPv4 segmentation); a kernel or device that refuses gets the
// per-packet path instead, and the log says which feature was missing.
import type { Logger } from 'pino';
import { TUN_FLAGS, TUN_OFFLOADS, datapathAddon } from './native/datapath-addon.js';

export interface OpenedDevice {
  readonly fd: number;
  readonly name: string;
  /** IFF_VNET_HDR and TSO are on: the engine must run its offload loops. */
  readonly offload: boolean;
}

export function openDevice(o: { name: string; tap: boolean; offload: boolean; log: Logger }): OpenedDevice {
  const addon = datapathAddon();
  const base = o.tap ? TUN_FLAGS.TAP : 0;
  if (!o.offload) {
    o.log.info({ device: o.name }, 'offloads disabled by --datapath-offload=false: using the per-packet path');
    return { ...addon.tunOpen(o.name, base), offload: false };
  }
  let dev: { fd: number; name: string };
  try {
    dev = addon.tunOpen(o.name, base | TUN_FLAGS.VNET_HDR);
  } catch (err) {
    o.log.warn({ device: o.name, err: (err as Error).message }, 'IFF_VNET_HDR is not available: falling back to the per-packet path');
    return { ...addon.tunOpen(o.name, base), offload: false };
  }
  try {
    addon.tunSetOffload(dev.fd, TUN_OFFLOADS.CSUM | TUN_OFFLOADS.TSO4);
    return { ...dev, offload: true };
  } catch (err) {
    o.log.warn({ device: o.name, err: (err as Error).message }, 'TUNSETOFFLOAD (checksum, TSO4) was refused: falling back to the per-packet path');
    addon.closeFd(dev.fd);
    return { ...addon.tunOpen(o.name, base), offload: false };
  }
}
