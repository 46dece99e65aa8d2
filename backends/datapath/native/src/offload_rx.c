/* The offload RX loop (wireguard-go's recipe; TX is offload_tx.c), used when the device has
 * IFF_VNET_HDR and TSO: recvmmsg with UDP_GRO → split each train → validate every datagram as the
 * per-packet path does → coalesce consecutive TCP segments of a flow (and, when the device has USO,
 * consecutive UDP datagrams of a flow) → write one super-packet with a virtio_net_hdr (NEEDS_CSUM,
 * GSO_TCPV4 or GSO_UDP_L4); anything else is written as it is. Wire format and validation are the
 * per-packet path's; only the batching differs. */
#define _GNU_SOURCE
#include "csum.h"
#include "engine_internal.h"
#include "ipv4.h"
#include "ipv6.h"
#include "offload.h"
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>

/* The header length of a TCP segment or UDP datagram (the TCP data offset, or 8). */
static size_t l4_header_len(const uint8_t *ip) {
  size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
  return ip[9] == 6 ? (size_t)(ip[ihl + 12] >> 4) * 4 : 8;
}

static size_t payload_of(const uint8_t *ip) {
  return fl_rd16(ip + 2) - (size_t)(ip[0] & 0x0f) * 4 - l4_header_len(ip);
}

/* Writes one packet as it is; a TCP segment or UDP datagram whose checksum is partial goes with
 * NEEDS_CSUM, so the device completes it, or trusts it for local delivery, as it does for its own
 * stack's packets. */
static void write_one(fl_engine *e, const fl_peer *peer, const uint8_t *pkt, size_t len, int partial) {
  size_t l2 = fl_l2_len(e), ihl = e->family == 6 ? FL_IP6_HLEN : (size_t)(pkt[l2] & 0x0f) * 4;
  uint8_t proto = e->family == 6 ? pkt[l2 + 6] : pkt[l2 + 9];
  vnet_hdr vh = {VNET_F_NEEDS_CSUM, VNET_GSO_NONE, 0, 0, (uint16_t)(l2 + ihl), proto == 6 ? 16 : 6};
  fl_deliver(e, peer, partial ? &vh : NULL, pkt, len);
}

/* Writes a held flow: one packet as it is, several as one GSO super-packet (TCPV4, or UDP_L4 for
 * datagrams, which the kernel splits back into the same datagrams with the same IP IDs). The
 * super-packet is gathered, not copied: the first packet with its headers rewritten in place, then
 * the payload of each following one, all in one writev. */
static void flush_flow6(fl_engine *e, fl_gro_flow *f);

static void flush_flow(fl_engine *e, fl_gro_flow *f) {
  const fl_peer *peer = f->peer;
  size_t l2 = fl_l2_len(e);
  if (f->n > 1 && e->family == 6) { flush_flow6(e, f); return; }
  if (f->n == 1) {
    write_one(e, peer, f->frame[0], f->len[0], f->partial);
    f->n = 0;
    return;
  }
  uint8_t *first = f->frame[0];
  int udp = first[l2 + 9] == 17;
  size_t ihl = (size_t)(first[l2] & 0x0f) * 4, hdr = l2 + ihl + l4_header_len(first + l2);
  size_t mss = payload_of(first + l2), at = f->len[0];
  struct iovec iov[FL_GRO_SEGS + 1];
  vnet_hdr vh = {VNET_F_NEEDS_CSUM, udp ? VNET_GSO_UDP_L4 : VNET_GSO_TCPV4, (uint16_t)hdr, (uint16_t)mss, (uint16_t)(l2 + ihl), udp ? 6 : 16};
  iov[0].iov_base = &vh;
  iov[0].iov_len = FL_VNET_HDR_LEN;
  iov[1].iov_base = first;
  iov[1].iov_len = f->len[0];
  for (int i = 1; i < f->n; i++) {
    size_t p = payload_of(f->frame[i] + l2);
    iov[i + 1].iov_base = f->frame[i] + hdr;
    iov[i + 1].iov_len = p;
    at += p;
  }
  uint8_t *ip = first + l2, *l4 = ip + ihl;
  fl_wr16(ip + 2, (uint16_t)(at - l2));
  fl_wr16(ip + 10, 0);
  fl_wr16(ip + 10, fl_csum(ip, ihl));
  if (udp) {
    fl_wr16(l4 + 4, (uint16_t)(at - l2 - ihl));
    fl_wr16(l4 + 6, fl_sum_fold(fl_pseudo_sum(ip, 17, at - l2 - ihl)));
  } else {
    l4[13] |= f->frame[f->n - 1][l2 + ihl + 13] & 0x08; /* PSH of the last segment */
    fl_wr16(l4 + 16, fl_sum_fold(fl_pseudo_sum(ip, 6, at - l2 - ihl)));
  }
  if (fl_dev_writev(e, iov, f->n + 1) == (ssize_t)at) {
    fl_count_rx(e, peer, (uint64_t)f->n, at + (size_t)(f->n - 1) * hdr);
    STAT(e, ST_COALESCED_SUPER_PACKETS)++;
    if (udp) STAT(e, ST_COALESCED_UDP_PACKETS)++;
  } else {
    STAT(e, ST_RX_WRITE_ERRORS)++;
  }
  f->n = 0;
}

