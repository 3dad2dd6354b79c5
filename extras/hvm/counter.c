/*
 * A test guest for saving HVM domains: state in its memory, its stack, an
 * open file and the clock, all of which must survive a save and restore.
 *   counter tick N MS FILE  prints "tick i" every MS ms, N times, and appends
 *                           each line to FILE (opened once, kept open)
 *   counter spin N          computes a checksum of N rounds with no I/O,
 *                           printing it every N/8 rounds and at the end
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static unsigned long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (unsigned long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Recursion keeps some of the state on the wasm stack, which the save unwinds. */
static unsigned mix(unsigned x, int depth) {
  if (depth == 0) return x * 2654435761u + 1;
  return mix(x ^ (x >> 13), depth - 1) + depth;
}

int main(int argc, char **argv) {
  if (argc >= 5 && strcmp(argv[1], "tick") == 0) {
    int n = atoi(argv[2]);
    long ms = atol(argv[3]);
    FILE *f = fopen(argv[4], "a");
    if (!f) {
      perror(argv[4]);
      return 1;
    }
    unsigned long long start = now_ms();
    for (int i = 1; i <= n; i++) {
      struct timespec req = {ms / 1000, (ms % 1000) * 1000000L};
      nanosleep(&req, NULL);
      printf("tick %d at %llu ms\n", i, now_ms() - start);
      fflush(stdout);
      fprintf(f, "tick %d\n", i);
      fflush(f);
    }
    fclose(f);
    printf("counter: done\n");
    return 0;
  }
  if (argc >= 3 && strcmp(argv[1], "spin") == 0) {
    unsigned long n = strtoul(argv[2], NULL, 10);
    unsigned sum = 0;
    for (unsigned long i = 0; i < n; i++) {
      sum = mix(sum + (unsigned)i, 8);
      if (n >= 8 && (i + 1) % (n / 8) == 0) {
        printf("spin %lu/8 sum %u\n", (i + 1) / (n / 8), sum);
        fflush(stdout);
      }
    }
    printf("spin: sum %u\n", sum);
    return 0;
  }
  fprintf(stderr, "usage: counter tick N MS FILE | counter spin N\n");
  return 2;
}
