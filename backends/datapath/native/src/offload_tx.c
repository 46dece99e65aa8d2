/* The offload TX loop (wireguard-go's recipe; RX is offload_rx.c), used when the device has
 * IFF_VNET_HDR and TSO: read GSO super-packets (virtio_net_hdr + up to 64 KB) → route each once →
 * split it into MTU-sized segments → send with UDP_SEGMENT. Each datagram is still one standard
 * flannel datagram.
 *
 * Datagrams are gathered, not copied: each segment's headers are written to a small header slot and
 * its payload is sent straight from the read buffer (one iovec each), so the payload is copied once,
 * by the kernel. Consecutive datagrams to the same peer and socket share one GSO message, also across
 * super-packets, so a 46-segment super-packet does not cost a 44-datagram message plus a 2-datagram
 * one, and a run of equal small packets (a UDP flood) goes out as one message too. */
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
#include <unistd.h>

/* The messages of one TX step, and the last of them, which the next datagram may join. */
typedef struct {
  int m, iovs, hdrs;       /* messages, e->tx_iov entries and e->tx_hdrs slots used */
  int fd_of[FL_BATCH];     /* the socket each message goes out of */
  const fl_peer *peer;     /* the last message: its peer, socket, datagram (GSO) size, bytes, datagrams */
  int fd;
  size_t size, bytes;
  int count;
  int joinable;            /* its last datagram has the full size and room is left: another may follow */
} tx_batch;

static void batch_send(fl_engine *e, tx_batch *b) {
  if (b->m > 0) fl_send_runs(e, b->m, b->fd_of);
  b->m = b->iovs = b->hdrs = 0;
  b->joinable = 0;
}

/* A header slot for the next datagram; sends what is pending first when the batch is full. */
static uint8_t *next_header(fl_engine *e, tx_batch *b) {
  if (b->hdrs == FL_TX_SEGS || b->iovs + 2 > FL_TX_IOVS || b->m == FL_BATCH) batch_send(e, b);
  return e->tx_hdrs + (size_t)b->hdrs++ * e->tx_slot;
}

static void start_message(fl_engine *e, tx_batch *b, const fl_peer *peer, int fd, size_t size) {
  int m = b->m++;
  fl_peer_address(e, peer, &e->addrs[m]);
  struct msghdr *h = &e->msgs[m].msg_hdr;
  memset(h, 0, sizeof *h);
  h->msg_iov = e->tx_iov + b->iovs;
  h->msg_name = &e->addrs[m];
  h->msg_namelen = fl_addr_len(e);
  b->fd_of[m] = fd;
  b->peer = peer;
  b->fd = fd;
  b->size = size;
  b->bytes = 0;
  b->count = 0;
}

/* The second datagram of a message makes it a UDP GSO message of `size`-byte datagrams. */
static void set_segment_size(fl_engine *e, int m, size_t size) {
  struct msghdr *h = &e->msgs[m].msg_hdr;
  uint16_t gso = (uint16_t)size;
  h->msg_control = e->ctrl[m];
  h->msg_controllen = CMSG_SPACE(sizeof gso);
  struct cmsghdr *c = CMSG_FIRSTHDR(h);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof gso);
  memcpy(CMSG_DATA(c), &gso, sizeof gso);
}

/* Adds one datagram, `hlen` header bytes then `plen` payload bytes, to `peer` out of `fd`; `size` is
 * the full datagram size of its super-packet's segments. It joins the last message when that one
 * goes to the same peer and socket and ends with a full datagram at least as long as this one (only a
 * message's last datagram may be shorter), within UDP GSO's limits. */
static void add_datagram(fl_engine *e, tx_batch *b, const fl_peer *peer, int fd, const uint8_t *hdr, size_t hlen, const uint8_t *payload, size_t plen, size_t size) {
  size_t len = hlen + plen;
  int join = b->joinable && b->peer == peer && b->fd == fd && len <= b->size && b->bytes + len <= MAX_UDP_PAYLOAD;
  if (!join) start_message(e, b, peer, fd, size);
  int m = b->m - 1;
  struct msghdr *h = &e->msgs[m].msg_hdr;
  if (hlen) e->tx_iov[b->iovs++] = (struct iovec){.iov_base = (void *)hdr, .iov_len = hlen};
  if (plen) e->tx_iov[b->iovs++] = (struct iovec){.iov_base = (void *)payload, .iov_len = plen};
  h->msg_iovlen = (size_t)(e->tx_iov + b->iovs - h->msg_iov);
  b->bytes += len;
  if (++b->count == 2) set_segment_size(e, m, b->size);
  /* A datagram larger than the device MTU allows (a plain send the kernel may fragment) never starts
   * a GSO message: the kernel refuses GSO datagrams above the path MTU. */
  b->joinable = e->gso && len == b->size && b->count < MAX_GSO_SEGS && b->size <= e->ops->wire_len(e, fl_l2_len(e) + e->mtu);
}

