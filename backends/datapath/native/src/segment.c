/* Software TCP segmentation of an IPv4 super-packet, as a NIC's TSO would do it: headers copied,
 * IP length, ID and checksum per segment, TCP sequence advanced, FIN/PSH only on the last segment,
 * CWR only on the first, and a full TCP checksum. */
#include "ipv4.h"
#include <string.h>

size_t fl_tcp_segment(uint8_t *out, size_t cap, const uint8_t *frame, size_t l2, size_t mss, size_t off, int first) {
  const uint8_t *ip = frame + l2;
  size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
  size_t thl = (size_t)(ip[ihl + 12] >> 4) * 4, hdr = l2 + ihl + thl;
  size_t payload = fl_rd16(ip + 2) - ihl - thl;
  size_t n = payload - off < mss ? payload - off : mss;
  int last = off + n >= payload;
  if (hdr + n > cap) return 0;
  memcpy(out, frame, hdr);
  memcpy(out + hdr, frame + hdr + off, n);
  uint8_t *oip = out + l2, *tcp = oip + ihl;
  fl_wr16(oip + 2, (uint16_t)(ihl + thl + n));
  fl_wr16(oip + 4, (uint16_t)(fl_rd16(ip + 4) + off / mss));
  fl_wr16(oip + 10, 0);
  fl_wr16(oip + 10, fl_csum(oip, ihl));
  fl_wr32(tcp + 4, fl_rd32(ip + ihl + 4) + (uint32_t)off);
  if (!last) tcp[13] &= (uint8_t)~0x09; /* FIN, PSH */
  if (!first) tcp[13] &= (uint8_t)~0x80; /* CWR */
  fl_wr16(tcp + 16, 0);
  uint8_t pseudo[12];
  memcpy(pseudo, oip + 12, 8);
  pseudo[8] = 0;
  pseudo[9] = 6;
  fl_wr16(pseudo + 10, (uint16_t)(thl + n));
  /* one's-complement sum of pseudo-header and segment: complement of the sum of the parts */
  uint16_t a = (uint16_t)~fl_csum(pseudo, 12), b = (uint16_t)~fl_csum(tcp, thl + n);
  uint32_t s = (uint32_t)a + b;
  s = (s & 0xffff) + (s >> 16);
  fl_wr16(tcp + 16, (uint16_t)~s);
  return hdr + n;
}
