// sd_notify(3) for flanneld: sends "READY=1", "STATUS=…" to systemd's NOTIFY_SOCKET through our
// own N-API addon (build/Release/flanneld_native.node, from flanneld/native/sd-notify.c).

import { loadAddon } from '../lib/load-addon.js';

interface NativeAddon {
  notify(socketPath: string, message: string): undefined;
}

let addon: NativeAddon | undefined;

/**
 * Sends `state` (newline-separated KEY=VALUE pairs) to $NOTIFY_SOCKET as one datagram.
 * Returns false and does nothing when NOTIFY_SOCKET is unset or empty; true once sent.
 * Throws an Error with an errno `code` (ENOENT, ECONNREFUSED, EAGAIN, …) when sending fails.
 */
export function sdNotify(state: string, env: Readonly<Record<string, string | undefined>> = process.env): boolean {
  const socketPath = env['NOTIFY_SOCKET'];
  if (!socketPath) return false;
  addon ??= loadAddon<NativeAddon>('flanneld_native');
  addon.notify(socketPath, state);
  return true;
}
