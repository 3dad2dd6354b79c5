/**
 * xenstore paths (xen-doc `misc/xenstore.txt`): absolute paths start with "/",
 * use only ASCII alphanumerics and `-/_@`, have no empty component and no
 * trailing "/" (except the root), and are at most XENSTORE_ABS_PATH_MAX bytes.
 * A domain may name paths relative to its home, /local/domain/<domid>.
 * Special watch paths start with "@".
 */
import {
  XENSTORE_ABS_PATH_MAX,
  XENSTORE_REL_PATH_MAX,
} from "../../xen/include/public/io/xs_wire.js";

/** The special watch paths xenstored itself raises events on. */
export const SPECIAL_INTRODUCE = "@introduceDomain";
export const SPECIAL_RELEASE = "@releaseDomain";

const VALID = /^[A-Za-z0-9\-/_@]*$/;

/** A domain's home, the base of its relative paths. */
export function domainPath(domid: number): string {
  return `/local/domain/${domid}`;
}

/**
 * The absolute form of `path` for a connection of domain `domid`, or an error
 * naming what is wrong with it (xenstored answers EINVAL).
 */
export function canonicalize(path: string, domid: number): { path: string } | { error: string } {
  if (path.length === 0) return { error: "the empty path" };
  if (!VALID.test(path)) return { error: `a character outside A-Za-z0-9-/_@ in '${path}'` };
  if (path.startsWith("@")) return { path };
  let abs = path;
  if (!path.startsWith("/")) {
    if (path.length > XENSTORE_REL_PATH_MAX) {
      return { error: `a relative path longer than ${XENSTORE_REL_PATH_MAX} bytes` };
    }
    abs = `${domainPath(domid)}/${path}`;
  }
  if (abs.length > XENSTORE_ABS_PATH_MAX) {
    return { error: `a path longer than ${XENSTORE_ABS_PATH_MAX} bytes` };
  }
  if (abs !== "/" && (abs.endsWith("/") || abs.includes("//"))) {
    return { error: `an empty component in '${path}'` };
  }
  if (abs.includes("@")) return { error: `'@' inside '${path}'` };
  return { path: abs };
}

/** The parent of absolute path `p` ("/" for "/a"; "/" for "/"). */
export function parentOf(p: string): string {
  const i = p.lastIndexOf("/");
  return i <= 0 ? "/" : p.slice(0, i);
}

/** The last component of absolute path `p`. */
export function baseName(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}

/** True if `child` is `parent` or below it (xenstore.txt's "child"). */
export function isChild(child: string, parent: string): boolean {
  if (parent === "/" || child === parent) return true;
  return child.startsWith(parent) && child.charCodeAt(parent.length) === 47;
}

/** Levels of `child` below `parent` (0 for the same path); `child` must be a child. */
export function depthBelow(child: string, parent: string): number {
  if (child === parent) return 0;
  const rest = parent === "/" ? child.slice(1) : child.slice(parent.length + 1);
  return rest.split("/").length;
}

/** `p` as a connection that asked relatively sees it: relative to the domain's home. */
export function relativeTo(p: string, domid: number): string {
  const home = domainPath(domid);
  return p.startsWith(`${home}/`) ? p.slice(home.length + 1) : p;
}
