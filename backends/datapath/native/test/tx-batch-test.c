/* The offload TX step against a real kernel: device reads are fed through a SOCK_SEQPACKET pair (one
 * read = one record), the engine sends to a UDP socket on 127.0.0.1 that has UDP_GRO on, so each UDP
 * GSO message the engine sent arrives as one train and the trains show how datagrams were grouped.
 * Every datagram is checked with our own small checksum code (not the engine's): IPv4 header, TCP or
 * UDP checksum, sequence numbers or IP IDs, sizes. Exits non-zero on the first failure.
 * Build and run: test/unit/datapath-tx-batch.test.ts. */
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
#define UDP_GRO_ 104
#define MTU 1472
#define MSS 1400


/* Valid IPv4 header and L4 checksum (the field included, the sum is all ones). */
static int valid(const uint8_t *ip, size_t len) {
  size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
  if (len < ihl || rd16(ip + 2) != len || rfc1071(ip, ihl, 0) != 0xffff) return 0;
  uint32_t pseudo = rfc1071(ip + 12, 8, 0) + ip[9] + (uint32_t)(len - ihl);
  return rfc1071(ip + ihl, len - ihl, pseudo) == 0xffff;
}

static uint32_t table[PT_HEADER_WORDS + PE_WORDS];
static uint64_t stats[ST_GLOBAL_COUNT + SP_WORDS];
static int dev[2], rx;

