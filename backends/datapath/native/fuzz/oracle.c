/* The fuzz oracle (see oracle.h). Its rules are its own reading of the wire formats, not the
 * engine's code: IPv4 and TCP/UDP checksums, virtio_net_hdr GSO semantics as the kernel applies
 * them to a device write, longest-prefix routing, and which inputs the engine may or must pass. */
#define _GNU_SOURCE
#include "oracle.h"
#include "pkt.h"
#include "rig.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RECS 2048
#define ARENA (4u << 20)
#define GSO_NONE 0
#define GSO_TCPV4 1
#define GSO_UDP_L4 5
#define NEEDS_CSUM 1

enum { K_OPAQUE, K_STREAM, K_DGRAM };

/* What one input must come out as: a TCP byte range, a UDP datagram, or a packet as it is. */
typedef struct {
  const uint8_t *frame; /* l2 header, then the IPv4 packet */
  size_t len;
  const uint8_t *payload;
  size_t plen;
  uint32_t seq;
  uint16_t id;
  uint8_t kind, is_ip, ttl_out, ip_ok, l4;
  int accepted, clean, peer, unit;
  uint8_t *covered; /* K_STREAM: one byte per payload byte */
  int hit;
} rec;

typedef struct {
  const uint8_t *ip;
  size_t ihl, total, l4h;
  int kind;
  const uint8_t *payload;
  size_t plen;
} view;

static oracle_run run;
static rec recs[MAX_RECS];
static int n_recs, n_units, n_out;
static const uint8_t *reads[MAX_RECS]; /* TX: each read as it was (an ICMP error quotes it) */
static size_t read_lens[MAX_RECS];
static uint8_t arena[ARENA];
static size_t arena_used;
static uint8_t seg[65536 + 256];

static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "ORACLE: %s %s%s: ", run.vxlan ? "vxlan" : "udp", run.rx ? "RX" : "TX", run.vnet ? "" : " (no virtio header)");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  abort();
}

static size_t l2(void) { return run.vxlan ? 14 : 0; }
static size_t pre(void) { return run.vxlan ? 8 : 0; }

static uint8_t *alloc(size_t n) {
  if (arena_used + n > ARENA) fail("harness arena exhausted (%zu bytes)", arena_used + n);
  uint8_t *p = arena + arena_used;
  arena_used += (n + 7) & ~(size_t)7;
  return p;
}

/* An IPv4 packet in ip[0..len): 0 if it is not one (version, header length, total length). */
static int parse(const uint8_t *ip, size_t len, view *v) {
  memset(v, 0, sizeof *v);
  if (len < 20 || ip[0] >> 4 != 4) return 0;
  v->ip = ip;
  v->ihl = (size_t)(ip[0] & 15) * 4;
  v->total = rd16(ip + 2);
  if (v->ihl < 20 || v->total < v->ihl || v->total > len) return 0;
  const uint8_t *l4 = ip + v->ihl;
  size_t l4len = v->total - v->ihl;
  int frag = (rd16(ip + 6) & 0x3fff) != 0;
  if (ip[9] == 6 && !frag && l4len >= 20 && l4[12] >> 4 >= 5 && (size_t)(l4[12] >> 4) * 4 <= l4len) {
    v->kind = K_STREAM;
    v->l4h = (size_t)(l4[12] >> 4) * 4;
  } else if (ip[9] == 17 && !frag && l4len >= 8 && rd16(l4 + 4) == l4len) {
    v->kind = K_DGRAM;
    v->l4h = 8;
  } else {
    v->kind = K_OPAQUE;
    return 1;
  }
  v->payload = l4 + v->l4h;
  v->plen = l4len - v->l4h;
  return 1;
}

static int same_flow(const view *a, const uint8_t *b_ip) {
  return a->ip[9] == b_ip[9] && memcmp(a->ip + 12, b_ip + 12, 8) == 0 && memcmp(a->ip + a->ihl, b_ip + (size_t)(b_ip[0] & 15) * 4, 4) == 0;
}

void oracle_begin(const oracle_run *r) {
  run = *r;
  n_recs = n_units = n_out = 0;
  arena_used = 0;
}