/* One datagram of a packet to `peer`: its inner headers are at h + prefix (hl bytes; a gathering mode's
 * prefix is already before them), its payload is n bytes at p; `full` is the inner length of the
 * packet's full-size segments (the GSO size on the wire follows from it). A gathering mode sends the
 * header slot and the payload as they are; a sealing mode seals headers and payload into the slot. */
static void emit(fl_engine *e, tx_batch *b, const fl_peer *peer, int fd, uint8_t *h, size_t hl, const uint8_t *p, size_t n, size_t full) {
  const fl_mode *m = e->ops;
  size_t size = m->wire_len(e, full);
  if (!m->seal) { add_datagram(e, b, peer, fd, h, m->prefix + hl, p, n, size); return; }
  if (hl + n > fl_l2_len(e) + e->mtu) { STAT(e, ST_DROP_OVERSIZE)++; return; }
  size_t len = m->seal(e, peer, h, hl, p, n);
  if (len) add_datagram(e, b, peer, fd, h, len, NULL, 0, size);
}

/* The checksum field at csum_start + csum_offset is a UDP header's (IPv4 or IPv6, no extension headers). */
static int is_udp_checksum(const fl_engine *e, const uint8_t *pkt, size_t len, const vnet_hdr *vh) {
  size_t l2 = fl_l2_len(e);
  if (vh->csum_offset != 6 || len < l2 + 40) return 0;
  const uint8_t *ip = pkt + l2;
  if (ip[0] >> 4 == 4) return ip[9] == 17 && vh->csum_start == l2 + (size_t)(ip[0] & 0x0f) * 4;
  return ip[0] >> 4 == 6 && ip[6] == 17 && vh->csum_start == l2 + 40;
}

/* Finishes a checksum the kernel left to us (NEEDS_CSUM without GSO). A UDP checksum that comes out
 * as 0 is sent as 0xFFFF (RFC 768: 0 means "no checksum"). */
static int complete_csum(const fl_engine *e, uint8_t *pkt, size_t len, const vnet_hdr *vh) {
  size_t start = vh->csum_start, field = start + vh->csum_offset;
  if (field + 2 > len || start > len) return 0;
  uint16_t c = (uint16_t)~fl_sum_fold(fl_sum(pkt + start, len - start, 0));
  if (c == 0 && is_udp_checksum(e, pkt, len, vh)) c = 0xffff;
  fl_wr16(pkt + field, c);
  return 1;
}

/* A packet the kernel did not segment: one datagram, its checksum finished if it was left to us. */
static int add_plain(fl_engine *e, tx_batch *b, const fl_peer *peer, int fd, uint8_t *pkt, size_t len, const vnet_hdr *vh) {
  if (e->family == 6 && len > fl_l2_len(e) + e->mtu) { fl_packet_too_big6(e, pkt, len); return 0; } /* device MTU raised by hand */
  if ((vh->flags & VNET_F_NEEDS_CSUM) && !complete_csum(e, pkt, len, vh)) { STAT(e, ST_DROP_TX_MALFORMED)++; return 0; }
  uint8_t *h = next_header(e, b);
  if (e->ops->write_prefix) e->ops->write_prefix(e, h);
  emit(e, b, peer, fd, h, 0, pkt, len, len);
  fl_count_tx(e, peer, 1, len);
  return 1;
}

/* The headers of datagram `i` of a USO super-packet (`l4`: where its UDP header starts), for payload
 * bytes [off, off+n): lengths, the IPv4 ID and both checksums. UDP checksums are always complete. */
