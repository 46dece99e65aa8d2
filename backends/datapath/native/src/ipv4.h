/* IPv4 header helpers for the packet loops: checksum, incremental TTL decrement, ICMP errors. */
#ifndef FLANNEL_IPV4_H
#define FLANNEL_IPV4_H
#include <stddef.h>
#include <stdint.h>

static inline uint32_t fl_rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline uint16_t fl_rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void fl_wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void fl_wr32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }

/* Internet checksum (RFC 1071) of len bytes, returned in host order, already complemented. */
uint16_t fl_csum(const uint8_t *data, size_t len);

/* Checks version, IHL and total length against the buffer; returns the header length or 0. */
size_t fl_ipv4_header_len(const uint8_t *pkt, size_t len);

/* The header checksum of a header that fl_ipv4_header_len accepted is right. */
int fl_ipv4_header_csum_ok(const uint8_t *pkt);

/* The TCP or UDP header of a packet that fl_ipv4_header_len accepted is sound, so that code that parses
 * it cannot read outside the packet: TCP needs data offset ≥ 5 and the whole header inside the packet,
 * UDP needs its 8 bytes and (unfragmented) a length field between 8 and the packet's L4 length. Other
 * protocols and non-first fragments have no such header here: 1. Returns 0 for a malformed one. */
int fl_ipv4_transport_ok(const uint8_t *pkt);

/* Decrements the TTL and patches the header checksum (RFC 1624). Returns 0 if the TTL ran out. */
int fl_ipv4_dec_ttl(uint8_t *pkt);

/* Builds an ICMP destination-unreachable (type 3, `code`) to the sender of `orig`, from `src`.
 * Returns its length, or 0 when RFC 792 forbids one (ICMP error, non-first fragment, bad header). */
size_t fl_icmp_unreachable(uint8_t *out, size_t cap, const uint8_t *orig, size_t orig_len, uint32_t src, uint8_t code);
/* Checks the TCP/UDP checksum of an IPv4 packet, in one pass over it. A checksum left partial by the
 * sender's offload (the field holds only the pseudo-header sum: a kernel VXLAN peer over veth or
 * virtio does this, and so does a flannel-ts peer that advertises AcceptsPartialChecksums to us) is
 * left as it is when keep_partial (the caller writes it to the device with NEEDS_CSUM), or completed
 * in place. */
enum { FL_CSUM_BAD = 0, FL_CSUM_OK = 1, FL_CSUM_COMPLETED = 2, FL_CSUM_PARTIAL = 3 };
int fl_l4_checksum(uint8_t *pkt, size_t len, int keep_partial);
#endif
