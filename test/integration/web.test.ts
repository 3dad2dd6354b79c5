/**
 * The web console in a real browser: Debian's chromium, headless, driven by
 * playwright-core (which brings no browser of its own). The host, its libxl
 * and the console run in this process as the daemon runs them; xenstore is
 * also served on a socket so that Xen's own xenstore-write reaches it from
 * the shell. The tests create a domain from the page, type into its console,
 * watch xenstore, look at a vchan pair's plumbing, destroy from the page,
 * and try the console without its token and from another origin. Each
 * view's screenshot goes to build/test-output/web/.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer, request as httpRequest, type Server } from "node:http";
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WebSocket } from "ws";
import type { Browser, Page } from "playwright-core";
import { launchChromium, SHOTS } from "../browser.js";
import type { Host } from "../../tools/host/host.js";
import { Libxl } from "../../tools/libxl/domain.js";
import { REFUSALS_KEPT, WebConsole } from "../../tools/web/server.js";
import { Vchan } from "../../tools/libvchan/vchan.js";
import { newHost, until } from "../helpers.js";

const dir = mkdtempSync(join(tmpdir(), "tsxen-web-"));
const xsSocket = join(dir, "xenstored.sock");
let host: Host;
let libxl: Libxl;
let web: WebConsole;
let url = "";
let origin = "";
let browser: Browser;
let page: Page;
/** The echo guest the page made. */
let echoDomid = -1;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  host = newHost();
  libxl = new Libxl(host);
  host.xenstored.writeText("/local/domain/0/name", "Domain-0");
  await host.serveXenstore(xsSocket);
  web = new WebConsole(host, libxl);
  url = await web.listen({ host: "127.0.0.1", port: 0 });
  origin = web.origin();
  browser = await launchChromium();
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  await page.waitForSelector("#domains tbody tr[data-domid='0']");
  assert.deepEqual(errors, []);
});

after(async () => {
  await browser?.close();
  await web?.close();
  await host?.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

/** GET `path` with extra headers; resolves with status, headers and body. */
function get(
  path: string,
  headers: Record<string, string> = {},
  method = "GET",
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${origin}${path}`, { method, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** Opens the WebSocket as a non-browser client would; resolves with the refusal's status, or 101. */
function wsStatus(headers: Record<string, string>, path = "/ws"): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${origin.replace("http", "ws")}${path}`, { headers });
    ws.on("open", () => {
      ws.close();
      resolve(101);
    });
    ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
    ws.on("error", () => resolve(-1));
  });
}

/** The domain list's row of the domain named `name`. */
function domainRow(name: string): ReturnType<Page["locator"]> {
  return page
    .locator("#domains tbody tr")
    .filter({ has: page.locator("td:first-child", { hasText: new RegExp(`^${name}$`) }) });
}

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

async function tab(name: string): Promise<void> {
  await page.click(`#tabs button[data-tab=${name}]`);
}

test("nothing answers without the token, from another Origin or Host, or to a POST", async () => {
  const token = web.token;
  assert.equal((await get("/")).status, 403);
  assert.match((await get("/app.js")).body, /needs its token/);
  assert.equal((await get(`/?token=${"0".repeat(token.length)}`)).status, 403);
  assert.equal((await get(`/?token=${token.slice(0, 10)}`)).status, 403);
  const first = await get(`/?token=${token}`);
  assert.equal(first.status, 303);
  assert.equal(first.headers.location, "/");
  const cookie = String(first.headers["set-cookie"]);
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /SameSite=Strict/);
  const jar = cookie.split(";")[0]!;
  const ok = await get("/", { cookie: jar });
  assert.equal(ok.status, 200);
  assert.match(String(ok.headers["content-security-policy"]), /frame-ancestors 'none'/);
  assert.equal(ok.headers["x-frame-options"], "DENY");
  assert.equal((await get("/", { authorization: `Bearer ${token}` })).status, 200);
  // Nothing changes over plain HTTP: a cross-site form has nothing to post to.
  assert.equal((await get("/", { cookie: jar }, "POST")).status, 405);
  // A DNS-rebinding page reaches the port under its own name.
  assert.equal((await get("/", { cookie: jar, host: "evil.example:80" })).status, 403);
  // The WebSocket: the token, then the page's own Origin and Host, are needed.
  assert.equal(await wsStatus({}), 403);
  assert.equal(await wsStatus({ origin }), 403);
  assert.equal(await wsStatus({ cookie: jar, origin: "http://evil.example" }), 403);
  assert.equal(await wsStatus({ cookie: jar, origin: "http://127.0.0.1:1" }), 403);
  assert.equal(await wsStatus({ cookie: jar, origin, host: "evil.example" }), 403);
  assert.equal(await wsStatus({ cookie: jar, origin }), 101);
  assert.equal(await wsStatus({ authorization: `Bearer ${token}` }), 101);
  assert.equal(await wsStatus({ cookie: jar, origin }, "/other"), 403);

  // In the browser: a page of another origin on this machine (the same
  // *site* to cookies, so the browser sends the console's cookie) cannot
  // open the console's WebSocket.
  const other: Server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(`<script>
      const ws = new WebSocket(${JSON.stringify(`${origin.replace("http", "ws")}/ws`)});
      ws.onopen = () => (document.title = "opened");
      ws.onclose = () => (document.title = "refused");
    </script>`);
  });
  await new Promise<void>((r) => other.listen(0, "127.0.0.1", () => r()));
  const port = (other.address() as { port: number }).port;
  const before = web.refused.length;
  let p2: Page | undefined;
  try {
    p2 = await page.context().newPage();
    await p2.goto(`http://127.0.0.1:${port}/`);
    await p2.waitForFunction(() => document.title !== "", null, { timeout: 5000 });
    assert.equal(await p2.title(), "refused");
    assert.ok(
      web.refused.slice(before).some((w) => w.includes(`Origin 'http://127.0.0.1:${port}'`)),
      `refusals: ${web.refused.slice(before).join("; ")}`,
    );
  } finally {
    await p2?.close();
    other.close();
  }
  // A client that keeps being refused does not make the console keep more.
  for (let i = 0; i < 3 * REFUSALS_KEPT; i++) assert.equal((await get(`/nope${i}`)).status, 403);
  assert.equal(web.refused.length, REFUSALS_KEPT);
  assert.match(web.refused.at(-1)!, /needs its token/);
});

