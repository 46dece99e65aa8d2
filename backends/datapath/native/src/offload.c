/* The offload loops (wireguard-go's recipe), used when the device has IFF_VNET_HDR and TSO:
 *  TX: read a GSO super-packet (virtio_net_hdr + up to 64 KB) → route it once → split it into
 *      MTU-sized segments, copy and checksum fused, laid back to back → one sendmsg per ≤64
 *      datagrams with UDP_SEGMENT. Each datagram is still one standard flannel datagram.
 *  RX: recvmmsg with UDP_GRO → split each train → validate every datagram as the per-packet path
 *      does → coalesce consecutive TCP segments of a flow → write one super-packet with a
 *      virtio_net_hdr (NEEDS_CSUM, GSO_TCPV4); anything else is written as it is.
 * Wire format and validation are the per-packet path's; only the batching differs. */
#define _GNU_SOURCE
#include "csum.h"
#include "engine_internal.h"
#include "ipv4.h"
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#define VNET_F_NEEDS_CSUM 1
#define VNET_GSO_NONE 0
#define VNET_GSO_TCPV4 1
#define VNET_GSO_ECN 0x80
#define MAX_UDP_PAYLOAD 65507
#define MAX_GSO_SEGS 64

typedef struct {
  uint8_t flags, gso_type;
  uint16_t hdr_len, gso_size, csum_start, csum_offset; /* native (little) endian: legacy virtio */
} __attribute__((packed)) vnet_hdr;

static size_t l2_len(const fl_engine *e) { return e->mode == FL_MODE_VXLAN ? 14 : 0; }
static size_t prefix_len(const fl_engine *e) { return e->mode == FL_MODE_VXLAN ? 8 : 0; }

/* ---------- TX ---------- */

/* Finishes a checksum the kernel left to us (NEEDS_CSUM without GSO). */
static int complete_csum(uint8_t *pkt, size_t len, const vnet_hdr *vh) {
  size_t start = vh->csum_start, field = start + vh->csum_offset;
  if (field + 2 > len || start > len) return 0;
  uint16_t sum = fl_sum_fold(fl_sum(pkt + start, len - start, 0));
  fl_wr16(pkt + field, (uint16_t)~sum);
  return 1;
}

/* One TCP segment of the super-packet, written at `out` (after `pre` bytes of VXLAN header). Its
 * checksum is complete, or, for a peer that accepts them (`partial`), left partial as the kernel
 * leaves it: the pseudo-header sum only, so the payload is copied but never summed. */
static size_t build_segment(const fl_engine *e, uint8_t *out, const uint8_t *pkt, size_t ihl, size_t thl, size_t payload, size_t mss, size_t off, int partial) {
  size_t l2 = l2_len(e), pre = prefix_len(e), n = payload - off < mss ? payload - off : mss;
  if (pre) fl_vxlan_header(e, out);
  uint8_t *o = out + pre;
  memcpy(o, pkt, l2 + ihl + thl);
  uint8_t *ip = o + l2, *tcp = ip + ihl;
  const uint8_t *sip = pkt + l2;
  fl_wr16(ip + 2, (uint16_t)(ihl + thl + n));
  fl_wr16(ip + 4, (uint16_t)(fl_rd16(sip + 4) + off / mss));
  fl_wr16(ip + 10, 0);
  fl_wr16(ip + 10, fl_csum(ip, ihl));
  fl_wr32(tcp + 4, fl_rd32(sip + ihl + 4) + (uint32_t)off);
  if (off + n < payload) tcp[13] &= (uint8_t)~0x09; /* FIN, PSH only on the last */
  if (off) tcp[13] &= (uint8_t)~0x80;               /* CWR only on the first */
  uint64_t pseudo = fl_pseudo_sum(ip, 6, thl + n);
  if (partial) {
    fl_wr16(tcp + 16, fl_sum_fold(pseudo));
    memcpy(tcp + thl, sip + ihl + thl + off, n);
  } else {
    fl_wr16(tcp + 16, 0);
    uint64_t sum = fl_copy_sum(tcp + thl, sip + ihl + thl + off, n, fl_sum(tcp, thl, pseudo));
    fl_wr16(tcp + 16, (uint16_t)~fl_sum_fold(sum));
  }
  return pre + l2 + ihl + thl + n;
}

