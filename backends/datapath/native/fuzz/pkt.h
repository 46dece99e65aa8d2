/* Packet helpers of the fuzz harness: big-endian fields, Internet checksums and the IPv4/TCP/UDP
 * builder. Written apart from the engine's csum.c/ipv4.c on purpose: the oracle must not share the
 * code it checks. */
#ifndef FUZZ_PKT_H
#define FUZZ_PKT_H
#include <stddef.h>
#include <stdint.h>

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline void wr16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void wr32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }

/* One's-complement sum of big-endian 16-bit words (an odd last byte is a high byte), folded. */
uint32_t pk_sum(const uint8_t *p, size_t n, uint32_t acc);
uint16_t pk_fold(uint32_t acc);
/* The pseudo-header sum of an IPv4 TCP/UDP packet (addresses, protocol, L4 length), folded. */
uint16_t pk_pseudo(const uint8_t *ip, uint8_t proto, size_t l4len);
/* The IPv4 header checksum (ihl from ip[0]) */
int pk_ip_csum_ok(const uint8_t *ip);
void pk_ip_csum_set(uint8_t *ip);

/* TCP/UDP checksum state of an IPv4 packet of `len` bytes (its total length field is trusted only up to len). */
enum { L4_NONE, L4_VALID, L4_PARTIAL, L4_ZERO, L4_BAD };
int pk_l4_state(const uint8_t *ip, size_t len);
/* Writes the TCP/UDP checksum: complete, or partial (the pseudo-header sum only). */
void pk_l4_set(uint8_t *ip, int partial);
/* True when the packet is TCP or UDP and not a fragment: the one the engine checksums. */
int pk_l4_checked(const uint8_t *ip);

/* The payload byte at stream position `pos` of a flow with seed `seed`: a fixed function, so
 * overlapping segments (retransmissions) carry the same bytes. */
static inline uint8_t pk_stream_byte(uint32_t seed, uint32_t pos) {
  uint32_t x = pos * 0x9e3779b1u + seed * 0x85ebca6bu;
  x ^= x >> 15; x *= 0x2c1b3c6du; x ^= x >> 12;
  return (uint8_t)x;
}

typedef struct {
  uint32_t src, dst;
  uint8_t proto, ttl, tos, ip_opt_words; /* IPv4 options: NOPs, 0..10 words */
  uint16_t frag;                         /* flags and fragment offset word (DF 0x4000, MF 0x2000) */
  uint16_t id;
  uint16_t sport, dport;
  uint32_t seq, ack;
  uint8_t tcp_flags, tcp_opt_words, doff; /* doff: the data offset field, which may lie about tcp_opt_words */
  uint32_t seed, pos;                    /* payload: bytes pos.. of the flow stream */
  size_t payload;
} pk_spec;

/* Writes the IPv4 packet of `s` at out (cap bytes) with valid IPv4 and no L4 checksum (zero); returns its length or 0. */
size_t pk_build(uint8_t *out, size_t cap, const pk_spec *s);
#endif
