/* Reads lines from the serial port (stdin) and answers each, until "quit". */
#include <stdio.h>
#include <string.h>

int main(void) {
  char line[256];
  printf("echo: ready\n");
  fflush(stdout);
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\r\n")] = 0;
    if (strcmp(line, "quit") == 0) break;
    printf("echo: %s\n", line);
    fflush(stdout);
  }
  printf("echo: bye\n");
  return 0;
}
