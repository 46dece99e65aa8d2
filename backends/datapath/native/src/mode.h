/* One table per engine mode: everything the packet loops need to know of a mode's wire format, so the
 * loops never branch on the mode and a reader finds each mode's whole format in one file:
 *   udp.c        flannel's udp: the inner IPv4 packet is the datagram
 *   vxlan.c      RFC 7348: VXLAN header + Ethernet frame of the TAP VTEP
 *   wireguard.c  WireGuard v1 transport messages: 16-byte header, ChaCha20-Poly1305 ciphertext, tag
 *   vxlan6.c     family 6: vxlan over IPv6 (flannel-v6.<VNI>)
 *   wireguard.c  family 6 too (fl_mode_wireguard6: flannel-wg-v6, IPv6 in WireGuard over IPv6), and both inner
 *                families over one outer one (fl_mode_wireguard46, engine.h `dual`: flannel-wg of Mode auto/ipv4/ipv6) */
#ifndef FLANNEL_MODE_H
#define FLANNEL_MODE_H
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

struct fl_engine_s;
struct fl_peer_s;

typedef struct fl_mode {
  const char *name;
  /* Per-engine state of the mode (NULL: none): init returns 0 or -errno; free undoes it, also after a failed init. */
  int (*init)(struct fl_engine_s *e);
  void (*free)(struct fl_engine_s *e);
  uint8_t l2;                /* device link-header bytes before the inner IPv4 header (TAP frames: 14) */
  uint8_t prefix;            /* datagram bytes before the inner packet */
  uint8_t suffix;            /* at most this many datagram bytes after it (wireguard: padding and tag) */
  uint8_t peer_super_frames; /* RX: a datagram may be a peer's whole GSO super-frame (kernel peers over veth) */
  uint8_t gso_to_device;     /* RX offload: such a super-frame goes to the device as GSO; otherwise dropped */
  uint8_t authenticated;     /* RX: every datagram was authenticated (AEAD), so its inner TCP/UDP checksum is
                              * not verified here, as kernel WireGuard marks decrypted packets CHECKSUM_UNNECESSARY;
                              * a packet written alone still goes without flags, and the kernel checks it */
  /* TX: the peer a packet (or frame) read from the device goes to; may shorten *len to the inner
   * packet's own length and sets *hash (flow hash: picks the sending socket). NULL when it was
   * dropped or answered (counted). */
  const struct fl_peer_s *(*route)(struct fl_engine_s *e, uint8_t *pkt, size_t *len, uint32_t *hash);
  /* TX, gathering modes: writes the `prefix` bytes before an inner packet at h (NULL: none). */
  void (*write_prefix)(const struct fl_engine_s *e, uint8_t *h);
  /* TX, sealing modes (NULL: gathering): builds the datagram at d for an inner packet made of the hl
   * bytes already at d + prefix and n more at `payload` (read from there, written behind them: no copy
   * of its own); d has room for prefix + hl + n + suffix. Returns its length, 0 when dropped (counted).
   * The keys are those route() chose for the packet. */
  size_t (*seal)(struct fl_engine_s *e, const struct fl_peer_s *peer, uint8_t *d, size_t hl, const uint8_t *payload, size_t n);
  /* TX: the length on the wire of the datagram for an n-byte inner packet (UDP GSO sizes). */
  size_t (*wire_len)(const struct fl_engine_s *e, size_t n);
  /* TX: where datagrams to `peer` go (NULL: the lease's PublicIP and port). `to` is an fl_sockaddr
   * (engine.h) with its family set: its v4 member in a family-4 engine, v6 in family 6. */
  void (*endpoint)(struct fl_engine_s *e, const struct fl_peer_s *peer, void *to);
  /* RX: one datagram from `from` (a struct sockaddr_in, or a struct sockaddr_in6 for a family-6 mode): sets its sender and inner packet (*pkt, returns its length), or
   * returns 0 (a counted drop, or a message handed to the control plane). With `partial` non-NULL a
   * partial inner checksum is kept and flagged there (the offload loops); with NULL it is completed. */
  size_t (*decap)(struct fl_engine_s *e, const void *from, uint8_t **pkt, size_t len, const struct fl_peer_s **peer, int *partial);
} fl_mode;

extern const fl_mode fl_mode_udp, fl_mode_vxlan, fl_mode_wireguard, fl_mode_vxlan6, fl_mode_wireguard6, fl_mode_wireguard46;
#endif
