/* N-API glue only: argument checks, typed-array access, -errno → JS Error with `code` and `syscall`.
 * Owns no global state; an engine context belongs to the JS object (external) that created it. */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <errno.h>
#include <linux/if.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "engine.h"
#include "layout.h"
#include "engine_internal.h"
#include "sys.h"
#include "mac.h"
#include "devconf.h"

typedef struct {
  fl_engine engine;
  napi_ref refs[6];  /* peer table, stats, tx fds, mac, wireguard state, RX owner: keeps the shared memory alive */
  int open;
} engine_box;

#define CHECK(call) do { if ((call) != napi_ok) { napi_throw_error(env, "ERR_NAPI", #call " failed"); return NULL; } } while (0)

static napi_value throw_errno(napi_env env, int neg_errno, const char *syscall) {
  int err = -neg_errno;
  const char *name = strerrorname_np(err);
  char msg[256];
  snprintf(msg, sizeof msg, "%s failed: %s", syscall, strerror(err));
  napi_value code, message, error, sys;
  napi_create_string_utf8(env, name ? name : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys);
  napi_set_named_property(env, error, "syscall", sys);
  napi_value errnum;
  napi_create_int32(env, err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_throw(env, error);
  return NULL;
}

static napi_value num(napi_env env, double v) {
  napi_value out;
  return napi_create_double(env, v, &out) == napi_ok ? out : NULL;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "missing arguments");
    return 0;
  }
  return 1;
}

/* An integer argument or property in [min, max]: anything else (missing, not a number, fractional,
 * out of range, such as a negative fd) throws ERR_INVALID_ARG_VALUE naming `what`. Returns 1 when *out is set. */
static int get_int(napi_env env, napi_value v, const char *what, double min, double max, double *out) {
  napi_valuetype type;
  double d = 0;
  if (napi_typeof(env, v, &type) != napi_ok || type != napi_number || napi_get_value_double(env, v, &d) != napi_ok ||
      d != d || d < min || d > max || d != (double)(int64_t)d) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s must be an integer from %.0f to %.0f", what, min, max);
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return 0;
  }
  *out = d;
  return 1;
}

/* A named property of `obj`, or NULL after throwing. */
static napi_value prop(napi_env env, napi_value obj, const char *name) {
  napi_value v;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) {
    napi_throw_error(env, "ERR_NAPI", "reading an engineCreate property failed");
    return NULL;
  }
  return v;
}

/* An integer property in [min, max] (get_int), or `dflt` when it is undefined and optional. */
static int int_prop(napi_env env, napi_value obj, const char *name, double min, double max, int optional, double dflt, double *out) {
  napi_value v = prop(env, obj, name);
  if (!v) return 0;
  napi_valuetype type;
  if (optional && napi_typeof(env, v, &type) == napi_ok && type == napi_undefined) { *out = dflt; return 1; }
  return get_int(env, v, name, min, max, out);
}

/* A boolean property; undefined reads as false. */
static int bool_prop(napi_env env, napi_value obj, const char *name, bool *out) {
  napi_value v = prop(env, obj, name);
  napi_valuetype type;
  if (!v || napi_typeof(env, v, &type) != napi_ok) return 0;
  *out = false;
  if (type == napi_undefined) return 1;
  if (type != napi_boolean || napi_get_value_bool(env, v, out) != napi_ok) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a boolean", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return 0;
  }
  return 1;
}

#define FD_MAX 2147483647.0
#define U32_MAX 4294967295.0

/* tunOpen(name, flags) → { fd, name } */
static napi_value tun_open(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  char name[IFNAMSIZ] = {0}, out_name[IFNAMSIZ] = {0};
  size_t len;
  CHECK(napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len));
  double flags;
  if (!get_int(env, argv[1], "tunOpen flags", 0, 7, &flags)) return NULL;
  int fd = fl_tun_open(name, (unsigned)flags, out_name);
  if (fd < 0) return throw_errno(env, fd, "TUNSETIFF");
  napi_value obj, jname;
  CHECK(napi_create_object(env, &obj));
  CHECK(napi_create_string_utf8(env, out_name, NAPI_AUTO_LENGTH, &jname));
  CHECK(napi_set_named_property(env, obj, "fd", num(env, fd)));
  CHECK(napi_set_named_property(env, obj, "name", jname));
  return obj;
}

