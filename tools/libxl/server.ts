/**
 * The host daemon's libxl socket (`<run dir>/libxl`): how `xl` reaches the
 * domain builder and the lifecycle that live in the daemon (domain.ts).
 * One JSON request per line, `{id, call, ...}`, answered `{id, ok}` or
 * `{id, error}`, where error names the layer and the cause. Calls:
 *
 *   create {config, paused}       → {domid}
 *   shutdown {domid, reason, wait, timeoutMs} → {reason} (when waiting)
 *   destroy {domid}, rename {domid, name}
 *   trigger {domid, trigger}      (power, reset: an HVM domain's buttons)
 *   waitShutdown {domid}          → {reason}, once it shut down or went
 *   memSet {domid, mib}, vcpuSet {domid, vcpus}
 *   diskAdd {domid, spec}, diskRemove {domid, vdev}, diskList {domid} → {disks}
 *   nicAdd {domid, spec} → {devid}, nicRemove {domid, devid}, nicList {domid} → {nics}
 *   listLong {domids?}            → {json} (xl list -l)
 *   stopHost {timeoutMs}          → shuts every guest down, then the host
 *   migrateSend {domid, debug, maxIters, minRemaining},
 *   migrateReceive {paused}       → the connection carries migration
 *                                   frames from then on (migrate.ts), the
 *                                   last one the result
 */
import type { Socket } from "node:net";
import { LineClient, connectUnix, UnixService, readLines, sendLine } from "../jsonl.js";
import type { Libxl } from "./domain.js";
import { checkDomainConfig } from "./config.js";
import { parseDiskSpec } from "./disk.js";
import { parseNicSpec } from "./nic.js";
import { SocketChannel } from "./migrate.js";
import { LIVE_MAX_ITERS, LIVE_MIN_REMAINING } from "../libxc/xc_sr.js";

export class LibxlServer extends UnixService {
  constructor(
    private readonly libxl: Libxl,
    path: string,
    private readonly onStop: (timeoutMs: number) => Promise<void>,
    private readonly log: (msg: string) => void = () => {},
  ) {
    super(path);
  }

  protected accept(s: Socket): void {
    const stopLines = readLines(
      s,
      (m) => {
        if (m.call === "migrateSend" || m.call === "migrateReceive") {
          this.migrate(s, m, stopLines());
          return;
        }
        this.handle(m).then(
          (ok) => sendLine(s, { id: m.id, ok: ok ?? {} }),
          (e: Error & { log?: string[] }) =>
            sendLine(s, { id: m.id, error: e.message, ...(e.log ? { log: e.log } : {}) }),
        );
      },
      (why) => this.log(`libxl: a client sent ${why}; disconnected`),
    );
  }

  /**
   * A migration's sender or receiver on connection `s` (its bytes past the
   * request line: `rest`), which carries frames from here on; the last
   * frame is the outcome.
   */
  private migrate(s: Socket, m: Record<string, unknown>, rest: Buffer): void {
    const ch = new SocketChannel(s, rest, this.log);
    const count = (k: string, dflt: number, min: number): number => {
      const v = m[k] ?? dflt;
      if (!Number.isSafeInteger(v) || (v as number) < min)
        throw new Error(
          `libxl: '${k}' must be an integer of at least ${min}, got ${JSON.stringify(v)}`,
        );
      return v as number;
    };
    const run = async (): Promise<Record<string, unknown>> => {
      if (m.call === "migrateReceive")
        return {
          domid: (
            await this.libxl.migrateReceive(ch, {
              paused: m.paused === true,
              debug: m.debug === true,
            })
          ).domid,
        };
      const r = await this.libxl.migrateSend(count("domid", -1, 0), ch, {
        debug: m.debug === true,
        maxIters: count("maxIters", LIVE_MAX_ITERS, 1),
        minRemaining: count("minRemaining", LIVE_MIN_REMAINING, 0),
      });
      return { rounds: r.stats.rounds, downtimeMs: r.downtimeMs };
    };
    run().then(
      (ok) => ch.finish({ ok }),
      (e: Error) => ch.finish({ error: e.message }),
    );
  }

