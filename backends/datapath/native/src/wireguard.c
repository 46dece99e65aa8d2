/* wireguard mode: WireGuard v1 transport messages (whitepaper §5.4.6). The handshake, the timers and
 * the keys' life cycle are the control plane's (backends/wireguard/session); this file only uses the
 * keypairs it publishes in the shared state (layout.h, "wireguard mode").
 *  TX: route by inner destination (the peer's subnet is its allowed IPs) → the peer's current keypair
 *      → per datagram: a counter (fetch_add), the inner packet zero-padded to 16 (never beyond the MTU),
 *      ChaCha20-Poly1305 in place, header (type 4, receiver index, counter) and tag around it.
 *  RX: type 4 → keypair by receiver index → decrypt in place and authenticate → replay window →
 *      the inner source must be in the sender's allowed IPs → the IPv4 checks of every mode.
 *      Types 1-3 (handshake, cookie) go to the control plane through a pipe, whole, with the source.
 * Family 6 (fl_mode_wireguard6, flannel's flannel-wg-v6 of `separate` mode): IPv6 inside, WireGuard over
 * IPv6 sockets; the same sealing and opening. TX routes by the inner IPv6 destination (anything that is not
 * IPv6 is dropped as malformed), sends to the peer's PublicIPv6 or where it last spoke from (WGP_EP6_*,
 * under a seqlock). RX finds the peer by the keypair's peer slot (WGK_PEER_SUBNET holds a fold of its IPv6
 * subnet as a check), checks the inner IPv6 source against the peer's subnet (allowed IPs) and the
 * destination against ours, as vxlan6.c does. Its pipe records carry a 16-byte source address (CTRL_HEADER6).
 * Dual (fl_mode_wireguard46, engine.h `dual`: flannel-wg of flannel's Mode auto, ipv4 and ipv6): IPv4 and
 * IPv6 inside one device, WireGuard over the engine's family (4: IPv4 sockets to the peers' PublicIP, 6:
 * IPv6 sockets to their PublicIPv6). Each peer has both subnets (PT_FAMILY 46); TX routes an inner packet
 * by its version to the peer holding its destination; RX finds the peer by the keypair's slot, checks the
 * inner source against the peer's subnet of the inner packet's version, then that version's checks.
 * The roaming endpoint is the outer family's (WGP_ENDPOINT or WGP_EP6_*); the pipe records too.
 * Cryptography is OpenSSL's (Node's own libcrypto, through its headers): nothing here is a primitive. */
#define _GNU_SOURCE
#include "engine_internal.h"
#include "ipv4.h"
#include "ipv6.h"
#include "layout.h"
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MSG_INITIATION 1
#define MSG_RESPONSE 2
#define MSG_COOKIE_REPLY 3
#define MSG_TRANSPORT 4
#define HDR 16 /* type, reserved, receiver index, counter */
#define TAG 16
#define REKEY_AFTER_MESSAGES (1ull << 60)
#define REJECT_AFTER_MESSAGES (UINT64_MAX - (1ull << 13)) /* 2^64 − 2^13 − 1 */
#define REPLAY_BLOCKS 128
#define REPLAY_WINDOW ((REPLAY_BLOCKS - 1) * 64)
#define CTRL_HEADER 8 /* pipe record: u16 length, u16 source port, u32 source IPv4 (little-endian) */
/* family 6 pipe record: u16 length, u16 source port (little-endian), the 16-byte source IPv6 address
 * (network order), then the message (backends/wireguard/session/handshake-queue.ts) */
#define CTRL_HEADER6 20

static inline uint32_t ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; } /* little-endian host */
static inline uint64_t ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void st32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void st64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint32_t *w32(uint8_t *p) { return (uint32_t *)(void *)p; }
static inline uint64_t *w64(uint8_t *p) { return (uint64_t *)(void *)p; }

static uint64_t now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static uint8_t *peer_state(fl_engine *e, uint32_t slot) {
  return slot < e->wg_peer_capacity ? e->wg + WG_HEADER_BYTES + (size_t)slot * WG_PEER_BYTES : NULL;
}

static uint8_t *keypair_at(fl_engine *e, uint32_t slot) {
  return e->wg + e->wg_kp_offset + (size_t)(slot & (e->wg_kp_capacity - 1)) * WG_KP_BYTES;
}

