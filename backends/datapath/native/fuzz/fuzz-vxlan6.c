/* libFuzzer target for the IPv6 VTEP (an engine of family 6, vxlan6.c, and its offload and per-packet loops),
 * with a small oracle of its own. Kernel objects, no root: the device is a SOCK_SEQPACKET pair, the engine's
 * socket is bound on [::1], two peers on [::1] (other ports) send what it receives and receive what it sends.
 * Peer A: 2001:db8:2::/64, complete checksums; peer B: 2001:db8:2:0:8000::/65 (inside A's, longest prefix
 * wins), accepts partial checksums; both have PublicIPv6 ::1, so RX finds one of them by address and the
 * MAC check decides. Our subnet 2001:db8:1::/64.
 *
 * Input: byte 0: bit 0 virtio headers (offload loops), bit 1 UDP GSO, bit 2 UDP GRO, bit 3 USO, bits 4-5 the
 * MTU (1430, 1280, 9000, 1500). Then records of 8 header bytes and up to n payload bytes:
 *   [0] bit 0 TX (else RX), bit 1 fix the TCP/UDP checksum, bit 2 wrong VNI, bit 3 lie in the payload length,
 *       bit 4 peer B's MAC (else A's), bit 5 pump after this record, bits 6-7 virtio gso_type on TX (none, TCPV6,
 *       UDP_L4, from byte [7]); [1-2] n; [3] next header (TCP, UDP, ICMPv6, hop-by-hop); [4] source (in A, in B,
 *       outside, ours) and destination (bits 2-3: ours, in A, in B, outside); [5] TCP sequence step selector;
 *       [6] TCP flags; [7] gso_size/8 or virtio flags.
 * The transport header is built (TCP: a flow whose sequence advances, data offset 5; UDP: length) unless the
 * input's own bytes say otherwise; payload bytes come from the input.
 *
 * Oracle (this file's own checksum code): every frame written to the device is IPv6 to our MAC with a
 * consistent payload length; a NEEDS_CSUM write points at the TCP/UDP checksum and carries the pseudo-header
 * sum; any other TCP/UDP write has a valid checksum unless the accepted input's own was bad; GSO writes are
 * TCPV6 or UDP_L4 with a sane gso_size; every datagram sent is VXLAN (I flag, VNI 1) with an IPv6 frame within
 * the MTU whose checksum is valid (or partial to peer B only); after a read with virtio fields from the input,
 * datagrams are only checked for VXLAN framing and size. Violations abort. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include "../src/engine.h"
#include "../src/engine_internal.h"
#include "../src/layout.h"
#include "../src/offload.h"

#define ORACLE(cond, ...) do { if (!(cond)) { fprintf(stderr, "ORACLE: "); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

static const uint8_t DEV_MAC[6] = {0x0e, 0, 0, 0, 6, 1}, MAC_A[6] = {0x0e, 0, 0, 0, 6, 2}, MAC_B[6] = {0x0e, 0, 0, 0, 6, 3};
static const uint8_t OURS[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1}, NET_A[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 2};
static const uint8_t NET_B[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0x80}, OUTSIDE[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 9};
static const uint32_t MTUS[4] = {1430, 1280, 9000, 1500};
static int dev[2] = {-1, -1}, eng_sock = -1, peer_a = -1, peer_b = -1, stop_fd = -1;
static uint16_t eng_port;
static uint32_t table[PT_HEADER_WORDS + 2 * PE6_WORDS];
static uint64_t stats[ST_GLOBAL_COUNT + 2 * SP_WORDS];
static uint8_t buf[FL_SUPER + 64];

static int udp6(uint16_t *port) {
  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int big = 16 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  socklen_t al = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &al)) { perror("udp6"); abort(); }
  *port = ntohs(a.sin6_port);
  return fd;
}

static void put6(uint32_t *w, const uint8_t *a) { for (int k = 0; k < 4; k++) w[k] = (uint32_t)a[4 * k] << 24 | (uint32_t)a[4 * k + 1] << 16 | (uint32_t)a[4 * k + 2] << 8 | a[4 * k + 3]; }

static void setup_once(void) {
  if (eng_sock >= 0) return;
  uint16_t pa, pb;
  eng_sock = udp6(&eng_port);
  peer_a = udp6(&pa);
  peer_b = udp6(&pb);
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, dev)) abort();
  fcntl(dev[0], F_SETFL, O_NONBLOCK);
  fcntl(dev[1], F_SETFL, O_NONBLOCK);
  int big = 8 << 20;
  setsockopt(dev[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  setsockopt(dev[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  stop_fd = eventfd(0, EFD_NONBLOCK);
  table[PT_CAPACITY] = 2; table[PT_COUNT] = 2; table[PT_FAMILY] = 6; table[PT_SEQ] = 2;
  const uint8_t lo[16] = {[15] = 1};
  for (int i = 0; i < 2; i++) {
    uint32_t *e = table + PT_HEADER_WORDS + i * PE6_WORDS;
    put6(e + PE6_SUBNET, i ? NET_B : NET_A); e[PE6_PREFIX] = i ? 65 : 64; put6(e + PE6_PUBLIC_IP, lo);
    e[PE6_PORT] = i ? pb : pa; e[PE6_SLOT] = (uint32_t)i; e[PE6_MAC_HI] = 0x0e00; e[PE6_MAC_LO] = i ? 0x0603 : 0x0602;
    e[PE6_FLAGS] = i ? FL_PEER_PARTIAL_CSUM : 0;
  }
}

/* The test's own checksums. */
static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s) {
  for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) s += (uint32_t)p[n - 1] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return s;
}
static uint32_t pseudo(const uint8_t *ip, uint8_t nh, size_t l4len) { return sum16(ip + 8, 32, 0) + nh + (uint32_t)l4len; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, (uint16_t)(v >> 16)); wr16(p + 2, (uint16_t)v); }

