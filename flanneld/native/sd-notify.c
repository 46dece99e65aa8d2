/* sd_notify for flanneld as a plain-C N-API addon: notify(socketPath, message) sends one datagram
 * to systemd's AF_UNIX SOCK_DGRAM notify socket ("@name" = abstract namespace). No libsystemd,
 * no global mutable state; failures throw a JS Error whose `code` is the errno name. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <node_api.h>

#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

/* Returns the symbolic name of an errno value (the `code` of the thrown Error). */
static const char *errno_name(int err) {
  switch (err) {
    case ENOENT: return "ENOENT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ENOTDIR: return "ENOTDIR";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ELOOP: return "ELOOP";
    case EAGAIN: return "EAGAIN";
    case ENOBUFS: return "ENOBUFS";
    case ENOMEM: return "ENOMEM";
    case EMSGSIZE: return "EMSGSIZE";
    case EPROTOTYPE: return "EPROTOTYPE";
    case ENOTSOCK: return "ENOTSOCK";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ECONNRESET: return "ECONNRESET";
    case EPIPE: return "EPIPE";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case EROFS: return "EROFS";
    default: return "UNKNOWN";
  }
}

/* Human-readable text of an errno value, thread-safe for both strerror_r flavours. */
static void errno_text(int err, char *buf, size_t len) {
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
  const char *s = strerror_r(err, buf, len);
  if (s != buf) snprintf(buf, len, "%s", s);
#else
  if (strerror_r(err, buf, len) != 0) snprintf(buf, len, "errno %d", err);
#endif
}

/* Throws Error("sd_notify <op> <path>: <strerror>") with code/syscall/path properties. */
static void throw_errno(napi_env env, int err, const char *op, const char *path) {
  char text[128];
  char msg[512];
  napi_value code, message, error, value;

  errno_text(err, text, sizeof(text));
  snprintf(msg, sizeof(msg), "sd_notify %s %s: %s", op, path, text);
  if (napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) != napi_ok ||
      napi_create_error(env, code, message, &error) != napi_ok) {
    napi_throw_error(env, errno_name(err), msg);
    return;
  }
  if (napi_create_string_utf8(env, op, NAPI_AUTO_LENGTH, &value) == napi_ok)
    napi_set_named_property(env, error, "syscall", value);
  if (napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &value) == napi_ok)
    napi_set_named_property(env, error, "path", value);
  napi_throw(env, error);
}

/* Copies a JS string argument into a fresh malloc'd UTF-8 buffer; NULL (and a pending
 * exception) when it is not a string. *len receives the byte length without the NUL. */
static char *get_string(napi_env env, napi_value v, const char *what, size_t *len) {
  napi_valuetype type;
  char *buf;

  if (napi_typeof(env, v, &type) != napi_ok || type != napi_string) {
    char msg[96];
    snprintf(msg, sizeof(msg), "sd_notify: %s must be a string", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return NULL;
  }
  if (napi_get_value_string_utf8(env, v, NULL, 0, len) != napi_ok) return NULL;
  buf = malloc(*len + 1);
  if (buf == NULL) {
    napi_throw_error(env, "ENOMEM", "sd_notify: out of memory");
    return NULL;
  }
  if (napi_get_value_string_utf8(env, v, buf, *len + 1, len) != napi_ok) {
    free(buf);
    return NULL;
  }
  return buf;
}

/* Fills *addr from a notify-socket path; "@name" becomes "\0name" (Linux abstract namespace).
 * Returns the exact address length, or 0 with errno set (ENAMETOOLONG, EINVAL). */
static socklen_t make_addr(struct sockaddr_un *addr, const char *path, size_t len) {
  int abstract = len > 0 && path[0] == '@';

  memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  if (len == 0 || (!abstract && strlen(path) != len)) {
    errno = EINVAL; /* empty, or a filesystem path with an embedded NUL */
    return 0;
  }
  if (abstract ? len > SUN_PATH_MAX : len >= SUN_PATH_MAX) {
    errno = ENAMETOOLONG;
    return 0;
  }
  memcpy(addr->sun_path, path, len);
  if (abstract) {
    addr->sun_path[0] = '\0';
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
  }
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

/* Sends msg as one datagram without blocking the event loop; returns 0 or an errno value.
 * The fd is always closed. */
static int send_datagram(const struct sockaddr_un *addr, socklen_t addr_len, const char *msg, size_t len) {
  ssize_t sent;
  int err = 0;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

  if (fd < 0) return errno;
  do {
    sent = sendto(fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT, (const struct sockaddr *)addr, addr_len);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) err = errno;
  else if ((size_t)sent != len) err = EMSGSIZE;
  close(fd);
  return err;
}

/* notify(socketPath: string, message: string): undefined */
static napi_value Notify(napi_env env, napi_callback_info info) {
  size_t argc = 2, path_len = 0, msg_len = 0;
  napi_value argv[2];
  struct sockaddr_un addr;
  socklen_t addr_len;
  char *path = NULL, *msg = NULL;
  int err;

  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "sd_notify: notify(socketPath, message) needs 2 arguments");
    return NULL;
  }
  path = get_string(env, argv[0], "socketPath", &path_len);
  if (path != NULL) msg = get_string(env, argv[1], "message", &msg_len);
  if (path != NULL && msg != NULL) {
    addr_len = make_addr(&addr, path, path_len);
    if (addr_len == 0) throw_errno(env, errno, "sendto", path);
    else if ((err = send_datagram(&addr, addr_len, msg, msg_len)) != 0) throw_errno(env, err, "sendto", path);
  }
  free(path);
  free(msg);
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;

  if (napi_create_function(env, "notify", NAPI_AUTO_LENGTH, Notify, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "notify", fn) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
