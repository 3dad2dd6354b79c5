/**
 * Where a tsxen host keeps its runtime files: `$TSXEN_RUN_DIR`, by default
 * /run/tsxen for root and `$XDG_RUNTIME_DIR/tsxen` otherwise, or, with no
 * XDG_RUNTIME_DIR, `$XDG_STATE_HOME/tsxen/run` (~/.local/state/tsxen/run):
 * never a name in /tmp, which another local user could create first and so
 * receive this user's xl requests; and its logs: `$TSXEN_LOG_DIR`, by default /var/log/tsxen for
 * root and `$XDG_STATE_HOME/tsxen/log` (or ~/.local/state/tsxen/log).
 *
 *   <run dir>/tsxen.pid             the running host's pid (the lock)
 *   <run dir>/privcmd               hypercalls as Dom0 (libxc)
 *   <run dir>/libxl                 the domain builder and lifecycle (xl)
 *   <run dir>/xenconsoled/socket    guest consoles (xl console)
 *   <run dir>/xenstored/socket      xenstored (xenstore-* tools)
 *   <log dir>/tsxen.log             the host daemon and hypervisor console
 *   <log dir>/console/guest-<name>.log   each guest's console
 *
 * The run directory is made mode 0700 and every socket 0600: only its owner
 * may use them, as only root may open Linux's /dev/xen/privcmd. Before the
 * host listens there, and before a client connects there, the directory and
 * every one above it are checked as OpenSSH checks the paths it trusts
 * (`checkSafeDir`): owned by the user or root, and writable by no one else
 * (a world-writable directory with the sticky bit, such as /tmp, may be an
 * ancestor, since no one else can rename what is in it).
 */
import { chmodSync, lstatSync, mkdirSync, realpathSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

/** The run directory, from the environment. */
export function runDir(
  env: NodeJS.ProcessEnv = process.env,
  uid: number = process.getuid?.() ?? 0,
): string {
  if (env.TSXEN_RUN_DIR) return env.TSXEN_RUN_DIR;
  if (uid === 0) return "/run/tsxen";
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, "tsxen");
  return join(env.XDG_STATE_HOME ?? join(homedir(), ".local", "state"), "tsxen", "run");
}

/** A directory the host or a client must not trust: the message says which and why. */
export class UnsafePathError extends Error {}

const S_ISVTX = 0o1000;

/**
 * Throws UnsafePathError unless `dir` and every directory above it are owned
 * by `uid` or root and writable by no one else (sticky world-writable
 * ancestors excepted), and `dir` itself is a real directory (not a symlink)
 * owned by `uid`. With `privateDir`, `dir` must also be mode 0700.
 */
export function checkSafeDir(dir: string, opts: { uid?: number; privateDir?: boolean } = {}): void {
  const uid = opts.uid ?? process.getuid?.() ?? 0;
  const leaf = lstatSync(dir);
  if (leaf.isSymbolicLink())
    throw new UnsafePathError(`${dir} is a symbolic link, not a directory`);
  if (!leaf.isDirectory()) throw new UnsafePathError(`${dir} is not a directory`);
  if (leaf.uid !== uid) {
    throw new UnsafePathError(
      `bad ownership for directory ${dir}: owned by uid ${leaf.uid}, not by this user (uid ${uid})`,
    );
  }
  if (opts.privateDir && (leaf.mode & 0o077) !== 0) {
    throw new UnsafePathError(
      `bad modes for directory ${dir}: ${(leaf.mode & 0o777).toString(8)}, must be 700`,
    );
  }
  let p = realpathSync(dir);
  for (;;) {
    const st = statSync(p);
    if (st.uid !== uid && st.uid !== 0) {
      throw new UnsafePathError(
        `bad ownership for directory ${p}: owned by uid ${st.uid}, neither this user (uid ${uid}) nor root`,
      );
    }
    if ((st.mode & 0o022) !== 0 && !(p !== dir && (st.mode & S_ISVTX) !== 0)) {
      throw new UnsafePathError(
        `bad modes for directory ${p}: ${(st.mode & 0o7777).toString(8)} lets others write in it`,
      );
    }
    const up = dirname(p);
    if (up === p) return;
    p = up;
  }
}

/**
 * Why a client must not connect to the socket at `path` (its directory is
 * not safe, checkSafeDir), or undefined. A directory that does not exist is
 * left to connect(2) to report.
 */
export function unsafeSocketDir(path: string): string | undefined {
  try {
    checkSafeDir(dirname(path));
    return undefined;
  } catch (e) {
    if (e instanceof UnsafePathError) return e.message;
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

/**
 * Makes the run directory (mode 0700, as its own user) if it is missing and
 * checks it (checkSafeDir): a directory someone else made, or one others
 * may write in or above, is refused rather than used.
 */
export function prepareRunDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (st.isDirectory() && st.uid === (process.getuid?.() ?? 0)) chmodSync(dir, 0o700);
  checkSafeDir(dir, { privateDir: true });
}

/** The log directory, from the environment. */
export function logDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TSXEN_LOG_DIR) return env.TSXEN_LOG_DIR;
  const uid = process.getuid?.() ?? 0;
  if (uid === 0) return "/var/log/tsxen";
  return join(env.XDG_STATE_HOME ?? join(homedir(), ".local", "state"), "tsxen", "log");
}

/** xenstored's socket under run directory `dir`. */
export function xenstoredSocket(dir = runDir()): string {
  return join(dir, "xenstored", "socket");
}

/** The socket a xenstore client uses: `$XENSTORED_PATH` (as libxenstore reads it), else the host's. */
export function clientSocket(env: NodeJS.ProcessEnv = process.env): string {
  return env.XENSTORED_PATH ?? xenstoredSocket(runDir(env));
}

/** The host daemon's files under run directory `dir`. */
export function hostPaths(dir = runDir()): {
  pidFile: string;
  privcmd: string;
  libxl: string;
  console: string;
  xenstored: string;
  metrics: string;
  web: string;
} {
  return {
    pidFile: join(dir, "tsxen.pid"),
    /** The metrics URL, while the host serves one (tsxen start --metrics). */
    metrics: join(dir, "metrics-url"),
    /** The web console's URL with its token, while the host serves one (tsxen start --http); mode 0600. */
    web: join(dir, "web-url"),
    privcmd: join(dir, "privcmd"),
    libxl: join(dir, "libxl"),
    console: join(dir, "xenconsoled", "socket"),
    xenstored: xenstoredSocket(dir),
  };
}
