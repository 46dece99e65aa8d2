/* Shared by the offload loops (offload_tx.c, offload_rx.c): the virtio_net_hdr that goes with every
 * read and write on a device opened with IFF_VNET_HDR, and the framing offsets of the mode (mode.h). */
#ifndef FLANNEL_OFFLOAD_H
#define FLANNEL_OFFLOAD_H
#include "engine.h"
#include <stddef.h>
#include <stdint.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#define VNET_F_NEEDS_CSUM 1
#define VNET_GSO_NONE 0
#define VNET_GSO_TCPV4 1
#define VNET_GSO_TCPV6 4
#define VNET_GSO_UDP_L4 5 /* USO: UDP datagrams of gso_size payload each (Linux ≥ 6.2) */
#define VNET_GSO_ECN 0x80
#define MAX_UDP_PAYLOAD 65507 /* 65535 − IPv4 − UDP headers: the most one UDP GSO send may carry */
#define MAX_GSO_SEGS 64       /* UDP_MAX_SEGMENTS of older kernels */

typedef struct {
  uint8_t flags, gso_type;
  uint16_t hdr_len, gso_size, csum_start, csum_offset; /* native (little) endian: legacy virtio */
} __attribute__((packed)) vnet_hdr;

/* The Ethernet header before the IP packet (vxlan: TAP frames) and the VXLAN header before it on the wire. */
static inline size_t fl_l2_len(const fl_engine *e) { return e->ops->l2; }
static inline size_t fl_prefix_len(const fl_engine *e) { return e->ops->prefix; }
#endif
