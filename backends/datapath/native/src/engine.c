/* The packet loops. fl_pump() runs TX steps (device → UDP), RX steps (UDP → device) or both, and
 * sleeps in poll() on the device, the socket and the stop eventfd when a round moved nothing.
 * Per-packet steps (no offloads; the offload steps are in offload_tx.c and offload_rx.c):
 *  TX: read() packets until EAGAIN or a full batch → route each by inner destination (udp) or
 *      destination MAC (vxlan) → one sendmmsg() per socket run.
 *  RX: recvmmsg() a batch → check the sender holds a lease and the inner source belongs to it →
 *      write() each packet to the device.
 * Every drop is counted by reason; nothing is logged, nothing allocates per packet. */
#define _GNU_SOURCE
#include "engine.h"
#include "engine_internal.h"
#include "ipv4.h"
#include "layout.h"
#include <errno.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sched.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define FL_UDP_SEGMENT 103 /* UDP_SEGMENT, <linux/udp.h> */

static const fl_mode *const MODES[] = {[FL_MODE_UDP] = &fl_mode_udp, [FL_MODE_VXLAN] = &fl_mode_vxlan, [FL_MODE_WIREGUARD] = &fl_mode_wireguard};

int fl_engine_init(fl_engine *e) {
  memset(&e->peers, 0, sizeof e->peers);
  if (e->mode < 0 || e->mode > FL_MODE_WIREGUARD) return -EINVAL;
  if (e->family == 0) e->family = 4;
  if (e->family != 4 && !(e->family == 6 && (e->mode == FL_MODE_VXLAN || e->mode == FL_MODE_WIREGUARD))) return -EINVAL; /* IPv6: vxlan and wireguard */
  if (e->dual && (e->mode != FL_MODE_WIREGUARD || e->vnet)) return -EINVAL; /* dual: wireguard, plain loops only */
  e->ops = e->dual ? &fl_mode_wireguard46 : e->family == 6 ? (e->mode == FL_MODE_VXLAN ? &fl_mode_vxlan6 : &fl_mode_wireguard6) : MODES[e->mode];
  e->slot_size = e->mtu + 64 < 2048 ? 2048 : ((e->mtu + 64 + 1023) & ~1023u);
  /* offload TX: a header slot, or for a sealing mode a whole datagram (prefix, inner packet, suffix) */
  e->tx_slot = e->ops->seal ? ((e->ops->prefix + e->mtu + e->ops->suffix + 63) & ~(size_t)63) : FL_TX_HDR;
  e->bufs = malloc((size_t)e->slot_size * FL_BATCH);
  e->seg = malloc(e->slot_size);
  e->rx_bufs = NULL; /* allocated by the first RX pump: only the RX worker needs it */
  e->tx_rbuf = e->tx_hdrs = NULL;
  e->tx_iov = NULL;
  e->ctrl = calloc(FL_BATCH, sizeof *e->ctrl);
  e->n_flows = 0;
  if (e->vnet) {
    e->tx_rbuf = malloc((size_t)FL_TX_READS * FL_SUPER);
    e->tx_hdrs = malloc((size_t)FL_TX_SEGS * e->tx_slot);
    e->tx_iov = calloc(FL_TX_IOVS, sizeof *e->tx_iov);
  }
  if (!(e->bufs && e->seg && e->ctrl && (!e->vnet || (e->tx_rbuf && e->tx_hdrs && e->tx_iov)))) return -ENOMEM;
  return e->ops->init ? e->ops->init(e) : 0;
}

ssize_t fl_dev_write(fl_engine *e, const void *vnet_hdr, const uint8_t *pkt, size_t len) {
  if (!e->vnet) return write(e->dev_fd, pkt, len);
  static const uint8_t zero[FL_VNET_HDR_LEN] = {0};
  struct iovec iov[2] = {{.iov_base = (void *)(vnet_hdr ? vnet_hdr : zero), .iov_len = FL_VNET_HDR_LEN}, {.iov_base = (void *)pkt, .iov_len = len}};
  ssize_t r = writev(e->dev_fd, iov, 2);
  return r < 0 ? r : r - FL_VNET_HDR_LEN;
}

void fl_count_tx(fl_engine *e, const fl_peer *peer, uint64_t packets, uint64_t bytes) {
  STAT(e, ST_TX_PACKETS) += packets;
  STAT(e, ST_TX_BYTES) += bytes;
  PEER_STAT_ADD(e, peer, SP_TX_PACKETS, packets);
  PEER_STAT_ADD(e, peer, SP_TX_BYTES, bytes);
}

