/* What one thread wake-up costs on this machine: two threads hand a token back and forth through
 * eventfds, sleeping in poll() in between, with a pause before each round so the CPUs go idle as
 * they do between pings. Both threads on one CPU ("same"), or on CPUs 0 and 1 ("cross").
 * Prints the median of round trip / 2 in microseconds. Built and run by bench/metrics/wakeup-cost.ts. */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 300

static int to_peer, to_main, peer_cpu;

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void wait_for(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  uint64_t v;
  while (poll(&p, 1, -1) < 1) {}
  if (read(fd, &v, sizeof v) != sizeof v) exit(2);
}

static void post(int fd) {
  uint64_t v = 1;
  if (write(fd, &v, sizeof v) != sizeof v) exit(2);
}

static void *peer(void *arg) {
  (void)arg;
  pin(peer_cpu);
  for (int i = 0; i < ROUNDS; i++) { wait_for(to_peer); post(to_main); }
  return NULL;
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 2 || (strcmp(argv[1], "same") && strcmp(argv[1], "cross"))) { fprintf(stderr, "usage: wakeup-cost same|cross\n"); return 64; }
  peer_cpu = strcmp(argv[1], "cross") == 0 ? 1 : 0;
  pin(0);
  to_peer = eventfd(0, 0);
  to_main = eventfd(0, 0);
  pthread_t t;
  if (to_peer < 0 || to_main < 0 || pthread_create(&t, NULL, peer, NULL)) return 1;
  static double rtt[ROUNDS];
  for (int i = 0; i < ROUNDS; i++) {
    usleep(2000);
    double t0 = now_us();
    post(to_peer);
    wait_for(to_main);
    rtt[i] = now_us() - t0;
  }
  pthread_join(t, NULL);
  qsort(rtt, ROUNDS, sizeof rtt[0], cmp);
  printf("%.1f\n", rtt[ROUNDS / 2] / 2);
  return 0;
}
