/* Helpers shared by the per-packet loops (engine.c), vxlan framing (vxlan.c) and the offload loops
 * (offload_tx.c, offload_rx.c). Internal to the addon. */
#ifndef FLANNEL_ENGINE_INTERNAL_H
#define FLANNEL_ENGINE_INTERNAL_H
#include "engine.h"
#include "layout.h"
#include <sys/types.h>
#include <sys/uio.h>

#define STAT(e, i) ((e)->stats[(i)])
#define PEER_STAT_ADD(e, p, i, n) do { if ((p)->slot < (e)->stat_slots) (e)->stats[ST_GLOBAL_COUNT + (p)->slot * SP_WORDS + (i)] += (n); } while (0)

int fl_stop_requested(fl_engine *e);
void fl_sync_peers(fl_engine *e);
void fl_send_batch(fl_engine *e, int fd, struct mmsghdr *msgs, int n);
/* Sends msgs[0..n), message i out of socket fd_of[i] (the one its flow hash picked): each run of
 * messages with the same socket is one sendmmsg. */
void fl_send_runs(fl_engine *e, int n, const int *fd_of);
/* TX of the IPv4 modes: the peer whose subnet holds the destination (else an ICMP unreachable to the
 * sender), the TTL decremented. NULL when dropped or answered. */
const fl_peer *fl_route_ipv4(fl_engine *e, uint8_t *pkt, size_t len);
/* RX checks of an inner IPv4 packet common to both modes, each drop counted by reason: a sound header
 * (ST_DROP_RX_MALFORMED) with a right checksum (ST_DROP_BAD_CHECKSUM), a source in the sending peer's
 * subnet (ST_DROP_SPOOFED_SOURCE), a destination in our own subnet (ST_DROP_FOREIGN_DESTINATION: the
 * tunnel carries pod traffic for this node only, never packets for the host's other addresses, services
 * or other networks), and a sound TCP/UDP header. Returns 1 when it passes. */
int fl_accept_inner(fl_engine *e, const fl_peer *peer, const uint8_t *ip, size_t len);
/* RX validation of one datagram (udp: the inner packet; vxlan: VXLAN + frame). Returns the inner
 * length to write, or 0 (counted drop). With `partial` non-NULL a partial inner checksum is kept and
 * reported there (the offload loops write it with NEEDS_CSUM); with NULL it is completed. */
size_t fl_accept_ipv4(fl_engine *e, const fl_peer *peer, uint8_t *pkt, size_t len, int *partial);
uint32_t fl_flow_hash(const uint8_t *ip, size_t len);
/* Where datagrams to `peer` go: the mode's endpoint (wireguard: where the peer last spoke from), or the lease's. */
void fl_peer_address(fl_engine *e, const fl_peer *peer, fl_sockaddr *to);
/* msg_namelen of a datagram to a peer: sizeof struct sockaddr_in, or sockaddr_in6 for a family-6 engine. */
socklen_t fl_addr_len(const fl_engine *e);
void fl_write_segmented(fl_engine *e, const fl_peer *peer, const uint8_t *frame, size_t len);
/* family 6 (vxlan6.c): fl_write_segmented of an IPv6 frame. */
void fl_write_segmented6(fl_engine *e, const fl_peer *peer, const uint8_t *frame, size_t len);
/* family 6 (vxlan6.c): answers an IPv6 frame read from the device that is larger than the engine's MTU
 * with an ICMPv6 Packet Too Big (as kernel VXLAN does) and counts the drop. */
void fl_packet_too_big6(fl_engine *e, const uint8_t *frame, size_t len);
/* family 6 (vxlan6.c): the RX check of an inner IPv6 packet's TCP/UDP checksum, with its counters (as fl_check_l4). */
int fl_check_l4_6(fl_engine *e, uint8_t *ip, size_t len, int *partial);
/* TCP segmentation (segment.c). The headers of the segment carrying payload bytes [off, off+n) of the
 * super-packet `frame` (l2 bytes before its IPv4 header), written at `out` with the TCP checksum left
 * partial (pseudo-header sum); returns their length. */
size_t fl_tcp_segment_header(uint8_t *out, const uint8_t *frame, size_t l2, size_t mss, size_t off, size_t n);
/* Completes the TCP checksum of a segment whose IPv4 header is at `ip` and payload (n bytes) at `payload`. */
void fl_tcp_complete_csum(uint8_t *ip, const uint8_t *payload, size_t n);
/* A whole segment (headers and payload copied, checksum complete) in out[0..cap); returns its length, 0 if it does not fit. */
size_t fl_tcp_segment(uint8_t *out, size_t cap, const uint8_t *frame, size_t l2, size_t mss, size_t off);
/* Writes one packet (or frame) to the device, with a virtio_net_hdr (zeros when NULL) when it has them. */
ssize_t fl_dev_write(fl_engine *e, const void *vnet_hdr, const uint8_t *pkt, size_t len);
/* Count packets sent to a peer / written to the device, globally and for the peer. */
void fl_count_tx(fl_engine *e, const fl_peer *peer, uint64_t packets, uint64_t bytes);
void fl_count_rx(fl_engine *e, const fl_peer *peer, uint64_t packets, uint64_t bytes);
/* Writes one received packet to the device and counts it, or counts a write error. Returns 1 if written. */
int fl_deliver(fl_engine *e, const fl_peer *peer, const void *vnet_hdr, const uint8_t *pkt, size_t len);
/* The RX checksum check of an inner IPv4 packet with its counters (fl_l4_checksum): returns 0 when it
 * is dropped as corrupt; with `partial` non-NULL a partial checksum is kept and flagged there. */
int fl_check_l4(fl_engine *e, uint8_t *ip, size_t len, int *partial);
/* Writes a packet gathered from iov[0..n), iov[0] being its virtio_net_hdr; returns the packet bytes written. */
ssize_t fl_dev_writev(fl_engine *e, const struct iovec *iov, int n);
void fl_offload_probe(fl_engine *e);
/* One offload step per direction: > 0 work done, 0 nothing to do, -errno. */
int fl_tx_step_offload(fl_engine *e);
int fl_rx_step_offload(fl_engine *e);
/* One step of a direction, offload or per-packet as the engine runs: > 0 work done, 0 nothing, -errno. */
int fl_tx_step(fl_engine *e);
int fl_rx_step(fl_engine *e);
/* The adaptive pair's loops (adaptive.c), with fl_pump's arguments and results. */
int fl_pump_lead(fl_engine *e, int timeout_ms, int max_batches);
int fl_pump_assist(fl_engine *e, int timeout_ms, int max_batches);
#endif