void fl_count_rx(fl_engine *e, const fl_peer *peer, uint64_t packets, uint64_t bytes) {
  STAT(e, ST_RX_PACKETS) += packets;
  STAT(e, ST_RX_BYTES) += bytes;
  PEER_STAT_ADD(e, peer, SP_RX_PACKETS, packets);
  PEER_STAT_ADD(e, peer, SP_RX_BYTES, bytes);
}

int fl_deliver(fl_engine *e, const fl_peer *peer, const void *vnet_hdr, const uint8_t *pkt, size_t len) {
  if (fl_dev_write(e, vnet_hdr, pkt, len) != (ssize_t)len) { STAT(e, ST_RX_WRITE_ERRORS)++; return 0; }
  fl_count_rx(e, peer, 1, len);
  return 1;
}

int fl_check_l4(fl_engine *e, uint8_t *ip, size_t len, int *partial) {
  int csum = fl_l4_checksum(ip, len, partial != NULL);
  if (csum == FL_CSUM_BAD) { STAT(e, ST_DROP_BAD_CHECKSUM)++; return 0; }
  if (csum == FL_CSUM_COMPLETED) STAT(e, ST_CHECKSUMS_COMPLETED)++;
  if (csum == FL_CSUM_PARTIAL) { STAT(e, ST_RX_PARTIAL_CHECKSUMS)++; *partial = 1; }
  return 1;
}

ssize_t fl_dev_writev(fl_engine *e, const struct iovec *iov, int n) {
  ssize_t r = writev(e->dev_fd, iov, n);
  return r < 0 ? r : r - FL_VNET_HDR_LEN;
}

void fl_engine_free(fl_engine *e) {
  free(e->bufs);
  free(e->seg);
  free(e->rx_bufs);
  free(e->tx_rbuf);
  free(e->tx_hdrs);
  free(e->tx_iov);
  free(e->ctrl);
  e->bufs = e->seg = e->rx_bufs = e->tx_rbuf = e->tx_hdrs = NULL;
  e->tx_iov = NULL;
  e->ctrl = NULL;
  if (e->ops && e->ops->free) e->ops->free(e);
  fl_peers_free(&e->peers);
}

int fl_stop_requested(fl_engine *e) {
  struct pollfd p = {.fd = e->stop_fd, .events = POLLIN};
  return poll(&p, 1, 0) > 0;
}

void fl_sync_peers(fl_engine *e) {
  if (fl_peers_sync(&e->peers, e->peer_table) <= 0) return;
  STAT(e, ST_PEER_TABLE_LOADS)++;
  /* Release: every count this worker made with the old snapshot is visible before the control plane
   * learns that it moved on and may zero a removed peer's slot for a new peer. */
  __atomic_store_n(&STAT(e, ST_SNAPSHOT_SEQ), (uint64_t)e->peers.seq, __ATOMIC_RELEASE);
}

/* Sends one datagram, waiting briefly while the socket buffer is full. */
static void send_datagram(fl_engine *e, int fd, const struct msghdr *h, const uint8_t *p, size_t n) {
  ssize_t r;
  int spins = 0;
  for (;;) {
    r = sendto(fd, p, n, MSG_DONTWAIT, h->msg_name, h->msg_namelen);
    if (r >= 0 || (errno != EINTR && !((errno == EAGAIN || errno == ENOBUFS) && spins++ < 100))) break;
    if (errno != EINTR) { struct pollfd pf = {.fd = fd, .events = POLLOUT}; poll(&pf, 1, 1); }
  }
  if (r < 0) STAT(e, ST_TX_SEND_ERRORS)++;
}

/* A UDP GSO message that the kernel refused because its datagrams no longer fit the route's MTU
 * (EINVAL for UDP_SEGMENT; the underlay MTU shrank under us): sends its datagrams one by one, each
 * gathered from the message's iovecs into the scratch frame, and the kernel fragments them as it
 * does any datagram larger than the path MTU. Returns 0 when `h` is not a GSO message. */
