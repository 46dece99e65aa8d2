/* The fuzz harness's kernel objects (see rig.h). */
#define _GNU_SOURCE
#include "rig.h"
#include "../src/engine_internal.h"
#include "../src/offload.h" /* UDP_SEGMENT, UDP_GRO */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_BYTES (32 << 20)

rig_peer rig_peers[RIG_PEERS];
const uint8_t rig_dev_mac[6] = {0x0e, 0, 0, 0, 0, 0x01};
int rig_stranger = -1;
static uint32_t table[PT_HEADER_WORDS + RIG_PEERS * PE_WORDS];
static rig_engine *engines[2][4];
static const uint32_t mtus[4] = {0, 1280, 9000, 256}; /* 0: the mode's usual 1450 (vxlan) or 1472 (udp) */

static void die(const char *what) { perror(what); abort(); }

static void big_buffers(int fd) {
  int n = BUF_BYTES;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &n, sizeof n) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &n, sizeof n);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &n, sizeof n) < 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &n, sizeof n);
}

static int udp_socket(uint32_t ip, uint16_t *port) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  big_buffers(fd);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(ip)};
  socklen_t alen = sizeof a;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || getsockname(fd, (struct sockaddr *)&a, &alen) < 0) die("bind");
  if (port) *port = ntohs(a.sin_port);
  return fd;
}

/* Four peers with different prefix lengths, the longer ones inside the /16, so that routing must
 * pick the longest prefix; two of them take partial checksums. */
static void make_peers(void) {
  static const struct { uint32_t subnet, prefix, flags; } spec[RIG_PEERS] = {
    {0x0af40200u, 24, 0},                    /* 10.244.2.0/24 */
    {0x0af50000u, 16, FL_PEER_PARTIAL_CSUM}, /* 10.245.0.0/16 */
    {0x0af50910u, 28, FL_PEER_PARTIAL_CSUM}, /* 10.245.9.16/28 */
    {0x0af50707u, 32, 0},                    /* 10.245.7.7/32 */
  };
  table[PT_CAPACITY] = RIG_PEERS;
  table[PT_COUNT] = RIG_PEERS;
  for (int i = 0; i < RIG_PEERS; i++) {
    rig_peer *p = &rig_peers[i];
    p->mask = spec[i].prefix ? 0xffffffffu << (32 - spec[i].prefix) : 0;
    p->subnet = spec[i].subnet & p->mask;
    p->public_ip = 0x7f000002u + (uint32_t)i;
    p->flags = spec[i].flags;
    memcpy(p->mac, "\x0e\x00\x00\x00\x00", 5);
    p->mac[5] = (uint8_t)(2 + i);
    p->sock = udp_socket(p->public_ip, &p->port);
    uint32_t *e = table + PT_HEADER_WORDS + i * PE_WORDS;
    e[PE_SUBNET] = spec[i].subnet; e[PE_PREFIX] = spec[i].prefix; e[PE_PUBLIC_IP] = p->public_ip; e[PE_PORT] = p->port;
    e[PE_SLOT] = (uint32_t)i; e[PE_MAC_HI] = 0x0e00; e[PE_MAC_LO] = (uint32_t)p->mac[5]; e[PE_FLAGS] = p->flags;
  }
  rig_stranger = udp_socket(0x7f000009u, NULL);
}

int rig_peer_of(uint32_t ip) {
  int best = -1;
  for (int i = 0; i < RIG_PEERS; i++)
    if ((ip & rig_peers[i].mask) == rig_peers[i].subnet && (best < 0 || rig_peers[i].mask > rig_peers[best].mask)) best = i;
  return best;
}