static void flush_all(fl_engine *e) {
  for (int i = 0; i < e->n_flows; i++) if (e->flows[i].n) flush_flow(e, &e->flows[i]);
  e->n_flows = 0;
}

/* Same flow: L2 header (vxlan), protocol, addresses and ports. */
static int same_flow(const fl_engine *e, const uint8_t *a, const uint8_t *b) {
  size_t l2 = fl_l2_len(e);
  return memcmp(a, b, l2) == 0 && a[l2 + 9] == b[l2 + 9] && memcmp(a + l2 + 12, b + l2 + 12, 8) == 0 && memcmp(a + l2 + 20, b + l2 + 20, 4) == 0;
}

/* A packet that may be coalesced: IPv4 without options or fragmentation, and a TCP segment with data
 * and no flag but ACK and PSH, or (when the device has USO) a UDP datagram with data. */
static int candidate(const fl_engine *e, const uint8_t *pkt, size_t len) {
  size_t l2 = fl_l2_len(e);
  const uint8_t *ip = pkt + l2;
  if (len < l2 + 28 || (ip[0] & 0x0f) != 5 || (fl_rd16(ip + 6) & 0x3fff) || (size_t)fl_rd16(ip + 2) + l2 != len) return 0;
  if (ip[9] == 17) return e->uso && fl_rd16(ip + 24) == fl_rd16(ip + 2) - 20 && len > l2 + 28;
  if (ip[9] != 6 || len < l2 + 40) return 0;
  uint8_t flags = ip[33];
  size_t thl = l4_header_len(ip); /* RX accepted only data offsets ≥ 5; can_append relies on it */
  return (flags & 0x10) && !(flags & ~0x18) && thl >= 20 && len > l2 + 20 + thl;
}

static int can_append(const fl_engine *e, const fl_gro_flow *f, const uint8_t *pkt, size_t len) {
  size_t l2 = fl_l2_len(e);
  const uint8_t *first = f->frame[0], *last = f->frame[f->n - 1];
  const uint8_t *ip = pkt + l2, *fip = first + l2, *lip = last + l2;
  if (f->closed || f->n >= FL_GRO_SEGS) return 0;
  if (ip[1] != fip[1] || ip[8] != fip[8] || (ip[6] & 0x40) != (fip[6] & 0x40)) return 0; /* TOS, TTL, DF */
  size_t p = payload_of(ip), mss = payload_of(fip);
  if (p > mss || f->total + p > 65535 || l2 + f->total + p > FL_SUPER - FL_VNET_HDR_LEN) return 0;
  if (ip[9] == 17) return fl_rd16(ip + 4) == (uint16_t)(fl_rd16(lip + 4) + 1); /* the split restores consecutive IDs */
  const uint8_t *tcp = ip + 20, *ftcp = fip + 20, *ltcp = lip + 20;
  size_t thl = l4_header_len(ip);
  if (thl != l4_header_len(fip) || memcmp(tcp + 20, ftcp + 20, thl - 20) != 0) return 0;
  if (memcmp(tcp + 8, ltcp + 8, 4) != 0) return 0;                                         /* ACK */
  return fl_rd32(tcp + 4) == fl_rd32(ltcp + 4) + (uint32_t)payload_of(lip) && len == l2 + 20 + thl + p;
}