static rec *add_rec(const uint8_t *frame, size_t len, int unit) {
  if (n_recs == MAX_RECS) fail("too many input records");
  rec *r = &recs[n_recs++];
  memset(r, 0, sizeof *r);
  r->frame = frame;
  r->len = len;
  r->unit = unit;
  r->peer = -1;
  r->kind = K_OPAQUE;
  const uint8_t *ip = frame + l2();
  view v;
  if (len >= l2() && parse(ip, len - l2(), &v)) {
    r->kind = (uint8_t)v.kind;
    r->is_ip = !run.vxlan || rd16(frame + 12) == 0x0800;
    r->payload = v.payload;
    r->plen = v.plen;
    r->ip_ok = (uint8_t)pk_ip_csum_ok(ip);
    r->l4 = (uint8_t)pk_l4_state(ip, v.total);
    r->ttl_out = (uint8_t)(ip[8] - (run.vxlan ? 0 : 1));
    if (v.kind == K_STREAM) r->seq = rd32(ip + v.ihl + 4);
    if (v.kind == K_DGRAM) r->id = rd16(ip + 4);
  }
  if (r->kind == K_STREAM) memset(r->covered = alloc(r->plen + 1), 0, r->plen + 1);
  return r;
}

/* A USO super-packet: one datagram per gso bytes of payload, IDs counting up from the super-packet's. */
static void add_slices(const uint8_t *frame, const view *v, size_t gso, int unit, int peer, int accepted, int clean) {
  for (size_t o = 0, i = 0; gso && o < v->plen; o += gso, i++) {
    rec *r = add_rec(frame, l2() + v->total, unit);
    r->kind = K_DGRAM;
    r->payload = v->payload + o;
    r->plen = v->plen - o < gso ? v->plen - o : gso;
    r->id = (uint16_t)(rd16(v->ip + 4) + i);
    r->l4 = L4_VALID;
    r->peer = peer;
    r->accepted = accepted;
    r->clean = accepted && clean;
  }
}

/* A TCP or UDP header that lies inside the packet (a later fragment has none). */
static int transport_sane(const view *v) {
  const uint8_t *ip = v->ip, *l4 = ip + v->ihl;
  size_t l4len = v->total - v->ihl;
  uint16_t frag = rd16(ip + 6);
  if (frag & 0x1fff) return 1;
  if (ip[9] == 6) return l4len >= 20 && l4[12] >> 4 >= 5 && (size_t)(l4[12] >> 4) * 4 <= l4len;
  if (ip[9] == 17) return l4len >= 8 && ((frag & 0x2000) || (rd16(l4 + 4) >= 8 && rd16(l4 + 4) <= l4len));
  return 1;
}

static int in_own_subnet(uint32_t ip) { return (ip & RIG_OWN_MASK) == RIG_OWN_SUBNET; }

void oracle_rx_input(const uint8_t *d, size_t len, int peer, size_t built_len, int framing_ok, size_t uso_mss) {
  int unit = n_units++, ok = peer >= 0;
  const uint8_t *frame = d + pre();
  size_t flen = len >= pre() ? len - pre() : 0;
  if (run.vxlan) {
    static const uint8_t vx[8] = {0x08, 0, 0, 0, 0, 0, RIG_VNI, 0};
    ok = ok && len >= 8 + 14 && memcmp(d, vx, 8) == 0 && memcmp(frame, rig_dev_mac, 6) == 0 &&
         memcmp(frame + 6, rig_peers[peer].mac, 6) == 0 && rd16(frame + 12) == 0x0800;
  }
  view v;
  int ip_ok = flen >= l2() && parse(frame + l2(), flen - l2(), &v);
  if (!ip_ok) { add_rec(frame, flen, unit); return; }
  const uint8_t *ip = v.ip;
  int super = v.total > run.mtu;
  if (run.vxlan && super && uso_mss && v.kind == K_DGRAM) { /* a peer's USO super-frame: the datagrams it meant */
    int accepted = ok && (rd32(ip + 12) & rig_peers[peer].mask) == rig_peers[peer].subnet;
    add_slices(frame, &v, uso_mss, unit, peer, accepted, 0);
    return;
  }
  rec *r = add_rec(frame, l2() + v.total, unit);
  r->peer = peer;
  ok = ok && (rd32(ip + 12) & rig_peers[peer].mask) == rig_peers[peer].subnet;
  ok = ok && (run.vxlan || ip[8] > 1);
  /* A vxlan super-frame is segmented with fresh checksums: the engine does not check it (noted in README). */
  ok = ok && (r->l4 != L4_BAD || (run.vxlan && super));
  r->accepted = ok;
  r->clean = ok && framing_ok && !super && r->ip_ok && in_own_subnet(rd32(ip + 16)) && v.total == built_len &&
             transport_sane(&v) && ip[8] > 1 && r->l4 != L4_BAD;
}

