/* The IPv6 VTEP's packet helpers, checked with this file's own RFC 1071 sums (check.h), not the engine's:
 * header and transport sanity (ipv6.c), TCP/UDP checksums over the IPv6 pseudo-header (verify, complete,
 * keep partial, UDP 0 carried), ICMPv6 Packet Too Big (size cap 1280, MTU, addresses, checksum, RFC 4443's
 * "never answer" cases), TCP segmentation of an IPv6 super-frame (segment.c) and the IPv6 peer table's
 * longest-prefix and PublicIPv6 lookups (peers.c). Build and run: test/unit/datapath-ipv6.test.ts. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include "../src/engine.h"
#include "../src/engine_internal.h"
#include "../src/ipv4.h"
#include "../src/ipv6.h"
#include "../src/layout.h"
#include "../src/peers.h"
#include "check.h"

static const uint8_t SRC[16] = {0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0, 3, 0, 0, 0, 0, 0, 0, 0, 2};
static const uint8_t DST[16] = {0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2};

/* The test's own pseudo-header sum (not folded past 16 bits by rfc1071's contract). */
static uint32_t pseudo6(const uint8_t *ip, uint8_t nh, size_t l4len) {
  return rfc1071(ip + 8, 32, 0) + nh + (uint32_t)l4len;
}

static int l4_valid(const uint8_t *ip) {
  size_t l4len = rd16(ip + 4);
  return rfc1071(ip + 40, l4len, pseudo6(ip, ip[6], l4len)) == 0xffff;
}

/* An IPv6 TCP segment with `n` payload bytes and a complete checksum, at out; returns its length. */
static size_t tcp6(uint8_t *out, size_t n, uint32_t seq, uint8_t flags) {
  memset(out, 0, 60);
  out[0] = 0x60; wr16(out + 4, (uint16_t)(20 + n)); out[6] = 6; out[7] = 64;
  memcpy(out + 8, SRC, 16); memcpy(out + 24, DST, 16);
  uint8_t *t = out + 40;
  wr16(t, 40000); wr16(t + 2, 5201); wr32(t + 4, seq); wr32(t + 8, 777); t[12] = 5 << 4; t[13] = flags; wr16(t + 14, 1000);
  for (size_t i = 0; i < n; i++) t[20 + i] = (uint8_t)(i * 7 + 3);
  wr16(t + 16, (uint16_t)~rfc1071(t, 20 + n, pseudo6(out, 6, 20 + n)));
  return 60 + n;
}

static void header_checks(void) {
  uint8_t p[200];
  size_t len = tcp6(p, 30, 1, 0x18);
  CHECK(fl_ipv6_len(p, len) == len, "valid header: %zu", fl_ipv6_len(p, len));
  CHECK(fl_ipv6_len(p, 39) == 0, "shorter than 40 bytes");
  CHECK(fl_ipv6_len(p, len - 1) == 0, "payload length past the buffer");
  p[0] = 0x45; CHECK(fl_ipv6_len(p, len) == 0, "version 4"); p[0] = 0x60;
  CHECK(fl_ipv6_transport_ok(p), "TCP data offset 5");
  p[40 + 12] = 2 << 4; CHECK(!fl_ipv6_transport_ok(p), "TCP data offset 2"); p[40 + 12] = 15 << 4;
  CHECK(!fl_ipv6_transport_ok(p), "TCP data offset 15 past the payload"); p[40 + 12] = 5 << 4;
  p[6] = 17; wr16(p + 44, 200); CHECK(!fl_ipv6_transport_ok(p), "UDP length past the payload");
  wr16(p + 44, 7); CHECK(!fl_ipv6_transport_ok(p), "UDP length below 8");
  wr16(p + 44, 50); CHECK(fl_ipv6_transport_ok(p), "UDP length = payload");
  p[6] = 0; CHECK(fl_ipv6_transport_ok(p), "hop-by-hop: not parsed, carried");
  printf("headers: checked\n");
}