static void want_handshake(uint8_t *ps) {
  __atomic_fetch_or(w32(ps + WGP_FLAGS), WGP_F_WANT_HANDSHAKE, __ATOMIC_RELAXED);
}

static int wg_init(fl_engine *e) {
  if (!e->wg || e->wg_len < WG_HEADER_BYTES || ((uintptr_t)e->wg & 7)) return -EINVAL;
  uint32_t kps = ld32(e->wg + WG_HDR_KP_CAPACITY), peers = ld32(e->wg + WG_HDR_PEER_CAPACITY);
  size_t kp_off = WG_HEADER_BYTES + (((size_t)peers * WG_PEER_BYTES + 63) & ~(size_t)63);
  if (kps == 0 || (kps & (kps - 1)) || kp_off + (size_t)kps * WG_KP_BYTES > e->wg_len || e->ctrl_fd < 0) return -EINVAL;
  e->wg_kp_capacity = kps;
  e->wg_peer_capacity = peers;
  e->wg_kp_offset = kp_off;
  e->wg_reject_us = ld64(e->wg + WG_HDR_REJECT_AFTER_US);
  e->wg_rekey_us = ld64(e->wg + WG_HDR_REKEY_AFTER_US);
  EVP_CIPHER_CTX *tx = EVP_CIPHER_CTX_new(), *rx = EVP_CIPHER_CTX_new();
  e->wg_tx_cipher = tx;
  e->wg_rx_cipher = rx;
  if (!tx || !rx || EVP_EncryptInit_ex(tx, EVP_chacha20_poly1305(), NULL, NULL, NULL) != 1 ||
      EVP_DecryptInit_ex(rx, EVP_chacha20_poly1305(), NULL, NULL, NULL) != 1)
    return -ENOMEM;
  return 0;
}

static void wg_free(fl_engine *e) {
  OPENSSL_cleanse(e->wg_tx_key, sizeof e->wg_tx_key);
  OPENSSL_cleanse(e->wg_rx_key, sizeof e->wg_rx_key);
  e->wg_tx_keyed = e->wg_rx_keyed = 0;
  EVP_CIPHER_CTX_free(e->wg_tx_cipher);
  EVP_CIPHER_CTX_free(e->wg_rx_cipher);
  e->wg_tx_cipher = e->wg_rx_cipher = NULL;
}

/* Starts one message on context c: the nonce always, the key only when it differs from the one the
 * context holds (setting a ChaCha20-Poly1305 key costs as much as the nonce, header and tag together). */
static int cipher_start(EVP_CIPHER_CTX *c, uint8_t held[32], int *keyed, const uint8_t *key, const uint8_t *nonce, int enc) {
  if (*keyed && memcmp(held, key, 32) == 0) return EVP_CipherInit_ex(c, NULL, NULL, NULL, nonce, enc);
  memcpy(held, key, 32);
  *keyed = 1;
  return EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc);
}

/* A keypair that may still be used at `now`: published, not past REJECT_AFTER_TIME. */
static int keypair_live(const fl_engine *e, uint8_t *kp, uint64_t now) {
  if (__atomic_load_n(w32(kp + WGK_STATE), __ATOMIC_ACQUIRE) != 1) return 0;
  uint64_t created = ld64(kp + WGK_CREATED_US);
  return now >= created && now - created < e->wg_reject_us;
}