/* ipv4DevconfSet(ifname, key, value): net.ipv4.conf.<ifname>.<key> = value through rtnetlink (see devconf.c). */
static napi_value ipv4_devconf_set(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  char name[IFNAMSIZ] = {0}, key[32] = {0};
  size_t len;
  CHECK(napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len));
  CHECK(napi_get_value_string_utf8(env, argv[1], key, sizeof key, &len));
  double value;
  if (!get_int(env, argv[2], "ipv4DevconfSet value", 0, 0xffffffffu, &value)) return NULL;
  int r = fl_ipv4_devconf_set(name, key, (uint32_t)value);
  return r < 0 ? throw_errno(env, r, "RTM_SETLINK IFLA_INET_CONF") : NULL;
}

/* tunSetOffload(fd, offloads): TUNSETOFFLOAD; throws with the errno when the kernel refuses. */
static napi_value tun_set_offload(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  double fd, offloads;
  if (!get_int(env, argv[0], "fd", 0, FD_MAX, &fd) || !get_int(env, argv[1], "offloads", 0, 255, &offloads)) return NULL;
  int r = fl_tun_set_offload((int)fd, (unsigned)offloads);
  return r < 0 ? throw_errno(env, r, "TUNSETOFFLOAD") : NULL;
}

/* udpOpen(ipHostOrder, port, reusePort, bufBytes) → fd */
static napi_value udp_open(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return NULL;
  bool reuse = false;
  double ip, port, buf;
  if (!get_int(env, argv[0], "ip", 0, U32_MAX, &ip) || !get_int(env, argv[1], "port", 0, 65535, &port) ||
      !get_int(env, argv[3], "bufBytes", 0, FD_MAX, &buf)) return NULL;
  CHECK(napi_get_value_bool(env, argv[2], &reuse));
  int fd = fl_udp_open((uint32_t)ip, (uint16_t)port, reuse, (int)buf);
  return fd < 0 ? throw_errno(env, fd, "bind") : num(env, fd);
}

/* Typed-array contents (defined below). */
static int typed_data(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *length);

/* udpOpen6(ip: Uint8Array(16), port, reusePort, bufBytes) → fd: AF_INET6, IPV6_V6ONLY unless ip is :: (sys.c) */
static napi_value udp_open6(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return NULL;
  bool reuse = false;
  double port, buf;
  void *ip = NULL;
  size_t n = 0;
  if (!typed_data(env, argv[0], napi_uint8_array, &ip, &n) || n != 16) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "udpOpen6: ip must be a Uint8Array of 16 bytes");
    return NULL;
  }
  if (!get_int(env, argv[1], "port", 0, 65535, &port) || !get_int(env, argv[3], "bufBytes", 0, FD_MAX, &buf)) return NULL;
  CHECK(napi_get_value_bool(env, argv[2], &reuse));
  int fd = fl_udp6_open(ip, (uint16_t)port, reuse, (int)buf);
  return fd < 0 ? throw_errno(env, fd, "bind") : num(env, fd);
}

/* Typed-array contents; returns 0 if `v` is not a typed array of type `want`. An empty array is valid. */
static int typed_data(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *length) {
  napi_typedarray_type type;
  *data = NULL;
  *length = 0;
  return napi_get_typedarray_info(env, v, &type, length, data, NULL, NULL) == napi_ok && type == want;
}