static void setup_mode(fl_engine *e, int gso, int mode) {
  rx = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  int one = 1, big = 8 << 20;
  setsockopt(rx, SOL_UDP_, UDP_GRO_, &one, sizeof one);
  if (setsockopt(rx, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big)) setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  if (bind(rx, (struct sockaddr *)&a, sizeof a) || getsockname(rx, (struct sockaddr *)&a, &al)) { perror("rx socket"); exit(2); }
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, dev)) { perror("socketpair"); exit(2); }
  fcntl(dev[1], F_SETFL, O_NONBLOCK);
  int sndbuf = 4 << 20;
  setsockopt(dev[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  memset(table, 0, sizeof table);
  table[PT_CAPACITY] = 1;
  table[PT_COUNT] = 1;
  uint32_t *p = table + PT_HEADER_WORDS;
  p[PE_SUBNET] = 0x0af40200; p[PE_PREFIX] = 24; p[PE_PUBLIC_IP] = INADDR_LOOPBACK; p[PE_PORT] = ntohs(a.sin_port);
  p[PE_MAC_HI] = 0x0e00; p[PE_MAC_LO] = 0x00000002;
  memset(e, 0, sizeof *e);
  e->mode = mode;
  memcpy(e->dev_mac, "\x0e\x00\x00\x00\x00\x01", 6);
  e->vni = 1;
  e->dev_fd = dev[1];
  e->udp_fd = socket(AF_INET, SOCK_DGRAM, 0);
  e->stop_fd = -1;
  e->peer_table = table;
  e->stats = stats;
  e->stat_slots = 1;
  e->dev_ip = 0x0af40100; e->own_subnet = 0x0af40100; e->own_mask = 0xffffff00;
  e->mtu = mode == FL_MODE_VXLAN ? 1450 : MTU;
  e->vnet = 1;
  e->gso = gso;
  e->uso = 1;
  if (fl_engine_init(e)) exit(2);
  fl_sync_peers(e);
}

static void setup(fl_engine *e, int gso) { setup_mode(e, gso, FL_MODE_UDP); }

static void teardown(fl_engine *e) {
  close(e->udp_fd); close(rx); close(dev[0]); close(dev[1]);
  fl_engine_free(e);
}

/* One device read: virtio header + IPv4 packet (10.244.1.2 → 10.244.2.2) with `payload` bytes of `proto`. */
static void feed(uint8_t proto, uint8_t gso_type, uint16_t gso_size, size_t payload, uint32_t seq, uint16_t id) {
  static uint8_t buf[FL_SUPER];
  size_t l4 = proto == 6 ? 20 : 8, len = 20 + l4 + payload;
  memset(buf, 0, 10 + 20 + l4);
  buf[0] = gso_type ? 1 : 0; /* NEEDS_CSUM */
  buf[1] = gso_type;
  uint16_t hdr_len = (uint16_t)(20 + l4), start = 20, off = proto == 6 ? 16 : 6;
  memcpy(buf + 2, &hdr_len, 2); memcpy(buf + 4, &gso_size, 2); memcpy(buf + 6, &start, 2); memcpy(buf + 8, &off, 2);
  uint8_t *ip = buf + 10;
  ip[0] = 0x45; wr16(ip + 2, (uint16_t)len); wr16(ip + 4, id); ip[6] = 0x40; ip[8] = 64; ip[9] = proto;
  wr32(ip + 12, 0x0af40102); wr32(ip + 16, 0x0af40202);
  wr16(ip + 10, (uint16_t)~rfc1071(ip, 20, 0));
  uint8_t *l = ip + 20;
  wr16(l, 40000); wr16(l + 2, 5201);
  if (proto == 6) { wr32(l + 4, seq); l[12] = 5 << 4; l[13] = 0x18; wr16(l + 14, 65535); }
  else wr16(l + 4, (uint16_t)(8 + payload));
  for (size_t i = 0; i < payload; i++) l[l4 + i] = (uint8_t)(seq + i);
  uint32_t pseudo = rfc1071(ip + 12, 8, 0) + proto + (uint32_t)(l4 + payload);
  if (gso_type) wr16(l + (proto == 6 ? 16 : 6), rfc1071(NULL, 0, pseudo)); /* partial, as the kernel leaves it */
  else wr16(l + (proto == 6 ? 16 : 6), (uint16_t)~rfc1071(l, l4 + payload, pseudo));
  if (write(dev[0], buf, 10 + len) != (ssize_t)(10 + len)) { perror("feed"); exit(2); }
}

/* The next train (one UDP GSO message as sent), with its datagram size in *gso; 0 when none comes within 200 ms. */
static ssize_t recv_train(uint8_t *buf, size_t cap, int *gso) {
  struct pollfd p = {.fd = rx, .events = POLLIN};
  if (poll(&p, 1, 200) <= 0) return 0;
  char ctrl[64];
  struct iovec iov = {buf, cap};
  struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl};
  ssize_t n = recvmsg(rx, &h, 0);
  *gso = (int)n;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c))
    if (c->cmsg_level == SOL_UDP_ && c->cmsg_type == UDP_GRO_) memcpy(gso, CMSG_DATA(c), sizeof *gso);
  return n;
}

/* Receives every train; returns how many, with each train's datagram count in counts[] and the
 * datagrams checked (valid, TCP sequence or UDP IP ID continuing, payload bytes as fed). */
static int receive(int *counts, int max, size_t *bytes) {
  static uint8_t buf[65536];
  int trains = 0;
  uint32_t next_seq = 0;
  int next_id = -1;
  *bytes = 0;
  for (;;) {
    int gso;
    ssize_t n = recv_train(buf, sizeof buf, &gso);
    if (n <= 0) break;
    int k = 0;
    for (ssize_t off = 0; off < n; off += gso, k++) {
      const uint8_t *ip = buf + off;
      size_t len = (size_t)(n - off < gso ? n - off : gso);
      CHECK(valid(ip, len), "train %d datagram %d: invalid IPv4 header or L4 checksum (len %zu)", trains, k, len);
      size_t l4 = ip[9] == 6 ? 20 : 8, payload = len - 20 - l4;
      uint32_t seq = ip[9] == 6 ? rd32(ip + 24) : next_seq;
      if (ip[9] == 17) {
        CHECK(next_id < 0 || rd16(ip + 4) == next_id, "train %d datagram %d: IP ID %u, expected %d", trains, k, rd16(ip + 4), next_id);
        next_id = (rd16(ip + 4) + 1) & 0xffff;
      }
      CHECK(seq == next_seq, "train %d datagram %d: sequence %u, expected %u", trains, k, seq, next_seq);
      for (size_t i = 0; i < payload; i += 97) CHECK(ip[20 + l4 + i] == (uint8_t)(seq + i), "payload byte %zu", i);
      next_seq = seq + (uint32_t)payload;
      *bytes += payload;
    }
    if (trains < max) counts[trains] = k;
    trains++;
  }
  return trains;
}