static int l4_valid(const uint8_t *ip, size_t l4len) {
  return sum16(ip + 40, l4len, pseudo(ip, ip[6], l4len)) == 0xffff;
}
static int l4_partial(const uint8_t *ip, size_t l4len) {
  uint32_t s = pseudo(ip, ip[6], l4len);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return rd16(ip + 40 + (ip[6] == 6 ? 16 : 6)) == (uint16_t)s;
}

static int bad_inputs; /* accepted inputs may carry a bad checksum only when the harness did not fix it */
/* A device read with virtio fields from the input (not what the kernel hands over: e.g. a csum_start inside
 * the Ethernet header, where the engine writes the checksum it was told to): its datagram's inner frame is
 * only checked for size. */
static int wild;

static void check_device(int vnet) {
  for (;;) {
    ssize_t r = recv(dev[1], buf, sizeof buf, MSG_DONTWAIT);
    if (r < 0) return;
    size_t off = vnet ? FL_VNET_HDR_LEN : 0, len = (size_t)r - off;
    vnet_hdr vh = {0};
    if (vnet) { ORACLE((size_t)r >= off, "short device write"); memcpy(&vh, buf, sizeof vh); }
    const uint8_t *f = buf + off, *ip = f + 14;
    ORACLE(len >= 54 && rd16(f + 12) == 0x86dd && ip[0] >> 4 == 6, "device write: not an IPv6 frame (%zu bytes)", len);
    ORACLE(54 + (size_t)rd16(ip + 4) == len, "device write: payload length %u for %zu bytes", rd16(ip + 4), len);
    size_t l4len = len - 54;
    int icmp_ptb = ip[6] == 58 && l4len >= 8 && ip[40] == 2 && memcmp(ip + 8, OURS, 16) == 0; /* ours: from the device address */
    if (icmp_ptb) { ORACLE(l4_valid(ip, l4len) && len <= 14 + 1280, "Packet Too Big: bad checksum or size"); continue; }
    ORACLE(memcmp(f, DEV_MAC, 6) == 0, "device write: not to our MAC");
    if (vh.flags & VNET_F_NEEDS_CSUM) {
      ORACLE((ip[6] == 6 || ip[6] == 17) && vh.csum_start == 54 && vh.csum_offset == (ip[6] == 6 ? 16 : 6), "NEEDS_CSUM: csum_start %u offset %u nh %u", vh.csum_start, vh.csum_offset, ip[6]);
      ORACLE(l4_partial(ip, l4len), "NEEDS_CSUM: the field is not the pseudo-header sum");
    } else if ((ip[6] == 6 || ip[6] == 17) && len <= 14 + 9000) {
      ORACLE(l4_valid(ip, l4len) || bad_inputs, "device write: invalid TCP/UDP checksum");
    }
    uint8_t g = vh.gso_type & (uint8_t)~VNET_GSO_ECN;
    ORACLE(g == VNET_GSO_NONE || (g == VNET_GSO_TCPV6 && ip[6] == 6) || (g == VNET_GSO_UDP_L4 && ip[6] == 17), "device write: gso_type %u for nh %u", g, ip[6]);
    if (g != VNET_GSO_NONE) ORACLE(vh.gso_size > 0 && (vh.flags & VNET_F_NEEDS_CSUM), "GSO write without gso_size or NEEDS_CSUM");
  }
}