/* pipeOpen() → [readFd, writeFd], both non-blocking */
static napi_value pipe_open(napi_env env, napi_callback_info info) {
  (void)info;
  int fds[2];
  int r = fl_pipe_open(fds);
  if (r < 0) return throw_errno(env, r, "pipe2");
  napi_value arr;
  CHECK(napi_create_array_with_length(env, 2, &arr));
  CHECK(napi_set_element(env, arr, 0, num(env, fds[0])));
  CHECK(napi_set_element(env, arr, 1, num(env, fds[1])));
  return arr;
}

/* udpSendTo(fd, bytes: Uint8Array, ipHostOrder, port) → bytes sent; throws with the errno (EAGAIN when the buffer is full). */
static napi_value udp_send_to(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return NULL;
  double fd, ip, port;
  void *data = NULL;
  size_t len = 0;
  if (!get_int(env, argv[0], "fd", 0, FD_MAX, &fd) || !get_int(env, argv[2], "ip", 0, U32_MAX, &ip) ||
      !get_int(env, argv[3], "port", 1, 65535, &port)) return NULL;
  if (!typed_data(env, argv[1], napi_uint8_array, &data, &len)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "udpSendTo: bytes must be a Uint8Array");
    return NULL;
  }
  int r = fl_udp_send((int)fd, data, len, (uint32_t)ip, (uint16_t)port);
  return r < 0 ? throw_errno(env, r, "sendto") : num(env, r);
}

/* udpSendTo6(fd, bytes: Uint8Array, ip: Uint8Array(16), port) → bytes sent: one datagram out of an
 * AF_INET6 socket to [ip]:port, not waiting (EAGAIN when the buffer is full). */
static napi_value udp_send_to6(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return NULL;
  double fd, port;
  void *data = NULL, *ip = NULL;
  size_t len = 0, ip_len = 0;
  if (!get_int(env, argv[0], "fd", 0, FD_MAX, &fd) || !get_int(env, argv[3], "port", 1, 65535, &port)) return NULL;
  if (!typed_data(env, argv[1], napi_uint8_array, &data, &len) || !typed_data(env, argv[2], napi_uint8_array, &ip, &ip_len) || ip_len != 16) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "udpSendTo6: bytes must be a Uint8Array and ip a Uint8Array of 16 bytes");
    return NULL;
  }
  int r = fl_udp6_send((int)fd, data, len, ip, (uint16_t)port);
  return r < 0 ? throw_errno(env, r, "sendto") : num(env, r);
}

/* blake2sMac(key: Uint8Array (1-32 bytes), input: Uint8Array, outLen 1-32) → Buffer: keyed BLAKE2s from Node's libcrypto. */
static napi_value blake2s_mac(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  void *key = NULL, *in = NULL;
  size_t key_len = 0, in_len = 0;
  double out_len;
  if (!typed_data(env, argv[0], napi_uint8_array, &key, &key_len) || !typed_data(env, argv[1], napi_uint8_array, &in, &in_len)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "blake2sMac: key and input must be Uint8Arrays");
    return NULL;
  }
  if (key_len < 1 || key_len > 32) { napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "blake2sMac: the key must be 1 to 32 bytes"); return NULL; }
  if (!get_int(env, argv[2], "blake2sMac outLen", 1, 32, &out_len)) return NULL;
  void *out = NULL;
  napi_value buf;
  CHECK(napi_create_buffer(env, (size_t)out_len, &out, &buf));
  int r = fl_blake2s_mac(key, key_len, in, in_len, out, (size_t)out_len);
  return r < 0 ? throw_errno(env, r, "EVP_MAC(BLAKE2SMAC)") : buf;
}

/* socketDrops(fd) → datagrams the kernel dropped at this socket (SO_MEMINFO SK_MEMINFO_DROPS). */
static napi_value socket_drops(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  double fd;
  if (!get_int(env, argv[0], "fd", 0, FD_MAX, &fd)) return NULL;
  int64_t r = fl_socket_drops((int)fd);
  return r < 0 ? throw_errno(env, (int)r, "getsockopt(SO_MEMINFO)") : num(env, (double)r);
}

