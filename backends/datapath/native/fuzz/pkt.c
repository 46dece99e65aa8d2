/* Packet helpers of the fuzz harness (see pkt.h). */
#include "pkt.h"
#include <string.h>

uint32_t pk_sum(const uint8_t *p, size_t n, uint32_t acc) {
  uint64_t s = acc;
  size_t i = 0;
  for (; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (i < n) s += (uint32_t)p[i] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint32_t)s;
}

uint16_t pk_fold(uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return (uint16_t)acc;
}

uint16_t pk_pseudo(const uint8_t *ip, uint8_t proto, size_t l4len) {
  uint8_t tail[4] = {0, proto, (uint8_t)(l4len >> 8), (uint8_t)l4len};
  return pk_fold(pk_sum(tail, 4, pk_sum(ip + 12, 8, 0)));
}

int pk_ip_csum_ok(const uint8_t *ip) { return pk_fold(pk_sum(ip, (size_t)(ip[0] & 15) * 4, 0)) == 0xffff; }

void pk_ip_csum_set(uint8_t *ip) {
  wr16(ip + 10, 0);
  wr16(ip + 10, (uint16_t)~pk_fold(pk_sum(ip, (size_t)(ip[0] & 15) * 4, 0)));
}

int pk_l4_checked(const uint8_t *ip) { return (ip[9] == 6 || ip[9] == 17) && (rd16(ip + 6) & 0x3fff) == 0; }

int pk_l4_state(const uint8_t *ip, size_t len) {
  size_t ihl = (size_t)(ip[0] & 15) * 4, total = rd16(ip + 2);
  if (!pk_l4_checked(ip)) return L4_NONE;
  size_t off = ip[9] == 6 ? 16 : 6;
  if (total > len || total < ihl + off + 2) return L4_BAD;
  const uint8_t *l4 = ip + ihl;
  size_t l4len = total - ihl;
  uint16_t field = rd16(l4 + off), pseudo = pk_pseudo(ip, ip[9], l4len);
  if (ip[9] == 17 && field == 0) return L4_ZERO;
  if (pk_fold(pk_sum(l4, l4len, pseudo)) == 0xffff) return L4_VALID;
  if (field == pseudo) return L4_PARTIAL;
  return L4_BAD;
}

void pk_l4_set(uint8_t *ip, int partial) {
  size_t ihl = (size_t)(ip[0] & 15) * 4, l4len = rd16(ip + 2) - ihl, off = ip[9] == 6 ? 16 : 6;
  uint8_t *l4 = ip + ihl;
  uint16_t pseudo = pk_pseudo(ip, ip[9], l4len);
  wr16(l4 + off, 0);
  uint16_t c = partial ? pseudo : (uint16_t)~pk_fold(pk_sum(l4, l4len, pseudo));
  if (ip[9] == 17 && c == 0) c = 0xffff;
  wr16(l4 + off, c);
}

size_t pk_build(uint8_t *out, size_t cap, const pk_spec *s) {
  size_t ihl = 20 + 4u * s->ip_opt_words;
  size_t l4h = s->proto == 6 ? 20 + 4u * s->tcp_opt_words : s->proto == 17 ? 8 : 8; /* ICMP echo: 8 */
  size_t len = ihl + l4h + s->payload;
  if (len > cap || len > 65535) return 0;
  memset(out, 0, ihl + l4h);
  out[0] = (uint8_t)(0x40 | ihl / 4);
  out[1] = s->tos;
  wr16(out + 2, (uint32_t)len);
  wr16(out + 4, s->id);
  wr16(out + 6, s->frag);
  out[8] = s->ttl;
  out[9] = s->proto;
  wr32(out + 12, s->src);
  wr32(out + 16, s->dst);
  memset(out + 20, 1, ihl - 20); /* NOP options */
  uint8_t *l4 = out + ihl;
  if (s->proto == 6) {
    wr16(l4, s->sport); wr16(l4 + 2, s->dport);
    wr32(l4 + 4, s->seq); wr32(l4 + 8, s->ack);
    l4[12] = (uint8_t)(s->doff << 4);
    l4[13] = s->tcp_flags;
    wr16(l4 + 14, 65535);
    memset(l4 + 20, 1, l4h - 20); /* NOP options */
  } else if (s->proto == 17) {
    wr16(l4, s->sport); wr16(l4 + 2, s->dport); wr16(l4 + 4, (uint32_t)(8 + s->payload));
  } else {
    l4[0] = 8; /* echo request; the engine does not look inside */
    wr16(l4 + 4, s->sport);
  }
  uint8_t *p = l4 + l4h;
  for (size_t i = 0; i < s->payload; i++) p[i] = pk_stream_byte(s->seed, s->pos + (uint32_t)i);
  if (s->proto == 1) { wr16(l4 + 2, 0); wr16(l4 + 2, (uint16_t)~pk_fold(pk_sum(l4, l4h + s->payload, 0))); }
  pk_ip_csum_set(out);
  return len;
}
