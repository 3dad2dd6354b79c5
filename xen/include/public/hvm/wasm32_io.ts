/**
 * wasm32's I/O space: how an unmodified WASI preview1 program's imports
 * become ioreqs (`ioreq.ts`, Xen's `public/hvm/ioreq.h`).
 *
 * On x86 an HVM guest does I/O with IN/OUT and MMIO instructions that trap
 * to Xen, which hands them to a device model as ioreqs on port or memory
 * addresses. On wasm32 an HVM guest is a WASI preview1 command module; its
 * I/O instructions are its `wasi_snapshot_preview1` imports. Each of the 46
 * preview1 functions is one port of the wasm32 I/O space:
 *
 *   ioreq.type     IOREQ_TYPE_PIO
 *   ioreq.addr     WASI_PORT_BASE + the function's number below
 *   ioreq.size     8: each argument is a 64-bit slot
 *   ioreq.count    how many arguments
 *   ioreq.dir      IOREQ_WRITE on the way out; the device model sets
 *                  IOREQ_READ with its answer
 *   ioreq.data     on the answer: the WASI errno the call returns
 *
 * The arguments travel in the ioreq page itself, after the ioreq_t array:
 * vCPU n's slots are the 64-bit words at WASM32_IOREQ_ARGS + n * 128. The
 * buffers they point at stay in guest memory, where the device model reads
 * and writes them through its foreign mapping, as QEMU reaches an x86
 * guest's DMA buffers.
 *
 * Notification: a vCPU thread and a device model thread are two host
 * threads, so the ioreq event channel's "send" is a futex on the page
 * (WASM32_IOREQ_DOORBELL, bumped by each new request, woken with
 * Atomics.notify) and the answer's is a futex on the answering vCPU's
 * ioreq_t word that holds its state. vp_eport still names the vCPU's
 * event channel, bound to the device model's domain as in Xen.
 *
 * A device model claims ports with XEN_DMOP_map_io_range_to_ioreq_server
 * (type XEN_DMOP_IO_RANGE_PORT); a call to a port no enabled server claims
 * returns WASI's ENOSYS, as unclaimed x86 ports read as all ones.
 *
 * Fast descriptors (the data path handed to the vCPU, as vhost hands a
 * device's data path from QEMU to the kernel): the device model may publish
 * an open regular file of a share in the page's fast-descriptor table; the
 * vCPU then does that descriptor's fd_read, fd_write, fd_pread and fd_pwrite
 * itself, with the host descriptor the device model opened, and sends no
 * ioreq. Everything else about the file (opening it, seeking, closing, its
 * flags) stays the device model's, which changes the table only while it
 * answers an ioreq, when the vCPU is waiting. Entry n (WASI fd n < 64) is 16
 * bytes at WASM32_IOREQ_FASTFD + 16 n: int32 host descriptor + 1 (0: none),
 * int32 FASTFD_* flags, float64 file position.
 *
 * Not I/O: the clocks, random_get and sched_yield are answered by the vCPU
 * itself (the counterparts of RDTSC, RDRAND and PAUSE, which never leave the
 * CPU), and proc_exit is I/O to the device model, which shuts the domain down.
 */

/** First port of the WASI I/O space. */
export const WASI_PORT_BASE = 0x1000;

/** Byte offset of the argument slots in the ioreq page. */
export const WASM32_IOREQ_ARGS = 0x800;
/** Bytes of argument slots per vCPU (16 slots of 8 bytes). */
export const WASM32_IOREQ_ARGS_PER_VCPU = 128;
/**
 * The answer (ioreq_t.data) of a call the device model withdrew without
 * doing any of it: it was waiting (a sleep, a read of an idle serial port)
 * when the domain was being saved. The vCPU makes the call again, in this
 * domain or in the restored one. No WASI errno is this large.
 */
export const WASM32_IOREQ_RETRY = 0xffffffff;

/** Byte offset of the doorbell word in the ioreq page (an int32 bumped per request). */
export const WASM32_IOREQ_DOORBELL = 0x7f0;
/** Byte offset and size of the fast-descriptor table in the ioreq page. */
export const WASM32_IOREQ_FASTFD = 0x200;
export const WASM32_FASTFD_ENTRIES = 64;
export const WASM32_FASTFD_ENTRY = 16;
/** Fast-descriptor flags. */
export const FASTFD_WRITE = 1;
export const FASTFD_APPEND = 2;

