/* IPv6 header helpers for the IPv6 VTEP (vxlan6.c): header and transport sanity, TCP/UDP checksums,
 * ICMPv6 Packet Too Big. Only a TCP or UDP header that directly follows the fixed header is parsed;
 * any other next header (extension headers, ICMPv6, …) is carried as it is and left to the kernel. */
#ifndef FLANNEL_IPV6_H
#define FLANNEL_IPV6_H
#include <stddef.h>
#include <stdint.h>

#define FL_IP6_HLEN 40
#define FL_IP6_MIN_MTU 1280

/* Version 6, and the payload length fits the buffer: returns the packet's length (40 + payload), or 0. */
size_t fl_ipv6_len(const uint8_t *pkt, size_t len);

/* The TCP or UDP header of an accepted packet (fl_ipv6_len) is sound: TCP data offset ≥ 5 and the
 * header inside the payload; UDP 8 bytes and a length field from 8 to the payload length. Any other
 * next header: 1. Returns 0 for a malformed one. */
int fl_ipv6_transport_ok(const uint8_t *pkt);

/* Checks the TCP/UDP checksum of an IPv6 packet as fl_l4_checksum does for IPv4 (FL_CSUM_*, ipv4.h):
 * a partial one is kept (keep_partial) or completed. A UDP checksum of 0 passes as FL_CSUM_OK: RFC 8200
 * forbids it but RFC 6936 lets a socket accept it (UDP_NO_CHECK6_RX), so the receiving kernel decides, as
 * for any datagram of a socket that never sees it. Other next headers: FL_CSUM_OK. */
int fl_l4_checksum6(uint8_t *pkt, size_t len, int keep_partial);

/* Builds an ICMPv6 Packet Too Big (type 2, code 0) from `src` to the sender of `orig`, carrying `mtu` and
 * as much of `orig` as fits in 1280 bytes (RFC 4443 §2.4), with hop limit 255 and a correct checksum.
 * Returns its length, or 0 where RFC 4443 forbids one: an ICMPv6 error, a multicast destination, an
 * unspecified or multicast source, or a malformed packet. */
size_t fl_icmp6_packet_too_big(uint8_t *out, size_t cap, const uint8_t *orig, size_t orig_len, const uint8_t *src, uint32_t mtu);
#endif
