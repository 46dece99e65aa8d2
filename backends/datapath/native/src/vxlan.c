/* vxlan mode: Ethernet frames from the TAP VTEP travel as RFC 7348 VXLAN (8-byte header, I flag,
 * 24-bit VNI). TX routes by destination MAC (static neighbours mean no ARP ever crosses); RX
 * accepts only the right VNI and flags, and inner frames whose source MAC and IP are the peer's. */
#include "engine.h"
#include "engine_internal.h"
#include "ipv4.h"
#include "layout.h"
#include <arpa/inet.h>
#include <string.h>

#define ETH_HLEN 14
#define ETHERTYPE_IPV4 0x0800

static uint32_t mix(uint32_t h, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x01000193u;
  return h;
}

/* The kernel's VXLAN derives the outer source port from a hash of the inner flow; so do we, for
 * both backends: protocol, addresses and (TCP/UDP) ports of an IPv4 packet, FNV-1a. */
uint32_t fl_flow_hash(const uint8_t *ip, size_t len) {
  uint32_t h = 0x811c9dc5u;
  if (len < 20 || (ip[0] >> 4) != 4) return mix(h, ip, len < 20 ? len : 20);
  size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
  h = mix(mix(h, ip + 9, 1), ip + 12, 8);
  if ((ip[9] == 6 || ip[9] == 17) && len >= ihl + 4) h = mix(h, ip + ihl, 4);
  return h;
}

static void vxlan_header(const fl_engine *e, uint8_t *h) {
  memset(h, 0, 8);
  h[0] = 0x08; /* I flag */
  h[4] = (uint8_t)(e->vni >> 16); h[5] = (uint8_t)(e->vni >> 8); h[6] = (uint8_t)e->vni;
}

static const fl_peer *vxlan_route(fl_engine *e, uint8_t *frame, size_t *lenp, uint32_t *hash) {
  size_t len = *lenp;
  if (len < ETH_HLEN) { STAT(e, ST_DROP_TX_MALFORMED)++; return NULL; }
  if (frame[0] & 1) { STAT(e, ST_DROP_BROADCAST)++; return NULL; }   /* broadcast or multicast */
  const fl_peer *peer = fl_peers_by_mac(&e->peers, frame);
  if (!peer) { STAT(e, ST_DROP_UNKNOWN_MAC)++; return NULL; }
  *hash = fl_rd16(frame + 12) == ETHERTYPE_IPV4 ? fl_flow_hash(frame + ETH_HLEN, len - ETH_HLEN) : fl_flow_hash(frame, len < ETH_HLEN ? len : ETH_HLEN);
  return peer;
}

static size_t vxlan_accept(fl_engine *e, const fl_peer *peer, uint8_t **pkt, size_t len, int *partial) {
  uint8_t *p = *pkt;
  if (partial) *partial = 0;
  if (len < 8 + ETH_HLEN) { STAT(e, ST_DROP_RX_MALFORMED)++; return 0; }
  uint32_t vni = (uint32_t)p[4] << 16 | (uint32_t)p[5] << 8 | p[6];
  if (p[0] != 0x08 || p[1] || p[2] || p[3] || p[7] || vni != e->vni) { STAT(e, ST_DROP_BAD_VXLAN)++; return 0; }
  uint8_t *frame = p + 8;
  size_t flen = len - 8;
  if (memcmp(frame, e->dev_mac, 6) != 0) { STAT(e, ST_DROP_UNKNOWN_MAC)++; return 0; }
  if (memcmp(frame + 6, peer->mac, 6) != 0) { STAT(e, ST_DROP_SPOOFED_SOURCE)++; return 0; }
  if (fl_rd16(frame + 12) != ETHERTYPE_IPV4) { STAT(e, ST_DROP_RX_MALFORMED)++; return 0; }
  const uint8_t *ip = frame + ETH_HLEN; /* read-only here; the checksum fix below writes */
  if (!fl_accept_inner(e, peer, ip, flen - ETH_HLEN)) return 0;
  size_t out = ETH_HLEN + fl_rd16(ip + 2);
  if (out <= ETH_HLEN + e->mtu) { /* super-frames get fresh checksums when they are segmented */
    if (!fl_check_l4(e, frame + ETH_HLEN, flen - ETH_HLEN, partial)) return 0;
  }
  *pkt = frame;
  return out;
}

static size_t vxlan_wire_len(const fl_engine *e, size_t n) {
  (void)e;
  return 8 + n;
}

/* A sender is known by its source address (the lease's PublicIP). */
static size_t vxlan_decap(fl_engine *e, const void *from_, uint8_t **pkt, size_t len, const fl_peer **peer, int *partial) {
  const struct sockaddr_in *from = from_;
  const fl_peer *p = fl_peers_by_public(&e->peers, ntohl(from->sin_addr.s_addr));
  if (!p) { STAT(e, ST_DROP_UNKNOWN_SOURCE)++; return 0; }
  *peer = p;
  return vxlan_accept(e, p, pkt, len, partial);
}

const fl_mode fl_mode_vxlan = {
  .name = "vxlan", .l2 = ETH_HLEN, .prefix = 8, .suffix = 0, .peer_super_frames = 1, .gso_to_device = 1,
  .route = vxlan_route, .write_prefix = vxlan_header, .wire_len = vxlan_wire_len, .decap = vxlan_decap,
};
