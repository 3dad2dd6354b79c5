/* File operations in a 9pfs share mounted at argv[1]: each step prints one
 * line, "name: ok" or "name: <strerror>", so a test can check them all. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *root;
static char buf[4096];

static void step(const char *name, int ok) {
  printf("%s: %s\n", name, ok ? "ok" : strerror(errno));
}

static void refused(const char *name, int escaped) {
  printf("%s: %s\n", name, escaped ? "ESCAPED" : "refused");
}

static const char *p(const char *rel) {
  static char path[2][512];
  static int i;
  i ^= 1;
  snprintf(path[i], sizeof path[i], "%s/%s", root, rel);
  return path[i];
}

int main(int argc, char **argv) {
  root = argc > 1 ? argv[1] : "/share";
  step("mkdir", mkdir(p("dir"), 0755) == 0);
  FILE *f = fopen(p("dir/hello.txt"), "w");
  step("create", f != NULL);
  if (f) {
    fprintf(f, "written by the guest\n");
    step("fclose", fclose(f) == 0);
  }
  f = fopen(p("dir/hello.txt"), "a");
  step("append", f != NULL && fputs("second line\n", f) >= 0 && fclose(f) == 0);
  int fd = open(p("dir/hello.txt"), O_RDONLY);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  step("read", n == 33);
  if (n > 0) buf[n] = 0;
  step("seek", fd >= 0 && lseek(fd, 8, SEEK_SET) == 8 && read(fd, buf, 5) == 5 &&
                   memcmp(buf, "by th", 5) == 0);
  if (fd >= 0) close(fd);
  struct stat st;
  step("stat", stat(p("dir/hello.txt"), &st) == 0 && st.st_size == 33 && S_ISREG(st.st_mode));
  step("rename", rename(p("dir/hello.txt"), p("dir/renamed.txt")) == 0);
  step("symlink", symlink("renamed.txt", p("dir/link")) == 0);
  f = fopen(p("dir/link"), "r");
  step("follow", f != NULL && fgets(buf, sizeof buf, f) && strcmp(buf, "written by the guest\n") == 0);
  if (f) fclose(f);
  DIR *d = opendir(p("dir"));
  int entries = 0;
  struct dirent *e;
  while (d && (e = readdir(d))) if (e->d_name[0] != '.') entries++;
  if (d) closedir(d);
  step("readdir", entries == 2);
  step("unlink", unlink(p("dir/link")) == 0);
  step("truncate", truncate(p("dir/renamed.txt"), 7) == 0 && stat(p("dir/renamed.txt"), &st) == 0 &&
                       st.st_size == 7);
  step("rmdir-notempty", rmdir(p("dir")) != 0 && errno == ENOTEMPTY);
  /* Attempts to leave the share: each must be refused. */
  refused("escape-dotdot", open(p("../../../../etc/passwd"), O_RDONLY) >= 0);
  refused("escape-absolute-symlink", symlink("/etc/passwd", p("dir/out")) == 0);
  (void)symlink("../../../../../../etc", p("dir/up"));
  refused("escape-relative-symlink", open(p("dir/up/passwd"), O_RDONLY) >= 0);
  step("symlink-inside", symlink("../dir", p("dir/self")) == 0 &&
                             stat(p("dir/self/renamed.txt"), &st) == 0 && st.st_size == 7);
  FILE *big = fopen(p("big.bin"), "w");
  for (int i = 0; big && i < 1024; i++) {
    memset(buf, i & 0xff, 1024);
    fwrite(buf, 1, 1024, big);
  }
  step("write-1MiB", big != NULL && fclose(big) == 0);
  printf("fsops: done\n");
  return 0;
}
