// Shared-memory layouts of the packet engine, mirrored from native/src/layout.h: the peer table the
// control plane writes and the counters the packet loops write. Change both files together.

export const PEER_TABLE = { SEQ: 0, COUNT: 1, CAPACITY: 2, HEADER_WORDS: 8 } as const;
export const PEER_ENTRY = { SUBNET: 0, PREFIX: 1, PUBLIC_IP: 2, PORT: 3, SLOT: 4, MAC_HI: 5, MAC_LO: 6, FLAGS: 7, WORDS: 8 } as const;
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
  'drop_foreign_destination',
] as const;
export type GlobalStat = (typeof GLOBAL_STATS)[number];
export const GLOBAL_STAT_SLOTS = 32;
/** Not a counter: the peer-table sequence of the snapshot the region's worker uses (ST_SNAPSHOT_SEQ). */
export const SNAPSHOT_SEQ_SLOT = 31;

export const PEER_STATS = ['tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes'] as const;
export type PeerStat = (typeof PEER_STATS)[number];

export function statsWords(peerCapacity: number): number {
  return GLOBAL_STAT_SLOTS + peerCapacity * PEER_STATS.length;
}

export function peerTableWords(capacity: number): number {
  return PEER_TABLE.HEADER_WORDS + capacity * PEER_ENTRY.WORDS;
}
