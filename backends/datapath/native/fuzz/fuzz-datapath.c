/* libFuzzer target for the packet engine, with an oracle (oracle.c) that checks the answers, not
 * only crashes. The input describes flows and segments (layout in README.md); the harness builds
 * well-formed packets from them (valid, partial or bad checksums; TCP headers that may lie), runs
 * them through the engine's real loops with fl_pump() over real sockets (rig.c), and checks every
 * datagram sent and every packet written. Build and run: test/unit/datapath-fuzz.test.ts. */
#define _GNU_SOURCE
#include "oracle.h"
#include "pkt.h"
#include "rig.h"
#include "../src/engine_internal.h"
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FLOWS 8
#define FLOW_BYTES 10
#define SEG_BYTES 5
#define MAX_SEGS 48
#define BUDGET (192u << 10)
#define SLACK 128
#define MAX_MSG_DGRAMS 64

typedef struct {
  int peer, proto, outside_src, outside_dst, bad_l2, df, tcp_words, doff, csum, ip_words, mf, xor_after;
  uint8_t flags, ttl, tos, src_host, dst_host, xor_at, xor_val;
  uint32_t seed, next_seq, last_seq;
  uint16_t next_id;
} flow;

typedef struct { /* one message to the engine: a datagram, or a GRO train of datagrams */
  int fd, peer, framing_ok, lone;
  size_t n, seg, built[MAX_MSG_DGRAMS], len[MAX_MSG_DGRAMS];
  uint8_t *dgram[MAX_MSG_DGRAMS];
} message;

static uint8_t arena[4 * BUDGET + 4 * (SLACK + 65536)];
static size_t arena_used;
static flow flows[MAX_FLOWS];
static int n_flows;
static rig_engine *R;
static int vxlan, rx;

static uint32_t host_in(uint32_t subnet, uint32_t mask, uint8_t h) { return subnet | ((uint32_t)h * 0x01010101u & ~mask & 0xfffffffeu) | (~mask ? 1 : 0); }

static void decode_flow(flow *f, const uint8_t *b) {
  static const uint8_t flag_sets[8] = {0x10, 0x10, 0x10, 0x10, 0x18, 0x11, 0x02, 0xd0};
  static const int protos[4] = {6, 6, 17, 1};
  memset(f, 0, sizeof *f);
  f->peer = b[0] & 3;
  f->proto = protos[(b[0] >> 2) & 3];
  f->outside_src = (b[0] >> 4) & 1;
  f->outside_dst = (b[0] >> 5) & 1;
  f->bad_l2 = (b[0] >> 6) & 1;
  f->df = b[0] >> 7;
  f->tcp_words = b[1] & 3;
  f->doff = b[1] & 0x80 ? (b[1] >> 3) & 15 : 5 + f->tcp_words; /* half the byte values let the data offset lie */
  f->csum = b[2] & 3;
  f->ip_words = (b[2] >> 2) & 3;
  f->mf = (b[2] >> 4) & 1;
  f->flags = flag_sets[b[2] >> 5];
  f->ttl = b[3] ? b[3] : 64;
  f->tos = b[4];
  f->src_host = b[5];
  f->dst_host = b[6];
  f->xor_at = b[7] & 0x7f;
  f->xor_after = b[7] >> 7;
  f->xor_val = b[8];
  f->seed = b[9];
  f->next_seq = (uint32_t)b[9] << 24 | 1;
  f->last_seq = f->next_seq;
  f->next_id = (uint16_t)(b[9] << 8);
}

static size_t headers_of(const flow *f) { return 20 + 4u * f->ip_words + (f->proto == 6 ? 20 + 4u * f->tcp_words : 8); }

static uint8_t *take(size_t n) {
  if (arena_used + n + SLACK > sizeof arena) abort(); /* the budget keeps us far below */
  uint8_t *p = arena + arena_used;
  arena_used += (n + SLACK + 7) & ~(size_t)7;
  return p;
}

/* The inner IPv4 packet of one segment at ip (room for 65535 + SLACK bytes); returns its length.
 * RX packets come from the flow's peer to us, TX packets from us to the peer. */