/* Writes the held flows between the same addresses with the same protocol: what may belong to a
 * packet's flow, when the packet itself cannot be held (a fragment, options, flags). */
static void flush_related(fl_engine *e, const uint8_t *pkt) {
  size_t l2 = fl_l2_len(e);
  for (int i = 0; i < e->n_flows; i++) {
    const uint8_t *a = e->flows[i].frame[0];
    if (e->flows[i].n && a[l2 + 9] == pkt[l2 + 9] && memcmp(a + l2 + 12, pkt + l2 + 12, 8) == 0) flush_flow(e, &e->flows[i]);
  }
}

/* Holds a validated TCP segment or UDP datagram for coalescing, or writes anything else at once
 * (after flushing what may be its own flow, so that a flow is never reordered). */
static void gro_add6(fl_engine *e, const fl_peer *peer, uint8_t *pkt, size_t len, int partial);

static void gro_add(fl_engine *e, const fl_peer *peer, uint8_t *pkt, size_t len, int partial) {
  size_t l2 = fl_l2_len(e);
  const uint8_t *ip = pkt + l2;
  if (e->family == 6) { gro_add6(e, peer, pkt, len, partial); return; }
  if (!candidate(e, pkt, len)) {
    if (len >= l2 + 20) flush_related(e, pkt);
    write_one(e, peer, pkt, len, partial);
    return;
  }
  fl_gro_flow *f = NULL;
  for (int i = 0; i < e->n_flows; i++) if (e->flows[i].n && same_flow(e, e->flows[i].frame[0], pkt)) { f = &e->flows[i]; break; }
  int push = ip[9] == 6 && (ip[33] & 0x08);
  if (f && can_append(e, f, pkt, len)) {
    f->frame[f->n] = pkt;
    f->len[f->n++] = (uint16_t)len;
    f->total += payload_of(ip);
    if (push || payload_of(ip) < payload_of(f->frame[0] + l2)) f->closed = 1;
    return;
  }
  if (f) flush_flow(e, f);
  else {
    if (e->n_flows == FL_GRO_FLOWS) flush_all(e);
    f = &e->flows[e->n_flows++];
  }
  f->frame[0] = pkt;
  f->len[0] = (uint16_t)len;
  f->n = 1;
  f->peer = peer;
  f->total = fl_rd16(ip + 2);
  f->closed = push;
  f->partial = partial;
}

/* A super-frame from a peer's TSO or USO that reached us whole (a kernel VXLAN peer over veth or
 * virtio): hand it to the device as GSO. Datagrams need the peer's gso_size (their boundaries) and
 * USO on the device. */
static void write_super6(fl_engine *e, const fl_peer *peer, uint8_t *pkt, size_t len, size_t inner_mss);

