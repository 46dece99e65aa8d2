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

/* The first `len` bits of a (16 bytes) into out, the rest zero. */
static void mask6(uint8_t *out, const uint8_t *a, uint32_t len) {
  for (uint32_t i = 0; i < 16; i++) {
    uint32_t bits = len >= 8 * (i + 1) ? 8 : len > 8 * i ? len - 8 * i : 0;
    out[i] = bits ? (uint8_t)(a[i] & (uint8_t)(0xff << (8 - bits))) : 0;
  }
}

static uint32_t key6(const uint8_t *a, uint32_t len) {
  uint32_t h = len * 0x9e3779b1u;
  for (int i = 0; i < 16; i += 4) h = hash32(h ^ ((uint32_t)a[i] << 24 | (uint32_t)a[i + 1] << 16 | (uint32_t)a[i + 2] << 8 | a[i + 3]));
  return h;
}

int fl_in_subnet6(const uint8_t *ip, const uint8_t *subnet, uint32_t prefix) {
  uint8_t m[16];
  mask6(m, ip, prefix);
  return memcmp(m, subnet, 16) == 0;
}

static void words_to_bytes(uint8_t *out, const uint32_t *w) {
  for (int k = 0; k < 4; k++) { out[4 * k] = (uint8_t)(w[k] >> 24); out[4 * k + 1] = (uint8_t)(w[k] >> 16); out[4 * k + 2] = (uint8_t)(w[k] >> 8); out[4 * k + 3] = (uint8_t)w[k]; }
}

static void insert(uint32_t *table, uint32_t buckets, uint32_t key, uint32_t idx) {
  for (uint32_t h = hash32(key) & (buckets - 1);; h = (h + 1) & (buckets - 1)) {
    if (table[h] == 0) { table[h] = idx + 1; return; }
  }
}

/* Copies the shared table into out[0..cap); returns 0 when the copy is torn (writer active), 1 when
 * consistent. The entries are read with relaxed atomic loads (the writer may be storing them), ordered
 * before the second read of the sequence by the acquire fence: the reader half of the seqlock. */
/* The distinct prefix lengths of an index's subnets (lookups try each, longest first). */
struct prefix_lens {
  uint32_t n;
  uint32_t len[129];
  uint8_t seen[129];
};

static void add_len(struct prefix_lens *s, uint32_t len) {
  if (!s->seen[len]) { s->seen[len] = 1; s->len[s->n++] = len; }
}

static void longest_first(struct prefix_lens *s) {
  for (uint32_t i = 1; i < s->n; i++)
    for (uint32_t j = i; j > 0 && s->len[j] > s->len[j - 1]; j--) { uint32_t t = s->len[j]; s->len[j] = s->len[j - 1]; s->len[j - 1] = t; }
}

static void index_subnet4(uint32_t *index, uint32_t buckets, const fl_peer *pe, uint32_t i, struct prefix_lens *s) {
  insert(index, buckets, pe->subnet ^ pe->mask, i);
  add_len(s, (uint32_t)__builtin_popcount(pe->mask));
}

static void index_subnet6(uint32_t *index, uint32_t buckets, const fl_peer *pe, uint32_t i, struct prefix_lens *s) {
  insert(index, buckets, key6(pe->subnet6, pe->prefix6), i);
  add_len(s, pe->prefix6);
}

