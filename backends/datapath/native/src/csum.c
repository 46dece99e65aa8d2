/* Fast Internet checksums (see csum.h). */
#include "csum.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fl_sum_fold assumes a little-endian host"
#endif
#include <string.h>

uint64_t fl_sum(const uint8_t *p, size_t len, uint64_t acc) {
  while (len >= 32) {
    uint32_t w[8];
    memcpy(w, p, 32);
    acc += (uint64_t)w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
    p += 32;
    len -= 32;
  }
  while (len >= 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    acc += w;
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    acc += w;
    p += 2;
    len -= 2;
  }
  if (len) acc += *p; /* a final odd byte is the high byte of a big-endian word: the low one here */
  return acc;
}

uint16_t fl_sum_fold(uint64_t acc) {
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffffffu) + (acc >> 32);
  uint32_t s = (uint32_t)acc;
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  uint16_t v = (uint16_t)s;
  return (uint16_t)((v >> 8) | (v << 8)); /* native little-endian sum → network-order value */
}

/* Addresses, then protocol and L4 length. IPv6's 32-bit length and next header sum the same as IPv4's
 * zero, protocol and 16-bit length while the length fits 16 bits. */
static uint64_t pseudo_sum(const uint8_t *addrs, size_t addrs_len, uint8_t proto, size_t l4len) {
  uint8_t tail[4] = {0, proto, (uint8_t)(l4len >> 8), (uint8_t)l4len};
  return fl_sum(tail, 4, fl_sum(addrs, addrs_len, 0));
}

uint64_t fl_pseudo_sum(const uint8_t *ip, uint8_t proto, size_t l4len) { return pseudo_sum(ip + 12, 8, proto, l4len); }

uint64_t fl_pseudo6_sum(const uint8_t *ip, uint8_t proto, size_t l4len) { return pseudo_sum(ip + 8, 32, proto, l4len); }
