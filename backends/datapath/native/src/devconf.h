/* net.ipv4.conf.<dev>.<key> through rtnetlink (no /proc/sys needed): see devconf.c. */
#ifndef FLANNEL_DEVCONF_H
#define FLANNEL_DEVCONF_H
#include <stdint.h>
/* The IPV4_DEVCONF_* id of a key this module knows (accept_local, rp_filter, forwarding, send_redirects,
 * accept_redirects), or -EINVAL. */
int fl_ipv4_devconf_id(const char *key);
/* Sets the key on device ifname; 0 or -errno (the kernel's answer, e.g. -EPERM without CAP_NET_ADMIN). */
int fl_ipv4_devconf_set(const char *ifname, const char *key, uint32_t value);
#endif
