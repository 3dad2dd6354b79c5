/* A hostile WASI program: each mode attacks the device model or the host
 * through its WASI imports, and prints what every attack got back (the WASI
 * errno), so that a test can check that each was refused and that nothing
 * else was hurt. The imports are declared raw, to pass any integer at all. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WASI(name) __attribute__((import_module("wasi_snapshot_preview1"), import_name(#name)))
WASI(fd_write) int32_t raw_fd_write(int32_t, int32_t, int32_t, int32_t);
WASI(fd_read) int32_t raw_fd_read(int32_t, int32_t, int32_t, int32_t);
WASI(fd_close) int32_t raw_fd_close(int32_t);
WASI(fd_seek) int32_t raw_fd_seek(int32_t, int64_t, int32_t, int32_t);
WASI(path_open) int32_t raw_path_open(int32_t, int32_t, int32_t, int32_t, int32_t, int64_t, int64_t, int32_t, int32_t);
WASI(poll_oneoff) int32_t raw_poll_oneoff(int32_t, int32_t, int32_t, int32_t);
WASI(random_get) int32_t raw_random_get(int32_t, int32_t);
WASI(args_get) int32_t raw_args_get(int32_t, int32_t);
WASI(fd_prestat_dir_name) int32_t raw_prestat_dir_name(int32_t, int32_t, int32_t);
WASI(fd_readdir) int32_t raw_fd_readdir(int32_t, int32_t, int32_t, int64_t, int32_t);
WASI(clock_time_get) int32_t raw_clock_time_get(int32_t, int64_t, int32_t);
WASI(path_symlink) int32_t raw_path_symlink(int32_t, int32_t, int32_t, int32_t, int32_t);

static uint32_t result;
static volatile unsigned long spins;
static char *volatile sink;
static char buf[65536];

#define SHOW(name, call) printf("%s: %d\n", name, (int)(call))
#define P(x) ((int32_t)(uintptr_t)(x))

static int32_t open_path(const char *path, int32_t oflags, int64_t rights) {
  return raw_path_open(3, 0, P(path), (int32_t)strlen(path), oflags, rights, rights, 0, P(&result));
}

static void attacks(void) {
  /* Wild pointers and lengths. */
  SHOW("write-wild-iovec", raw_fd_write(1, 0x7ffffff0, 1, P(&result)));
  uint32_t iov[2] = {0xfffff000u, 4096};
  SHOW("write-wild-buffer", raw_fd_write(1, P(iov), 1, P(&result)));
  SHOW("write-huge-iovcnt", raw_fd_write(1, P(iov), 0x7fffffff, P(&result)));
  uint32_t big[2] = {P(buf), 0xffffffffu};
  SHOW("read-huge-length", raw_fd_read(3, P(big), 1, P(&result)));
  SHOW("write-wild-result", raw_fd_write(1, P(iov), 0, 0xfffffffc));
  SHOW("random-wild", raw_random_get(0x7fffffff, 0x7fffffff));
  SHOW("random-huge", raw_random_get(P(buf), 0x40000000));
  SHOW("args-wild", raw_args_get(0xfffffff0, 0xfffffff0));
  SHOW("prestat-name-wild", raw_prestat_dir_name(3, 0xfffffff0, 0x7fffffff));
  SHOW("readdir-wild", raw_fd_readdir(3, P(buf), 0x7fffffff, 0, P(&result)));
  SHOW("clock-wild", raw_clock_time_get(1, 0, 0xfffffffc));
  SHOW("clock-bad-id", raw_clock_time_get(99, 0, P(&result)));
  /* The same on a file of the share, which the vCPU reads and writes itself. */
  int32_t f = open_path("f", 1 /* creat */, 0x7fffffff);
  if (f == 0) {
    int32_t fd = (int32_t)result;
    printf("file-fd-is-fast: %s\n", fd > 3 && fd < 64 ? "yes" : "no");
    uint32_t wild[2] = {0xfffff000u, 4096};
    SHOW("file-write-wild-buffer", raw_fd_write(fd, P(wild), 1, P(&result)));
    SHOW("file-write-wild-iovec", raw_fd_write(fd, 0x7ffffff0, 1, P(&result)));
    SHOW("file-read-huge-length", raw_fd_read(fd, P(big), 1, P(&result)));
    SHOW("file-write-huge-iovcnt", raw_fd_write(fd, P(wild), 0x7fffffff, P(&result)));
    uint32_t ok[2] = {P("abc"), 3};
    SHOW("file-write", raw_fd_write(fd, P(ok), 1, P(&result)));
    printf("file-written: %u\n", result);
  } else {
    SHOW("file-open", f);
  }
  /* Descriptors never opened. */
  SHOW("write-fd-1000", raw_fd_write(1000, P(iov), 0, P(&result)));
  SHOW("write-fd-negative", raw_fd_write(-1, P(iov), 0, P(&result)));
  SHOW("close-fd-99", raw_fd_close(99));
  SHOW("seek-stdout", raw_fd_seek(1, 0, 0, P(&result)));
  /* Paths out of the share. */
  SHOW("open-dotdot", open_path("../../etc/passwd", 0, 2));
  SHOW("open-absolute", open_path("/etc/passwd", 0, 2));
  SHOW("open-inner-dotdot", open_path("a/../../etc/passwd", 0, 2));
  SHOW("open-nul", raw_path_open(3, 0, P("ok\0/../../etc/passwd"), 20, 0, 2, 2, 0, P(&result)));
  SHOW("open-wild-path", raw_path_open(3, 0, 0xfffffff0, 0x7fffffff, 0, 2, 2, 0, P(&result)));
  SHOW("symlink-absolute", raw_path_symlink(P("/etc"), 4, 3, P("etc"), 3));
  SHOW("symlink-up", raw_path_symlink(P("../../../.."), 11, 3, P("up"), 2));
  SHOW("open-through-symlink-up", open_path("up/etc/passwd", 0, 2));
  /* Many subscriptions: 4,000 clocks that have all expired, then too many. */
  static uint8_t subs[4000 * 48], events[4000 * 32];
  memset(subs, 0, sizeof subs);
  for (int i = 0; i < 4000; i++) subs[i * 48 + 8] = 0; /* clock, monotonic, timeout 0 */
  for (int i = 0; i < 4000; i++) subs[i * 48 + 16] = 1;
  SHOW("poll-4000", raw_poll_oneoff(P(subs), P(events), 4000, P(&result)));
  printf("poll-4000-events: %u\n", result);
  SHOW("poll-huge", raw_poll_oneoff(P(subs), P(events), 0x10000000, P(&result)));
  SHOW("poll-zero", raw_poll_oneoff(P(subs), P(events), 0, P(&result)));
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "attacks";
  if (strcmp(mode, "attacks") == 0) {
    attacks();
    printf("hostile: survived\n");
    return 0;
  }
  if (strcmp(mode, "spin") == 0) {
    printf("hostile: spinning\n");
    fflush(stdout);
    for (;;) spins++;
  }
  if (strcmp(mode, "flood") == 0) {
    memset(buf, 'x', sizeof buf);
    buf[sizeof buf - 1] = '\n';
    for (;;) fwrite(buf, 1, sizeof buf, stdout);
  }
  if (strcmp(mode, "grow") == 0) {
    size_t total = 0;
    for (;;) {
      /* Kept and touched, so the compiler cannot drop the allocation. */
      char *p = malloc(1 << 20);
      if (!p) break;
      p[0] = 1;
      sink = p;
      total += 1 << 20;
    }
    printf("hostile: malloc stopped at %zu MiB\n", total >> 20);
    return 0;
  }
  if (strcmp(mode, "race") == 0 && argc > 2) {
    /* Opens a path under a directory the host keeps swapping for a symlink
     * out of the share: the file outside must never be read. */
    char path[256];
    snprintf(path, sizeof path, "/s/%s", argv[2]);
    int opens = 0, escaped = 0;
    for (int i = 0; i < 3000; i++) {
      FILE *f = fopen(path, "r");
      if (!f) continue;
      opens++;
      if (fgets(buf, sizeof buf, f) && strstr(buf, "secret")) escaped++;
      fclose(f);
    }
    printf("race: %d opens, %d escaped\n", opens, escaped);
    return 0;
  }
  if (strcmp(mode, "trap") == 0) {
    printf("hostile: about to trap\n");
    fflush(stdout);
    __builtin_trap();
  }
  return 2;
}
