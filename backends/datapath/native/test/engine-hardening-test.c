/* The packet engine's defences against what a peer (or a sender spoofing one) puts on the wire, and a
 * few send-path edge cases, against the real kernel: datagrams really cross 127.0.0.0/8 from a socket
 * bound to the peer's PublicIP (UDP GSO sends make GRO trains), the engine runs its own fl_pump steps,
 * and what it writes to its "device" (a SOCK_SEQPACKET pair) is read back and checked with this file's
 * own checksum code. `read` is wrapped (-Wl,--wrap=read) to inject a fatal device error.
 * Exits non-zero on the first failed check. Build and run: test/unit/datapath-hardening.test.ts. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "../src/engine.h"
#include "../src/engine_internal.h"
#include "../src/layout.h"
#include "check.h"

#define SOL_UDP_ 17
#define UDP_SEGMENT_ 103
#define PEER_IP 0x7f000002u   /* 127.0.0.2: the peer's PublicIP */
#define PEER_NET 0x0af40200u  /* 10.244.2.0/24: its subnet */
#define OWN_NET 0x0af40100u   /* 10.244.1.0/24: ours */

#define STATV(e, i) ((unsigned long long)STAT(e, i))
static uint32_t pseudo(const uint8_t *ip, size_t l4len) { return rfc1071(ip + 12, 8, 0) + ip[9] + (uint32_t)l4len; }
static int header_ok(const uint8_t *ip) { return rfc1071(ip, (size_t)(ip[0] & 0x0f) * 4, 0) == 0xffff; }

/* ---- the fault injected into device reads ---- */
ssize_t __real_read(int fd, void *buf, size_t n);
static int fail_fd = -1; /* reads of this fd that find nothing fail with EIO instead of EAGAIN */
ssize_t __wrap_read(int fd, void *buf, size_t n) {
  ssize_t r = __real_read(fd, buf, n);
  if (r < 0 && errno == EAGAIN && fd == fail_fd) errno = EIO;
  return r;
}

/* ---- a node: the engine, its device pair, its socket, and the peer's socket ---- */
static uint32_t table[PT_HEADER_WORDS + PE_WORDS];
static uint64_t stats[ST_GLOBAL_COUNT + SP_WORDS];
static int dev[2], peer_fd;
static struct sockaddr_in engine_addr;

static int bound_udp(uint32_t ip, struct sockaddr_in *out) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0), big = 8 << 20;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(ip)};
  socklen_t al = sizeof a;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big)) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &al)) { perror("udp socket"); exit(2); }
  if (out) *out = a;
  return fd;
}

