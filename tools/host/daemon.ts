#!/usr/bin/env node
/**
 * `tsxen`: the host daemon. `tsxen start` boots the hypervisor with Dom0 and
 * its services (xenstored, xenconsoled, the privcmd and libxl sockets for
 * `xl`) in the background, or in the terminal with `--foreground`;
 * `tsxen stop` shuts every guest down as xendomains does (then destroys
 * what is left) and stops the host; `tsxen status` says whether one runs.
 * Files: tools/rundir.ts. One host per run directory: `tsxen.pid`,
 * created exclusively, is the lock; a stale one (its process gone, or its
 * pid now another process's) is replaced (pidlock.ts).
 *
 * Exit status: 0 done; 1 failed (a host is already running, it did not
 * start, it did not stop); 2 a mistake on the command line; `status` exits
 * 3 when no host runs (the LSB's "not running").
 */
import { watchdog } from "../../xen/common/watchdog.js";
import { spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseCommandLine } from "../cli.js";
import { connectUnix } from "../jsonl.js";
import { hostPaths, logDir, prepareRunDir, runDir } from "../rundir.js";
import { Host } from "./host.js";
import { lockRunDir, runningPid, unlockRunDir } from "./pidlock.js";
import { Libxl } from "../libxl/domain.js";
import { LibxlClient, LibxlServer } from "../libxl/server.js";
import { PrivcmdServer } from "../libxc/privcmd_socket.js";
import { ConsoleServer } from "../console/socket.js";
import { MetricsServer, parseListen, renderMetrics } from "./metrics.js";
import { WebConsole } from "../web/server.js";

const USAGE = `usage: tsxen start [--foreground] [--memory MiB] [--metrics [ADDR:]PORT] [--http [ADDR:]PORT]
       tsxen stop [--timeout SECONDS]
       tsxen status
Runs a tsxen host: the hypervisor, Dom0, xenstored, xenconsoled and the
sockets xl uses. Run directory: $TSXEN_RUN_DIR (now ${runDir()});
logs: $TSXEN_LOG_DIR (now ${logDir()}).
--http serves the web console (loopback unless ADDR is given); the URL,
with its access token, is printed and shown by tsxen status.`;

async function foreground(
  memMiB: number,
  metrics: string | undefined,
  http: string | undefined,
): Promise<void> {
  const dir = runDir();
  const paths = hostPaths(dir);
  prepareRunDir(dir);
  lockRunDir(paths.pidFile, dir);
  const logs = logDir();
  const host = new Host({ memoryBytes: memMiB * 2 ** 20 }, join(logs, "console"));
  const log = (line: string): void => void process.stdout.write(`${line}\n`);
  host.hv.console.listeners.add(log);
  // A stall of the main thread is reported while it lasts, straight to where the console goes.
  watchdog.reportFd = 1;
  process.stdout.write(host.dmesg());
  // What xen-init-dom0 writes for Dom0.
  host.xenstored.writeText("/local/domain/0/name", "Domain-0");
  host.xenstored.writeText("/local/domain/0/domid", "0");
  const libxl = new Libxl(host);
  let stopping: Promise<void> | undefined;
  const servers: Array<{ close(): Promise<void> }> = [];
  const stop = (timeoutMs: number, why: string): Promise<void> =>
    (stopping ??= (async () => {
      log(`tsxen: ${why}: shutting ${host.hv.domains.size} domain(s) down`);
      const forced = await libxl.shutdownAll(timeoutMs);
      if (forced > 0) log(`tsxen: destroyed ${forced} domain(s) that did not shut down in time`);
      for (const s of servers) await s.close();
      await host.shutdown();
      unlockRunDir(paths.pidFile);
      log("tsxen: stopped");
      process.exit(0);
    })());
  try {
    servers.push(await host.serveXenstore(paths.xenstored));
    const privcmd = new PrivcmdServer(host.dom0.privcmd, paths.privcmd, log);
    await privcmd.listen();
    servers.push(privcmd);
    const consoles = new ConsoleServer(() => host.xenconsoled, paths.console);
    await consoles.listen();
    servers.push(consoles);
    const lx = new LibxlServer(libxl, paths.libxl, (t) => stop(t, "tsxen stop"), log);
    await lx.listen();
    servers.push(lx);
    if (metrics !== undefined) {
      const m = new MetricsServer(() => renderMetrics(host, libxl));
      const url = await m.listen(parseListen(metrics)).catch((e: Error) => {
        throw new Error(`--metrics ${metrics}: cannot listen: ${e.message}`);
      });
      servers.push({
        close: async () => {
          rmSync(paths.metrics, { force: true });
          await m.close();
        },
      });
      writeFileSync(paths.metrics, `${url}\n`, { mode: 0o644 });
      log(`tsxen: metrics for Prometheus at ${url}`);
    }
    if (http !== undefined) {
      const web = new WebConsole(host, libxl, { log });
      servers.push({
        close: async () => {
          rmSync(paths.web, { force: true });
          await web.close();
        },
      });
      const url = await web.listen(parseListen(http, "--http")).catch((e: Error) => {
        throw new Error(`--http ${http}: cannot listen: ${e.message}`);
      });
      // The token is the key to the host: the file is its owner's alone.
      rmSync(paths.web, { force: true });
      writeFileSync(paths.web, `${url}\n`, { mode: 0o600, flag: "wx" });
      // Not the token: the log may be readable by others; tsxen start and status show the URL to its owner.
      log(`tsxen: web console at ${web.origin()}/ (its URL with the token: ${paths.web})`);
    }
  } catch (e) {
    for (const s of servers) await s.close();
    unlockRunDir(paths.pidFile);
    throw e;
  }
  process.on("SIGINT", () => void stop(10_000, "SIGINT"));
  process.on("SIGTERM", () => void stop(10_000, "SIGTERM"));
  log(
    `tsxen: host running (pid ${process.pid}); run dir ${dir}; console logs ${join(logs, "console")}`,
  );
  // Keep the process alive while guests run (the scheduler's timers are unref'd).
  setInterval(() => {}, 1 << 30);
}