static void write_super(fl_engine *e, const fl_peer *peer, uint8_t *pkt, size_t len, size_t inner_mss) {
  size_t l2 = fl_l2_len(e);
  uint8_t *ip = pkt + l2;
  if (e->family == 6) { write_super6(e, peer, pkt, len, inner_mss); return; }
  size_t ihl = fl_ipv4_header_len(ip, len - l2);
  /* Whole, unfragmented segments or datagrams only, with a sound transport header (as fl_write_segmented) */
  int whole = ihl && (fl_rd16(ip + 6) & 0x3fff) == 0 && fl_ipv4_transport_ok(ip);
  size_t l4len = whole ? fl_rd16(ip + 2) - ihl : 0;
  size_t thl = whole && ip[9] == 6 ? (size_t)(ip[ihl + 12] >> 4) * 4 : 0;
  int tcp = whole && ip[9] == 6 && thl >= 20 && thl < l4len && ihl + thl < e->mtu;
  /* A datagram's UDP length must be its whole IP payload: the split gives each datagram its own length,
   * so bytes past a shorter one (padding, not data) would go out as data, and the last datagram longer. */
  int udp = whole && ip[9] == 17 && e->uso && inner_mss && l4len > 8 && fl_rd16(ip + ihl + 4) == l4len && ihl + 8 + inner_mss <= e->mtu;
  if (!tcp && !udp) { STAT(e, ST_DROP_OVERSIZE)++; return; }
  size_t l4 = tcp ? thl : 8, hdr = l2 + ihl + l4;
  size_t mss = udp || (inner_mss && ihl + l4 + inner_mss <= e->mtu) ? inner_mss : e->mtu - ihl - l4;
  if (udp) {
    fl_wr16(ip + ihl + 4, (uint16_t)l4len);
    fl_wr16(ip + ihl + 6, fl_sum_fold(fl_pseudo_sum(ip, 17, l4len)));
  } else {
    fl_wr16(ip + ihl + 16, fl_sum_fold(fl_pseudo_sum(ip, 6, l4len)));
  }
  vnet_hdr vh = {VNET_F_NEEDS_CSUM, udp ? VNET_GSO_UDP_L4 : VNET_GSO_TCPV4, (uint16_t)hdr, (uint16_t)mss, (uint16_t)(l2 + ihl), udp ? 6 : 16};
  flush_all(e);
  if (fl_deliver(e, peer, &vh, pkt, len)) STAT(e, ST_SEGMENTED_SUPER_FRAMES)++;
}

/* ---- IPv6 (the IPv6 VTEP): TCP segments coalesced as GSO_TCPV6, UDP datagrams (with USO on the device) as
 * GSO_UDP_L4; super-frames handed on as GSO ---- */

static size_t tcp6_header_len(const uint8_t *ip) { return (size_t)(ip[FL_IP6_HLEN + 12] >> 4) * 4; }
/* The transport header length of a coalescing candidate: the TCP data offset, or 8 for UDP. */
static size_t l4_6_header_len(const uint8_t *ip) { return ip[6] == 6 ? tcp6_header_len(ip) : 8; }
static size_t payload6_of(const uint8_t *ip) { return fl_rd16(ip + 4) - l4_6_header_len(ip); }

/* Right after the fixed header: a TCP segment with data and no flag but ACK and PSH, or (with USO on the
 * device) a UDP datagram with data whose UDP length is its whole payload. */
static int candidate6(const fl_engine *e, const uint8_t *pkt, size_t len) {
  size_t l2 = fl_l2_len(e);
  const uint8_t *ip = pkt + l2;
  if (len < l2 + FL_IP6_HLEN + 8 || FL_IP6_HLEN + (size_t)fl_rd16(ip + 4) + l2 != len) return 0;
  if (ip[6] == 17) return e->uso && fl_rd16(ip + FL_IP6_HLEN + 4) == fl_rd16(ip + 4) && len > l2 + FL_IP6_HLEN + 8;
  if (ip[6] != 6 || len < l2 + FL_IP6_HLEN + 20) return 0;
  uint8_t flags = ip[FL_IP6_HLEN + 13];
  size_t thl = tcp6_header_len(ip);
  return (flags & 0x10) && !(flags & ~0x18) && thl >= 20 && len > l2 + FL_IP6_HLEN + thl;
}