/* A NEEDS_CSUM checksum completed as the kernel would: ~sum from csum_start, stored at csum_start +
 * csum_offset; a UDP checksum that comes out 0 is sent as 0xFFFF (0 means none). */
static void complete(uint8_t *frame, size_t len, size_t start, size_t off) {
  if (start > len || start + off + 2 > len) return;
  uint16_t c = (uint16_t)~pk_fold(pk_sum(frame + start, len - start, 0));
  const uint8_t *ip = frame + l2();
  if (c == 0 && off == 6 && len >= l2() + 20 && ip[9] == 17 && start == l2() + (size_t)(ip[0] & 15) * 4) c = 0xffff;
  wr16(frame + start + off, c);
}

void oracle_tx_input(const uint8_t *read, size_t len) {
  int unit = n_units++;
  uint8_t vh[10] = {0};
  if (run.vnet) { memcpy(vh, read, 10); read += 10; len -= 10; }
  if (unit < MAX_RECS) { reads[unit] = read; read_lens[unit] = len; }
  uint8_t flags = vh[0], type = vh[1] & 0x7f;
  size_t gso = (size_t)(vh[4] | vh[5] << 8), start = (size_t)(vh[6] | vh[7] << 8), off = (size_t)(vh[8] | vh[9] << 8);
  int peer = -1;
  view v;
  int is_ip = len >= l2() && (!run.vxlan || rd16(read + 12) == 0x0800) && parse(read + l2(), len - l2(), &v);
  if (run.vxlan) {
    for (int i = 0; i < RIG_PEERS && len >= 14; i++) if (!(read[0] & 1) && memcmp(read, rig_peers[i].mac, 6) == 0) peer = i;
  } else if (is_ip) {
    peer = v.ip[8] > 1 ? rig_peer_of(rd32(v.ip + 16)) : -1;
  }
  const uint8_t *frame = read;
  if (type == GSO_NONE && (flags & NEEDS_CSUM)) { /* what must go out: the read with its checksum completed */
    uint8_t *copy = alloc(len);
    memcpy(copy, read, len);
    /* over what goes out: in udp mode the IPv4 packet, not the bytes of the read past its total length */
    complete(copy, is_ip && !run.vxlan && v.total < len ? v.total : len, start, off);
    frame = copy;
    if (is_ip) parse(copy + l2(), len - l2(), &v);
  }
  int exact = is_ip && v.total + l2() == len && pk_ip_csum_ok(v.ip) && v.ip[8] > 1;
  int csum_at = is_ip && start == l2() + v.ihl && off == (v.ip[9] == 6 ? 16u : 6u);
  if (is_ip && type == GSO_UDP_L4 && v.ip[9] == 17 && !(rd16(v.ip + 6) & 0x3fff) && v.total >= v.ihl + 8) {
    /* the super-packet's UDP length field does not matter: each datagram gets its own */
    v.kind = K_DGRAM;
    v.l4h = 8;
    v.payload = v.ip + v.ihl + 8;
    v.plen = v.total - v.ihl - 8;
    int clean = exact && csum_at && gso > 0 && v.plen > 0 && v.ihl + 8 + gso <= run.mtu && (flags & NEEDS_CSUM);
    add_slices(frame, &v, gso, unit, peer, peer >= 0, clean);
    return;
  }
  rec *r = add_rec(frame, is_ip && run.vxlan == 0 ? v.total : len, unit);
  r->peer = peer;
  r->accepted = peer >= 0;
  if (type == GSO_TCPV4 && r->kind == K_STREAM) {
    r->l4 = L4_VALID;
    r->clean = r->accepted && exact && gso > 0 && r->plen > 0 && v.ihl + v.l4h < run.mtu && !(rd16(v.ip + 6) & 0x3fff);
  } else if (type == GSO_NONE) {
    r->clean = r->accepted && exact && len <= l2() + run.mtu && transport_sane(&v) && (!(flags & NEEDS_CSUM) || csum_at) && r->l4 != L4_BAD;
  }
}

