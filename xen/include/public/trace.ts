/**
 * Trace buffers (Xen 4.17's `xen/include/public/trace.h`): the event
 * classes and ids the hypervisor records, the record header's bit-fields,
 * and the buffer's shared layouts (`t_buf`, `t_info`), which xentrace reads
 * and xentrace_format and xenalyze decode. tsxen's own events (wasm32
 * has no Xen id for them) are at the end, in ids Xen leaves unused;
 * docs/tracing.md lists every event and its data.
 */
import { struct } from "./layout.js";

/** A record carries at most 7 extra 32-bit words; their count sits at bit 28 of the header. */
export const TRACE_EXTRA_MAX = 7;
export const TRACE_EXTRA_SHIFT = 28;
export const TRC_CLS_SHIFT = 16;
/** The header's top bit: a 64-bit cycle count follows it. */
export const TRC_HD_CYCLE_FLAG = 0x80000000;

export const TRC_GEN = 0x0001f000;
export const TRC_SCHED = 0x0002f000;
export const TRC_DOM0OP = 0x0004f000;
export const TRC_HVM = 0x0008f000;
export const TRC_MEM = 0x0010f000;
export const TRC_PV = 0x0020f000;
export const TRC_SHADOW = 0x0040f000;
export const TRC_HW = 0x0080f000;
export const TRC_GUEST = 0x0800f000;
export const TRC_ALL = 0x0ffff000;

export const TRC_SUBCLS_SHIFT = 12;
export const TRC_SCHED_MIN = 0x00021000;
export const TRC_SCHED_CLASS = 0x00022000;
export const TRC_SCHED_VERBOSE = 0x00028000;
export const TRC_DOM0_DOMOPS = 0x00041000;
export const TRC_HVM_ENTRYEXIT = 0x00081000;
export const TRC_HVM_HANDLER = 0x00082000;
export const TRC_PV_ENTRY = 0x00201000;
export const TRC_PV_SUBCALL = 0x00202000;

export const TRC_LOST_RECORDS = TRC_GEN + 1;
export const TRC_TRACE_WRAP_BUFFER = TRC_GEN + 2;
export const TRC_TRACE_CPU_CHANGE = TRC_GEN + 3;

/** Runstate change: the old runstate in bits 8..9 of the event, the new in bits 4..5. */
export const TRC_SCHED_RUNSTATE_CHANGE = TRC_SCHED_MIN + 1;
export const TRC_SCHED_CONTINUE_RUNNING = TRC_SCHED_MIN + 2;
export const TRC_SCHED_DOM_ADD = TRC_SCHED_VERBOSE + 1;
export const TRC_SCHED_DOM_REM = TRC_SCHED_VERBOSE + 2;
export const TRC_SCHED_SLEEP = TRC_SCHED_VERBOSE + 3;
export const TRC_SCHED_WAKE = TRC_SCHED_VERBOSE + 4;
export const TRC_SCHED_YIELD = TRC_SCHED_VERBOSE + 5;
export const TRC_SCHED_BLOCK = TRC_SCHED_VERBOSE + 6;
export const TRC_SCHED_SHUTDOWN = TRC_SCHED_VERBOSE + 7;
export const TRC_SCHED_SWITCH = TRC_SCHED_VERBOSE + 10;

export const TRC_DOM0_DOM_ADD = TRC_DOM0_DOMOPS + 1;
export const TRC_DOM0_DOM_REM = TRC_DOM0_DOMOPS + 2;

export const TRC_MEM_PAGE_GRANT_MAP = TRC_MEM + 1;
export const TRC_MEM_PAGE_GRANT_UNMAP = TRC_MEM + 2;
export const TRC_MEM_SET_P2M_ENTRY = TRC_MEM + 4;
export const TRC_MEM_DECREASE_RESERVATION = TRC_MEM + 5;

export const TRC_PV_HYPERCALL_V2 = TRC_PV_ENTRY + 13;
export const TRC_PV_HYPERCALL_SUBCALL = TRC_PV_SUBCALL + 14;
/** In a V2 hypercall record's first word: argument i follows as 32 bits. */
export const TRC_PV_HYPERCALL_V2_ARG_32 = (i: number): number => (0x1 << (20 + 2 * i)) >>> 0;

export const TRC_HVM_VMENTRY = TRC_HVM_ENTRYEXIT + 0x01;
export const TRC_HVM_VMEXIT = TRC_HVM_ENTRYEXIT + 0x02;
export const TRC_HVM_IOPORT_READ = TRC_HVM_HANDLER + 0x16;
export const TRC_HVM_IOPORT_WRITE = TRC_HVM_HANDLER + 0x216;

/**
 * tsxen's events (wasm32; no Xen id exists for them): a grant copy in the
 * memory class beside Xen's grant map and unmap, and the event channel's
 * send and upcall in a PV subclass Xen does not use.
 */
export const TRC_MEM_PAGE_GRANT_COPY = TRC_MEM + 0x20;
export const TRC_PV_EVTCHN = 0x00204000;
export const TRC_PV_EVTCHN_SEND = TRC_PV_EVTCHN + 1;
export const TRC_PV_EVTCHN_UPCALL = TRC_PV_EVTCHN + 2;

/** struct t_buf: the consumer's and producer's offsets, modulo twice the data size. */
export const t_buf = struct("t_buf", [
  ["cons", 4],
  ["prod", 4],
]);

/** struct t_info: pages per buffer, then each CPU's offset (in 32-bit words) of its mfn list. */
export const t_info = struct("t_info", [["tbuf_size", 2]]);
