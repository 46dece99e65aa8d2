/* TCP segmentation of an IPv4 or IPv6 (TCP right after the fixed header) super-packet, as a NIC's TSO does it: headers copied, IP length, ID and
 * checksum per segment, TCP sequence advanced, FIN/PSH only on the last segment, CWR only on the
 * first. One header writer serves the offload TX split (payload gathered from the read buffer) and the
 * per-packet RX path's software segmentation of a peer's super-frame (payload copied). */
#define _GNU_SOURCE
#include "csum.h"
#include "engine_internal.h"
#include "ipv4.h"
#include <string.h>

/* IPv6: no ID or header checksum; the payload length instead of the total length. */
static size_t tcp6_segment_header(uint8_t *out, const uint8_t *frame, size_t l2, size_t off, size_t n) {
  const uint8_t *ip = frame + l2;
  size_t thl = (size_t)(ip[40 + 12] >> 4) * 4, hdr = l2 + 40 + thl;
  size_t payload = fl_rd16(ip + 4) - thl;
  memcpy(out, frame, hdr);
  uint8_t *oip = out + l2, *tcp = oip + 40;
  fl_wr16(oip + 4, (uint16_t)(thl + n));
  fl_wr32(tcp + 4, fl_rd32(ip + 40 + 4) + (uint32_t)off);
  if (off + n < payload) tcp[13] &= (uint8_t)~0x09;
  if (off) tcp[13] &= (uint8_t)~0x80;
  fl_wr16(tcp + 16, fl_sum_fold(fl_pseudo6_sum(oip, 6, thl + n)));
  return hdr;
}

size_t fl_tcp_segment_header(uint8_t *out, const uint8_t *frame, size_t l2, size_t mss, size_t off, size_t n) {
  const uint8_t *ip = frame + l2;
  if ((ip[0] >> 4) == 6) return tcp6_segment_header(out, frame, l2, off, n);
  size_t ihl = (size_t)(ip[0] & 0x0f) * 4, thl = (size_t)(ip[ihl + 12] >> 4) * 4, hdr = l2 + ihl + thl;
  size_t payload = fl_rd16(ip + 2) - ihl - thl;
  memcpy(out, frame, hdr);
  uint8_t *oip = out + l2, *tcp = oip + ihl;
  fl_wr16(oip + 2, (uint16_t)(ihl + thl + n));
  fl_wr16(oip + 4, (uint16_t)(fl_rd16(ip + 4) + off / mss));
  fl_wr16(oip + 10, 0);
  fl_wr16(oip + 10, fl_csum(oip, ihl));
  fl_wr32(tcp + 4, fl_rd32(ip + ihl + 4) + (uint32_t)off);
  if (off + n < payload) tcp[13] &= (uint8_t)~0x09; /* FIN, PSH only on the last */
  if (off) tcp[13] &= (uint8_t)~0x80;               /* CWR only on the first */
  fl_wr16(tcp + 16, fl_sum_fold(fl_pseudo_sum(oip, 6, thl + n)));
  return hdr;
}

void fl_tcp_complete_csum(uint8_t *ip, const uint8_t *payload, size_t n) {
  int v6 = (ip[0] >> 4) == 6;
  size_t ihl = v6 ? 40 : (size_t)(ip[0] & 0x0f) * 4;
  uint8_t *tcp = ip + ihl;
  size_t thl = (size_t)(tcp[12] >> 4) * 4;
  uint64_t pseudo = v6 ? fl_pseudo6_sum(ip, 6, thl + n) : fl_pseudo_sum(ip, 6, thl + n);
  fl_wr16(tcp + 16, 0);
  fl_wr16(tcp + 16, (uint16_t)~fl_sum_fold(fl_sum(payload, n, fl_sum(tcp, thl, pseudo))));
}

size_t fl_tcp_segment(uint8_t *out, size_t cap, const uint8_t *frame, size_t l2, size_t mss, size_t off) {
  const uint8_t *ip = frame + l2;
  int v6 = (ip[0] >> 4) == 6;
  size_t ihl = v6 ? 40 : (size_t)(ip[0] & 0x0f) * 4, thl = (size_t)(ip[ihl + 12] >> 4) * 4, hdr = l2 + ihl + thl;
  size_t l3 = v6 ? 40 + (size_t)fl_rd16(ip + 4) : fl_rd16(ip + 2);
  size_t payload = l3 - ihl - thl, n = payload - off < mss ? payload - off : mss;
  if (hdr + n > cap) return 0;
  fl_tcp_segment_header(out, frame, l2, mss, off, n);
  memcpy(out + hdr, frame + hdr + off, n);
  fl_tcp_complete_csum(out + l2, out + hdr, n);
  return hdr + n;
}