static int copy_once(fl_peer *out, uint32_t cap, uint32_t *count, const uint32_t *shared, uint32_t *seq_out, uint32_t family) {
  uint32_t s1 = load_acquire(&shared[PT_SEQ]);
  if (s1 & 1) return 0;
  uint32_t n = load_acquire(&shared[PT_COUNT]);
  if (n > cap) return 0;
  if (family == 6 || family == 46) {
    for (uint32_t i = 0; i < n; i++) {
      const uint32_t *e = shared + PT_HEADER_WORDS + i * PE6_WORDS;
      uint32_t w[PE6_WORDS];
      for (int k = 0; k < PE6_WORDS; k++) w[k] = __atomic_load_n(&e[k], __ATOMIC_RELAXED);
      fl_peer *p = &out[i];
      memset(p, 0, sizeof *p);
      uint8_t sub[16];
      words_to_bytes(sub, w + PE6_SUBNET);
      p->prefix6 = (uint8_t)(w[PE6_PREFIX] > 128 ? 128 : w[PE6_PREFIX]);
      mask6(p->subnet6, sub, p->prefix6);
      words_to_bytes(p->public6, w + PE6_PUBLIC_IP);
      p->port = w[PE6_PORT];
      p->slot = w[PE6_SLOT];
      p->flags = w[PE6_FLAGS];
      if (family == 46) { /* no MAC: those words hold the IPv4 side */
        if (w[PE6_PREFIX] <= 128) p->has |= FL_PEER_HAS6;
        if (w[PE46_PREFIX4] <= 32) {
          p->has |= FL_PEER_HAS4;
          p->mask = mask_of(w[PE46_PREFIX4]);
          p->subnet = w[PE46_SUBNET4] & p->mask;
        }
        p->public_ip = w[PE46_PUBLIC_IP4];
        continue;
      }
      p->mac[0] = (uint8_t)(w[PE6_MAC_HI] >> 8); p->mac[1] = (uint8_t)w[PE6_MAC_HI];
      p->mac[2] = (uint8_t)(w[PE6_MAC_LO] >> 24); p->mac[3] = (uint8_t)(w[PE6_MAC_LO] >> 16);
      p->mac[4] = (uint8_t)(w[PE6_MAC_LO] >> 8); p->mac[5] = (uint8_t)w[PE6_MAC_LO];
    }
    goto done;
  }
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
done:
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
  uint32_t family = __atomic_load_n(&shared[PT_FAMILY], __ATOMIC_RELAXED); /* set before any engine reads it */
  family = family == 6 || family == 46 ? family : 4;
  fl_peer *peers = calloc(cap ? cap : 1, sizeof *peers);
  if (!peers) return -ENOMEM;
  uint32_t n = 0;
  int ok = 0;
  for (int tries = 0; tries < 100000 && !ok; tries++) ok = copy_once(peers, cap, &n, shared, &seq, family);
  if (!ok) { free(peers); return 0; } /* the writer is busy: keep the old snapshot, try next batch */
  uint32_t buckets = 16;
  while (buckets < n * 2) buckets <<= 1;
  uint32_t *by_subnet = calloc(buckets, sizeof *by_subnet);
  uint32_t *by_public = calloc(buckets, sizeof *by_public);
  uint32_t *by_mac = calloc(buckets, sizeof *by_mac);
  uint32_t *by_slot = calloc(buckets, sizeof *by_slot);
  uint32_t *by_subnet4 = family == 46 ? calloc(buckets, sizeof *by_subnet4) : NULL;
  if (!by_subnet || !by_public || !by_mac || !by_slot || (family == 46 && !by_subnet4)) {
    free(peers); free(by_subnet); free(by_public); free(by_mac); free(by_slot); free(by_subnet4);
    return -ENOMEM;
  }
  /* family 4 and 6: one subnet index and its prefix lengths; 46 (wireguard): the IPv6 subnets there and the
   * IPv4 ones in by_subnet4 (by_public, a family-6 index, is of no use to it and stays empty; no MAC either) */
  struct prefix_lens lens = {0}, lens4 = {0};
  for (uint32_t i = 0; i < n; i++) {
    const fl_peer *pe = &peers[i];
    insert(by_slot, buckets, pe->slot, i);
    if (family == 4) {
      index_subnet4(by_subnet, buckets, pe, i, &lens);
      insert(by_public, buckets, pe->public_ip, i);
      insert(by_mac, buckets, mac_key(pe->mac), i);
    } else if (family == 6) {
      index_subnet6(by_subnet, buckets, pe, i, &lens);
      insert(by_public, buckets, key6(pe->public6, 128), i);
      insert(by_mac, buckets, mac_key(pe->mac), i);
    } else {
      if (pe->has & FL_PEER_HAS6) index_subnet6(by_subnet, buckets, pe, i, &lens);
      if (pe->has & FL_PEER_HAS4) index_subnet4(by_subnet4, buckets, pe, i, &lens4);
    }
  }
  longest_first(&lens);
  longest_first(&lens4);
  fl_peers_free(p);
  p->by_subnet4 = by_subnet4;
  memcpy(p->prefix_lens4, lens4.len, sizeof(uint32_t) * lens4.n);
  p->n_prefix_lens4 = lens4.n;
  p->peers = peers; p->count = n; p->by_subnet = by_subnet; p->by_public = by_public; p->by_mac = by_mac; p->by_slot = by_slot; p->buckets = buckets;
  memcpy(p->prefix_lens, lens.len, sizeof(uint32_t) * lens.n);
  p->n_prefix_lens = lens.n;
  p->seq = seq;
  p->family = family;
  return 1;
}

