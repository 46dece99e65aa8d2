// Counters of the handshake layer, for /metrics: messages by type and direction, keepalives sent, and
// every dropped handshake message by reason.
import { formatIp6 } from '../../../lib/ip6.js';
import type { WgIp } from './wg-table.js';

export const DROP_REASONS = [
  'malformed', // wrong size, bad type header, a transport message on the handshake path
  'bad_mac1',
  'bad_mac2', // under load without a valid mac2: a cookie reply was sent instead
  'rate_limited', // under load, the source IP is over 20/s (burst 5)
  'initiation_flood', // more than 50 initiations per second from one peer
  'unknown_peer', // an initiation from a static key that holds no lease
  'peer_without_slot', // a known peer that has no counter slot yet: no keypair can be installed
  'handshake_decrypt', // an encrypted field does not authenticate (also: a wrong PSK, seen by the initiator)
  'bad_dh', // a low-order ephemeral key
  'replayed_initiation',
  'unexpected_response', // no pending handshake has that receiver index
  'unexpected_cookie_reply', // no handshake message of ours has that receiver index
  'bad_cookie_reply', // the cookie does not decrypt against the mac1 we sent
  'table_full', // no free keypair slot
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export interface MessageCounts {
  initiation: number;
  response: number;
  cookieReply: number;
}

export interface PeerSessionStats {
  readonly key: string;
  readonly publicKey: string;
  readonly slot: number | undefined;
  /** Unix seconds of the last completed handshake (0: never). */
  readonly lastHandshakeUnix: number;
  /** Seconds since then (undefined: never). */
  readonly lastHandshakeAgeSeconds: number | undefined;
  /** Age of the keypair C sends with (undefined: none). */
  readonly currentKeypairAgeSeconds: number | undefined;
  readonly handshakePending: boolean;
  /** "a.b.c.d:port" the peer is reached at (roamed, or the lease's). */
  readonly endpoint: string;
}

export interface WireGuardSessionStats {
  readonly sent: MessageCounts & { keepalive: number };
  readonly received: MessageCounts & { other: number };
  readonly drops: Record<DropReason, number>;
  readonly handshakesCompleted: number;
  readonly handshakeGiveUps: number;
  readonly endpointUpdates: number;
  readonly underLoad: boolean;
  readonly peers: PeerSessionStats[];
}

export function zeroDrops(): Record<DropReason, number> {
  return Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
}

export function ipv4Text(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 0xff}.${(ip >>> 8) & 0xff}.${ip & 0xff}`;
}

/** An endpoint address as text: IPv4 dotted, IPv6 as Go prints it. */
export function ipText(ip: WgIp): string {
  return typeof ip === 'bigint' ? formatIp6(ip) : ipv4Text(ip);
}

/** An endpoint as text: a.b.c.d:port or [v6]:port. */
export function endpointText(ip: WgIp, port: number): string {
  return typeof ip === 'bigint' ? `[${formatIp6(ip)}]:${port}` : `${ipv4Text(ip)}:${port}`;
}