static int send_unsegmented(fl_engine *e, int fd, const struct msghdr *h) {
  struct cmsghdr *c = h->msg_controllen ? CMSG_FIRSTHDR((struct msghdr *)h) : NULL;
  if (!c || c->cmsg_level != SOL_UDP || c->cmsg_type != FL_UDP_SEGMENT) return 0;
  uint16_t gso;
  memcpy(&gso, CMSG_DATA(c), sizeof gso);
  if (gso == 0) return 0;
  if (gso > e->slot_size) { STAT(e, ST_TX_SEND_ERRORS)++; return 1; }
  size_t fill = 0;
  for (size_t i = 0; i < h->msg_iovlen; i++) {
    const uint8_t *p = h->msg_iov[i].iov_base;
    size_t left = h->msg_iov[i].iov_len;
    while (left > 0) {
      size_t take = left < gso - fill ? left : gso - fill;
      memcpy(e->seg + fill, p, take);
      fill += take;
      p += take;
      left -= take;
      if (fill == gso) { send_datagram(e, fd, h, e->seg, fill); fill = 0; }
    }
  }
  if (fill > 0) send_datagram(e, fd, h, e->seg, fill);
  return 1;
}

/* Sends msgs[0..n), retrying partial sends; a datagram that fails is counted and skipped. */
void fl_send_batch(fl_engine *e, int fd, struct mmsghdr *msgs, int n) {
  int done = 0, spins = 0;
  while (done < n) {
    int r = sendmmsg(fd, msgs + done, (unsigned)(n - done), MSG_DONTWAIT);
    if (r > 0) { done += r; continue; }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EINVAL || errno == EMSGSIZE) && send_unsegmented(e, fd, &msgs[done].msg_hdr)) { done++; continue; }
    if (r < 0 && (errno == EAGAIN || errno == ENOBUFS) && spins++ < 100) {
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      poll(&p, 1, 1);
      continue;
    }
    STAT(e, ST_TX_SEND_ERRORS)++;
    done++;
  }
  STAT(e, ST_TX_BATCHES)++;
}

/* udp mode, TX: route one IPv4 packet. Returns the peer, or NULL if it was dropped or answered. */
const fl_peer *fl_route_ipv4(fl_engine *e, uint8_t *pkt, size_t len) {
  size_t ihl = fl_ipv4_header_len(pkt, len);
  if (!ihl) { STAT(e, ST_DROP_TX_MALFORMED)++; return NULL; }
  const fl_peer *peer = fl_peers_by_dst(&e->peers, fl_rd32(pkt + 16));
  if (!peer) {
    STAT(e, ST_DROP_NO_ROUTE)++;
    size_t n = fl_icmp_unreachable(e->icmp, sizeof e->icmp, pkt, len, e->dev_ip, 0);
    if (n && fl_dev_write(e, NULL, e->icmp, n) == (ssize_t)n) STAT(e, ST_ICMP_UNREACHABLE_SENT)++;
    return NULL;
  }
  if (!fl_ipv4_dec_ttl(pkt)) { STAT(e, ST_DROP_TTL)++; return NULL; }
  return peer;
}


/* Adds datagram n of the batch (d, len bytes) to `peer`: iovec, destination, counters (`inner` bytes). */
static void enqueue(fl_engine *e, int n, const fl_peer *peer, uint8_t *d, size_t len, size_t inner) {
  e->iov[n][0].iov_base = d;
  e->iov[n][0].iov_len = len;
  fl_peer_address(e, peer, &e->addrs[n]);
  memset(&e->msgs[n].msg_hdr, 0, sizeof e->msgs[n].msg_hdr);
  e->msgs[n].msg_hdr.msg_iov = e->iov[n];
  e->msgs[n].msg_hdr.msg_iovlen = 1;
  e->msgs[n].msg_hdr.msg_name = &e->addrs[n];
  e->msgs[n].msg_hdr.msg_namelen = fl_addr_len(e);
  fl_count_tx(e, peer, 1, inner);
}

void fl_peer_address(fl_engine *e, const fl_peer *peer, fl_sockaddr *to) {
  if (e->family == 6) {
    memset(&to->v6, 0, sizeof to->v6);
    to->v6.sin6_family = AF_INET6;
    to->v6.sin6_port = htons((uint16_t)peer->port);
    memcpy(&to->v6.sin6_addr, peer->public6, 16);
  } else {
    to->v4.sin_family = AF_INET;
    to->v4.sin_port = htons((uint16_t)peer->port);
    to->v4.sin_addr.s_addr = htonl(peer->public_ip);
  }
  if (e->ops->endpoint) e->ops->endpoint(e, peer, to);
}

