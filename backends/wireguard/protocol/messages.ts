// The four WireGuard messages on the wire (whitepaper §5.4): a type byte, three zero bytes, then the
// fields, integers little-endian. Decoding checks the length and the type strictly and copies nothing.
import {
  AEAD_TAG_LEN, COOKIE_LEN, COOKIE_NONCE_LEN, COOKIE_REPLY_SIZE, INITIATION_SIZE, KEY_LEN, MAC_LEN, MESSAGE_COOKIE_REPLY,
  MESSAGE_INITIATION, MESSAGE_RESPONSE, MESSAGE_TRANSPORT, RESPONSE_SIZE, TIMESTAMP_LEN, TRANSPORT_HEADER_SIZE,
  TRANSPORT_MIN_SIZE,
} from './constants.js';
import { WireGuardError } from './errors.js';

export type MessageType = typeof MESSAGE_INITIATION | typeof MESSAGE_RESPONSE | typeof MESSAGE_COOKIE_REPLY | typeof MESSAGE_TRANSPORT;

export interface Initiation {
  readonly sender: number;
  readonly ephemeral: Buffer; // 32
  readonly encryptedStatic: Buffer; // 32 + 16
  readonly encryptedTimestamp: Buffer; // 12 + 16
  readonly mac1: Buffer;
  readonly mac2: Buffer;
}

export interface Response {
  readonly sender: number;
  readonly receiver: number;
  readonly ephemeral: Buffer;
  readonly encryptedNothing: Buffer; // 0 + 16
  readonly mac1: Buffer;
  readonly mac2: Buffer;
}

export interface CookieReply {
  readonly receiver: number;
  readonly nonce: Buffer; // 24
  readonly encryptedCookie: Buffer; // 16 + 16
}

export interface TransportHeader {
  readonly receiver: number;
  readonly counter: bigint;
  readonly encrypted: Buffer; // padded plaintext + 16
}

/** Field offsets shared by the handshake code (mac1/mac2 are the last 32 bytes of both handshake messages). */
export const INITIATION_OFFSETS = { ephemeral: 8, static: 40, timestamp: 88, mac1: 116, mac2: 132 } as const;
export const RESPONSE_OFFSETS = { ephemeral: 12, empty: 44, mac1: 60, mac2: 76 } as const;

const EXPECTED_SIZE: Record<number, number | undefined> = {
  [MESSAGE_INITIATION]: INITIATION_SIZE,
  [MESSAGE_RESPONSE]: RESPONSE_SIZE,
  [MESSAGE_COOKIE_REPLY]: COOKIE_REPLY_SIZE,
};

/** The type of a datagram, after checking the reserved bytes and the length that type requires. */
export function messageType(msg: Uint8Array): MessageType {
  if (msg.length < 4) throw new WireGuardError('FLN_ERR_WG_BAD_LENGTH', `message of ${msg.length} bytes`);
  const type = msg[0] as number;
  if (msg[1] !== 0 || msg[2] !== 0 || msg[3] !== 0 || type < MESSAGE_INITIATION || type > MESSAGE_TRANSPORT) {
    throw new WireGuardError('FLN_ERR_WG_BAD_TYPE', `bad type header ${Buffer.from(msg.subarray(0, 4)).toString('hex')}`);
  }
  const want = EXPECTED_SIZE[type];
  if (want !== undefined && msg.length !== want) {
    throw new WireGuardError('FLN_ERR_WG_BAD_LENGTH', `type ${type} message of ${msg.length} bytes, want ${want}`);
  }
  if (type === MESSAGE_TRANSPORT && (msg.length < TRANSPORT_MIN_SIZE)) {
    throw new WireGuardError('FLN_ERR_WG_BAD_LENGTH', `transport message of ${msg.length} bytes, want ≥ ${TRANSPORT_MIN_SIZE}`);
  }
  return type as MessageType;
}

function expectType(msg: Uint8Array, type: MessageType): Buffer {
  const got = messageType(msg);
  if (got !== type) throw new WireGuardError('FLN_ERR_WG_BAD_TYPE', `type ${got}, want ${type}`);
  return Buffer.from(msg.buffer, msg.byteOffset, msg.length);
}

function header(type: MessageType, size: number): Buffer {
  const b = Buffer.alloc(size);
  b[0] = type;
  return b;
}

