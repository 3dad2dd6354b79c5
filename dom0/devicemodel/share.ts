/**
 * Paths inside a 9pfs share (xl.cfg `p9=`), resolved so that no path can
 * leave the share: not `..`, not an absolute path, not a symlink pointing
 * out, not a directory swapped for a symlink between a check and its use.
 *
 * Node has no openat(2), so each step is taken relative to a directory file
 * descriptor this process holds, through Linux's `/proc/self/fd/N/` (the
 * kernel resolves the magic link to the very directory the descriptor holds,
 * whatever its name is now), one component at a time, with O_NOFOLLOW: a
 * symlink is never followed by the kernel. Symlinks the program asks to
 * follow are read and followed here, by the same rules (relative targets
 * only; never above the directory the lookup started from; at most 40).
 * `..` is taken by dropping a descriptor this walk opened, never by asking
 * the kernel, so it can never climb above the starting directory.
 *
 * The same rules as QEMU's 9pfs "security_model=none" with its
 * openat-relative walk (hw/9pfs/9p-local.c), and as WASI's capability model:
 * a path is relative to a directory descriptor and cannot leave it.
 */
import { closeSync, constants as C, openSync, readlinkSync } from "node:fs";

/** WASI errno for a failed lookup (wasi.ts maps host errors to them). */
export class LookupError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/** Most symlinks one lookup follows (Linux's MAXSYMLINKS). */
export const MAX_SYMLINKS = 40;
/** Longest path accepted. */
export const MAX_PATH = 4096;

/** The path of `name` inside the directory held by `dirFd`, for the host's *at-less calls. */
export const at = (dirFd: number, name: string): string => `/proc/self/fd/${dirFd}/${name}`;

/** A resolved path: the directory that holds it (an fd the caller must release) and its last component. */
export interface Resolved {
  readonly dirFd: number;
  readonly name: string;
  /** Whether dirFd was opened by the lookup (and so must be closed with release()). */
  readonly owned: boolean;
}

export function release(r: Resolved): void {
  if (r.owned) closeSync(r.dirFd);
}

const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;

/**
 * Resolves `path` relative to the directory held by `baseFd`. The result's
 * `name` is a single component (or "." for the directory itself); when
 * `followLast` is set and the last component is a symlink, it is followed.
 * Throws LookupError with a WASI errno (`errnos`).
 */
export function resolvePath(
  baseFd: number,
  path: string,
  followLast: boolean,
  errnos: { notcapable: number; loop: number; inval: number; nametoolong: number; notdir: number },
  hostErrno: (e: unknown) => number,
): Resolved {
  if (path.length > MAX_PATH) throw new LookupError(errnos.nametoolong, "path too long");
  if (path.includes("\0")) throw new LookupError(errnos.inval, "path holds a NUL");
  if (path.startsWith("/")) throw new LookupError(errnos.notcapable, "absolute path");
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  const stack: number[] = [];
  const top = (): number => (stack.length ? stack[stack.length - 1]! : baseFd);
  let links = 0;
  const fail = (errno: number, why: string): never => {
    for (const fd of stack) closeSync(fd);
    throw new LookupError(errno, why);
  };
  const followLink = (name: string, rest: string[]): string[] => {
    if (++links > MAX_SYMLINKS) fail(errnos.loop, "too many symlinks");
    let target: string;
    try {
      target = readlinkSync(at(top(), name));
    } catch (e) {
      return fail(hostErrno(e), `cannot read symlink ${name}`);
    }
    if (target.startsWith("/")) fail(errnos.notcapable, `symlink ${name} points outside the share`);
    return [...target.split("/").filter((p) => p !== "" && p !== "."), ...rest];
  };
  while (parts.length > 0) {
    const name = parts.shift()!;
    const last = parts.length === 0;
    if (name === "..") {
      if (stack.length === 0) fail(errnos.notcapable, "'..' leaves the directory");
      closeSync(stack.pop()!);
      if (last) break;
      continue;
    }
    if (last && !followLast) return { dirFd: top(), name, owned: stackOwned(stack, baseFd) };
    let fd: number;
    try {
      fd = openSync(at(top(), name), DIR_FLAGS);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ELOOP" || code === "ENOTDIR" || code === "EMLINK") {
        // A symlink (O_NOFOLLOW), or not a directory: which one?
        let isLink = false;
        try {
          readlinkSync(at(top(), name));
          isLink = true;
        } catch {
          // Not a symlink.
        }
        if (isLink) {
          parts.splice(0, parts.length, ...followLink(name, parts));
          continue;
        }
        if (last) return { dirFd: top(), name, owned: stackOwned(stack, baseFd) };
        return fail(errnos.notdir, `${name} is not a directory`);
      }
      if (last && code === "ENOENT")
        return { dirFd: top(), name, owned: stackOwned(stack, baseFd) };
      return fail(hostErrno(e), `cannot open ${name}`);
    }
    if (last) {
      // The path names a directory: hand back the directory itself.
      stack.push(fd);
      break;
    }
    stack.push(fd);
  }
  // The path ends at a directory (possibly the base itself).
  const dirFd = top();
  for (let i = 0; i < stack.length - 1; i++) closeSync(stack[i]!);
  return { dirFd, name: ".", owned: stack.length > 0 };
}

/** Closes every walked descriptor but the top, and says whether the top is the walk's own. */
function stackOwned(stack: number[], _base: number): boolean {
  for (let i = 0; i < stack.length - 1; i++) closeSync(stack[i]!);
  const owned = stack.length > 0;
  stack.length = 0;
  return owned;
}