static void set_message(fl_engine *e, int m, const fl_peer *peer, int iovs, uint16_t gso) {
  e->addrs[m].sin_family = AF_INET;
  e->addrs[m].sin_port = htons((uint16_t)peer->port);
  e->addrs[m].sin_addr.s_addr = htonl(peer->public_ip);
  struct msghdr *h = &e->msgs[m].msg_hdr;
  memset(h, 0, sizeof *h);
  h->msg_iov = e->iov[m];
  h->msg_iovlen = (size_t)iovs;
  h->msg_name = &e->addrs[m];
  h->msg_namelen = sizeof e->addrs[m];
  if (!gso) return;
  h->msg_control = e->ctrl[m];
  h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
  struct cmsghdr *c = CMSG_FIRSTHDR(h);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  memcpy(CMSG_DATA(c), &gso, sizeof gso);
}

/* Turns one read into messages starting at msgs[m]; returns how many it used (0 = dropped). */
static int tx_one(fl_engine *e, uint8_t *buf, size_t r, int m, int room, int slot, int *fd_of) {
  if (r < FL_VNET_HDR_LEN) { STAT(e, ST_DROP_TX_MALFORMED)++; return 0; }
  vnet_hdr vh;
  memcpy(&vh, buf, sizeof vh);
  uint8_t *pkt = buf + FL_VNET_HDR_LEN;
  size_t len = r - FL_VNET_HDR_LEN, l2 = l2_len(e), pre = prefix_len(e);
  uint32_t hash = 0;
  const fl_peer *peer = e->mode == FL_MODE_VXLAN ? fl_vxlan_route(e, pkt, len, &hash) : fl_route_ipv4(e, pkt, len);
  if (!peer) return 0;
  if (e->mode == FL_MODE_UDP) hash = fl_flow_hash(pkt, len);
  int fd = e->n_tx_fds ? e->tx_fds[hash % e->n_tx_fds] : e->udp_fd;
  uint8_t gso_type = vh.gso_type & (uint8_t)~VNET_GSO_ECN;
  if (gso_type == VNET_GSO_NONE) {
    if ((vh.flags & VNET_F_NEEDS_CSUM) && !complete_csum(pkt, len, &vh)) { STAT(e, ST_DROP_TX_MALFORMED)++; return 0; }
    int iovs = 0;
    if (pre) { fl_vxlan_header(e, e->vxlan_hdr[m]); e->iov[m][iovs].iov_base = e->vxlan_hdr[m]; e->iov[m][iovs++].iov_len = pre; }
    size_t plen = e->mode == FL_MODE_UDP ? fl_rd16(pkt + 2) : len;
    e->iov[m][iovs].iov_base = pkt;
    e->iov[m][iovs++].iov_len = plen;
    set_message(e, m, peer, iovs, 0);
    fd_of[m] = fd;
    fl_count_tx(e, peer, 1, plen);
    return 1;
  }
  const uint8_t *ip = pkt + l2;
  size_t ihl = fl_ipv4_header_len(ip, len - l2);
  size_t thl = ihl && len >= l2 + ihl + 20 ? (size_t)(ip[ihl + 12] >> 4) * 4 : 0;
  if (gso_type != VNET_GSO_TCPV4 || !ihl || ip[9] != 6 || thl < 20 || len < l2 + ihl + thl || vh.gso_size == 0) {
    STAT(e, ST_DROP_TX_MALFORMED)++;
    return 0;
  }
  size_t payload = len - l2 - ihl - thl, mss = vh.gso_size;
  if (ihl + thl + mss > e->mtu) mss = e->mtu - ihl - thl;
  size_t dgram = pre + l2 + ihl + thl + mss, nseg = (payload + mss - 1) / mss;
  if (payload == 0 || nseg * dgram > FL_STAGE) { STAT(e, ST_DROP_TX_MALFORMED)++; return 0; }
  uint8_t *stage = e->stage + (size_t)slot * FL_STAGE;
  size_t bytes = 0;
  int partial = (peer->flags & FL_PEER_PARTIAL_CSUM) != 0;
  for (size_t i = 0; i < nseg; i++) bytes += build_segment(e, stage + i * dgram, pkt, ihl, thl, payload, mss, i * mss, partial);
  if (partial) STAT(e, ST_TX_PARTIAL_CHECKSUMS) += nseg;
  size_t per_msg = e->gso ? MAX_UDP_PAYLOAD / dgram : 1;
  if (per_msg > MAX_GSO_SEGS) per_msg = MAX_GSO_SEGS;
  int used = 0;
  for (size_t first = 0; first < nseg && used < room; first += per_msg, used++) {
    size_t k = nseg - first < per_msg ? nseg - first : per_msg;
    size_t last_len = first + k == nseg ? bytes - (nseg - 1) * dgram : dgram;
    e->iov[m + used][0].iov_base = stage + first * dgram;
    e->iov[m + used][0].iov_len = (k - 1) * dgram + last_len;
    set_message(e, m + used, peer, 1, k > 1 ? (uint16_t)dgram : 0);
    fd_of[m + used] = fd;
  }
  fl_count_tx(e, peer, nseg, bytes - nseg * pre);
  return used;
}