static size_t build_inner(flow *f, uint8_t *ip, size_t payload, int push, int retransmit, int bad, int partial, int gso, uint32_t *xor_pos_after) {
  const rig_peer *p = &rig_peers[f->peer];
  uint32_t peer_host = host_in(p->subnet, p->mask, f->src_host), own_host = host_in(RIG_OWN_SUBNET, RIG_OWN_MASK, f->dst_host);
  pk_spec s = {
    .src = rx ? peer_host : own_host, .dst = rx ? own_host : host_in(p->subnet, p->mask, f->dst_host),
    .proto = (uint8_t)f->proto, .ttl = f->ttl, .tos = f->tos, .ip_opt_words = (uint8_t)f->ip_words,
    .frag = (uint16_t)((f->df ? 0x4000 : 0) | (f->mf ? 0x2000 : 0)), .id = f->next_id++,
    .sport = (uint16_t)(40000 + f->seed), .dport = 5201, .ack = 7, .tcp_flags = (uint8_t)(f->flags | (push ? 0x08 : 0)),
    .tcp_opt_words = (uint8_t)f->tcp_words, .doff = (uint8_t)f->doff, .seed = f->seed, .payload = payload,
  };
  if (f->outside_src) s.src = 0x0af60000u | f->src_host;          /* 10.246.0.x: nobody's */
  if (f->outside_dst) s.dst = (rx ? 0x0af70000u : 0x0af60000u) | f->dst_host;
  s.seq = retransmit ? f->last_seq : f->next_seq;
  if (f->proto == 6) {
    f->last_seq = s.seq;
    if (s.seq + (uint32_t)payload - f->next_seq < 0x80000000u) f->next_seq = s.seq + (uint32_t)payload;
    s.pos = s.seq;
  } else {
    s.pos = (uint32_t)s.id << 16; /* each datagram its own bytes */
  }
  size_t len = pk_build(ip, 65535 + SLACK, &s);
  if (!len) return 0;
  size_t at = f->xor_at;
  if (f->xor_val && !f->xor_after && at < len) { ip[at] ^= f->xor_val; pk_ip_csum_set(ip); }
  if (gso) { ip[6] &= 0x40; ip[7] = 0; pk_ip_csum_set(ip); } /* the stack never hands over a fragment as GSO */
  if (f->xor_val && f->xor_after) *xor_pos_after = (uint32_t)at;
  size_t ihl = (size_t)(ip[0] & 15) * 4, total = rd16(ip + 2), off = ip[9] == 6 ? 16 : 6;
  if (pk_l4_checked(ip) && ihl >= 20 && total <= len && total >= ihl + off + 2) {
    int mode = bad ? 2 : partial ? 1 : f->csum;
    if (!rx && !partial) mode = mode == 3 ? 3 : 0; /* the local stack sends complete checksums, or none (UDP) */
    if (mode == 3 && ip[9] == 17) wr16(ip + ihl + 6, 0);
    else pk_l4_set(ip, mode == 1);
    if (mode == 2) { uint8_t *last = ip + total - 1; *last ^= 0x20; } /* corrupted after the sum: must be dropped */
  }
  return len;
}

/* ---- TX: device reads → datagrams at the peers ---- */

static void drain_tx(void) {
  static uint8_t buf[65536 + 256];
  for (;;) { /* ICMP errors written back to the device */
    ssize_t n = recv(R->dev, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) break;
    oracle_tx_device_output(buf, (size_t)n);
  }
  for (int i = 0; i < RIG_PEERS; i++) {
    for (;;) {
      struct sockaddr_in from;
      socklen_t fl = sizeof from;
      ssize_t n = recvfrom(rig_peers[i].sock, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from, &fl);
      if (n < 0) break;
      if (from.sin_addr.s_addr == htonl(0x7f000009u)) continue; /* our end marker */
      if ((size_t)n > sizeof buf) abort();
      oracle_tx_output(i, buf, (size_t)n);
    }
  }
}

static void pump_tx(void) {
  for (int spins = 0; spins < 1000; spins++) {
    struct pollfd p = {.fd = R->e.dev_fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0) break;
    if (fl_pump(&R->e, FL_DIR_TX, 0, 1) < 0) abort();
    drain_tx();
  }
}

