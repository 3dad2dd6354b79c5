/**
 * Where tsxen caches what it derives from guest images (instrumented PV
 * kernels, checked HVM programs): $TSXEN_CACHE_DIR, else the user's cache
 * directory. A cache that cannot be read or written only costs time.
 */
import { homedir } from "node:os";
import { join } from "node:path";

/** The cache's root. */
export function cacheRoot(): string {
  return (
    process.env.TSXEN_CACHE_DIR ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "tsxen")
  );
}