/* Same flow: L2 header, next header, addresses and ports. */
static int same_flow6(const fl_engine *e, const uint8_t *a, const uint8_t *b) {
  size_t l2 = fl_l2_len(e);
  return memcmp(a, b, l2) == 0 && a[l2 + 6] == b[l2 + 6] && memcmp(a + l2 + 8, b + l2 + 8, 32) == 0 && memcmp(a + l2 + 40, b + l2 + 40, 4) == 0;
}

static int can_append6(const fl_engine *e, const fl_gro_flow *f, const uint8_t *pkt, size_t len) {
  size_t l2 = fl_l2_len(e);
  const uint8_t *ip = pkt + l2, *fip = f->frame[0] + l2, *lip = f->frame[f->n - 1] + l2;
  if (f->closed || f->n >= FL_GRO_SEGS) return 0;
  if (memcmp(ip, fip, 4) != 0 || ip[7] != fip[7]) return 0; /* traffic class, flow label, hop limit */
  size_t p = payload6_of(ip), mss = payload6_of(fip);
  if (p > mss || f->total + p > 65535 || l2 + f->total + p > FL_SUPER - FL_VNET_HDR_LEN) return 0;
  if (ip[6] == 17) return 1; /* no IP ID to restore: the split gives back the datagrams in arrival order */
  const uint8_t *tcp = ip + FL_IP6_HLEN, *ftcp = fip + FL_IP6_HLEN, *ltcp = lip + FL_IP6_HLEN;
  size_t thl = tcp6_header_len(ip);
  if (thl != tcp6_header_len(fip) || memcmp(tcp + 20, ftcp + 20, thl - 20) != 0) return 0;
  if (memcmp(tcp + 8, ltcp + 8, 4) != 0) return 0; /* ACK */
  return fl_rd32(tcp + 4) == fl_rd32(ltcp + 4) + (uint32_t)payload6_of(lip) && len == l2 + FL_IP6_HLEN + thl + p;
}

/* Several held packets as one GSO_TCPV6 (or GSO_UDP_L4) super-packet: the first one's headers rewritten,
 * the others' payloads gathered behind it, one writev. */
static void flush_flow6(fl_engine *e, fl_gro_flow *f) {
  size_t l2 = fl_l2_len(e);
  uint8_t *first = f->frame[0];
  int udp = first[l2 + 6] == 17;
  size_t hdr = l2 + FL_IP6_HLEN + l4_6_header_len(first + l2);
  size_t mss = payload6_of(first + l2), at = f->len[0];
  struct iovec iov[FL_GRO_SEGS + 1];
  vnet_hdr vh = {VNET_F_NEEDS_CSUM, udp ? VNET_GSO_UDP_L4 : VNET_GSO_TCPV6, (uint16_t)hdr, (uint16_t)mss, (uint16_t)(l2 + FL_IP6_HLEN), udp ? 6 : 16};
  iov[0].iov_base = &vh;
  iov[0].iov_len = FL_VNET_HDR_LEN;
  iov[1].iov_base = first;
  iov[1].iov_len = f->len[0];
  for (int i = 1; i < f->n; i++) {
    size_t p = payload6_of(f->frame[i] + l2);
    iov[i + 1].iov_base = f->frame[i] + hdr;
    iov[i + 1].iov_len = p;
    at += p;
  }
  uint8_t *ip = first + l2, *l4 = ip + FL_IP6_HLEN;
  size_t l4len = at - l2 - FL_IP6_HLEN;
  fl_wr16(ip + 4, (uint16_t)l4len);
  if (udp) {
    fl_wr16(l4 + 4, (uint16_t)l4len);
    fl_wr16(l4 + 6, fl_sum_fold(fl_pseudo6_sum(ip, 17, l4len)));
  } else {
    l4[13] |= f->frame[f->n - 1][l2 + FL_IP6_HLEN + 13] & 0x08; /* PSH of the last segment */
    fl_wr16(l4 + 16, fl_sum_fold(fl_pseudo6_sum(ip, 6, l4len)));
  }
  if (fl_dev_writev(e, iov, f->n + 1) == (ssize_t)at) {
    fl_count_rx(e, f->peer, (uint64_t)f->n, at + (size_t)(f->n - 1) * hdr);
    STAT(e, ST_COALESCED_SUPER_PACKETS)++;
    if (udp) STAT(e, ST_COALESCED_UDP_PACKETS)++;
  } else {
    STAT(e, ST_RX_WRITE_ERRORS)++;
  }
  f->n = 0;
}

