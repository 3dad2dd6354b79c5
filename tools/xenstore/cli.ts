/**
 * The xenstore command-line tools, with the names, flags, output and exit
 * codes of Xen's (`xenstore-read`, `-write`, `-rm`, `-list`, `-exists`,
 * `-ls`, `-chmod`, `-watch`; Xen's tools/xenstore/xenstore_client.c): run as
 * `xenstore-<mode> ...`, or `xenstore <mode> ...`. They reach xenstored over
 * its unix socket, `XENSTORED_PATH` or the host's. Values are printed and
 * read with Xen's escapes (\t \n \r \\ and \ooo octal for other bytes).
 * test/fixtures/xenstore-tools.sh runs them and Xen's C tools alike.
 */
import { XsClient, XsClientError, XBT_NULL, type Tx } from "./client.js";

const MODES = ["read", "write", "rm", "exists", "list", "ls", "chmod", "watch"] as const;
type Mode = (typeof MODES)[number];

const USAGE: Record<Mode, string> = {
  read: "[-h] [-p] [-s] [-R] key [...]",
  write: "[-h] [-s] [-R] key value [...]",
  rm: "[-h] [-s] [-t] key [...]",
  exists: "[-h] [-p] [-s] key [...]",
  list: "[-h] [-p] [-s] key [...]",
  ls: "[-h] [-f] [-p] [-s] [path]",
  chmod: "[-h] [-u] [-r] [-s] key <mode [modes...]>",
  watch: "[-h] [-n NR] key",
};

/**
 * Which flags each mode takes. Every tool's getopt knows all of ALL_FLAGS: a
 * known flag that the mode does not take prints the usage, and any other
 * letter is warned about and ignored, as Xen's tools do.
 */
const FLAGS: Record<Mode, string> = {
  read: "hspR",
  write: "hsR",
  rm: "hst",
  exists: "hs",
  list: "hsp",
  ls: "hsfp",
  chmod: "hsur",
  watch: "hsn",
};
const ALL_FLAGS = "hfsprtunR";

/** A tool's exit: status and what went to stdout and stderr. */
export interface ToolResult {
  status: number;
  stdout: string;
  stderr: string;
}

class Exit extends Error {
  constructor(readonly status: number) {
    super(`exit ${status}`);
  }
}

/** Xen's sanitise_value: control bytes and backslashes escaped, others as they are. */
export function sanitise(v: Uint8Array): string {
  let out = "";
  for (const c of v) {
    if (c === 9) out += "\\t";
    else if (c === 10) out += "\\n";
    else if (c === 13) out += "\\r";
    else if (c === 92) out += "\\\\";
    else if (c < 32 || c >= 127) out += `\\${c.toString(8).padStart(3, "0")}`;
    else out += String.fromCharCode(c);
  }
  return out;
}

/** Xen's unsanitise_value: the escapes above turned back into bytes. */
export function unsanitise(s: string): Uint8Array {
  const bytes = Buffer.from(s, "utf8");
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c !== 92 || i + 1 >= bytes.length) {
      out.push(c);
      continue;
    }
    const n = bytes[++i]!;
    if (n === 116) out.push(9);
    else if (n === 110) out.push(10);
    else if (n === 114) out.push(13);
    else if (n >= 48 && n <= 55) {
      let v = n - 48;
      for (
        let k = 0;
        k < 2 && i + 1 < bytes.length && bytes[i + 1]! >= 48 && bytes[i + 1]! <= 55;
        k++
      ) {
        v = v * 8 + (bytes[++i]! - 48);
      }
      out.push(v & 0xff);
    } else out.push(n);
  }
  return Uint8Array.from(out);
}