/* Waits for a marker sent to every peer after the engine's datagrams, then drains. */
static void finish_tx(void) {
  static const uint8_t mark = 0;
  for (int i = 0; i < RIG_PEERS; i++) {
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(rig_peers[i].port), .sin_addr.s_addr = htonl(rig_peers[i].public_ip)};
    if (sendto(rig_stranger, &mark, 1, 0, (struct sockaddr *)&to, sizeof to) != 1) abort();
    struct pollfd p = {.fd = rig_peers[i].sock, .events = POLLIN};
    poll(&p, 1, 1000);
  }
  drain_tx();
}

static void run_tx(const uint8_t *d, size_t n) {
  size_t used = 0;
  for (int s = 0; s < MAX_SEGS && n >= SEG_BYTES && used < BUDGET; s++, d += SEG_BYTES, n -= SEG_BYTES) {
    flow *f = &flows[d[0] % n_flows];
    if (d[0] & 0x10) pump_tx();
    size_t raw = rd16(d + 1), hdrs = headers_of(f), l2 = vxlan ? 14 : 0, mtu = R->e.mtu;
    static const uint8_t types[8] = {0, 1, 3, 4, 5, 0x81, 6, 0x85};
    int kind = R->e.vnet ? d[3] & 3 : 0;
    if (kind == 3 && types[(d[3] >> 2) & 7] == 0) kind = 0;
    int gso = kind >= 2 && f->proto != 1;
    size_t room = gso ? 65535 - hdrs : mtu > hdrs ? mtu - hdrs : 0;
    size_t payload = raw % (room + 1);
    if (gso) { /* at most 128 segments, as the stack hands over (and each one checked by the oracle) */
      size_t seg = kind == 3 ? (size_t)d[4] | (size_t)(d[3] >> 5) << 8 : d[4] ? (size_t)d[4] * 8 : mtu;
      if (payload > 128 * (seg ? seg : 1)) payload = 128 * (seg ? seg : 1);
    }
    uint8_t *read = take(10 + l2 + hdrs + payload), *frame = read + (R->e.vnet ? 10 : 0);
    uint32_t unused;
    int needs_csum = R->e.vnet && !gso && (d[0] & 0x80) && f->proto != 1;
    size_t len = build_inner(f, frame + l2, payload, d[0] & 0x20, d[0] & 0x40, 0, gso || needs_csum, gso || kind == 3, &unused);
    if (!len) continue;
    if (vxlan) {
      memcpy(frame, rig_peers[f->peer].mac, 6);
      if (f->bad_l2) memset(frame, 0xff, 6);                 /* broadcast: dropped */
      if (f->outside_dst && f->bad_l2) frame[5] = 0x99;      /* and an unknown MAC */
      memcpy(frame + 6, rig_dev_mac, 6);
      wr16(frame + 12, 0x0800);
      len += 14;
    }
    if (R->e.vnet) {
      size_t ihl = (size_t)(frame[l2] & 15) * 4, l4h = f->proto == 6 ? 20 + 4u * f->tcp_words : 8;
      size_t mss = d[4] ? (size_t)d[4] * 8 : (mtu > ihl + l4h ? mtu - ihl - l4h : 1);
      uint8_t *h = read;
      memset(h, 0, 10);
      if (gso || needs_csum) {
        h[0] = 1;
        h[6] = (uint8_t)(l2 + ihl);
        h[8] = f->proto == 6 ? 16 : 6;
      }
      if (gso) {
        h[1] = (uint8_t)((f->proto == 6 ? 1 : 5) | (d[0] & 0x08 ? 0x80 : 0));
        h[2] = (uint8_t)(l2 + ihl + l4h); h[3] = (uint8_t)((l2 + ihl + l4h) >> 8);
        h[4] = (uint8_t)mss; h[5] = (uint8_t)(mss >> 8);
      }
      if (kind == 3) { /* virtio fields the kernel would not write: type, sizes, offsets from the input */
        h[1] = types[(d[3] >> 2) & 7];
        h[0] = 1;
        h[4] = d[4]; h[5] = d[3] >> 5;
        h[6] = (uint8_t)(l2 + 8 + (d[3] >> 5) * 4);
        h[8] = d[4] & 31;
      }
      len += 10;
    }
    oracle_tx_input(read, len);
    if (send(R->dev, read, len, MSG_DONTWAIT) != (ssize_t)len) abort();
    used += len;
  }
  pump_tx();
  finish_tx();
}