static void send_runs(fl_engine *e, int n, const int *fd_of) {
  int start = 0;
  for (int i = 1; i <= n; i++) {
    if (i < n && fd_of[i] == fd_of[start]) continue;
    fl_send_batch(e, fd_of[start], e->msgs + start, i - start);
    start = i;
  }
}

/* One TX step: reads up to FL_TX_READS super-packets (until EAGAIN), splits and sends them. Returns
 * the number of reads, 0 when the device had nothing, or -errno. */
int fl_tx_step_offload(fl_engine *e) {
  int fd_of[FL_BATCH];
  int m = 0, slot = 0, reads = 0;
  while (slot < FL_TX_READS && m + 4 <= FL_BATCH && reads < 4 * FL_BATCH) {
    uint8_t *buf = e->tx_rbuf + (size_t)slot * FL_SUPER;
    ssize_t r = read(e->dev_fd, buf, FL_SUPER);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return -errno;
    }
    reads++;
    int used = tx_one(e, buf, (size_t)r, m, FL_BATCH - m, slot, fd_of);
    if (used) { m += used; slot++; }
  }
  if (m > 0) send_runs(e, m, fd_of);
  return reads;
}

/* ---------- RX ---------- */

static size_t payload_of(const uint8_t *ip) {
  size_t ihl = (size_t)(ip[0] & 0x0f) * 4, thl = (size_t)(ip[ihl + 12] >> 4) * 4;
  return fl_rd16(ip + 2) - ihl - thl;
}

/* Writes one packet as it is; a TCP segment or UDP datagram whose checksum is partial goes with
 * NEEDS_CSUM, so the device completes it, or trusts it for local delivery, as it does for its own
 * stack's packets. */
static void write_one(fl_engine *e, const fl_peer *peer, const uint8_t *pkt, size_t len, int partial) {
  size_t l2 = l2_len(e), ihl = (size_t)(pkt[l2] & 0x0f) * 4;
  vnet_hdr vh = {VNET_F_NEEDS_CSUM, VNET_GSO_NONE, 0, 0, (uint16_t)(l2 + ihl), pkt[l2 + 9] == 6 ? 16 : 6};
  fl_deliver(e, peer, partial ? &vh : NULL, pkt, len);
}

/* Writes a held flow: one segment as it is, several as one GSO super-packet. The super-packet is
 * gathered, not copied: the first segment with its headers rewritten in place, then the payload of
 * each following segment, all in one writev. */
static void flush_flow(fl_engine *e, fl_gro_flow *f) {
  const fl_peer *peer = f->peer;
  size_t l2 = l2_len(e);
  if (f->n == 1) {
    write_one(e, peer, f->frame[0], f->len[0], f->partial);
    f->n = 0;
    return;
  }
  uint8_t *first = f->frame[0];
  size_t ihl = (size_t)(first[l2] & 0x0f) * 4, thl = (size_t)(first[l2 + ihl + 12] >> 4) * 4, hdr = l2 + ihl + thl;
  size_t mss = payload_of(first + l2), at = f->len[0];
  struct iovec iov[FL_GRO_SEGS + 1];
  vnet_hdr vh = {VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, (uint16_t)hdr, (uint16_t)mss, (uint16_t)(l2 + ihl), 16};
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
  uint8_t *ip = first + l2, *tcp = ip + ihl;
  tcp[13] |= f->frame[f->n - 1][l2 + ihl + 13] & 0x08; /* PSH of the last segment */
  fl_wr16(ip + 2, (uint16_t)(at - l2));
  fl_wr16(ip + 10, 0);
  fl_wr16(ip + 10, fl_csum(ip, ihl));
  fl_wr16(tcp + 16, fl_sum_fold(fl_pseudo_sum(ip, 6, at - l2 - ihl)));
  if (fl_dev_writev(e, iov, f->n + 1) == (ssize_t)at) {
    fl_count_rx(e, peer, (uint64_t)f->n, at + (size_t)(f->n - 1) * hdr);
    STAT(e, ST_COALESCED_SUPER_PACKETS)++;
  } else {
    STAT(e, ST_RX_WRITE_ERRORS)++;
  }
  f->n = 0;
}