static void expect_trains(const char *what, const int *want, int nwant, size_t want_bytes) {
  int got[256] = {0};
  size_t bytes;
  int n = receive(got, 256, &bytes);
  char line[512] = "";
  for (int i = 0; i < n && i < 256; i++) snprintf(line + strlen(line), sizeof line - strlen(line), "%s%d", i ? "," : "", got[i]);
  printf("%s: trains [%s], %zu payload bytes\n", what, line, bytes);
  CHECK(bytes == want_bytes, "%s: %zu payload bytes, expected %zu", what, bytes, want_bytes);
  CHECK(n == nwant, "%s: %d trains, expected %d", what, n, nwant);
  for (int i = 0; i < nwant && i < n; i++) CHECK(got[i] == want[i], "%s: train %d has %d datagrams, expected %d", what, i, got[i], want[i]);
}

/* vxlan mode, IPv6 inside: one USO read of an Ethernet frame (to the peer's MAC) with `n` datagrams of
 * 1000 B and a shorter last one of 300 B. */
static void feed_uso6(int n) {
  static uint8_t buf[FL_SUPER];
  size_t payload = (size_t)n * 1000 + 300, len = 14 + 40 + 8 + payload;
  uint16_t v[4] = {14 + 40 + 8, 1000, 14 + 40, 6};
  buf[0] = 1; buf[1] = 5;
  memcpy(buf + 2, v, sizeof v);
  uint8_t *f = buf + 10, *ip = f + 14, *udp = ip + 40;
  memcpy(f, "\x0e\x00\x00\x00\x00\x02\x0e\x00\x00\x00\x00\x01\x86\xdd", 14);
  memset(ip, 0, 40);
  ip[0] = 0x60; wr16(ip + 4, (uint16_t)(8 + payload)); ip[6] = 17; ip[7] = 64;
  ip[8] = 0xfd; ip[23] = 1; ip[24] = 0xfd; ip[39] = 2;
  wr16(udp, 40000); wr16(udp + 2, 7100); wr16(udp + 4, (uint16_t)(8 + payload)); wr16(udp + 6, 0);
  for (size_t i = 0; i < payload; i++) udp[8 + i] = (uint8_t)i;
  if (write(dev[0], buf, 10 + len) != (ssize_t)(10 + len)) { perror("feed"); exit(2); }
}

/* Every VXLAN datagram of the USO6 case: VNI 1, IPv6 and UDP lengths, UDP checksum over the IPv6
 * pseudo-header, payload bytes continuing. Returns the datagram count. */
static int receive_uso6(void) {
  static uint8_t buf[65536];
  int count = 0;
  size_t at = 0;
  for (;;) {
    int gso;
    ssize_t n = recv_train(buf, sizeof buf, &gso);
    if (n <= 0) break;
    for (ssize_t off = 0; off < n; off += gso, count++) {
      const uint8_t *d = buf + off, *ip = d + 8 + 14, *udp = ip + 40;
      size_t len = (size_t)(n - off < gso ? n - off : gso), ulen = len - 8 - 14 - 40;
      CHECK(d[0] == 0x08 && d[6] == 1 && rd16(d + 8 + 12) == 0x86dd, "datagram %d: VXLAN header or ethertype", count);
      CHECK(rd16(ip + 4) == ulen && rd16(udp + 4) == ulen, "datagram %d: IPv6 %u / UDP %u length, expected %zu", count, rd16(ip + 4), rd16(udp + 4), ulen);
      uint32_t pseudo = rfc1071(ip + 8, 32, 0) + 17 + (uint32_t)ulen;
      CHECK(rfc1071(udp, ulen, pseudo) == 0xffff, "datagram %d: UDP checksum", count);
      CHECK(udp[8] == (uint8_t)at && udp[ulen - 1] == (uint8_t)(at + ulen - 9), "datagram %d: payload", count);
      at += ulen - 8;
    }
  }
  CHECK(at == 4 * 1000 + 300, "USO6: %zu payload bytes, expected 4300", at);
  return count;
}

