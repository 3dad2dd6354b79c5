/**
 * One page's connection to the web console (a WebSocket): what it is sent
 * and what it may ask. Every message is a JSON object.
 *
 * Sent to the page (`t` names the kind):
 *   hello {host, examples}      once, first
 *   rows {rows, gone}           domain rows that changed, domains gone (figures.ts)
 *   tick {t, domid, cpu, vbd, net}   the selected domain's sample, once a second
 *   history {domid, h}          the selected domain's last minutes
 *   dmesg {text}                the hypervisor console: its ring first, then as printed
 *   console {domid, data} / console-closed {domid, reason}
 *   xs {path, node}             an open node (value, perms, children); node null: gone
 *   xs-child {path, name, child}  one child of an open node changed, came, or went (null)
 *   xs-inflight {conns}         xenstored's connections with their watches and transactions
 *   plumbing {domids, p}        the selected domains' plumbing (plumbing.ts), when it changed
 *   reply {id, ok | error, log} the answer to a request that had an id
 *
 * Asked by the page (`op`): create {cfg | example, paused}, pause, unpause,
 * shutdown, reboot, destroy, mem-set {domid, mib}, save {domid, file},
 * restore {file}; select {domid} (graphs); console {domid, type} (attach,
 * history replayed; domid -1 detaches), input {data}; xs-open {path},
 * xs-close {path}, xs-write {path, value}, xs-rm {path}, xs-inflight {on};
 * plumbing {domids}.
 * Errors are the words xl and the xenstore tools print.
 */
import type { WebSocket } from "ws";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { hostname } from "node:os";
import type { Host } from "../host/host.js";
import type { Libxl } from "../libxl/domain.js";
import type { DomainFigures } from "./figures.js";
import type { DomainRow, XsNodeView } from "./protocol.js";
import { plumbing } from "./plumbing.js";
import { CfgError, parseCfg } from "../libxlu/cfg.js";
import { domainConfig } from "../libxl/config.js";
import { EXAMPLES_DIR } from "../../extras/mini-os/paths.js";
import type { ConsoleType } from "../console/daemon.js";
import type { XsConnection } from "../xenstored/connection.js";
import type { Xenstored } from "../xenstored/xenstored.js";
import { parentOf } from "../xenstored/path.js";
import { formatPerm, type Perm } from "../xenstored/perms.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";
import { NR_CPUS } from "../../xen/common/domctl.js";

/** Output queued for a page past which console output is dropped (as xenconsoled drops). */
export const MAX_BUFFERED = 4 * 2 ** 20;
/** Output queued for a page past which the page is disconnected. */
export const MAX_BUFFERED_HARD = 32 * 2 ** 20;
/** Paths a page may hold open in its xenstore tree at once. */
export const MAX_OPEN_PATHS = 1024;
/** Children listed per node (a thousand domains' /local/domain shows them all). */
export const MAX_CHILDREN = 4096;
/** Bytes of a value sent in a listing. */
export const MAX_VALUE_SHOWN = 1024;
/** Connections listed in the in-flight view (those with watches or transactions first). */
export const MAX_CONNS_SHOWN = 200;

const dec = new TextDecoder();
const enc = new TextEncoder();

/** Permissions as xenstore-ls -p prints them: n0,r1, ... */
function permString(perms: readonly Perm[]): string {
  return perms.map(formatPerm).join(",");
}

function valueOf(v: Uint8Array): string {
  const s = dec.decode(v.subarray(0, MAX_VALUE_SHOWN));
  return v.length > MAX_VALUE_SHOWN ? `${s}…` : s;
}

/** The example guests' configs (extras/mini-os/examples/*.cfg), by name. */
export function exampleNames(): string[] {
  try {
    return readdirSync(EXAMPLES_DIR)
      .filter((f) => f.endsWith(".cfg"))
      .map((f) => f.slice(0, -4))
      .sort();
  } catch {
    return [];
  }
}

export interface SessionContext {
  host: Host;
  libxl: Libxl;
  figures: DomainFigures;
  log: (line: string) => void;
}