static void flush_all(fl_engine *e) {
  for (int i = 0; i < e->n_flows; i++) if (e->flows[i].n) flush_flow(e, &e->flows[i]);
  e->n_flows = 0;
}

/* Same flow: L2 header (vxlan), addresses and ports. */
static int same_flow(const fl_engine *e, const uint8_t *a, const uint8_t *b) {
  size_t l2 = l2_len(e);
  return memcmp(a, b, l2) == 0 && memcmp(a + l2 + 12, b + l2 + 12, 8) == 0 && memcmp(a + l2 + 20, b + l2 + 20, 4) == 0;
}

static int can_append(const fl_engine *e, const fl_gro_flow *f, const uint8_t *pkt, size_t len) {
  size_t l2 = l2_len(e);
  const uint8_t *first = f->frame[0], *last = f->frame[f->n - 1];
  const uint8_t *ip = pkt + l2, *fip = first + l2, *lip = last + l2;
  if (f->closed || f->n >= FL_GRO_SEGS) return 0;
  if (ip[1] != fip[1] || ip[8] != fip[8] || (ip[6] & 0x40) != (fip[6] & 0x40)) return 0; /* TOS, TTL, DF */
  const uint8_t *tcp = ip + 20, *ftcp = fip + 20, *ltcp = lip + 20;
  size_t thl = (size_t)(tcp[12] >> 4) * 4;
  if (thl != (size_t)(ftcp[12] >> 4) * 4 || memcmp(tcp + 20, ftcp + 20, thl - 20) != 0) return 0;
  if (memcmp(tcp + 8, ltcp + 8, 4) != 0) return 0;                                         /* ACK */
  size_t p = payload_of(ip), mss = payload_of(fip);
  if (p > mss || fl_rd32(tcp + 4) != fl_rd32(ltcp + 4) + (uint32_t)payload_of(lip)) return 0;
  return f->total + p <= 65535 && l2 + f->total + p <= FL_SUPER - FL_VNET_HDR_LEN && len == l2 + 20 + thl + p;
}

/* Holds a validated TCP segment for coalescing, or writes anything else at once (after flushing its
 * own flow, so that a flow is never reordered). */
static void gro_add(fl_engine *e, const fl_peer *peer, uint8_t *pkt, size_t len, int partial) {
  size_t l2 = l2_len(e);
  const uint8_t *ip = pkt + l2;
  int tcp = ip[9] == 6 && (ip[0] & 0x0f) == 5 && !(fl_rd16(ip + 6) & 0x3fff) && len >= l2 + 40;
  fl_gro_flow *f = NULL;
  if (tcp) for (int i = 0; i < e->n_flows; i++) if (e->flows[i].n && same_flow(e, e->flows[i].frame[0], pkt)) { f = &e->flows[i]; break; }
  uint8_t flags = tcp ? ip[33] : 0;
  int mergeable = tcp && (flags & 0x10) && !(flags & ~0x18) && payload_of(ip) > 0;
  if (f && mergeable && can_append(e, f, pkt, len)) {
    f->frame[f->n] = pkt;
    f->len[f->n++] = (uint16_t)len;
    f->total += payload_of(ip);
    if ((flags & 0x08) || payload_of(ip) < payload_of(f->frame[0] + l2)) f->closed = 1;
    return;
  }
  if (f) flush_flow(e, f);
  if (!mergeable) {
    write_one(e, peer, pkt, len, partial);
    return;
  }
  if (!f) {
    if (e->n_flows == FL_GRO_FLOWS) flush_all(e);
    f = &e->flows[e->n_flows++];
  }
  f->frame[0] = pkt;
  f->len[0] = (uint16_t)len;
  f->n = 1;
  f->peer = peer;
  f->total = fl_rd16(ip + 2);
  f->closed = (flags & 0x08) != 0;
  f->partial = partial;
}

