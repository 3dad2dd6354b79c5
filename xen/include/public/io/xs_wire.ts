/**
 * The xenstore wire protocol's constants and ring page, following
 * `xen/include/public/io/xs_wire.h` and Xen's `misc/xenstore-ring.txt`.
 * GET_FEATURE..SET_QUOTA are upstream Xen's numbers (newer than 4.17's header).
 */
import { struct } from "../layout.js";

export const XS_CONTROL = 0;
export const XS_DEBUG = XS_CONTROL;
export const XS_DIRECTORY = 1;
export const XS_READ = 2;
export const XS_GET_PERMS = 3;
export const XS_WATCH = 4;
export const XS_UNWATCH = 5;
export const XS_TRANSACTION_START = 6;
export const XS_TRANSACTION_END = 7;
export const XS_INTRODUCE = 8;
export const XS_RELEASE = 9;
export const XS_GET_DOMAIN_PATH = 10;
export const XS_WRITE = 11;
export const XS_MKDIR = 12;
export const XS_RM = 13;
export const XS_SET_PERMS = 14;
export const XS_WATCH_EVENT = 15;
export const XS_ERROR = 16;
export const XS_IS_DOMAIN_INTRODUCED = 17;
export const XS_RESUME = 18;
export const XS_SET_TARGET = 19;
export const XS_RESET_WATCHES = XS_SET_TARGET + 2;
export const XS_DIRECTORY_PART = 22;
export const XS_GET_FEATURE = 23;
export const XS_SET_FEATURE = 24;
export const XS_GET_QUOTA = 25;
export const XS_SET_QUOTA = 26;
export const XS_INVALID = 0xffff;

/** Error names a reply may carry, in xs_wire.h's table order. */
export const XSD_ERRORS = [
  "EINVAL",
  "EACCES",
  "EEXIST",
  "EISDIR",
  "ENOENT",
  "ENOMEM",
  "ENOSPC",
  "EIO",
  "ENOTEMPTY",
  "ENOSYS",
  "EROFS",
  "EBUSY",
  "EAGAIN",
  "EISCONN",
  "E2BIG",
  "EPERM",
] as const;

/** struct xsd_sockmsg: the 16-byte header of every message. */
export const xsd_sockmsg = struct("xsd_sockmsg", [
  ["type", 4],
  ["req_id", 4],
  ["tx_id", 4],
  ["len", 4],
]);

export const XS_WATCH_PATH = 0;
export const XS_WATCH_TOKEN = 1;

export const XENSTORE_RING_SIZE = 1024;
export const XENSTORE_PAYLOAD_MAX = 4096;
export const XENSTORE_ABS_PATH_MAX = 3072;
export const XENSTORE_REL_PATH_MAX = 2048;
export const XENSTORE_SERVER_FEATURE_RECONNECTION = 1;
export const XENSTORE_SERVER_FEATURE_ERROR = 2;
export const XENSTORE_CONNECTED = 0;
export const XENSTORE_RECONNECT = 1;
export const XENSTORE_ERROR_NONE = 0;
export const XENSTORE_ERROR_COMM = 1;
export const XENSTORE_ERROR_RINGIDX = 2;
export const XENSTORE_ERROR_PROTO = 3;

/** struct xenstore_domain_interface: the shared xenstore ring page. */
export const xenstore_domain_interface = struct("xenstore_domain_interface", [
  ["req", XENSTORE_RING_SIZE, 1],
  ["rsp", XENSTORE_RING_SIZE, 1],
  ["req_cons", 4],
  ["req_prod", 4],
  ["rsp_cons", 4],
  ["rsp_prod", 4],
  ["server_features", 4],
  ["connection", 4],
  ["error", 4],
]);

/** Index into a xenstore ring from a free-running counter. */
export const MASK_XENSTORE_IDX = (idx: number): number => idx & (XENSTORE_RING_SIZE - 1);

/** Bytes of the xsd_sockmsg header. */
export const XSD_SOCKMSG_SIZE = 16;