static void checksum_checks(void) {
  uint8_t p[1600];
  size_t len = tcp6(p, 1001, 5, 0x10); /* odd payload length */
  CHECK(fl_l4_checksum6(p, len, 0) == FL_CSUM_OK, "complete TCP checksum verifies");
  p[len - 1] ^= 1;
  CHECK(fl_l4_checksum6(p, len, 0) == FL_CSUM_BAD, "a flipped payload bit is bad");
  p[len - 1] ^= 1;
  uint16_t good = rd16(p + 56);
  uint32_t ps = pseudo6(p, 6, len - 40);
  while (ps >> 16) ps = (ps & 0xffff) + (ps >> 16);
  wr16(p + 56, (uint16_t)ps); /* partial: the pseudo-header sum only, as an offloading sender leaves it */
  CHECK(fl_l4_checksum6(p, len, 1) == FL_CSUM_PARTIAL && rd16(p + 56) == (uint16_t)ps, "partial kept");
  CHECK(fl_l4_checksum6(p, len, 0) == FL_CSUM_COMPLETED && rd16(p + 56) == good && l4_valid(p), "partial completed: %04x vs %04x", rd16(p + 56), good);
  /* UDP */
  uint8_t u[100] = {0x60};
  wr16(u + 4, 8 + 12); u[6] = 17; u[7] = 64; memcpy(u + 8, SRC, 16); memcpy(u + 24, DST, 16);
  wr16(u + 40, 1000); wr16(u + 42, 2000); wr16(u + 44, 20); memcpy(u + 48, "hello, ipv6!", 12);
  wr16(u + 46, (uint16_t)~rfc1071(u + 40, 20, pseudo6(u, 17, 20)));
  CHECK(fl_l4_checksum6(u, 60, 0) == FL_CSUM_OK, "UDP checksum verifies");
  wr16(u + 46, 0);
  CHECK(fl_l4_checksum6(u, 60, 0) == FL_CSUM_OK && rd16(u + 46) == 0, "UDP checksum 0: carried as it is, for the receiving socket's policy");
  u[6] = 58;
  CHECK(fl_l4_checksum6(u, 60, 0) == FL_CSUM_OK, "ICMPv6: not checked here");
  printf("checksums: checked\n");
}

static void too_big_checks(void) {
  uint8_t p[1500], out[1600];
  size_t len = tcp6(p, 1500 - 60, 9, 0x10);
  const uint8_t me[16] = {0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0, 1};
  size_t n = fl_icmp6_packet_too_big(out, sizeof out, p, len, me, 1430);
  CHECK(n == 1280, "Packet Too Big is capped at 1280 bytes: %zu", n);
  CHECK(out[0] >> 4 == 6 && out[6] == 58 && out[7] == 255 && rd16(out + 4) == n - 40, "IPv6 header");
  CHECK(memcmp(out + 8, me, 16) == 0 && memcmp(out + 24, SRC, 16) == 0, "from our device address to the sender");
  CHECK(out[40] == 2 && out[41] == 0 && rd32(out + 44) == 1430, "type 2, code 0, MTU 1430");
  CHECK(memcmp(out + 48, p, n - 48) == 0, "quotes the start of the packet");
  CHECK(rfc1071(out + 40, n - 40, pseudo6(out, 58, n - 40)) == 0xffff, "ICMPv6 checksum");
  size_t small = tcp6(p, 11, 9, 0x10);
  n = fl_icmp6_packet_too_big(out, sizeof out, p, small, me, 1430);
  CHECK(n == 48 + small && rfc1071(out + 40, n - 40, pseudo6(out, 58, n - 40)) == 0xffff, "a short packet is quoted whole (odd length)");
  CHECK(fl_icmp6_packet_too_big(out, 100, p, len, me, 1430) == 0, "no room: none");
  p[6] = 58; p[40] = 1; /* an ICMPv6 error */
  CHECK(fl_icmp6_packet_too_big(out, sizeof out, p, len, me, 1430) == 0, "never answers an ICMPv6 error");
  p[40] = 128; /* an echo request */
  CHECK(fl_icmp6_packet_too_big(out, sizeof out, p, len, me, 1430) > 0, "answers an echo request");
  p[24] = 0xff; CHECK(fl_icmp6_packet_too_big(out, sizeof out, p, len, me, 1430) == 0, "never to a multicast destination"); p[24] = 0x20;
  memset(p + 8, 0, 16); CHECK(fl_icmp6_packet_too_big(out, sizeof out, p, len, me, 1430) == 0, "never to the unspecified address");
  CHECK(fl_icmp6_packet_too_big(out, sizeof out, p, 30, me, 1430) == 0, "never for a malformed packet");
  printf("packet too big: checked\n");
}

