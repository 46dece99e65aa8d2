/* libFuzzer target for the packet engine's parsing, splitting and coalescing: the TX split of
 * device reads (virtio header + packet, udp and vxlan framing) and the RX path of received
 * messages (datagrams, GRO trains, tunnel super-frames, VXLAN). Nothing is sent: TX builds the
 * messages only, RX writes to /dev/null. Build and run: test/unit/datapath-fuzz.test.ts.
 * Input: byte 0 picks mode (bit 0: vxlan), direction (bit 1: rx) and, for RX, a GRO size from
 * bytes 1-2; the rest is the device read (TX) or the received message (RX). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../src/engine.h"
#include "../src/engine_internal.h"
#include "../src/layout.h"

static uint32_t table[PT_HEADER_WORDS + 2 * PE_WORDS];
static uint64_t stats[ST_GLOBAL_COUNT + 4 * SP_WORDS];
static fl_engine engines[2];
static uint8_t buf[FL_RX_SLOT];

static void add_peer(int i, uint32_t subnet, uint32_t public_ip, uint16_t mac_hi, uint32_t mac_lo) {
  uint32_t *e = table + PT_HEADER_WORDS + i * PE_WORDS;
  e[PE_SUBNET] = subnet; e[PE_PREFIX] = 24; e[PE_PUBLIC_IP] = public_ip; e[PE_PORT] = 8472;
  e[PE_SLOT] = (uint32_t)i; e[PE_MAC_HI] = mac_hi; e[PE_MAC_LO] = mac_lo;
  e[PE_FLAGS] = i == 1 ? FL_PEER_PARTIAL_CSUM : 0; /* the TX split with complete and with partial checksums */
}

static fl_engine *engine(int vxlan) {
  fl_engine *e = &engines[vxlan];
  if (e->bufs) return e;
  table[PT_CAPACITY] = 2;
  table[PT_COUNT] = 2;
  add_peer(0, 0x0af40200, 0x7f000002, 0x0e00, 0x00000002); /* 10.244.2.0/24 at 127.0.0.2 */
  add_peer(1, 0x0af40300, 0x7f000003, 0x0e00, 0x00000003);
  memset(e, 0, sizeof *e);
  e->mode = vxlan ? FL_MODE_VXLAN : FL_MODE_UDP;
  e->dev_fd = open("/dev/null", O_WRONLY);
  e->udp_fd = -1;
  e->stop_fd = -1;
  e->peer_table = table;
  e->stats = stats;
  e->stat_slots = 4;
  e->dev_ip = 0x0af40100;
  e->own_subnet = 0x0af40100;
  e->own_mask = 0xffffff00;
  e->mtu = vxlan ? 1450 : 1472;
  e->vni = 1;
  memcpy(e->dev_mac, "\x0e\x00\x00\x00\x00\x01", 6);
  e->vnet = 1;
  e->gso = 1;
  e->uso = 1; /* UDP split (TX) and UDP coalescing (RX) too */
  if (fl_engine_init(e) != 0) abort();
  if (!(e->rx_bufs = malloc((size_t)FL_RX_SLOT * FL_BATCH))) abort();
  fl_sync_peers(e);
  return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3 || size - 3 > sizeof buf) return 0;
  fl_engine *e = engine(data[0] & 1);
  size_t len = size - 3;
  memcpy(buf, data + 3, len);
  if (data[0] & 2) {
    size_t gso = (size_t)(data[1] << 8 | data[2]);
    fl_offload_rx_message(e, &e->peers.peers[data[0] >> 7], buf, len, gso);
  } else {
    fl_offload_tx_build(e, buf, len);
  }
  return 0;
}