static void setup(fl_engine *e, int mode, int vnet) {
  struct sockaddr_in peer_addr;
  peer_fd = bound_udp(PEER_IP, &peer_addr);
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, dev)) { perror("socketpair"); exit(2); }
  int buf = 4 << 20;
  setsockopt(dev[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  setsockopt(dev[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  fcntl(dev[0], F_SETFL, O_NONBLOCK);
  fcntl(dev[1], F_SETFL, O_NONBLOCK);
  memset(table, 0, sizeof table);
  memset(stats, 0, sizeof stats);
  table[PT_SEQ] = 2;
  table[PT_CAPACITY] = 1;
  table[PT_COUNT] = 1;
  uint32_t *p = table + PT_HEADER_WORDS;
  p[PE_SUBNET] = PEER_NET; p[PE_PREFIX] = 24; p[PE_PUBLIC_IP] = PEER_IP; p[PE_PORT] = ntohs(peer_addr.sin_port);
  p[PE_MAC_HI] = 0x0e00; p[PE_MAC_LO] = 0x00000002;
  memset(e, 0, sizeof *e);
  e->mode = mode;
  memcpy(e->dev_mac, "\x0e\x00\x00\x00\x00\x01", 6);
  e->vni = 1;
  e->dev_fd = dev[1];
  e->udp_fd = bound_udp(INADDR_LOOPBACK, &engine_addr);
  e->stop_fd = -1; /* poll ignores it: never stopped */
  e->peer_table = table;
  e->stats = stats;
  e->stat_slots = 1;
  e->dev_ip = OWN_NET; e->own_subnet = OWN_NET; e->own_mask = 0xffffff00;
  e->mtu = mode == FL_MODE_VXLAN ? 1450 : 1472;
  e->vnet = vnet;
  e->uso = vnet;
  if (fl_engine_init(e)) exit(2);
  if (vnet) fl_offload_probe(e);
}

static void teardown(fl_engine *e) {
  close(e->udp_fd); close(peer_fd); close(dev[0]); close(dev[1]);
  fail_fd = -1;
  fl_engine_free(e);
}

/* An IPv4 TCP segment PEER_NET.2 → `dst` (port 40000 → 5201) with `payload` bytes of data starting at
 * `seq`, data offset `doff` (the header is 20 bytes whatever it says), its checksum complete or, when
 * `partial`, only the pseudo-header sum (as a sender's offload leaves it). Returns its length. */
static size_t tcp_packet(uint8_t *ip, uint32_t dst, uint32_t seq, size_t payload, int doff, int partial, uint16_t id) {
  size_t len = 40 + payload;
  memset(ip, 0, 40);
  ip[0] = 0x45; wr16(ip + 2, (uint16_t)len); wr16(ip + 4, id); ip[6] = 0x40; ip[8] = 64; ip[9] = 6;
  wr32(ip + 12, PEER_NET | 2); wr32(ip + 16, dst);
  wr16(ip + 10, (uint16_t)~rfc1071(ip, 20, 0));
  uint8_t *t = ip + 20;
  wr16(t, 40000); wr16(t + 2, 5201); wr32(t + 4, seq); wr32(t + 8, 1);
  t[12] = (uint8_t)(doff << 4); t[13] = 0x10; wr16(t + 14, 65535);
  for (size_t i = 0; i < payload; i++) t[20 + i] = (uint8_t)(seq + i);
  uint32_t ps = pseudo(ip, 20 + payload);
  wr16(t + 16, partial ? rfc1071(NULL, 0, ps) : (uint16_t)~rfc1071(t, 20 + payload, ps));
  return len;
}

/* Sends `n` datagrams of `seg` bytes each (the last may be shorter) from the peer to the engine: one
 * UDP GSO message when n > 1, which the engine's UDP_GRO socket receives as one train. */
static void send_train(const uint8_t *data, size_t len, size_t seg) {
  struct iovec iov = {(void *)data, len};
  char ctrl[CMSG_SPACE(sizeof(uint16_t))] = {0};
  struct msghdr h = {.msg_name = &engine_addr, .msg_namelen = sizeof engine_addr, .msg_iov = &iov, .msg_iovlen = 1};
  if (seg && seg < len) {
    uint16_t g = (uint16_t)seg;
    h.msg_control = ctrl;
    h.msg_controllen = sizeof ctrl;
    struct cmsghdr *c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = SOL_UDP_; c->cmsg_type = UDP_SEGMENT_; c->cmsg_len = CMSG_LEN(sizeof g);
    memcpy(CMSG_DATA(c), &g, sizeof g);
  }
  if (sendmsg(peer_fd, &h, 0) != (ssize_t)len) { perror("sendmsg"); exit(2); }
}

/* Lets the engine receive and write what was sent. */
static void pump_rx(fl_engine *e) {
  int r = fl_pump(e, FL_DIR_RX, 20, 4);
  CHECK(r == FL_PUMP_IDLE, "pump returned %d", r);
}

typedef struct { uint8_t vh[10]; uint8_t pkt[65600]; size_t len; } written;

/* The next packet the engine wrote to its device (virtio header split off when it has them); 0 when none. */
static int next_written(const fl_engine *e, written *w) {
  static uint8_t buf[10 + 65600];
  ssize_t n = recv(dev[0], buf, sizeof buf, MSG_DONTWAIT);
  if (n <= 0) return 0;
  size_t h = e->vnet ? 10 : 0;
  memset(w->vh, 0, sizeof w->vh);
  memcpy(w->vh, buf, h);
  w->len = (size_t)n - h;
  memcpy(w->pkt, buf + h, w->len);
  return 1;
}

static int count_written(const fl_engine *e) {
  written w;
  int n = 0;
  while (next_written(e, &w)) n++;
  return n;
}

/* 1. TCP data offsets below 5 are malformed wherever they come: a GRO train of two segments of one flow
 *    with partial checksums (which skip the payload sum) once read past the header by the coalescing
 *    code's option compare; a single segment on the per-packet path; a data offset beyond the packet. */
static void data_offset(int vnet) {
  fl_engine e;
  setup(&e, FL_MODE_UDP, vnet);
  static uint8_t train[2 * 1040];
  for (int doff = 0; doff < 5; doff++) {
    tcp_packet(train, OWN_NET | 2, 1000, 1000, doff, 1, 1);
    tcp_packet(train + 1040, OWN_NET | 2, 2000, 1000, doff, 1, 2);
    send_train(train, sizeof train, 1040);
  }
  size_t n = tcp_packet(train, OWN_NET | 2, 1, 10, 15, 0, 3); /* 60-byte header in a 30-byte segment */
  send_train(train, n, 0);
  pump_rx(&e);
  int out = count_written(&e);
  printf("data offsets 0-4 and 15 (%s): %d written, rx_malformed %llu\n", vnet ? "offload" : "per-packet", out, STATV(&e, ST_DROP_RX_MALFORMED));
  CHECK(out == 0, "data offset < 5: %d packets written", out);
  CHECK(STAT(&e, ST_DROP_RX_MALFORMED) == 11, "rx_malformed %llu, expected 11", STATV(&e, ST_DROP_RX_MALFORMED));
  teardown(&e);
}

/* 2. A corrupted inner IPv4 header is dropped, alone and inside a train: coalescing rewrites the first
 *    segment's header and discards the others', so an unchecked bad one would become valid. */
static void header_checksum(int vnet) {
  fl_engine e;
  setup(&e, FL_MODE_UDP, vnet);
  static uint8_t train[3 * 1040];
  for (int i = 0; i < 3; i++) tcp_packet(train + i * 1040, OWN_NET | 2, 1000 + (uint32_t)i * 1000, 1000, 5, 0, (uint16_t)(10 + i));
  train[1040 + 5] ^= 0x40; /* segment 2: its IP ID changed, its header checksum not */
  send_train(train, sizeof train, 1040);
  size_t n = tcp_packet(train, OWN_NET | 2, 9000, 100, 5, 0, 20);
  train[8] = 200; /* TTL changed, checksum not */
  send_train(train, n, 0);
  pump_rx(&e);
  written w;
  int out = 0;
  size_t bytes = 0;
  while (next_written(&e, &w)) {
    out++;
    CHECK(header_ok(w.pkt), "written packet %d has a bad IPv4 header checksum", out);
    bytes += rd16(w.pkt + 2) - 40;
  }
  printf("bad inner header checksums (%s): %d written with %zu payload bytes, bad_checksum %llu\n", vnet ? "offload" : "per-packet", out, bytes, STATV(&e, ST_DROP_BAD_CHECKSUM));
  CHECK(STAT(&e, ST_DROP_BAD_CHECKSUM) == 2, "bad_checksum %llu, expected 2", STATV(&e, ST_DROP_BAD_CHECKSUM));
  CHECK(out == 2 && bytes == 2000, "segments 1 and 3 written apart (%d packets, %zu bytes), segment 2 dropped", out, bytes);
  teardown(&e);
}

/* 3. The tunnel carries packets for our own subnet only: a lease holder cannot inject packets for the
 *    host's other addresses, services or other networks. */
static void foreign_destination(void) {
  fl_engine e;
  setup(&e, FL_MODE_UDP, 0);
  static uint8_t pkt[200];
  const uint32_t dsts[] = {0x0a600001 /* 10.96.0.1, a service */, 0xc0000201 /* 192.0.2.1, a host */, 0xffffffff, 0xe0000001,
                           PEER_NET | 5 /* the sender's own subnet */, OWN_NET | 5 /* ours: delivered */};
  for (size_t i = 0; i < sizeof dsts / sizeof dsts[0]; i++) send_train(pkt, tcp_packet(pkt, dsts[i], 1, 50, 5, 0, 1), 0);
  pump_rx(&e);
  written w;
  int out = 0;
  while (next_written(&e, &w)) { out++; CHECK(rd32(w.pkt + 16) == (OWN_NET | 5), "a foreign destination was written"); }
  printf("foreign destinations: %d written, foreign_destination %llu\n", out, STATV(&e, ST_DROP_FOREIGN_DESTINATION));
  CHECK(out == 1, "%d written, expected 1", out);
  CHECK(STAT(&e, ST_DROP_FOREIGN_DESTINATION) == 5, "foreign_destination %llu, expected 5", STATV(&e, ST_DROP_FOREIGN_DESTINATION));
  teardown(&e);
}

/* 4. vxlan: a super-frame larger than the MTU (a kernel peer's TSO reaching us whole) is handed to the
 *    device as GSO only when it is one whole TCP segment: never a fragment. */
static void super_frame_fragment(void) {
  fl_engine e;
  setup(&e, FL_MODE_VXLAN, 1);
  static uint8_t d[8 + 14 + 3040];
  memcpy(d, "\x08\0\0\0\0\0\x01\0", 8);
  memcpy(d + 8, "\x0e\x00\x00\x00\x00\x01\x0e\x00\x00\x00\x00\x02\x08\x00", 14);
  uint8_t *ip = d + 22;
  size_t n = tcp_packet(ip, OWN_NET | 2, 1, 3000, 5, 1, 1);
  send_train(d, 22 + n, 0); /* whole: delivered as one GSO super-packet */
  ip[6] = 0x20; /* more fragments */
  wr16(ip + 10, 0);
  wr16(ip + 10, (uint16_t)~rfc1071(ip, 20, 0));
  send_train(d, 22 + n, 0);
  pump_rx(&e);
  written w;
  int out = 0;
  while (next_written(&e, &w)) { out++; CHECK(w.vh[1] == 1 && rd16(w.pkt + 14 + 6) == 0x4000, "the super-frame written is the whole one (gso_type %u)", w.vh[1]); }
  printf("vxlan super-frames: %d written, oversize %llu\n", out, STATV(&e, ST_DROP_OVERSIZE));
  CHECK(out == 1, "%d super-frames written, expected 1", out);
  CHECK(STAT(&e, ST_DROP_OVERSIZE) == 1, "oversize %llu, expected 1", STATV(&e, ST_DROP_OVERSIZE));
  teardown(&e);
}

/* 5. A fatal device read error in the middle of a per-packet TX step: what was read before it is still
 *    sent (it was already counted as sent), then the error is returned. */
static void tx_read_error(void) {
  fl_engine e;
  setup(&e, FL_MODE_UDP, 0);
  static uint8_t pkt[200];
  for (int i = 0; i < 3; i++) {
    size_t n = tcp_packet(pkt, PEER_NET | 7, (uint32_t)i * 50, 50, 5, 0, (uint16_t)i);
    wr32(pkt + 12, OWN_NET | 2); wr32(pkt + 16, PEER_NET | 7);
    wr16(pkt + 10, 0); wr16(pkt + 10, (uint16_t)~rfc1071(pkt, 20, 0));
    if (write(dev[0], pkt, n) != (ssize_t)n) { perror("write"); exit(2); }
  }
  fail_fd = dev[1];
  int r = fl_pump(&e, FL_DIR_TX, 0, 1);
  int got = 0;
  struct pollfd p = {.fd = peer_fd, .events = POLLIN};
  while (poll(&p, 1, 100) > 0 && recv(peer_fd, pkt, sizeof pkt, 0) > 0) got++;
  printf("device read error after 3 packets: pump returned %d, %d sent, tx_packets %llu\n", r, got, STATV(&e, ST_TX_PACKETS));
  CHECK(r == -EIO, "pump returned %d, expected -EIO", r);
  CHECK(got == 3 && STAT(&e, ST_TX_PACKETS) == 3, "%d datagrams reached the peer, %llu counted as sent; expected 3 and 3", got, STATV(&e, ST_TX_PACKETS));
  teardown(&e);
}

/* 6. A UDP checksum the kernel left to us (NEEDS_CSUM) that comes out as 0 is sent as 0xFFFF: 0 would
 *    mean "no checksum". */
static void udp_zero_checksum(void) {
  fl_engine e;
  setup(&e, FL_MODE_UDP, 1);
  static uint8_t buf[10 + 200];
  uint8_t *ip = buf + 10, *u = ip + 20;
  size_t payload = 64, len = 28 + payload;
  memset(buf, 0, sizeof buf);
  buf[0] = 1; /* NEEDS_CSUM, no GSO */
  uint16_t start = 20, off = 6;
  memcpy(buf + 6, &start, 2); memcpy(buf + 8, &off, 2);
  ip[0] = 0x45; wr16(ip + 2, (uint16_t)len); ip[8] = 64; ip[9] = 17;
  wr32(ip + 12, OWN_NET | 2); wr32(ip + 16, PEER_NET | 7);
  wr16(ip + 10, (uint16_t)~rfc1071(ip, 20, 0));
  wr16(u, 4000); wr16(u + 2, 5000); wr16(u + 4, (uint16_t)(8 + payload));
  for (size_t i = 0; i < payload - 2; i++) u[8 + i] = (uint8_t)(i * 7);
  wr16(u + 6, rfc1071(NULL, 0, pseudo(ip, 8 + payload))); /* the pseudo-header sum, as the kernel leaves it */
  /* The last payload word makes the whole sum 0xFFFF, so the complemented checksum is 0. */
  uint16_t s = rfc1071(u, 8 + payload - 2, 0);
  wr16(u + 8 + payload - 2, (uint16_t)(0xffff - s));
  CHECK(rfc1071(u, 8 + payload, 0) == 0xffff, "test setup: the sum is not 0xFFFF");
  if (write(dev[0], buf, 10 + len) != (ssize_t)(10 + len)) { perror("write"); exit(2); }
  fl_pump(&e, FL_DIR_TX, 0, 1);
  static uint8_t got[200];
  struct pollfd p = {.fd = peer_fd, .events = POLLIN};
  ssize_t n = poll(&p, 1, 200) > 0 ? recv(peer_fd, got, sizeof got, 0) : -1;
  printf("UDP checksum computing to 0: sent as 0x%04x\n", n == (ssize_t)len ? rd16(got + 26) : 0);
  CHECK(n == (ssize_t)len, "datagram not sent (%zd)", n);
  CHECK(n == (ssize_t)len && rd16(got + 26) == 0xffff, "UDP checksum 0x%04x, expected 0xffff", rd16(got + 26));
  CHECK(n == (ssize_t)len && rfc1071(got + 20, 8 + payload, pseudo(got, 8 + payload)) == 0xffff, "the UDP checksum does not verify");
  teardown(&e);
}

/* 7. After loading a snapshot the worker publishes its sequence (ST_SNAPSHOT_SEQ), which the control
 *    plane waits for before it reuses a removed peer's counter slot. */
static void snapshot_seq(void) {
  fl_engine e;
  setup(&e, FL_MODE_UDP, 0);
  fl_pump(&e, FL_DIR_RX, 0, 1);
  CHECK(STAT(&e, ST_SNAPSHOT_SEQ) == 2, "snapshot seq %llu, expected 2", STATV(&e, ST_SNAPSHOT_SEQ));
  table[PT_SEQ] = 4;
  fl_pump(&e, FL_DIR_RX, 0, 1);
  printf("snapshot sequence published: %llu\n", STATV(&e, ST_SNAPSHOT_SEQ));
  CHECK(STAT(&e, ST_SNAPSHOT_SEQ) == 4, "snapshot seq %llu, expected 4", STATV(&e, ST_SNAPSHOT_SEQ));
  teardown(&e);
}

typedef struct { const char *name; void (*run)(void); } test_case;
static void data_offset_offload(void) { data_offset(1); }
static void data_offset_plain(void) { data_offset(0); }
static void header_checksum_offload(void) { header_checksum(1); }
static void header_checksum_plain(void) { header_checksum(0); }

/* Runs every case, or those named on the command line. */
int main(int argc, char **argv) {
  const test_case cases[] = {
    {"data-offset-offload", data_offset_offload}, {"data-offset-plain", data_offset_plain},
    {"header-checksum-offload", header_checksum_offload}, {"header-checksum-plain", header_checksum_plain},
    {"foreign-destination", foreign_destination}, {"super-frame-fragment", super_frame_fragment},
    {"tx-read-error", tx_read_error}, {"udp-zero-checksum", udp_zero_checksum}, {"snapshot-seq", snapshot_seq},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int wanted = argc == 1;
    for (int a = 1; a < argc; a++) wanted |= strcmp(argv[a], cases[i].name) == 0;
    if (wanted) cases[i].run();
  }
  if (failures) { fprintf(stderr, "%d check(s) failed\n", failures); return 1; }
  printf("all checks passed\n");
  return 0;
}
