/* What wasi-libc (Debian's 0.0~git20220510) lacks and SQLite's shell links
 * against: no file modes, no processes and no canonical paths exist for a
 * WASI program, so these report ENOSYS (realpath hands the path back as
 * given, which is what the shell uses it for: printing). The programs'
 * own sources are not changed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

char *realpath(const char *restrict path, char *restrict resolved) {
  if (!resolved) return strdup(path);
  strcpy(resolved, path);
  return resolved;
}

int chmod(const char *path, mode_t mode) {
  (void)path;
  (void)mode;
  errno = ENOSYS;
  return -1;
}

int system(const char *command) {
  (void)command;
  errno = ENOSYS;
  return -1;
}