/** Runs tool `mode` with `args`; resolves with its exit status and output. */
export async function runTool(
  prog: string,
  mode: Mode,
  args: string[],
  opts: {
    socket?: string;
    columns?: number;
    /** Where xenstore-watch prints each event as it comes (else with the rest, at the end). */
    stream?: (s: string) => void;
  } = {},
): Promise<ToolResult> {
  let stdout = "";
  let stderr = "";
  const warn = (msg: string): void => {
    stderr += `${prog}: ${msg}\n`;
  };
  const fail = (msg: string): never => {
    warn(msg);
    throw new Exit(1);
  };
  const usage = (): never => fail(`Usage: ${prog} ${USAGE[mode]}`);
  // getopt: flags first, then operands (chmod's modes are operands).
  const flags = new Set<string>();
  let watches = -1;
  let i = 0;
  let ops: string[];
  try {
    for (; i < args.length; i++) {
      const a = args[i]!;
      if (a === "--") {
        i++;
        break;
      }
      if (!a.startsWith("-") || a === "-" || (mode === "chmod" && /^[nrwb]/.test(a.slice(1))))
        break;
      const long: Record<string, string> = {
        help: "h",
        flat: "f",
        socket: "s",
        prefix: "p",
        tidy: "t",
        upto: "u",
        recurse: "r",
        number: "n",
      };
      if (a.startsWith("--") && long[a.slice(2)] === undefined) {
        warn(`unrecognized option '${a}'`);
        continue;
      }
      const letters = a.startsWith("--") ? [long[a.slice(2)]!] : [...a.slice(1)];
      for (const l of letters) {
        if (!ALL_FLAGS.includes(l)) {
          warn(`invalid option -- '${l}'`);
          continue;
        }
        if (!FLAGS[mode].includes(l) || l === "h") usage();
        if (l === "n") watches = Number(args[++i] ?? usage());
        flags.add(l);
      }
    }
    ops = args.slice(i);
    if (mode !== "ls" && ops.length === 0) usage();
    if (mode === "write" && ops.length % 2 === 1) usage();
  } catch (e) {
    if (e instanceof Exit) return { status: e.status, stdout, stderr };
    throw e;
  }
  let xs: XsClient;
  try {
    xs = await XsClient.open(opts.socket);
  } catch (e) {
    return { status: 1, stdout, stderr: `${prog}: xs_open: ${(e as Error).message}\n` };
  }
  const code = (e: unknown): string => (e instanceof XsClientError ? e.code : String(e));
  try {
    const transactional =
      mode === "read"
        ? ops.length > 1
        : mode === "write"
          ? ops.length > 2
          : mode !== "ls" && mode !== "watch";
    for (;;) {
      const tx: Tx = transactional ? await xs.transactionStart() : XBT_NULL;
      let out = "";
      let status = 0;
      try {
        status = await perform(
          xs,
          tx,
          mode,
          ops,
          flags,
          watches,
          opts.columns ?? 80,
          (s) => (out += s),
          warn,
          fail,
          opts.stream,
        );
      } catch (e) {
        if (!(e instanceof Exit)) throw e;
        status = e.status;
      }
      if (transactional) {
        const committed = await xs.transactionEnd(tx, status !== 0).catch((e) => {
          if (code(e) === "EAGAIN") return false;
          throw e;
        });
        if (!committed && status === 0) continue;
      }
      stdout += out;
      return { status, stdout, stderr };
    }
  } catch (e) {
    if (e instanceof Exit) return { status: e.status, stdout, stderr };
    return { status: 1, stdout, stderr: `${stderr}${prog}: ${(e as Error).message}\n` };
  } finally {
    xs.close();
  }
}

const errnoText: Record<string, string> = {
  ENOENT: "No such file or directory",
  EACCES: "Permission denied",
  EINVAL: "Invalid argument",
  EEXIST: "File exists",
  ENOSPC: "No space left on device",
  E2BIG: "Argument list too long",
  EPERM: "Operation not permitted",
  EAGAIN: "Resource temporarily unavailable",
};

async function perform(
  xs: XsClient,
  tx: Tx,
  mode: Mode,
  ops: string[],
  flags: Set<string>,
  watches: number,
  columns: number,
  out: (s: string) => void,
  warn: (s: string) => void,
  fail: (s: string) => never,
  stream: ((s: string) => void) | undefined,
): Promise<number> {
  const errText = (e: unknown): string =>
    e instanceof XsClientError ? (errnoText[e.code] ?? e.code) : String(e);
  switch (mode) {
    case "read":
      for (const p of ops) {
        let v: Uint8Array;
        try {
          v = await xs.read(p, tx);
        } catch {
          warn(`couldn't read path ${p}`);
          return 1;
        }
        // -R: the value as it is, without escapes or a newline after it.
        const prefix = flags.has("p") ? `${p}: ` : "";
        out(
          flags.has("R")
            ? `${prefix}${Buffer.from(v).toString("utf8")}`
            : `${prefix}${sanitise(v)}\n`,
        );
      }
      return 0;
    case "write":
      for (let k = 0; k < ops.length; k += 2) {
        try {
          const value = ops[k + 1]!;
          await xs.write(
            ops[k]!,
            flags.has("R") ? Buffer.from(value, "utf8") : unsanitise(value),
            tx,
          );
        } catch {
          warn(`could not write path ${ops[k]}`);
          return 1;
        }
      }
      return 0;
    case "rm":
      for (const p0 of ops) {
        let p = p0;
        for (;;) {
          try {
            await xs.rm(p, tx);
          } catch {
            warn(`could not remove path ${p}`);
            return 1;
          }
          // -t: also remove parents left empty and without a value.
          if (!flags.has("t") || p.lastIndexOf("/") < 0) break;
          p = p.slice(0, p.lastIndexOf("/"));
          const v = await xs.read(p, tx).catch(() => undefined);
          if (!v || v.length !== 0) break;
          const kids = await xs.directory(p, tx).catch(() => undefined);
          if (!kids || kids.length !== 0) break;
        }
      }
      return 0;
    case "exists":
      for (const p of ops) {
        try {
          await xs.read(p, tx);
        } catch {
          return 1;
        }
      }
      return 0;
    case "list":
      for (const p of ops) {
        let names: string[];
        try {
          names = await xs.directory(p, tx);
        } catch {
          warn(`could not list path ${p}`);
          return 1;
        }
        for (const n of names) out(`${flags.has("p") ? `${p}/` : ""}${n}\n`);
      }
      return 0;
    case "ls": {
      const full = flags.has("f");
      const layout = {
        max: full ? 2 ** 30 : columns,
        desired: full ? 0 : 60,
        full,
        perms: flags.has("p"),
      };
      for (const p of ops.length ? ops : ["/"]) {
        try {
          await ls(xs, p, 0, layout, out);
        } catch (e) {
          fail(`xs_directory (${(e as { path?: string }).path ?? p}): ${errText(e)}`);
        }
      }
      return 0;
    }
    case "chmod": {
      const [path, ...modes] = ops as [string, ...string[]];
      const perms = modes.map((m) => {
        if (!"nrwb".includes(m[0] ?? "")) fail(`Invalid permission specification: '${m[0] ?? ""}'`);
        return `${m[0]}${Number.parseInt(m.slice(1), 10) || 0}`;
      });
      const apply = async (p: string, upto: boolean, recurse: boolean): Promise<void> => {
        if (p === "") return;
        try {
          await xs.setPerms(p, perms, tx);
        } catch (e) {
          fail(`Error occurred setting permissions on '${p}': ${errText(e)}`);
        }
        if (upto) await apply(p.slice(0, p.lastIndexOf("/")), true, false);
        if (recurse) {
          const kids = await xs.directory(p, tx).catch(() => []);
          for (const k of kids) await apply(`${p}/${k}`, false, true);
        }
      };
      await apply(path, flags.has("u"), flags.has("r"));
      return 0;
    }
    case "watch": {
      let left = watches;
      let done: () => void = () => {};
      const finished = new Promise<void>((r) => (done = r));
      for (const p of ops) {
        await xs.watch(p, p, (path) => {
          if (left === 0) return;
          (stream ?? out)(`${path}\n`);
          if (left > 0 && --left === 0) done();
        });
      }
      if (watches === 0) return 0;
      await finished;
      return 0;
    }
  }
}

