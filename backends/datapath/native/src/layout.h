/* Shared-memory layouts read by C and written/read by TypeScript (backends/datapath/layout.ts).
 * Any change here must be mirrored there. */
#ifndef FLANNEL_LAYOUT_H
#define FLANNEL_LAYOUT_H

/* Peer table: u32 words in a SharedArrayBuffer. The control plane writes it under a seqlock
 * (seq odd while writing) and the packet loops take a private snapshot when seq changes. */
enum {
  PT_SEQ = 0,
  PT_COUNT = 1,
  PT_CAPACITY = 2,
  PT_HEADER_WORDS = 8,
  PE_SUBNET = 0,   /* peer subnet network address, host order */
  PE_PREFIX = 1,   /* its prefix length */
  PE_PUBLIC_IP = 2,/* the peer's PublicIP, host order */
  PE_PORT = 3,     /* UDP port to send to */
  PE_SLOT = 4,     /* index of its per-peer counters */
  PE_MAC_HI = 5,   /* vxlan: VtepMAC bytes 0-1 */
  PE_MAC_LO = 6,   /* vxlan: VtepMAC bytes 2-5 */
  PE_FLAGS = 7,    /* FL_PEER_* bits (peers.h) */
  PE_WORDS = 8
};

/* Counters: u64 slots in a SharedArrayBuffer. Every worker thread (the TX or RX worker of a queue, or
 * the one worker serving both) has a region of its own, so each slot has exactly one writer; readers
 * sum the regions. ST_SNAPSHOT_SEQ is not a counter: the PT_SEQ of the peer-table snapshot the
 * region's worker uses, stored (release) after it loads one, so the control plane knows when no worker
 * can still count into a removed peer's slot. */
enum {
  ST_TX_PACKETS, ST_TX_BYTES, ST_RX_PACKETS, ST_RX_BYTES,
  ST_DROP_NO_ROUTE, ST_DROP_TTL, ST_DROP_TX_MALFORMED, ST_DROP_UNKNOWN_SOURCE,
  ST_DROP_SPOOFED_SOURCE, ST_DROP_RX_MALFORMED, ST_DROP_OVERSIZE, ST_ICMP_UNREACHABLE_SENT,
  ST_TX_SEND_ERRORS, ST_RX_WRITE_ERRORS, ST_TX_BATCHES, ST_RX_BATCHES,
  ST_DROP_BAD_VXLAN, ST_DROP_UNKNOWN_MAC, ST_DROP_BROADCAST, ST_PEER_TABLE_LOADS,
  ST_DROP_BAD_CHECKSUM, ST_CHECKSUMS_COMPLETED, ST_SEGMENTED_SUPER_FRAMES, ST_COALESCED_SUPER_PACKETS,
  ST_TX_PARTIAL_CHECKSUMS, ST_RX_PARTIAL_CHECKSUMS, ST_SPLIT_USO_PACKETS, ST_COALESCED_UDP_PACKETS,
  ST_DROP_FOREIGN_DESTINATION,
  ST_SNAPSHOT_SEQ = 31,
  ST_GLOBAL_COUNT = 32,
  SP_TX_PACKETS = 0, SP_TX_BYTES = 1, SP_RX_PACKETS = 2, SP_RX_BYTES = 3, SP_WORDS = 4
};
#endif
