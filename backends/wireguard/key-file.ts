// The node's WireGuard private key, as flannel keeps it: base64 in /run/flannel/wgkey (WIREGUARD_KEY_FILE
// overrides), mode 0400 in a 0755 directory, created when missing and reused when present. A damaged
// file is an error naming the file and what to do: it is never silently replaced, since peers know the
// node by the public key in its lease.
import { chmodSync, closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { FlannelError } from '../../lib/errors.js';
import { type KeyPair, generateKeyPair, keyFromBase64, keyPairFromPrivate, keyToBase64 } from './protocol/keys.js';

export const DEFAULT_KEY_FILE = '/run/flannel/wgkey';

export function keyFilePath(env: NodeJS.ProcessEnv = process.env): string {
  return env.WIREGUARD_KEY_FILE || DEFAULT_KEY_FILE;
}

export interface NodeKey extends KeyPair {
  /** The file did not exist and was written now. */
  readonly created: boolean;
}

export function loadOrCreateKey(path: string): NodeKey {
  const existing = readKey(path);
  if (existing) return { ...existing, created: false };
  const pair = generateKeyPair();
  const created = mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  if (created) chmodSync(dirname(path), 0o755); // whatever the umask, as flannel's 0755
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    const fd = openSync(tmp, 'wx', 0o400);
    try {
      writeSync(fd, keyToBase64(pair.privateKey));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    // link, not rename: never replaces a key another process wrote in the meantime.
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      const raced = readKey(path);
      if (raced) return { ...raced, created: false };
    }
    throw new FlannelError('FLN_ERR_WG_KEY_FILE', `cannot write the WireGuard key file ${path}: ${(err as Error).message}`, { cause: err });
  } finally {
    try { unlinkSync(tmp); } catch { /* not created */ }
  }
  return { ...pair, created: true };
}

function readKey(path: string): KeyPair | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FlannelError('FLN_ERR_WG_KEY_FILE', `cannot read the WireGuard key file ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return keyPairFromPrivate(keyFromBase64(text));
  } catch (err) {
    throw new FlannelError('FLN_ERR_WG_KEY_FILE',
      `the WireGuard key file ${path} is damaged (not base64 of a 32-byte private key, as \`wg genkey\` writes): ` +
      'restore it, or delete it to make a new key (peers then learn the new public key from this node\'s lease)', { cause: err });
  }
}
