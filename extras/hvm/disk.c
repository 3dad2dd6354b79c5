/* A disk as a device file: writes a pattern at unaligned places of
 * /dev/xvda, reads it back, syncs, and reports the disk's size. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  const char *dev = argc > 1 ? argv[1] : "/dev/xvda";
  int fd = open(dev, O_RDWR);
  if (fd < 0) {
    perror(dev);
    return 1;
  }
  off_t size = lseek(fd, 0, SEEK_END);
  printf("disk: size %lld\n", (long long)size);
  const char *msg = "the guest wrote this across a sector boundary";
  if (pwrite(fd, msg, strlen(msg), 1000) != (ssize_t)strlen(msg)) perror("pwrite");
  char back[128] = {0};
  if (pread(fd, back, strlen(msg), 1000) != (ssize_t)strlen(msg)) perror("pread");
  printf("disk: read back %s\n", strcmp(back, msg) == 0 ? "ok" : "WRONG");
  lseek(fd, size - 4, SEEK_SET);
  printf("disk: write past end wrote %zd\n", write(fd, "12345678", 8));
  printf("disk: fsync %s\n", fsync(fd) == 0 ? "ok" : "failed");
  close(fd);
  int ro = open(dev, O_RDONLY);
  printf("disk: write to read-only fd %s\n", write(ro, "x", 1) < 0 ? "refused" : "ALLOWED");
  return 0;
}