static napi_value eventfd_open(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = fl_eventfd_open();
  return fd < 0 ? throw_errno(env, fd, "eventfd") : num(env, fd);
}

static napi_value eventfd_signal(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  double fd;
  if (!get_int(env, argv[0], "fd", 0, FD_MAX, &fd)) return NULL;
  int r = fl_eventfd_signal((int)fd);
  return r < 0 ? throw_errno(env, r, "write(eventfd)") : NULL;
}

static napi_value close_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  double fd;
  if (!get_int(env, argv[0], "fd", 0, FD_MAX, &fd)) return NULL;
  int r = fl_close((int)fd);
  return r < 0 ? throw_errno(env, r, "close") : NULL;
}

static void release(napi_env env, engine_box *box) {
  if (box->open) fl_engine_free(&box->engine);
  box->open = 0;
  for (int i = 0; i < 6; i++) if (box->refs[i]) { napi_delete_reference(env, box->refs[i]); box->refs[i] = NULL; }
}

static void finalize_box(napi_env env, void *data, void *hint) {
  (void)hint;
  release(env, data);
  free(data);
}

/* engineCreate({ mode, devFd, udpFd, stopFd, peerTable: Uint32Array, stats: BigUint64Array,
 *   devIp, ownSubnet, ownMask, mtu, vni, devMac: Uint8Array(6), txFds: Int32Array, offload, uso?, spinUs?,
 *   wgTable?: Uint8Array, ctrlFd?, family? (4 or 6), devIp6?, ownSubnet6?: Uint8Array(16), ownPrefix6?, dual?,
 *   rxOwner?: Uint32Array (shared, ≥ 1 element), joinFd?, backFd? }) → external.
 *   rxOwner, joinFd and backFd (all or none): the adaptive pair's shared RX owner word and eventfds (adaptive.c);
 *   only an engine with them may pump FL_DIR_LEAD or FL_DIR_ASSIST.
 *   dual (wireguard mode, offload false): IPv4 and IPv6 inside one device, `family` the outer one; it needs devIp,
 *   ownSubnet, ownMask and devIp6, ownSubnet6, ownPrefix6, and a peer table of PT_FAMILY 46.
 *   family 6 (vxlan mode: the IPv6 VTEP; wireguard mode: flannel-wg-v6) needs devIp6, ownSubnet6 and ownPrefix6, sockets of AF_INET6
 *   (udpOpen6) and a peer table of IPv6 entries (PT_FAMILY 6); devIp, ownSubnet and ownMask are then unused. wireguard mode needs wgTable (the shared state of
 *   layout.h) and ctrlFd (the write end of the control plane's handshake pipe). */
