/* Fast Internet checksums: 32-bit native-endian words summed into 64 bits, folded and byte-swapped
 * once at the end (the one's-complement sum does not care about byte order until then). */
#ifndef FLANNEL_CSUM_H
#define FLANNEL_CSUM_H
#include <stddef.h>
#include <stdint.h>

/* Adds `len` bytes to a running sum. Every part but the last must have an even length. */
uint64_t fl_sum(const uint8_t *p, size_t len, uint64_t acc);
/* The 16-bit one's-complement sum in network byte order value (not complemented). */
uint16_t fl_sum_fold(uint64_t acc);
/* The pseudo-header sum of IPv4 TCP/UDP: addresses at ip+12, protocol, L4 length. */
uint64_t fl_pseudo_sum(const uint8_t *ip, uint8_t proto, size_t l4len);
/* The same for IPv6: addresses at ip+8. */
uint64_t fl_pseudo6_sum(const uint8_t *ip, uint8_t proto, size_t l4len);
#endif