/* ---- RX: datagrams from the peers → device writes ---- */

static message msgs[MAX_SEGS];
static int n_msgs, markers;

static void drain_rx(void) {
  static uint8_t buf[65536 + 256];
  for (;;) {
    ssize_t n = recv(R->dev, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) break;
    oracle_rx_output(buf, (size_t)n);
  }
}

/* Sends the pending messages, then a marker from the stranger, and pumps until the engine counted the marker. */
static void flush_rx(void) {
  if (n_msgs == 0) return;
  uint64_t want = R->stats[ST_DROP_UNKNOWN_SOURCE] + 1;
  for (int m = 0; m < n_msgs; m++) {
    message *g = &msgs[m];
    size_t total = 0, seg = 0;
    for (size_t i = 0; i < g->n; i++) seg = g->len[i] > seg ? g->len[i] : seg;
    for (size_t i = 0; i < g->n; i++) total += g->n > 1 && i + 1 < g->n ? seg : g->len[i];
    uint8_t *out = take(total); /* the oracle keeps pointers into it until the end of the run */
    for (size_t i = 0, at = 0; i < g->n; i++) {
      size_t n = g->n > 1 && i + 1 < g->n ? seg : g->len[i];
      memcpy(out + at, g->dgram[i], g->len[i]);
      memset(out + at + g->len[i], 0, n - g->len[i]); /* padding to the train's datagram size */
      at += n;
    }
    /* A message the kernel refuses (it never should) is not sent, and so not an input. */
    if (rig_send(R, g->fd, out, total, g->n > 1 ? seg : g->seg) < 0) continue;
    if (g->fd == rig_stranger) want++;
    /* Registered as sent: padded datagrams, and whether the engine may take the first for the whole message. */
    size_t pre = vxlan ? 22 : 0;
    int whole = g->n > 1 && total >= pre + 20 && rd16(out + pre + 2) + pre == total;
    if (whole && R->e.gro) /* the first datagram's length claims the whole train: one datagram to the engine */
      oracle_rx_input(out, total, g->peer, 0, 0, 0);
    for (size_t i = 0, at = 0; i < g->n && !(whole && R->e.gro); i++) {
      size_t n = g->n > 1 && i + 1 < g->n ? seg : g->len[i];
      oracle_rx_input(out + at, n, g->peer, g->built[i], g->framing_ok && !whole, g->n == 1 && R->e.gro ? g->seg : 0);
      at += n;
    }
  }
  n_msgs = 0;
  static const uint8_t mark = 0;
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(R->port), .sin_addr.s_addr = htonl(0x7f000001u)};
  if (sendto(rig_stranger, &mark, 1, 0, (struct sockaddr *)&to, sizeof to) != 1) abort();
  markers++;
  for (int spins = 0; spins < 10000 && R->stats[ST_DROP_UNKNOWN_SOURCE] < want; spins++) {
    struct pollfd p = {.fd = R->e.udp_fd, .events = POLLIN};
    if (poll(&p, 1, 1000) <= 0) break;
    if (fl_pump(&R->e, FL_DIR_RX, 0, 1) < 0) abort();
    drain_rx();
  }
}

