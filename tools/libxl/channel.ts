/**
 * PV channel specifications, as xl.cfg(5)'s `channel=` defines them
 * (xen-pv-channel(7)): comma-separated `KEY=VALUE` settings `name=`
 * (mandatory), `connection=` (`socket` or `pty`), `path=` (the socket,
 * mandatory for `socket`) and `backend=` (Dom0 only on tsxen). Leading and
 * trailing whitespace is ignored; neither key nor value may hold ',', '='
 * or '"'.
 */
import { isAbsolute, resolve } from "node:path";

export interface ChannelSpec {
  name: string;
  connection: "socket";
  path: string;
}

/** Parses one channel spec; a relative path is taken from `dir`. Throws naming what is wrong. */
export function parseChannelSpec(spec: string, dir = process.cwd()): ChannelSpec {
  let name: string | undefined;
  let connection: string | undefined;
  let path: string | undefined;
  for (const item of spec.split(",")) {
    const t = item.trim();
    if (t === "") continue;
    const eq = t.indexOf("=");
    if (eq < 0) throw new Error(`channel: '${t}' is not KEY=VALUE`);
    const key = t.slice(0, eq).trim();
    const value = t.slice(eq + 1).trim();
    if (value.includes("=") || value.includes('"'))
      throw new Error(`channel: the value of '${key}' may not hold '=' or '"'`);
    switch (key) {
      case "name":
        name = value;
        break;
      case "connection":
        connection = value.toLowerCase();
        break;
      case "path":
        path = value;
        break;
      case "backend":
        if (value !== "0" && value !== "Domain-0")
          throw new Error(`channel: backend '${value}': only Dom0 serves channels on tsxen`);
        break;
      default:
        throw new Error(`channel: unknown key '${key}'`);
    }
  }
  if (!name) throw new Error("channel: name= is mandatory");
  if (connection === undefined) throw new Error(`channel ${name}: connection= is mandatory`);
  if (connection === "pty")
    throw new Error(
      `channel ${name}: connection=pty needs a pseudo-terminal, which tsxen's host (Node.js, no native code) cannot make: use connection=socket,path=...`,
    );
  if (connection !== "socket")
    throw new Error(`channel ${name}: connection '${connection}' is not pty or socket`);
  if (!path) throw new Error(`channel ${name}: connection=socket needs path=`);
  return { name, connection: "socket", path: isAbsolute(path) ? path : resolve(dir, path) };
}

/** The spec written back whole, as libxl keeps it. */
export function channelSpecString(c: ChannelSpec): string {
  return `name=${c.name},connection=${c.connection},path=${c.path}`;
}
