/* An unmodified WASI program: prints its arguments and one environment
 * variable, then exits with the code its first argument names. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  printf("hello from an HVM guest, argc=%d\n", argc);
  for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
  const char *g = getenv("GREETING");
  printf("GREETING=%s\n", g ? g : "(unset)");
  return argc > 1 ? atoi(argv[1]) : 0;
}