int main(void) {
  fl_engine e;
  /* 1. Two super-packets of 46 full segments: 92 datagrams of 1440 B fill messages of 45 (the most
   *    that fits 65,507 B) across the two reads: 45, 45, 2 (not 45, 1, 45, 1). */
  setup(&e, 1);
  feed(6, 1, MSS, 46 * MSS, 0, 1);
  feed(6, 1, MSS, 46 * MSS, 46 * MSS, 47);
  fl_tx_step_offload(&e);
  expect_trains("two 46-segment super-packets", (int[]){45, 45, 2}, 3, 92 * MSS);
  teardown(&e);
  /* 2. A short last segment ends its message: 10 full + 700 B, then 5 full: 11, then 5. */
  setup(&e, 1);
  feed(6, 1, MSS, 10 * MSS + 700, 0, 1);
  feed(6, 1, MSS, 5 * MSS, 10 * MSS + 700, 12);
  fl_tx_step_offload(&e);
  expect_trains("short last segment", (int[]){11, 5}, 2, 15 * MSS + 700);
  teardown(&e);
  /* 3. Without UDP GSO every datagram is its own message; 92 of them exceed a batch (64 messages),
   *    which is sent mid-step, and none is lost. */
  setup(&e, 0);
  feed(6, 1, MSS, 46 * MSS, 0, 1);
  feed(6, 1, MSS, 46 * MSS, 46 * MSS, 47);
  fl_tx_step_offload(&e);
  int ones[92];
  for (int i = 0; i < 92; i++) ones[i] = 1;
  expect_trains("no UDP GSO, 92 datagrams", ones, 92, 92 * MSS);
  CHECK(STAT(&e, ST_TX_SEND_ERRORS) == 0, "send errors: %llu", (unsigned long long)STAT(&e, ST_TX_SEND_ERRORS));
  teardown(&e);
  /* 4. Five equal plain packets (no GSO from the device) share one message. */
  setup(&e, 1);
  for (int i = 0; i < 5; i++) feed(6, 0, 0, 100, (uint32_t)(i * 100), (uint16_t)(i + 1));
  fl_tx_step_offload(&e);
  expect_trains("five equal plain packets", (int[]){5}, 1, 500);
  teardown(&e);
  /* 5. USO: one UDP GSO read of 10 × 1000 B + 500 B is split into exactly those 11 datagrams, with
   *    consecutive IP IDs and complete UDP checksums. */
  setup(&e, 1);
  feed(17, 5, 1000, 10 * 1000 + 500, 0, 100);
  fl_tx_step_offload(&e);
  expect_trains("USO read", (int[]){11}, 1, 10500);
  CHECK(STAT(&e, ST_SPLIT_USO_PACKETS) == 1, "split_uso_packets %llu", (unsigned long long)STAT(&e, ST_SPLIT_USO_PACKETS));
  teardown(&e);
  /* 6. vxlan mode, IPv6 USO (a kernel VXLAN peer carries it): split with IPv6 lengths and checksums. */
  setup_mode(&e, 1, FL_MODE_VXLAN);
  feed_uso6(4);
  fl_tx_step_offload(&e);
  int n6 = receive_uso6();
  printf("USO IPv6 read, vxlan: %d datagrams\n", n6);
  CHECK(n6 == 5, "USO6: %d datagrams, expected 5", n6);
  teardown(&e);
  if (failures) { fprintf(stderr, "%d check(s) failed\n", failures); return 1; }
  printf("all checks passed\n");
  return 0;
}