/* TX: `peer`'s current keypair for seal() (in e->wg_tx_kp), or NULL (counted, a handshake requested). */
static const fl_peer *wg_pick_keypair(fl_engine *e, const fl_peer *peer) {
  uint8_t *ps = peer_state(e, peer->slot);
  if (!ps) { STAT(e, ST_DROP_NO_SESSION)++; return NULL; } /* no counters yet: no session either */
  uint32_t cur = __atomic_load_n(w32(ps + WGP_CURRENT), __ATOMIC_ACQUIRE);
  uint64_t now = now_us();
  uint8_t *kp = cur ? keypair_at(e, cur - 1) : NULL;
  if (!kp || !keypair_live(e, kp, now) || ld32(kp + WGK_PEER_SLOT) != peer->slot ||
      __atomic_load_n(w64(kp + WGK_SEND_COUNTER), __ATOMIC_RELAXED) >= REJECT_AFTER_MESSAGES) {
    want_handshake(ps);
    STAT(e, ST_DROP_NO_SESSION)++;
    return NULL;
  }
  /* wireguard-go keepKeyFreshSending: any keypair past REKEY_AFTER_MESSAGES, ours past REKEY_AFTER_TIME */
  uint32_t flags = __atomic_load_n(w32(kp + WGK_FLAGS), __ATOMIC_RELAXED);
  if (__atomic_load_n(w64(kp + WGK_SEND_COUNTER), __ATOMIC_RELAXED) >= REKEY_AFTER_MESSAGES ||
      ((flags & WGK_F_INITIATOR) && now - ld64(kp + WGK_CREATED_US) >= e->wg_rekey_us))
    want_handshake(ps);
  e->wg_tx_kp = kp;
  return peer;
}

/* TX: the peer of the inner destination, and its current keypair for seal(). */
static const fl_peer *wg_route(fl_engine *e, uint8_t *pkt, size_t *len, uint32_t *hash) {
  const fl_peer *peer = fl_route_ipv4(e, pkt, *len);
  if (!peer) return NULL;
  *len = fl_rd16(pkt + 2);
  *hash = fl_flow_hash(pkt, *len);
  return wg_pick_keypair(e, peer);
}

/* family 6 TX: the peer whose IPv6 subnet holds the inner destination. Hop limits are left to the kernels
 * (as vxlan6.c leaves them, and as kernel WireGuard does). */
static const fl_peer *wg6_route(fl_engine *e, uint8_t *pkt, size_t *len, uint32_t *hash) {
  size_t total = fl_ipv6_len(pkt, *len);
  if (!total) { STAT(e, ST_DROP_TX_MALFORMED)++; return NULL; } /* not IPv6 (an IPv4 packet on flannel-wg-v6), or cut short */
  if (!e->vnet && total > e->mtu) { fl_packet_too_big6(e, pkt, total); return NULL; } /* the device MTU raised by hand */
  /* Multicast (the device's own MLD reports and router solicitations from its link-local address): no
   * peer's, dropped as vxlan6.c drops multicast frames, so drop_no_route keeps meaning a missing peer. */
  if (pkt[24] == 0xff) { STAT(e, ST_DROP_BROADCAST)++; return NULL; }
  const fl_peer *peer = fl_peers_by_dst6(&e->peers, pkt + 24);
  if (!peer) { STAT(e, ST_DROP_NO_ROUTE)++; return NULL; }
  *len = total;
  *hash = 0; /* one sending socket: a peer learns our endpoint from our packets' source */
  return wg_pick_keypair(e, peer);
}

static size_t padded_len(const fl_engine *e, size_t n) {
  size_t p = (n + 15) & ~(size_t)15;
  return p > e->mtu && n <= e->mtu ? e->mtu : p;
}

static size_t wg_wire_len(const fl_engine *e, size_t n) {
  return HDR + padded_len(e, n) + TAG;
}

static const uint8_t ZEROS[16];

/* The inner packet: hl bytes at d + HDR (encrypted in place), n bytes at `payload` (encrypted into
 * d + HDR + hl), zero padding; then the tag and the header around it. */
static size_t wg_seal(fl_engine *e, const fl_peer *peer, uint8_t *d, size_t hl, const uint8_t *payload, size_t n) {
  uint8_t *kp = e->wg_tx_kp;
  uint64_t ctr = __atomic_fetch_add(w64(kp + WGK_SEND_COUNTER), 1, __ATOMIC_RELAXED);
  if (ctr >= REJECT_AFTER_MESSAGES) {
    uint8_t *ps = peer_state(e, peer->slot);
    if (ps) want_handshake(ps);
    STAT(e, ST_DROP_NO_SESSION)++;
    return 0;
  }
  size_t len = hl + n, padded = padded_len(e, len);
  uint8_t nonce[12] = {0};
  st64(nonce + 4, ctr);
  EVP_CIPHER_CTX *c = e->wg_tx_cipher;
  uint8_t *out = d + HDR;
  int a = 0, b = 0, z = 0, fin = 0;
  if (cipher_start(c, e->wg_tx_key, &e->wg_tx_keyed, kp + WGK_SEND_KEY, nonce, 1) != 1 ||
      (hl && EVP_EncryptUpdate(c, out, &a, out, (int)hl) != 1) ||
      (n && EVP_EncryptUpdate(c, out + a, &b, payload, (int)n) != 1) ||
      (padded > len && EVP_EncryptUpdate(c, out + a + b, &z, ZEROS, (int)(padded - len)) != 1) ||
      EVP_EncryptFinal_ex(c, out + a + b + z, &fin) != 1 || (size_t)(a + b + z + fin) != padded ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG, out + padded) != 1) {
    e->wg_tx_keyed = 0;
    STAT(e, ST_TX_SEND_ERRORS)++;
    return 0;
  }
  d[0] = MSG_TRANSPORT;
  d[1] = d[2] = d[3] = 0;
  st32(d + 4, ld32(kp + WGK_REMOTE_INDEX));
  st64(d + 8, ctr);
  return HDR + padded + TAG;
}