const fl_peer *fl_peers_by_dst(const fl_peers *p, uint32_t ip) {
  if (!p->count) return NULL;
  /* family 46: the IPv4 subnets have their own index */
  const uint32_t *index = p->family == 46 ? p->by_subnet4 : p->by_subnet;
  const uint32_t *lens = p->family == 46 ? p->prefix_lens4 : p->prefix_lens;
  uint32_t nlens = p->family == 46 ? p->n_prefix_lens4 : p->n_prefix_lens;
  for (uint32_t k = 0; k < nlens; k++) {
    uint32_t mask = mask_of(lens[k]);
    uint32_t key = (ip & mask) ^ mask;
    for (uint32_t h = hash32(key) & (p->buckets - 1);; h = (h + 1) & (p->buckets - 1)) {
      uint32_t v = index[h];
      if (v == 0) break;
      const fl_peer *e = &p->peers[v - 1];
      if (e->mask == mask && e->subnet == (ip & mask) && (p->family != 46 || (e->has & FL_PEER_HAS4))) return e;
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

const fl_peer *fl_peers_by_slot(const fl_peers *p, uint32_t slot) {
  if (!p->count) return NULL;
  for (uint32_t h = hash32(slot) & (p->buckets - 1);; h = (h + 1) & (p->buckets - 1)) {
    uint32_t v = p->by_slot[h];
    if (v == 0) return NULL;
    if (p->peers[v - 1].slot == slot) return &p->peers[v - 1];
  }
}

void fl_peers_free(fl_peers *p) {
  free(p->peers); free(p->by_subnet); free(p->by_public); free(p->by_mac); free(p->by_slot); free(p->by_subnet4);
  p->by_subnet4 = NULL; p->n_prefix_lens4 = 0;
  p->peers = NULL; p->by_subnet = NULL; p->by_public = NULL; p->by_mac = NULL; p->by_slot = NULL; p->count = 0;
}

const fl_peer *fl_peers_by_dst6(const fl_peers *p, const uint8_t *ip) {
  if (!p->count) return NULL;
  for (uint32_t k = 0; k < p->n_prefix_lens; k++) {
    uint32_t len = p->prefix_lens[k];
    uint8_t m[16];
    mask6(m, ip, len);
    for (uint32_t h = hash32(key6(m, len)) & (p->buckets - 1);; h = (h + 1) & (p->buckets - 1)) {
      uint32_t v = p->by_subnet[h];
      if (v == 0) break;
      const fl_peer *e = &p->peers[v - 1];
      if (e->prefix6 == len && memcmp(e->subnet6, m, 16) == 0) return e;
    }
  }
  return NULL;
}

const fl_peer *fl_peers_by_public6(const fl_peers *p, const uint8_t *ip) {
  if (!p->count) return NULL;
  for (uint32_t h = hash32(key6(ip, 128)) & (p->buckets - 1);; h = (h + 1) & (p->buckets - 1)) {
    uint32_t v = p->by_public[h];
    if (v == 0) return NULL;
    if (memcmp(p->peers[v - 1].public6, ip, 16) == 0) return &p->peers[v - 1];
  }
}
