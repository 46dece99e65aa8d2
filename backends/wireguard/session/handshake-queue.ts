// The handshake messages (types 1, 2, 3) the C RX workers hand to the main thread, read from the read
// end of a non-blocking pipe. Each record is written with one write() (< PIPE_BUF, so atomic):
//   u16 LE record length (this 8-byte header included), u16 LE source UDP port,
//   u32 LE source IPv4 (host-order number), then the message bytes.
// Event-driven (a net.Socket over the fd): no polling. Records may arrive several per chunk or split
// across chunks; both are reassembled here.
import { Socket } from 'node:net';
import type { Logger } from 'pino';

export const HANDSHAKE_RECORD_HEADER = 8;
/** The largest record C writes: the header and an initiation (148 bytes). */
export const HANDSHAKE_RECORD_MAX = HANDSHAKE_RECORD_HEADER + 148;

export type HandshakeHandler = (msg: Buffer, ip: number, port: number) => void;

/** Splits a byte stream into records; kept apart from the socket so it can be tested on its own. */
export class HandshakeRecordParser {
  private pending: Buffer = Buffer.alloc(0);
  /** Records whose length field was impossible: the stream cannot be trusted past them. */
  corruptRecords = 0;
  records = 0;

  constructor(private readonly handler: HandshakeHandler, private readonly onError: (err: unknown) => void = () => {}) {}

  push(chunk: Buffer): void {
    let buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (buf.length >= HANDSHAKE_RECORD_HEADER) {
      const len = buf.readUInt16LE(0);
      if (len < HANDSHAKE_RECORD_HEADER || len > HANDSHAKE_RECORD_MAX) {
        // Records are written atomically by one writer format: a bad length means a broken stream; drop
        // what we hold rather than interpret garbage as messages.
        this.corruptRecords++;
        this.onError(new RangeError(`handshake record of length ${len}`));
        buf = Buffer.alloc(0);
        break;
      }
      if (buf.length < len) break;
      const port = buf.readUInt16LE(2);
      const ip = buf.readUInt32LE(4);
      const msg = Buffer.from(buf.subarray(HANDSHAKE_RECORD_HEADER, len));
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

/** Encodes one record as C writes it (tests; a TS producer). */
export function encodeHandshakeRecord(msg: Uint8Array, ip: number, port: number): Buffer {
  const b = Buffer.alloc(HANDSHAKE_RECORD_HEADER + msg.length);
  b.writeUInt16LE(b.length, 0);
  b.writeUInt16LE(port, 2);
  b.writeUInt32LE(ip >>> 0, 4);
  b.set(msg, HANDSHAKE_RECORD_HEADER);
  return b;
}

export class HandshakeQueue {
  private readonly socket: Socket;
  private readonly parser: HandshakeRecordParser;
  private closed = false;

  /** Takes ownership of `fd` (the pipe's read end): close() closes it. */
  constructor(fd: number, handler: HandshakeHandler, private readonly log?: Logger) {
    this.parser = new HandshakeRecordParser(handler, (err) => this.log?.warn({ err }, 'wireguard: handshake record rejected'));
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
