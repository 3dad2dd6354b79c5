/**
 * The web console (`tsxen start --http [ADDR:]PORT`): one page, served by
 * the host daemon, that shows the domains, their consoles, xenstore and
 * the plumbing between them, live (docs/web-console.md).
 *
 * The page is static (built by tools/web/build.ts into dist/web/); all it
 * shows and does goes over one WebSocket at /ws (session.ts).
 *
 * Who may use it, as Jupyter decides: whoever holds the token the daemon
 * made at start (printed in the URL, kept in the run directory's
 * `web-url`, readable by its owner only). The first visit carries it in
 * the URL (`/?token=...`); the answer sets it as a cookie (HttpOnly,
 * SameSite=Strict) and sends the browser to `/` without it. Every request
 * needs it (cookie, `Authorization: Bearer`, or the query). Besides:
 *   - the WebSocket refuses an Origin other than the page's own, so no
 *     other site (another port on localhost is the same site to cookies)
 *     can drive it with the browser's cookie;
 *   - nothing changes state over plain HTTP: only GET and HEAD answer,
 *     so a cross-site form or image has nothing to reach (CSRF);
 *   - on loopback, a Host header that is not the address served is refused
 *     (a DNS-rebinding page reaches the port under its own name);
 *   - the page may not be framed, and loads nothing from elsewhere (CSP).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import type { Host } from "../host/host.js";
import type { Libxl } from "../libxl/domain.js";
import { DomainFigures } from "./figures.js";
import { Session } from "./session.js";

/** Where the built page is (dist/web, beside this file's dist/tools/web). */
export const PAGE_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "web");

/** The files the page is made of, and their types: nothing else is served. */
const FILES: Record<string, string> = {
  "/": "index.html",
  "/app.js": "app.js",
  "/app.css": "app.css",
};
const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
};

/** A WebSocket message's largest size (a config's text, a value, a line typed). */
export const MAX_MESSAGE = 256 * 1024;
/** Refusals kept for inspection. */
export const REFUSALS_KEPT = 64;
/** Pages connected at once. */
export const MAX_SESSIONS = 64;

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
  "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

export interface WebConsoleOptions {
  log?: (line: string) => void;
  /** The figures' refresh, ms (1000: a page's graphs move once a second). */
  intervalMs?: number;
}