/* Everything but TTL, IPv4 checksum and TCP/UDP checksum field equal (and the TTL as it must be). */
static int same_packet(const rec *r, const uint8_t *frame, size_t len) {
  if (r->len != len) return 0;
  if (!r->is_ip) return memcmp(r->frame, frame, len) == 0;
  size_t a = l2(), ihl = (size_t)(frame[a] & 15) * 4;
  size_t skip[4] = {a + 8, a + 10, a + 11, (size_t)-1};
  if (len >= a + 20 && pk_l4_checked(frame + a)) skip[3] = a + ihl + (frame[a + 9] == 6 ? 16 : 6);
  if (len >= a + 20 && frame[a + 8] != r->ttl_out) return 0;
  for (size_t i = 0; i < len; i++) {
    if (i == skip[0] || i == skip[1] || i == skip[2] || i == skip[3] || i == skip[3] + 1) continue;
    if (frame[i] != r->frame[i]) return 0;
  }
  return 1;
}

/* Among equal candidates, the one that best explains the output: not yet matched, and one that must come out. */
static int rank(const rec *r) { return (r->hit ? 0 : 2) + (r->clean ? 1 : 0); }

static rec *match_opaque(const uint8_t *frame, size_t len, int peer) {
  rec *any = NULL;
  for (int i = 0; i < n_recs; i++) {
    rec *r = &recs[i];
    if (!r->accepted || (peer >= 0 && r->peer != peer) || !same_packet(r, frame, len)) continue;
    if (!any || rank(r) > rank(any)) any = r;
  }
  return any;
}

static int header_matches(const rec *r, const view *v) {
  const uint8_t *rip = r->frame + l2();
  return r->kind == v->kind && same_flow(v, rip) && memcmp(r->frame, v->ip - l2(), l2()) == 0 && v->ip[8] == r->ttl_out && v->ip[1] == rip[1];
}

static rec *match_dgram(const view *v, int peer) {
  rec *any = NULL;
  for (int i = 0; i < n_recs; i++) {
    rec *r = &recs[i];
    if (!r->accepted || (peer >= 0 && r->peer != peer) || !header_matches(r, v)) continue;
    if (r->id != rd16(v->ip + 4) || r->plen != v->plen || memcmp(r->payload, v->payload, v->plen) != 0) continue;
    if (!any || rank(r) > rank(any)) any = r;
  }
  return any;
}

/* Every payload byte of a TCP segment must be the byte at its sequence number in an accepted input
 * of the flow with the same ACK; marks what it covers. */
static void match_stream(const view *v, int peer) {
  const uint8_t *tcp = v->ip + v->ihl;
  uint32_t seq = rd32(tcp + 4);
  size_t pos = 0;
  if (v->plen == 0) {
    rec *any = NULL;
    for (int i = 0; i < n_recs; i++) {
      rec *r = &recs[i];
      if (r->accepted && (peer < 0 || r->peer == peer) && header_matches(r, v) && r->plen == 0 && r->seq == seq && (!any || rank(r) > rank(any))) any = r;
    }
    if (any) { any->hit = 1; return; }
    fail("an empty TCP segment (seq %u) that no accepted input had", seq);
  }
  while (pos < v->plen) {
    rec *best = NULL;
    size_t best_n = 0, best_off = 0;
    for (int i = 0; i < n_recs; i++) {
      rec *r = &recs[i];
      if (!r->accepted || (peer >= 0 && r->peer != peer) || !header_matches(r, v)) continue;
      if (memcmp(r->frame + l2() + (size_t)(r->frame[l2()] & 15) * 4 + 8, tcp + 8, 4) != 0) continue; /* ACK */
      size_t off = (uint32_t)(seq + (uint32_t)pos - r->seq);
      if (off >= r->plen) continue;
      size_t n = 0;
      while (pos + n < v->plen && off + n < r->plen && r->payload[off + n] == v->payload[pos + n]) n++;
      int better = n == best_n && n && (2 * !r->covered[off] + r->clean > 2 * !best->covered[best_off] + best->clean);
      if (n > best_n || better) { best = r; best_n = n; best_off = off; }
    }
    if (!best_n) fail("TCP payload byte %zu of %zu at seq %u (flow %08x→%08x) is not the byte of any accepted input at that sequence number",
                      pos, v->plen, seq + (uint32_t)pos, rd32(v->ip + 12), rd32(v->ip + 16));
    /* Identical bytes of several inputs (retransmissions) cannot be told apart: all count as out. */
    for (int i = 0; i < n_recs; i++) {
      rec *r = &recs[i];
      if (!r->accepted || (peer >= 0 && r->peer != peer) || !header_matches(r, v)) continue;
      size_t off = (uint32_t)(seq + (uint32_t)pos - r->seq);
      if (off < r->plen && off + best_n <= r->plen && memcmp(r->payload + off, v->payload + pos, best_n) == 0 &&
          memcmp(r->frame + l2() + (size_t)(r->frame[l2()] & 15) * 4 + 8, tcp + 8, 4) == 0)
        memset(r->covered + off, 1, best_n);
    }
    memset(best->covered + best_off, 1, best_n);
    pos += best_n;
  }
}

