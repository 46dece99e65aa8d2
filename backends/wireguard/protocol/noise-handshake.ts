// The Noise_IKpsk2 handshake of WireGuard (whitepaper §5.4.2–§5.4.5), both roles:
//   initiator: createInitiation → (response arrives) consumeResponse → keypair
//   responder: consumeInitiation → createResponse → keypair (usable for sending once the initiator's
//              first transport message arrived; that rule belongs to the caller's session logic)
// mac1/mac2 are written by the peer's MacGenerator and mac1 is verified here with the local CookieChecker;
// whether to demand mac2 (under load) is the caller's decision.
import { aeadOpen, aeadSeal } from './aead.js';
import { CONSTRUCTION, IDENTIFIER, KEY_LEN } from './constants.js';
import type { CookieChecker, MacGenerator } from './cookie.js';
import { WireGuardError } from './errors.js';
import { hash, kdf1, kdf2, kdf3 } from './kdf.js';
import { dh, generateKeyPair, type KeyPair } from './keys.js';
import { decodeInitiation, decodeResponse, encodeInitiation, encodeResponse } from './messages.js';
import { compareTimestamps } from './tai64n.js';
import { TransportKeypair } from './transport.js';

/** C_i = HASH(CONSTRUCTION), H_i = HASH(C_i ‖ IDENTIFIER): the same for every handshake. */
export const INITIAL_CHAINING_KEY = hash(CONSTRUCTION);
export const INITIAL_HASH = hash(INITIAL_CHAINING_KEY, IDENTIFIER);

const ZERO_KEY = Buffer.alloc(KEY_LEN);
const EMPTY = new Uint8Array(0);

/** What the handshake needs to know about one peer. */
export interface HandshakePeer {
  readonly publicKey: Buffer;
  /** 32 bytes; all zeros when no PSK is configured. */
  readonly presharedKey: Buffer;
  /** Writes mac1/mac2 of messages to this peer and holds its cookie. */
  readonly macs: MacGenerator;
  /** The newest TAI64N timestamp accepted from this peer's initiations. */
  lastTimestamp: Buffer | undefined;
}

export function handshakePeer(publicKey: Buffer, presharedKey: Buffer | undefined, macs: MacGenerator): HandshakePeer {
  if (publicKey.length !== KEY_LEN) throw new WireGuardError('FLN_ERR_WG_BAD_KEY', 'peer public key must be 32 bytes');
  if (presharedKey && presharedKey.length !== KEY_LEN) throw new WireGuardError('FLN_ERR_WG_BAD_KEY', 'preshared key must be 32 bytes');
  return { publicKey, presharedKey: presharedKey ?? ZERO_KEY, macs, lastTimestamp: undefined };
}

/** The initiator's state between sending the initiation and receiving the response. */
export interface InitiatorState {
  readonly peer: HandshakePeer;
  readonly localIndex: number;
  readonly ephemeral: KeyPair;
  readonly chainingKey: Buffer;
  readonly hash: Buffer;
}

/** The responder's state after a valid initiation. */
export interface ResponderState {
  readonly peer: HandshakePeer;
  readonly remoteIndex: number;
  readonly remoteEphemeral: Buffer;
  readonly chainingKey: Buffer;
  readonly hash: Buffer;
  readonly timestamp: Buffer;
}

function open(key: Buffer, sealed: Uint8Array, ad: Buffer, what: string): Buffer {
  const plain = aeadOpen(key, 0n, sealed, ad);
  if (!plain) throw new WireGuardError('FLN_ERR_WG_HANDSHAKE_DECRYPT', `${what} does not authenticate`);
  return plain;
}

export function createInitiation(
  local: KeyPair,
  peer: HandshakePeer,
  opts: { localIndex: number; timestamp: Buffer; ephemeral?: KeyPair },
): { message: Buffer; state: InitiatorState } {
  const e = opts.ephemeral ?? generateKeyPair();
  let h = hash(INITIAL_HASH, peer.publicKey);
  let ck = kdf1(INITIAL_CHAINING_KEY, e.publicKey);
  h = hash(h, e.publicKey);
  let k: Buffer;
  [ck, k] = kdf2(ck, dh(e.privateKey, peer.publicKey));
  const encryptedStatic = aeadSeal(k, 0n, local.publicKey, h);
  h = hash(h, encryptedStatic);
  [ck, k] = kdf2(ck, dh(local.privateKey, peer.publicKey));
  const encryptedTimestamp = aeadSeal(k, 0n, opts.timestamp, h);
  h = hash(h, encryptedTimestamp);
  const message = encodeInitiation({
    sender: opts.localIndex, ephemeral: e.publicKey, encryptedStatic, encryptedTimestamp,
    mac1: Buffer.alloc(16), mac2: Buffer.alloc(16),
  });
  peer.macs.addMacs(message);
  return { message, state: { peer, localIndex: opts.localIndex, ephemeral: e, chainingKey: ck, hash: h } };
}

