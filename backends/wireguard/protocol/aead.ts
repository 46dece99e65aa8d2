// AEAD(key, counter, plaintext, ad): ChaCha20-Poly1305 with a 96-bit nonce of 32 zero bits and the
// 64-bit little-endian counter (node:crypto, Node's OpenSSL); XAEAD: XChaCha20-Poly1305 for cookie
// replies, which OpenSSL does not have, from libsodium (libsodium-wrappers, libsodium built to wasm).
import { createCipheriv, createDecipheriv } from 'node:crypto';
import sodium from 'libsodium-wrappers';
import { AEAD_TAG_LEN } from './constants.js';

await sodium.ready;

function nonceOf(counter: bigint): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64LE(counter, 4);
  return nonce;
}

/** Returns ciphertext ‖ 16-byte tag. */
export function aeadSeal(key: Uint8Array, counter: bigint, plaintext: Uint8Array, ad: Uint8Array): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, nonceOf(counter), { authTagLength: AEAD_TAG_LEN });
  c.setAAD(ad, { plaintextLength: plaintext.length });
  const body = c.update(plaintext);
  c.final();
  return Buffer.concat([body, c.getAuthTag()]);
}

/** Returns the plaintext, or undefined when the input does not authenticate. */
export function aeadOpen(key: Uint8Array, counter: bigint, sealed: Uint8Array, ad: Uint8Array): Buffer | undefined {
  if (sealed.length < AEAD_TAG_LEN) return undefined;
  const bodyLen = sealed.length - AEAD_TAG_LEN;
  const d = createDecipheriv('chacha20-poly1305', key, nonceOf(counter), { authTagLength: AEAD_TAG_LEN });
  d.setAAD(ad, { plaintextLength: bodyLen });
  d.setAuthTag(sealed.subarray(bodyLen));
  const body = d.update(sealed.subarray(0, bodyLen));
  try {
    d.final();
  } catch {
    return undefined;
  }
  return body;
}

export function xaeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Buffer {
  return Buffer.from(sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, null, nonce, key));
}

export function xaeadOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Buffer | undefined {
  try {
    return Buffer.from(sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(null, sealed, ad, nonce, key));
  } catch {
    return undefined;
  }
}
