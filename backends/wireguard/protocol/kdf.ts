// HASH, HMAC, KDF1/2/3 and the keyed MAC of the whitepaper (§5.4), all from Node's own OpenSSL:
// BLAKE2s-256 and HMAC-BLAKE2s through node:crypto, keyed BLAKE2s with a 16-byte output (MAC), which
// node:crypto does not offer, through our addon (libcrypto's EVP_MAC BLAKE2SMAC).
import { createHash, createHmac } from 'node:crypto';
import { datapathAddon } from '../../datapath/native/datapath-addon.js';
import { MAC_LEN } from './constants.js';

/** HASH(a ‖ b ‖ …): BLAKE2s-256. */
export function hash(...parts: readonly (Uint8Array | string)[]): Buffer {
  const h = createHash('blake2s256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** HMAC(key, a ‖ b ‖ …) over BLAKE2s-256 (RFC 2104, block 64). */
export function hmac(key: Uint8Array, ...parts: readonly Uint8Array[]): Buffer {
  const h = createHmac('blake2s256', key);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** MAC(key, input): keyed BLAKE2s with a 16-byte output (mac1, mac2, cookies). */
export function mac(key: Uint8Array, input: Uint8Array): Buffer {
  return datapathAddon().blake2sMac(key, input, MAC_LEN);
}

const ONE = Uint8Array.of(1);
const TWO = Uint8Array.of(2);
const THREE = Uint8Array.of(3);

export function kdf1(key: Uint8Array, input: Uint8Array): Buffer {
  return hmac(hmac(key, input), ONE);
}

export function kdf2(key: Uint8Array, input: Uint8Array): [Buffer, Buffer] {
  const prk = hmac(key, input);
  const t1 = hmac(prk, ONE);
  return [t1, hmac(prk, t1, TWO)];
}

export function kdf3(key: Uint8Array, input: Uint8Array): [Buffer, Buffer, Buffer] {
  const prk = hmac(key, input);
  const t1 = hmac(prk, ONE);
  const t2 = hmac(prk, t1, TWO);
  return [t1, t2, hmac(prk, t2, THREE)];
}
