/* Device and socket setup for the packet engine: TUN/TAP, UDP sockets, eventfds.
 * Pure syscall code: every function returns a non-negative result or -errno, never exits. */
#ifndef FLANNEL_SYS_H
#define FLANNEL_SYS_H
#include <stddef.h>
#include <stdint.h>

#define FL_TUN_TAP 1u        /* IFF_TAP instead of IFF_TUN */
#define FL_TUN_VNET_HDR 2u   /* IFF_VNET_HDR: GSO super-packets with a virtio_net_hdr */
#define FL_TUN_MULTI_QUEUE 4u

/* Opens /dev/net/tun as `name` (may contain %d); writes the kernel's name into name_out (IFNAMSIZ). */
int fl_tun_open(const char *name, unsigned flags, char *name_out);
/* TUNSETOFFLOAD: the offloads (TUN_F_*) the device may hand us. */
int fl_tun_set_offload(int fd, unsigned offloads);
/* Non-blocking UDP socket bound to ip:port (host order), SO_REUSEPORT optional, big buffers. */
int fl_udp_open(uint32_t ip, uint16_t port, int reuse_port, int buf_bytes);
/* The same over IPv6 (AF_INET6, IPV6_V6ONLY) bound to ip (16 bytes, network order):port; it also
 * accepts datagrams without a UDP checksum. */
int fl_udp6_open(const uint8_t ip[16], uint16_t port, int reuse_port, int buf_bytes);
/* A non-blocking pipe (O_CLOEXEC): fds[0] reads, fds[1] writes. */
int fl_pipe_open(int fds[2]);
/* One datagram out of a bound UDP socket to ip:port (host order), not waiting; returns bytes sent or -errno. */
int fl_udp_send(int fd, const void *buf, size_t len, uint32_t ip, uint16_t port);
/* sendto [ip]:port (16 bytes, network order) on an AF_INET6 socket, MSG_DONTWAIT; returns bytes sent or -errno. */
int fl_udp6_send(int fd, const void *buf, size_t len, const uint8_t ip[16], uint16_t port);
/* Datagrams the kernel dropped at socket `fd` since it was opened (receive buffer full, or refused by
 * a filter): SO_MEMINFO's SK_MEMINFO_DROPS, the `drops` column of /proc/net/udp. Returns it or -errno. */
int64_t fl_socket_drops(int fd);
int fl_eventfd_open(void);
int fl_eventfd_signal(int fd);
int fl_close(int fd);
#endif
