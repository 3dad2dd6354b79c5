/**
 * `npm start`: boots a tsxen host in the foreground with demo guests and shows
 * the hypervisor console with each guest's console beside it, a line at a
 * time as "(dN) ...", and serves xenstored's socket under the run directory, so that
 * `xenstore-ls` shows the guests' nodes. Ctrl-C (SIGINT) or SIGTERM destroys
 * every domain and exits cleanly. It holds the run directory's lock as the
 * daemon does (pidlock.ts): one host per run directory, however started.
 * A closed output pipe (`npm start | head -3`) stops it as SIGTERM does.
 *
 *   node dist/tools/host/main.js [--memory MiB] [--guest NAME]... [--list-every SECONDS]
 *                                [--http [ADDR:]PORT]
 *
 * With --http it serves the web console too (tools/web/server.ts), as
 * `tsxen start --http` does, and prints its URL with the token.
 */
import { watchdog } from "../../xen/common/watchdog.js";
import { parseCommandLine } from "../cli.js";
import { guestPath } from "../../extras/mini-os/paths.js";
import { Host } from "./host.js";
import { lockRunDir, unlockRunDir } from "./pidlock.js";
import { hostPaths, prepareRunDir, runDir } from "../rundir.js";
import { formatList } from "./format.js";
import { VchanSocketProxy } from "../libvchan/socket-proxy.js";
import { parseListen } from "./metrics.js";
import { WebConsole } from "../web/server.js";
import { Libxl } from "../libxl/domain.js";

const { values } = parseCommandLine(
  "tsxen",
  {
    options: {
      memory: { type: "string", default: "4096" },
      guest: { type: "string", multiple: true, default: ["hello", "ticker"] },
      "list-every": { type: "string", default: "0" },
      "vchan-proxy": { type: "string", multiple: true, default: [] },
      http: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  },
  "npm start -- --help",
);

if (values.help) {
  console.log(`usage: npm start -- [--memory MiB] [--guest NAME[:CMDLINE]]... [--list-every SECONDS]
                    [--vchan-proxy client|server:DOMID:XSPATH:SOCKET]... [--http [ADDR:]PORT]
Boots a tsxen host with the named mini-os guests (default: hello, ticker)
and shows the hypervisor console. --vchan-proxy joins a vchan to a unix
socket, as Xen's vchan-socket-proxy does. --http serves the web console
(loopback unless ADDR is given) and prints its URL. Ctrl-C stops it.`);
  process.exit(0);
}

const memMiB = Number(values.memory);
if (!Number.isInteger(memMiB) || memMiB < 1024) {
  console.error(`tsxen: --memory ${values.memory}: must be a whole number of MiB, at least 1024`);
  process.exit(2);
}

let listen: { host: string; port: number } | undefined;
try {
  if (values.http !== undefined) listen = parseListen(values.http, "--http");
} catch (e) {
  console.error(`tsxen: ${(e as Error).message}`);
  process.exit(2);
}

const paths = hostPaths();
try {
  prepareRunDir(runDir());
  lockRunDir(paths.pidFile, runDir());
} catch (e) {
  console.error(`tsxen: ${(e as Error).message}`);
  process.exit(1);
}
process.on("exit", () => unlockRunDir(paths.pidFile));
// A reader that went away (`npm start | head -3`) stops the host as SIGTERM
// does, guests destroyed and the lock given up, as a program whose output
// pipe closes ends; writing on would raise an unhandled EPIPE.
let silent = false;
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e;
    silent = true;
    void stop("output closed");
  });
}
const say = (text: string): void => {
  if (!silent) process.stdout.write(`${text}\n`);
};

const host = new Host({ memoryBytes: memMiB * 2 ** 20 });
host.hv.console.listeners.add(say);
// A stall of the main thread is reported while it lasts, straight to where the console goes.
watchdog.reportFd = 1;
// The demo guests that power off are destroyed, as xl's default on_poweroff="destroy"
// (those the web console creates are libxl's, which does what their config says).
let libxl: Libxl | undefined;
host.hv.listeners.add({
  shutdown: (d) => {
    if (d.shutdownName !== "poweroff" || libxl?.list().some((x) => x.domid === d.domid)) return;
    setImmediate(() => host.hv.destroyDomain(d.domid));
  },
});
say(host.dmesg().trimEnd());
try {
  const xs = await host.serveXenstore(paths.xenstored);
  say(`tsxen: xenstored listening on ${xs.path} (XENSTORED_PATH=${xs.path} xenstore-ls)`);
} catch (e) {
  console.error(
    `tsxen: xenstored cannot listen: ${(e as Error).message}; guests still get their rings`,
  );
}

let stopping = false;
/** Destroys every domain and exits (the signal's handler, or the output closing). */
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  say(`\ntsxen: ${signal}: destroying ${host.hv.domains.size} domain(s) and stopping`);
  await host.shutdown();
  process.exit(0);
}
process.on("SIGINT", () => void stop("SIGINT"));
process.on("SIGTERM", () => void stop("SIGTERM"));

for (const spec of values.guest) {
  const [name, ...rest] = spec.split(":");
  try {
    const d = await host.create({
      name: name!,
      kernel: guestPath(name!),
      memory: 4,
      cmdline: rest.length > 0 ? rest.join(":") : `demo guest ${name}`,
      xenstore: true,
    });
    say(`tsxen: created domain ${d.domid} (${name})`);
    // Its console beside the hypervisor's, a line at a time, as "(dN) ...".
    let partial = "";
    host.onConsole(d.domid, (text) => {
      const lines = (partial + text).split("\n");
      partial = lines.pop()!;
      for (const l of lines) say(`(d${d.domid}) ${l}`);
    });
  } catch (e) {
    console.error(`tsxen: ${(e as Error).message}`);
  }
}
for (const spec of values["vchan-proxy"]) {
  const [mode, domid, path, socket] = spec.split(":");
  if ((mode !== "client" && mode !== "server") || !domid || !path || !socket) {
    console.error(`tsxen: --vchan-proxy ${spec}: expected client|server:DOMID:XSPATH:SOCKET`);
    continue;
  }
  try {
    await VchanSocketProxy.start(
      { drivers: host.dom0, xenstored: host.xenstored },
      { mode, domid: Number(domid), path, socket },
    );
    say(`tsxen: vchan-socket-proxy (${mode}) d${domid} ${path} <-> ${socket}`);
  } catch (e) {
    console.error(`tsxen: --vchan-proxy ${spec}: ${(e as Error).message}`);
  }
}
if (listen) {
  try {
    libxl = new Libxl(host);
    const web = new WebConsole(host, libxl, { log: say });
    say(`tsxen: web console at ${await web.listen(listen)}`);
  } catch (e) {
    console.error(`tsxen: --http ${values.http}: ${(e as Error).message}`);
  }
}
say(formatList(host.list()));
const every = Number(values["list-every"]);
if (every > 0) setInterval(() => say(formatList(host.list())), every * 1000);
// Keep the process alive while guests run (the scheduler's timers are unref'd).
setInterval(() => {}, 1 << 30);
