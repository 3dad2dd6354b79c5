// deep: recurses 5,000 calls deep, then spins there. Its first preemption
// must save a stack far larger than a vCPU's save area.
function down(n: i32): i32 {
  if (n == 0) {
    for (;;) {}
  }
  return down(n - 1) + 1;
}

export function _start(): void {
  down(5000);
}
