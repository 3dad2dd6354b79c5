/**
 * xl migrate and xl migrate-receive (Xen's `tools/xl/xl_migrate.c`): the
 * command-line ends of a migration. The host daemon holds the domains and
 * speaks the protocol (tools/libxl/migrate.ts); these relay the peer's
 * bytes between the daemon's libxl socket and the transport: for `xl
 * migrate`, the stdin and stdout of `sh -c "exec <sshcommand> <host> xl
 * migrate-receive ..."`; for `xl migrate-receive`, its own stdin and
 * stdout. The daemon's log lines go to stderr, as xl's do.
 */
import { spawn, type ChildProcessByStdio } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { connectUnix } from "../jsonl.js";
import {
  FRAME_DATA,
  FRAME_EOF,
  FRAME_LOG,
  FRAME_RESULT,
  MAX_FRAME,
  frame,
  readFrames,
  writeDrained,
} from "../libxl/migrate.js";

/**
 * Makes migration call `request` on the libxl socket at `libxlPath`, then
 * relays: the transport's bytes (`open` makes it, once the daemon is
 * connected, so that nothing it says is missed) to the daemon, the
 * daemon's to it, the daemon's log lines to stderr. Resolves with the
 * daemon's result: `ok`, or `error` (the message, unless the log already
 * said it).
 */
async function relay(
  libxlPath: string,
  request: Record<string, unknown>,
  open: () => { input: Readable; output: Writable },
): Promise<{ ok?: Record<string, unknown>; error?: string }> {
  const s = await connectUnix(libxlPath, "libxl");
  s.write(`${JSON.stringify(request)}\n`);
  const { input, output } = open();
  let lastLog = "";
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: { ok?: Record<string, unknown>; error?: string }): void => {
      if (done) return;
      done = true;
      input.off("data", onInput);
      input.pause();
      s.destroy();
      resolve(r);
    };
    const onInput = (chunk: Buffer): void => {
      for (let o = 0; o < chunk.length; o += MAX_FRAME) {
        if (!s.write(frame(FRAME_DATA, chunk.subarray(o, o + MAX_FRAME)))) {
          input.pause();
          s.once("drain", () => input.resume());
        }
      }
    };
    input.on("data", onInput);
    input.once("end", () => {
      if (!s.destroyed) s.write(frame(FRAME_EOF, new Uint8Array(0)));
    });
    input.once("error", () => {
      if (!s.destroyed) s.write(frame(FRAME_EOF, new Uint8Array(0)));
    });
    readFrames(
      s,
      Buffer.alloc(0),
      (type, payload) => {
        if (type === FRAME_DATA) {
          s.pause();
          writeDrained(output, payload).then(
            () => s.resume(),
            // The peer is gone: the daemon finds out from its stream.
            () => s.resume(),
          );
        } else if (type === FRAME_LOG) {
          lastLog = payload.toString();
          process.stderr.write(`${lastLog}\n`);
        } else if (type === FRAME_RESULT) {
          let r: { ok?: Record<string, unknown>; error?: string };
          try {
            r = JSON.parse(payload.toString()) as typeof r;
          } catch {
            r = { error: "xl: the daemon's result could not be read" };
          }
          // An error the log has just said is not said again ("": failed, said).
          finish(r.ok ? { ok: r.ok } : { error: r.error === lastLog ? "" : (r.error ?? "") });
        }
      },
      (why) => finish({ error: `xl: the daemon sent ${why}` }),
    );
    s.once("close", () => finish({ error: "xl: the host daemon closed the connection" }));
  });
}

export interface XlMigrateOptions {
  libxlPath: string;
  domid: number;
  /** What `sh -c` runs: Xen's rune. */
  rune: string;
  debug: boolean;
  maxIters?: number;
  minRemaining?: number;
  log: (line: string) => void;
}

/**
 * Xen's rune for `xl migrate [-s sshcommand] host`: `host` itself when the
 * ssh command is empty, otherwise `exec <sshcommand> <host> xl
 * migrate-receive` with -e, -d and -p as given.
 */
export function migrationRune(
  ssh: string,
  host: string,
  flags: { noDaemonize: boolean; debug: boolean; paused: boolean },
): string {
  if (ssh === "") return host;
  return `exec ${ssh} ${host} xl migrate-receive${flags.noDaemonize ? " -e" : ""}${flags.debug ? " -d" : ""}${flags.paused ? " -p" : ""}`;
}

/** xl migrate: 0 when the domain runs on the peer and is gone here, else 1. */
export async function xlMigrate(o: XlMigrateOptions): Promise<number> {
  let child: ChildProcessByStdio<Writable, Readable, null> | undefined;
  let exited: Promise<number | null> = Promise.resolve(null);
  const r = await relay(
    o.libxlPath,
    {
      call: "migrateSend",
      domid: o.domid,
      debug: o.debug,
      ...(o.maxIters !== undefined ? { maxIters: o.maxIters } : {}),
      ...(o.minRemaining !== undefined ? { minRemaining: o.minRemaining } : {}),
    },
    () => {
      const c = spawn("sh", ["-c", o.rune], { stdio: ["pipe", "pipe", "inherit"] });
      child = c;
      exited = new Promise<number | null>((res) => c.once("exit", (code) => res(code)));
      c.stdin.on("error", () => {});
      return { input: c.stdout, output: c.stdin };
    },
  );
  if (!child) {
    if (r.error) o.log(r.error);
    return 1;
  }
  // Xen's migration_child_report: the transport has two seconds to exit.
  child.stdin.end();
  const code = await Promise.race([
    exited,
    new Promise<"late">((res) => setTimeout(() => res("late"), 2000).unref()),
  ]);
  if (code === "late") {
    o.log(
      `migration child [${child.pid}] not exiting, no longer waiting (exit status will be unreported)`,
    );
    child.kill();
  } else if (code !== 0 && code !== null)
    o.log(`migration transport process [${child.pid}] exited with error status ${code}`);
  if (r.error !== undefined) {
    if (r.error) o.log(r.error);
    return 1;
  }
  return 0;
}

/** xl migrate-receive: 0 when the domain runs here, else 1. */
export async function xlMigrateReceive(o: {
  libxlPath: string;
  paused: boolean;
  debug: boolean;
  log: (line: string) => void;
}): Promise<number> {
  const r = await relay(
    o.libxlPath,
    { call: "migrateReceive", paused: o.paused, debug: o.debug },
    () => ({
      input: process.stdin,
      output: process.stdout,
    }),
  );
  if (r.error !== undefined) {
    if (r.error) o.log(r.error);
    return 1;
  }
  return 0;
}