test("create a domain from the page, type into its console and see the echo", async () => {
  await page.selectOption("#example", "echo");
  await page.click("#create-btn");
  const row = domainRow("echo");
  await row.waitFor();
  const domid = Number(await row.getAttribute("data-domid"));
  echoDomid = domid;
  assert.ok(domid > 0);
  assert.ok(host.hv.domainById(domid), "the domain exists in the hypervisor");
  assert.match((await page.textContent("#errors")) ?? "", /Parsing config from .*echo\.cfg/);
  await page.waitForSelector("#console-title:has-text('pv console')");
  await until(() => /echo/.test(host.readConsole(domid)), 5000, "the echo guest's banner");
  await page.click("#terminal");
  await page.keyboard.type("hello from the page\r");
  await page.waitForFunction(
    () => document.querySelector("#terminal")?.textContent?.includes("echo: hello from the page"),
    null,
    { timeout: 5000 },
  );
  // The guest really got it: its console log has it too.
  assert.match(host.readConsole(domid), /echo: hello from the page/);
  // The row's figures, and the graphs, are there.
  assert.match((await row.locator("td").nth(2).textContent()) ?? "", /^[r-][b-][p-][s-].[d-]$/);
  assert.ok((await page.locator("#graphs canvas").count()) >= 2);
  await shot("domains-console");
});

test("a bad config is refused with xl's words, and nothing is made", async () => {
  const before = host.hv.domains.size;
  await page.fill(
    "#cfg",
    'name = "bad"\nkernel = "../../../build/mini-os/hello.wasm"\nmemory = "lots"\n',
  );
  await page.click("#create-btn");
  await page.waitForSelector("#errors.error");
  assert.match((await page.textContent("#errors")) ?? "", /Failed to parse config: .*'memory'/);
  assert.equal(host.hv.domains.size, before);
  await page.fill("#cfg", "");
});

test("a xenstore node written from the shell appears within 100 ms", async () => {
  await tab("xenstore");
  for (const p of ["/local", "/local/domain", "/local/domain/0"]) {
    await page.click(`li[data-path='${p}'] > .xsnode`);
    await page.waitForSelector(`li[data-path='${p}'] > ul`);
  }
  await page.waitForSelector("li[data-path='/local/domain/0/name']");
  // In-flight: Dom0's backends' watches are listed.
  await page.waitForSelector("#xs-inflight:has-text('dom0-xenbus')");
  // The page notes when the node appears (wall-clock ms), so the browser driver's polling is not counted.
  await page.evaluate(() => {
    const w = window as unknown as { xsShownAt?: number };
    const seen = (): boolean =>
      document.querySelector("li[data-path='/local/domain/0/web-test']") !== null;
    new MutationObserver((_m, obs) => {
      if (!seen()) return;
      w.xsShownAt = performance.timeOrigin + performance.now();
      obs.disconnect();
    }).observe(document.body, { childList: true, subtree: true });
  });
  const exited = await new Promise<number>((resolve, reject) => {
    const c = spawn("xenstore-write", ["/local/domain/0/web-test", "written from the shell"], {
      env: { ...process.env, XENSTORED_PATH: xsSocket },
      stdio: "inherit",
    });
    c.on("error", reject);
    c.on("exit", (code) =>
      code === 0
        ? resolve(performance.timeOrigin + performance.now())
        : reject(new Error(`xenstore-write: ${code}`)),
    );
  });
  const shownAt = Number(
    await page
      .waitForFunction(() => (window as unknown as { xsShownAt?: number }).xsShownAt, null, {
        timeout: 5000,
      })
      .then((h) => h.jsonValue()),
  );
  console.log(
    `# the node was shown ${(shownAt - exited).toFixed(1)} ms after xenstore-write exited`,
  );
  assert.ok(
    shownAt - exited <= 100,
    `shown ${(shownAt - exited).toFixed(1)} ms after xenstore-write exited`,
  );
  assert.match(
    (await page.textContent("li[data-path='/local/domain/0/web-test']")) ?? "",
    /web-test = "written from the shell" \(n0\)/,
  );
  // Dom0 edits from the page: write, then remove.
  await page.fill("#xs-path", "/local/domain/0/web-test");
  await page.fill("#xs-value", "edited in the page");
  await page.click("#xs-write");
  await until(
    () => host.xenstored.readText("/local/domain/0/web-test") === "edited in the page",
    2000,
    "the write",
  );
  await page.waitForSelector(
    "li[data-path='/local/domain/0/web-test']:has-text('edited in the page')",
  );
  await shot("xenstore");
  await page.click("#xs-rm");
  await page.waitForSelector("li[data-path='/local/domain/0/web-test']", { state: "detached" });
  assert.equal(host.xenstored.readText("/local/domain/0/web-test"), undefined);
});

