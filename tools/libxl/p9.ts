/**
 * 9pfs share specifications, as xl.cfg(5)'s `p9=` defines them (libxl's
 * xl_parse.c): comma-separated `KEY=VALUE` settings `tag=`,
 * `security_model=` (only "none", as in Xen), `path=` and `backend=` (Dom0
 * only on tsxen). tsxen adds `readonly` (or `readonly=1|on|yes`), as QEMU's
 * -fsdev has, since Xen 4.17's p9 has no read-only share.
 *
 * On an HVM (WASI) guest a share is a preopened directory whose guest path
 * is its tag (a tag without a leading '/' gets one).
 */
import { isAbsolute, resolve } from "node:path";

export interface P9Spec {
  tag: string;
  path: string;
  securityModel: "none";
  readonly: boolean;
}

const TRUE = new Set(["", "1", "on", "yes", "true"]);
const FALSE = new Set(["0", "off", "no", "false"]);

/** Parses one p9 spec; relative paths are taken from `dir`. Throws naming what is wrong. */
export function parseP9Spec(spec: string, dir = process.cwd()): P9Spec {
  let tag: string | undefined;
  let path: string | undefined;
  let readonly = false;
  let model = "none";
  for (const item of spec.split(",")) {
    const t = item.trim();
    if (t === "") continue;
    const eq = t.indexOf("=");
    const key = eq < 0 ? t : t.slice(0, eq);
    const value = eq < 0 ? "" : t.slice(eq + 1);
    switch (key) {
      case "tag":
        tag = value;
        break;
      case "path":
        path = value;
        break;
      case "security_model":
        model = value;
        break;
      case "backend":
        if (value !== "0" && value !== "Domain-0")
          throw new Error(`p9 backend '${value}': tsxen's 9pfs backend runs in Domain-0 only`);
        break;
      case "readonly":
        if (TRUE.has(value)) readonly = true;
        else if (FALSE.has(value)) readonly = false;
        else throw new Error(`p9 readonly='${value}' is not a yes/no value`);
        break;
      default:
        throw new Error(`p9 spec '${spec}': unknown key '${key}'`);
    }
  }
  if (!tag) throw new Error(`p9 spec '${spec}': tag= is mandatory`);
  if (/[\0/]/.test(tag.replace(/^\//, "")) || tag === "/" || tag === "/dev" || tag === "dev")
    throw new Error(`p9 tag '${tag}' must be one name (and not dev, where disks live)`);
  if (!path) throw new Error(`p9 spec '${spec}': path= is mandatory`);
  if (model !== "none")
    throw new Error(`p9 security_model='${model}': only 'none' is supported, as in Xen`);
  return {
    tag,
    path: isAbsolute(path) ? path : resolve(dir, path),
    securityModel: "none",
    readonly,
  };
}

/** The guest path of a share's preopen. */
export const p9GuestPath = (tag: string): string => (tag.startsWith("/") ? tag : `/${tag}`);
