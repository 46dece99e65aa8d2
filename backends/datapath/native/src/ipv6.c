/* IPv6 header helpers (ipv6.h). */
#include "ipv6.h"
#include "csum.h"
#include "ipv4.h"
#include <string.h>

size_t fl_ipv6_len(const uint8_t *pkt, size_t len) {
  if (len < FL_IP6_HLEN || (pkt[0] >> 4) != 6) return 0;
  size_t total = FL_IP6_HLEN + (size_t)fl_rd16(pkt + 4);
  return total <= len ? total : 0;
}

int fl_ipv6_transport_ok(const uint8_t *pkt) {
  size_t l4len = fl_rd16(pkt + 4);
  const uint8_t *l4 = pkt + FL_IP6_HLEN;
  if (pkt[6] == 6) {
    size_t thl = l4len >= 20 ? (size_t)(l4[12] >> 4) * 4 : 0;
    return thl >= 20 && thl <= l4len;
  }
  if (pkt[6] == 17) {
    if (l4len < 8) return 0;
    size_t ulen = fl_rd16(l4 + 4);
    return ulen >= 8 && ulen <= l4len;
  }
  return 1;
}

int fl_l4_checksum6(uint8_t *pkt, size_t len, int keep_partial) {
  size_t total = fl_ipv6_len(pkt, len);
  if (!total) return FL_CSUM_BAD;
  uint8_t proto = pkt[6];
  if (proto != 6 && proto != 17) return FL_CSUM_OK;
  size_t l4len = total - FL_IP6_HLEN, off = proto == 6 ? 16 : 6;
  if (l4len < off + 2) return FL_CSUM_BAD;
  uint8_t *l4 = pkt + FL_IP6_HLEN;
  uint16_t field = fl_rd16(l4 + off);
  if (proto == 17 && field == 0) return FL_CSUM_OK; /* no checksum: the receiving socket's policy (RFC 6936) */
  uint64_t pseudo = fl_pseudo6_sum(pkt, proto, l4len);
  if (field == fl_sum_fold(pseudo)) {
    if (keep_partial) return FL_CSUM_PARTIAL;
    fl_wr16(l4 + off, 0);
    uint16_t c = (uint16_t)~fl_sum_fold(fl_sum(l4, l4len, pseudo));
    if (proto == 17 && c == 0) c = 0xffff;
    fl_wr16(l4 + off, c);
    return FL_CSUM_COMPLETED;
  }
  return fl_sum_fold(fl_sum(l4, l4len, pseudo)) == 0xffff ? FL_CSUM_OK : FL_CSUM_BAD;
}

static int is_unspecified(const uint8_t *a) {
  static const uint8_t zero[16] = {0};
  return memcmp(a, zero, 16) == 0;
}

size_t fl_icmp6_packet_too_big(uint8_t *out, size_t cap, const uint8_t *orig, size_t orig_len, const uint8_t *src, uint32_t mtu) {
  size_t total = fl_ipv6_len(orig, orig_len);
  if (!total) return 0;
  const uint8_t *osrc = orig + 8, *odst = orig + 24;
  if (osrc[0] == 0xff || odst[0] == 0xff || is_unspecified(osrc)) return 0;
  if (orig[6] == 58 && total > FL_IP6_HLEN && orig[FL_IP6_HLEN] < 128) return 0; /* an ICMPv6 error (types 0-127) */
  size_t body = FL_IP6_MIN_MTU - FL_IP6_HLEN - 8;
  if (body > total) body = total;
  size_t len = FL_IP6_HLEN + 8 + body;
  if (len > cap) return 0;
  memset(out, 0, FL_IP6_HLEN + 8);
  out[0] = 0x60;
  fl_wr16(out + 4, (uint16_t)(8 + body));
  out[6] = 58;   /* ICMPv6 */
  out[7] = 255;  /* hop limit, as the kernel's ICMPv6 errors */
  memcpy(out + 8, src, 16);
  memcpy(out + 24, osrc, 16);
  uint8_t *icmp = out + FL_IP6_HLEN;
  icmp[0] = 2; /* Packet Too Big */
  fl_wr32(icmp + 4, mtu);
  memcpy(icmp + 8, orig, body);
  fl_wr16(icmp + 2, (uint16_t)~fl_sum_fold(fl_sum(icmp, 8 + body, fl_pseudo6_sum(out, 58, 8 + body))));
  return len;
}
