/**
 * xenconsoled's socket (`<run dir>/xenconsoled/socket`), which `xl console`
 * attaches to. The client sends one line, `{"domid": N, "replay": true}`
 * (and `"type": "pv"` or `"serial"`; without it, an HVM domain's serial
 * port, else the PV console, as `xl console` chooses);
 * the daemon answers one line, `{"ok": true}` or `{"error": "..."}`, and
 * from then on the connection is the raw console: bytes from the guest one
 * way, typed bytes the other. It ends when the domain is destroyed.
 */
import type { Socket } from "node:net";
import { MAX_OUTPUT_BACKLOG, connectUnix, UnixService, readLines, sendLine } from "../jsonl.js";
import type { ConsoleType, Xenconsoled } from "./daemon.js";

export class ConsoleServer extends UnixService {
  constructor(
    private readonly consoled: () => Xenconsoled,
    path: string,
  ) {
    super(path);
  }

  protected accept(s: Socket): void {
    const stop = readLines(
      s,
      (m) => {
        const rest = stop();
        const domid = m.domid;
        const c = this.consoled();
        const type: ConsoleType | undefined =
          m.type === "serial" || m.type === "pv"
            ? m.type
            : Number.isSafeInteger(domid)
              ? c.defaultType(domid as number)
              : undefined;
        if (!Number.isSafeInteger(domid) || !type || !c.has(domid as number, type)) {
          const what = type === "serial" ? "serial console" : "console";
          sendLine(s, { error: `xenconsoled: domain ${JSON.stringify(domid)} has no ${what}` });
          s.end();
          return;
        }
        sendLine(s, { ok: true });
        const detach = c.attach(
          domid as number,
          {
            // A client that does not read loses output past the backlog
            // (as xenconsoled discards what a full buffer cannot take),
            // rather than the host queueing it without limit.
            output: (b) => {
              if (!s.destroyed && s.writableLength < MAX_OUTPUT_BACKLOG) s.write(b);
            },
            closed: () => s.end(),
          },
          m.replay !== false,
          type,
        );
        s.on("close", detach);
        const input = (b: Buffer): void => {
          try {
            c.input(domid as number, b, type);
          } catch {
            s.end();
          }
        };
        if (rest.length > 0) input(rest);
        s.on("data", input);
      },
      () => {},
      { maxLine: 4096 },
    );
  }
}

/**
 * Attaches to domain `domid`'s console: resolves with the socket once
 * xenconsoled accepted, positioned at the raw console stream.
 */
export async function attachConsole(
  path: string,
  domid: number,
  replay = true,
  type?: ConsoleType,
): Promise<Socket> {
  const s = await connectUnix(path, "xenconsoled");
  sendLine(s, { domid, replay, ...(type ? { type } : {}) });
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(10);
      if (nl < 0) return;
      s.off("data", onData);
      const m = JSON.parse(buf.subarray(0, nl).toString()) as { ok?: boolean; error?: string };
      if (!m.ok) {
        s.destroy();
        reject(new Error(m.error ?? "xenconsoled refused"));
        return;
      }
      const rest = buf.subarray(nl + 1);
      s.pause();
      if (rest.length > 0) s.unshift(rest);
      resolve(s);
    };
    s.on("data", onData);
    s.once("close", () => reject(new Error("xenconsoled closed the connection")));
  });
}