socklen_t fl_addr_len(const fl_engine *e) {
  return e->family == 6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

void fl_send_runs(fl_engine *e, int n, const int *fd_of) {
  int start = 0;
  for (int i = 1; i <= n; i++) {
    if (i < n && fd_of[i] == fd_of[start]) continue;
    fl_send_batch(e, fd_of[start], e->msgs + start, i - start);
    start = i;
  }
}

/* One per-packet TX step: reads packets until EAGAIN or a full batch, routes them, frames them in
 * place (each read lands FL_HEADROOM bytes into its slot, room for the mode's prefix), sends the batch.
 * Returns the number of reads, 0 when the device had nothing, or -errno. */
static int tx_step_plain(fl_engine *e) {
  int fd_of[FL_BATCH];
  int n = 0, reads = 0, err = 0;
  const fl_mode *m = e->ops;
  while (n < FL_BATCH && reads < 4 * FL_BATCH) {
    uint8_t *buf = e->bufs + (size_t)n * e->slot_size + FL_HEADROOM;
    ssize_t r = read(e->dev_fd, buf, e->slot_size - FL_HEADROOM - m->suffix);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) err = -errno; /* still send what was read (and counted) before it */
      break;
    }
    reads++;
    size_t len = (size_t)r;
    uint32_t hash = 0;
    const fl_peer *peer = m->route(e, buf, &len, &hash);
    if (!peer) continue;
    uint8_t *d = buf - m->prefix;
    size_t wire = m->prefix + len;
    if (m->write_prefix) m->write_prefix(e, d);
    if (m->seal && !(wire = m->seal(e, peer, d, len, NULL, 0))) continue;
    fd_of[n] = e->n_tx_fds ? e->tx_fds[hash % e->n_tx_fds] : e->udp_fd;
    enqueue(e, n, peer, d, wire, len);
    n++;
  }
  if (n > 0) fl_send_runs(e, n, fd_of);
  return err ? err : reads;
}

int fl_accept_inner(fl_engine *e, const fl_peer *peer, const uint8_t *ip, size_t len) {
  if (!fl_ipv4_header_len(ip, len)) { STAT(e, ST_DROP_RX_MALFORMED)++; return 0; }
  if (!fl_ipv4_header_csum_ok(ip)) { STAT(e, ST_DROP_BAD_CHECKSUM)++; return 0; }
  if ((fl_rd32(ip + 12) & peer->mask) != peer->subnet) { STAT(e, ST_DROP_SPOOFED_SOURCE)++; return 0; }
  if ((fl_rd32(ip + 16) & e->own_mask) != (e->own_subnet & e->own_mask)) { STAT(e, ST_DROP_FOREIGN_DESTINATION)++; return 0; }
  if (!fl_ipv4_transport_ok(ip)) { STAT(e, ST_DROP_RX_MALFORMED)++; return 0; }
  return 1;
}

/* udp mode, RX: validate one datagram from `peer`; returns the inner packet length to write, or 0. */
size_t fl_accept_ipv4(fl_engine *e, const fl_peer *peer, uint8_t *pkt, size_t len, int *partial) {
  if (partial) *partial = 0;
  if (!fl_accept_inner(e, peer, pkt, len)) return 0;
  if (!fl_ipv4_dec_ttl(pkt)) { STAT(e, ST_DROP_TTL)++; return 0; }
  if (e->ops->authenticated) return fl_rd16(pkt + 2);
  return fl_check_l4(e, pkt, len, partial) ? fl_rd16(pkt + 2) : 0;
}

static void prepare_recv(fl_engine *e) {
  for (int i = 0; i < FL_BATCH; i++) {
    e->iov[i][0].iov_base = e->rx_bufs + (size_t)i * FL_RX_SLOT;
    e->iov[i][0].iov_len = FL_RX_SLOT;
    memset(&e->msgs[i].msg_hdr, 0, sizeof e->msgs[i].msg_hdr);
    e->msgs[i].msg_hdr.msg_iov = e->iov[i];
    e->msgs[i].msg_hdr.msg_iovlen = 1;
    e->msgs[i].msg_hdr.msg_name = &e->addrs[i];
    e->msgs[i].msg_hdr.msg_namelen = sizeof e->addrs[i];
  }
}


/* A frame larger than the device MTU: a peer's TSO super-frame that reached us whole (veth and
 * virtio underlays keep GSO packets intact). TCP is segmented here at the MTU; anything else drops. */