/* Flushes held flows between the same addresses with the same next header (a packet of theirs that cannot be held). */
static void flush_related6(fl_engine *e, const uint8_t *pkt) {
  size_t l2 = fl_l2_len(e);
  for (int i = 0; i < e->n_flows; i++) {
    const uint8_t *a = e->flows[i].frame[0];
    if (e->flows[i].n && a[l2 + 6] == pkt[l2 + 6] && memcmp(a + l2 + 8, pkt + l2 + 8, 32) == 0) flush_flow(e, &e->flows[i]);
  }
}

static void gro_add6(fl_engine *e, const fl_peer *peer, uint8_t *pkt, size_t len, int partial) {
  size_t l2 = fl_l2_len(e);
  const uint8_t *ip = pkt + l2;
  if (!candidate6(e, pkt, len)) {
    if (len >= l2 + FL_IP6_HLEN) flush_related6(e, pkt);
    write_one(e, peer, pkt, len, partial);
    return;
  }
  fl_gro_flow *f = NULL;
  for (int i = 0; i < e->n_flows; i++) if (e->flows[i].n && same_flow6(e, e->flows[i].frame[0], pkt)) { f = &e->flows[i]; break; }
  int push = ip[6] == 6 && (ip[FL_IP6_HLEN + 13] & 0x08);
  if (f && can_append6(e, f, pkt, len)) {
    f->frame[f->n] = pkt;
    f->len[f->n++] = (uint16_t)len;
    f->total += payload6_of(ip);
    if (push || payload6_of(ip) < payload6_of(f->frame[0] + l2)) f->closed = 1;
    return;
  }
  if (f) flush_flow(e, f);
  else {
    if (e->n_flows == FL_GRO_FLOWS) flush_all(e);
    f = &e->flows[e->n_flows++];
  }
  f->frame[0] = pkt;
  f->len[0] = (uint16_t)len;
  f->n = 1;
  f->peer = peer;
  f->total = FL_IP6_HLEN + fl_rd16(ip + 4);
  f->closed = push;
  f->partial = partial;
}

/* A kernel VXLAN peer's TSO (or, with USO on the device, UDP GSO) super-frame over IPv6: handed on as GSO. */
static void write_super6(fl_engine *e, const fl_peer *peer, uint8_t *pkt, size_t len, size_t inner_mss) {
  size_t l2 = fl_l2_len(e);
  uint8_t *ip = pkt + l2;
  size_t total = fl_ipv6_len(ip, len - l2); /* accepted: sound transport header */
  size_t l4len = total ? total - FL_IP6_HLEN : 0;
  size_t thl = total && ip[6] == 6 && l4len >= 20 ? tcp6_header_len(ip) : 0;
  int tcp = thl >= 20 && thl < l4len && FL_IP6_HLEN + thl < e->mtu;
  int udp = total && ip[6] == 17 && e->uso && inner_mss && l4len > 8 && fl_rd16(ip + FL_IP6_HLEN + 4) == l4len && FL_IP6_HLEN + 8 + inner_mss <= e->mtu;
  if (!tcp && !udp) { STAT(e, ST_DROP_OVERSIZE)++; return; }
  size_t l4 = tcp ? thl : 8, hdr = l2 + FL_IP6_HLEN + l4;
  size_t mss = udp || (inner_mss && FL_IP6_HLEN + l4 + inner_mss <= e->mtu) ? inner_mss : e->mtu - FL_IP6_HLEN - l4;
  fl_wr16(ip + FL_IP6_HLEN + (udp ? 6 : 16), fl_sum_fold(fl_pseudo6_sum(ip, udp ? 17 : 6, l4len)));
  vnet_hdr vh = {VNET_F_NEEDS_CSUM, udp ? VNET_GSO_UDP_L4 : VNET_GSO_TCPV6, (uint16_t)hdr, (uint16_t)mss, (uint16_t)(l2 + FL_IP6_HLEN), udp ? 6 : 16};
  flush_all(e);
  if (fl_deliver(e, peer, &vh, pkt, len)) STAT(e, ST_SEGMENTED_SUPER_FRAMES)++;
}

