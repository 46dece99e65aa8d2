// mac1, mac2 and cookie replies (whitepaper §5.4.4, §5.4.7). Two roles:
// - MacGenerator, one per peer we send handshake messages to: writes mac1 (keyed with the peer's public
//   key), writes mac2 while it holds a fresh cookie from that peer, and consumes that peer's cookie replies.
// - CookieChecker, one per local identity: verifies mac1 and mac2 of messages sent to us, and produces
//   cookie replies (the caller decides when: under load).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { xaeadOpen, xaeadSeal } from './aead.js';
import { COOKIE_NONCE_LEN, COOKIE_REFRESH_TIME_MS, KEY_LEN, LABEL_COOKIE, LABEL_MAC1, MAC_LEN } from './constants.js';
import { WireGuardError } from './errors.js';
import { hash, mac } from './kdf.js';
import { decodeCookieReply, encodeCookieReply, messageType } from './messages.js';

/** Where a handshake message came from; the cookie is bound to it. */
export interface SourceAddress {
  readonly address: string;
  readonly port: number;
}

export function mac1Key(publicKey: Uint8Array): Buffer {
  return hash(LABEL_MAC1, publicKey);
}

export function cookieKey(publicKey: Uint8Array): Buffer {
  return hash(LABEL_COOKIE, publicKey);
}

/** mac1 covers everything before it; mac2 everything before it (mac1 included). */
function mac1Span(msg: Uint8Array): { covered: Uint8Array; field: Uint8Array } {
  return { covered: msg.subarray(0, msg.length - 2 * MAC_LEN), field: msg.subarray(msg.length - 2 * MAC_LEN, msg.length - MAC_LEN) };
}

function mac2Span(msg: Uint8Array): { covered: Uint8Array; field: Uint8Array } {
  return { covered: msg.subarray(0, msg.length - MAC_LEN), field: msg.subarray(msg.length - MAC_LEN) };
}

function equal16(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function handshakeMessage(msg: Uint8Array): void {
  const type = messageType(msg);
  if (type !== 1 && type !== 2) throw new WireGuardError('FLN_ERR_WG_BAD_TYPE', `type ${type} carries no macs`);
}

function sourceBytes(src: SourceAddress): Buffer {
  let ip: Buffer;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(src.address)?.[1];
  if (mapped !== undefined) ip = Buffer.from(mapped.split('.').map(Number));
  else if (isIPv4(src.address)) ip = Buffer.from(src.address.split('.').map(Number));
  else if (isIPv6(src.address)) ip = ipv6Bytes(src.address);
  else throw new WireGuardError('FLN_ERR_WG_BAD_LENGTH', `not an IP address: ${src.address}`);
  const port = Buffer.alloc(2);
  port.writeUInt16BE(src.port);
  return Buffer.concat([ip, port]);
}

function ipv6Bytes(text: string): Buffer {
  const [head = '', tail] = text.split('::');
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  all.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

export class MacGenerator {
  private readonly mac1Key: Buffer;
  private readonly cookieKey: Buffer;
  private lastMac1: Buffer | undefined;
  private lastSender = -1;
  private cookie: Buffer | undefined;
  private cookieSetAt = 0;

  constructor(peerPublicKey: Uint8Array, private readonly now: () => number = Date.now) {
    if (peerPublicKey.length !== KEY_LEN) throw new WireGuardError('FLN_ERR_WG_BAD_KEY', 'peer public key must be 32 bytes');
    this.mac1Key = mac1Key(peerPublicKey);
    this.cookieKey = cookieKey(peerPublicKey);
  }

  /** Fills mac1 (always) and mac2 (a fresh cookie is held, else zeros) of an encoded handshake message in place. */
  addMacs(msg: Buffer): Buffer {
    handshakeMessage(msg);
    const m1 = mac1Span(msg);
    const mac1 = mac(this.mac1Key, m1.covered);
    m1.field.set(mac1);
    this.lastMac1 = mac1;
    this.lastSender = Buffer.from(msg.buffer, msg.byteOffset, msg.length).readUInt32LE(4);
    const m2 = mac2Span(msg);
    if (this.hasCookie()) m2.field.set(mac(this.cookie as Buffer, m2.covered));
    else m2.field.fill(0);
    return msg;
  }

  hasCookie(): boolean {
    return this.cookie !== undefined && this.now() - this.cookieSetAt < COOKIE_REFRESH_TIME_MS;
  }

  /** Takes the cookie out of a reply to the last message we sent this peer. */
  consumeCookieReply(msg: Uint8Array): void {
    const reply = decodeCookieReply(msg);
    if (!this.lastMac1) throw new WireGuardError('FLN_ERR_WG_BAD_COOKIE_REPLY', 'no handshake message was sent to this peer');
    if (reply.receiver !== this.lastSender) {
      throw new WireGuardError('FLN_ERR_WG_UNKNOWN_INDEX', `cookie reply for index ${reply.receiver}, our last message was ${this.lastSender}`);
    }
    const cookie = xaeadOpen(this.cookieKey, reply.nonce, reply.encryptedCookie, this.lastMac1);
    if (!cookie) throw new WireGuardError('FLN_ERR_WG_BAD_COOKIE_REPLY');
    this.cookie = cookie;
    this.cookieSetAt = this.now();
  }
}

export class CookieChecker {
  private readonly mac1Key: Buffer;
  private readonly cookieKey: Buffer;
  private secret: Buffer = Buffer.alloc(0);
  private secretSetAt = -Infinity;

  constructor(localPublicKey: Uint8Array, private readonly now: () => number = Date.now) {
    if (localPublicKey.length !== KEY_LEN) throw new WireGuardError('FLN_ERR_WG_BAD_KEY', 'local public key must be 32 bytes');
    this.mac1Key = mac1Key(localPublicKey);
    this.cookieKey = cookieKey(localPublicKey);
  }

  /** Throws FLN_ERR_WG_BAD_MAC1 unless mac1 of a handshake message sent to us verifies. */
  verifyMac1(msg: Uint8Array): void {
    handshakeMessage(msg);
    const m1 = mac1Span(msg);
    if (!equal16(mac(this.mac1Key, m1.covered), m1.field)) throw new WireGuardError('FLN_ERR_WG_BAD_MAC1');
  }

  /** Throws FLN_ERR_WG_BAD_MAC2 unless mac2 carries the cookie we would give this source now. */
  verifyMac2(msg: Uint8Array, src: SourceAddress): void {
    handshakeMessage(msg);
    const m2 = mac2Span(msg);
    if (!equal16(mac(this.currentCookie(src), m2.covered), m2.field)) throw new WireGuardError('FLN_ERR_WG_BAD_MAC2');
  }

  /** A cookie reply to a handshake message whose mac1 verified (the caller checks mac1 first). */
  createCookieReply(msg: Uint8Array, src: SourceAddress): Buffer {
    this.verifyMac1(msg);
    const sender = Buffer.from(msg.buffer, msg.byteOffset, msg.length).readUInt32LE(4);
    const nonce = randomBytes(COOKIE_NONCE_LEN);
    const encryptedCookie = xaeadSeal(this.cookieKey, nonce, this.currentCookie(src), mac1Span(msg).field);
    return encodeCookieReply({ receiver: sender, nonce, encryptedCookie });
  }

  private currentCookie(src: SourceAddress): Buffer {
    if (this.now() - this.secretSetAt >= COOKIE_REFRESH_TIME_MS) {
      this.secret = randomBytes(KEY_LEN);
      this.secretSetAt = this.now();
    }
    return mac(this.secret, sourceBytes(src));
  }
}