/** One xenstore message: the header's fields and the payload. */
export interface XsMsg {
  type: number;
  reqId: number;
  txId: number;
  payload: Uint8Array;
}

/** Encodes `msg` as header plus payload (little-endian, as on every Xen host). */
export function encodeXsMsg(msg: XsMsg): Uint8Array {
  const out = new Uint8Array(XSD_SOCKMSG_SIZE + msg.payload.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, msg.type >>> 0, true);
  dv.setUint32(4, msg.reqId >>> 0, true);
  dv.setUint32(8, msg.txId >>> 0, true);
  dv.setUint32(12, msg.payload.length, true);
  out.set(msg.payload, XSD_SOCKMSG_SIZE);
  return out;
}

const EMPTY = new Uint8Array(0);

/** What the incremental parser gives: a message, or an error that ends the connection. */
export type XsParse = { msg: XsMsg } | { error: string };

/**
 * An incremental xenstore message parser: bytes in (any split), messages out.
 * A header announcing more than XENSTORE_PAYLOAD_MAX bytes is an error, after
 * which the stream cannot be resynchronised (xenstored drops the connection).
 * It owns no socket and no ring.
 */
export class XsParser {
  private buf = new Uint8Array(0);
  private failed = false;

  /** Adds `bytes` and returns every message (or the error) they complete. */
  push(bytes: Uint8Array): XsParse[] {
    if (this.failed) return [];
    let joined = bytes;
    if (this.buf.length > 0) {
      joined = new Uint8Array(this.buf.length + bytes.length);
      joined.set(this.buf);
      joined.set(bytes, this.buf.length);
    }
    const out: XsParse[] = [];
    let at = 0;
    while (joined.length - at >= XSD_SOCKMSG_SIZE) {
      const dv = new DataView(joined.buffer, joined.byteOffset + at, XSD_SOCKMSG_SIZE);
      const len = dv.getUint32(12, true);
      if (len > XENSTORE_PAYLOAD_MAX) {
        this.failed = true;
        out.push({
          error: `payload of ${len} bytes exceeds XENSTORE_PAYLOAD_MAX (${XENSTORE_PAYLOAD_MAX})`,
        });
        this.buf = new Uint8Array(0);
        return out;
      }
      if (joined.length - at < XSD_SOCKMSG_SIZE + len) break;
      out.push({
        msg: {
          type: dv.getUint32(0, true),
          reqId: dv.getUint32(4, true),
          txId: dv.getUint32(8, true),
          // A copy, and a plain Uint8Array even when fed Buffers (whose slice is a view).
          payload: new Uint8Array(
            joined.subarray(at + XSD_SOCKMSG_SIZE, at + XSD_SOCKMSG_SIZE + len),
          ),
        },
      });
      at += XSD_SOCKMSG_SIZE + len;
    }
    this.buf = at === joined.length ? EMPTY : new Uint8Array(joined.subarray(at));
    return out;
  }

  /** Bytes held waiting for the rest of a message. */
  get pending(): number {
    return this.buf.length;
  }
}

/** Splits a payload at NULs: "a\0b\0" → ["a", "b"]; a last part without NUL is kept. */
export function splitNul(payload: Uint8Array): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] === 0) {
      parts.push(payload.subarray(start, i));
      start = i + 1;
    }
  }
  if (start < payload.length) parts.push(payload.subarray(start));
  return parts;
}

/** Strings, each NUL-terminated, as one payload ("<foo>|*" in xenstore.txt). */
const utf8 = new TextEncoder();

export function joinNul(parts: ReadonlyArray<string | Uint8Array>): Uint8Array {
  const enc = utf8;
  const bufs = parts.map((p) => (typeof p === "string" ? enc.encode(p) : p));
  const out = new Uint8Array(bufs.reduce((n, b) => n + b.length + 1, 0));
  let at = 0;
  for (const b of bufs) {
    out.set(b, at);
    at += b.length + 1;
  }
  return out;
}