  private async handle(m: Record<string, unknown>): Promise<Record<string, unknown> | void> {
    const int = (k: string): number => {
      const v = m[k];
      if (!Number.isSafeInteger(v) || (v as number) < 0) {
        throw new Error(`libxl: '${k}' must be a non-negative integer, got ${JSON.stringify(v)}`);
      }
      return v as number;
    };
    const x = this.libxl;
    switch (m.call) {
      case "create": {
        const config = checkDomainConfig(m.config);
        // xl's -v count: libxc's detail lines from one, libxl's debug lines from three.
        const verbose = Number.isSafeInteger(m.verbose) ? (m.verbose as number) : 0;
        const lines: string[] = [];
        const log = (l: string): void => {
          if (verbose >= (l.startsWith("libxl: debug:") ? 3 : 1)) lines.push(l);
        };
        try {
          const d = await x.create(config, { paused: m.paused === true, log });
          return { domid: d.domid, log: lines };
        } catch (e) {
          throw Object.assign(e as Error, { log: lines });
        }
      }
      case "shutdown": {
        const domid = int("domid");
        const reason = m.reason === "reboot" ? "reboot" : "poweroff";
        // xl shutdown -w waits as long as it takes, as Xen's does.
        const limit = m.timeoutMs ?? (m.wait === true ? undefined : 10_000);
        const done = x.shutdown(domid, reason, limit === undefined ? Infinity : Number(limit));
        if (m.wait === true) return { reason: await done };
        done.catch(() => {});
        return;
      }
      case "destroy":
        x.destroy(int("domid"));
        return;
      case "trigger":
        x.sendTrigger(int("domid"), String(m.trigger));
        return;
      case "sysrq":
        x.sendSysrq(int("domid"), String(m.key));
        return;
      case "save": {
        if (typeof m.file !== "string" || !m.file.startsWith("/"))
          throw new Error("libxl: save needs an absolute file path");
        const lines: string[] = [];
        try {
          await x.save(int("domid"), m.file, {
            checkpoint: m.checkpoint === true,
            leavePaused: m.paused === true,
            log: (l) => lines.push(l),
          });
          return { log: lines };
        } catch (e) {
          throw Object.assign(e as Error, { log: lines });
        }
      }
      case "restore": {
        if (typeof m.file !== "string" || !m.file.startsWith("/"))
          throw new Error("libxl: restore needs an absolute file path");
        const lines: string[] = [];
        try {
          const d = await x.restore(m.file, {
            paused: m.paused === true,
            log: (l) => lines.push(l),
          });
          return { domid: d.domid, log: lines };
        } catch (e) {
          throw Object.assign(e as Error, { log: lines });
        }
      }
      case "configUpdate":
        x.updateConfig(int("domid"), checkDomainConfig(m.config));
        return;
      case "backendStats":
        return { devices: x.backendStats() };
      case "coreDump":
        return { pages: await x.coreDump(int("domid"), String(m.path)) };
      case "waitShutdown":
        return { reason: await x.waitShutdown(int("domid")) };
      case "rename":
        x.rename(int("domid"), String(m.name));
        return;
      case "memSet":
        x.setMemoryTarget(int("domid"), int("mib"));
        return;
      case "vcpuSet":
        x.setVcpus(int("domid"), int("vcpus"));
        return;
      case "diskAdd": {
        const domid = int("domid");
        await x.attachDisk(domid, parseDiskSpec(String(m.spec)));
        return;
      }
      case "diskRemove":
        await x.removeDisk(int("domid"), String(m.vdev), Number(m.timeoutMs ?? 10_000));
        return;
      case "diskList":
        return { disks: x.listDisks(int("domid")) };
      case "nicAdd": {
        const devid = x.addNic(int("domid"), parseNicSpec(String(m.spec)));
        return { devid };
      }
      case "nicRemove":
        await x.removeNic(int("domid"), int("devid"), Number(m.timeoutMs ?? 10_000));
        return;
      case "nicList":
        return { nics: x.listNics(int("domid")) };
      case "channelList":
        return { channels: x.listChannels(int("domid")) };
      case "listLong": {
        const domids = Array.isArray(m.domids) ? (m.domids as number[]) : undefined;
        return { json: x.listLong(domids) };
      }
      case "stopHost":
        setImmediate(() => void this.onStop(Number(m.timeoutMs ?? 30_000)));
        return;
      default:
        throw new Error(`libxl: unknown call ${JSON.stringify(m.call)}`);
    }
  }
}

/** xl's side of the libxl socket. */
export class LibxlClient {
  private constructor(private readonly lines: LineClient) {}

  static async connect(path: string): Promise<LibxlClient> {
    return new LibxlClient(new LineClient(await connectUnix(path, "libxl"), "libxl"));
  }

  /** Makes `call`; resolves with its result or rejects with the daemon's error. */
  async call(call: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const r = await this.lines.request({ call, ...args });
    if (typeof r.error === "string") {
      const log = Array.isArray(r.log) ? r.log.map(String) : undefined;
      throw Object.assign(new Error(r.error), log ? { log } : {});
    }
    return (r.ok ?? {}) as Record<string, unknown>;
  }

  close(): void {
    this.lines.close();
  }
}