static void run_rx(const uint8_t *d, size_t n) {
  size_t used = 0;
  n_msgs = 0;
  for (int s = 0; s < MAX_SEGS && n >= SEG_BYTES && used < BUDGET; s++, d += SEG_BYTES, n -= SEG_BYTES) {
    flow *f = &flows[d[0] % n_flows];
    if (d[0] & 0x10) flush_rx();
    size_t raw = rd16(d + 1), hdrs = headers_of(f), mtu = R->e.mtu, pre = vxlan ? 22 : 0;
    size_t payload = raw & 0x8000 ? raw & 0x7fff : raw % ((mtu > hdrs ? mtu - hdrs : 0) + 1);
    if (pre + hdrs + payload > 65507) payload = 65507 - pre - hdrs;
    uint8_t *dg = take(pre + hdrs + payload);
    uint32_t xor_after = UINT32_MAX;
    size_t len = build_inner(f, dg + pre, payload, d[0] & 0x20, d[0] & 0x40, d[0] & 0x80, 0, 0, &xor_after);
    if (!len) continue;
    if (vxlan) {
      static const uint8_t vx[8] = {0x08, 0, 0, 0, 0, 0, RIG_VNI, 0};
      memcpy(dg, vx, 8);
      if (f->bad_l2) dg[6] ^= 3; /* another VNI */
      memcpy(dg + 8, rig_dev_mac, 6);
      memcpy(dg + 14, rig_peers[f->peer].mac, 6);
      wr16(dg + 20, 0x0800);
    }
    size_t dlen = pre + len, built = rd16(dg + pre + 2);
    if (xor_after != UINT32_MAX && xor_after < dlen) dg[xor_after] ^= f->xor_val; /* past every checksum */
    used += dlen;
    int stranger = d[3] & 2, super = len > mtu;
    message *last = n_msgs ? &msgs[n_msgs - 1] : NULL;
    size_t widest = dlen;
    if (last) for (size_t i = 0; i < last->n; i++) widest = last->len[i] > widest ? last->len[i] : widest;
    if ((d[0] & 0x08) && last && !last->lone && !stranger && !super && last->peer == f->peer && last->n < MAX_MSG_DGRAMS && (last->n + 1) * widest <= 65000) {
      last->dgram[last->n] = dg; last->len[last->n] = dlen; last->built[last->n++] = built; /* joins the GRO train */
      continue;
    }
    if (n_msgs == MAX_SEGS) flush_rx();
    message *g = &msgs[n_msgs++];
    memset(g, 0, sizeof *g);
    g->dgram[0] = dg; g->len[0] = dlen; g->built[0] = built; g->n = 1;
    g->peer = stranger ? -1 : f->peer;
    g->fd = stranger ? rig_stranger : rig_peers[f->peer].sock;
    g->framing_ok = 1;
    g->lone = stranger || super;
    /* a super-frame may go as a UDP GSO message: with GRO on, one message with the peer's segment size */
    if (super && (d[3] & 1) && !stranger) {
      size_t seg = d[4] ? (size_t)d[4] * 8 : 1400;
      if (seg < dlen && (dlen + seg - 1) / seg <= 64) { g->seg = seg; g->framing_ok = 0; }
    }
  }
  flush_rx();
}

/* Whatever an earlier run left in a socket (it never should) is thrown away before this one. */
static void discard_stale(void) {
  static uint8_t buf[65536 + 256];
  int fds[3 + RIG_PEERS] = {R->dev, R->e.dev_fd, R->e.udp_fd};
  for (int i = 0; i < RIG_PEERS; i++) fds[3 + i] = rig_peers[i].sock;
  for (int i = 0; i < 3 + RIG_PEERS; i++) while (recv(fds[i], buf, sizeof buf, MSG_DONTWAIT) >= 0) {}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3) return 0;
  vxlan = data[0] & 1;
  rx = (data[0] >> 1) & 1;
  R = rig_engine_get(vxlan, data[0] >> 6);
  int vnet = !(data[0] & 4);
  rig_configure(R, vnet, !(data[0] & 8), !(data[0] & 16), !(data[0] & 32), data[1] & 1, (data[1] >> 1) & 1);
  discard_stale();
  n_flows = 1 + data[2] % MAX_FLOWS;
  data += 3; size -= 3;
  for (int i = 0; i < n_flows; i++) {
    uint8_t b[FLOW_BYTES] = {0};
    memcpy(b, data, size < FLOW_BYTES ? size : FLOW_BYTES);
    decode_flow(&flows[i], b);
    size_t k = size < FLOW_BYTES ? size : FLOW_BYTES;
    data += k; size -= k;
  }
  arena_used = 0;
  markers = 0;
  oracle_run run = {.vxlan = vxlan, .rx = rx, .vnet = vnet, .mtu = R->e.mtu};
  oracle_begin(&run);
  uint64_t drops = rig_drops(R), before[ST_GLOBAL_COUNT];
  memcpy(before, R->stats, sizeof before);
  if (rx) run_rx(data, size);
  else run_tx(data, size);
  if (getenv("FUZZ_VERBOSE"))
    for (int i = 0; i < ST_GLOBAL_COUNT; i++) if (R->stats[i] != before[i]) fprintf(stderr, "  counter %d +%llu\n", i, (unsigned long long)(R->stats[i] - before[i]));
  oracle_end(rig_drops(R) - drops - (uint64_t)markers);
  return 0;
}
