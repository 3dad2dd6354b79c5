/* Sleeps (poll_oneoff on the monotonic clock) and reports how long it took. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
  long ms = argc > 1 ? atol(argv[1]) : 100;
  struct timespec a, b, req = {ms / 1000, (ms % 1000) * 1000000L};
  clock_gettime(CLOCK_MONOTONIC, &a);
  nanosleep(&req, NULL);
  clock_gettime(CLOCK_MONOTONIC, &b);
  long took = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
  printf("slept %ld ms\n", took);
  return 0;
}
