/**
 * The web console (#21): with 1,000 idle domains, the host's CPU spent on
 * a page's updates at the 1 Hz refresh (target ≤ 5% of one core: the
 * host's CPU with the console serving a page, less the same host's
 * without the console, over the same length of time), and keystroke →
 * echo in the page's terminal, median (target ≤ 20 ms; the baseline is
 * the same echo through xenconsoled's socket, what `xl console` uses).
 * The page is Debian's chromium, headless (test/browser.ts).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { EXAMPLES_DIR } from "../extras/mini-os/paths.js";
import { Host } from "../tools/host/host.js";
import { Libxl } from "../tools/libxl/domain.js";
import { domainConfig } from "../tools/libxl/config.js";
import { parseCfg } from "../tools/libxlu/cfg.js";
import { ConsoleServer } from "../tools/console/socket.js";
import { WebConsole } from "../tools/web/server.js";
import { launchChromium } from "../test/browser.js";
import type { Page } from "playwright-core";
import { fmt, median, type Row } from "./common.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The host process's CPU (user + system) over `ms`, as % of one core. */
async function cpuPct(ms: number): Promise<number> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(ms);
  const c = process.cpuUsage(c0);
  return ((c.user + c.system) / 1000 / (performance.now() - t0)) * 100;
}

export async function run(quick: boolean): Promise<Row[]> {
  const n = quick ? 50 : 1000;
  const windowMs = quick ? 1500 : 5000;
  const rounds = quick ? 1 : 3;
  const keys = quick ? 10 : 60;
  const host = new Host({ memoryBytes: 8 * 1024 ** 3 });
  const libxl = new Libxl(host);
  const dir = mkdtempSync(join(tmpdir(), "tsxen-webbench-"));
  let web: WebConsole | undefined;
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  try {
    const file = join(EXAMPLES_DIR, "echo.cfg");
    const base = domainConfig(
      parseCfg(readFileSync(file, "utf8"), file),
      file,
      EXAMPLES_DIR,
    ).config;
    let echoDomid = -1;
    for (let i = 0; i < n; i++) {
      const d = await libxl.create(
        { ...base, name: `idle${i}`, memory: 1, maxmem: 1 },
        { log: () => {} },
      );
      if (i === 0) echoDomid = d.domid;
    }
    await sleep(1000);

    // The host's CPU without the console, then with it serving a page, in
    // turns (the machine's spells of noise fall on both); each time a new
    // console and a new page, given time to load the rows first.
    browser = await launchChromium();
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const pageUp = async (): Promise<Page> => {
      web = new WebConsole(host, libxl);
      const url = await web.listen({ host: "127.0.0.1", port: 0 });
      const p = await ctx.newPage();
      await p.goto(url);
      await p.waitForFunction(
        (k) => document.querySelectorAll("#domains tbody tr").length >= k,
        n + 1,
        { timeout: 60_000 },
      );
      await sleep(2000);
      return p;
    };
    const withouts: number[] = [];
    const withs: number[] = [];
    let page: Page | undefined;
    for (let r = 0; r < rounds; r++) {
      if (page) {
        await page.close();
        await web?.close();
        web = undefined;
        await sleep(500);
      }
      withouts.push(await cpuPct(windowMs));
      page = await pageUp();
      withs.push(await cpuPct(windowMs));
    }
    const without = median(withouts);
    const withPage = median(withs);
    const updates = Math.max(0, median(withs.map((w, i) => w - withouts[i]!)));
    page = page!;

    // Keystroke → echo in the page: one key at a time, each waiting for its echo.
    await page.click(`#domains tbody tr[data-domid='${echoDomid}']`);
    await page.waitForSelector("#console-title:has-text('pv console')");
    await page.click("#terminal");
    for (let i = 0; i < keys; i++) {
      const before = await page.evaluate(
        () => (window as unknown as { tsxenStats: { echo: number[] } }).tsxenStats.echo.length,
      );
      await page.keyboard.type(String.fromCharCode(97 + (i % 26)));
      await page.waitForFunction(
        (b) => (window as unknown as { tsxenStats: { echo: number[] } }).tsxenStats.echo.length > b,
        before,
        { timeout: 5000 },
      );
    }
    const samples = await page.evaluate(
      () => (window as unknown as { tsxenStats: { echo: number[] } }).tsxenStats.echo,
    );
    const echoMs = median(samples.slice(-keys));

    // The same echo through xenconsoled's socket, as xl console sees it.
    const sock = join(dir, "console.sock");
    const cs = new ConsoleServer(() => host.xenconsoled, sock);
    await cs.listen();
    const raw: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const s = connect(sock);
      let sent = -1;
      let header = false;
      let i = 0;
      const next = (): void => {
        if (i++ >= keys) {
          s.end();
          resolve();
          return;
        }
        sent = performance.now();
        s.write(String.fromCharCode(97 + (i % 26)));
      };
      s.on("connect", () => s.write(`${JSON.stringify({ domid: echoDomid, replay: false })}\n`));
      s.on("data", (b) => {
        if (!header) {
          header = b.includes(10);
          if (header) next();
          return;
        }
        if (sent >= 0) {
          raw.push(performance.now() - sent);
          sent = -1;
          setTimeout(next, 5);
        }
      });
      s.on("error", reject);
    });
    await cs.close();
    const socketMs = median(raw);
    return [
      {
        name: `web console: host CPU on a page's updates, ${n} idle domains, 1 Hz`,
        measured: fmt(updates, "% of a core", 1),
        baseline: `host ${fmt(without, "%", 1)} without it, ${fmt(withPage, "%", 1)} with it (medians of ${rounds})`,
        ratio: updates / 5,
        target: "≤ 5% of one core",
        met: updates <= 5,
      },
      {
        name: `web console: keystroke → echo in the page, median of ${keys}`,
        measured: fmt(echoMs, "ms", 2),
        baseline: `${fmt(socketMs, "ms", 2)} through xl console's socket`,
        ratio: echoMs / socketMs,
        target: "≤ 20 ms",
        met: echoMs <= 20,
      },
    ];
  } finally {
    await browser?.close();
    await web?.close();
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}