static void uso_header(const fl_engine *e, uint8_t *h, const uint8_t *pkt, size_t l4, size_t off, size_t n, size_t i) {
  size_t l2 = fl_l2_len(e);
  if (e->ops->write_prefix) e->ops->write_prefix(e, h);
  uint8_t *o = h + fl_prefix_len(e);
  memcpy(o, pkt, l4 + 8);
  uint8_t *ip = o + l2, *udp = o + l4;
  uint64_t pseudo;
  if ((ip[0] >> 4) == 4) {
    size_t ihl = l4 - l2;
    fl_wr16(ip + 2, (uint16_t)(ihl + 8 + n));
    fl_wr16(ip + 4, (uint16_t)(fl_rd16(pkt + l2 + 4) + i));
    fl_wr16(ip + 10, 0);
    fl_wr16(ip + 10, fl_csum(ip, ihl));
    pseudo = fl_pseudo_sum(ip, 17, 8 + n);
  } else {
    fl_wr16(ip + 4, (uint16_t)(8 + n));
    pseudo = fl_pseudo6_sum(ip, 17, 8 + n);
  }
  fl_wr16(udp + 4, (uint16_t)(8 + n));
  fl_wr16(udp + 6, 0);
  uint16_t sum = (uint16_t)~fl_sum_fold(fl_sum(pkt + l4 + 8 + off, n, fl_sum(udp, 8, pseudo)));
  fl_wr16(udp + 6, sum ? sum : 0xffff);
}

/* A USO super-packet (UDP GSO from a local sender, or forwarded): one datagram per gso_size bytes of
 * payload, as the sender meant them. A datagram larger than our MTU cannot be split further. */
static int add_uso(fl_engine *e, tx_batch *b, const fl_peer *peer, int fd, const uint8_t *pkt, size_t len, const vnet_hdr *vh) {
  size_t l2 = fl_l2_len(e), l4 = vh->csum_start, gso = vh->gso_size;
  const uint8_t *ip = pkt + l2;
  int v4 = len >= l2 + 20 && l4 >= l2 + 20 && ip[0] >> 4 == 4 && fl_ipv4_header_len(ip, len - l2) == l4 - l2 && ip[9] == 17 && (size_t)fl_rd16(ip + 2) + l2 == len;
  int v6 = len >= l2 + 40 && ip[0] >> 4 == 6 && l4 == l2 + 40 && ip[6] == 17 && (size_t)fl_rd16(ip + 4) + l2 + 40 == len;
  if (!(v4 || v6) || l4 + 8 >= len || vh->csum_offset != 6 || gso == 0) { STAT(e, ST_DROP_TX_MALFORMED)++; return 0; }
  if (l4 - l2 + 8 + gso > e->mtu) { STAT(e, ST_DROP_OVERSIZE)++; return 0; }
  size_t payload = len - l4 - 8, hl = l4 + 8, nseg = (payload + gso - 1) / gso;
  for (size_t off = 0, i = 0; off < payload; off += gso, i++) {
    size_t n = payload - off < gso ? payload - off : gso;
    uint8_t *h = next_header(e, b);
    uso_header(e, h, pkt, l4, off, n, i);
    emit(e, b, peer, fd, h, hl, pkt + l4 + 8 + off, n, hl + gso);
  }
  STAT(e, ST_SPLIT_USO_PACKETS)++;
  fl_count_tx(e, peer, nseg, payload + nseg * hl);
  return 1;
}

/* The segments of a TSO super-packet whose IP header (ihl bytes) and TCP header (thl) were checked:
 * one datagram per segment of at most the super-packet's gso_size, cut to our MTU. */
static int split_tcp(fl_engine *e, tx_batch *b, const fl_peer *peer, int fd, const uint8_t *pkt, size_t len, const vnet_hdr *vh, size_t ihl, size_t thl) {
  size_t l2 = fl_l2_len(e), pre = fl_prefix_len(e);
  size_t payload = len - l2 - ihl - thl, mss = vh->gso_size;
  if (ihl + thl + mss > e->mtu) mss = e->mtu - ihl - thl;
  size_t hl = l2 + ihl + thl, nseg = (payload + mss - 1) / mss;
  int partial = (peer->flags & FL_PEER_PARTIAL_CSUM) != 0;
  for (size_t off = 0; off < payload; off += mss) {
    size_t n = payload - off < mss ? payload - off : mss;
    uint8_t *h = next_header(e, b);
    const uint8_t *data = pkt + l2 + ihl + thl + off;
    if (e->ops->write_prefix) e->ops->write_prefix(e, h);
    fl_tcp_segment_header(h + pre, pkt, l2, mss, off, n);
    /* A peer that accepts them gets the checksum partial, as the kernel left it: the payload is not even read. */
    if (!partial) fl_tcp_complete_csum(h + pre + l2, data, n);
    emit(e, b, peer, fd, h, hl, data, n, hl + mss);
  }
  if (partial) STAT(e, ST_TX_PARTIAL_CHECKSUMS) += nseg;
  fl_count_tx(e, peer, nseg, payload + nseg * hl);
  return 1;
}