/* One packet as the next hop gets it: sizes, checksums, routing, then its bytes against the inputs.
 * `peer`: TX, the peer that received it (-1 on RX). */
static void check_packet(const uint8_t *frame, size_t len, int peer) {
  size_t a = l2();
  n_out++;
  if (len > a + run.mtu) fail("a packet of %zu bytes, more than the MTU %u allows", len - a, run.mtu);
  if (run.vxlan) {
    if (len < 14) fail("a frame of %zu bytes", len);
    if (peer >= 0 && memcmp(frame, rig_peers[peer].mac, 6) != 0) fail("a frame for another MAC sent to peer %d", peer);
    if (peer < 0 && memcmp(frame, rig_dev_mac, 6) != 0) fail("a frame written to the device for another MAC");
  }
  view v;
  int is_ip = (!run.vxlan || rd16(frame + 12) == 0x0800) && parse(frame + a, len - a, &v);
  if (!is_ip || (run.rx && v.total + a != len)) {
    if (!match_opaque(frame, len, peer)) fail("a %zu-byte packet that is not IPv4 nor any accepted input", len);
    match_opaque(frame, len, peer)->hit = 1;
    return;
  }
  if (!run.vxlan && peer >= 0 && rig_peer_of(rd32(v.ip + 16)) != peer)
    fail("a packet for %08x sent to peer %d (longest prefix: %d)", rd32(v.ip + 16), peer, rig_peer_of(rd32(v.ip + 16)));
  int l4 = pk_l4_state(v.ip, v.total);
  int partial_ok = peer >= 0 && (rig_peers[peer].flags & FL_PEER_PARTIAL_CSUM) && v.ip[9] == 6 && l4 == L4_PARTIAL;
  if (!pk_ip_csum_ok(v.ip) || l4 == L4_BAD || l4 == L4_ZERO || (l4 == L4_PARTIAL && !partial_ok)) {
    /* only what came in that way may go out that way, unchanged */
    rec *r = match_opaque(frame, len, peer);
    if (!r || r->ip_ok != pk_ip_csum_ok(v.ip) || r->l4 != l4)
      fail("a packet with %s (IPv4 header checksum %s) that no accepted input had", l4 == L4_BAD ? "a bad TCP/UDP checksum" : l4 == L4_PARTIAL ? "a partial checksum" : l4 == L4_ZERO ? "no UDP checksum" : "TCP/UDP checksum fine",
           pk_ip_csum_ok(v.ip) ? "valid" : "invalid");
    r->hit = 1;
    return;
  }
  if (v.kind == K_STREAM) { match_stream(&v, peer); return; }
  rec *r = v.kind == K_DGRAM ? match_dgram(&v, peer) : NULL;
  if (!r) r = match_opaque(frame, v.total + a == len ? len : len, peer);
  if (!r) fail("a %s packet (proto %u, %zu bytes, id %u) that is not any accepted input", v.kind == K_DGRAM ? "UDP" : "non-TCP/UDP", v.ip[9], v.total, rd16(v.ip + 4));
  r->hit = 1;
}

/* The kernel's split of a GSO write: headers copied, lengths, IDs counting up, checksums, TCP
 * sequence numbers advanced, FIN/PSH on the last segment only, CWR on the first only. */
