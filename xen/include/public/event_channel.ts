/**
 * Event channel operations, following `xen/include/public/event_channel.h`:
 * sub-op numbers, port states, the FIFO ABI's event-word bits, and the wasm32
 * layout of every argument struct (checked in layout.test.ts).
 */
import { struct } from "./layout.js";

export const EVTCHNOP_bind_interdomain = 0;
export const EVTCHNOP_bind_virq = 1;
export const EVTCHNOP_bind_pirq = 2;
export const EVTCHNOP_close = 3;
export const EVTCHNOP_send = 4;
export const EVTCHNOP_status = 5;
export const EVTCHNOP_alloc_unbound = 6;
export const EVTCHNOP_bind_ipi = 7;
export const EVTCHNOP_bind_vcpu = 8;
export const EVTCHNOP_unmask = 9;
export const EVTCHNOP_reset = 10;
export const EVTCHNOP_init_control = 11;
export const EVTCHNOP_expand_array = 12;
export const EVTCHNOP_set_priority = 13;
export const EVTCHNOP_reset_cont = 14;

export const EVTCHNSTAT_closed = 0;
export const EVTCHNSTAT_unbound = 1;
export const EVTCHNSTAT_interdomain = 2;
export const EVTCHNSTAT_pirq = 3;
export const EVTCHNSTAT_virq = 4;
export const EVTCHNSTAT_ipi = 5;

/** 2-level ABI: 64 selector bits × 64 pending bits with a 64-bit xen_ulong_t. */
export const EVTCHN_2L_NR_CHANNELS = 8 * 8 * 64;

export const EVTCHN_FIFO_PRIORITY_MAX = 0;
export const EVTCHN_FIFO_PRIORITY_DEFAULT = 7;
export const EVTCHN_FIFO_PRIORITY_MIN = 15;
export const EVTCHN_FIFO_MAX_QUEUES = EVTCHN_FIFO_PRIORITY_MIN + 1;
export const EVTCHN_FIFO_PENDING = 31;
export const EVTCHN_FIFO_MASKED = 30;
export const EVTCHN_FIFO_LINKED = 29;
export const EVTCHN_FIFO_BUSY = 28;
export const EVTCHN_FIFO_LINK_BITS = 17;
export const EVTCHN_FIFO_LINK_MASK = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
export const EVTCHN_FIFO_NR_CHANNELS = 1 << EVTCHN_FIFO_LINK_BITS;

/*
 * Argument structs of event_channel_op on wasm32. Every field is naturally
 * aligned, so the layouts are the same as on x86-64 and Arm.
 */

/** struct evtchn_alloc_unbound: dom, remote_dom in; port out. */
export const evtchn_alloc_unbound = struct("evtchn_alloc_unbound", [
  ["dom", 2],
  ["remote_dom", 2],
  ["port", 4],
]);

/** struct evtchn_bind_interdomain: remote_dom, remote_port in; local_port out. */
export const evtchn_bind_interdomain = struct("evtchn_bind_interdomain", [
  ["remote_dom", 2],
  ["remote_port", 4],
  ["local_port", 4],
]);

/** struct evtchn_bind_virq: virq, vcpu in; port out. */
export const evtchn_bind_virq = struct("evtchn_bind_virq", [
  ["virq", 4],
  ["vcpu", 4],
  ["port", 4],
]);

/** struct evtchn_bind_ipi: vcpu in; port out. */
export const evtchn_bind_ipi = struct("evtchn_bind_ipi", [
  ["vcpu", 4],
  ["port", 4],
]);

/** struct evtchn_close, evtchn_send and evtchn_unmask: one port. */
export const evtchn_port_arg = struct("evtchn_port_arg", [["port", 4]]);

/** struct evtchn_status: dom, port in; status, vcpu and the union out. */
export const evtchn_status = struct("evtchn_status", [
  ["dom", 2],
  ["port", 4],
  ["status", 4],
  ["vcpu", 4],
  /** u.unbound.dom, u.interdomain.dom, u.pirq or u.virq */
  ["u", 4],
  /** u.interdomain.port */
  ["u_port", 4],
]);

/** struct evtchn_bind_vcpu: port, vcpu. */
export const evtchn_bind_vcpu = struct("evtchn_bind_vcpu", [
  ["port", 4],
  ["vcpu", 4],
]);

/** struct evtchn_reset: dom. */
export const evtchn_reset = struct("evtchn_reset", [["dom", 2]]);

/** struct evtchn_init_control: control_gfn, offset, vcpu in; link_bits out. */
export const evtchn_init_control = struct("evtchn_init_control", [
  ["control_gfn", 8],
  ["offset", 4],
  ["vcpu", 4],
  ["link_bits", 1],
  ["_pad", 7, 1],
]);

/** struct evtchn_expand_array: the gfn of one more page of event words. */
export const evtchn_expand_array = struct("evtchn_expand_array", [["array_gfn", 8]]);

/** struct evtchn_set_priority: port, priority. */
export const evtchn_set_priority = struct("evtchn_set_priority", [
  ["port", 4],
  ["priority", 4],
]);

/** struct evtchn_fifo_control_block: the READY bits and one head per queue. */
export const evtchn_fifo_control_block = struct("evtchn_fifo_control_block", [
  ["ready", 4],
  ["_rsvd", 4],
  ["head", 4 * EVTCHN_FIFO_MAX_QUEUES, 4],
]);
