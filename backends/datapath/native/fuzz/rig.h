/* The fuzz harness's kernel objects: engines whose device is one end of an AF_UNIX SOCK_SEQPACKET
 * pair (each device read or write is one message) and whose UDP socket is real, bound on 127.0.0.1;
 * peers with UDP sockets on 127.0.0.2-5 that receive what the engine sends and send what it
 * receives. No root needed (with root, the socket buffers are raised past rmem_max/wmem_max). */
#ifndef FUZZ_RIG_H
#define FUZZ_RIG_H
#include "../src/engine.h"
#include "../src/layout.h"
#include <stddef.h>
#include <stdint.h>

#define RIG_PEERS 4
#define RIG_VNI 1
#define RIG_OWN_SUBNET 0x0af40100u /* 10.244.1.0/24, the device address is 10.244.1.0 */
#define RIG_OWN_MASK 0xffffff00u

typedef struct {
  uint32_t subnet, mask, public_ip, flags;
  uint8_t mac[6];
  int sock;        /* bound at public_ip: receives the engine's TX, sends our RX datagrams */
  uint16_t port;
} rig_peer;

typedef struct {
  fl_engine e;
  int dev;         /* our end of the device pair */
  int tx_fds[2];   /* the sending sockets a variant may give the engine (vxlan-style flow hashing) */
  uint16_t port;   /* the engine's UDP port */
  uint64_t stats[ST_GLOBAL_COUNT + RIG_PEERS * SP_WORDS];
} rig_engine;

extern rig_peer rig_peers[RIG_PEERS];
extern const uint8_t rig_dev_mac[6];
extern int rig_stranger; /* 127.0.0.9: not a peer; sends what must be dropped as unknown source */

/* The engine of this mode and MTU, created on first use. */
rig_engine *rig_engine_get(int vxlan, uint32_t mtu);
/* Per-run switches: virtio headers, UDP GSO, USO, UDP GRO on its socket, two sending sockets, and
 * SO_NO_CHECK on the sending sockets (the kernel then refuses UDP GSO: the unsegmented fallback). */
void rig_configure(rig_engine *r, int vnet, int gso, int uso, int gro, int two_tx_fds, int no_check);
/* Sends `len` bytes from socket fd to the engine, as one datagram or, with seg > 0, as a UDP GSO
 * train of seg-byte datagrams. Returns 0, or -1 when the kernel refused. */
int rig_send(rig_engine *r, int fd, const uint8_t *buf, size_t len, size_t seg);
/* The longest-prefix peer of an inner address (the oracle's own lookup), or -1. */
int rig_peer_of(uint32_t ip);
uint64_t rig_drops(const rig_engine *r); /* every global counter that counts a drop or an error */
#endif