interface LsLayout {
  max: number;
  desired: number;
  full: boolean;
  perms: boolean;
}

/** Xen's do_ls: one line per node, children indented one space per level. */
async function ls(
  xs: XsClient,
  path: string,
  depth: number,
  l: LsLayout,
  out: (s: string) => void,
): Promise<void> {
  const TAG = 8; // strlen(" = \"...\"")
  let names: string[];
  try {
    names = await xs.directory(path);
  } catch (e) {
    throw Object.assign(e as Error, { path });
  }
  for (const name of names) {
    const p = `${path}${path.endsWith("/") ? "" : "/"}${name}`;
    let line = "";
    let wid = 0;
    if (l.full) line += p;
    else {
      line += " ".repeat(depth);
      wid = depth;
      const shown = name.slice(0, Math.max(0, l.max - TAG - wid));
      line += shown;
      wid += shown.length;
    }
    const v = await xs.read(p).catch(() => undefined);
    if (v === undefined) line += ":";
    else {
      const s = sanitise(v);
      if (l.max < wid + v.length + TAG) {
        line += ` = "${s.slice(0, Math.max(0, l.max - TAG - wid))}\\..."`;
      } else {
        const shown = ` = "${s}"`;
        line += shown;
        wid += shown.length;
        if (l.perms) {
          line += " ";
          for (wid++; wid < Math.min(l.desired, l.max); wid++) line += wid & 1 ? "." : " ";
        }
      }
    }
    if (l.perms) {
      const perms = await xs.getPerms(p).catch(() => undefined);
      if (perms) line += `  (${perms.join(",")})`;
    }
    out(`${line}\n`);
    await ls(xs, p, depth + 1, l, out);
  }
}

/** The entry point of every tool: the mode comes from the program name or the first argument. */
export async function main(argv0: string, args: string[]): Promise<number> {
  const base = argv0.slice(argv0.lastIndexOf("/") + 1).replace(/\.js$/, "");
  let mode = base.startsWith("xenstore-") ? base.slice("xenstore-".length) : undefined;
  let prog = base;
  if (!mode) {
    mode = args.shift();
    prog = "xenstore";
  }
  if (!mode || !(MODES as readonly string[]).includes(mode)) {
    process.stderr.write(
      mode ? `${prog}: unknown mode ${mode}\n\n` : `${prog}: Usage: ${prog} <mode> [-h] [...]\n`,
    );
    return 1;
  }
  const r = await runTool(prog, mode as Mode, args, {
    columns: process.stdout.isTTY ? process.stdout.columns - 2 : 80,
    stream: (s) => process.stdout.write(s),
  });
  // As from Xen's tools through a pipe: stderr is unbuffered, stdout comes out at exit.
  process.stderr.write(r.stderr);
  process.stdout.write(r.stdout);
  return r.status;
}
