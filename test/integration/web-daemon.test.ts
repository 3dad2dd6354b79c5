/**
 * `tsxen start --http`: the daemon serves the web console, prints its URL
 * with the token, keeps the URL in a file only its owner reads, and
 * `tsxen status` shows it; what xl does from the shell shows on a
 * connected client at once. A client that sends what the console does not
 * understand (not JSON, too big, unknown requests, bad arguments) gets an
 * error or is disconnected, and the host carries on.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { cli, EXAMPLES, TSXEN, XL } from "../cli.js";
import { WebSocket } from "ws";

const { dir, run, ok } = cli("tsxen-webd-");

let url = "";
let started = "";

before(() => {
  started = ok(TSXEN, "start", "--http", "0");
  url = readFileSync(join(dir, "run", "web-url"), "utf8").trim();
});

after(() => {
  run(TSXEN, ["stop", "--timeout", "5"]);
  rmSync(dir, { recursive: true, force: true });
});

/** A client of the console's WebSocket, with the token as a bearer (no browser, so no Origin). */
class Client {
  readonly msgs: Array<Record<string, unknown>> = [];
  closed: { code: number; reason: string } | undefined;
  private waiters: Array<() => void> = [];
  private next = 1;

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (d) => {
      this.msgs.push(JSON.parse(String(d)) as Record<string, unknown>);
      for (const w of this.waiters.splice(0)) w();
    });
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: String(reason) };
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static open(): Promise<Client> {
    const token = new URL(url).searchParams.get("token")!;
    const ws = new WebSocket(`${new URL(url).origin.replace("http", "ws")}/ws`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return new Promise((res, rej) => {
      ws.on("open", () => res(new Client(ws)));
      ws.on("error", rej);
    });
  }

  /** Waits until `pred` holds of the messages so far (or the connection closes). */
  async until(pred: () => boolean, ms = 10_000): Promise<void> {
    const end = Date.now() + ms;
    while (!pred()) {
      if (this.closed) throw new Error(`closed: ${this.closed.code} ${this.closed.reason}`);
      if (Date.now() > end) throw new Error("timed out");
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }

  async call(op: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = this.next++;
    this.ws.send(JSON.stringify({ id, op, ...args }));
    let r: Record<string, unknown> | undefined;
    await this.until(
      () => (r = this.msgs.find((m) => m.t === "reply" && m.id === id)) !== undefined,
    );
    return r!;
  }

  /** Closes and waits for the close to finish (a spawnSync after it would hold the handshake up). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.ws.close();
    await this.until(() => this.closed !== undefined).catch(() => this.ws.terminate());
  }

  rowsOf(domid: number): Array<Record<string, unknown>> {
    return this.msgs
      .filter((m) => m.t === "rows")
      .flatMap((m) => m.rows as Array<Record<string, unknown>>)
      .filter((r) => r.domid === domid);
  }

  gone(domid: number): boolean {
    return this.msgs.some((m) => m.t === "rows" && (m.gone as number[]).includes(domid));
  }
}

test("the daemon prints the console's URL with its token; the file is its owner's alone", () => {
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{48}$/, "loopback unless told");
  assert.ok(started.includes(`web console at ${url}`), started);
  assert.equal(statSync(join(dir, "run", "web-url")).mode & 0o777, 0o600);
  assert.ok(ok(TSXEN, "status").includes(`web console at ${url}`));
  // The daemon's log (which others may read) names the file, not the token.
  const log = readFileSync(join(dir, "log", "tsxen.log"), "utf8");
  assert.match(
    log,
    /web console at http:\/\/127\.0\.0\.1:\d+\/ \(its URL with the token: .*web-url\)/,
  );
  assert.ok(!log.includes(new URL(url).searchParams.get("token")!), "the token is in the log");
});

test("what xl does from the shell shows on a connected page at once", async () => {
  const c = await Client.open();
  try {
    await c.until(() => c.msgs.some((m) => m.t === "hello"));
    await c.until(() => c.rowsOf(0).length > 0);
    ok(XL, "create", join(EXAMPLES, "echo.cfg"), 'name="shell-made"');
    const domid = Number(ok(XL, "domid", "shell-made").trim());
    await c.until(() => c.rowsOf(domid).some((r) => r.name === "shell-made"), 2000);
    ok(XL, "pause", "shell-made");
    // A pause is seen at the next sample (once a second).
    await c.until(() => c.rowsOf(domid).some((r) => /^..p/.test(String(r.state))), 3000);
    // The page's own actions go through the same libxl as xl's.
    const r = await c.call("unpause", { domid });
    assert.deepEqual(r.ok, {});
    assert.doesNotMatch(ok(XL, "list", "shell-made"), /--p---|-bp---|r-p---/);
    ok(XL, "destroy", "shell-made");
    await c.until(() => c.gone(domid), 2000);
  } finally {
    await c.close();
  }
});

test("errors are the words xl prints; bad requests are answered, not obeyed", async () => {
  const c = await Client.open();
  try {
    const err = async (op: string, args: Record<string, unknown>): Promise<string> =>
      String((await c.call(op, args)).error);
    assert.match(await err("destroy", { domid: 0 }), /^Not destroying domain 0; use -f to force/);
    assert.match(await err("pause", { domid: 4242 }), /4242 is an invalid domain identifier/);
    assert.match(await err("pause", { domid: "1; rm -rf /" }), /'domid' must be a domain id/);
    assert.match(
      await err("create", { cfg: 'name = "x"\nmemory = 4\n' }),
      /Failed to parse config: .*'kernel'/,
    );
    assert.match(await err("create", { example: "../../../etc/passwd" }), /no such example guest/);
    assert.match(await err("console", { domid: 4242 }), /xenconsoled: domain 4242 has no console/);
    assert.match(await err("input", { data: "x" }), /no console is attached/);
    assert.match(await err("save", { domid: 0, file: "relative" }), /absolute file path/);
    assert.match(
      await err("xs-write", { path: "relative/../x", value: "v" }),
      /could not write path/,
    );
    assert.match(await err("plumbing", { domids: [1, 2, 3] }), /one or two domain ids/);
    assert.match(await err("nonsense", {}), /unknown request "nonsense"/);
    // Paths held open are bounded.
    let last = "";
    for (let i = 0; i < 1100 && !last; i++) {
      const r = await c.call("xs-open", { path: `/local/domain/0/nope${i}` });
      if (typeof r.error === "string") last = r.error;
    }
    assert.match(last, /at most 1024 xenstore paths may be open/);
  } finally {
    await c.close();
  }
});

test("a client that sends what is not JSON, or too much at once, is disconnected; the host carries on", async () => {
  for (const bad of ["not json", "[1,2,3]", "x".repeat(300 * 1024)]) {
    const c = await Client.open();
    c.ws.send(bad);
    await c.until(() => c.closed !== undefined).catch(() => {});
    assert.ok(c.closed, `still connected after ${bad.slice(0, 20)}`);
    assert.ok([1003, 1009].includes(c.closed.code), `closed with ${c.closed.code}`);
  }
  // The host answers as before.
  assert.match(ok(XL, "list"), /Domain-0/);
  const c = await Client.open();
  await c.until(() => c.msgs.some((m) => m.t === "hello"));
  await c.close();
});

test("a bad --http spec is refused before anything starts", () => {
  const r = run(TSXEN, ["start", "--http", "nowhere:port"]);
  assert.equal(r.code, 2);
  assert.match(r.err, /--http nowhere:port: expected \[ADDR:\]PORT/);
});
