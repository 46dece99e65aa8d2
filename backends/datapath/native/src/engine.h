/* The packet loops. One engine context per worker thread (one direction, or both); contexts share the fds,
 * the peer table and the counters, but each direction's counters have a single writer. */
#ifndef FLANNEL_ENGINE_H
#define FLANNEL_ENGINE_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* struct mmsghdr, recvmmsg, sendmmsg */
#endif
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/uio.h>
#include "peers.h"
#include "mode.h"

#define FL_MODE_UDP 0
#define FL_MODE_VXLAN 1
#define FL_MODE_WIREGUARD 2
#define FL_HEADROOM 16            /* per-packet TX: bytes kept before each read for the mode's prefix */
#define FL_BATCH 64
#define FL_RX_SLOT (65536 + 64)
#define FL_VNET_HDR_LEN 10
#define FL_TX_READS 8            /* super-packets read per offload TX batch */
#define FL_SUPER (65536 + 128)    /* one read: vnet header + up to 64 KB */
#define FL_TX_SEGS 512            /* segment header slots per offload TX batch */
#define FL_TX_HDR 160             /* one slot: VXLAN 8 + Ethernet 14 + IPv4 ≤ 60 + TCP ≤ 60 (sealing modes: a whole datagram) */
#define FL_TX_IOVS (2 * FL_TX_SEGS) /* a header and a payload iovec per datagram */
#define FL_RX_MSGS 16             /* GRO trains received per offload RX batch */
#define FL_GRO_FLOWS 16
#define FL_GRO_SEGS 64

typedef struct {
  uint8_t *frame[FL_GRO_SEGS]; /* in the receive buffers; the first one's headers are rewritten on flush */
  uint16_t len[FL_GRO_SEGS];
  const void *peer;
  int n;
  int closed;      /* a shorter or PSH segment ended the run */
  int partial;     /* the first segment's checksum is partial: written alone, it goes with NEEDS_CSUM */
  size_t total;    /* IP total length of the merged packet */
} fl_gro_flow;

/* A datagram's peer address: IPv4 for a family-4 engine, IPv6 for a family-6 one (the IPv6 VTEP). */
typedef union {
  struct sockaddr_in v4;
  struct sockaddr_in6 v6;
} fl_sockaddr;

#define FL_PUMP_IDLE 0
#define FL_PUMP_STOPPED 1
#define FL_DIR_TX 1 /* device → UDP */
#define FL_DIR_RX 2 /* UDP → device */
#define FL_DIR_LEAD 4   /* adaptive lead: TX, and RX while it owns it (adaptive.c) */
#define FL_DIR_ASSIST 8 /* adaptive assist: RX while the lead lends it */

