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
  PT_FAMILY = 3,   /* entry format: 0 or 4 = IPv4 entries (PE_*), 6 = IPv6 entries (PE6_*), 46 = both subnets
                    * (PE46_*: a dual wireguard engine); set once at creation */
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

/* IPv6 entries (a table whose PT_FAMILY is 6, read by an IPv6 engine: the flannel-v6.<VNI> VTEP). An
 * address is four words, word k = bytes 4k..4k+3 of the address as a big-endian number (host order u32),
 * so the IPv4 entries above keep their size and their loops never see these. */
enum {
  PE6_SUBNET = 0,    /* 4 words: the peer's IPv6 subnet */
  PE6_PREFIX = 4,    /* its prefix length (0-128) */
  PE6_PUBLIC_IP = 5, /* 4 words: the peer's PublicIPv6 (VXLAN underlay) */
  PE6_PORT = 9,
  PE6_SLOT = 10,
  PE6_MAC_HI = 11,   /* its IPv6 VtepMAC bytes 0-1 */
  PE6_MAC_LO = 12,   /* bytes 2-5 */
  PE6_FLAGS = 13,
  PE6_WORDS = 16
};

/* Entries of both families (PT_FAMILY 46: flannel-wg of the single-device wireguard modes, one peer with
 * an IPv4 and an IPv6 subnet): the PE6 layout, its PUBLIC_IP the PublicIPv6 (outer family 6), with the
 * IPv4 subnet, its prefix and the PublicIP (outer family 4) in words the wireguard mode has no use for.
 * A prefix above 32 (IPv4) or 128 (IPv6) means the peer has no subnet of that family. */
enum {
  PE46_SUBNET4 = 11,    /* the peer's IPv4 subnet, host order */
  PE46_PREFIX4 = 12,    /* its prefix length (0-32; 255: none) */
  PE46_PUBLIC_IP4 = 14, /* the peer's PublicIP, host order */
  PE46_NO_SUBNET = 255
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
  /* wireguard mode (wg.c) */
  ST_DROP_NO_SESSION = 29,         /* TX: the peer has no usable keypair (a handshake is requested) */
  ST_WG_HANDSHAKES_QUEUED = 30,    /* RX: handshake messages handed to the control plane */
  ST_SNAPSHOT_SEQ = 31,
  ST_DROP_HANDSHAKE_QUEUE_FULL = 32, /* RX: the control plane's queue was full */
  ST_DROP_UNKNOWN_INDEX = 33,      /* RX: a receiver index of no live keypair */
  ST_DROP_BAD_DECRYPT = 34,        /* RX: authentication of a transport message failed */
  ST_DROP_REPLAY = 35,             /* RX: a counter seen before or left behind the window */
  ST_DROP_EXPIRED_KEYPAIR = 36,    /* RX: a keypair past REJECT_AFTER_TIME or REJECT_AFTER_MESSAGES */
  ST_DROP_BAD_WG_MESSAGE = 37,     /* RX: unknown type, reserved bytes not zero, or a wrong size */
  ST_DROP_ALLOWED_IPS = 38,        /* RX: decrypted, but the inner source is not in the sender's allowed IPs */
  ST_WG_KEEPALIVES_RECEIVED = 39,
  ST_WG_ENDPOINT_UPDATES = 40,     /* RX: an authenticated packet from a new source address (roaming) */
  ST_WG_KEYPAIRS_CONFIRMED = 41,   /* RX: first packet on a responder's new keypair made it current */
  ST_ASSIST_JOINS = 42,            /* adaptive lead: handed RX to the assist under load */
  ST_ASSIST_LEAVES = 43,           /* adaptive assist: handed RX back when the load dropped */
  ST_BUSY_POLLS_ANSWERED = 44,     /* adaptive lead: a busy-poll for a predicted answer that ended with traffic */
  ST_BUSY_POLLS_EXPIRED = 45,      /* adaptive lead: one that ended without it, and slept */
  ST_GLOBAL_COUNT = 48,
  SP_TX_PACKETS = 0, SP_TX_BYTES = 1, SP_RX_PACKETS = 2, SP_RX_BYTES = 3,
  SP_RX_KEEPALIVES = 4, /* wireguard: authenticated keepalives (the timers need every authenticated packet) */
  SP_WORDS = 5
};

