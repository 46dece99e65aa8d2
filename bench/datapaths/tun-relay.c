/* The ceiling of any userspace TUN data path on this machine: one process holds a TUN device in each
 * of two node namespaces and copies every read of one, virtio-net header and all, into the other.
 * TSO/USO super-packets pass whole; there is no encapsulation, no UDP socket and no peer table, so
 * each byte is copied twice (TUN read, TUN write) where a real tunnel copies it four times.
 *
 * usage: tun-relay NS_A NS_B IFNAME    prints "ready" once both devices exist, then relays until
 * killed (or its parent dies). Exit 2: bad usage; 1: a device could not be made (message on stderr). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#define TUN_F_USO6 0x40
#endif

#define BUF_SIZE (10 + 65536)

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "tun-relay: %s %s: %s\n", what, detail, strerror(errno));
  exit(1);
}

/* A TUN device with a virtio-net header and every offload the kernel grants, made in namespace ns. */
static int open_tun(const char *ns, const char *name) {
  char path[256];
  snprintf(path, sizeof path, "/run/netns/%s", ns);
  int nsfd = open(path, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) fail("cannot open namespace", path);
  if (setns(nsfd, CLONE_NEWNET) < 0) fail("cannot enter namespace", ns);
  close(nsfd);
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) fail("cannot open", "/dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) fail("TUNSETIFF", name);
  unsigned full = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6;
  if (ioctl(fd, TUNSETOFFLOAD, full) < 0 && ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) {
    fail("TUNSETOFFLOAD", name);
  }
  return fd;
}

struct direction { int from, to; };

static void *relay(void *arg) {
  const struct direction *d = arg;
  char *buf = malloc(BUF_SIZE);
  if (!buf) exit(1);
  for (;;) {
    ssize_t n = read(d->from, buf, BUF_SIZE);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      fail("read", "failed");
    }
    /* A write refused (device down, bad packet) drops that packet, as a tunnel would. */
    if (n > 0 && write(d->to, buf, (size_t)n) < 0 && errno == EBADF) fail("write", "failed");
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: tun-relay NS_A NS_B IFNAME\n");
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  int a = open_tun(argv[1], argv[3]);
  int b = open_tun(argv[2], argv[3]);
  static struct direction ab, ba;
  ab = (struct direction){a, b};
  ba = (struct direction){b, a};
  pthread_t t1, t2;
  if (pthread_create(&t1, NULL, relay, &ab) || pthread_create(&t2, NULL, relay, &ba)) fail("cannot start", "threads");
  printf("ready\n");
  fflush(stdout);
  pthread_join(t1, NULL);
  return 0;
}
