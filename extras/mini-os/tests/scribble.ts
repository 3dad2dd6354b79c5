// scribble: a hostile two-vCPU guest. vCPU 1 writes random words over the
// whole of its domain's memory forever: the special pages, vCPU 0's Asyncify
// save area while vCPU 0 is descheduled, everything. vCPU 0 computes forever.
import { HYPERVISOR_vcpu_op, VCPUOP_up, nr_pages } from "../lib/index";

let state: u32 = 0x12345678;

export function _start(): void {
  HYPERVISOR_vcpu_op(VCPUOP_up, 1, 0);
  let x: u32 = 1;
  for (;;) x = x * 1664525 + 1013904223;
}

export function _start_vcpu(id: u32): void {
  const bytes = <u32>(nr_pages() * 4096);
  for (;;) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    store<u32>((state % bytes) & ~3, state);
  }
}
