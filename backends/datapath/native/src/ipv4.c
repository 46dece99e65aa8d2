/* IPv4 header helpers: checksums, TTL, ICMP destination unreachable. */
#include "ipv4.h"
#include "csum.h"
#include <string.h>

uint16_t fl_csum(const uint8_t *data, size_t len) {
  uint64_t sum = 0;
  size_t i = 0;
  for (; i + 1 < len; i += 2) sum += (uint32_t)(data[i] << 8 | data[i + 1]);
  if (i < len) sum += (uint32_t)data[i] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

size_t fl_ipv4_header_len(const uint8_t *pkt, size_t len) {
  if (len < 20 || (pkt[0] >> 4) != 4) return 0;
  size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
  if (ihl < 20 || ihl > len) return 0;
  size_t total = fl_rd16(pkt + 2);
  if (total < ihl || total > len) return 0;
  return ihl;
}

int fl_ipv4_header_csum_ok(const uint8_t *pkt) {
  return fl_csum(pkt, (size_t)(pkt[0] & 0x0f) * 4) == 0;
}

int fl_ipv4_transport_ok(const uint8_t *pkt) {
  size_t ihl = (size_t)(pkt[0] & 0x0f) * 4, l4len = fl_rd16(pkt + 2) - ihl;
  uint16_t frag = fl_rd16(pkt + 6);
  if (frag & 0x1fff) return 1; /* not the first fragment: no transport header */
  const uint8_t *l4 = pkt + ihl;
  if (pkt[9] == 6) {
    size_t thl = l4len >= 20 ? (size_t)(l4[12] >> 4) * 4 : 0;
    return thl >= 20 && thl <= l4len;
  }
  if (pkt[9] == 17) {
    if (l4len < 8) return 0;
    size_t ulen = fl_rd16(l4 + 4);
    return (frag & 0x2000) || (ulen >= 8 && ulen <= l4len); /* a first fragment carries the whole datagram's length */
  }
  return 1;
}

int fl_ipv4_dec_ttl(uint8_t *pkt) {
  if (pkt[8] <= 1) return 0;
  pkt[8]--;
  /* The TTL is the high byte of word 4: the checksum grows by 0x0100, with end-around carry. */
  uint32_t sum = (uint32_t)fl_rd16(pkt + 10) + 0x0100;
  sum = (sum & 0xffff) + (sum >> 16);
  fl_wr16(pkt + 10, (uint16_t)sum);
  return 1;
}

size_t fl_icmp_unreachable(uint8_t *out, size_t cap, const uint8_t *orig, size_t orig_len, uint32_t src, uint8_t code) {
  size_t ihl = fl_ipv4_header_len(orig, orig_len);
  if (!ihl) return 0;
  if ((fl_rd16(orig + 6) & 0x1fff) != 0) return 0; /* non-first fragment */
  if (orig[9] == 1) {                              /* never answer an ICMP error with one */
    uint8_t type = orig_len > ihl ? orig[ihl] : 0;
    if (type != 0 && type != 8 && type != 13 && type != 14 && type != 15 && type != 16 && type != 17 && type != 18) return 0;
  }
  size_t body = ihl + 8 <= orig_len ? ihl + 8 : orig_len;
  size_t total = 20 + 8 + body;
  if (total > cap) return 0;
  memset(out, 0, 28);
  out[0] = 0x45;
  fl_wr16(out + 2, (uint16_t)total);
  out[8] = 8;  /* TTL, as flannel */
  out[9] = 1;  /* ICMP */
  fl_wr32(out + 12, src);
  memcpy(out + 16, orig + 12, 4); /* to the original sender */
  fl_wr16(out + 10, fl_csum(out, 20));
  out[20] = 3;
  out[21] = code;
  memcpy(out + 28, orig, body);
  fl_wr16(out + 22, fl_csum(out + 20, 8 + body));
  return total;
}

int fl_l4_checksum(uint8_t *pkt, size_t len, int keep_partial) {
  size_t ihl = fl_ipv4_header_len(pkt, len);
  if (!ihl) return FL_CSUM_BAD;
  uint8_t proto = pkt[9];
  if ((proto != 6 && proto != 17) || (fl_rd16(pkt + 6) & 0x3fff) != 0) return FL_CSUM_OK; /* not TCP/UDP, or a fragment */
  size_t total = fl_rd16(pkt + 2), l4len = total - ihl;
  size_t off = proto == 6 ? 16 : 6;
  if (l4len < off + 2) return FL_CSUM_BAD;
  uint8_t *l4 = pkt + ihl;
  uint16_t field = fl_rd16(l4 + off);
  if (proto == 17 && field == 0) return FL_CSUM_OK; /* UDP without a checksum */
  uint64_t pseudo = fl_pseudo_sum(pkt, proto, l4len);
  if (field == fl_sum_fold(pseudo)) {
    /* Partial: the sender's offload left only the pseudo-header sum. (A complete checksum that
     * happens to equal it completes to itself, so treating it as partial is still right.) */
    if (keep_partial) return FL_CSUM_PARTIAL;
    fl_wr16(l4 + off, 0);
    uint16_t c = (uint16_t)~fl_sum_fold(fl_sum(l4, l4len, pseudo));
    if (proto == 17 && c == 0) c = 0xffff;
    fl_wr16(l4 + off, c);
    return FL_CSUM_COMPLETED;
  }
  return fl_sum_fold(fl_sum(l4, l4len, pseudo)) == 0xffff ? FL_CSUM_OK : FL_CSUM_BAD;
}
