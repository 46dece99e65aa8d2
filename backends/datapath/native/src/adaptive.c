/* Adaptive threading (--datapath-threads=adaptive), NAPI-like: two workers per queue, a lead and an
 * assist, and one word of shared memory saying who owns the queue's RX direction.
 *  - Light traffic: the lead serves both directions, as one shared worker does. A request that comes
 *    back as a reply is read by the same thread that wrote the request, without a wakeup in between,
 *    and a round trip costs one thread wakeup per node and direction fewer than with a TX and an RX
 *    worker. The assist sleeps on its join eventfd.
 *  - Heavy traffic: when the lead has moved packets in FL_JOIN_ROUNDS rounds and FL_JOIN_BUSY_US without
 *    once finding both directions empty, and RX had some of them, it hands RX to the assist (owner 1, join eventfd) and keeps TX: from then on
 *    the queue runs as a TX and an RX worker on two CPUs.
 *  - With spin_us, the lead busy-polls that long after traffic when the previous pause was short (below).
 *  - When the assist's RX rate falls below FL_LEAVE_PACKETS per FL_LEAVE_WINDOW_US, it hands RX back
 *    (owner 0, back eventfd) and sleeps again.
 * Each transition is made by the side that owns RX, after its last RX step and before the other side's
 * first: RX has one server at a time, so per-flow order and the single-writer rules of the counters and
 * of wireguard's replay windows hold. A restarted worker reads the owner word and carries on. */
#define _GNU_SOURCE
#include "engine.h"
#include "engine_internal.h"
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* The lead moved packets in FL_JOIN_ROUNDS rounds in a row, over at least FL_JOIN_BUSY_US, RX among them:
 * the assist joins. Counting rounds as well as time keeps a request and its reply (two busy rounds, a
 * preemption between them) from looking like load. */
#define FL_JOIN_ROUNDS 4
#define FL_JOIN_BUSY_US 300
#define FL_LEAVE_WINDOW_US 20000 /* the assist measures its RX rate over windows of this length... */
#define FL_LEAVE_PACKETS 50      /* ...and leaves after one with fewer RX messages (2.5 k/s: a TCP stream's ACKs are more) */

static int64_t mono_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static uint32_t owner(const fl_engine *e) { return __atomic_load_n(e->rx_owner, __ATOMIC_ACQUIRE); }

static void hand_over(fl_engine *e, uint32_t to, int fd, int stat) {
  __atomic_store_n(e->rx_owner, to, __ATOMIC_RELEASE);
  if (eventfd_write(fd, 1) == 0) STAT(e, stat)++;
}

static void drain(int fd) {
  eventfd_t v;
  (void)eventfd_read(fd, &v);
}

/* Waits on the stop eventfd and fds[0..n); returns 2 on stop, 1 when one is ready (revents in p), 0 on
 * timeout, -errno. */
static int wait_fds(fl_engine *e, struct pollfd *p, int n, int timeout_ms) {
  p[0] = (struct pollfd){.fd = e->stop_fd, .events = POLLIN};
  int r = poll(p, (nfds_t)n, timeout_ms);
  if (r < 0) return errno == EINTR ? 0 : -errno;
  if (p[0].revents) return 2;
  return r > 0 ? 1 : 0;
}

int fl_pump_lead(fl_engine *e, int timeout_ms, int max_batches) {
  if (fl_stop_requested(e)) return FL_PUMP_STOPPED;
  for (int b = 0; b < max_batches; b++) {
    fl_sync_peers(e);
    int own_rx = owner(e) == 0, did, r;
    if ((r = fl_tx_step(e)) < 0) return r;
    did = r;
    if (own_rx) {
      if ((r = fl_rx_step(e)) < 0) return r;
      did += r;
      e->busy_rx += r;
    }
    if (did) {
      int64_t now = mono_us();
      e->active_us = now;
      if (e->idle_since_us) { e->gap_short = now - e->idle_since_us < 2 * (int64_t)e->spin_us; e->idle_since_us = 0; }
      if (!e->busy_since_us) e->busy_since_us = now;
      if (++e->busy_rounds >= FL_JOIN_ROUNDS && own_rx && e->busy_rx && now - e->busy_since_us >= FL_JOIN_BUSY_US) {
        hand_over(e, 1, e->join_fd, ST_ASSIST_JOINS);
        e->busy_since_us = 0;
        e->busy_rounds = 0;
      }
      continue;
    }
    e->busy_since_us = 0;
    e->busy_rounds = 0;
    e->busy_rx = 0;
    /* Busy-poll for spin_us only when the last pause in traffic was short (under twice the window): a
     * request/response exchange whose replies come back within it is then served without a thread
     * wakeup at either end, while sparse traffic (pings 2 ms apart, whose pauses are long) and an idle
     * queue never spin. */
    int64_t now = mono_us();
    if (!e->idle_since_us) e->idle_since_us = now;
    if (e->spin_us && e->gap_short && now - e->idle_since_us < e->spin_us) {
      sched_yield();
      b--;
      continue;
    }
    struct pollfd p[4];
    p[1] = (struct pollfd){.fd = e->dev_fd, .events = POLLIN};
    p[2] = (struct pollfd){.fd = e->back_fd, .events = POLLIN};
    p[3] = (struct pollfd){.fd = own_rx ? e->udp_fd : -1, .events = POLLIN};
    int w = wait_fds(e, p, 4, timeout_ms);
    if (w < 0) return w;
    if (w == 2) return FL_PUMP_STOPPED;
    if (w == 0) return FL_PUMP_IDLE;
    if (p[2].revents) drain(e->back_fd); /* RX is ours again: the next round serves it */
  }
  return FL_PUMP_IDLE;
}

int fl_pump_assist(fl_engine *e, int timeout_ms, int max_batches) {
  if (fl_stop_requested(e)) return FL_PUMP_STOPPED;
  for (int b = 0; b < max_batches; b++) {
    struct pollfd p[2];
    if (owner(e) != 1) {
      p[1] = (struct pollfd){.fd = e->join_fd, .events = POLLIN};
      int w = wait_fds(e, p, 2, timeout_ms);
      if (w < 0) return w;
      if (w == 2) return FL_PUMP_STOPPED;
      if (w == 0) return FL_PUMP_IDLE;
      drain(e->join_fd);
      e->window_start_us = mono_us();
      e->window_packets = 0;
      continue;
    }
    fl_sync_peers(e);
    int r = fl_rx_step(e);
    if (r < 0) return r;
    int64_t now = mono_us();
    if (r > 0) e->window_packets += (uint64_t)r;
    if (now - e->window_start_us >= FL_LEAVE_WINDOW_US) {
      if (e->window_packets < FL_LEAVE_PACKETS) { hand_over(e, 0, e->back_fd, ST_ASSIST_LEAVES); continue; }
      e->window_start_us = now;
      e->window_packets = 0;
    }
    if (r > 0) continue;
    p[1] = (struct pollfd){.fd = e->udp_fd, .events = POLLIN};
    int64_t left_ms = (FL_LEAVE_WINDOW_US - (now - e->window_start_us)) / 1000 + 1;
    int w = wait_fds(e, p, 2, left_ms < timeout_ms ? (int)left_ms : timeout_ms);
    if (w < 0) return w;
    if (w == 2) return FL_PUMP_STOPPED;
  }
  return FL_PUMP_IDLE;
}