/* A TSO super-packet (IPv4): one datagram per segment of at most `mss` payload bytes. */
static int add_tso(fl_engine *e, tx_batch *b, const fl_peer *peer, int fd, const uint8_t *pkt, size_t len, const vnet_hdr *vh) {
  size_t l2 = fl_l2_len(e);
  const uint8_t *ip = pkt + l2;
  size_t ihl = fl_ipv4_header_len(ip, len - l2);
  size_t thl = ihl && len >= l2 + ihl + 20 ? (size_t)(ip[ihl + 12] >> 4) * 4 : 0;
  if (!ihl || ip[9] != 6 || thl < 20 || len < l2 + ihl + thl || vh->gso_size == 0 || len == l2 + ihl + thl || ihl + thl >= e->mtu || (size_t)fl_rd16(ip + 2) + l2 != len) {
    STAT(e, ST_DROP_TX_MALFORMED)++;
    return 0;
  }
  return split_tcp(e, b, peer, fd, pkt, len, vh, ihl, thl);
}

/* A TSO6 super-packet (GSO_TCPV6; the IPv6 VTEP): TCP right after the fixed header, else dropped. */
static int add_tso6(fl_engine *e, tx_batch *b, const fl_peer *peer, int fd, const uint8_t *pkt, size_t len, const vnet_hdr *vh) {
  size_t l2 = fl_l2_len(e);
  const uint8_t *ip = pkt + l2;
  size_t total = e->family == 6 && len >= l2 ? fl_ipv6_len(ip, len - l2) : 0;
  size_t thl = total >= FL_IP6_HLEN + 20 && ip[6] == 6 ? (size_t)(ip[FL_IP6_HLEN + 12] >> 4) * 4 : 0;
  if (thl < 20 || total != len - l2 || FL_IP6_HLEN + thl >= total || vh->gso_size == 0 || FL_IP6_HLEN + thl >= e->mtu) {
    STAT(e, ST_DROP_TX_MALFORMED)++;
    return 0;
  }
  return split_tcp(e, b, peer, fd, pkt, len, vh, FL_IP6_HLEN, thl);
}

/* Adds one device read to the batch; returns 1 if it is to be sent (its buffer is then in use), 0 if
 * it was dropped or answered. */
static int tx_one(fl_engine *e, tx_batch *b, uint8_t *buf, size_t r) {
  if (r < FL_VNET_HDR_LEN) { STAT(e, ST_DROP_TX_MALFORMED)++; return 0; }
  vnet_hdr vh;
  memcpy(&vh, buf, sizeof vh);
  uint8_t *pkt = buf + FL_VNET_HDR_LEN;
  size_t len = r - FL_VNET_HDR_LEN;
  uint32_t hash = 0;
  const fl_peer *peer = e->ops->route(e, pkt, &len, &hash);
  if (!peer) return 0;
  int fd = e->n_tx_fds ? e->tx_fds[hash % e->n_tx_fds] : e->udp_fd;
  switch (vh.gso_type & (uint8_t)~VNET_GSO_ECN) {
    case VNET_GSO_NONE: return add_plain(e, b, peer, fd, pkt, len, &vh);
    case VNET_GSO_TCPV4: return add_tso(e, b, peer, fd, pkt, len, &vh);
    case VNET_GSO_TCPV6: return add_tso6(e, b, peer, fd, pkt, len, &vh);
    case VNET_GSO_UDP_L4: return add_uso(e, b, peer, fd, pkt, len, &vh);
    default: STAT(e, ST_DROP_TX_MALFORMED)++; return 0;
  }
}

/* One TX step: reads up to FL_TX_READS super-packets (until EAGAIN), splits and sends them. Returns
 * the number of reads, 0 when the device had nothing, or -errno. */
int fl_tx_step_offload(fl_engine *e) {
  tx_batch b = {0};
  int slot = 0, reads = 0, err = 0;
  while (slot < FL_TX_READS && reads < 4 * FL_BATCH) {
    uint8_t *buf = e->tx_rbuf + (size_t)slot * FL_SUPER;
    ssize_t r = read(e->dev_fd, buf, FL_SUPER);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) err = -errno;
      break;
    }
    reads++;
    slot += tx_one(e, &b, buf, (size_t)r);
  }
  batch_send(e, &b);
  return err ? err : reads;
}

/* Turns on UDP GRO and checks that UDP GSO works on the sockets; the loops fall back per feature. */
void fl_offload_probe(fl_engine *e) {
  int one = 1, zero = 0;
  e->gro = setsockopt(e->udp_fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  e->gso = setsockopt(e->udp_fd, SOL_UDP, UDP_SEGMENT, &zero, sizeof zero) == 0;
}