void fl_write_segmented(fl_engine *e, const fl_peer *peer, const uint8_t *frame, size_t len) {
  if (e->family == 6) { fl_write_segmented6(e, peer, frame, len); return; }
  size_t l2 = e->ops->l2;
  const uint8_t *ip = frame + l2;
  size_t ihl = fl_ipv4_header_len(ip, len - l2);
  if (!ihl || ip[9] != 6 || (fl_rd16(ip + 6) & 0x3fff) || len < l2 + ihl + 20) { STAT(e, ST_DROP_OVERSIZE)++; return; }
  size_t thl = (size_t)(ip[ihl + 12] >> 4) * 4, hdr = ihl + thl;
  if (thl < 20 || hdr >= e->mtu || hdr >= fl_rd16(ip + 2)) { STAT(e, ST_DROP_OVERSIZE)++; return; }
  size_t payload = fl_rd16(ip + 2) - hdr, mss = e->mtu - hdr;
  for (size_t off = 0; off < payload; off += mss) {
    size_t n = fl_tcp_segment(e->seg, e->slot_size, frame, l2, mss, off);
    if (!n) { STAT(e, ST_RX_WRITE_ERRORS)++; continue; }
    fl_deliver(e, peer, NULL, e->seg, n);
  }
  STAT(e, ST_SEGMENTED_SUPER_FRAMES)++;
}

/* One per-packet RX step: one recvmmsg, each datagram validated and written to the device. Returns
 * the number of datagrams, 0 when the socket had nothing, or -errno. */
static int rx_step_plain(fl_engine *e) {
  prepare_recv(e);
  int n = recvmmsg(e->udp_fd, e->msgs, FL_BATCH, MSG_DONTWAIT, NULL);
  if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -errno;
  STAT(e, ST_RX_BATCHES)++;
  for (int i = 0; i < n; i++) {
    uint8_t *pkt = e->iov[i][0].iov_base;
    if (e->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) { STAT(e, ST_DROP_OVERSIZE)++; continue; }
    const fl_peer *peer = NULL;
    size_t out = e->ops->decap(e, &e->addrs[i], &pkt, e->msgs[i].msg_len, &peer, NULL);
    if (!out) continue;
    if (out > e->mtu + e->ops->l2) { fl_write_segmented(e, peer, pkt, out); continue; }
    fl_deliver(e, peer, NULL, pkt, out);
  }
  return n;
}

static int64_t now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* Waits until the device (FL_DIR_TX) or the socket (FL_DIR_RX) is readable, or the stop fd. Returns
 * 1 when ready, 0 on timeout, 2 on stop, -errno. */
static int wait_dirs(fl_engine *e, int dirs, int timeout_ms) {
  struct pollfd p[3] = {{.fd = e->stop_fd, .events = POLLIN},
                        {.fd = dirs & FL_DIR_TX ? e->dev_fd : -1, .events = POLLIN},
                        {.fd = dirs & FL_DIR_RX ? e->udp_fd : -1, .events = POLLIN}};
  int r = poll(p, 3, timeout_ms);
  if (r < 0) return errno == EINTR ? 0 : -errno;
  if (p[0].revents) return 2;
  return r > 0 ? 1 : 0;
}

int fl_tx_step(fl_engine *e) { return e->vnet ? fl_tx_step_offload(e) : tx_step_plain(e); }
int fl_rx_step(fl_engine *e) {
  if (!e->rx_bufs && !(e->rx_bufs = malloc((size_t)FL_RX_SLOT * FL_BATCH))) return -ENOMEM;
  return e->vnet ? fl_rx_step_offload(e) : rx_step_plain(e);
}

int fl_pump(fl_engine *e, int dirs, int timeout_ms, int max_batches) {
  if (fl_stop_requested(e)) return FL_PUMP_STOPPED;
  if (dirs & FL_DIR_LEAD) return fl_pump_lead(e, timeout_ms, max_batches);
  if (dirs & FL_DIR_ASSIST) return fl_pump_assist(e, timeout_ms, max_batches);
  for (int b = 0; b < max_batches; b++) {
    fl_sync_peers(e);
    int did = 0, r;
    if (dirs & FL_DIR_TX) {
      if ((r = fl_tx_step(e)) < 0) return r;
      did += r;
    }
    if (dirs & FL_DIR_RX) {
      if ((r = fl_rx_step(e)) < 0) return r;
      did += r;
    }
    if (did) {
      if (e->spin_us) e->active_us = now_us();
      continue;
    }
    /* Busy for a moment after traffic before sleeping: what comes back within spin_us (a reply, the
     * next burst) is taken without a sleep and a wakeup. Bounded by time, not by the batch budget. */
    if (e->spin_us && now_us() - e->active_us < e->spin_us) {
      sched_yield();
      b--;
      continue;
    }
    int w = wait_dirs(e, dirs, timeout_ms);
    if (w < 0) return w;
    if (w == 2) return FL_PUMP_STOPPED;
    if (w == 0) return FL_PUMP_IDLE;
  }
  return FL_PUMP_IDLE;
}