/* A super-frame from a peer's TSO that reached us whole: hand it to the device as GSO. */
static void write_super(fl_engine *e, const fl_peer *peer, uint8_t *pkt, size_t len, size_t inner_mss) {
  size_t l2 = l2_len(e);
  uint8_t *ip = pkt + l2;
  size_t ihl = fl_ipv4_header_len(ip, len - l2);
  if (!ihl || ip[9] != 6 || len < l2 + ihl + 20) { STAT(e, ST_DROP_OVERSIZE)++; return; }
  size_t thl = (size_t)(ip[ihl + 12] >> 4) * 4, hdr = l2 + ihl + thl;
  size_t mss = inner_mss && ihl + thl + inner_mss <= e->mtu ? inner_mss : e->mtu - ihl - thl;
  fl_wr16(ip + ihl + 16, fl_sum_fold(fl_pseudo_sum(ip, 6, fl_rd16(ip + 2) - ihl)));
  vnet_hdr vh = {VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, (uint16_t)hdr, (uint16_t)mss, (uint16_t)(l2 + ihl), 16};
  flush_all(e);
  if (fl_deliver(e, peer, &vh, pkt, len)) STAT(e, ST_SEGMENTED_SUPER_FRAMES)++;
}

static void rx_datagram(fl_engine *e, const fl_peer *peer, uint8_t *d, size_t dlen, size_t inner_mss) {
  uint8_t *pkt = d;
  int partial = 0;
  size_t out = e->mode == FL_MODE_VXLAN ? fl_vxlan_accept(e, peer, &pkt, dlen, &partial) : fl_accept_ipv4(e, peer, pkt, dlen, &partial);
  if (!out) return;
  if (out > e->mtu + l2_len(e)) {
    if (e->mode == FL_MODE_VXLAN) write_super(e, peer, pkt, out, inner_mss);
    else STAT(e, ST_DROP_OVERSIZE)++;
    return;
  }
  gro_add(e, peer, pkt, out, partial);
}

/* True when the message is one datagram (a tunnel GSO super-frame), not a train of datagrams. */
static int single_datagram(const fl_engine *e, const uint8_t *d, size_t len) {
  size_t at = prefix_len(e) + l2_len(e);
  return len >= at + 20 && (size_t)fl_rd16(d + at + 2) + at == len;
}

/* One received message: a single datagram, a tunnel super-frame, or a GRO train of datagrams. */
static void rx_message(fl_engine *e, const fl_peer *peer, uint8_t *buf, size_t len, size_t gso) {
  if (!gso || gso >= len || single_datagram(e, buf, len)) { rx_datagram(e, peer, buf, len, gso); return; }
  for (size_t off = 0; off < len; off += gso) rx_datagram(e, peer, buf + off, len - off < gso ? len - off : gso, 0);
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
    const fl_peer *peer = fl_peers_by_public(&e->peers, ntohl(e->addrs[i].sin_addr.s_addr));
    if (!peer) { STAT(e, ST_DROP_UNKNOWN_SOURCE)++; continue; }
    rx_message(e, peer, buf, len, (size_t)gro_size(h));
  }
  flush_all(e);
  return n;
}

/* Turns on UDP GRO and checks that UDP GSO works on the sockets; the loops fall back per feature. */
void fl_offload_probe(fl_engine *e) {
  int one = 1, zero = 0;
  e->gro = setsockopt(e->udp_fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  e->gso = setsockopt(e->udp_fd, SOL_UDP, UDP_SEGMENT, &zero, sizeof zero) == 0;
}

/* Entry points for the fuzz target and tests: the TX split without sending, and the RX path for one
 * received message (a train when gso > 0), flushed at once. */
int fl_offload_tx_build(fl_engine *e, uint8_t *buf, size_t len) {
  int fd_of[FL_BATCH];
  return tx_one(e, buf, len, 0, FL_BATCH, 0, fd_of);
}

void fl_offload_rx_message(fl_engine *e, const fl_peer *peer, uint8_t *buf, size_t len, size_t gso) {
  rx_message(e, peer, buf, len, gso);
  flush_all(e);
}