static void rx_datagram(fl_engine *e, const fl_sockaddr *from, uint8_t *d, size_t dlen, size_t inner_mss) {
  uint8_t *pkt = d;
  int partial = 0;
  const fl_peer *peer = NULL;
  size_t out = e->ops->decap(e, from, &pkt, dlen, &peer, &partial);
  if (!out) return;
  if (out > e->mtu + fl_l2_len(e)) {
    if (e->ops->gso_to_device) write_super(e, peer, pkt, out, inner_mss);
    else STAT(e, ST_DROP_OVERSIZE)++;
    return;
  }
  gro_add(e, peer, pkt, out, partial);
}

/* True when the message is one datagram (a tunnel GSO super-frame), not a train of datagrams. */
static int single_datagram(const fl_engine *e, const uint8_t *d, size_t len) {
  size_t at = fl_prefix_len(e) + fl_l2_len(e);
  if (e->family == 6) return len >= at + FL_IP6_HLEN && FL_IP6_HLEN + (size_t)fl_rd16(d + at + 4) + at == len;
  return len >= at + 20 && (size_t)fl_rd16(d + at + 2) + at == len;
}

/* One received message: a single datagram, a tunnel super-frame, or a GRO train of datagrams. */
static void rx_message(fl_engine *e, const fl_sockaddr *from, uint8_t *buf, size_t len, size_t gso) {
  if (!gso || gso >= len || (e->ops->peer_super_frames && single_datagram(e, buf, len))) { rx_datagram(e, from, buf, len, gso); return; }
  for (size_t off = 0; off < len; off += gso) rx_datagram(e, from, buf + off, len - off < gso ? len - off : gso, 0);
}

static int gro_size(struct msghdr *h) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
      int v;
      memcpy(&v, CMSG_DATA(c), sizeof v);
      return v;
    }
  }
  return 0;
}

/* One RX step: one recvmmsg of up to FL_RX_MSGS messages (GRO trains), validated, coalesced and
 * written. Returns the number of messages, 0 when the socket had nothing, or -errno. */
int fl_rx_step_offload(fl_engine *e) {
  for (int i = 0; i < FL_RX_MSGS; i++) {
    e->iov[i][0].iov_base = e->rx_bufs + (size_t)i * FL_RX_SLOT;
    e->iov[i][0].iov_len = FL_RX_SLOT;
    struct msghdr *h = &e->msgs[i].msg_hdr;
    memset(h, 0, sizeof *h);
    h->msg_iov = e->iov[i];
    h->msg_iovlen = 1;
    h->msg_name = &e->addrs[i];
    h->msg_namelen = sizeof e->addrs[i];
    h->msg_control = e->ctrl[i];
    h->msg_controllen = sizeof e->ctrl[i];
  }
  int n = recvmmsg(e->udp_fd, e->msgs, FL_RX_MSGS, MSG_DONTWAIT, NULL);
  if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -errno;
  STAT(e, ST_RX_BATCHES)++;
  for (int i = 0; i < n; i++) {
    struct msghdr *h = &e->msgs[i].msg_hdr;
    uint8_t *buf = e->iov[i][0].iov_base;
    size_t len = e->msgs[i].msg_len;
    if (h->msg_flags & MSG_TRUNC) { STAT(e, ST_DROP_OVERSIZE)++; continue; }
    rx_message(e, &e->addrs[i], buf, len, (size_t)gro_size(h));
  }
  flush_all(e);
  return n;
}