export class WebConsole {
  /** The access token (48 hex digits). */
  readonly token = randomBytes(24).toString("hex");
  readonly figures: DomainFigures;
  private server: Server | undefined;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE });
  private readonly sessions = new Set<Session>();
  private readonly files = new Map<string, Buffer>();
  private listenHost = "127.0.0.1";
  private port = 0;
  private readonly log: (line: string) => void;
  private readonly ticker: NodeJS.Timeout;
  /**
   * The last REFUSALS_KEPT requests and WebSocket upgrades refused, by why
   * (tests read it); a client that keeps being refused does not grow it.
   */
  readonly refused: string[] = [];

  constructor(
    private readonly host: Host,
    private readonly libxl: Libxl,
    opts: WebConsoleOptions = {},
  ) {
    this.log = opts.log ?? (() => {});
    for (const name of new Set(Object.values(FILES))) {
      try {
        this.files.set(name, readFileSync(join(PAGE_DIR, name)));
      } catch (e) {
        throw new Error(
          `web console: the page is not built (${(e as Error).message}): run 'npm run build'`,
          { cause: e },
        );
      }
    }
    this.figures = new DomainFigures(host, libxl, opts.intervalMs ?? 1000);
    // The sessions' once-a-second work follows the figures' sample.
    this.ticker = setInterval(() => {
      for (const s of this.sessions) s.tick();
    }, opts.intervalMs ?? 1000);
    this.ticker.unref();
  }

  /** Listens; resolves with the URL to open (with the token). */
  listen(at: { host: string; port: number }): Promise<string> {
    const server = createServer((req, res) => this.request(req, res));
    server.on("upgrade", (req, socket, head) => this.upgrade(req, socket, head));
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(at.port, at.host, () => {
        const a = server.address();
        this.port = typeof a === "object" && a ? a.port : at.port;
        this.listenHost = at.host;
        resolve(`${this.origin()}/?token=${this.token}`);
      });
    });
  }

  /** The page's origin, as a browser that opens the URL sees it. */
  origin(): string {
    const h = this.listenHost.includes(":") ? `[${this.listenHost}]` : this.listenHost;
    return `http://${h === "0.0.0.0" || h === "[::]" ? "127.0.0.1" : h}:${this.port}`;
  }

  private cookieName(): string {
    // Cookies do not tell ports apart: each host's page keeps its own.
    return `tsxen-token-${this.port}`;
  }

  /** The token the request carries (cookie, bearer or query), if it is the right one. */
  private authorized(req: IncomingMessage, url: URL): boolean {
    const given: string[] = [];
    const q = url.searchParams.get("token");
    if (q) given.push(q);
    const auth = req.headers.authorization;
    if (auth?.startsWith("Bearer ")) given.push(auth.slice(7).trim());
    for (const part of (req.headers.cookie ?? "").split(";")) {
      const [k, ...v] = part.trim().split("=");
      if (k === this.cookieName()) given.push(v.join("="));
    }
    const want = Buffer.from(this.token);
    return given.some((g) => {
      const b = Buffer.from(g);
      return b.length === want.length && timingSafeEqual(b, want);
    });
  }

  /** On loopback, the Host header must name the address served (no DNS rebinding). */
  private hostAllowed(req: IncomingMessage): boolean {
    if (!LOOPBACK.has(this.listenHost)) return true;
    const h = (req.headers.host ?? "").toLowerCase();
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(h);
    if (!m) return false;
    const name = m[1]!.replace(/^\[|\]$/g, "");
    return LOOPBACK.has(name) && Number(m[2] ?? 80) === this.port;
  }

  private noteRefusal(why: string): void {
    this.refused.push(why);
    if (this.refused.length > REFUSALS_KEPT) this.refused.shift();
  }

  private refuse(res: ServerResponse, code: number, why: string): void {
    this.noteRefusal(why);
    res.writeHead(code, {
      "content-type": "text/plain; charset=utf-8",
      "cache-control": "no-store",
    });
    res.end(`tsxen: ${why}\n`);
  }

  private request(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://x");
    if (!this.hostAllowed(req))
      return this.refuse(
        res,
        403,
        `Host '${req.headers.host ?? ""}' is not this console's address`,
      );
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      return this.refuse(
        res,
        405,
        `${req.method} is not served: the console acts over its WebSocket`,
      );
    }
    if (!this.authorized(req, url))
      return this.refuse(
        res,
        403,
        "this page needs its token: open the URL the daemon printed (tsxen status shows it)",
      );
    if (url.searchParams.has("token")) {
      // Keep the token as a cookie and out of the address bar and history.
      res.writeHead(303, {
        location: url.pathname,
        "set-cookie": `${this.cookieName()}=${this.token}; HttpOnly; SameSite=Strict; Path=/`,
        "cache-control": "no-store",
        "referrer-policy": "no-referrer",
      });
      res.end();
      return;
    }
    if (url.pathname === "/favicon.ico") {
      res.writeHead(204).end();
      return;
    }
    const name = FILES[url.pathname];
    const body = name ? this.files.get(name) : undefined;
    if (!name || !body) {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
      res.end("not found\n");
      return;
    }
    res.writeHead(200, {
      "content-type": TYPES[name.split(".").pop()!]!,
      "content-length": body.length,
      "cache-control": "no-store",
      "content-security-policy": CSP,
      "x-content-type-options": "nosniff",
      "x-frame-options": "DENY",
      "referrer-policy": "no-referrer",
      "cross-origin-resource-policy": "same-origin",
      "cross-origin-opener-policy": "same-origin",
    });
    res.end(req.method === "HEAD" ? undefined : body);
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? "/", "http://x");
    const deny = (code: number, why: string): void => {
      this.noteRefusal(why);
      this.log(`web: refused a WebSocket: ${why}`);
      socket.end(
        `HTTP/1.1 ${code} ${code === 403 ? "Forbidden" : "Service Unavailable"}\r\n` +
          `content-type: text/plain\r\nconnection: close\r\n\r\ntsxen: ${why}\n`,
      );
    };
    if (url.pathname !== "/ws") return deny(403, `no WebSocket at ${url.pathname}`);
    if (!this.hostAllowed(req))
      return deny(403, `Host '${req.headers.host ?? ""}' is not this console's address`);
    const origin = req.headers.origin;
    // A browser always sends Origin; it must be the page's own. A client
    // that is not a browser sends none, and has only its token.
    if (origin !== undefined && origin !== `http://${req.headers.host ?? ""}`)
      return deny(403, `Origin '${origin}' is not this console's`);
    if (!this.authorized(req, url)) return deny(403, "the WebSocket needs the token");
    if (this.sessions.size >= MAX_SESSIONS)
      return deny(503, `${MAX_SESSIONS} pages are connected already`);
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const s = new Session(ws, {
        host: this.host,
        libxl: this.libxl,
        figures: this.figures,
        log: this.log,
      });
      this.sessions.add(s);
      ws.on("close", () => this.sessions.delete(s));
      ws.on("error", () => s.close());
    });
  }

  /** Pages connected now. */
  get connected(): number {
    return this.sessions.size;
  }

  async close(): Promise<void> {
    clearInterval(this.ticker);
    for (const s of this.sessions) s.close();
    this.sessions.clear();
    this.figures.dispose();
    this.wss.close();
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}
