// Transport data (whitepaper §5.4.6): one keypair's send and receive keys, the send counter and the
// receive replay window. Plaintext is padded with zeros to a multiple of 16 (never beyond the MTU); an
// empty plaintext is a keepalive. This is the TypeScript reference; the packet engine does it per packet.
import { aeadOpen, aeadSeal } from './aead.js';
import { PADDING_MULTIPLE, REJECT_AFTER_MESSAGES } from './constants.js';
import { WireGuardError } from './errors.js';
import { decodeTransport, encodeTransport } from './messages.js';
import { ReplayWindow } from './replay-window.js';

const EMPTY = new Uint8Array(0);

export class TransportKeypair {
  private nextSendCounter = 0n;
  readonly replay = new ReplayWindow();

  constructor(
    readonly sendKey: Buffer,
    readonly receiveKey: Buffer,
    /** Our index: the receiver field of messages sent to us. */
    readonly localIndex: number,
    /** The peer's index: the receiver field of messages we send. */
    readonly remoteIndex: number,
    readonly isInitiator: boolean,
    readonly createdAt: number = Date.now(),
  ) {}

  get sendCounter(): bigint {
    return this.nextSendCounter;
  }

  /** Zeroes the keys (whitepaper §6.3: key material is erased when it expires). */
  destroy(): void {
    this.sendKey.fill(0);
    this.receiveKey.fill(0);
  }

  /** Encrypts one inner packet (empty: a keepalive) into a transport message. */
  seal(plaintext: Uint8Array, mtu = Infinity): Buffer {
    const counter = this.nextSendCounter;
    if (counter >= REJECT_AFTER_MESSAGES) throw new WireGuardError('FLN_ERR_WG_COUNTER_EXHAUSTED');
    this.nextSendCounter = counter + 1n;
    const padded = Buffer.alloc(paddedLength(plaintext.length, mtu));
    padded.set(plaintext);
    return encodeTransport(this.remoteIndex, counter, aeadSeal(this.sendKey, counter, padded, EMPTY));
  }

  /** Decrypts a transport message for this keypair; returns the padded plaintext (empty: a keepalive). */
  open(msg: Uint8Array): { counter: bigint; plaintext: Buffer } {
    const m = decodeTransport(msg);
    if (m.receiver !== this.localIndex) {
      throw new WireGuardError('FLN_ERR_WG_UNKNOWN_INDEX', `receiver ${m.receiver}, this keypair is ${this.localIndex}`);
    }
    rejectVerdict(this.replay.check(m.counter), m.counter);
    const plaintext = aeadOpen(this.receiveKey, m.counter, m.encrypted, EMPTY);
    if (!plaintext) throw new WireGuardError('FLN_ERR_WG_TRANSPORT_DECRYPT', undefined, { counter: m.counter.toString() });
    rejectVerdict(this.replay.accept(m.counter), m.counter);
    return { counter: m.counter, plaintext };
  }
}

export function paddedLength(length: number, mtu = Infinity): number {
  const rounded = Math.ceil(length / PADDING_MULTIPLE) * PADDING_MULTIPLE;
  return length > mtu ? length : Math.min(rounded, mtu);
}

function rejectVerdict(verdict: string, counter: bigint): void {
  const details = { counter: counter.toString() };
  if (verdict === 'replayed') throw new WireGuardError('FLN_ERR_WG_REPLAYED_COUNTER', undefined, details);
  if (verdict === 'too-old') throw new WireGuardError('FLN_ERR_WG_COUNTER_TOO_OLD', undefined, details);
  if (verdict === 'exhausted') throw new WireGuardError('FLN_ERR_WG_COUNTER_EXHAUSTED', undefined, details);
}
