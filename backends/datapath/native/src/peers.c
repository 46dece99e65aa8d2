/* Snapshot and lookup of the shared peer table. The writer (TypeScript, peer-table.ts) bumps PT_SEQ to
 * odd, writes the entries, then bumps it to even, all with sequentially consistent atomics, so no entry
 * store is seen before the odd sequence nor after the even one; a copy taken between two equal even
 * reads is consistent. */
#include "peers.h"
#include "layout.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint32_t load_acquire(const uint32_t *w) { return __atomic_load_n(w, __ATOMIC_ACQUIRE); }

static uint32_t hash32(uint32_t x) {
  x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
  return x;
}

static uint32_t mac_key(const uint8_t *m) {
  return ((uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 | (uint32_t)m[2] << 8 | m[3]) ^ ((uint32_t)m[4] << 8 | m[5]) * 0x9e3779b1u;
}

static uint32_t mask_of(uint32_t len) { return len == 0 ? 0 : 0xffffffffu << (32 - len); }

static void insert(uint32_t *table, uint32_t buckets, uint32_t key, uint32_t idx) {
  for (uint32_t h = hash32(key) & (buckets - 1);; h = (h + 1) & (buckets - 1)) {
    if (table[h] == 0) { table[h] = idx + 1; return; }
  }
}

/* Copies the shared table into out[0..cap); returns 0 when the copy is torn (writer active), 1 when
 * consistent. The entries are read with relaxed atomic loads (the writer may be storing them), ordered
 * before the second read of the sequence by the acquire fence: the reader half of the seqlock. */
static int copy_once(fl_peer *out, uint32_t cap, uint32_t *count, const uint32_t *shared, uint32_t *seq_out) {
  uint32_t s1 = load_acquire(&shared[PT_SEQ]);
  if (s1 & 1) return 0;
  uint32_t n = load_acquire(&shared[PT_COUNT]);
  if (n > cap) return 0;
  for (uint32_t i = 0; i < n; i++) {
    const uint32_t *e = shared + PT_HEADER_WORDS + i * PE_WORDS;
    uint32_t w[PE_WORDS];
    for (int k = 0; k < PE_WORDS; k++) w[k] = __atomic_load_n(&e[k], __ATOMIC_RELAXED);
    fl_peer *p = &out[i];
    uint32_t len = w[PE_PREFIX] > 32 ? 32 : w[PE_PREFIX];
    p->mask = mask_of(len);
    p->subnet = w[PE_SUBNET] & p->mask;
    p->public_ip = w[PE_PUBLIC_IP];
    p->port = w[PE_PORT];
    p->slot = w[PE_SLOT];
    p->flags = w[PE_FLAGS];
    p->mac[0] = (uint8_t)(w[PE_MAC_HI] >> 8); p->mac[1] = (uint8_t)w[PE_MAC_HI];
    p->mac[2] = (uint8_t)(w[PE_MAC_LO] >> 24); p->mac[3] = (uint8_t)(w[PE_MAC_LO] >> 16);
    p->mac[4] = (uint8_t)(w[PE_MAC_LO] >> 8); p->mac[5] = (uint8_t)w[PE_MAC_LO];
  }
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  if (load_acquire(&shared[PT_SEQ]) != s1) return 0;
  *count = n;
  *seq_out = s1;
  return 1;
}

int fl_peers_sync(fl_peers *p, const uint32_t *shared) {
  uint32_t seq = load_acquire(&shared[PT_SEQ]);
  if (p->peers && seq == p->seq) return 0;
  /* Read once: the allocation and the copy's bound must be the same number. */
  uint32_t cap = __atomic_load_n(&shared[PT_CAPACITY], __ATOMIC_RELAXED);
  fl_peer *peers = calloc(cap ? cap : 1, sizeof *peers);
  if (!peers) return -ENOMEM;
  uint32_t n = 0;
  int ok = 0;
  for (int tries = 0; tries < 100000 && !ok; tries++) ok = copy_once(peers, cap, &n, shared, &seq);
  if (!ok) { free(peers); return 0; } /* the writer is busy: keep the old snapshot, try next batch */
  uint32_t buckets = 16;
  while (buckets < n * 2) buckets <<= 1;
  uint32_t *by_subnet = calloc(buckets, sizeof *by_subnet);
  uint32_t *by_public = calloc(buckets, sizeof *by_public);
  uint32_t *by_mac = calloc(buckets, sizeof *by_mac);
  if (!by_subnet || !by_public || !by_mac) { free(peers); free(by_subnet); free(by_public); free(by_mac); return -ENOMEM; }
  uint8_t seen[33] = {0};
  uint32_t nlens = 0, lens[33];
  for (uint32_t i = 0; i < n; i++) {
    insert(by_subnet, buckets, peers[i].subnet ^ peers[i].mask, i);
    insert(by_public, buckets, peers[i].public_ip, i);
    insert(by_mac, buckets, mac_key(peers[i].mac), i);
    uint32_t len = (uint32_t)__builtin_popcount(peers[i].mask);
    if (!seen[len]) { seen[len] = 1; lens[nlens++] = len; }
  }
  /* longest prefix first */
  for (uint32_t i = 1; i < nlens; i++)
    for (uint32_t j = i; j > 0 && lens[j] > lens[j - 1]; j--) { uint32_t t = lens[j]; lens[j] = lens[j - 1]; lens[j - 1] = t; }
  fl_peers_free(p);
  p->peers = peers; p->count = n; p->by_subnet = by_subnet; p->by_public = by_public; p->by_mac = by_mac; p->buckets = buckets;
  memcpy(p->prefix_lens, lens, sizeof(uint32_t) * nlens);
  p->n_prefix_lens = nlens;
  p->seq = seq;
  return 1;
}

const fl_peer *fl_peers_by_dst(const fl_peers *p, uint32_t ip) {
  if (!p->count) return NULL;
  for (uint32_t k = 0; k < p->n_prefix_lens; k++) {
    uint32_t mask = mask_of(p->prefix_lens[k]);
    uint32_t key = (ip & mask) ^ mask;
    for (uint32_t h = hash32(key) & (p->buckets - 1);; h = (h + 1) & (p->buckets - 1)) {
      uint32_t v = p->by_subnet[h];
      if (v == 0) break;
      const fl_peer *e = &p->peers[v - 1];
      if (e->mask == mask && e->subnet == (ip & mask)) return e;
    }
  }
  return NULL;
}

const fl_peer *fl_peers_by_public(const fl_peers *p, uint32_t ip) {
  if (!p->count) return NULL;
  for (uint32_t h = hash32(ip) & (p->buckets - 1);; h = (h + 1) & (p->buckets - 1)) {
    uint32_t v = p->by_public[h];
    if (v == 0) return NULL;
    if (p->peers[v - 1].public_ip == ip) return &p->peers[v - 1];
  }
}

const fl_peer *fl_peers_by_mac(const fl_peers *p, const uint8_t *mac) {
  if (!p->count) return NULL;
  for (uint32_t h = hash32(mac_key(mac)) & (p->buckets - 1);; h = (h + 1) & (p->buckets - 1)) {
    uint32_t v = p->by_mac[h];
    if (v == 0) return NULL;
    if (memcmp(p->peers[v - 1].mac, mac, 6) == 0) return &p->peers[v - 1];
  }
}

void fl_peers_free(fl_peers *p) {
  free(p->peers); free(p->by_subnet); free(p->by_public); free(p->by_mac);
  p->peers = NULL; p->by_subnet = NULL; p->by_public = NULL; p->by_mac = NULL; p->count = 0;
}
