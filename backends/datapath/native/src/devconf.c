/* IPv4 per-device settings (net.ipv4.conf.<dev>.<key>) through rtnetlink instead of /proc/sys: RTM_SETLINK with
 * IFLA_AF_SPEC > AF_INET > IFLA_INET_CONF > {IPV4_DEVCONF_<key>: u32}, which the kernel applies with CAP_NET_ADMIN
 * in the device's network namespace. A container without privileges (Kubernetes' default) has /proc/sys mounted
 * read-only, so this is how flanneld sets accept_local on its devices there. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/socket.h>
#include <linux/ip.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include "devconf.h"

static const struct { const char *name; int id; } KEYS[] = {
  {"accept_local", IPV4_DEVCONF_ACCEPT_LOCAL},
  {"rp_filter", IPV4_DEVCONF_RP_FILTER},
  {"forwarding", IPV4_DEVCONF_FORWARDING},
  {"send_redirects", IPV4_DEVCONF_SEND_REDIRECTS},
  {"accept_redirects", IPV4_DEVCONF_ACCEPT_REDIRECTS},
};

int fl_ipv4_devconf_id(const char *key) {
  for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) if (strcmp(KEYS[i].name, key) == 0) return KEYS[i].id;
  return -EINVAL;
}

/* Appends an attribute (data may be NULL for a nest, closed later by end()) and returns it. */
static struct rtattr *add(struct nlmsghdr *h, unsigned short type, const void *data, size_t len) {
  struct rtattr *a = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
  a->rta_type = type;
  a->rta_len = (unsigned short)RTA_LENGTH(len);
  if (len) memcpy(RTA_DATA(a), data, len);
  h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(a->rta_len);
  return a;
}

static void end(struct nlmsghdr *h, struct rtattr *a) {
  a->rta_len = (unsigned short)((char *)h + h->nlmsg_len - (char *)a);
}

int fl_ipv4_devconf_set(const char *ifname, const char *key, uint32_t value) {
  int id = fl_ipv4_devconf_id(key);
  if (id < 0) return id;
  unsigned index = if_nametoindex(ifname);
  if (index == 0) return -errno;
  struct { struct nlmsghdr h; struct ifinfomsg ifi; char attrs[64]; } req;
  memset(&req, 0, sizeof req);
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
  req.h.nlmsg_type = RTM_SETLINK;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  req.h.nlmsg_seq = 1;
  req.ifi.ifi_family = AF_UNSPEC;
  req.ifi.ifi_index = (int)index;
  struct rtattr *spec = add(&req.h, IFLA_AF_SPEC, NULL, 0);
  struct rtattr *inet = add(&req.h, AF_INET, NULL, 0);
  struct rtattr *conf = add(&req.h, IFLA_INET_CONF, NULL, 0);
  add(&req.h, (unsigned short)id, &value, sizeof value);
  end(&req.h, conf);
  end(&req.h, inet);
  end(&req.h, spec);

  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return -errno;
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  int rc = 0;
  if (sendto(fd, &req, req.h.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) rc = -errno;
  while (rc == 0) {
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) { if (errno == EINTR) continue; rc = -errno; break; }
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (!NLMSG_OK(h, (unsigned)n)) { rc = -EPROTO; break; }
    if (h->nlmsg_type == NLMSG_ERROR) { rc = ((struct nlmsgerr *)NLMSG_DATA(h))->error; break; }
  }
  close(fd);
  return rc;
}
