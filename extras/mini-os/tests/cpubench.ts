// cpubench: CPU-bound kernels for comparing instrumented and bare code.
// loop: a tight integer loop; fib: call-heavy recursion; sieve: memory loop.
import { shutdown, SHUTDOWN_poweroff } from "../lib/index";

export function loop(n: i32): u32 {
  let x: u32 = 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
  }
  return x;
}

export function fib(n: i32): i32 {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

const SIEVE = memory.data(1 << 16);
export function sieve(rounds: i32): i32 {
  let count = 0;
  for (let r = 0; r < rounds; r++) {
    memory.fill(SIEVE, 1, 1 << 16);
    count = 0;
    for (let i = 2; i < 1 << 16; i++) {
      if (load<u8>(SIEVE + i) != 0) {
        count++;
        for (let j = i * 2; j < 1 << 16; j += i) store<u8>(SIEVE + j, 0);
      }
    }
  }
  return count;
}

export function _start(): void {
  shutdown(SHUTDOWN_poweroff);
}