/* Where the peer last sent an authenticated packet from, or its lease's endpoint. */
static void wg_endpoint(fl_engine *e, const fl_peer *peer, void *to_) {
  struct sockaddr_in *to = &((fl_sockaddr *)to_)->v4;
  uint8_t *ps = peer_state(e, peer->slot);
  uint64_t ep = ps ? __atomic_load_n(w64(ps + WGP_ENDPOINT), __ATOMIC_RELAXED) : 0;
  to->sin_addr.s_addr = htonl(ep ? (uint32_t)(ep >> 16) : peer->public_ip);
  to->sin_port = htons(ep ? (uint16_t)ep : (uint16_t)peer->port);
}

/* family 6: the roamed endpoint of peer state `ps` (the seqlock of layout.h): its port (0: none) and address.
 * A writer holds the lock for a few stores; should one never finish, the lease's endpoint is used. */
static uint32_t ep6_read(uint8_t *ps, uint8_t addr[16]) {
  for (int tries = 0; tries < 100000; tries++) {
    uint32_t s1 = __atomic_load_n(w32(ps + WGP_EP6_SEQ), __ATOMIC_ACQUIRE);
    if (s1 & 1) { sched_yield(); continue; }
    uint32_t port = __atomic_load_n(w32(ps + WGP_EP6_PORT), __ATOMIC_RELAXED), w[4];
    for (int k = 0; k < 4; k++) w[k] = __atomic_load_n(w32(ps + WGP_EP6_ADDR + 4 * k), __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(w32(ps + WGP_EP6_SEQ), __ATOMIC_RELAXED) != s1) continue;
    memcpy(addr, w, 16);
    return port;
  }
  return 0;
}

