/* Keyed BLAKE2s with a chosen output length (WireGuard's MAC: mac1, mac2, cookies), from Node's own
 * libcrypto (EVP_MAC "BLAKE2SMAC", OpenSSL 3): node:crypto has BLAKE2s-256 and HMAC over it, not keyed
 * BLAKE2s. The MAC is fetched once; a context per call (handshake messages, not packets). */
#include "mac.h"
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

int fl_blake2s_mac(const uint8_t *key, size_t key_len, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len) {
  static EVP_MAC *mac; /* fetched once; OpenSSL's fetch is thread-safe and returns the same method */
  if (!mac && !(mac = EVP_MAC_fetch(NULL, "BLAKE2SMAC", NULL))) return -ENOSYS;
  if (key_len < 1 || key_len > 32 || out_len < 1 || out_len > 32) return -EINVAL;
  EVP_MAC_CTX *c = EVP_MAC_CTX_new(mac);
  if (!c) return -ENOMEM;
  size_t size = out_len, got = 0;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size), OSSL_PARAM_construct_end()};
  int ok = EVP_MAC_init(c, key, key_len, params) == 1 && EVP_MAC_update(c, in, in_len) == 1 &&
           EVP_MAC_final(c, out, &got, out_len) == 1 && got == out_len;
  EVP_MAC_CTX_free(c);
  return ok ? 0 : -EIO;
}