static void check_sent(int sock, int partial_ok, uint32_t mtu) {
  for (;;) {
    ssize_t r = recv(sock, buf, sizeof buf, MSG_DONTWAIT);
    if (r < 0) return;
    size_t len = (size_t)r;
    ORACLE(len >= 8 + 54 && buf[0] == 0x08 && !buf[1] && !buf[2] && !buf[3] && buf[4] == 0 && buf[5] == 0 && buf[6] == 1 && !buf[7], "datagram: bad VXLAN header");
    const uint8_t *f = buf + 8, *ip = f + 14;
    ORACLE(len - 8 - 14 <= mtu || wild, "datagram: %zu bytes inside, above the MTU %u", len - 22, mtu);
    if (wild) continue;
    ORACLE(rd16(f + 12) == 0x86dd && 8 + 54 + (size_t)rd16(ip + 4) == len, "datagram: IPv6 length");
    ORACLE(len - 8 - 14 <= mtu, "datagram: %zu bytes inside, above the MTU %u", len - 22, mtu);
    size_t l4len = len - 62;
    if (ip[6] == 6 || ip[6] == 17) ORACLE(l4_valid(ip, l4len) || (partial_ok && ip[6] == 6 && l4_partial(ip, l4len)) || bad_inputs, "datagram: invalid inner checksum");
  }
}

static uint32_t seq_of[2];