static void split_gso(const uint8_t *frame, size_t len, int type, size_t gso) {
  size_t a = l2();
  view v;
  if (!parse(frame + a, len - a, &v) || v.total + a != len) fail("a GSO write whose IPv4 header is broken");
  int tcp = type == GSO_TCPV4;
  if (tcp ? v.kind != K_STREAM : v.kind != K_DGRAM) fail("a GSO %s write of protocol %u (data offset %u)", tcp ? "TCPV4" : "UDP_L4", v.ip[9], v.ip[v.ihl + 12] >> 4);
  if (gso == 0) fail("a GSO write with gso_size 0");
  size_t hdr = a + v.ihl + v.l4h;
  for (size_t o = 0, i = 0; o < v.plen || (o == 0 && v.plen == 0); o += gso, i++) {
    size_t n = v.plen - o < gso ? v.plen - o : gso;
    int last = o + n >= v.plen;
    memcpy(seg, frame, hdr);
    memcpy(seg + hdr, v.payload + o, n);
    uint8_t *ip = seg + a, *l4 = ip + v.ihl;
    wr16(ip + 2, (uint32_t)(v.ihl + v.l4h + n));
    wr16(ip + 4, (uint32_t)(rd16(v.ip + 4) + i));
    pk_ip_csum_set(ip);
    if (tcp) {
      wr32(l4 + 4, rd32(l4 + 4) + (uint32_t)o);
      if (!last) l4[13] &= (uint8_t)~0x09;
      if (i) l4[13] &= (uint8_t)~0x80;
    } else {
      wr16(l4 + 4, (uint32_t)(8 + n));
    }
    pk_l4_set(ip, 0);
    check_packet(seg, hdr + n, -1);
    if (v.plen == 0) break;
  }
}

void oracle_rx_output(const uint8_t *msg, size_t len) {
  if (getenv("FUZZ_VERBOSE") && getenv("FUZZ_DUMP")) {
    fprintf(stderr, "  device got %zu:", len);
    for (size_t i = 0; i < len && i < 80; i++) fprintf(stderr, " %02x", msg[i]);
    fputc('\n', stderr);
  }
  if (!run.vnet) { check_packet(msg, len, -1); return; }
  if (len < 10) fail("a device write of %zu bytes, shorter than its virtio_net_hdr", len);
  uint8_t flags = msg[0], type = msg[1];
  size_t hdr_len = (size_t)(msg[2] | msg[3] << 8), gso = (size_t)(msg[4] | msg[5] << 8);
  size_t start = (size_t)(msg[6] | msg[7] << 8), off = (size_t)(msg[8] | msg[9] << 8);
  const uint8_t *frame = msg + 10;
  len -= 10;
  size_t a = l2();
  if (type != GSO_NONE && type != GSO_TCPV4 && type != GSO_UDP_L4) fail("a device write with gso_type %u", type);
  if (flags & ~NEEDS_CSUM) fail("a device write with virtio flags %#x", flags);
  if (type != GSO_NONE && !(flags & NEEDS_CSUM)) fail("a GSO write without NEEDS_CSUM");
  if (flags & NEEDS_CSUM) {
    /* The device finishes the sum from csum_start over the field: the field must hold the pseudo-header sum. */
    view v;
    if (len < a + 20 || !parse(frame + a, len - a, &v) || !pk_l4_checked(v.ip)) fail("NEEDS_CSUM on a write that is not TCP/UDP");
    size_t want_off = v.ip[9] == 6 ? 16 : 6;
    if (start != a + v.ihl || off != want_off || v.total - v.ihl < want_off + 2) fail("NEEDS_CSUM with csum_start %zu, csum_offset %zu", start, off);
    uint16_t field = rd16(v.ip + v.ihl + off), want = pk_pseudo(v.ip, v.ip[9], v.total - v.ihl);
    if (field != want) fail("NEEDS_CSUM with %#06x in the checksum field, not the pseudo-header sum %#06x", field, want);
    if (type != GSO_NONE) {
      if (hdr_len > len) fail("GSO hdr_len %zu beyond the %zu-byte write", hdr_len, len);
      if (type == GSO_TCPV4 && rd16(v.ip + 6) & 0x3fff) fail("a TCP GSO write of a fragment");
      split_gso(frame, len, type, gso);
      return;
    }
    if (len > sizeof seg) fail("a %zu-byte write without GSO", len);
    memcpy(seg, frame, len);
    complete(seg, len, start, off);
    check_packet(seg, len, -1);
    return;
  }
  check_packet(frame, len, -1);
}