rig_engine *rig_engine_get(int vxlan, uint32_t mtu_index) {
  if (rig_stranger < 0) make_peers();
  rig_engine **slot = &engines[vxlan][mtu_index & 3];
  if (*slot) return *slot;
  rig_engine *r = calloc(1, sizeof *r);
  if (!r) abort();
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) die("socketpair");
  big_buffers(pair[0]);
  big_buffers(pair[1]);
  fcntl(pair[0], F_SETFL, O_NONBLOCK);
  fcntl(pair[1], F_SETFL, O_NONBLOCK);
  fl_engine *e = &r->e;
  e->mode = vxlan ? FL_MODE_VXLAN : FL_MODE_UDP;
  e->dev_fd = pair[0];
  r->dev = pair[1];
  e->udp_fd = udp_socket(0x7f000001u, &r->port);
  r->tx_fds[0] = udp_socket(0x7f000001u, NULL);
  r->tx_fds[1] = udp_socket(0x7f000001u, NULL);
  e->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  e->peer_table = table;
  e->stats = r->stats;
  e->stat_slots = RIG_PEERS;
  e->dev_ip = RIG_OWN_SUBNET;
  e->own_subnet = RIG_OWN_SUBNET;
  e->own_mask = RIG_OWN_MASK;
  e->mtu = mtus[mtu_index & 3] ? mtus[mtu_index & 3] : vxlan ? 1450 : 1472;
  e->vni = RIG_VNI;
  memcpy(e->dev_mac, rig_dev_mac, 6);
  e->vnet = 1; /* allocates the offload buffers too; rig_configure switches per run */
  if (e->stop_fd < 0 || fl_engine_init(e) != 0) die("fl_engine_init");
  if (!(e->rx_bufs = malloc((size_t)FL_RX_SLOT * FL_BATCH))) abort();
  *slot = r;
  return r;
}

void rig_configure(rig_engine *r, int vnet, int gso, int uso, int gro, int two_tx_fds, int no_check) {
  fl_engine *e = &r->e;
  e->vnet = vnet;
  e->gso = gso;
  e->uso = vnet && uso;
  e->gro = vnet && gro; /* the per-packet RX path reads no control message: GRO must be off there */
  e->tx_fds = two_tx_fds ? r->tx_fds : NULL;
  e->n_tx_fds = two_tx_fds ? 2 : 0;
  if (setsockopt(e->udp_fd, SOL_UDP, UDP_GRO, &e->gro, sizeof e->gro) < 0) die("UDP_GRO");
  int fds[3] = {e->udp_fd, r->tx_fds[0], r->tx_fds[1]};
  for (int i = 0; i < 3; i++)
    if (setsockopt(fds[i], SOL_SOCKET, SO_NO_CHECK, &no_check, sizeof no_check) < 0) die("SO_NO_CHECK");
}

int rig_send(rig_engine *r, int fd, const uint8_t *buf, size_t len, size_t seg) {
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(r->port), .sin_addr.s_addr = htonl(0x7f000001u)};
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  char ctrl[CMSG_SPACE(sizeof(uint16_t))] = {0};
  struct msghdr h = {.msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &iov, .msg_iovlen = 1};
  if (seg) {
    uint16_t gso = (uint16_t)seg;
    h.msg_control = ctrl;
    h.msg_controllen = sizeof ctrl;
    struct cmsghdr *c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof gso);
    memcpy(CMSG_DATA(c), &gso, sizeof gso);
  }
  return sendmsg(fd, &h, 0) == (ssize_t)len ? 0 : -1;
}

uint64_t rig_drops(const rig_engine *r) {
  static const int not_drops[] = {ST_TX_PACKETS, ST_TX_BYTES, ST_RX_PACKETS, ST_RX_BYTES, ST_ICMP_UNREACHABLE_SENT,
    ST_TX_BATCHES, ST_RX_BATCHES, ST_PEER_TABLE_LOADS, ST_CHECKSUMS_COMPLETED, ST_SEGMENTED_SUPER_FRAMES,
    ST_COALESCED_SUPER_PACKETS, ST_TX_PARTIAL_CHECKSUMS, ST_RX_PARTIAL_CHECKSUMS, ST_SPLIT_USO_PACKETS, ST_COALESCED_UDP_PACKETS};
  uint64_t n = 0;
  for (int i = 0; i < ST_GLOBAL_COUNT; i++) {
    int skip = i == 31; /* ST_SNAPSHOT_SEQ in newer layouts: a sequence number, not a counter */
    for (size_t k = 0; k < sizeof not_drops / sizeof *not_drops; k++) skip |= not_drops[k] == i;
    /* A failed send or write may lose a whole GSO message or super-packet: up to 64 datagrams. */
    if (!skip) n += r->stats[i] * (i == ST_TX_SEND_ERRORS || i == ST_RX_WRITE_ERRORS ? 64 : 1);
  }
  return n;
}