/**
 * Validates an initiation sent to us: mac1, the initiator's static key (must be a peer `lookup` knows),
 * and a timestamp newer than the last one accepted from that peer, which is then recorded.
 */
export function consumeInitiation(
  local: KeyPair,
  checker: CookieChecker,
  msg: Uint8Array,
  lookup: (publicKey: Buffer) => HandshakePeer | undefined,
): ResponderState {
  const m = decodeInitiation(msg);
  checker.verifyMac1(msg);
  let h = hash(INITIAL_HASH, local.publicKey);
  let ck = kdf1(INITIAL_CHAINING_KEY, m.ephemeral);
  h = hash(h, m.ephemeral);
  let k: Buffer;
  [ck, k] = kdf2(ck, dh(local.privateKey, m.ephemeral));
  const initiatorStatic = open(k, m.encryptedStatic, h, 'encrypted static');
  h = hash(h, m.encryptedStatic);
  const peer = lookup(initiatorStatic);
  if (!peer) throw new WireGuardError('FLN_ERR_WG_UNKNOWN_PEER', 'initiation from an unknown static key', { publicKey: initiatorStatic.toString('base64') });
  [ck, k] = kdf2(ck, dh(local.privateKey, peer.publicKey));
  const timestamp = open(k, m.encryptedTimestamp, h, 'encrypted timestamp');
  h = hash(h, m.encryptedTimestamp);
  if (peer.lastTimestamp && compareTimestamps(timestamp, peer.lastTimestamp) <= 0) {
    throw new WireGuardError('FLN_ERR_WG_REPLAYED_INITIATION', undefined, { timestamp: timestamp.toString('hex') });
  }
  peer.lastTimestamp = timestamp;
  return { peer, remoteIndex: m.sender, remoteEphemeral: Buffer.from(m.ephemeral), chainingKey: ck, hash: h, timestamp };
}

export function createResponse(
  state: ResponderState,
  opts: { localIndex: number; ephemeral?: KeyPair; now?: number },
): { message: Buffer; keypair: TransportKeypair } {
  const e = opts.ephemeral ?? generateKeyPair();
  let ck = kdf1(state.chainingKey, e.publicKey);
  let h = hash(state.hash, e.publicKey);
  ck = kdf1(ck, dh(e.privateKey, state.remoteEphemeral));
  ck = kdf1(ck, dh(e.privateKey, state.peer.publicKey));
  const [ck2, tau, k] = kdf3(ck, state.peer.presharedKey);
  h = hash(h, tau);
  const encryptedNothing = aeadSeal(k, 0n, EMPTY, h);
  const message = encodeResponse({
    sender: opts.localIndex, receiver: state.remoteIndex, ephemeral: e.publicKey, encryptedNothing,
    mac1: Buffer.alloc(16), mac2: Buffer.alloc(16),
  });
  state.peer.macs.addMacs(message);
  const [receiveKey, sendKey] = kdf2(ck2, EMPTY);
  return { message, keypair: new TransportKeypair(sendKey, receiveKey, opts.localIndex, state.remoteIndex, false, opts.now) };
}

/** Validates the response to our initiation (mac1, receiver index, the PSK-bound empty payload). */
export function consumeResponse(
  local: KeyPair,
  checker: CookieChecker,
  state: InitiatorState,
  msg: Uint8Array,
  now?: number,
): TransportKeypair {
  const m = decodeResponse(msg);
  checker.verifyMac1(msg);
  if (m.receiver !== state.localIndex) {
    throw new WireGuardError('FLN_ERR_WG_UNKNOWN_INDEX', `response for index ${m.receiver}, ours is ${state.localIndex}`);
  }
  let ck = kdf1(state.chainingKey, m.ephemeral);
  let h = hash(state.hash, m.ephemeral);
  ck = kdf1(ck, dh(state.ephemeral.privateKey, m.ephemeral));
  ck = kdf1(ck, dh(local.privateKey, m.ephemeral));
  const [ck2, tau, k] = kdf3(ck, state.peer.presharedKey);
  h = hash(h, tau);
  open(k, m.encryptedNothing, h, 'encrypted nothing');
  const [sendKey, receiveKey] = kdf2(ck2, EMPTY);
  return new TransportKeypair(sendKey, receiveKey, state.localIndex, m.sender, true, now);
}