/* Returns 0 (nothing written) if another writer never lets go of the lock. */
static int ep6_write(uint8_t *ps, const uint8_t addr[16], uint32_t port) {
  uint32_t *seq = w32(ps + WGP_EP6_SEQ), s = __atomic_load_n(seq, __ATOMIC_RELAXED);
  for (int tries = 0;; tries++) {
    if (tries == 100000) return 0;
    if (s & 1) { sched_yield(); s = __atomic_load_n(seq, __ATOMIC_RELAXED); continue; }
    if (__atomic_compare_exchange_n(seq, &s, s + 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) break;
  }
  uint32_t w[4];
  memcpy(w, addr, 16);
  __atomic_store_n(w32(ps + WGP_EP6_PORT), port, __ATOMIC_RELAXED);
  for (int k = 0; k < 4; k++) __atomic_store_n(w32(ps + WGP_EP6_ADDR + 4 * k), w[k], __ATOMIC_RELAXED);
  __atomic_store_n(seq, s + 2, __ATOMIC_RELEASE);
  return 1;
}

static void wg6_endpoint(fl_engine *e, const fl_peer *peer, void *to_) {
  struct sockaddr_in6 *to = &((fl_sockaddr *)to_)->v6;
  uint8_t *ps = peer_state(e, peer->slot), addr[16];
  uint32_t port = ps ? ep6_read(ps, addr) : 0;
  memcpy(&to->sin6_addr, port ? addr : peer->public6, 16);
  to->sin6_port = htons((uint16_t)(port ? port : peer->port));
}

/* Handshake and cookie messages: to the control plane, whole, with their source (a struct sockaddr_in,
 * or a struct sockaddr_in6 in family 6). */
static void to_control_plane(fl_engine *e, const void *from, const uint8_t *msg, size_t len) {
  static const size_t sizes[4] = {[MSG_INITIATION] = 148, [MSG_RESPONSE] = 92, [MSG_COOKIE_REPLY] = 64};
  if (len != sizes[msg[0]]) { STAT(e, ST_DROP_BAD_WG_MESSAGE)++; return; }
  uint8_t rec[CTRL_HEADER6 + 148];
  size_t hdr = e->family == 6 ? CTRL_HEADER6 : CTRL_HEADER;
  uint16_t total = (uint16_t)(hdr + len), port;
  if (e->family == 6) {
    const struct sockaddr_in6 *f6 = from;
    port = ntohs(f6->sin6_port);
    memcpy(rec + 4, f6->sin6_addr.s6_addr, 16);
  } else {
    const struct sockaddr_in *f4 = from;
    port = ntohs(f4->sin_port);
    st32(rec + 4, ntohl(f4->sin_addr.s_addr));
  }
  memcpy(rec, &total, 2);
  memcpy(rec + 2, &port, 2);
  memcpy(rec + hdr, msg, len);
  /* One write of < PIPE_BUF bytes: whole or not at all (EAGAIN when the control plane is behind). */
  if (write(e->ctrl_fd, rec, total) == (ssize_t)total) STAT(e, ST_WG_HANDSHAKES_QUEUED)++;
  else STAT(e, ST_DROP_HANDSHAKE_QUEUE_FULL)++;
}

/* The replay window (RFC 6479, as wireguard-go keeps it): 1 if `ctr` is new, and records it. */
static int replay_accept(uint8_t *kp, uint64_t ctr) {
  uint32_t *lock = w32(kp + WGK_REPLAY_LOCK);
  while (__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE)) sched_yield();
  uint64_t last = ld64(kp + WGK_REPLAY_LAST), *bits = w64(kp + WGK_REPLAY_BITS);
  int ok = 1;
  if (ctr > last) {
    uint64_t cur = last >> 6, diff = (ctr >> 6) - cur;
    if (diff > REPLAY_BLOCKS) diff = REPLAY_BLOCKS;
    for (uint64_t i = 1; i <= diff; i++) bits[(cur + i) % REPLAY_BLOCKS] = 0;
    st64(kp + WGK_REPLAY_LAST, ctr);
  } else if (last - ctr > REPLAY_WINDOW) {
    ok = 0;
  }
  if (ok) {
    uint64_t *word = &bits[(ctr >> 6) % REPLAY_BLOCKS], bit = 1ull << (ctr & 63);
    if (*word & bit) ok = 0;
    else *word |= bit;
  }
  __atomic_store_n(lock, 0, __ATOMIC_RELEASE);
  return ok;
}

/* After a packet authenticated on `kp` (slot `slot`): confirm a responder's new keypair. Returns the
 * peer's state (NULL: none). */
static uint8_t *confirm(fl_engine *e, const fl_peer *peer, uint8_t *kp, uint32_t slot) {
  uint8_t *ps = peer_state(e, peer->slot);
  if (!ps) return NULL;
  if (__atomic_load_n(w32(kp + WGK_FLAGS), __ATOMIC_RELAXED) & WGK_F_NEXT) {
    uint32_t was = __atomic_fetch_and(w32(kp + WGK_FLAGS), ~WGK_F_NEXT, __ATOMIC_ACQ_REL);
    if (was & WGK_F_NEXT) {
      __atomic_store_n(w32(ps + WGP_CURRENT), slot + 1, __ATOMIC_RELEASE);
      STAT(e, ST_WG_KEYPAIRS_CONFIRMED)++;
    }
  }
  return ps;
}

/* ... and follow the peer to a new source address (WireGuard's roaming). */
static void authenticated(fl_engine *e, const fl_peer *peer, uint8_t *kp, uint32_t slot, const struct sockaddr_in *from) {
  uint8_t *ps = confirm(e, peer, kp, slot);
  if (!ps) return;
  uint64_t src = (uint64_t)ntohl(from->sin_addr.s_addr) << 16 | ntohs(from->sin_port);
  uint64_t ep = __atomic_load_n(w64(ps + WGP_ENDPOINT), __ATOMIC_RELAXED);
  uint64_t lease = (uint64_t)peer->public_ip << 16 | (uint16_t)peer->port;
  if (src != (ep ? ep : lease)) {
    __atomic_store_n(w64(ps + WGP_ENDPOINT), src, __ATOMIC_RELAXED);
    STAT(e, ST_WG_ENDPOINT_UPDATES)++;
  }
}

