/**
 * I/O requests from an HVM vCPU to a device model, following Xen's
 * `xen/include/public/hvm/ioreq.h`: the ioreq_t record, its states and
 * types, and the shared ioreq page (one record per vCPU). On wasm32 the
 * "I/O instructions" are a program's WASI imports; `wasm32_io.ts` says how
 * one becomes an ioreq.
 */
import { struct } from "../layout.js";

export const IOREQ_READ = 1;
export const IOREQ_WRITE = 0;

/** ioreq_t.state: the slot is free, posted, being handled, answered. */
export const STATE_IOREQ_NONE = 0;
export const STATE_IOREQ_READY = 1;
export const STATE_IOREQ_INPROCESS = 2;
export const STATE_IORESP_READY = 3;

export const IOREQ_TYPE_PIO = 0;
export const IOREQ_TYPE_COPY = 1;
export const IOREQ_TYPE_PCI_CONFIG = 2;
export const IOREQ_TYPE_TIMEOFFSET = 7;
export const IOREQ_TYPE_INVALIDATE = 8;

/**
 * struct ioreq. The byte `flags` holds the C bit-fields state:4,
 * data_is_ptr:1, dir:1, df:1 (low bit first, as GCC lays them out on a
 * little-endian target).
 */
export const ioreq = struct("ioreq", [
  ["addr", 8],
  ["data", 8],
  ["count", 4],
  ["size", 4],
  ["vp_eport", 4],
  ["_pad0", 2],
  ["flags", 1],
  ["type", 1],
]);

/** Bits of ioreq.flags. */
export const IOREQ_FLAG_STATE_MASK = 0x0f;
export const IOREQ_FLAG_DATA_IS_PTR = 0x10;
export const IOREQ_FLAG_DIR_READ = 0x20;
export const IOREQ_FLAG_DF = 0x40;

/** Size of one ioreq_t, and of buf_ioreq_t's slot count (IOREQ_BUFFER_SLOT_NUM). */
export const IOREQ_BUFFER_SLOT_NUM = 511;