async function waitFor(pred: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}

async function start(
  memory: string,
  metrics: string | undefined,
  http: string | undefined,
): Promise<number> {
  const paths = hostPaths();
  const pid = runningPid(paths.pidFile);
  if (pid !== undefined) {
    console.error(`tsxen: a host is already running on ${runDir()} (pid ${pid})`);
    return 1;
  }
  const logs = logDir();
  mkdirSync(logs, { recursive: true });
  const logFile = join(logs, "tsxen.log");
  // A host that died may have left its console's URL: the new one writes its own.
  rmSync(paths.web, { force: true });
  const out = openSync(logFile, "a");
  const child = spawn(
    process.execPath,
    [
      fileURLToPath(import.meta.url),
      "start",
      "--foreground",
      "--memory",
      memory,
      ...(metrics !== undefined ? ["--metrics", metrics] : []),
      ...(http !== undefined ? ["--http", http] : []),
    ],
    { detached: true, stdio: ["ignore", out, out] },
  );
  closeSync(out);
  let exited: number | null = null;
  child.once("exit", (code) => (exited = code ?? 1));
  const up = await waitFor(async () => {
    if (exited !== null) return true;
    try {
      (await connectUnix(paths.libxl, "libxl")).destroy();
      return runningPid(paths.pidFile) === child.pid;
    } catch {
      return false;
    }
  }, 30_000);
  if (exited !== null || !up) {
    const tail = readFileSync(logFile, "utf8").trim().split("\n").slice(-5).join("\n");
    console.error(`tsxen: the host did not start (see ${logFile}):\n${tail}`);
    if (exited === null) child.kill();
    return 1;
  }
  child.unref();
  console.log(`tsxen: host started (pid ${child.pid}); run dir ${runDir()}; log ${logFile}`);
  if (http !== undefined) {
    // The console's URL, once the host wrote it.
    await waitFor(async () => existsSync(paths.web), 5000);
    try {
      console.log(`tsxen: web console at ${readFileSync(paths.web, "utf8").trim()}`);
    } catch {
      console.error(`tsxen: the web console did not start (see ${logFile})`);
    }
  }
  return 0;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The names of the guests libxl runs, by domid (empty when it cannot be asked). */
async function guestNames(c: LibxlClient): Promise<Map<number, string>> {
  try {
    const r = (await c.call("listLong", {})) as { json: string };
    const rows = JSON.parse(r.json) as Array<{
      domid: number;
      config: { c_info: { name: string } };
    }>;
    return new Map(rows.map((x) => [x.domid, x.config.c_info.name]));
  } catch {
    return new Map();
  }
}

/**
 * `tsxen stop`: asks the host to shut its guests down (as xendomains does)
 * and says which are going and, as each goes, that it is down, then that
 * the host stopped. A host that does not answer on its socket is sent
 * SIGTERM; runningPid made sure it is the host.
 */
async function stopHost(timeoutS: number): Promise<number> {
  const paths = hostPaths();
  const pid = runningPid(paths.pidFile);
  if (pid === undefined) {
    console.log(`tsxen: no host is running on ${runDir()}`);
    return 0;
  }
  let c: LibxlClient | undefined;
  try {
    c = await LibxlClient.connect(paths.libxl);
    const names = await guestNames(c);
    console.log(
      names.size === 0
        ? "tsxen: no domains to shut down"
        : `tsxen: shutting down ${names.size} domain(s): ${[...names.values()].join(", ")}`,
    );
    await c.call("stopHost", { timeoutMs: timeoutS * 1000 });
    // Progress while the host shuts its guests down; when it has stopped,
    // none is left (what did not shut down in time was destroyed).
    const end = Date.now() + timeoutS * 1000 + 15_000;
    while (names.size > 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 100));
      const stopped = runningPid(paths.pidFile) !== pid;
      // A host too busy to answer within a second is asked again next time.
      const now = stopped
        ? new Map<number, string>()
        : await Promise.race([guestNames(c), sleep(1000).then(() => undefined)]);
      if (now === undefined) continue;
      for (const [domid, name] of names) {
        if (now.has(domid)) continue;
        console.log(`tsxen: ${name} (domain ${domid}) is down`);
        names.delete(domid);
      }
    }
    c.close();
  } catch {
    c?.close();
    process.kill(pid, "SIGTERM");
  }
  const gone = await waitFor(
    async () => runningPid(paths.pidFile) !== pid,
    timeoutS * 1000 + 15_000,
  );
  if (!gone) {
    console.error(`tsxen: the host (pid ${pid}) did not stop`);
    return 1;
  }
  console.log(`tsxen: host stopped (pid ${pid})`);
  return 0;
}