/* RX of one datagram up to an authenticated, new transport message: handshake messages go to the
 * control plane; a transport message is decrypted in place and replay-checked. Returns its keypair (with
 * its slot and the plaintext length), or NULL (counted, or handed over). */
static uint8_t *wg_open(fl_engine *e, const void *from, uint8_t *d, size_t len, uint32_t *slotp, size_t *clenp) {
  if (len < 4 || d[1] || d[2] || d[3] || d[0] < MSG_INITIATION || d[0] > MSG_TRANSPORT) { STAT(e, ST_DROP_BAD_WG_MESSAGE)++; return NULL; }
  if (d[0] != MSG_TRANSPORT) { to_control_plane(e, from, d, len); return NULL; }
  if (len < HDR + TAG) { STAT(e, ST_DROP_BAD_WG_MESSAGE)++; return NULL; }
  uint32_t index = ld32(d + 4), slot = index & (e->wg_kp_capacity - 1);
  uint8_t *kp = keypair_at(e, slot);
  if (__atomic_load_n(w32(kp + WGK_STATE), __ATOMIC_ACQUIRE) != 1 || ld32(kp + WGK_LOCAL_INDEX) != index) { STAT(e, ST_DROP_UNKNOWN_INDEX)++; return NULL; }
  uint64_t ctr = ld64(d + 8);
  if (!keypair_live(e, kp, now_us()) || ctr >= REJECT_AFTER_MESSAGES) { STAT(e, ST_DROP_EXPIRED_KEYPAIR)++; return NULL; }
  size_t clen = len - HDR - TAG;
  uint8_t nonce[12] = {0};
  st64(nonce + 4, ctr);
  EVP_CIPHER_CTX *c = e->wg_rx_cipher;
  int out = 0, fin = 0;
  if (cipher_start(c, e->wg_rx_key, &e->wg_rx_keyed, kp + WGK_RECV_KEY, nonce, 0) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TAG, d + HDR + clen) != 1 ||
      EVP_DecryptUpdate(c, d + HDR, &out, d + HDR, (int)clen) != 1 ||
      EVP_DecryptFinal_ex(c, d + HDR + out, &fin) != 1) {
    e->wg_rx_keyed = 0; /* start the next message from a fresh key */
    STAT(e, ST_DROP_BAD_DECRYPT)++;
    return NULL;
  }
  if (!replay_accept(kp, ctr)) { STAT(e, ST_DROP_REPLAY)++; return NULL; }
  *slotp = slot;
  *clenp = clen;
  return kp;
}

/* A transport message without payload is a keepalive: counted, nothing to deliver. */
static int keepalive(fl_engine *e, const fl_peer *peer, size_t clen) {
  if (clen) return 0;
  STAT(e, ST_WG_KEEPALIVES_RECEIVED)++;
  PEER_STAT_ADD(e, peer, SP_RX_KEEPALIVES, 1);
  return 1;
}

/* The inner IPv4 packet `peer` sent (clen bytes at ip): delivered (fl_accept_ipv4), or 0, counted, when it is
 * cut short or its source is outside the peer's allowed IPs (cryptokey routing: its lease's subnet; none
 * without `has_subnet`, a dual peer with no IPv4 subnet). */
static size_t inner4(fl_engine *e, const fl_peer *peer, int has_subnet, uint8_t *ip, size_t clen, const fl_peer **peerp, uint8_t **pkt, int *partial) {
  if (clen < 20 || ip[0] >> 4 != 4) { STAT(e, ST_DROP_RX_MALFORMED)++; return 0; }
  if (!has_subnet || (fl_rd32(ip + 12) & peer->mask) != peer->subnet) { STAT(e, ST_DROP_ALLOWED_IPS)++; return 0; }
  *peerp = peer;
  *pkt = ip;
  return fl_accept_ipv4(e, peer, ip, clen, partial);
}