let sessions = 0;

export class Session {
  private readonly id = ++sessions;
  private readonly undo: Array<() => void> = [];
  private consoleDetach: (() => void) | undefined;
  private console: { domid: number; type: ConsoleType; dec: TextDecoder } | undefined;
  private readonly open = new Set<string>();
  private xs: { d: Xenstored; conn: XsConnection } | undefined;
  private xsPending = new Set<string>();
  private xsTimer: NodeJS.Immediate | undefined;
  private inflightTimer: NodeJS.Timeout | undefined;
  private inflightKey = "";
  private wantInflight = false;
  private selected = -1;
  private plumb: { domids: number[]; key: string } | undefined;
  private closed = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly ctx: SessionContext,
  ) {
    const { host, figures } = ctx;
    this.send({
      t: "hello",
      host: {
        hostname: hostname(),
        cpus: NR_CPUS,
        memKiB: (host.hv.frames.totalFrames * PAGE_SIZE) / 1024,
        freeKiB: (host.hv.frames.freeFrames * PAGE_SIZE) / 1024,
        boot: host.hv.bootDate,
      },
      examples: Object.fromEntries(
        exampleNames().map((n) => [n, readFileSync(join(EXAMPLES_DIR, `${n}.cfg`), "utf8")]),
      ),
    });
    this.send({ t: "rows", rows: figures.rows(), gone: [] });
    this.undo.push(
      figures.listen({
        rows: (changed, gone) => this.rows(changed, gone),
      }),
    );
    this.send({ t: "dmesg", text: host.dmesg() });
    const printk = (line: string): void => this.send({ t: "dmesg", text: `${line}\n` }, true);
    host.hv.console.listeners.add(printk);
    this.undo.push(() => host.hv.console.listeners.delete(printk));
    ws.on("message", (data, isBinary) => {
      if (isBinary) return this.fail("binary messages are not understood");
      let m: unknown;
      try {
        m = JSON.parse(String(data));
      } catch {
        return this.fail("a message that is not JSON");
      }
      if (typeof m !== "object" || m === null || Array.isArray(m))
        return this.fail("a message that is not a JSON object");
      void this.request(m as Record<string, unknown>);
    });
    ws.on("close", () => this.close());
  }

  /** Sends `msg`; a droppable one is dropped while the page is behind. */
  private send(msg: object, droppable = false): void {
    if (this.closed) return;
    const queued = this.ws.bufferedAmount;
    if (droppable && queued > MAX_BUFFERED) return;
    if (queued > MAX_BUFFERED_HARD) {
      // A page that reads nothing is not queued for without limit.
      this.ctx.log(`web: page ${this.id} left ${queued} bytes unread; disconnected`);
      this.ws.terminate();
      this.close();
      return;
    }
    this.ws.send(JSON.stringify(msg));
  }

  private fail(why: string): void {
    this.ctx.log(`web: page ${this.id} sent ${why}; disconnected`);
    this.ws.close(1003, why.slice(0, 100));
  }

  private rows(changed: DomainRow[], gone: number[]): void {
    this.send({ t: "rows", rows: changed, gone });
    if (gone.includes(this.console?.domid ?? -1)) this.detachConsole();
  }

  /** Once a second, after the figures: the selected domain's sample and the plumbing shown. */
  tick(): void {
    if (this.selected >= 0) {
      const last = this.ctx.figures.latest(this.selected);
      if (last) this.send({ t: "tick", domid: this.selected, ...last }, true);
    }
    this.sendPlumbing(false);
  }

  private sendPlumbing(force: boolean): void {
    if (!this.plumb) return;
    const p = plumbing(this.ctx.host, this.plumb.domids);
    const key = JSON.stringify(p);
    if (!force && key === this.plumb.key) return;
    this.plumb.key = key;
    this.send({ t: "plumbing", domids: this.plumb.domids, p });
  }

  private async request(m: Record<string, unknown>): Promise<void> {
    const id = m.id;
    try {
      const ok = await this.handle(m);
      if (id !== undefined) this.send({ t: "reply", id, ok: ok ?? {} });
    } catch (e) {
      const err = e as Error & { log?: string[] };
      if (id !== undefined) this.send({ t: "reply", id, error: err.message, log: err.log ?? [] });
      else this.ctx.log(`web: ${err.message}`);
    }
  }

  private async handle(m: Record<string, unknown>): Promise<object | void> {
    const { host, libxl } = this.ctx;
    const domid = (): number => {
      const v = m.domid;
      if (!Number.isSafeInteger(v) || (v as number) < 0)
        throw new Error(`'domid' must be a domain id, got ${JSON.stringify(v)}`);
      const d = v as number;
      if (!host.hv.domainById(d)) throw new Error(`${d} is an invalid domain identifier (rc=-6)`);
      return d;
    };
    const str = (k: string, max = 4096): string => {
      const v = m[k];
      if (typeof v !== "string" || v.length > max)
        throw new Error(`'${k}' must be a string of at most ${max} characters`);
      return v;
    };
    const guest = (): number => {
      const d = domid();
      if (d === 0) throw new Error("Domain 0 cannot be the target of this operation");
      return d;
    };
    const acted = <T>(r: T): T => {
      this.ctx.figures.sampleSoon();
      return r;
    };
    switch (m.op) {
      case "create":
        return acted(await this.create(m));
      case "pause":
        return acted(void (await libxl.xc.domainPause(guest())));
      case "unpause":
        return acted(void (await libxl.xc.domainUnpause(guest())));
      case "shutdown":
      case "reboot": {
        const d = guest();
        const done = libxl.shutdown(d, m.op === "reboot" ? "reboot" : "poweroff", 10_000);
        done.catch(() => {});
        // As xl shutdown without -w: the request is made; what the guest does shows in its row.
        await Promise.race([done, new Promise((r) => setTimeout(r, 50))]);
        return acted({});
      }
      case "destroy": {
        const v = m.domid;
        if (v === 0)
          throw new Error(
            "Not destroying domain 0; use -f to force.\nThis can only be done when using a disaggregated hardware domain and toolstack.",
          );
        return acted(void libxl.destroy(domid()));
      }
      case "mem-set": {
        const mib = m.mib;
        if (!Number.isSafeInteger(mib) || (mib as number) <= 0)
          throw new Error(`invalid memory size: ${JSON.stringify(mib)}`);
        return acted(void libxl.setMemoryTarget(guest(), mib as number));
      }
      case "save": {
        const file = str("file");
        if (!file.startsWith("/")) throw new Error("libxl: save needs an absolute file path");
        const log: string[] = [];
        await libxl.save(guest(), file, { log: (l) => log.push(l) });
        return acted({ log });
      }
      case "restore": {
        const file = str("file");
        if (!file.startsWith("/")) throw new Error("libxl: restore needs an absolute file path");
        const log: string[] = [];
        const d = await libxl.restore(file, { paused: m.paused === true, log: (l) => log.push(l) });
        return acted({ domid: d.domid, log });
      }
      case "select": {
        this.selected = domid();
        this.send({
          t: "history",
          domid: this.selected,
          h: this.ctx.figures.history(this.selected),
        });
        return;
      }
      case "console":
        return this.attachConsole(m);
      case "input": {
        const c = this.console;
        if (!c) throw new Error("no console is attached");
        host.xenconsoled.input(c.domid, enc.encode(str("data", 65536)), c.type);
        return;
      }
      case "xs-open":
        return this.xsOpen(str("path"));
      case "xs-close":
        this.open.delete(str("path"));
        return;
      case "xs-write": {
        const x = this.xsConn();
        const path = str("path");
        try {
          x.d.write(x.d.store, x.conn, x.d.path(x.conn, path), enc.encode(str("value", 65536)));
        } catch (e) {
          throw new Error(`could not write path ${path}: ${(e as Error).message}`, { cause: e });
        }
        return;
      }
      case "xs-rm": {
        const x = this.xsConn();
        const path = str("path");
        try {
          x.d.rm(x.d.store, x.conn, x.d.path(x.conn, path));
        } catch (e) {
          throw new Error(`could not remove path ${path}: ${(e as Error).message}`, {
            cause: e,
          });
        }
        return;
      }
      case "xs-inflight":
        this.wantInflight = m.on !== false;
        if (this.wantInflight) this.sendInflight(true);
        return;
      case "plumbing": {
        const ids = m.domids;
        if (
          !Array.isArray(ids) ||
          ids.length < 1 ||
          ids.length > 2 ||
          !ids.every((x) => Number.isSafeInteger(x))
        )
          throw new Error("'domids' must be one or two domain ids");
        this.plumb = { domids: ids as number[], key: "" };
        this.sendPlumbing(true);
        return;
      }
      default:
        throw new Error(`unknown request ${JSON.stringify(m.op)}`);
    }
  }

  /** xl create from a config's text, or from an example guest's .cfg. */
  private async create(m: Record<string, unknown>): Promise<object> {
    let text: string;
    let file: string;
    const dir = EXAMPLES_DIR;
    if (typeof m.example === "string") {
      if (!exampleNames().includes(m.example))
        throw new Error(`Failed to read config file: ${m.example}: no such example guest`);
      file = join(dir, `${m.example}.cfg`);
      text = readFileSync(file, "utf8");
    } else if (typeof m.cfg === "string" && m.cfg.length <= 64 * 1024) {
      text = m.cfg;
      file = "<web console>";
    } else {
      throw new Error("create needs 'cfg' (the config's text, at most 64 KiB) or 'example'");
    }
    const log = [`Parsing config from ${file}`];
    let parsed;
    try {
      parsed = domainConfig(parseCfg(text, file), file, dir);
    } catch (e) {
      if (e instanceof CfgError)
        throw Object.assign(new Error(`Failed to parse config: ${e.message}`), { log });
      throw Object.assign(e as Error, { log });
    }
    for (const w of parsed.warnings) log.push(`Warning: ${w}`);
    try {
      const d = await this.ctx.libxl.create(parsed.config, {
        paused: m.paused === true,
        log: () => {},
      });
      return { domid: d.domid, log };
    } catch (e) {
      throw Object.assign(e as Error, { log });
    }
  }

  private detachConsole(): void {
    this.consoleDetach?.();
    this.consoleDetach = undefined;
    this.console = undefined;
  }

  private attachConsole(m: Record<string, unknown>): object {
    this.detachConsole();
    if (m.domid === -1) return {};
    const d = m.domid;
    const c = this.ctx.host.xenconsoled;
    if (!Number.isSafeInteger(d)) throw new Error(`'domid' must be a domain id`);
    const domid = d as number;
    const type: ConsoleType =
      m.type === "serial" ? "serial" : m.type === "pv" ? "pv" : c.defaultType(domid);
    if (!c.has(domid, type))
      throw new Error(
        `xenconsoled: domain ${domid} has no ${type === "serial" ? "serial console" : "console"}`,
      );
    const state = { domid, type, dec: new TextDecoder() };
    this.console = state;
    this.consoleDetach = c.attach(
      domid,
      {
        output: (b) => {
          if (this.console === state)
            this.send({ t: "console", domid, data: state.dec.decode(b, { stream: true }) }, true);
        },
        closed: (reason) => {
          if (this.console !== state) return;
          this.send({ t: "console-closed", domid, reason });
          this.console = undefined;
          this.consoleDetach = undefined;
        },
      },
      true,
      type,
    );
    return { domid, type };
  }

  // --- xenstore ---------------------------------------------------------------

  /** The page's own xenstore connection (Dom0's, privileged), with its watch on everything. */
  private xsConn(): { d: Xenstored; conn: XsConnection } {
    const d = this.ctx.host.xenstored;
    if (this.xs?.d === d) return this.xs;
    // xenstored was restarted (live update): a new connection to the new one.
    this.xs?.conn.close();
    const conn = d.connect(
      0,
      true,
      () => {},
      `web console ${this.id}`,
      (path) => this.xsChanged(path),
    );
    d.watches.add({
      owner: conn,
      path: "/",
      token: `web-${this.id}`,
      relative: false,
      depth: undefined,
    });
    const onInflight = (): void => this.inflightChanged();
    d.inFlightListeners.add(onInflight);
    this.xs = { d, conn };
    this.undo.push(() => d.inFlightListeners.delete(onInflight));
    return this.xs;
  }

  private node(path: string): XsNodeView | null {
    const d = this.xsConn().d;
    const n = d.store.get(path);
    if (!n) return null;
    const children = n.children.slice(0, MAX_CHILDREN).map((name) => {
      const c = d.store.get(path === "/" ? `/${name}` : `${path}/${name}`);
      return {
        name,
        value: c ? valueOf(c.value) : "",
        perms: c ? permString(c.perms) : "",
        n: c?.children.length ?? 0,
      };
    });
    return { value: valueOf(n.value), perms: permString(n.perms), children };
  }

  private xsOpen(path: string): object {
    const x = this.xsConn();
    const p = path === "/" ? "/" : x.d.path(x.conn, path);
    if (!this.open.has(p) && this.open.size >= MAX_OPEN_PATHS)
      throw new Error(`at most ${MAX_OPEN_PATHS} xenstore paths may be open`);
    this.open.add(p);
    this.send({ t: "xs", path: p, node: this.node(p) });
    return {};
  }

  /**
   * A watch event: the node and each ancestor whose parent the page has
   * open is sent again (a write may have made the nodes above it), once per
   * turn of the event loop however many events came.
   */
  private xsChanged(path: string): void {
    if (this.open.size === 0) return;
    for (let p = path; ; p = parentOf(p)) {
      if (this.open.has(p) || this.open.has(parentOf(p))) this.xsPending.add(p);
      if (p === "/" || p === "") break;
    }
    if (this.xsPending.size === 0) return;
    this.xsTimer ??= setImmediate(() => {
      this.xsTimer = undefined;
      const paths = [...this.xsPending];
      this.xsPending.clear();
      for (const p of paths) {
        const parent = parentOf(p);
        if (p !== "/" && this.open.has(parent)) {
          // The node as its parent's listing shows it.
          const d = this.xsConn().d;
          const c = d.store.get(p);
          this.send({
            t: "xs-child",
            path: parent,
            name: p.slice(parent === "/" ? 1 : parent.length + 1),
            child: c
              ? { value: valueOf(c.value), perms: permString(c.perms), n: c.children.length }
              : null,
          });
        }
        if (this.open.has(p)) this.send({ t: "xs", path: p, node: this.node(p) });
      }
    });
  }

  private inflightChanged(): void {
    if (!this.wantInflight) return;
    // Coalesced: a burst of watches and transactions is one update.
    this.inflightTimer ??= setTimeout(() => {
      this.inflightTimer = undefined;
      this.sendInflight(false);
    }, 50);
  }

  private sendInflight(force: boolean): void {
    const d = this.xsConn().d;
    const watches = new Map<unknown, Array<{ path: string; token: string }>>();
    for (const w of d.watches.list()) {
      let l = watches.get(w.owner);
      if (!l) watches.set(w.owner, (l = []));
      l.push({ path: w.path, token: w.token });
    }
    const conns = [...d.connections]
      .map((c) => ({
        name: c.name,
        domid: c.domid,
        watches: watches.get(c) ?? [],
        transactions: [...c.transactions.keys()],
      }))
      .sort(
        (a, b) =>
          b.watches.length + b.transactions.length - (a.watches.length + a.transactions.length),
      );
    const msg = { t: "xs-inflight", total: conns.length, conns: conns.slice(0, MAX_CONNS_SHOWN) };
    const key = JSON.stringify(msg);
    if (!force && key === this.inflightKey) return;
    this.inflightKey = key;
    this.send(msg);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.detachConsole();
    for (const u of this.undo) u();
    this.xs?.conn.close();
    if (this.xsTimer) clearImmediate(this.xsTimer);
    clearTimeout(this.inflightTimer);
    if (this.ws.readyState === this.ws.OPEN) this.ws.close();
  }
}