/* wireguard mode: one SharedArrayBuffer, byte offsets, little-endian, written by the control plane
 * (backends/wireguard/session) and read (and in the marked fields written) by the packet loops.
 *  header (WG_HEADER_BYTES): u32 keypair capacity (power of two), u32 peer capacity (= the peer
 *    table's counter slots), u64 REJECT_AFTER_TIME and u64 REKEY_AFTER_TIME in µs (constants, only a
 *    test build shortens them).
 *  peers: WG_PEER_BYTES per peer counter slot (PE_SLOT).
 *  keypairs: WG_KP_BYTES each; a keypair's local index has its slot in the low bits (index & (cap-1)).
 * Keypair publication: the control plane writes every field with state 0, then stores state 1
 * (release); the loops load state (acquire) before the fields. A freed slot is not reused for 10 s. */
enum {
  WG_HDR_KP_CAPACITY = 0, WG_HDR_PEER_CAPACITY = 4, WG_HDR_REJECT_AFTER_US = 8, WG_HDR_REKEY_AFTER_US = 16,
  WG_HEADER_BYTES = 64,
  WGP_CURRENT = 0,   /* u32: keypair slot + 1 that TX uses (0: none); RX stores it when it confirms a NEXT keypair */
  WGP_FLAGS = 4,     /* u32: WGP_F_* (TX and RX set bits with atomic OR; the control plane clears them) */
  WGP_ENDPOINT = 8,  /* u64: (ip << 16 | port) of the last authenticated source, 0 = the lease's; RX writes (family 4) */
  /* family 6 (flannel-wg-v6): the last authenticated source, an IPv6 address and a port, under a seqlock
   * (several RX workers and the control plane write it): a writer takes SEQ from even to odd with a
   * compare-and-swap, stores PORT and ADDR, then stores SEQ + 1 (release); a reader retries while SEQ is
   * odd or changed across its reads. PORT 0 = the lease's endpoint. */
  WGP_EP6_SEQ = 16,  /* u32 */
  WGP_EP6_PORT = 20, /* u32: the port, 0 = none */
  WGP_EP6_ADDR = 24, /* 16 bytes, network order, read and written as four u32 words in memory order */
  WG_PEER_BYTES = 64,
  WGK_STATE = 0,     /* u32: 0 free, 1 valid */
  WGK_LOCAL_INDEX = 4, WGK_REMOTE_INDEX = 8,
  WGK_PEER_SLOT = 12,
  WGK_SEND_COUNTER = 16, /* u64: the next nonce; TX and the control plane (keepalives) fetch_add */
  WGK_CREATED_US = 24,   /* u64: CLOCK_MONOTONIC µs (process.hrtime) */
  WGK_SEND_KEY = 32, WGK_RECV_KEY = 64,
  WGK_FLAGS = 96,        /* u32: WGK_F_* */
  WGK_REPLAY_LOCK = 100, /* u32 spinlock of the replay window (RX workers) */
  WGK_PEER_SUBNET = 104, /* u32: the peer's subnet (host order): RX finds the peer, its allowed IPs. family 6:
                          * the XOR of the four words of the peer's IPv6 subnet (host order), a check that
                          * the peer RX finds by WGK_PEER_SLOT is still the keypair's */
  WGK_REPLAY_LAST = 112, /* u64: the greatest counter accepted */
  WGK_REPLAY_BITS = 128, /* u64[128]: RFC 6479 ring, window 8128 */
  WG_KP_BYTES = 1152
};
#define WGP_F_WANT_HANDSHAKE 1u /* TX found no usable keypair, or (initiator) an old one: the control plane should handshake */
#define WGK_F_INITIATOR 1u      /* we initiated the handshake of this keypair */
#define WGK_F_NEXT 2u           /* a responder's keypair not yet confirmed by a packet from the peer: not used to send */
#endif