void oracle_tx_output(int peer, const uint8_t *d, size_t len) {
  if (getenv("FUZZ_VERBOSE") && getenv("FUZZ_DUMP")) {
    fprintf(stderr, "  peer %d got %zu:", peer, len);
    for (size_t i = 0; i < len && i < 80; i++) fprintf(stderr, " %02x", d[i]);
    fputc('\n', stderr);
  }
  if (len > pre() + l2() + run.mtu) fail("a %zu-byte datagram to peer %d: more than %zu", len, peer, pre() + l2() + run.mtu);
  if (run.vxlan) {
    static const uint8_t vx[8] = {0x08, 0, 0, 0, 0, 0, RIG_VNI, 0};
    if (len < 8 || memcmp(d, vx, 8) != 0) fail("a datagram without the VXLAN header of VNI %d", RIG_VNI);
  }
  check_packet(d + pre(), len - pre(), peer);
}

void oracle_tx_device_output(const uint8_t *msg, size_t len) {
  if (run.vxlan) fail("a device write on the TX path in vxlan mode");
  if (run.vnet) {
    static const uint8_t zero[10] = {0};
    if (len < 10 || memcmp(msg, zero, 10) != 0) fail("an ICMP reply with a non-zero virtio_net_hdr");
    msg += 10; len -= 10;
  }
  view v;
  if (!parse(msg, len, &v) || v.total != len || !pk_ip_csum_ok(msg) || msg[9] != 1) fail("a device write on the TX path that is no ICMP error");
  const uint8_t *icmp = msg + v.ihl;
  size_t n = v.total - v.ihl;
  if (n < 8 + 20 || icmp[0] != 3 || pk_fold(pk_sum(icmp, n, 0)) != 0xffff) fail("a broken ICMP unreachable (type %u, %zu bytes)", icmp[0], n);
  for (int i = 0; i < n_units && i < MAX_RECS; i++)
    if (read_lens[i] >= n - 8 && memcmp(reads[i], icmp + 8, n - 8) == 0 && memcmp(msg + 16, reads[i] + 12, 4) == 0) return;
  fail("an ICMP unreachable that quotes no input, or goes to another address");
}

void oracle_end(uint64_t drops) {
  uint64_t missing = 0;
  for (int u = 0, i = 0; u < n_units; u++) {
    int whole = 1, clean = 0, first = i;
    for (; i < n_recs && recs[i].unit == u; i++) {
      rec *r = &recs[i];
      clean |= r->clean;
      whole &= r->hit || (r->kind == K_STREAM && r->plen && memchr(r->covered, 0, r->plen) == NULL);
    }
    if (i == first) whole = 0; /* a USO read with nothing to split */
    if (!whole && clean && !getenv("FUZZ_NO_CLEAN")) {
      const rec *r = &recs[first];
      fail("input %d (%zu bytes, proto %u, peer %d) was well-formed, yet did not come out whole", u, r->len, r->len > l2() + 9 ? r->frame[l2() + 9] : 0, r->peer);
    }
    missing += !whole;
    if (!whole && getenv("FUZZ_VERBOSE")) {
      const rec *r = &recs[first];
      size_t cov = 0;
      if (i > first && r->kind == K_STREAM) for (size_t k = 0; k < r->plen; k++) cov += r->covered[k];
      fprintf(stderr, "  missing input %d: %zu bytes, kind %d, payload %zu (%zu covered), seq %u, accepted %d\n", u, r->len, r->kind, r->plen, cov, r->seq, r->accepted);
    }
  }
  if (getenv("FUZZ_VERBOSE"))
    fprintf(stderr, "oracle: %d inputs (%d records), %d packets out, %llu missing, %llu drops\n", n_units, n_recs, n_out, (unsigned long long)missing, (unsigned long long)drops);
  if (missing > drops) fail("%llu inputs did not come out, but only %llu drops were counted", (unsigned long long)missing, (unsigned long long)drops);
}
