/**
 * Where a tsxen host keeps its runtime files: `$TSXEN_RUN_DIR`, by default
 * /run/tsxen for root and `$XDG_RUNTIME_DIR/tsxen` (or /tmp/tsxen-<uid>)
 * otherwise; and its logs: `$TSXEN_LOG_DIR`, by default /var/log/tsxen for
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
 * may use them, as only root may open Linux's /dev/xen/privcmd.
 */
import { homedir } from "node:os";
import { join } from "node:path";

/** The run directory, from the environment. */
export function runDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TSXEN_RUN_DIR) return env.TSXEN_RUN_DIR;
  const uid = process.getuid?.() ?? 0;
  if (uid === 0) return "/run/tsxen";
  return join(env.XDG_RUNTIME_DIR ?? `/tmp/tsxen-${uid}`, "tsxen");
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
} {
  return {
    pidFile: join(dir, "tsxen.pid"),
    privcmd: join(dir, "privcmd"),
    libxl: join(dir, "libxl"),
    console: join(dir, "xenconsoled", "socket"),
    xenstored: xenstoredSocket(dir),
  };
}
