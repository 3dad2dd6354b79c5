/* Benchmarks for HVM guests, run the same way under tsxen and node:wasi;
 * each mode times itself with CLOCK_MONOTONIC and prints "result: NAME
 * VALUE UNIT" lines.
 *   cpu N      a CPU-bound mix (sieve, hashing, sorting), N rounds
 *   write1 N   N fd_write calls of one byte to a file in the share (argv[3])
 *   noop N     N fd_fdstat_get calls on stdout (a WASI call with no host I/O)
 *   io MIB     MIB 1 MiB writes to a file in the share, then reads back */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wasi/api.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static uint32_t cpu_round(void) {
  static uint8_t sieve[1 << 20];
  static uint32_t v[1 << 16];
  memset(sieve, 1, sizeof sieve);
  uint32_t primes = 0;
  for (uint32_t i = 2; i < sizeof sieve; i++) {
    if (!sieve[i]) continue;
    primes++;
    for (uint32_t j = i * 2; j < sizeof sieve; j += i) sieve[j] = 0;
  }
  uint32_t h = 2166136261u;
  for (uint32_t i = 0; i < (1 << 22); i++) h = (h ^ (i & 0xff)) * 16777619u;
  uint32_t x = h;
  for (uint32_t i = 0; i < (1 << 16); i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    v[i] = x;
  }
  qsort(v, 1 << 16, sizeof v[0], cmp);
  return primes ^ h ^ v[12345];
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  const char *mode = argv[1];
  long n = atol(argv[2]);
  if (strcmp(mode, "cpu") == 0) {
    double t = now_ms();
    uint32_t r = 0;
    for (long i = 0; i < n; i++) r ^= cpu_round();
    printf("result: cpu %.1f ms (check %u)\n", now_ms() - t, r);
  } else if (strcmp(mode, "write1") == 0 && argc > 3) {
    int fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return 1;
    double t = now_ms();
    for (long i = 0; i < n; i++) write(fd, "x", 1);
    printf("result: write1 %.3f us\n", (now_ms() - t) * 1000 / n);
    close(fd);
  } else if (strcmp(mode, "noop") == 0) {
    __wasi_fdstat_t st;
    double t = now_ms();
    for (long i = 0; i < n; i++) __wasi_fd_fdstat_get(1, &st);
    printf("result: noop %.3f us\n", (now_ms() - t) * 1000 / n);
  } else if (strcmp(mode, "io") == 0 && argc > 3) {
    static char buf[1 << 20];
    memset(buf, 'y', sizeof buf);
    int fd = open(argv[3], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return 1;
    double t = now_ms();
    for (long i = 0; i < n; i++) write(fd, buf, sizeof buf);
    double w = now_ms() - t;
    lseek(fd, 0, SEEK_SET);
    t = now_ms();
    long got = 0;
    ssize_t k;
    while ((k = read(fd, buf, sizeof buf)) > 0) got += k;
    double r = now_ms() - t;
    printf("result: write %.1f MiB/s\nresult: read %.1f MiB/s\n", n / (w / 1000), (got >> 20) / (r / 1000));
    close(fd);
  } else {
    return 2;
  }
  return 0;
}
