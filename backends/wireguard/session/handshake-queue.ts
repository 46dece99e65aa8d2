// The handshake messages (types 1, 2, 3) the C RX workers hand to the main thread, read from the read
// end of a non-blocking pipe. Each record is written with one write() (< PIPE_BUF, so atomic):
//   u16 LE record length (this 8-byte header included), u16 LE source UDP port,
//   u32 LE source IPv4 (host-order number), then the message bytes.
// A family-6 engine (flannel-wg-v6) writes records with a 20-byte header instead (CTRL_HEADER6 in
// wireguard.c): u16 LE record length, u16 LE source UDP port, the 16-byte source IPv6 address in network
// order, then the message bytes. One pipe carries one engine's records, so one format.
// Event-driven (a net.Socket over the fd): no polling. Records may arrive several per chunk or split
// across chunks; both are reassembled here.
import { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { WgIp } from './wg-table.js';

export const HANDSHAKE_RECORD_HEADER = 8;
export const HANDSHAKE_RECORD_HEADER6 = 20;
/** The largest record C writes: the header and an initiation (148 bytes). */
export const HANDSHAKE_RECORD_MAX = HANDSHAKE_RECORD_HEADER + 148;

/** `ip`: a host-order IPv4 number from a family-4 pipe, an IPv6 bigint from a family-6 one. */
export type HandshakeHandler = (msg: Buffer, ip: WgIp, port: number) => void;

/** Splits a byte stream into records; kept apart from the socket so it can be tested on its own. */
export class HandshakeRecordParser {
  private pending: Buffer = Buffer.alloc(0);
  /** Records whose length field was impossible: the stream cannot be trusted past them. */
  corruptRecords = 0;
  records = 0;

  private readonly header: number;

  constructor(private readonly handler: HandshakeHandler, private readonly onError: (err: unknown) => void = () => {}, readonly family: 4 | 6 = 4) {
    this.header = family === 6 ? HANDSHAKE_RECORD_HEADER6 : HANDSHAKE_RECORD_HEADER;
  }

  push(chunk: Buffer): void {
    let buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (buf.length >= this.header) {
      const len = buf.readUInt16LE(0);
      if (len < this.header || len > this.header + 148) {
        // Records are written atomically by one writer format: a bad length means a broken stream; drop
        // what we hold rather than interpret garbage as messages.
        this.corruptRecords++;
        this.onError(new RangeError(`handshake record of length ${len}`));
        buf = Buffer.alloc(0);
        break;
      }
      if (buf.length < len) break;
      const port = buf.readUInt16LE(2);
      const ip: WgIp = this.family === 6 ? BigInt(`0x${buf.subarray(4, 20).toString('hex')}`) : buf.readUInt32LE(4);
      const msg = Buffer.from(buf.subarray(this.header, len));
      buf = buf.subarray(len);
      this.records++;
      try {
        this.handler(msg, ip, port);
      } catch (err) {
        this.onError(err);
      }
    }
    this.pending = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
  }
}

/** Encodes one record as C writes it (tests; a TS producer): the family-6 format when `ip` is a bigint. */
export function encodeHandshakeRecord(msg: Uint8Array, ip: WgIp, port: number): Buffer {
  const header = typeof ip === 'bigint' ? HANDSHAKE_RECORD_HEADER6 : HANDSHAKE_RECORD_HEADER;
  const b = Buffer.alloc(header + msg.length);
  b.writeUInt16LE(b.length, 0);
  b.writeUInt16LE(port, 2);
  if (typeof ip === 'bigint') Buffer.from(ip.toString(16).padStart(32, '0'), 'hex').copy(b, 4);
  else b.writeUInt32LE(ip >>> 0, 4);
  b.set(msg, header);
  return b;
}

export class HandshakeQueue {
  private readonly socket: Socket;
  private readonly parser: HandshakeRecordParser;
  private closed = false;

  /** Takes ownership of `fd` (the pipe's read end): close() closes it. `family` 6: a family-6 engine's records. */
  constructor(fd: number, handler: HandshakeHandler, private readonly log?: Logger, family: 4 | 6 = 4) {
    this.parser = new HandshakeRecordParser(handler, (err) => this.log?.warn({ err }, 'wireguard: handshake record rejected'), family);
    this.socket = new Socket({ fd, readable: true, writable: false });
    this.socket.on('data', (chunk: Buffer) => this.parser.push(chunk));
    this.socket.on('error', (err) => {
      if (!this.closed) this.log?.error({ err }, 'wireguard: the handshake pipe failed');
    });
    this.socket.on('end', () => {
      if (!this.closed) this.log?.warn('wireguard: the handshake pipe was closed by its writer');
    });
  }

  get records(): number { return this.parser.records; }
  get corruptRecords(): number { return this.parser.corruptRecords; }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
  }
}
