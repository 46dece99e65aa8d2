/* Adaptive threading (--datapath-threads=adaptive), NAPI-like: two workers per queue, a lead and an
 * assist, and one word of shared memory saying who owns the queue's RX direction.
 *  - Light traffic: the lead serves both directions, as one shared worker does. A request that comes
 *    back as a reply is read by the same thread that wrote the request, without a wakeup in between,
 *    and a round trip costs one thread wakeup per node and direction fewer than with a TX and an RX
 *    worker. The assist sleeps on its join eventfd.
 *  - Heavy traffic: when the lead has moved packets in FL_JOIN_ROUNDS rounds and FL_JOIN_BUSY_US without
 *    once finding both directions empty, and RX had some of them, it hands RX to the assist (owner 1, join eventfd) and keeps TX: from then on
 *    the queue runs as a TX and an RX worker on two CPUs.
 *  - With spin_us, the lead busy-polls after traffic while it expects an answer soon (reply prediction, below).
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

/* Reply prediction. Traffic in one direction is usually answered by the other: a ping sent to the
 * underlay by its echo from it, a request delivered to the device by the local reply. The lead keeps,
 * per direction, a smoothed delay of those answers and its mean deviation (as TCP does for its
 * retransmission timeout, RFC 6298), and after traffic it busy-polls while an answer is due: up to
 * srtt + 4 × deviation + FL_SPIN_SLACK_US, never longer than spin_us, and only while srtt is under
 * spin_us. So the node that sent a request stays awake for its reply, and the node that serves it does
 * not spin after sending the reply (the next request is a ping interval away); bulk traffic spins a few
 * µs after its end; an idle queue and answers slower than spin_us never spin. A busy-poll that expires
 * without its answer stops the polling in that direction until an answer comes, so one-way traffic
 * costs one expired poll, not one per packet. */
#define FL_SPIN_SLACK_US 20
enum { DIR_TX = 0, DIR_RX = 1 };

static void learn_answer(fl_engine *e, int d, int64_t delay) {
  if (delay < 1) delay = 1;
  if (delay > 2 * (int64_t)e->spin_us) delay = 2 * (int64_t)e->spin_us; /* one long pause must not stop polling for long */
  if (!e->answer_srtt_us[d]) {
    e->answer_srtt_us[d] = delay;
    e->answer_var_us[d] = delay / 2;
  } else {
    int64_t err = delay - e->answer_srtt_us[d];
    e->answer_var_us[d] += ((err < 0 ? -err : err) - e->answer_var_us[d]) / 4;
    e->answer_srtt_us[d] += err / 8;
    if (e->answer_srtt_us[d] < 1) e->answer_srtt_us[d] = 1;
  }
  e->answer_missed[d] = 0;
}

static void note_traffic(fl_engine *e, int dir, int64_t now) {
  int other = !dir;
  if (e->waiting_since_us[other]) {
    learn_answer(e, other, now - e->waiting_since_us[other]);
    e->waiting_since_us[other] = 0;
  }
  if (!e->waiting_since_us[dir]) e->waiting_since_us[dir] = now;
}

/* Until when to busy-poll for an answer (0: not at all). */
static int64_t spin_until(const fl_engine *e) {
  int64_t until = 0;
  for (int d = 0; d < 2; d++) {
    int64_t srtt = e->answer_srtt_us[d];
    if (!e->waiting_since_us[d] || !srtt || srtt >= e->spin_us || e->answer_missed[d]) continue;
    int64_t span = srtt + 4 * e->answer_var_us[d] + FL_SPIN_SLACK_US;
    if (span > e->spin_us) span = e->spin_us;
    if (e->waiting_since_us[d] + span > until) until = e->waiting_since_us[d] + span;
  }
  return until;
}

/* The answers spin_until waited for did not come: no more polling for them until one does. */
static void note_missed_answers(fl_engine *e) {
  for (int d = 0; d < 2; d++)
    if (e->waiting_since_us[d]) e->answer_missed[d] = 1;
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
    int own_rx = owner(e) == 0, tx, rx = 0;
    if ((tx = fl_tx_step(e)) < 0) return tx;
    int64_t now = mono_us();
    if (tx && e->spin_us) note_traffic(e, DIR_TX, now);
    if (own_rx) {
      if ((rx = fl_rx_step(e)) < 0) return rx;
      e->busy_rx += rx;
      if (rx && e->spin_us) note_traffic(e, DIR_RX, now = mono_us());
    }
    if (tx + rx) {
      if (e->busy_polling) { e->busy_polling = 0; STAT(e, ST_BUSY_POLLS_ANSWERED)++; }
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
    if (e->spin_us && own_rx) { /* while the assist serves RX, the answers are not the lead's to wait for */
      int64_t until = spin_until(e);
      if (now < until) {
        e->busy_polling = 1;
        sched_yield();
        b--;
        continue;
      }
      if (until) note_missed_answers(e);
      if (e->busy_polling) { e->busy_polling = 0; STAT(e, ST_BUSY_POLLS_EXPIRED)++; }
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
    /* A restarted assist that finds RX its own starts with an empty window (window_start_us 0), so it
     * hands RX back at once unless its first step finds the flood still on: safe either way, since the
     * lead takes RX back on the back eventfd and lends it again if the load is still there. */
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