/* The inner IPv6 packet `peer` sent: its length, or 0, counted, when it is malformed (not IPv6, cut short, a bad
 * transport header), from outside the peer's allowed IPs (its lease's IPv6 subnet) or not for our subnet.
 * Authenticated: the inner TCP/UDP checksum is not verified (mode.h, `authenticated`). */
static size_t inner6(fl_engine *e, const fl_peer *peer, int has_subnet, uint8_t *ip, size_t clen, const fl_peer **peerp, uint8_t **pkt) {
  size_t total = fl_ipv6_len(ip, clen);
  if (!total) { STAT(e, ST_DROP_RX_MALFORMED)++; return 0; }
  if (!has_subnet || !fl_in_subnet6(ip + 8, peer->subnet6, peer->prefix6)) { STAT(e, ST_DROP_ALLOWED_IPS)++; return 0; }
  if (!fl_in_subnet6(ip + 24, e->own_subnet6, e->own_prefix6)) { STAT(e, ST_DROP_FOREIGN_DESTINATION)++; return 0; }
  if (!fl_ipv6_transport_ok(ip)) { STAT(e, ST_DROP_RX_MALFORMED)++; return 0; }
  *peerp = peer;
  *pkt = ip;
  return total;
}

static size_t wg_decap(fl_engine *e, const void *from_, uint8_t **pkt, size_t len, const fl_peer **peerp, int *partial) {
  const struct sockaddr_in *from = from_;
  uint8_t *d = *pkt;
  uint32_t slot;
  size_t clen;
  uint8_t *kp = wg_open(e, from, d, len, &slot, &clen);
  if (!kp) return 0;
  const fl_peer *peer = fl_peers_by_dst(&e->peers, ld32(kp + WGK_PEER_SUBNET));
  if (!peer || peer->slot != ld32(kp + WGK_PEER_SLOT)) { STAT(e, ST_DROP_UNKNOWN_INDEX)++; return 0; } /* its peer left */
  authenticated(e, peer, kp, slot, from);
  if (keepalive(e, peer, clen)) return 0;
  return inner4(e, peer, 1, d + HDR, clen, peerp, pkt, partial);
}

/* The fold of an IPv6 subnet that a family-6 keypair's WGK_PEER_SUBNET holds: the XOR of its four words (host order). */
static uint32_t fold6(const uint8_t *a) {
  return fl_rd32(a) ^ fl_rd32(a + 4) ^ fl_rd32(a + 8) ^ fl_rd32(a + 12);
}

/* family 6 roaming: the endpoint follows the last authenticated source (under the seqlock). */
static void roam6(fl_engine *e, const fl_peer *peer, uint8_t *ps, const struct sockaddr_in6 *from) {
  uint8_t cur[16];
  uint32_t port = ep6_read(ps, cur), from_port = ntohs(from->sin6_port);
  if (!port) { memcpy(cur, peer->public6, 16); port = peer->port; }
  if ((port != from_port || memcmp(cur, from->sin6_addr.s6_addr, 16) != 0) && ep6_write(ps, from->sin6_addr.s6_addr, from_port))
    STAT(e, ST_WG_ENDPOINT_UPDATES)++;
}

static size_t wg6_decap(fl_engine *e, const void *from_, uint8_t **pkt, size_t len, const fl_peer **peerp, int *partial) {
  const struct sockaddr_in6 *from = from_;
  uint8_t *d = *pkt;
  uint32_t slot;
  size_t clen;
  if (partial) *partial = 0;
  if (from->sin6_family != AF_INET6) { STAT(e, ST_DROP_UNKNOWN_SOURCE)++; return 0; }
  uint8_t *kp = wg_open(e, from, d, len, &slot, &clen);
  if (!kp) return 0;
  const fl_peer *peer = fl_peers_by_slot(&e->peers, ld32(kp + WGK_PEER_SLOT));
  if (!peer || fold6(peer->subnet6) != ld32(kp + WGK_PEER_SUBNET)) { STAT(e, ST_DROP_UNKNOWN_INDEX)++; return 0; } /* its peer left */
  uint8_t *ps = confirm(e, peer, kp, slot);
  if (ps) roam6(e, peer, ps, from); /* roaming: the endpoint follows the last authenticated source */
  if (keepalive(e, peer, clen)) return 0;
  return inner6(e, peer, 1, d + HDR, clen, peerp, pkt); /* an IPv4 packet sent to flannel-wg-v6 is malformed here */
}

