/*
 * xs_write_lat SOCKET N: N sequential XS_WRITE requests of "/bench/w" on one
 * unix-socket connection to a xenstored; prints the median round trip in
 * microseconds. A C client, so that two daemons are compared without a
 * client runtime in the way (bench/xenstored.ts builds and runs it).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct xs_header { uint32_t type, req_id, tx_id, len; };

static void read_all(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0) { perror("read"); exit(1); }
        got += (size_t)r;
    }
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s SOCKET N\n", argv[0]); return 2; }
    int n = atoi(argv[2]);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    strncpy(addr.sun_path, argv[1], sizeof(addr.sun_path) - 1);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) { perror("connect"); return 1; }
    static const char payload[] = "/bench/w\0x";  /* path, NUL, value (no NUL) */
    char msg[sizeof(struct xs_header) + sizeof(payload) - 1];
    long long *lat = malloc(sizeof(long long) * (size_t)n);
    char reply[4096];
    for (int i = -500; i < n; i++) {  /* the first 500 warm both ends up */
        struct xs_header h = { 11, (uint32_t)(i + 1000), 0, sizeof(payload) - 1 };
        memcpy(msg, &h, sizeof(h));
        memcpy(msg + sizeof(h), payload, sizeof(payload) - 1);
        long long t0 = now_ns();
        if (write(fd, msg, sizeof(msg)) != (ssize_t)sizeof(msg)) { perror("write"); return 1; }
        read_all(fd, &h, sizeof(h));
        if (h.len > sizeof(reply) || h.type != 11) { fprintf(stderr, "bad reply type %u\n", h.type); return 1; }
        read_all(fd, reply, h.len);
        if (i >= 0) lat[i] = now_ns() - t0;
    }
    qsort(lat, (size_t)n, sizeof(long long), by_value);
    printf("median=%.1fus\n", lat[n / 2] / 1e3);
    return 0;
}