static napi_value engine_create(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  napi_value o = argv[0];
  double mode, dev_fd, udp_fd, stop_fd, dev_ip, own_subnet, own_mask, mtu, vni, spin, ctrl_fd, family, own_prefix6, join_fd, back_fd;
  bool offload, uso, dual = false;
  if (!int_prop(env, o, "mode", FL_MODE_UDP, FL_MODE_WIREGUARD, 0, 0, &mode) ||
      !int_prop(env, o, "ctrlFd", 0, FD_MAX, 1, -1, &ctrl_fd) ||
      !int_prop(env, o, "joinFd", 0, FD_MAX, 1, -1, &join_fd) || !int_prop(env, o, "backFd", 0, FD_MAX, 1, -1, &back_fd) ||
      !int_prop(env, o, "devFd", 0, FD_MAX, 0, 0, &dev_fd) || !int_prop(env, o, "udpFd", 0, FD_MAX, 0, 0, &udp_fd) ||
      !int_prop(env, o, "stopFd", 0, FD_MAX, 0, 0, &stop_fd) || !int_prop(env, o, "devIp", 0, U32_MAX, 0, 0, &dev_ip) ||
      !int_prop(env, o, "ownSubnet", 0, U32_MAX, 0, 0, &own_subnet) || !int_prop(env, o, "ownMask", 0, U32_MAX, 0, 0, &own_mask) ||
      !int_prop(env, o, "mtu", 68, 65535, 0, 0, &mtu) || !int_prop(env, o, "vni", 0, 16777215, 0, 0, &vni) ||
      !int_prop(env, o, "spinUs", 0, 1000000, 1, 0, &spin) || !int_prop(env, o, "family", 4, 6, 1, 4, &family) ||
      !int_prop(env, o, "ownPrefix6", 0, 128, 1, 0, &own_prefix6) || !bool_prop(env, o, "offload", &offload) || !bool_prop(env, o, "uso", &uso))
    return NULL;
  napi_value arrays[6] = {prop(env, o, "peerTable"), prop(env, o, "stats"), prop(env, o, "txFds"), prop(env, o, "devMac"), prop(env, o, "wgTable"), prop(env, o, "rxOwner")};
  for (int i = 0; i < 6; i++) if (!arrays[i]) return NULL;
  napi_valuetype owner_type;
  if (napi_typeof(env, arrays[5], &owner_type) != napi_ok) return NULL;
  size_t n_owner = 0;
  void *rx_owner = NULL;
  if (owner_type != napi_undefined && (!typed_data(env, arrays[5], napi_uint32_array, &rx_owner, &n_owner) || n_owner < 1)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "engineCreate: rxOwner must be a Uint32Array of at least one element");
    return NULL;
  }
  if ((rx_owner != NULL) != (join_fd >= 0) || (join_fd >= 0) != (back_fd >= 0)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "engineCreate: rxOwner, joinFd and backFd go together");
    return NULL;
  }
  napi_valuetype wg_type;
  if (napi_typeof(env, arrays[4], &wg_type) != napi_ok) return NULL;
  size_t n_wg = 0;
  void *wg = NULL;
  if (wg_type != napi_undefined && !typed_data(env, arrays[4], napi_uint8_array, &wg, &n_wg)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "engineCreate: wgTable must be a Uint8Array");
    return NULL;
  }
  if (!bool_prop(env, o, "dual", &dual)) return NULL;
  if (dual && (mode != FL_MODE_WIREGUARD || offload)) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "engineCreate: dual is for the wireguard mode without offload only");
    return NULL;
  }
  void *v6[2] = {NULL, NULL};
  if (family != 4 && family != 6) { napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "engineCreate: family must be 4 or 6"); return NULL; }
  if (family == 6 || dual) {
    if (mode != FL_MODE_VXLAN && mode != FL_MODE_WIREGUARD) { napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "engineCreate: family 6 is for the vxlan and wireguard modes only"); return NULL; }
    const char *names[2] = {"devIp6", "ownSubnet6"};
    for (int i = 0; i < 2; i++) {
      napi_value a = prop(env, o, names[i]);
      size_t n = 0;
      if (!a) return NULL;
      if (!typed_data(env, a, napi_uint8_array, &v6[i], &n) || n != 16) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "engineCreate: family 6 needs devIp6 and ownSubnet6 (Uint8Array of 16 bytes)");
        return NULL;
      }
    }
  }
  if (mode == FL_MODE_WIREGUARD && (!wg || ctrl_fd < 0)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "engineCreate: wireguard mode needs wgTable and ctrlFd");
    return NULL;
  }
  size_t n_words = 0, n_stats = 0, n_fds = 0, n_mac = 0;
  void *table = NULL, *stats = NULL, *fds = NULL, *mac = NULL;
  int ok = typed_data(env, arrays[0], napi_uint32_array, &table, &n_words) &&
           typed_data(env, arrays[1], napi_biguint64_array, &stats, &n_stats) &&
           typed_data(env, arrays[2], napi_int32_array, &fds, &n_fds) &&
           typed_data(env, arrays[3], napi_uint8_array, &mac, &n_mac);
  if (!ok || n_mac != 6 || n_stats < ST_GLOBAL_COUNT || n_words < PT_HEADER_WORDS) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "engineCreate: bad peerTable, stats, txFds or devMac");
    return NULL;
  }
  /* The C side trusts PT_CAPACITY: it must fit the array it was given. */
  uint32_t table_family = ((const uint32_t *)table)[PT_FAMILY];
  table_family = table_family == 6 || table_family == 46 ? table_family : 4;
  if (table_family != (dual ? 46u : (uint32_t)family)) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "engineCreate: the peer table's family (PT_FAMILY) is not the engine's");
    return NULL;
  }
  if (((const uint32_t *)table)[PT_CAPACITY] > (n_words - PT_HEADER_WORDS) / (family == 6 || dual ? PE6_WORDS : PE_WORDS)) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "engineCreate: the peer table's capacity exceeds its array");
    return NULL;
  }
  for (size_t i = 0; i < n_fds; i++) if (((const int32_t *)fds)[i] < 0) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "engineCreate: txFds must hold file descriptors (>= 0)");
    return NULL;
  }
  engine_box *box = calloc(1, sizeof *box);
  if (!box) return throw_errno(env, -ENOMEM, "engineCreate");
  fl_engine *e = &box->engine;
  e->mode = (int)mode;
  e->family = (int)family;
  e->dual = dual;
  if (family == 6 || dual) {
    memcpy(e->dev_ip6, v6[0], 16);
    memcpy(e->own_subnet6, v6[1], 16);
    e->own_prefix6 = (uint32_t)own_prefix6;
  }
  e->dev_fd = (int)dev_fd;
  e->udp_fd = (int)udp_fd;
  e->stop_fd = (int)stop_fd;
  e->dev_ip = (uint32_t)dev_ip;
  e->own_subnet = (uint32_t)own_subnet;
  e->own_mask = (uint32_t)own_mask;
  e->mtu = (uint32_t)mtu;
  e->vni = (uint32_t)vni;
  e->spin_us = (int)spin;
  e->vnet = offload;
  e->uso = offload && uso;
  e->peer_table = table;
  e->stats = stats;
  e->tx_fds = fds;
  memcpy(e->dev_mac, mac, 6);
  e->n_tx_fds = (uint32_t)n_fds;
  e->stat_slots = (uint32_t)((n_stats - ST_GLOBAL_COUNT) / SP_WORDS);
  e->wg = wg;
  e->wg_len = n_wg;
  e->ctrl_fd = (int)ctrl_fd;
  e->rx_owner = rx_owner;
  e->join_fd = (int)join_fd;
  e->back_fd = (int)back_fd;
  int r = fl_engine_init(e);
  if (r < 0) { fl_engine_free(e); free(box); return throw_errno(env, r, "engineCreate"); }
  if (e->vnet) fl_offload_probe(e);
  box->open = 1;
  for (int i = 0; i < 6; i++) {
    if ((i == 4 && !wg) || (i == 5 && !rx_owner)) continue;
    if (napi_create_reference(env, arrays[i], 1, &box->refs[i]) != napi_ok) {
      release(env, box);
      free(box);
      napi_throw_error(env, "ERR_NAPI", "engineCreate: could not keep a reference to its shared memory");
      return NULL;
    }
  }
  napi_value ext;
  if (napi_create_external(env, box, finalize_box, NULL, &ext) != napi_ok) { release(env, box); free(box); return NULL; }
  return ext;
}