test("the hypervisor console is beside it", async () => {
  await tab("console");
  host.hv.console.printk("web test: a line from the hypervisor");
  await page.waitForSelector("#dmesg:has-text('web test: a line from the hypervisor')");
  assert.match((await page.textContent("#dmesg")) ?? "", /Xen/);
  assert.ok(await page.isVisible("#terminal"), "the guest's console beside it");
  await shot("consoles");
});

test("the vchan tutorial's pair reads at a glance: its channel, its grants, its rendezvous", async () => {
  // The tutorial's guest, made from the page: vchan-echo serving Dom0.
  await tab("console");
  await page.fill("#cfg", "");
  await page.selectOption("#example", "vchan-echo");
  await page.click("#create-btn");
  const row = domainRow("vchan-echo");
  await row.waitFor();
  const domid = Number(await row.getAttribute("data-domid"));
  await until(() => /serves d0/.test(host.readConsole(domid)), 5000, "the vchan server");
  const cli = Vchan.client(
    { drivers: host.dom0, xenstored: host.xenstored },
    domid,
    `/local/domain/${domid}/data/vchan/echo`,
  );
  try {
    await cli.writeAll(new TextEncoder().encode("ping"));
    assert.equal(new TextDecoder().decode(await cli.readExact(4)), "ping");
    await tab("plumbing");
    await page.selectOption("#plumb-a", String(domid));
    await page.selectOption("#plumb-b", "0");
    await page.waitForSelector(".vchans td:has-text('connected')");
    await page.waitForSelector("path.wire.evtchn");
    await page.waitForSelector("path.wire.grant");
    const text = (await page.textContent("#plumbing")) ?? "";
    assert.match(text, new RegExp(`/local/domain/${domid}/data/vchan/echo`));
    assert.match(text, /mapped by d0/);
    assert.match(text, /⇄ d0:/);
    await shot("plumbing");
  } finally {
    cli.close();
  }
});

test("a blkbench guest's disk reads at a glance: both ends, the ring's indices, its counters", async () => {
  const img = join(dir, "blk.img");
  writeFileSync(img, "");
  truncateSync(img, 8 * 2 ** 20);
  await tab("console");
  await page.fill(
    "#cfg",
    [
      'name = "blk-web"',
      'kernel = "../../../build/mini-os/blkbench.wasm"',
      "memory = 8",
      `disk = [ "format=raw, vdev=xvda, access=rw, target=${img}" ]`,
      'extra = "mib=2 hold"',
    ].join("\n"),
  );
  await page.click("#create-btn");
  const row = domainRow("blk-web");
  await row.waitFor();
  const domid = Number(await row.getAttribute("data-domid"));
  await until(() => /random 4 KiB reads/.test(host.readConsole(domid)), 20_000, "blkbench's reads");
  await tab("plumbing");
  await page.selectOption("#plumb-a", String(domid));
  await page.selectOption("#plumb-b", "0");
  const dev = page.locator(".devices tbody tr", { hasText: "vbd 51712" });
  await dev.waitFor();
  const text = (await dev.textContent()) ?? "";
  assert.match(text, new RegExp(`d${domid} Connected`));
  assert.match(text, /d0 Connected/);
  assert.match(text, /blkif: 32 slots; req_prod \d+ req_cons \d+/);
  assert.match(text, /reads [1-9]\d*/);
  // The ring's grant and its event channel, mapped and bound by Dom0.
  await page.waitForSelector("path.wire.evtchn");
  await page.waitForSelector("path.wire.grant");
  await shot("plumbing-blkbench");
  await page.fill("#cfg", "");
  await tab("console");
  await page.click(`#domains tbody tr[data-domid='${domid}']`);
  await page.click("#actions button[data-op=destroy]");
  await page.waitForSelector(`#domains tbody tr[data-domid='${domid}']`, { state: "detached" });
});

test("destroy from the page: the row goes", async () => {
  await tab("console");
  const domid = echoDomid;
  await page.click(`#domains tbody tr[data-domid='${domid}']`);
  await page.click("#actions button[data-op=destroy]");
  await page.waitForSelector(`#domains tbody tr[data-domid='${domid}']`, { state: "detached" });
  assert.equal(host.hv.domainById(domid), undefined);
});
