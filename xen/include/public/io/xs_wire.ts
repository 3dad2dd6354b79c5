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