/** Most vCPUs one ioreq page serves on wasm32 (the argument area's size). */
export const WASM32_IOREQ_MAX_VCPUS = 16;

/** Value types of a WASI import's parameters and result. */
export type WasmVal = "i32" | "i64";

/** One preview1 function: its port number, parameters and result (none for proc_exit). */
export interface WasiFunction {
  readonly port: number;
  readonly params: readonly WasmVal[];
  readonly result: WasmVal | undefined;
}

const I = "i32" as const;
const L = "i64" as const;

/** Every wasi_snapshot_preview1 function, in the order of the preview1 witx. */
const LIST: ReadonlyArray<readonly [string, readonly WasmVal[], WasmVal | undefined]> = [
  ["args_get", [I, I], I],
  ["args_sizes_get", [I, I], I],
  ["environ_get", [I, I], I],
  ["environ_sizes_get", [I, I], I],
  ["clock_res_get", [I, I], I],
  ["clock_time_get", [I, L, I], I],
  ["fd_advise", [I, L, L, I], I],
  ["fd_allocate", [I, L, L], I],
  ["fd_close", [I], I],
  ["fd_datasync", [I], I],
  ["fd_fdstat_get", [I, I], I],
  ["fd_fdstat_set_flags", [I, I], I],
  ["fd_fdstat_set_rights", [I, L, L], I],
  ["fd_filestat_get", [I, I], I],
  ["fd_filestat_set_size", [I, L], I],
  ["fd_filestat_set_times", [I, L, L, I], I],
  ["fd_pread", [I, I, I, L, I], I],
  ["fd_prestat_get", [I, I], I],
  ["fd_prestat_dir_name", [I, I, I], I],
  ["fd_pwrite", [I, I, I, L, I], I],
  ["fd_read", [I, I, I, I], I],
  ["fd_readdir", [I, I, I, L, I], I],
  ["fd_renumber", [I, I], I],
  ["fd_seek", [I, L, I, I], I],
  ["fd_sync", [I], I],
  ["fd_tell", [I, I], I],
  ["fd_write", [I, I, I, I], I],
  ["path_create_directory", [I, I, I], I],
  ["path_filestat_get", [I, I, I, I, I], I],
  ["path_filestat_set_times", [I, I, I, I, L, L, I], I],
  ["path_link", [I, I, I, I, I, I, I], I],
  ["path_open", [I, I, I, I, I, L, L, I, I], I],
  ["path_readlink", [I, I, I, I, I, I], I],
  ["path_remove_directory", [I, I, I], I],
  ["path_rename", [I, I, I, I, I, I], I],
  ["path_symlink", [I, I, I, I, I], I],
  ["path_unlink_file", [I, I, I], I],
  ["poll_oneoff", [I, I, I, I], I],
  ["proc_exit", [I], undefined],
  ["proc_raise", [I], I],
  ["sched_yield", [], I],
  ["random_get", [I, I], I],
  ["sock_accept", [I, I, I], I],
  ["sock_recv", [I, I, I, I, I, I], I],
  ["sock_send", [I, I, I, I, I], I],
  ["sock_shutdown", [I, I], I],
];

/** The preview1 import module's name. */
export const WASI_MODULE = "wasi_snapshot_preview1";

/** The preview1 functions by name. */
export const WASI_FUNCTIONS: ReadonlyMap<string, WasiFunction> = new Map(
  LIST.map(([name, params, result], i) => [name, { port: i, params, result }]),
);

/** Function names by port number (port - WASI_PORT_BASE). */
export const WASI_PORT_NAMES: readonly string[] = LIST.map(([name]) => name);

/** How many ports the WASI I/O space has. */
export const WASI_NR_PORTS = LIST.length;

/** The preview1 functions the vCPU answers itself (no ioreq). */
export const WASI_CPU_LOCAL: ReadonlySet<string> = new Set([
  "clock_res_get",
  "clock_time_get",
  "random_get",
  "sched_yield",
]);
