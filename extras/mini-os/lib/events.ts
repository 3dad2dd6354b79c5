// Event channels (mini-os events.c): binding VIRQs, IPIs and interdomain
// channels, notifying, masking, and the upcall that hands each pending port
// to its handler. Both of Xen's ABIs: 2-level (the default) and FIFO
// (init_events_fifo), whose queues are consumed as Linux's events_fifo.c does.
import {
  EVTCHNOP_bind_virq,
  EVTCHNOP_bind_ipi,
  EVTCHNOP_bind_vcpu,
  EVTCHNOP_bind_interdomain,
  EVTCHNOP_alloc_unbound,
  EVTCHNOP_send,
  EVTCHNOP_unmask,
  EVTCHNOP_close,
  EVTCHNOP_init_control,
  EVTCHNOP_expand_array,
  EVTCHNOP_set_priority,
  EVTCHNOP_status,
  EVTCHN_FIFO_PENDING,
  EVTCHN_FIFO_MASKED,
  EVTCHN_FIFO_LINKED,
  EVTCHN_FIFO_LINK_MASK,
  EVTCHN_FIFO_MAX_QUEUES,
  EVTCHN_FIFO_CB_HEAD_OFF,
  DOMID_SELF,
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
const arg = memory.data(32);

// FIFO: one control block (vCPU 0) and one page of event words (1,024 ports).
const fifo_cb = memory.data(4096, 4096);
const fifo_array = memory.data(4096, 4096);
const fifo_heads = memory.data(EVTCHN_FIFO_MAX_QUEUES * 4);
let fifo = false;

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

/** A port on which this domain's vCPUs can interrupt vCPU `vcpu`; or a negative errno. */
export function bind_ipi(vcpu: u32): i32 {
  store<u32>(arg, vcpu);
  const rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_ipi, arg);
  return rc < 0 ? rc : <i32>load<u32>(arg + 4);
}

/** Moves `port`'s notifications to vCPU `vcpu`. */
export function bind_vcpu(port: u32, vcpu: u32): i32 {
  store<u32>(arg, port);
  store<u32>(arg + 4, vcpu);
  return HYPERVISOR_event_channel_op(EVTCHNOP_bind_vcpu, arg);
}

/** A new port that domain `remote` may bind to (mini-os evtchn_alloc_unbound); or a negative errno. */
export function evtchn_alloc_unbound(remote: u32): i32 {
  store<u16>(arg, <u16>DOMID_SELF);
  store<u16>(arg + 2, <u16>remote);
  const rc = HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, arg);
  return rc < 0 ? rc : <i32>load<u32>(arg + 4);
}

/** Connects a new local port to `remote_port` of domain `remote`; returns it or a negative errno. */
export function evtchn_bind_interdomain(remote: u32, remote_port: u32): i32 {
  store<u16>(arg, <u16>remote);
  store<u32>(arg + 4, remote_port);
  const rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_interdomain, arg);
  return rc < 0 ? rc : <i32>load<u32>(arg + 8);
}

/** Sends an event on `port` (mini-os notify_remote_via_evtchn). */
export function notify_remote_via_evtchn(port: u32): i32 {
  store<u32>(arg, port);
  return HYPERVISOR_event_channel_op(EVTCHNOP_send, arg);
}

/** The state of this domain's `port` (EVTCHNSTAT_*), or a negative errno. */
export function evtchn_status(port: u32): i32 {
  store<u16>(arg, <u16>DOMID_SELF);
  store<u32>(arg + 4, port);
  const rc = HYPERVISOR_event_channel_op(EVTCHNOP_status, arg);
  return rc < 0 ? rc : <i32>load<u32>(arg + 8);
}

/** Sets `port`'s priority, 0 (highest) to 15 (FIFO only). */
export function evtchn_set_priority(port: u32, priority: u32): i32 {
  store<u32>(arg, port);
  store<u32>(arg + 4, priority);
  return HYPERVISOR_event_channel_op(EVTCHNOP_set_priority, arg);
}

/** Unmasks `port` (re-raising it if pending). */
export function unmask_evtchn(port: u32): i32 {
  if (fifo) atomic.and<u32>(fifo_array + port * 4, ~((<u32>1) << EVTCHN_FIFO_MASKED));
  store<u32>(arg, port);
  return HYPERVISOR_event_channel_op(EVTCHNOP_unmask, arg);
}

/** Masks `port`: its events stay pending until it is unmasked. */
export function mask_evtchn(port: u32): void {
  if (fifo) atomic.or<u32>(fifo_array + port * 4, (<u32>1) << EVTCHN_FIFO_MASKED);
  else {
    const off = (port >> 5) * 4;
    atomic.or<u32>(shared_info() + SHARED_INFO_MASK_OFF + off, (<u32>1) << (port & 31));
  }
}

/** Closes `port`. */
export function close_evtchn(port: u32): i32 {
  if (port < MAX_PORTS) store<u32>(handlers + port * 4, 0);
  store<u32>(arg, port);
  return HYPERVISOR_event_channel_op(EVTCHNOP_close, arg);
}

/**
 * Switches this domain to the FIFO ABI (vCPU 0's control block and one page
 * of event words, enough for MAX_PORTS). Returns 0 or a negative errno.
 */
export function init_events_fifo(): i32 {
  store<u64>(arg, <u64>(fifo_cb >> 12));
  store<u32>(arg + 8, 0);
  store<u32>(arg + 12, 0);
  let rc = HYPERVISOR_event_channel_op(EVTCHNOP_init_control, arg);
  if (rc < 0) return rc;
  fifo = true;
  store<u64>(arg, <u64>(fifo_array >> 12));
  rc = HYPERVISOR_event_channel_op(EVTCHNOP_expand_array, arg);
  return rc;
}

