/* vxlan mode over IPv6 (the flannel-v6.<VNI> VTEP, an engine of family 6): Ethernet frames carrying IPv6
 * (ethertype 0x86DD) from the TAP device travel as RFC 7348 VXLAN in UDP over IPv6 to the peer's
 * PublicIPv6, as Linux's VXLAN over IPv6 frames them (same header, VNI, port; the outer UDP checksum is
 * the socket's, which IPv6 always fills in). TX routes by destination MAC (static neighbours); frames to
 * multicast MACs (router solicitations, MLD, neighbour solicitations) are dropped as broadcast. RX takes
 * a datagram only from a peer's PublicIPv6, with the right VNI and flags, our MAC as destination, the
 * peer's VTEP MAC as source, an IPv6 packet whose source lies in the peer's IPv6 subnet and whose
 * destination lies in ours, and (TCP/UDP right after the fixed header) a sound header and checksum (a UDP
 * checksum of 0 is carried: the receiving kernel applies RFC 6936 per socket, UDP_NO_CHECK6_RX).
 * Extension-header chains are not parsed: such packets are carried as they are, for the kernel to judge.
 * Hop limits are the kernels' business, as the IPv4 vxlan mode leaves TTLs to them. */
#include "engine.h"
#include "engine_internal.h"
#include "ipv4.h"
#include "ipv6.h"
#include "layout.h"
#include <arpa/inet.h>
#include <string.h>

#define ETH_HLEN 14
#define ETHERTYPE_IPV6 0x86DD

static uint32_t mix(uint32_t h, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x01000193u;
  return h;
}

/* The flow hash that picks the sending socket (the outer source port): next header, addresses, ports. */
static uint32_t flow_hash6(const uint8_t *ip, size_t len) {
  uint32_t h = 0x811c9dc5u;
  h = mix(mix(h, ip + 6, 1), ip + 8, 32);
  if ((ip[6] == 6 || ip[6] == 17) && len >= FL_IP6_HLEN + 4) h = mix(h, ip + FL_IP6_HLEN, 4);
  return h;
}

static void vxlan6_header(const fl_engine *e, uint8_t *h) {
  memset(h, 0, 8);
  h[0] = 0x08; /* I flag */
  h[4] = (uint8_t)(e->vni >> 16); h[5] = (uint8_t)(e->vni >> 8); h[6] = (uint8_t)e->vni;
}

void fl_packet_too_big6(fl_engine *e, const uint8_t *frame, size_t len) {
  STAT(e, ST_DROP_OVERSIZE)++;
  if (e->ops->l2 == 0) { /* a TUN (flannel-wg-v6): the bare IPv6 packet */
    size_t n = fl_icmp6_packet_too_big(e->icmp, sizeof e->icmp, frame, len, e->dev_ip6, e->mtu);
    if (n && fl_dev_write(e, NULL, e->icmp, n) == (ssize_t)n) STAT(e, ST_ICMP_UNREACHABLE_SENT)++;
    return;
  }
  uint8_t *eth = e->icmp;
  size_t n = fl_icmp6_packet_too_big(eth + ETH_HLEN, sizeof e->icmp - ETH_HLEN, frame + ETH_HLEN, len - ETH_HLEN, e->dev_ip6, e->mtu);
  if (!n) return;
  memcpy(eth, frame + 6, 6);  /* back to the device's MAC */
  memcpy(eth + 6, frame, 6);  /* from the peer's VTEP MAC, the frame's next hop */
  fl_wr16(eth + 12, ETHERTYPE_IPV6);
  if (fl_dev_write(e, NULL, eth, ETH_HLEN + n) == (ssize_t)(ETH_HLEN + n)) STAT(e, ST_ICMP_UNREACHABLE_SENT)++;
}

static const fl_peer *vxlan6_route(fl_engine *e, uint8_t *frame, size_t *lenp, uint32_t *hash) {
  size_t len = *lenp;
  if (len < ETH_HLEN) { STAT(e, ST_DROP_TX_MALFORMED)++; return NULL; }
  if (frame[0] & 1) { STAT(e, ST_DROP_BROADCAST)++; return NULL; }   /* broadcast or multicast: NDP, MLD, RS */
  const fl_peer *peer = fl_peers_by_mac(&e->peers, frame);
  if (!peer) { STAT(e, ST_DROP_UNKNOWN_MAC)++; return NULL; }
  const uint8_t *ip = frame + ETH_HLEN;
  if (fl_rd16(frame + 12) != ETHERTYPE_IPV6 || !fl_ipv6_len(ip, len - ETH_HLEN)) { STAT(e, ST_DROP_TX_MALFORMED)++; return NULL; }
  /* Per-packet path: nothing larger than the MTU comes from the device unless its MTU was raised by hand. */
  if (!e->vnet && len > ETH_HLEN + e->mtu) { fl_packet_too_big6(e, frame, len); return NULL; }
  *hash = flow_hash6(ip, len - ETH_HLEN);
  return peer;
}

