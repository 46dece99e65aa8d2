// What a userspace backend needs before it leases: /dev/net/tun and our packet-engine addon. One check
// for every backend on the engine, with the same fix-it messages.
import { existsSync } from 'node:fs';
import { FlannelError, errorMessage } from '../../lib/errors.js';
import { datapathAddon } from './native/datapath-addon.js';

export function requireUserspaceDatapath(backend: string): void {
  if (!existsSync('/dev/net/tun')) {
    throw new FlannelError('FLN_ERR_BACKEND_UNSUPPORTED', `the ${backend} backend needs /dev/net/tun: load the tun module (modprobe tun) or mount the device into the container`);
  }
  try {
    datapathAddon();
  } catch (err) {
    throw new FlannelError('FLN_ERR_BACKEND_UNSUPPORTED', `the ${backend} backend needs the packet-engine addon: ${errorMessage(err)}`, { cause: err });
  }
}