function put(dst: Buffer, at: number, field: Uint8Array, len: number, name: string): void {
  if (field.length !== len) throw new WireGuardError('FLN_ERR_WG_BAD_LENGTH', `${name} is ${field.length} bytes, want ${len}`);
  dst.set(field, at);
}

export function encodeInitiation(m: Initiation): Buffer {
  const b = header(MESSAGE_INITIATION, INITIATION_SIZE);
  const o = INITIATION_OFFSETS;
  b.writeUInt32LE(m.sender, 4);
  put(b, o.ephemeral, m.ephemeral, KEY_LEN, 'ephemeral');
  put(b, o.static, m.encryptedStatic, KEY_LEN + AEAD_TAG_LEN, 'encrypted static');
  put(b, o.timestamp, m.encryptedTimestamp, TIMESTAMP_LEN + AEAD_TAG_LEN, 'encrypted timestamp');
  put(b, o.mac1, m.mac1, MAC_LEN, 'mac1');
  put(b, o.mac2, m.mac2, MAC_LEN, 'mac2');
  return b;
}

export function decodeInitiation(msg: Uint8Array): Initiation {
  const b = expectType(msg, MESSAGE_INITIATION);
  const o = INITIATION_OFFSETS;
  return {
    sender: b.readUInt32LE(4),
    ephemeral: b.subarray(o.ephemeral, o.static),
    encryptedStatic: b.subarray(o.static, o.timestamp),
    encryptedTimestamp: b.subarray(o.timestamp, o.mac1),
    mac1: b.subarray(o.mac1, o.mac2),
    mac2: b.subarray(o.mac2, INITIATION_SIZE),
  };
}

export function encodeResponse(m: Response): Buffer {
  const b = header(MESSAGE_RESPONSE, RESPONSE_SIZE);
  const o = RESPONSE_OFFSETS;
  b.writeUInt32LE(m.sender, 4);
  b.writeUInt32LE(m.receiver, 8);
  put(b, o.ephemeral, m.ephemeral, KEY_LEN, 'ephemeral');
  put(b, o.empty, m.encryptedNothing, AEAD_TAG_LEN, 'encrypted nothing');
  put(b, o.mac1, m.mac1, MAC_LEN, 'mac1');
  put(b, o.mac2, m.mac2, MAC_LEN, 'mac2');
  return b;
}

export function decodeResponse(msg: Uint8Array): Response {
  const b = expectType(msg, MESSAGE_RESPONSE);
  const o = RESPONSE_OFFSETS;
  return {
    sender: b.readUInt32LE(4),
    receiver: b.readUInt32LE(8),
    ephemeral: b.subarray(o.ephemeral, o.empty),
    encryptedNothing: b.subarray(o.empty, o.mac1),
    mac1: b.subarray(o.mac1, o.mac2),
    mac2: b.subarray(o.mac2, RESPONSE_SIZE),
  };
}

export function encodeCookieReply(m: CookieReply): Buffer {
  const b = header(MESSAGE_COOKIE_REPLY, COOKIE_REPLY_SIZE);
  b.writeUInt32LE(m.receiver, 4);
  put(b, 8, m.nonce, COOKIE_NONCE_LEN, 'nonce');
  put(b, 32, m.encryptedCookie, COOKIE_LEN + AEAD_TAG_LEN, 'encrypted cookie');
  return b;
}

export function decodeCookieReply(msg: Uint8Array): CookieReply {
  const b = expectType(msg, MESSAGE_COOKIE_REPLY);
  return { receiver: b.readUInt32LE(4), nonce: b.subarray(8, 32), encryptedCookie: b.subarray(32, 64) };
}

export function encodeTransport(receiver: number, counter: bigint, encrypted: Uint8Array): Buffer {
  if (encrypted.length < AEAD_TAG_LEN) throw new WireGuardError('FLN_ERR_WG_BAD_LENGTH', 'transport payload shorter than a tag');
  const b = header(MESSAGE_TRANSPORT, TRANSPORT_HEADER_SIZE + encrypted.length);
  b.writeUInt32LE(receiver, 4);
  b.writeBigUInt64LE(counter, 8);
  b.set(encrypted, TRANSPORT_HEADER_SIZE);
  return b;
}

export function decodeTransport(msg: Uint8Array): TransportHeader {
  const b = expectType(msg, MESSAGE_TRANSPORT);
  return { receiver: b.readUInt32LE(4), counter: b.readBigUInt64LE(8), encrypted: b.subarray(TRANSPORT_HEADER_SIZE) };
}