/**
 * After a resume in a new domain: none of the old domain's ports exist, so
 * no handler stays, and the counts start again. The new domain starts with
 * the 2-level ABI: a guest that used FIFO clears its control block, event
 * words and queue heads and sets FIFO up again (as Linux's
 * evtchn_fifo_resume does), before any port is bound. False when the
 * hypervisor refuses that.
 */
export function events_resume(): bool {
  memory.fill(handlers, 0, MAX_PORTS * 4);
  memory.fill(fired, 0, MAX_PORTS * 4);
  if (!fifo) return true;
  fifo = false;
  memory.fill(fifo_cb, 0, 4096);
  memory.fill(fifo_array, 0, 4096);
  memory.fill(fifo_heads, 0, EVTCHN_FIFO_MAX_QUEUES * 4);
  return init_events_fifo() == 0;
}

/** True once init_events_fifo succeeded. */
export function events_fifo(): bool {
  return fifo;
}

/** Runs `fn(port)` from the upcall whenever `port` fires. */
export function set_handler(port: u32, fn: (port: u32) => void): void {
  if (port < MAX_PORTS) store<u32>(handlers + port * 4, changetype<u32>(fn));
}

/** How many times `port` has fired since boot. */
export function fire_count(port: u32): u32 {
  return port < MAX_PORTS ? load<u32>(fired + port * 4) : 0;
}

/** Events handed to their handlers so far, all ports together (block() looks at it). */
export function events_delivered(): u32 {
  return delivered;
}

/** Masks event upcalls on `vcpu` (mini-os local_irq_disable): events stay pending. */
export function local_irq_disable(vcpu: u32): void {
  store<u8>(vcpu_info(vcpu) + VCPU_INFO_UPCALL_MASK_OFF, 1);
}

/** Enables event upcalls on `vcpu` (mini-os local_irq_enable). */
export function local_irq_enable(vcpu: u32): void {
  store<u8>(vcpu_info(vcpu) + VCPU_INFO_UPCALL_MASK_OFF, 0);
}

let delivered: u32 = 0;

function dispatch(port: u32): void {
  if (port >= MAX_PORTS) return;
  delivered++;
  store<u32>(fired + port * 4, load<u32>(fired + port * 4) + 1);
  const fn = load<u32>(handlers + port * 4);
  if (fn != 0) changetype<(port: u32) => void>(fn)(port);
}

/**
 * The upcall (exported by each kernel as `hypervisor_callback`): clears the
 * upcall flag, then hands every pending, unmasked port to its handler.
 */
export function do_hypervisor_callback(vcpu: u32): void {
  store<u8>(vcpu_info(vcpu) + VCPU_INFO_UPCALL_PENDING_OFF, 0);
  if (fifo) consume_fifo();
  else consume_2l(vcpu);
}

// 2-level: walk the selector, then each selected pending word.
function consume_2l(vcpu: u32): void {
  const vi = vcpu_info(vcpu);
  const si = shared_info();
  // Each 64-bit word is handled as two 32-bit halves (atomics on i32).
  for (let half: u32 = 0; half < 2; half++) {
    let sel = atomic.xchg<u32>(vi + VCPU_INFO_PENDING_SEL_OFF + half * 4, 0);
    while (sel != 0) {
      const bit = ctz<u32>(sel);
      sel &= sel - 1;
      const word = half * 32 + bit;
      for (let h: u32 = 0; h < 2; h++) {
        const off = word * 8 + h * 4;
        let bits =
          atomic.load<u32>(si + SHARED_INFO_PENDING_OFF + off) &
          ~atomic.load<u32>(si + SHARED_INFO_MASK_OFF + off);
        while (bits != 0) {
          const b = ctz<u32>(bits);
          bits &= bits - 1;
          atomic.and<u32>(si + SHARED_INFO_PENDING_OFF + off, ~((<u32>1) << b));
          dispatch(word * 64 + h * 32 + b);
        }
      }
    }
  }
}

// FIFO: take the READY word, then consume each ready queue from its head,
// highest priority (0) first, unlinking each event as it goes.
function consume_fifo(): void {
  let ready = atomic.xchg<u32>(fifo_cb, 0);
  while (ready != 0) {
    const q = ctz<u32>(ready);
    let port = load<u32>(fifo_heads + q * 4);
    if (port == 0) port = atomic.load<u32>(fifo_cb + EVTCHN_FIFO_CB_HEAD_OFF + q * 4);
    if (port == 0 || port >= MAX_PORTS) {
      ready &= ~((<u32>1) << q);
      store<u32>(fifo_heads + q * 4, 0);
      continue;
    }
    const w = fifo_array + port * 4;
    // Clear LINKED and the link together, keeping the next port.
    let old = atomic.load<u32>(w);
    let next: u32;
    while (true) {
      next = old & (<u32>EVTCHN_FIFO_LINK_MASK);
      const nw = old & ~(((<u32>1) << EVTCHN_FIFO_LINKED) | (<u32>EVTCHN_FIFO_LINK_MASK));
      const seen = atomic.cmpxchg<u32>(w, old, nw);
      if (seen == old) break;
      old = seen;
    }
    if (next == 0) ready &= ~((<u32>1) << q);
    store<u32>(fifo_heads + q * 4, next);
    const P = (<u32>1) << EVTCHN_FIFO_PENDING;
    const M = (<u32>1) << EVTCHN_FIFO_MASKED;
    const cur = atomic.load<u32>(w);
    if ((cur & P) != 0 && (cur & M) == 0) {
      atomic.and<u32>(w, ~P);
      dispatch(port);
    }
  }
}
