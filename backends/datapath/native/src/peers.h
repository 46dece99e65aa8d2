/* A private, immutable snapshot of the peer table with O(1) lookups by inner address and by PublicIP. */
#ifndef FLANNEL_PEERS_H
#define FLANNEL_PEERS_H
#include <stdint.h>

/* PE_FLAGS bits */
#define FL_PEER_PARTIAL_CSUM 1u /* the peer accepts partial inner TCP checksums (a flannel-ts node) */
#define FL_PEER_HAS4 1u /* fl_peer.has: an IPv4 subnet (subnet, mask) */
#define FL_PEER_HAS6 2u /* an IPv6 subnet (subnet6, prefix6) */

typedef struct fl_peer_s {
  uint32_t subnet, mask, public_ip, port, slot, flags;
  uint8_t mac[6];
  /* IPv6 tables only (PT_FAMILY 6 or 46): subnet (host bits zero), its prefix length, the PublicIPv6; network order */
  uint8_t prefix6;
  /* PT_FAMILY 46: which subnets the peer has (FL_PEER_HAS4 / FL_PEER_HAS6) */
  uint8_t has;
  uint8_t subnet6[16], public6[16];
} fl_peer;

typedef struct {
  fl_peer *peers;
  uint32_t count;
  uint32_t *by_subnet;   /* open addressing: index+1, 0 = empty */
  uint32_t *by_public;
  uint32_t *by_mac;
  uint32_t *by_slot;
  uint32_t buckets;      /* power of two */
  uint32_t prefix_lens[129];
  uint32_t n_prefix_lens;
  uint32_t seq;          /* table seq this snapshot was taken at */
  uint32_t family;       /* 4, 6 or 46: the entry format of the table (PT_FAMILY) */
  /* family 46: the IPv4 subnets' index and prefix lengths (by_subnet and prefix_lens hold the IPv6 ones) */
  uint32_t *by_subnet4;
  uint32_t prefix_lens4[33];
  uint32_t n_prefix_lens4;
} fl_peers;

/* Refreshes `p` from the shared table if its seq changed. Returns 1 if reloaded, 0 if unchanged, -errno. */
int fl_peers_sync(fl_peers *p, const uint32_t *shared);
const fl_peer *fl_peers_by_dst(const fl_peers *p, uint32_t ip);
const fl_peer *fl_peers_by_public(const fl_peers *p, uint32_t ip);
const fl_peer *fl_peers_by_mac(const fl_peers *p, const uint8_t *mac);
/* The peer with counter slot `slot` (PE_SLOT / PE6_SLOT), either family. */
const fl_peer *fl_peers_by_slot(const fl_peers *p, uint32_t slot);
void fl_peers_free(fl_peers *p);
/* IPv6 tables: the peer with the longest prefix holding `ip` (16 bytes, network order); by PublicIPv6. */
const fl_peer *fl_peers_by_dst6(const fl_peers *p, const uint8_t *ip);
const fl_peer *fl_peers_by_public6(const fl_peers *p, const uint8_t *ip);
/* `ip` (16 bytes) lies in subnet6/prefix of `peer`. */
int fl_in_subnet6(const uint8_t *ip, const uint8_t *subnet, uint32_t prefix);
#endif