static engine_box *unwrap(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || !data) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected an engine");
    return NULL;
  }
  engine_box *box = data;
  if (!box->open) { napi_throw_error(env, "ERR_ENGINE_CLOSED", "the engine was destroyed"); return NULL; }
  return box;
}

/* pump(engine, dirs, timeoutMs, maxBatches): dirs 1 = TX, 2 = RX, 3 = both on one thread, 4 = the adaptive
 * lead, 8 = the adaptive assist (an engine made with rxOwner, joinFd and backFd). */
static napi_value pump(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return NULL;
  engine_box *box = unwrap(env, argv[0]);
  if (!box) return NULL;
  double dirs, timeout, batches;
  if (!get_int(env, argv[1], "pump dirs (1 TX, 2 RX, 3 both, 4 lead, 8 assist)", FL_DIR_TX, FL_DIR_ASSIST, &dirs) ||
      !get_int(env, argv[2], "pump timeoutMs", 0, 60000, &timeout) || !get_int(env, argv[3], "pump maxBatches", 1, 1000000, &batches))
    return NULL;
  int d = (int)dirs;
  if (d != FL_DIR_TX && d != FL_DIR_RX && d != (FL_DIR_TX | FL_DIR_RX) && d != FL_DIR_LEAD && d != FL_DIR_ASSIST) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "pump dirs must be 1, 2, 3, 4 or 8");
    return NULL;
  }
  if ((d == FL_DIR_LEAD || d == FL_DIR_ASSIST) && !box->engine.rx_owner) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "pump: an adaptive role needs an engine made with rxOwner, joinFd and backFd");
    return NULL;
  }
  int r = fl_pump(&box->engine, (int)dirs, (int)timeout, (int)batches);
  return r < 0 ? throw_errno(env, r, "pump") : num(env, r);
}