static void segment_checks(void) {
  static uint8_t frame[14 + 60 + 5000], seg[2048];
  memset(frame, 0xab, 14);
  size_t len = 14 + tcp6(frame + 14, 5000, 1000, 0x19); /* ACK, PSH, FIN */
  size_t mss = 1370, off = 0, segs = 0;
  for (; off < 5000; off += mss, segs++) {
    size_t n = fl_tcp_segment(seg, sizeof seg, frame, 14, mss, off);
    size_t want = off + mss < 5000 ? mss : 5000 - off;
    const uint8_t *ip = seg + 14, *t = ip + 40;
    CHECK(n == 14 + 60 + want && rd16(ip + 4) == 20 + want, "segment %zu: lengths", segs);
    CHECK(rd32(t + 4) == 1000 + off, "segment %zu: sequence", segs);
    CHECK(l4_valid(ip), "segment %zu: TCP checksum", segs);
    CHECK(memcmp(t + 20, frame + 14 + 60 + off, want) == 0, "segment %zu: payload", segs);
    int last = off + mss >= 5000;
    CHECK((t[13] & 0x09) == (last ? 0x09 : 0), "segment %zu: FIN/PSH only on the last", segs);
  }
  CHECK(segs == 4 && len == 14 + 60 + 5000, "4 segments");
  printf("segmentation: %zu segments checked\n", segs);
}

static void put6(uint32_t *w, const uint8_t *a) { for (int k = 0; k < 4; k++) w[k] = rd32(a + 4 * k); }

static void peer_checks(void) {
  static uint32_t table[PT_HEADER_WORDS + 3 * PE6_WORDS];
  table[PT_CAPACITY] = 3; table[PT_COUNT] = 3; table[PT_FAMILY] = 6; table[PT_SEQ] = 2;
  const uint8_t nets[3][16] = {{0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00}, {0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0, 3}, {0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0, 3, 0x80}};
  const uint32_t lens[3] = {48, 64, 72};
  for (int i = 0; i < 3; i++) {
    uint32_t *e = table + PT_HEADER_WORDS + i * PE6_WORDS;
    uint8_t pub[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, (uint8_t)(i + 1)};
    put6(e + PE6_SUBNET, nets[i]); e[PE6_PREFIX] = lens[i]; put6(e + PE6_PUBLIC_IP, pub);
    e[PE6_PORT] = 8472; e[PE6_SLOT] = (uint32_t)i; e[PE6_MAC_HI] = 0x0e00; e[PE6_MAC_LO] = (uint32_t)i + 1;
  }
  fl_peers p;
  memset(&p, 0, sizeof p);
  CHECK(fl_peers_sync(&p, table) == 1 && p.count == 3 && p.family == 6, "snapshot of an IPv6 table");
  uint8_t a[16];
  memcpy(a, SRC, 16); /* 2001:db8:100:3::2 */
  const fl_peer *x = fl_peers_by_dst6(&p, a);
  CHECK(x && x->slot == 1, "2001:db8:100:3::2 → the /64 (longest prefix), got %d", x ? (int)x->slot : -1);
  a[8] = 0x80;
  x = fl_peers_by_dst6(&p, a);
  CHECK(x && x->slot == 2, "2001:db8:100:3:8000::2 → the /72");
  a[7] = 9;
  x = fl_peers_by_dst6(&p, a);
  CHECK(x && x->slot == 0, "2001:db8:100:9:8000::2 → the /48");
  a[5] = 1;
  CHECK(fl_peers_by_dst6(&p, a) == NULL, "outside every subnet → none");
  uint8_t pub[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  x = fl_peers_by_public6(&p, pub);
  CHECK(x && x->slot == 1 && x->mac[5] == 2, "by PublicIPv6");
  pub[15] = 9;
  CHECK(fl_peers_by_public6(&p, pub) == NULL, "unknown PublicIPv6 → none");
  CHECK(fl_in_subnet6(SRC, p.peers[1].subnet6, 64) && !fl_in_subnet6(DST, p.peers[1].subnet6, 64), "fl_in_subnet6");
  fl_peers_free(&p);
  printf("peer table: checked\n");
}

int main(void) {
  header_checks();
  checksum_checks();
  too_big_checks();
  segment_checks();
  peer_checks();
  if (failures) { fprintf(stderr, "%d checks failed\n", failures); return 1; }
  printf("all checks passed\n");
  return 0;
}