function status(): number {
  const pid = runningPid(hostPaths().pidFile);
  if (pid === undefined) {
    console.log(`tsxen: not running (run dir ${runDir()})`);
    return 3;
  }
  console.log(
    `tsxen: running (pid ${pid}); run dir ${runDir()}; log ${join(logDir(), "tsxen.log")}`,
  );
  try {
    console.log(`tsxen: metrics at ${readFileSync(hostPaths().metrics, "utf8").trim()}`);
  } catch {
    // Not serving metrics.
  }
  try {
    console.log(`tsxen: web console at ${readFileSync(hostPaths().web, "utf8").trim()}`);
  } catch {
    // Not serving the web console, or not this user's to read.
  }
  return 0;
}

const { values, positionals } = parseCommandLine(
  "tsxen",
  {
    allowPositionals: true,
    options: {
      foreground: { type: "boolean", short: "F", default: false },
      memory: { type: "string", default: "4096" },
      timeout: { type: "string", default: "30" },
      metrics: { type: "string" },
      http: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  },
  "tsxen --help",
);
const cmd = positionals[0];
if (values.help || cmd === undefined || positionals.length > 1) {
  (values.help ? console.log : console.error)(USAGE);
  process.exit(values.help ? 0 : 2);
}
const memMiB = Number(values.memory);
const timeout = Number(values.timeout);
if (!Number.isInteger(memMiB) || memMiB < 1024) {
  console.error(`tsxen: --memory ${values.memory}: must be a whole number of MiB, at least 1024`);
  process.exit(2);
}
if (!(timeout >= 0)) {
  console.error(`tsxen: --timeout ${values.timeout}: must be a number of seconds`);
  process.exit(2);
}
for (const [opt, v] of [
  ["--metrics", values.metrics],
  ["--http", values.http],
] as const) {
  if (v === undefined) continue;
  try {
    parseListen(v, opt);
  } catch (e) {
    console.error(`tsxen: ${(e as Error).message}`);
    process.exit(2);
  }
}
try {
  switch (cmd) {
    case "start":
      if (values.foreground) await foreground(memMiB, values.metrics, values.http);
      else process.exit(await start(values.memory, values.metrics, values.http));
      break;
    case "stop":
      process.exit(await stopHost(timeout));
      break;
    case "status":
      process.exit(status());
      break;
    default:
      console.error(`tsxen: unknown command '${cmd}'\n${USAGE}`);
      process.exit(2);
  }
} catch (e) {
  console.error(`tsxen: ${(e as Error).message}`);
  process.exit(1);
}
