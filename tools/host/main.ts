/**
 * `npm start`: boots a tsxen host in the foreground with demo guests and shows
 * the hypervisor console, where guest console_io output appears as "(dN) ..."
 * lines, and serves xenstored's socket under the run directory, so that
 * `xenstore-ls` shows the guests' nodes. Ctrl-C (SIGINT) or SIGTERM destroys
 * every domain and exits cleanly.
 *
 *   node dist/tools/host/main.js [--memory MiB] [--guest NAME]... [--list-every SECONDS]
 */
import { parseArgs } from "node:util";
import { guestPath } from "../../extras/mini-os/build.js";
import { Host } from "./host.js";
import { formatList } from "./format.js";

const { values } = parseArgs({
  options: {
    memory: { type: "string", default: "4096" },
    guest: { type: "string", multiple: true, default: ["hello", "ticker"] },
    "list-every": { type: "string", default: "0" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help) {
  console.log(`usage: npm start -- [--memory MiB] [--guest NAME]... [--list-every SECONDS]
Boots a tsxen host with the named mini-os guests (default: hello, ticker)
and shows the hypervisor console. Ctrl-C stops it.`);
  process.exit(0);
}

const memMiB = Number(values.memory);
if (!Number.isInteger(memMiB) || memMiB < 1024) {
  console.error(`tsxen: --memory ${values.memory}: must be a whole number of MiB, at least 1024`);
  process.exit(2);
}

const host = new Host({ memoryBytes: memMiB * 2 ** 20 });
host.hv.console.listeners.add((line) => process.stdout.write(`${line}\n`));
// Domains that power off are destroyed, as xl's default on_poweroff="destroy".
host.hv.listeners.add({
  shutdown: (d) => {
    if (d.shutdownName === "poweroff") setImmediate(() => host.hv.destroyDomain(d.domid));
  },
});
process.stdout.write(host.dmesg());
try {
  const xs = await host.serveXenstore();
  console.log(`tsxen: xenstored listening on ${xs.path} (XENSTORED_PATH=${xs.path} xenstore-ls)`);
} catch (e) {
  console.error(
    `tsxen: xenstored cannot listen: ${(e as Error).message}; guests still get their rings`,
  );
}

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`\ntsxen: ${signal}: destroying ${host.hv.domains.size} domain(s) and stopping`);
  await host.shutdown();
  process.exit(0);
}
process.on("SIGINT", () => void stop("SIGINT"));
process.on("SIGTERM", () => void stop("SIGTERM"));

for (const name of values.guest) {
  try {
    const d = await host.create({
      name,
      kernel: guestPath(name),
      memory: 4,
      cmdline: `demo guest ${name}`,
      xenstore: true,
    });
    console.log(`tsxen: created domain ${d.domid} (${name})`);
  } catch (e) {
    console.error(`tsxen: ${(e as Error).message}`);
  }
}
console.log(formatList(host.list()));
const every = Number(values["list-every"]);
if (every > 0) setInterval(() => console.log(formatList(host.list())), every * 1000);
// Keep the process alive while guests run (the scheduler's timers are unref'd).
setInterval(() => {}, 1 << 30);
