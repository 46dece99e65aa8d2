// Shared-memory layouts of the packet engine, mirrored from native/src/layout.h: the peer table the
// control plane writes and the counters the packet loops write. Change both files together.

/** FAMILY: the entry format, set once at creation: 0 (or 4) = IPv4 entries (PEER_ENTRY), 6 = IPv6 entries (PEER_ENTRY6). */
export const PEER_TABLE = { SEQ: 0, COUNT: 1, CAPACITY: 2, FAMILY: 3, HEADER_WORDS: 8 } as const;
export const PEER_ENTRY = { SUBNET: 0, PREFIX: 1, PUBLIC_IP: 2, PORT: 3, SLOT: 4, MAC_HI: 5, MAC_LO: 6, FLAGS: 7, WORDS: 8 } as const;
/** An IPv6 table's entry (the IPv6 VTEP's engine): SUBNET and PUBLIC_IP are four words each, word k holding
 * bytes 4k..4k+3 of the address as a big-endian number. */
export const PEER_ENTRY6 = { SUBNET: 0, PREFIX: 4, PUBLIC_IP: 5, PORT: 9, SLOT: 10, MAC_HI: 11, MAC_LO: 12, FLAGS: 13, WORDS: 16 } as const;
/** Entries of both families (FAMILY 46: the dual wireguard engine of flannel-wg in the single-device modes):
 * PEER_ENTRY6 (its PUBLIC_IP the PublicIPv6) with the IPv4 subnet, its prefix and the PublicIP in words
 * wireguard has no MAC for. A prefix of NO_SUBNET: the peer has no subnet of that family. */
export const PEER_ENTRY46 = { SUBNET4: 11, PREFIX4: 12, PUBLIC_IP4: 14, NO_SUBNET: 255 } as const;
/** An engine's (and its peer table's) address family: of the inner packets and of the underlay. */
export type EngineFamily = 4 | 6;
/** A peer table's entry format: an engine's family, or 46 (both inner families, PEER_ENTRY46). */
export type TableFamily = EngineFamily | 46;
/** Bits of PEER_ENTRY.FLAGS (FL_PEER_* in peers.h). */
export const PEER_FLAGS = { PARTIAL_CHECKSUMS: 1 } as const;

/** Global counters, in slot order. Drops are named by reason. */
export const GLOBAL_STATS = [
  'tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes',
  'drop_no_route', 'drop_ttl_expired', 'drop_tx_malformed', 'drop_unknown_source',
  'drop_spoofed_source', 'drop_rx_malformed', 'drop_oversize', 'icmp_unreachable_sent',
  'tx_send_errors', 'rx_write_errors', 'tx_batches', 'rx_batches',
  'drop_bad_vxlan', 'drop_unknown_mac', 'drop_broadcast', 'peer_table_loads',
  'drop_bad_checksum', 'checksums_completed', 'segmented_super_frames', 'coalesced_super_packets',
  'tx_partial_checksums', 'rx_partial_checksums', 'split_uso_packets', 'coalesced_udp_packets',
  'drop_foreign_destination', 'drop_no_session', 'wg_handshakes_queued', '',
  'drop_handshake_queue_full', 'drop_unknown_index', 'drop_bad_decrypt', 'drop_replay',
  'drop_expired_keypair', 'drop_bad_wg_message', 'drop_allowed_ips', 'wg_keepalives_received',
  'wg_endpoint_updates', 'wg_keypairs_confirmed', 'assist_joins', 'assist_leaves',
  'busy_polls_answered', 'busy_polls_expired',
] as const;
export type GlobalStat = Exclude<(typeof GLOBAL_STATS)[number], ''>;
export const GLOBAL_STAT_SLOTS = 48;
/** Not a counter: the peer-table sequence of the snapshot the region's worker uses (ST_SNAPSHOT_SEQ). */
export const SNAPSHOT_SEQ_SLOT = 31;

export const PEER_STATS = ['tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes', 'rx_keepalives'] as const;
export type PeerStat = (typeof PEER_STATS)[number];

export function statsWords(peerCapacity: number): number {
  return GLOBAL_STAT_SLOTS + peerCapacity * PEER_STATS.length;
}

export function peerTableWords(capacity: number, family: TableFamily = 4): number {
  return PEER_TABLE.HEADER_WORDS + capacity * (family === 4 ? PEER_ENTRY.WORDS : PEER_ENTRY6.WORDS);
}

/** wireguard mode's shared state (layout.h, "wireguard mode"): byte offsets into one SharedArrayBuffer. */
export const WG_HEADER = { KP_CAPACITY: 0, PEER_CAPACITY: 4, REJECT_AFTER_US: 8, REKEY_AFTER_US: 16, BYTES: 64 } as const;
/** ENDPOINT: family 4's roamed endpoint (ip << 16 | port); EP6_*: family 6's, under the seqlock EP6_SEQ (layout.h). */
export const WG_PEER = { CURRENT: 0, FLAGS: 4, ENDPOINT: 8, EP6_SEQ: 16, EP6_PORT: 20, EP6_ADDR: 24, BYTES: 64 } as const;
export const WG_PEER_FLAGS = { WANT_HANDSHAKE: 1 } as const;
export const WG_KEYPAIR = {
  STATE: 0, LOCAL_INDEX: 4, REMOTE_INDEX: 8, PEER_SLOT: 12, SEND_COUNTER: 16, CREATED_US: 24,
  SEND_KEY: 32, RECV_KEY: 64, FLAGS: 96, REPLAY_LOCK: 100, PEER_SUBNET: 104, REPLAY_LAST: 112, REPLAY_BITS: 128, BYTES: 1152,
} as const;
export const WG_KEYPAIR_FLAGS = { INITIATOR: 1, NEXT: 2 } as const;

/** Bytes of the wireguard shared state for `keypairs` keypair slots (a power of two) and `peers` peer slots. */
export function wgTableBytes(keypairs: number, peers: number): number {
  return WG_HEADER.BYTES + Math.ceil((peers * WG_PEER.BYTES) / 64) * 64 + keypairs * WG_KEYPAIR.BYTES;
}

/** Byte offset of the first keypair slot. */
export function wgKeypairsOffset(peers: number): number {
  return WG_HEADER.BYTES + Math.ceil((peers * WG_PEER.BYTES) / 64) * 64;
}
