/**
 * Where a tsxen host keeps its runtime files: `$TSXEN_RUN_DIR`, by default
 * /run/tsxen for root and `$XDG_RUNTIME_DIR/tsxen` (or /tmp/tsxen-<uid>)
 * otherwise. xenstored's socket is `<run dir>/xenstored/socket`.
 */
import { join } from "node:path";

/** The run directory, from the environment. */
export function runDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TSXEN_RUN_DIR) return env.TSXEN_RUN_DIR;
  const uid = process.getuid?.() ?? 0;
  if (uid === 0) return "/run/tsxen";
  return join(env.XDG_RUNTIME_DIR ?? `/tmp/tsxen-${uid}`, "tsxen");
}

/** xenstored's socket under run directory `dir`. */
export function xenstoredSocket(dir = runDir()): string {
  return join(dir, "xenstored", "socket");
}

/** The socket a xenstore client uses: `$XENSTORED_PATH` (as libxenstore reads it), else the host's. */
export function clientSocket(env: NodeJS.ProcessEnv = process.env): string {
  return env.XENSTORED_PATH ?? xenstoredSocket(runDir(env));
}