/* dual TX: by the inner packet's version, the peer whose IPv4 or IPv6 subnet holds its destination. */
static const fl_peer *wg46_route(fl_engine *e, uint8_t *pkt, size_t *len, uint32_t *hash) {
  if (*len >= 1 && pkt[0] >> 4 == 6) return wg6_route(e, pkt, len, hash);
  const fl_peer *peer = wg_route(e, pkt, len, hash);
  *hash = 0; /* one sending socket, as in family 6 */
  return peer;
}

static void wg46_endpoint(fl_engine *e, const fl_peer *peer, void *to) {
  if (e->family == 6) wg6_endpoint(e, peer, to);
  else wg_endpoint(e, peer, to);
}

/* What a dual keypair's WGK_PEER_SUBNET holds: the fold of the peer's IPv6 subnet, or its IPv4 subnet
 * when it has none (backends/wireguard/session, wgSubnetIdDual). */
static uint32_t dual_id(const fl_peer *peer) {
  return (peer->has & FL_PEER_HAS6) ? fold6(peer->subnet6) : peer->subnet;
}

static size_t wg46_decap(fl_engine *e, const void *from_, uint8_t **pkt, size_t len, const fl_peer **peerp, int *partial) {
  const struct sockaddr *from = from_;
  uint8_t *d = *pkt;
  uint32_t slot;
  size_t clen;
  if (partial) *partial = 0;
  if (from->sa_family != (e->family == 6 ? AF_INET6 : AF_INET)) { STAT(e, ST_DROP_UNKNOWN_SOURCE)++; return 0; }
  uint8_t *kp = wg_open(e, from_, d, len, &slot, &clen);
  if (!kp) return 0;
  const fl_peer *peer = fl_peers_by_slot(&e->peers, ld32(kp + WGK_PEER_SLOT));
  if (!peer || dual_id(peer) != ld32(kp + WGK_PEER_SUBNET)) { STAT(e, ST_DROP_UNKNOWN_INDEX)++; return 0; } /* its peer left */
  if (e->family == 6) {
    uint8_t *ps = confirm(e, peer, kp, slot);
    if (ps) roam6(e, peer, ps, from_);
  } else {
    authenticated(e, peer, kp, slot, from_);
  }
  if (keepalive(e, peer, clen)) return 0;
  uint8_t *ip = d + HDR;
  /* Each version against the peer's subnet of that version (a peer may have one only). */
  if (ip[0] >> 4 == 6) return inner6(e, peer, (peer->has & FL_PEER_HAS6) != 0, ip, clen, peerp, pkt);
  return inner4(e, peer, (peer->has & FL_PEER_HAS4) != 0, ip, clen, peerp, pkt, partial);
}

const fl_mode fl_mode_wireguard = {
  .name = "wireguard", .init = wg_init, .free = wg_free, .l2 = 0, .prefix = HDR, .suffix = 15 + TAG,
  .peer_super_frames = 0, .gso_to_device = 0, .authenticated = 1,
  .route = wg_route, .seal = wg_seal, .wire_len = wg_wire_len, .endpoint = wg_endpoint, .decap = wg_decap,
};

const fl_mode fl_mode_wireguard6 = {
  .name = "wireguard6", .init = wg_init, .free = wg_free, .l2 = 0, .prefix = HDR, .suffix = 15 + TAG,
  .peer_super_frames = 0, .gso_to_device = 0, .authenticated = 1,
  .route = wg6_route, .seal = wg_seal, .wire_len = wg_wire_len, .endpoint = wg6_endpoint, .decap = wg6_decap,
};

const fl_mode fl_mode_wireguard46 = {
  .name = "wireguard46", .init = wg_init, .free = wg_free, .l2 = 0, .prefix = HDR, .suffix = 15 + TAG,
  .peer_super_frames = 0, .gso_to_device = 0, .authenticated = 1,
  .route = wg46_route, .seal = wg_seal, .wire_len = wg_wire_len, .endpoint = wg46_endpoint, .decap = wg46_decap,
};