/* One inner IPv6 packet at out (from the record), returns its length. */
static size_t build_ip(uint8_t *out, const uint8_t *h, const uint8_t *data, size_t n) {
  static const uint8_t nhs[4] = {6, 17, 58, 0};
  uint8_t nh = nhs[h[3] & 3];
  const uint8_t *srcs[4] = {NET_A, NET_B, OUTSIDE, OURS}, *dsts[4] = {OURS, NET_A, NET_B, OUTSIDE};
  memset(out, 0, 40);
  out[0] = 0x60; out[6] = nh; out[7] = 64;
  memcpy(out + 8, srcs[h[4] & 3], 16); out[8 + 15] = 2;
  memcpy(out + 24, dsts[(h[4] >> 2) & 3], 16); out[24 + 15] = 3;
  uint8_t *l4 = out + 40;
  size_t l4len = n;
  memcpy(l4, data, n);
  if (nh == 6 && n >= 20) {
    int flow = h[4] & 1;
    wr16(l4, 40000); wr16(l4 + 2, 5201);
    uint32_t step = (h[5] & 3) == 3 ? 0 : (uint32_t)(n - 20);
    wr32(l4 + 4, seq_of[flow]); seq_of[flow] += step;
    wr32(l4 + 8, 1);
    if (!(h[5] & 4)) l4[12] = 5 << 4;
    l4[13] = h[6];
  } else if (nh == 17 && n >= 8) {
    wr16(l4 + 4, (uint16_t)n);
  }
  wr16(out + 4, (uint16_t)((h[0] & 8) ? n + (h[7] & 15) : n));
  if ((h[0] & 2) && (nh == 6 || nh == 17) && n >= (nh == 6 ? 18u : 8u)) {
    size_t at = nh == 6 ? 16 : 6;
    wr16(l4 + at, 0);
    uint16_t c = (uint16_t)~sum16(l4, l4len, pseudo(out, nh, l4len));
    wr16(l4 + at, nh == 17 && c == 0 ? 0xffff : c);
  } else if (nh == 6 || nh == 17) {
    bad_inputs = 1;
  }
  return 40 + n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  setup_once();
  if (size < 1) return 0;
  uint8_t flags = data[0];
  int vnet = flags & 1;
  fl_engine e;
  memset(&e, 0, sizeof e);
  memset(stats, 0, sizeof stats);
  e.mode = FL_MODE_VXLAN; e.family = 6;
  e.dev_fd = dev[0]; e.udp_fd = eng_sock; e.stop_fd = stop_fd;
  e.peer_table = table; e.stats = stats; e.stat_slots = 2;
  memcpy(e.dev_mac, DEV_MAC, 6);
  memcpy(e.dev_ip6, OURS, 16); memcpy(e.own_subnet6, OURS, 16); e.own_prefix6 = 64;
  e.mtu = MTUS[(flags >> 4) & 3]; e.vni = 1; e.vnet = vnet;
  if (fl_engine_init(&e) < 0) abort();
  if (vnet) {
    int gro = (flags & 4) != 0;
    setsockopt(eng_sock, SOL_UDP, UDP_GRO, &gro, sizeof gro);
    e.gro = gro; e.gso = (flags & 2) != 0; e.uso = (flags & 8) != 0;
  }
  bad_inputs = wild = 0;
  seq_of[0] = seq_of[1] = 1000;
  size_t at = 1;
  static uint8_t pkt[FL_SUPER];
  while (at + 8 <= size) {
    const uint8_t *h = data + at;
    at += 8;
    size_t n = (size_t)rd16(h + 1) % 9100, avail = size - at;
    if (n > avail + 2000) n = avail + 2000; /* the rest is zeros */
    uint8_t payload[9200] = {0};
    memcpy(payload, data + at, n < avail ? n : avail);
    at += n < avail ? n : avail;
    size_t o = 0;
    if (h[0] & 1) { /* TX: a device read */
      vnet_hdr vh = {0};
      uint8_t g = (uint8_t)(h[0] >> 6);
      if (vnet) {
        if (g == 1) { vh.gso_type = VNET_GSO_TCPV6; vh.gso_size = (uint16_t)(h[7] * 8); vh.flags = VNET_F_NEEDS_CSUM; }
        if (g == 2) { vh.gso_type = VNET_GSO_UDP_L4; vh.gso_size = (uint16_t)(h[7] * 8); vh.flags = VNET_F_NEEDS_CSUM; vh.csum_start = 54; vh.csum_offset = 6; }
        if (g == 3) { wild = 1; vh.gso_type = h[7] & 7; vh.flags = h[7] >> 7; vh.gso_size = (uint16_t)(h[6] * 8); vh.csum_start = (uint16_t)(h[5] * 2); vh.csum_offset = h[3]; }
        memcpy(pkt, &vh, sizeof vh);
        o = FL_VNET_HDR_LEN;
      }
      memcpy(pkt + o, (h[0] & 16) ? MAC_B : MAC_A, 6);
      memcpy(pkt + o + 6, DEV_MAC, 6);
      wr16(pkt + o + 12, 0x86dd);
      size_t len = o + 14 + build_ip(pkt + o + 14, h, payload, n);
      send(dev[1], pkt, len, MSG_DONTWAIT);
    } else { /* RX: a datagram from peer A's socket (B's MAC when asked: a spoof the MAC check must catch) */
      memset(pkt, 0, 8);
      pkt[0] = 0x08; pkt[6] = (h[0] & 4) ? 2 : 1;
      memcpy(pkt + 8, DEV_MAC, 6);
      memcpy(pkt + 14, (h[0] & 16) ? MAC_B : MAC_A, 6);
      wr16(pkt + 20, 0x86dd);
      size_t len = 22 + build_ip(pkt + 22, h, payload, n);
      struct sockaddr_in6 to = {.sin6_family = AF_INET6, .sin6_port = htons(eng_port), .sin6_addr = IN6ADDR_LOOPBACK_INIT};
      sendto((h[0] & 16) ? peer_b : peer_a, pkt, len, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to);
    }
    if (h[0] & 32) { fl_pump(&e, FL_DIR_TX | FL_DIR_RX, 0, 4); check_device(vnet); check_sent(peer_a, 0, e.mtu); check_sent(peer_b, 1, e.mtu); }
  }
  fl_pump(&e, FL_DIR_TX | FL_DIR_RX, 0, 16);
  check_device(vnet);
  check_sent(peer_a, 0, e.mtu);
  check_sent(peer_b, 1, e.mtu);
  if (getenv("FUZZ_VERBOSE"))
    fprintf(stderr, "rx %lu tx %lu coalesced %lu udp %lu super %lu ptb %lu partial %lu malformed %lu spoofed %lu bad_csum %lu oversize %lu\n",
            (unsigned long)stats[ST_RX_PACKETS], (unsigned long)stats[ST_TX_PACKETS], (unsigned long)stats[ST_COALESCED_SUPER_PACKETS],
            (unsigned long)stats[ST_COALESCED_UDP_PACKETS], (unsigned long)stats[ST_SEGMENTED_SUPER_FRAMES], (unsigned long)stats[ST_ICMP_UNREACHABLE_SENT], (unsigned long)stats[ST_RX_PARTIAL_CHECKSUMS],
            (unsigned long)stats[ST_DROP_RX_MALFORMED], (unsigned long)stats[ST_DROP_SPOOFED_SOURCE], (unsigned long)stats[ST_DROP_BAD_CHECKSUM], (unsigned long)stats[ST_DROP_OVERSIZE]);
  /* drain whatever is left anywhere (a read the pump budget did not reach) */
  while (recv(dev[0], buf, sizeof buf, MSG_DONTWAIT) > 0) {}
  while (recv(eng_sock, buf, sizeof buf, MSG_DONTWAIT) > 0) {}
  fl_engine_free(&e);
  return 0;
}
