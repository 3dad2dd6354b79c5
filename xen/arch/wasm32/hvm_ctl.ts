/**
 * The words an HVM vCPU's thread shares with the hypervisor (never with the
 * guest): its run state, the pause request, and its counters. One
 * SharedArrayBuffer per vCPU; Int32 slots first, Float64 slots from byte 64.
 */

/** Int32 slots. */
export const CTL_STATE = 0;
/** The pause count the thread must honour (> 0: stop at the next safe point). */
export const CTL_PAUSE = 1;
/** Bumped when the hypervisor posted a message to the thread (it drains them synchronously). */
export const CTL_MSG = 2;
/** The port of the ioreq in flight, or -1. */
export const CTL_PORT = 3;
/** Ioreqs sent since boot. */
export const CTL_IOREQS = 4;
/** Set by the vCPU's loop check when its budget ran out: a check happened. */
export const CTL_CHECKS = 5;

/** proc_exit's status, and whether the program called it (set before its ioreq goes out). */
export const CTL_EXIT_CODE = 6;
export const CTL_EXITED = 7;

/**
 * The hypercall slot of a program with PV drivers: the thread writes the
 * number and arguments, sets CTL_HC_STATE to HC_REQUEST and waits; the
 * hypervisor's main thread runs the call, writes CTL_HC_RC and sets
 * HC_DONE; the thread sets it back to HC_IDLE.
 */
export const CTL_HC_STATE = 8;
export const CTL_HC_OP = 9;
/** Arguments a1..a5: CTL_HC_ARGS + 0..4. */
export const CTL_HC_ARGS = 10;
export const CTL_HC_RC = 15;
export const HC_IDLE = 0;
export const HC_REQUEST = 1;
export const HC_DONE = 2;

/**
 * A save's request (Int32 slot 24, past the Float64 slots): SAVE_UNWIND asks
 * a saveable program's thread to unwind its stack at its next safe point
 * (a WASI call's entry, a loop check) and post it; SAVE_REWIND, once it
 * has, to rewind it and go on (xl save -c). Woken through CTL_PAUSE.
 */
export const CTL_SAVE = 24;
export const SAVE_NONE = 0;
export const SAVE_UNWIND = 1;
export const SAVE_REWIND = 2;

/** Float64 slots (index into a Float64Array over the same buffer). */
export const CTL_F64_BASE = 8;
/** Milliseconds spent running guest code (not waiting for ioreqs or paused). */
export const CTL_RUN_MS = CTL_F64_BASE + 0;
/** When guest code last started running (ms since the epoch, performance.timeOrigin-based). */
export const CTL_RESUMED_AT = CTL_F64_BASE + 1;

export const CTL_BYTES = 128;

/** CTL_STATE values. */
export const HVM_STARTING = 0;
export const HVM_RUNNING = 1;
/** Waiting for a device model's answer to an ioreq. */
export const HVM_IOREQ_WAIT = 2;
export const HVM_PAUSED = 3;
/** The program returned or called proc_exit, or trapped. */
export const HVM_DONE = 4;
/** In a hypercall: the hypervisor has it, or holds it (SCHEDOP_block, SCHEDOP_poll). */
export const HVM_HYPERCALL = 5;
/** Its stack unwound into data for a save: it runs again only when rewound (or restored elsewhere). */
export const HVM_UNWOUND = 6;

/** Exports of a saveable program's mutable globals (hvm_saveable.ts): prefix + the global's index. */
export const HVM_GLOBAL_PREFIX = "__tsxen_hvm_g";
/** The export holding how many mutable globals the program has (all must be exported to save it). */
export const HVM_GLOBAL_COUNT = "__tsxen_hvm_count";
/** Largest program made saveable (hvm_saveable.ts): Asyncify's time grows faster than the program. */
export const HVM_SAVEABLE_MAX_BYTES = 1024 * 1024;
/** Most bytes of a program's unwound stack (a save refuses a deeper one). */
export const HVM_STACK_AREA = 4 * 1024 * 1024;