/* engineFeatures(engine) → { offload, gso, gro, uso }: what the loops actually use. */
static napi_value engine_features(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  engine_box *box = unwrap(env, argv[0]);
  if (!box) return NULL;
  napi_value obj, v;
  CHECK(napi_create_object(env, &obj));
  const char *names[4] = {"offload", "gso", "gro", "uso"};
  int values[4] = {box->engine.vnet, box->engine.gso, box->engine.gro, box->engine.uso};
  for (int i = 0; i < 4; i++) {
    CHECK(napi_get_boolean(env, values[i], &v));
    CHECK(napi_set_named_property(env, obj, names[i], v));
  }
  return obj;
}

static napi_value engine_destroy(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  void *data = NULL;
  if (napi_get_value_external(env, argv[0], &data) == napi_ok && data) release(env, data);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"tunOpen", NULL, tun_open, NULL, NULL, NULL, napi_enumerable, NULL},
    {"tunSetOffload", NULL, tun_set_offload, NULL, NULL, NULL, napi_enumerable, NULL},
    {"ipv4DevconfSet", NULL, ipv4_devconf_set, NULL, NULL, NULL, napi_enumerable, NULL},
    {"udpOpen", NULL, udp_open, NULL, NULL, NULL, napi_enumerable, NULL},
    {"udpOpen6", NULL, udp_open6, NULL, NULL, NULL, napi_enumerable, NULL},
    {"eventfdOpen", NULL, eventfd_open, NULL, NULL, NULL, napi_enumerable, NULL},
    {"pipeOpen", NULL, pipe_open, NULL, NULL, NULL, napi_enumerable, NULL},
    {"udpSendTo", NULL, udp_send_to, NULL, NULL, NULL, napi_enumerable, NULL},
    {"udpSendTo6", NULL, udp_send_to6, NULL, NULL, NULL, napi_enumerable, NULL},
    {"blake2sMac", NULL, blake2s_mac, NULL, NULL, NULL, napi_enumerable, NULL},
    {"socketDrops", NULL, socket_drops, NULL, NULL, NULL, napi_enumerable, NULL},
    {"eventfdSignal", NULL, eventfd_signal, NULL, NULL, NULL, napi_enumerable, NULL},
    {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
    {"engineCreate", NULL, engine_create, NULL, NULL, NULL, napi_enumerable, NULL},
    {"engineFeatures", NULL, engine_features, NULL, NULL, NULL, napi_enumerable, NULL},
    {"pump", NULL, pump, NULL, NULL, NULL, napi_enumerable, NULL},
    {"engineDestroy", NULL, engine_destroy, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
