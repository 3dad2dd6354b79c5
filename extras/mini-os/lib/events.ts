// Event channels, 2-level ABI (mini-os events.c): VIRQ binding, unmasking,
// and the upcall that demultiplexes pending ports to their handlers.
import {
  EVTCHNOP_bind_virq,
  EVTCHNOP_unmask,
  EVTCHNOP_close,
  VCPU_INFO_SIZE,
  VCPU_INFO_PENDING_SEL_OFF,
  VCPU_INFO_UPCALL_PENDING_OFF,
  VCPU_INFO_UPCALL_MASK_OFF,
  SHARED_INFO_PENDING_OFF,
  SHARED_INFO_MASK_OFF,
} from "./xen_abi";
import { HYPERVISOR_event_channel_op } from "./hypervisor";
import { shared_info } from "./kernel";

/** Ports this SDK dispatches (a fixed table: the SDK does not allocate). */
export const MAX_PORTS: u32 = 1024;
const handlers = memory.data(<i32>MAX_PORTS * 4);
const fired = memory.data(<i32>MAX_PORTS * 4);
const arg = memory.data(16);

/** Address of vCPU `vcpu`'s vcpu_info. */
export function vcpu_info(vcpu: u32): usize {
  return shared_info() + vcpu * VCPU_INFO_SIZE;
}

/** Binds `virq` on `vcpu` to a new port; returns the port, or a negative errno. */
export function bind_virq(virq: u32, vcpu: u32): i32 {
  store<u32>(arg, virq);
  store<u32>(arg + 4, vcpu);
  const rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_virq, arg);
  return rc < 0 ? rc : <i32>load<u32>(arg + 8);
}

/** Unmasks `port` (re-raising it if pending). */
export function unmask_evtchn(port: u32): i32 {
  store<u32>(arg, port);
  return HYPERVISOR_event_channel_op(EVTCHNOP_unmask, arg);
}

/** Closes `port`. */
export function close_evtchn(port: u32): i32 {
  store<u32>(arg, port);
  return HYPERVISOR_event_channel_op(EVTCHNOP_close, arg);
}

/** Runs `fn(port)` from the upcall whenever `port` fires. */
export function set_handler(port: u32, fn: (port: u32) => void): void {
  if (port < MAX_PORTS) store<u32>(handlers + port * 4, changetype<u32>(fn));
}

/** How many times `port` has fired since boot. */
export function fire_count(port: u32): u32 {
  return port < MAX_PORTS ? load<u32>(fired + port * 4) : 0;
}

/** Enables event upcalls on `vcpu` (mini-os local_irq_enable). */
export function local_irq_enable(vcpu: u32): void {
  store<u8>(vcpu_info(vcpu) + VCPU_INFO_UPCALL_MASK_OFF, 0);
}

/**
 * The upcall (exported by each kernel as `hypervisor_callback`): clears the
 * upcall flag, then walks the selector and pending words, clearing and
 * dispatching each pending, unmasked port.
 */
export function do_hypervisor_callback(vcpu: u32): void {
  const vi = vcpu_info(vcpu);
  const si = shared_info();
  store<u8>(vi + VCPU_INFO_UPCALL_PENDING_OFF, 0);
  // Each 64-bit word is handled as two 32-bit halves (atomics on i32).
  for (let half: u32 = 0; half < 2; half++) {
    let sel = atomic.xchg<u32>(vi + VCPU_INFO_PENDING_SEL_OFF + half * 4, 0);
    while (sel != 0) {
      const bit = ctz<u32>(sel);
      sel &= sel - 1;
      const word = half * 32 + bit;
      for (let h: u32 = 0; h < 2; h++) {
        const off = word * 8 + h * 4;
        const pending =
          atomic.load<u32>(si + SHARED_INFO_PENDING_OFF + off) &
          ~atomic.load<u32>(si + SHARED_INFO_MASK_OFF + off);
        let bits = pending;
        while (bits != 0) {
          const b = ctz<u32>(bits);
          bits &= bits - 1;
          const port = word * 64 + h * 32 + b;
          atomic.and<u32>(si + SHARED_INFO_PENDING_OFF + off, ~((<u32>1) << b));
          if (port < MAX_PORTS) {
            store<u32>(fired + port * 4, load<u32>(fired + port * 4) + 1);
            const fn = load<u32>(handlers + port * 4);
            if (fn != 0) changetype<(port: u32) => void>(fn)(port);
          }
        }
      }
    }
  }
}
