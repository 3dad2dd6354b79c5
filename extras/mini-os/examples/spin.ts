// spin: an infinite loop that never calls the hypervisor.
const counter = memory.data(8);

export function _start(): void {
  for (;;) store<u64>(counter, load<u64>(counter) + 1);
}
