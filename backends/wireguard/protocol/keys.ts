// Curve25519 keys as raw 32-byte buffers, on node:crypto (OpenSSL). DER wrappers are the fixed
// RFC 8410 prefixes for X25519 (OID 1.3.101.110).
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { KEY_LEN } from './constants.js';
import { WireGuardError } from './errors.js';

const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

export interface KeyPair {
  readonly privateKey: Buffer;
  readonly publicKey: Buffer;
}

function checkKey(key: Uint8Array, what: string): void {
  if (key.length !== KEY_LEN) throw new WireGuardError('FLN_ERR_WG_BAD_KEY', `${what} must be ${KEY_LEN} bytes, got ${key.length}`);
}

/** OpenSSL 3 imports a PKCS#8 X25519 key in ~1.3 ms (its decoder lookup): 25 initiations' worth of DH.
 * So the private keys in use keep their KeyObject: the node's static key, and each ephemeral key from
 * the moment it is generated. Bounded: the oldest entries go first (an evicted key is imported again). */
const PRIVATE_KEY_OBJECTS = new Map<string, KeyObject>();
const PRIVATE_KEY_CACHE = 256;

function remember(raw: Uint8Array, key: KeyObject): KeyObject {
  if (PRIVATE_KEY_OBJECTS.size >= PRIVATE_KEY_CACHE) PRIVATE_KEY_OBJECTS.delete(PRIVATE_KEY_OBJECTS.keys().next().value as string);
  PRIVATE_KEY_OBJECTS.set(Buffer.from(raw).toString('latin1'), key);
  return key;
}

function privateKeyObject(raw: Uint8Array): KeyObject {
  checkKey(raw, 'private key');
  return PRIVATE_KEY_OBJECTS.get(Buffer.from(raw).toString('latin1')) ??
    remember(raw, createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' }));
}

/** A public key as a KeyObject: JWK import takes ~12 µs, SPKI DER ~130 µs. */
function publicKeyObject(raw: Uint8Array): KeyObject {
  checkKey(raw, 'public key');
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
}

export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const pair = {
    privateKey: privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.length),
    publicKey: publicKey.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length),
  };
  remember(pair.privateKey, privateKey);
  return pair;
}

export function publicKeyOf(privateKey: Uint8Array): Buffer {
  return createPublicKey(privateKeyObject(privateKey)).export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length);
}

export function keyPairFromPrivate(privateKey: Uint8Array): KeyPair {
  return { privateKey: Buffer.from(privateKey), publicKey: publicKeyOf(privateKey) };
}

/** X25519(private, public); an all-zero result (a low-order public key) is refused. */
export function dh(privateKey: Uint8Array, publicKey: Uint8Array): Buffer {
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey: privateKeyObject(privateKey), publicKey: publicKeyObject(publicKey) });
  } catch (err) {
    if (err instanceof WireGuardError) throw err;
    throw new WireGuardError('FLN_ERR_WG_BAD_DH', `X25519 failed: ${(err as Error).message}`);
  }
  if (shared.every((b) => b === 0)) throw new WireGuardError('FLN_ERR_WG_BAD_DH');
  return shared;
}

/** A key as `wg` prints it: standard base64 of 32 bytes. */
export function keyToBase64(key: Uint8Array): string {
  checkKey(key, 'key');
  return Buffer.from(key).toString('base64');
}

export function keyFromBase64(text: string): Buffer {
  const trimmed = text.trim();
  const key = Buffer.from(trimmed, 'base64');
  if (key.length !== KEY_LEN || key.toString('base64') !== trimmed) {
    throw new WireGuardError('FLN_ERR_WG_BAD_KEY', `not base64 of a ${KEY_LEN}-byte key`);
  }
  return key;
}
