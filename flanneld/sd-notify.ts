// sd_notify(3) for flanneld: sends "READY=1", "STATUS=…" to systemd's NOTIFY_SOCKET through our
// own N-API addon (build/Release/flanneld_native.node, from flanneld/native/sd-notify.c).

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

interface NativeAddon {
  notify(socketPath: string, message: string): undefined;
}

const ADDON_RELATIVE_PATH = join('build', 'Release', 'flanneld_native.node');

/** The repo root: the nearest ancestor of `from` holding a package.json (works from flanneld/ and dist/flanneld/). */
export function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`sd_notify: no package.json above ${from}`);
  }
}

let addon: NativeAddon | undefined;

/** Loads the addon on first use, so importing this module never needs the native build. */
function loadAddon(): NativeAddon {
  if (addon) return addon;
  const path = join(findPackageRoot(dirname(fileURLToPath(import.meta.url))), ADDON_RELATIVE_PATH);
  try {
    addon = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (err) {
    throw new Error(`sd_notify: cannot load native addon ${path} (run \`npm run build\`)`, { cause: err });
  }
  return addon;
}

/**
 * Sends `state` (newline-separated KEY=VALUE pairs) to $NOTIFY_SOCKET as one datagram.
 * Returns false and does nothing when NOTIFY_SOCKET is unset or empty; true once sent.
 * Throws an Error with an errno `code` (ENOENT, ECONNREFUSED, EAGAIN, …) when sending fails.
 */
export function sdNotify(state: string, env: Readonly<Record<string, string | undefined>> = process.env): boolean {
  const socketPath = env['NOTIFY_SOCKET'];
  if (!socketPath) return false;
  loadAddon().notify(socketPath, state);
  return true;
}
