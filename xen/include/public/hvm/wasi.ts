/**
 * The WASI preview1 ABI that an HVM program's I/O speaks (the
 * `wasi_snapshot_preview1` witx, as wasi-libc's `wasi/api.h` states it):
 * errno values, file types, flags, rights, and the layouts of the structs
 * that cross between the program and its device model. Facts of WASI's
 * specification, in tsxen's words; all little-endian, wasm32 alignment.
 */
import { struct } from "../layout.js";

/** errno */
export const WASI_ESUCCESS = 0;
export const WASI_E2BIG = 1;
export const WASI_EACCES = 2;
export const WASI_EAGAIN = 6;
export const WASI_EBADF = 8;
export const WASI_EBUSY = 10;
export const WASI_EEXIST = 20;
export const WASI_EFAULT = 21;
export const WASI_EFBIG = 22;
export const WASI_EILSEQ = 25;
export const WASI_EINTR = 27;
export const WASI_EINVAL = 28;
export const WASI_EIO = 29;
export const WASI_EISDIR = 31;
export const WASI_ELOOP = 32;
export const WASI_EMFILE = 33;
export const WASI_EMLINK = 34;
export const WASI_ENAMETOOLONG = 37;
export const WASI_ENFILE = 41;
export const WASI_ENODEV = 43;
export const WASI_ENOENT = 44;
export const WASI_ENOMEM = 48;
export const WASI_ENOSPC = 51;
export const WASI_ENOSYS = 52;
export const WASI_ENOTDIR = 54;
export const WASI_ENOTEMPTY = 55;
export const WASI_ENOTSOCK = 57;
export const WASI_ENOTSUP = 58;
export const WASI_ENXIO = 60;
export const WASI_EOVERFLOW = 61;
export const WASI_EPERM = 63;
export const WASI_EPIPE = 64;
export const WASI_EROFS = 69;
export const WASI_ESPIPE = 70;
export const WASI_ETXTBSY = 74;
export const WASI_EXDEV = 75;
export const WASI_ENOTCAPABLE = 76;

/** clockid */
export const WASI_CLOCK_REALTIME = 0;
export const WASI_CLOCK_MONOTONIC = 1;
export const WASI_CLOCK_PROCESS_CPUTIME_ID = 2;
export const WASI_CLOCK_THREAD_CPUTIME_ID = 3;

/** filetype */
export const WASI_FILETYPE_UNKNOWN = 0;
export const WASI_FILETYPE_BLOCK_DEVICE = 1;
export const WASI_FILETYPE_CHARACTER_DEVICE = 2;
export const WASI_FILETYPE_DIRECTORY = 3;
export const WASI_FILETYPE_REGULAR_FILE = 4;
export const WASI_FILETYPE_SOCKET_DGRAM = 5;
export const WASI_FILETYPE_SOCKET_STREAM = 6;
export const WASI_FILETYPE_SYMBOLIC_LINK = 7;

/** whence */
export const WASI_WHENCE_SET = 0;
export const WASI_WHENCE_CUR = 1;
export const WASI_WHENCE_END = 2;

/** fdflags */
export const WASI_FDFLAG_APPEND = 1;
export const WASI_FDFLAG_DSYNC = 2;
export const WASI_FDFLAG_NONBLOCK = 4;
export const WASI_FDFLAG_RSYNC = 8;
export const WASI_FDFLAG_SYNC = 16;

/** oflags */
export const WASI_O_CREAT = 1;
export const WASI_O_DIRECTORY = 2;
export const WASI_O_EXCL = 4;
export const WASI_O_TRUNC = 8;

/** lookupflags */
export const WASI_LOOKUP_SYMLINK_FOLLOW = 1;

/** fstflags */
export const WASI_FSTFLAG_ATIM = 1;
export const WASI_FSTFLAG_ATIM_NOW = 2;
export const WASI_FSTFLAG_MTIM = 4;
export const WASI_FSTFLAG_MTIM_NOW = 8;

/** eventtype */
export const WASI_EVENTTYPE_CLOCK = 0;
export const WASI_EVENTTYPE_FD_READ = 1;
export const WASI_EVENTTYPE_FD_WRITE = 2;

/** subclockflags */
export const WASI_SUBSCRIPTION_CLOCK_ABSTIME = 1;

/** preopentype */
export const WASI_PREOPENTYPE_DIR = 0;

/** rights (bit numbers of the 64-bit rights set) */
export const WASI_RIGHT_FD_DATASYNC = 0;
export const WASI_RIGHT_FD_READ = 1;
export const WASI_RIGHT_FD_SEEK = 2;
export const WASI_RIGHT_FD_FDSTAT_SET_FLAGS = 3;
export const WASI_RIGHT_FD_SYNC = 4;
export const WASI_RIGHT_FD_TELL = 5;
export const WASI_RIGHT_FD_WRITE = 6;
export const WASI_RIGHT_FD_ALLOCATE = 8;
export const WASI_RIGHT_PATH_OPEN = 13;
export const WASI_RIGHT_FD_READDIR = 14;
export const WASI_RIGHT_FD_FILESTAT_SET_SIZE = 22;
/** Every right preview1 defines (bits 0..29). */
export const WASI_RIGHTS_ALL = (1n << 30n) - 1n;

/** struct ciovec / iovec: buf, buf_len */
export const wasi_iovec = struct("iovec", [
  ["buf", 4],
  ["buf_len", 4],
]);
/** struct fdstat */
export const wasi_fdstat = struct("fdstat", [
  ["fs_filetype", 1],
  ["fs_flags", 2],
  ["fs_rights_base", 8],
  ["fs_rights_inheriting", 8],
]);
/** struct filestat */
export const wasi_filestat = struct("filestat", [
  ["dev", 8],
  ["ino", 8],
  ["filetype", 1],
  ["nlink", 8],
  ["size", 8],
  ["atim", 8],
  ["mtim", 8],
  ["ctim", 8],
]);
/** struct prestat: tag, then prestat_dir's pr_name_len */
export const wasi_prestat = struct("prestat", [
  ["tag", 1],
  ["pr_name_len", 4],
]);
/** struct dirent, followed by d_namlen bytes of name */
export const wasi_dirent = struct("dirent", [
  ["d_next", 8],
  ["d_ino", 8],
  ["d_namlen", 4],
  ["d_type", 1],
]);
/**
 * struct subscription: userdata, then the union's tag and body: for clocks
 * (id, timeout, precision, flags), for fd_read/fd_write (file_descriptor).
 */
export const wasi_subscription = struct("subscription", [
  ["userdata", 8],
  ["tag", 1],
  ["u", 32, 8],
]);
export const wasi_subscription_clock = struct("subscription_clock", [
  ["id", 4],
  ["timeout", 8],
  ["precision", 8],
  ["flags", 2],
]);
/** struct event: userdata, error, type, then fd_readwrite's nbytes and flags */
export const wasi_event = struct("event", [
  ["userdata", 8],
  ["error", 2],
  ["type", 1],
  ["nbytes", 8],
  ["flags", 2],
]);
