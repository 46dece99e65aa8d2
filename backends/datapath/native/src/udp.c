/* udp mode: flannel's udp backend. A datagram is exactly one inner IPv4 packet, no header; the TUN
 * device gives and takes bare IPv4 packets. A sender is known by its source address (the lease's
 * PublicIP); the inner source must be in its subnet. */
#include "engine_internal.h"
#include "ipv4.h"
#include "layout.h"
#include <arpa/inet.h>

static const fl_peer *udp_route(fl_engine *e, uint8_t *pkt, size_t *len, uint32_t *hash) {
  const fl_peer *peer = fl_route_ipv4(e, pkt, *len);
  if (!peer) return NULL;
  *len = fl_rd16(pkt + 2);
  *hash = fl_flow_hash(pkt, *len);
  return peer;
}

static size_t udp_wire_len(const fl_engine *e, size_t n) {
  (void)e;
  return n;
}

static size_t udp_decap(fl_engine *e, const void *from_, uint8_t **pkt, size_t len, const fl_peer **peer, int *partial) {
  const struct sockaddr_in *from = from_;
  const fl_peer *p = fl_peers_by_public(&e->peers, ntohl(from->sin_addr.s_addr));
  if (!p) { STAT(e, ST_DROP_UNKNOWN_SOURCE)++; return 0; }
  *peer = p;
  return fl_accept_ipv4(e, p, *pkt, len, partial);
}

const fl_mode fl_mode_udp = {
  .name = "udp", .l2 = 0, .prefix = 0, .suffix = 0, .peer_super_frames = 1, .gso_to_device = 0,
  .route = udp_route, .wire_len = udp_wire_len, .decap = udp_decap,
};
