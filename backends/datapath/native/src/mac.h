#ifndef FLANNEL_MAC_H
#define FLANNEL_MAC_H
#include <stddef.h>
#include <stdint.h>
/* out[0..out_len) = BLAKE2s(key, in) with a key of 1-32 bytes and an output of 1-32 bytes; 0 or -errno. */
int fl_blake2s_mac(const uint8_t *key, size_t key_len, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len);
#endif