typedef struct fl_engine_s {
  int mode;          /* FL_MODE_*: picks `ops` in fl_engine_init */
  int family;        /* 4 (0 reads as 4) or 6: the inner and outer IP version; 6 in vxlan mode (flannel-v6.<VNI>)
                      * and wireguard mode (flannel-wg-v6) */
  int dual;          /* wireguard mode only: inner IPv4 and IPv6 through one device (flannel-wg of Mode auto,
                      * ipv4, ipv6), `family` then being the outer one; a peer table of PT_FAMILY 46, both
                      * own_subnet/own_mask and own_subnet6/own_prefix6, no offload (vnet 0) */
  const fl_mode *ops;
  int dev_fd;        /* TUN (udp mode) or TAP (vxlan mode) */
  int udp_fd;        /* the bound UDP socket: receives, and sends in udp mode */
  int stop_fd;       /* eventfd: readable = stop */
  const uint32_t *peer_table;
  uint64_t *stats;
  uint32_t stat_slots;
  uint32_t dev_ip;   /* our device address: source of ICMP errors */
  uint32_t own_subnet, own_mask;
  uint8_t dev_ip6[16];     /* family 6: our device address (source of Packet Too Big) */
  uint8_t own_subnet6[16]; /* family 6: our subnet and its prefix length: inner destinations must lie in it */
  uint32_t own_prefix6;
  uint32_t mtu;      /* device MTU: larger inner packets are dropped as oversize */
  uint32_t vni;
  uint8_t dev_mac[6];
  int *tx_fds;       /* vxlan: sockets bound to different source ports, picked by flow hash */
  uint32_t n_tx_fds;
  uint32_t slot_size;
  int vnet;          /* device opened with IFF_VNET_HDR and TSO offloads: the offload loops run */
  int gso;           /* UDP_SEGMENT works on the sockets */
  int gro;           /* UDP_GRO is on for udp_fd */
  int uso;           /* the device has USO: UDP GSO packets come from it, coalesced UDP may go to it */
  int spin_us;       /* stay busy this long after the last traffic before sleeping in poll (0: never) */
  int64_t active_us; /* when the pump last moved traffic (CLOCK_MONOTONIC) */
  /* adaptive threading (adaptive.c): who serves RX (0 the lead, 1 the assist), in shared memory; the
   * eventfds that wake the assist (join) and the lead (back); each side's load measurements */
  uint32_t *rx_owner;
  int join_fd, back_fd;
  int64_t busy_since_us;    /* lead: start of the current run of rounds that all moved packets */
  uint32_t busy_rounds;     /* lead: rounds in that run */
  uint64_t busy_rx;         /* lead: RX messages in that run */
  int64_t window_start_us;  /* assist: its current rate window */
  uint64_t window_packets;  /* assist: RX messages in it */
  /* lead, per direction (0 TX, 1 RX): when the first traffic not yet answered by the other direction
   * moved (0: none waiting); the smoothed delay of the answers and its mean deviation (0: none yet);
   * whether the last busy-poll for an answer expired, so that none is made until an answer comes */
  int64_t waiting_since_us[2];
  int64_t answer_srtt_us[2], answer_var_us[2];
  int answer_missed[2];
  int busy_polling;         /* lead: in a busy-poll for a predicted answer */
  uint8_t *tx_rbuf;  /* offload TX: FL_TX_READS reads of FL_SUPER */
  uint8_t *tx_hdrs;  /* offload TX: FL_TX_SEGS header slots of FL_TX_HDR */
  struct iovec *tx_iov; /* offload TX: FL_TX_IOVS, the gathered datagrams of a batch */
  char (*ctrl)[64];  /* per-message control buffers */
  fl_gro_flow flows[FL_GRO_FLOWS];
  int n_flows;
  fl_peers peers;
  uint8_t *bufs;     /* TX: FL_BATCH slots of slot_size */
  uint8_t *rx_bufs;  /* RX: FL_BATCH slots of FL_RX_SLOT (a peer's GSO super-frame can be 64 KB) */
  uint8_t *seg;      /* one slot_size scratch frame for software segmentation */
  struct mmsghdr msgs[FL_BATCH];
  struct iovec iov[FL_BATCH][2];
  fl_sockaddr addrs[FL_BATCH];
  uint8_t icmp[1600];
  size_t tx_slot;    /* offload TX: bytes per tx_hdrs slot (FL_TX_HDR, or a whole datagram when the mode seals) */
  /* wireguard mode (wireguard.c) */
  uint8_t *wg;       /* the shared state (layout.h "wireguard mode") */
  size_t wg_len;
  int ctrl_fd;       /* write end of the control plane's handshake pipe */
  uint32_t wg_kp_capacity, wg_peer_capacity;
  size_t wg_kp_offset;
  uint64_t wg_reject_us, wg_rekey_us;
  void *wg_tx_cipher, *wg_rx_cipher; /* EVP_CIPHER_CTX, one per direction and engine */
  uint8_t wg_tx_key[32], wg_rx_key[32]; /* the key each context holds (set again only when it changes) */
  int wg_tx_keyed, wg_rx_keyed;
  uint8_t *wg_tx_kp; /* the keypair route() chose for the packet being sent */
} fl_engine;

/* Allocates buffers; returns 0 or -errno. The caller fills the fields above first. */
int fl_engine_init(fl_engine *e);
void fl_engine_free(fl_engine *e);
/* Moves packets in the directions `dirs` (FL_DIR_TX | FL_DIR_RX, or one adaptive role: FL_DIR_LEAD,
 * FL_DIR_ASSIST, which need rx_owner, join_fd and back_fd) until idle for timeout_ms or
 * max_batches steps. Returns FL_PUMP_STOPPED, FL_PUMP_IDLE, or -errno. With both directions one
 * thread serves the queue: a reply the RX step's write produced is sent by the next TX step, with
 * no thread wakeup in between. */
int fl_pump(fl_engine *e, int dirs, int timeout_ms, int max_batches);
#endif
