/* Device and socket setup for the packet engine. Returns -errno on failure, never exits. */
#define _GNU_SOURCE
#include "sys.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define FL_UDP_NO_CHECK6_RX 102 /* UDP_NO_CHECK6_RX, <linux/udp.h> */

int fl_tun_open(const char *name, unsigned flags, char *name_out) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_NO_PI | ((flags & FL_TUN_TAP) ? IFF_TAP : IFF_TUN);
  if (flags & FL_TUN_VNET_HDR) ifr.ifr_flags |= IFF_VNET_HDR;
  if (flags & FL_TUN_MULTI_QUEUE) ifr.ifr_flags |= IFF_MULTI_QUEUE;
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  memcpy(name_out, ifr.ifr_name, IFNAMSIZ);
  name_out[IFNAMSIZ - 1] = 0;
  return fd;
}

int fl_tun_set_offload(int fd, unsigned offloads) {
  return ioctl(fd, TUNSETOFFLOAD, offloads) < 0 ? -errno : 0;
}

static void set_buf(int fd, int opt_force, int opt, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, opt_force, &bytes, sizeof bytes) < 0) setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
}

int fl_udp_open(uint32_t ip, uint16_t port, int reuse_port, int buf_bytes) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) goto fail;
  if (buf_bytes > 0) {
    set_buf(fd, SO_RCVBUFFORCE, SO_RCVBUF, buf_bytes);
    set_buf(fd, SO_SNDBUFFORCE, SO_SNDBUF, buf_bytes);
  }
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(ip);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) goto fail;
  return fd;
fail : {
  int err = errno;
  close(fd);
  return -err;
}
}

#define FL_SO_MEMINFO 55         /* SO_MEMINFO, <asm-generic/socket.h> */
#define FL_SK_MEMINFO_DROPS 8    /* <linux/sock_diag.h> */
#define FL_SK_MEMINFO_VARS 9

int64_t fl_socket_drops(int fd) {
  uint32_t mem[FL_SK_MEMINFO_VARS] = {0};
  socklen_t len = sizeof mem;
  if (getsockopt(fd, SOL_SOCKET, FL_SO_MEMINFO, mem, &len) < 0) return -errno;
  if (len <= FL_SK_MEMINFO_DROPS * sizeof mem[0]) return -EOPNOTSUPP;
  return mem[FL_SK_MEMINFO_DROPS];
}

int fl_eventfd_open(void) {
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return fd < 0 ? -errno : fd;
}

int fl_eventfd_signal(int fd) {
  uint64_t one = 1;
  return write(fd, &one, sizeof one) < 0 ? -errno : 0;
}

int fl_close(int fd) { return close(fd) < 0 ? -errno : 0; }

int fl_pipe_open(int fds[2]) {
  return pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0 ? -errno : 0;
}

int fl_udp_send(int fd, const void *buf, size_t len, uint32_t ip, uint16_t port) {
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(ip)};
  ssize_t r = sendto(fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to);
  return r < 0 ? -errno : (int)r;
}

int fl_udp6_open(const uint8_t ip[16], uint16_t port, int reuse_port, int buf_bytes) {
  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  /* Bound to an address: IPv6 only. Bound to :: (all zeros): both families, IPv4 peers seen and dialed as
   * ::ffff:a.b.c.d (wireguard's Mode auto, one socket for per-peer outer families). */
  static const uint8_t any[16];
  int v6only = memcmp(ip, any, 16) != 0;
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0) goto fail;
  if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) goto fail;
  /* Accept datagrams without a UDP checksum too (a peer with udp6zerocsumtx); ours always carry one. */
  setsockopt(fd, IPPROTO_UDP, FL_UDP_NO_CHECK6_RX, &one, sizeof one);
  if (buf_bytes > 0) {
    set_buf(fd, SO_RCVBUFFORCE, SO_RCVBUF, buf_bytes);
    set_buf(fd, SO_SNDBUFFORCE, SO_SNDBUF, buf_bytes);
  }
  struct sockaddr_in6 sa;
  memset(&sa, 0, sizeof sa);
  sa.sin6_family = AF_INET6;
  sa.sin6_port = htons(port);
  memcpy(&sa.sin6_addr, ip, 16);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) goto fail;
  return fd;
fail : {
  int err = errno;
  close(fd);
  return -err;
}
}

int fl_udp6_send(int fd, const void *buf, size_t len, const uint8_t ip[16], uint16_t port) {
  struct sockaddr_in6 to;
  memset(&to, 0, sizeof to);
  to.sin6_family = AF_INET6;
  to.sin6_port = htons(port);
  memcpy(&to.sin6_addr, ip, 16);
  ssize_t r = sendto(fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to);
  return r < 0 ? -errno : (int)r;
}