int fl_check_l4_6(fl_engine *e, uint8_t *ip, size_t len, int *partial) {
  int csum = fl_l4_checksum6(ip, len, partial != NULL);
  if (csum == FL_CSUM_BAD) { STAT(e, ST_DROP_BAD_CHECKSUM)++; return 0; }
  if (csum == FL_CSUM_COMPLETED) STAT(e, ST_CHECKSUMS_COMPLETED)++;
  if (csum == FL_CSUM_PARTIAL) { STAT(e, ST_RX_PARTIAL_CHECKSUMS)++; *partial = 1; }
  return 1;
}

static size_t vxlan6_accept(fl_engine *e, const fl_peer *peer, uint8_t **pkt, size_t len, int *partial) {
  uint8_t *p = *pkt;
  if (partial) *partial = 0;
  if (len < 8 + ETH_HLEN) { STAT(e, ST_DROP_RX_MALFORMED)++; return 0; }
  uint32_t vni = (uint32_t)p[4] << 16 | (uint32_t)p[5] << 8 | p[6];
  if (p[0] != 0x08 || p[1] || p[2] || p[3] || p[7] || vni != e->vni) { STAT(e, ST_DROP_BAD_VXLAN)++; return 0; }
  uint8_t *frame = p + 8;
  size_t flen = len - 8;
  if (memcmp(frame, e->dev_mac, 6) != 0) { STAT(e, ST_DROP_UNKNOWN_MAC)++; return 0; }
  if (memcmp(frame + 6, peer->mac, 6) != 0) { STAT(e, ST_DROP_SPOOFED_SOURCE)++; return 0; }
  if (fl_rd16(frame + 12) != ETHERTYPE_IPV6) { STAT(e, ST_DROP_RX_MALFORMED)++; return 0; }
  uint8_t *ip = frame + ETH_HLEN;
  size_t total = fl_ipv6_len(ip, flen - ETH_HLEN);
  if (!total) { STAT(e, ST_DROP_RX_MALFORMED)++; return 0; }
  if (!fl_in_subnet6(ip + 8, peer->subnet6, peer->prefix6)) { STAT(e, ST_DROP_SPOOFED_SOURCE)++; return 0; }
  if (!fl_in_subnet6(ip + 24, e->own_subnet6, e->own_prefix6)) { STAT(e, ST_DROP_FOREIGN_DESTINATION)++; return 0; }
  if (!fl_ipv6_transport_ok(ip)) { STAT(e, ST_DROP_RX_MALFORMED)++; return 0; }
  size_t out = ETH_HLEN + total;
  if (out <= ETH_HLEN + e->mtu && !fl_check_l4_6(e, ip, total, partial)) return 0; /* super-frames: checksummed when segmented */
  *pkt = frame;
  return out;
}

static size_t vxlan6_wire_len(const fl_engine *e, size_t n) {
  (void)e;
  return 8 + n;
}

/* A sender is known by its source address (the lease's PublicIPv6). */
static size_t vxlan6_decap(fl_engine *e, const void *from_, uint8_t **pkt, size_t len, const fl_peer **peer, int *partial) {
  const struct sockaddr_in6 *from = from_;
  const fl_peer *p = from->sin6_family == AF_INET6 ? fl_peers_by_public6(&e->peers, from->sin6_addr.s6_addr) : NULL;
  if (!p) { STAT(e, ST_DROP_UNKNOWN_SOURCE)++; return 0; }
  *peer = p;
  return vxlan6_accept(e, p, pkt, len, partial);
}

/* A peer's TCP super-frame larger than the MTU (per-packet path): segmented at the MTU; anything else drops. */
void fl_write_segmented6(fl_engine *e, const fl_peer *peer, const uint8_t *frame, size_t len) {
  const uint8_t *ip = frame + ETH_HLEN;
  size_t total = fl_ipv6_len(ip, len - ETH_HLEN);
  if (!total || ip[6] != 6 || total < FL_IP6_HLEN + 20) { STAT(e, ST_DROP_OVERSIZE)++; return; }
  size_t thl = (size_t)(ip[FL_IP6_HLEN + 12] >> 4) * 4, hdr = FL_IP6_HLEN + thl;
  if (thl < 20 || hdr >= e->mtu || hdr >= total) { STAT(e, ST_DROP_OVERSIZE)++; return; }
  size_t payload = total - hdr, mss = e->mtu - hdr;
  for (size_t off = 0; off < payload; off += mss) {
    size_t n = fl_tcp_segment(e->seg, e->slot_size, frame, ETH_HLEN, mss, off);
    if (!n) { STAT(e, ST_RX_WRITE_ERRORS)++; continue; }
    fl_deliver(e, peer, NULL, e->seg, n);
  }
  STAT(e, ST_SEGMENTED_SUPER_FRAMES)++;
}

const fl_mode fl_mode_vxlan6 = {
  .name = "vxlan6", .l2 = ETH_HLEN, .prefix = 8, .suffix = 0, .peer_super_frames = 1, .gso_to_device = 1,
  .route = vxlan6_route, .write_prefix = vxlan6_header, .wire_len = vxlan6_wire_len, .decap = vxlan6_decap,
};
