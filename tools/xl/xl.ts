#!/usr/bin/env node
/**
 * `xl`, the Xen toolstack's command line (xen-doc `man/xl.1`), against a
 * running tsxen host (`tsxen start`). As Xen's xl does, it reads the host
 * through libxc (domctl and sysctl over the privcmd socket) and xenstore,
 * and asks libxl for what needs the domain builder (libxl runs in the host
 * daemon, where a wasm kernel is compiled to run). Output columns and
 * messages are xl's; exit status is 0 on success, 1 on failure and 2 for a
 * mistake on the command line.
 *
 *   xl [-v] <subcommand> [args]     (xl help lists them)
 */
import { migrationRune, xlMigrate, xlMigrateReceive } from "./migrate.js";
import { usageText } from "./usage.js";
import { MISSING } from "./missing.js";
import { randomUUID } from "node:crypto";
import { configJson } from "../libxl/json.js";
import { statSync } from "node:fs";
import { HostFileError, readHostFileSync } from "../../xen/common/host_file.js";

/** Largest xl.cfg read (Xen's xl reads a config file whole too; real ones are a few KiB). */
const MAX_CFG_BYTES = 1024 * 1024;
import { dirname, resolve } from "node:path";
import { hostname, release, version as osVersion, machine } from "node:os";
import { parseArgs } from "node:util";
import { hostPaths, runDir } from "../rundir.js";
import { PrivcmdClient } from "../libxc/privcmd_socket.js";
import { XcError, XcInterface, type XcDomInfo } from "../libxc/xc.js";
import { LibxlClient } from "../libxl/server.js";
import { XsClient } from "../xenstore/client.js";
import { attachConsole } from "../console/socket.js";
import { CfgError, parseCfg } from "../libxlu/cfg.js";
import { domainConfig, type ParsedConfig } from "../libxl/config.js";
import { XEN_SCHEDULER_CREDIT } from "../../xen/include/public/domctl.js";
import { formatBitmap, parseCpuRange, parseMemKiB } from "./parse.js";
import { runTop } from "./top.js";
import type { BackendStats } from "../libxl/domain.js";

/** An error that ends the command with a message and exit status 1. */
class XlFail extends Error {}

const paths = hostPaths(runDir());
let xcConn: XcInterface | undefined;
let libxlConn: LibxlClient | undefined;
let xsConn: XsClient | undefined;

async function xc(): Promise<XcInterface> {
  return (xcConn ??= new XcInterface(await PrivcmdClient.connect(paths.privcmd)));
}
async function libxl(): Promise<LibxlClient> {
  return (libxlConn ??= await LibxlClient.connect(paths.libxl));
}
async function xs(): Promise<XsClient> {
  if (!xsConn) {
    try {
      xsConn = await XsClient.open(process.env.XENSTORED_PATH ?? paths.xenstored);
    } catch (e) {
      throw new XlFail(`${(e as Error).message}: is the host running? (tsxen start)`);
    }
  }
  return xsConn;
}
function closeAll(): void {
  xcConn?.close();
  libxlConn?.close();
  xsConn?.close();
}

/** A xenstore value, or undefined when the node is missing. */
async function xsRead(path: string): Promise<string | undefined> {
  try {
    return await (await xs()).readString(path);
  } catch {
    return undefined;
  }
}

/** libxl_domid_to_name: /local/domain/N/name. */
async function domName(domid: number): Promise<string> {
  return (await xsRead(`/local/domain/${domid}/name`)) ?? (domid === 0 ? "Domain-0" : "");
}

/** xl's find_domain: a domid, or a name looked up among the running domains. */
async function findDomain(q: string): Promise<number> {
  if (/^\d+$/.test(q)) return Number(q);
  for (const i of await (await xc()).domainGetInfoList()) {
    if ((await domName(i.domid)) === q) return i.domid;
  }
  throw new XlFail(`${q} is an invalid domain identifier (rc=-6)`);
}

/** The domain's info, or "Domain 'q' does not exist." */
async function domainInfo(q: string): Promise<XcDomInfo> {
  const domid = await findDomain(q);
  try {
    return await (await xc()).domainGetInfo(domid);
  } catch (e) {
    if (e instanceof XcError && e.errno === 3)
      throw new XlFail(`Error: Domain '${q}' does not exist.`);
    throw e;
  }
}

function opts(
  cmd: string,
  args: string[],
  options: Record<string, { type: "boolean" | "string"; short?: string; multiple?: boolean }>,
  min: number,
  max = Infinity,
): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  let r;
  try {
    r = parseArgs({ args, options, allowPositionals: true });
  } catch (e) {
    throw new UsageError(cmd, (e as Error).message);
  }
  if (r.positionals.length < min || r.positionals.length > max) {
    throw new UsageError(cmd, `expects ${min === max ? min : `${min} or more`} argument(s)`);
  }
  return r as ReturnType<typeof opts>;
}

class UsageError extends Error {
  constructor(
    readonly cmd: string,
    why: string,
  ) {
    super(why);
  }
}

const SHUTDOWN_LETTERS = "-rscwS";

function stateFlags(i: XcDomInfo): string {
  const reason = i.shutdown ? i.shutdownReason : 0;
  return (
    (i.running ? "r" : "-") +
    (i.blocked ? "b" : "-") +
    (i.paused ? "p" : "-") +
    (i.shutdown ? "s" : "-") +
    (SHUTDOWN_LETTERS[reason] ?? "?") +
    (i.dying ? "d" : "-")
  );
}

// ---- the subcommands ------------------------------------------------------

/**
 * Reads and parses xl.cfg `file` with `KEY=VALUE` overrides, as xl create
 * and config-update do; warnings go to stderr. Throws XlFail with xl's words.
 */
function readConfig(file: string, overrides: string[], quiet: boolean): ParsedConfig {
  let text: string;
  try {
    // Never blocks (a FIFO is refused, not waited on) and never reads a huge file whole.
    text = readHostFileSync(file, { what: "config file", maxBytes: MAX_CFG_BYTES }).toString(
      "utf8",
    );
  } catch (e) {
    if (!(e instanceof HostFileError)) throw e;
    // xl's words, then the cause: "Failed to read config file: F: No such file or directory".
    throw new XlFail(`Failed to read config file: ${e.message.replace(/^config file /, "")}`);
  }
  if (!quiet) console.error(`Parsing config from ${file}`);
  let parsed;
  try {
    const settings = parseCfg(text, file);
    // Extra key=value pairs override the file's, as xl appends them.
    for (const kv of overrides)
      for (const [k, v] of parseCfg(kv, "<command line>")) settings.set(k, v);
    parsed = domainConfig(settings, file, dirname(resolve(file)));
  } catch (e) {
    if (e instanceof CfgError) throw new XlFail(`Failed to parse config: ${e.message}`);
    throw e;
  }
  for (const w of parsed.warnings) console.error(`Warning: ${w}`);
  return parsed;
}

/**
 * xl config-update <Domain> <ConfigFile> [vars]: the config libxl keeps for
 * the domain, used when it is next rebuilt (on_reboot=restart and the
 * like). Nothing changes in the running domain.
 */
async function cmdConfigUpdate(args: string[]): Promise<number> {
  const { values, positionals } = opts(
    "config-update",
    args,
    { defconfig: { type: "string", short: "f" }, debug: { type: "boolean", short: "d" } },
    1,
  );
  const rest = [...positionals];
  const domid = await findDomain(rest.shift()!);
  let file = values.defconfig as string | undefined;
  if (!file && rest[0] && !rest[0].includes("=")) file = rest.shift();
  if (!file) throw new UsageError("config-update", "needs a config file");
  console.error(
    "WARNING: xl now has better capability to manage domain configuration, avoid using this command when possible",
  );
  const parsed = readConfig(file, rest, false);
  try {
    await (await libxl()).call("configUpdate", { domid, config: parsed.config });
  } catch (e) {
    throw new XlFail((e as Error).message);
  }
  return 0;
}

async function cmdCreate(args: string[]): Promise<number> {
  const { values, positionals } = opts(
    "create",
    args,
    {
      console: { type: "boolean", short: "c" },
      paused: { type: "boolean", short: "p" },
      quiet: { type: "boolean", short: "q" },
      "dry-run": { type: "boolean", short: "n" },
      foreground: { type: "boolean", short: "F" },
      vnc: { type: "boolean", short: "V" },
      defconfig: { type: "string", short: "f" },
    },
    0,
  );
  const rest = [...positionals];
  let file = values.defconfig as string | undefined;
  if (!file && rest[0] && !rest[0].includes("=")) file = rest.shift();
  if (!file) throw new UsageError("create", "needs a config file");
  const parsed = readConfig(file, rest, values.quiet === true);
  if (values["dry-run"]) {
    // What xl -N create prints: the domain config libxl would be given, and no domain.
    const json = configJson(parsed.config, parsed.config.uuid ?? randomUUID());
    console.log(JSON.stringify({ domid: null, config: json }, null, 4));
    return 0;
  }
  const lx = await libxl();
  const attach = values.console === true;
  // The daemon's libxl and libxc log what xl -v asks for; xl prints it, as
  // Xen's xl prints its logger's lines, on stderr.
  const printLog = (log: unknown): void => {
    if (Array.isArray(log)) for (const l of log) console.error(String(l));
  };
  let created;
  try {
    created = (await lx.call("create", {
      config: parsed.config,
      paused: attach || values.paused === true,
      verbose,
    })) as { domid: number; log?: string[] };
  } catch (e) {
    printLog((e as { log?: unknown }).log);
    throw e;
  }
  printLog(created.log);
  const { domid } = created;
  if (attach) {
    // Attach before the guest's first byte, then let it run.
    const s = await attachConsole(paths.console, domid);
    if (!values.paused) await (await xc()).domainUnpause(domid);
    closeAll();
    return runConsole(s);
  }
  if (values.foreground) {
    const x = await xc();
    for (;;) {
      try {
        const i = await x.domainGetInfo(domid);
        if (i.dying) break;
      } catch {
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return 0;
}

async function cmdList(args: string[]): Promise<number> {
  const { values, positionals } = opts(
    "list",
    args,
    { long: { type: "boolean", short: "l" }, verbose: { type: "boolean", short: "v" } },
    0,
    1,
  );
  // xenstore's connection opens while the hypervisor is asked (the names are read from it).
  const names = values.long ? undefined : xs().catch(() => undefined);
  const x = await xc();
  const infos = positionals[0] ? [await domainInfo(positionals[0])] : await x.domainGetInfoList();
  await names;
  if (values.long) {
    const domids = infos.map((i) => i.domid).filter((d) => d !== 0);
    const r = await (await libxl()).call("listLong", { domids });
    process.stdout.write(String(r.json));
    return 0;
  }
  let header = "Name                                        ID   Mem VCPUs\tState\tTime(s)";
  if (values.verbose) header += "   UUID                            Reason-Code\tSecurity Label";
  const lines = [header];
  // Every name asked at once: xenstore answers them in one exchange.
  const name = await Promise.all(infos.map((i) => domName(i.domid)));
  for (const [k, i] of infos.entries()) {
    const mem = Math.floor((i.totPages * 4) / 1024);
    let row =
      `${name[k]!.padEnd(40)} ${String(i.domid).padStart(5)} ${String(mem).padStart(5)} ` +
      `${String(i.onlineVcpus).padStart(5)}     ${stateFlags(i)}  ${(i.cpuTime / 1e9).toFixed(1).padStart(8)}`;
    if (values.verbose) {
      row += ` ${i.uuid}`;
      row += i.shutdown ? ` ${i.shutdownReason.toString(16).padStart(8)}` : ` ${"-".padStart(8)}`;
      row += ` ${"-".padStart(16)}`;
    }
    lines.push(row);
  }
  console.log(lines.join("\n"));
  return 0;
}

async function cmdDestroy(args: string[]): Promise<number> {
  const { positionals } = opts("destroy", args, { force: { type: "boolean", short: "f" } }, 1, 1);
  const domid = await findDomain(positionals[0]!);
  if (domid === 0) {
    throw new XlFail(
      "Not destroying domain 0; use -f to force.\nThis can only be done when using a disaggregated hardware domain and toolstack.\n",
    );
  }
  await (await libxl()).call("destroy", { domid });
  return 0;
}

async function cmdShutdownOrReboot(what: "shutdown" | "reboot", args: string[]): Promise<number> {
  const { values, positionals } = opts(
    what,
    args,
    {
      all: { type: "boolean", short: "a" },
      wait: { type: "boolean", short: "w" },
      F: { type: "boolean", short: "F" },
    },
    0,
    1,
  );
  let domids: number[];
  if (values.all) {
    if (positionals.length > 0) throw new UsageError(what, "-a takes no domain");
    domids = (await (await xc()).domainGetInfoList()).map((i) => i.domid).filter((d) => d !== 0);
  } else {
    if (positionals.length !== 1) throw new UsageError(what, "needs a domain");
    domids = [await findDomain(positionals[0]!)];
  }
  const lx = await libxl();
  const reason = what === "reboot" ? "reboot" : "poweroff";
  const waits: Array<Promise<void>> = [];
  for (const domid of domids) {
    console.error(`${what === "reboot" ? "Rebooting" : "Shutting down"} domain ${domid}`);
    let p = lx.call("shutdown", { domid, reason, wait: values.wait === true });
    // An HVM guest without PV drivers: xl's words, then the ACPI button with -F.
    p = p.catch(async (e: Error) => {
      if (!/ERROR_NOPARAVIRT/.test(e.message)) throw e;
      const [button, event] = what === "reboot" ? ["reset", "reset"] : ["power", "power"];
      if (!values.F) {
        console.error(
          `PV control interface not available: external graceful ${what} not possible.\nUse "-F" to fallback to ACPI ${event} event.`,
        );
        throw new XlFail(`${what} failed (rc=-8)`);
      }
      console.error(`PV control interface not available: sending ACPI ${button} button event.`);
      await lx.call("trigger", { domid, trigger: button });
      return values.wait === true ? lx.call("waitShutdown", { domid }) : {};
    });
    if (!values.wait) {
      await p.catch((e: Error) => {
        if (e instanceof XlFail) throw e;
        throw new XlFail(`${what} failed: ${e.message}`);
      });
      continue;
    }
    waits.push(
      p.then(
        (r) => {
          if (r.reason === "destroyed") {
            console.error(`Domain ${domid} has been destroyed.`);
            return;
          }
          const code = ["poweroff", "reboot", "suspend", "crash", "watchdog", "soft_reset"].indexOf(
            String(r.reason),
          );
          console.error(`Domain ${domid} has been shut down, reason code ${code}`);
        },
        (e: Error) => {
          if (e instanceof XlFail) throw e;
          throw new XlFail(`${what} failed: ${e.message}`);
        },
      ),
    );
  }
  if (values.wait) {
    console.error(`Waiting for ${domids.length} domains`);
    await Promise.all(waits);
    console.error("All domains have been shut down");
  }
  return 0;
}

async function cmdPause(args: string[], pause: boolean): Promise<number> {
  const { positionals } = opts(pause ? "pause" : "unpause", args, {}, 1, 1);
  const domid = await findDomain(positionals[0]!);
  const x = await xc();
  if (pause) await x.domainPause(domid);
  else await x.domainUnpause(domid);
  return 0;
}

/** Runs an attached console until Ctrl-] or the domain goes; restores the terminal. */
function runConsole(s: import("node:net").Socket): Promise<number> {
  return new Promise((done) => {
    const stdin = process.stdin;
    const raw = stdin.isTTY === true;
    if (raw) stdin.setRawMode(true);
    const finish = (): void => {
      if (raw) stdin.setRawMode(false);
      // Let go of the terminal (or pipe) so that xl exits now.
      stdin.destroy();
      s.destroy();
      done(0);
    };
    s.on("data", (b: Buffer) => process.stdout.write(b));
    s.on("close", finish);
    s.resume();
    stdin.on("data", (b: Buffer) => {
      const i = b.indexOf(0x1d); // Ctrl-], as xenconsole's escape
      if (i >= 0) {
        if (i > 0) s.write(b.subarray(0, i));
        finish();
        return;
      }
      s.write(b);
    });
    stdin.on("end", () => {
      // Input closed (not a terminal): keep showing output until the console ends.
    });
    stdin.resume();
  });
}

/** Xen's triggers (xl trigger); tsxen's HVM device model has the power and reset buttons. */
const TRIGGERS = ["nmi", "reset", "init", "power", "sleep", "s3resume"];

async function cmdTrigger(args: string[]): Promise<number> {
  const { positionals } = opts("trigger", args, {}, 2, 3);
  const trigger = positionals[1]!;
  if (!TRIGGERS.includes(trigger)) throw new XlFail(`Invalid trigger "${trigger}"`);
  const domid = await findDomain(positionals[0]!);
  try {
    await (await libxl()).call("trigger", { domid, trigger });
  } catch (e) {
    throw new XlFail(`${(e as Error).message}`);
  }
  return 0;
}

/** xl sysrq <Domain> <letter>: one sysrq letter, through the guest's control/sysrq. */
async function cmdSysrq(args: string[]): Promise<number> {
  const { positionals } = opts("sysrq", args, {}, 2, 2);
  const key = positionals[1]!;
  if (key.length !== 1) throw new XlFail(`sysrq "${key}": give one letter`);
  const domid = await findDomain(positionals[0]!);
  try {
    await (await libxl()).call("sysrq", { domid, key });
  } catch (e) {
    throw new XlFail(`${(e as Error).message}`);
  }
  return 0;
}

/** Prints the lines libxl and libxc logged for a call, on stderr as Xen's xl does. */
function printCallLog(log: unknown): void {
  if (Array.isArray(log)) for (const l of log) console.error(String(l));
}

/**
 * xl save [-c] [-p] <Domain> <CheckpointFile>: the domain's state into the
 * file in xl's format (docs/save-format.md), then the domain is destroyed;
 * -c leaves it running, -p paused.
 */
async function cmdSave(args: string[]): Promise<number> {
  const { values, positionals } = opts(
    "save",
    args,
    { checkpoint: { type: "boolean", short: "c" }, paused: { type: "boolean", short: "p" } },
    2,
    3,
  );
  if (positionals[2] !== undefined)
    throw new XlFail("save: a config file for the saved image is not supported by tsxen's xl");
  const domid = await findDomain(positionals[0]!);
  try {
    const r = await (
      await libxl()
    ).call("save", {
      domid,
      file: resolve(positionals[1]!),
      checkpoint: values.checkpoint === true || values.paused === true,
      paused: values.paused === true,
    });
    printCallLog(r.log);
  } catch (e) {
    printCallLog((e as { log?: unknown }).log);
    throw new XlFail((e as Error).message);
  }
  return 0;
}

/**
 * xl migrate [-s sshcommand] [-e] [-p] [-F] [--debug] <Domain> <host>: the
 * domain goes live to `<host>` (tools/xl/migrate.ts, docs/migration.md).
 */
async function cmdMigrate(args: string[]): Promise<number> {
  const { values, positionals } = opts(
    "migrate",
    args,
    {
      ssh: { type: "string", short: "s" },
      config: { type: "string", short: "C" },
      "no-wait": { type: "boolean", short: "e" },
      paused: { type: "boolean", short: "p" },
      F: { type: "boolean", short: "F" },
      debug: { type: "boolean" },
      live: { type: "boolean" },
      "max-iters": { type: "string" },
      "min-remaining": { type: "string" },
    },
    2,
    2,
  );
  if (values.config !== undefined)
    throw new XlFail(
      "migrate: -C (a config replacing the domain's) is not supported by tsxen's xl",
    );
  const count = (k: "max-iters" | "min-remaining", min: number): number | undefined => {
    const v = values[k];
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(String(v)) || Number(v) < min)
      throw new XlFail(
        `migrate: --${k} must be a whole number of at least ${min}, not '${String(v)}'`,
      );
    return Number(v);
  };
  const maxIters = count("max-iters", 1);
  const minRemaining = count("min-remaining", 0);
  const domid = await findDomain(positionals[0]!);
  const rune = migrationRune(typeof values.ssh === "string" ? values.ssh : "ssh", positionals[1]!, {
    noDaemonize: values["no-wait"] === true,
    debug: values.debug === true,
    paused: values.paused === true,
  });
  closeAll();
  return xlMigrate({
    libxlPath: paths.libxl,
    domid,
    rune,
    debug: values.debug === true,
    ...(maxIters !== undefined ? { maxIters } : {}),
    ...(minRemaining !== undefined ? { minRemaining } : {}),
    log: (l) => console.error(l),
  });
}

/** xl migrate-receive [-d] [-e] [-p] [-F]: the receiving end, over stdin and stdout. */
async function cmdMigrateReceive(args: string[]): Promise<number> {
  const { values } = opts(
    "migrate-receive",
    args,
    {
      debug: { type: "boolean", short: "d" },
      "no-wait": { type: "boolean", short: "e" },
      paused: { type: "boolean", short: "p" },
      F: { type: "boolean", short: "F" },
    },
    0,
    0,
  );
  return xlMigrateReceive({
    libxlPath: paths.libxl,
    paused: values.paused === true,
    debug: values.debug === true,
    log: (l) => console.error(l),
  });
}

/** xl restore [-p] [-c] [-e] <CheckpointFile>: a domain again from a save file. */
async function cmdRestore(args: string[]): Promise<number> {
  const { values, positionals } = opts(
    "restore",
    args,
    {
      paused: { type: "boolean", short: "p" },
      console: { type: "boolean", short: "c" },
      "no-wait": { type: "boolean", short: "e" },
      debug: { type: "boolean", short: "d" },
      vnc: { type: "boolean", short: "V" },
    },
    1,
    2,
  );
  if (positionals.length === 2)
    throw new XlFail(
      "restore: a config file replacing the saved one is not supported by tsxen's xl",
    );
  const attach = values.console === true;
  let domid: number;
  try {
    const r = await (
      await libxl()
    ).call("restore", { file: resolve(positionals[0]!), paused: attach || values.paused === true });
    printCallLog(r.log);
    domid = Number(r.domid);
  } catch (e) {
    printCallLog((e as { log?: unknown }).log);
    throw new XlFail((e as Error).message);
  }
  if (attach) {
    const s = await attachConsole(paths.console, domid);
    if (!values.paused) await (await xc()).domainUnpause(domid);
    closeAll();
    return runConsole(s);
  }
  return 0;
}

async function cmdConsole(args: string[]): Promise<number> {
  const { values, positionals } = opts(
    "console",
    args,
    { type: { type: "string", short: "t" }, num: { type: "string", short: "n" } },
    1,
    1,
  );
  // Without -t: an HVM guest's serial port, a PV guest's console (as Xen's xl).
  const type = values.type as string | undefined;
  if (type !== undefined && type !== "pv" && type !== "serial") {
    throw new UsageError("console", `console type must be 'pv' or 'serial', not '${type}'`);
  }
  if ((values.num ?? "0") !== "0")
    throw new XlFail(`Unable to attach console: no console ${values.num}`);
  const domid = await findDomain(positionals[0]!);
  let s;
  try {
    s = await attachConsole(paths.console, domid, true, type as "pv" | "serial" | undefined);
  } catch (e) {
    throw new XlFail(`Unable to attach console: ${(e as Error).message}`);
  }
  closeAll();
  return runConsole(s);
}

async function cmdInfo(args: string[]): Promise<number> {
  const { positionals } = opts("info", args, { numa: { type: "boolean", short: "n" } }, 0, 1);
  const x = await xc();
  const p = await x.physinfo();
  const v = await x.version();
  const sched = await x.schedId();
  const mib = (pages: number): number => Math.floor(pages / 256);
  const rows: Array<[string, string | number]> = [
    ["host", hostname()],
    ["release", release()],
    ["version", osVersion()],
    ["machine", machine()],
    ["nr_cpus", p.nrCpus],
    ["max_cpu_id", p.nrCpus - 1],
    ["nr_nodes", p.nrNodes],
    ["cores_per_socket", p.coresPerSocket],
    ["threads_per_core", p.threadsPerCore],
    ["cpu_mhz", `${Math.floor(p.cpuKhz / 1000)}.${String(p.cpuKhz % 1000).padStart(3, "0")}`],
    ["hw_caps", p.hwCap.map((w) => w.toString(16).padStart(8, "0")).join(":")],
    ["virt_caps", " pv hvm"],
    ["total_memory", mib(p.totalPages)],
    ["free_memory", mib(p.freePages)],
    ["sharing_freed_memory", 0],
    ["sharing_used_memory", 0],
    ["outstanding_claims", 0],
    ["free_cpus", 0],
    ["xen_major", v.major],
    ["xen_minor", v.minor],
    ["xen_extra", v.extra],
    ["xen_version", `${v.major}.${v.minor}${v.extra}`],
    ["xen_caps", v.capabilities],
    ["xen_scheduler", sched === XEN_SCHEDULER_CREDIT ? "credit" : "unknown"],
    ["xen_pagesize", 4096],
    ["platform_params", "virt_start=0x0"],
    ["xen_changeset", "tsxen"],
    ["xen_commandline", ""],
    ["cc_compiler", v.compiler],
    ["cc_compile_by", "tsxen"],
    ["cc_compile_domain", "tsxen"],
    ["cc_compile_date", v.compileDate],
    ["build_id", ""],
    ["xend_config_format", 4],
  ];
  // `xl info NAME` prints just that field's value, as xl's info_name filter.
  const want = positionals[0];
  for (const [k, val] of rows) {
    if (want === undefined) console.log(`${k.padEnd(23)}: ${val}`);
    else if (k === want) console.log(String(val));
  }
  return 0;
}

async function cmdDmesg(args: string[]): Promise<number> {
  const { values } = opts("dmesg", args, { clear: { type: "boolean", short: "c" } }, 0, 0);
  process.stdout.write(await (await xc()).readConsoleRing(values.clear === true));
  return 0;
}

async function cmdDebugKeys(args: string[]): Promise<number> {
  const { positionals } = opts("debug-keys", args, {}, 1, 1);
  await (await xc()).sendDebugKeys(positionals[0]!);
  return 0;
}

/** xl vm-list: the guests (not Dom0), by uuid, as Xen's prints them. */
async function cmdVmList(args: string[]): Promise<number> {
  opts("vm-list", args, {}, 0, 0);
  const lines = ["UUID                                  ID    name"];
  for (const i of await (await xc()).domainGetInfoList()) {
    if (i.domid === 0 || i.dying) continue;
    lines.push(`${i.uuid}  ${i.domid}    ${((await domName(i.domid)) ?? "").padEnd(30)}`);
  }
  console.log(lines.join("\n"));
  return 0;
}

/** xl dump-core <Domain> <filename>: the guest's core, in Xen's dump-core ELF format. */
async function cmdDumpCore(args: string[]): Promise<number> {
  const { positionals } = opts("dump-core", args, {}, 2, 2);
  const domid = await findDomain(positionals[0]!);
  // The host writes the file: the name is the caller's, relative to its directory.
  const path = resolve(positionals[1]!);
  try {
    await (await libxl()).call("coreDump", { domid, path });
  } catch (e) {
    throw new XlFail((e as Error).message);
  }
  return 0;
}

async function cmdDomid(args: string[]): Promise<number> {
  const { positionals } = opts("domid", args, {}, 1, 1);
  const name = positionals[0]!;
  for (const i of await (await xc()).domainGetInfoList()) {
    if ((await domName(i.domid)) === name) {
      console.log(i.domid);
      return 0;
    }
  }
  throw new XlFail(`Can't get domid of domain name '${name}', maybe this domain does not exist.`);
}

async function cmdDomname(args: string[]): Promise<number> {
  const { positionals } = opts("domname", args, {}, 1, 1);
  const q = positionals[0]!;
  if (!/^\d+$/.test(q)) throw new XlFail("Invalid domain id.\n");
  const name = await xsRead(`/local/domain/${q}/name`);
  if (name === undefined) {
    throw new XlFail(
      `Can't get domain name of domain id '${q}', maybe this domain does not exist.`,
    );
  }
  console.log(name);
  return 0;
}

async function cmdRename(args: string[]): Promise<number> {
  const { positionals } = opts("rename", args, {}, 2, 2);
  const domid = await findDomain(positionals[0]!);
  await (await libxl()).call("rename", { domid, name: positionals[1] });
  return 0;
}

async function cmdMemSet(args: string[]): Promise<number> {
  const { positionals } = opts("mem-set", args, {}, 2, 2);
  const domid = await findDomain(positionals[0]!);
  const kib = parseMemKiB(positionals[1]!);
  if (kib === undefined) throw new XlFail(`invalid memory size: ${positionals[1]}`);
  if (kib % 1024 !== 0)
    throw new XlFail(`memory size ${positionals[1]} is not a whole number of MiB`);
  await (await libxl()).call("memSet", { domid, mib: kib / 1024 });
  return 0;
}

async function cmdMemMax(args: string[]): Promise<number> {
  const { positionals } = opts("mem-max", args, {}, 2, 2);
  const domid = await findDomain(positionals[0]!);
  const kib = parseMemKiB(positionals[1]!);
  if (kib === undefined) throw new XlFail(`invalid memory size: ${positionals[1]}`);
  const target = Number(await xsRead(`/local/domain/${domid}/memory/target`));
  if (Number.isFinite(target) && kib < target) {
    throw new XlFail(
      `cannot set domid ${domid} static-max memory to ${kib} KiB: it is below the target ${target} KiB (xl mem-set first)`,
    );
  }
  try {
    await (await xc()).domainSetMaxMem(domid, kib);
  } catch (e) {
    const why =
      e instanceof XcError && e.errno === 12
        ? ": past wasm32's 4 GiB, or an HVM domain (its memory is populated at creation)"
        : "";
    throw new XlFail(
      `cannot set domid ${domid} static-max memory to ${kib} KiB: ${(e as Error).message}${why}`,
    );
  }
  await (await xs()).write(`/local/domain/${domid}/memory/static-max`, String(kib));
  return 0;
}

async function cmdVcpuList(args: string[]): Promise<number> {
  const { positionals } = opts("vcpu-list", args, {}, 0);
  const x = await xc();
  const p = await x.physinfo();
  const infos =
    positionals.length > 0
      ? await Promise.all(positionals.map((q) => domainInfo(q)))
      : await x.domainGetInfoList();
  console.log(
    `${"Name".padEnd(32)} ${"ID".padStart(5)} ${"VCPU".padStart(5)} ${"CPU".padStart(5)} ${"State".padStart(5)} ${"Time(s)".padStart(9)} Affinity (Hard / Soft)`,
  );
  for (const i of infos) {
    const name = await domName(i.domid);
    for (let v = 0; v <= Math.max(i.maxVcpuId, 0); v++) {
      let vi;
      try {
        vi = await x.vcpuGetInfo(i.domid, v);
      } catch {
        break;
      }
      const aff = await x.vcpuAffinity(i.domid, v);
      let row = `${name.padEnd(32)} ${String(i.domid).padStart(5)} ${String(v).padStart(5)}`;
      row += vi.online
        ? `${String(vi.cpu).padStart(5)} ${"".padStart(2)}${vi.running ? "r" : "-"}${vi.blocked ? "b" : "-"}- `
        : `${"-".padStart(5)} ${"".padStart(2)}--p `;
      row += `${(vi.cpuTime / 1e9).toFixed(1).padStart(9)}  `;
      row += `${formatBitmap(aff.hard, p.nrCpus)} / ${formatBitmap(aff.soft, p.nrCpus)}`;
      console.log(row);
    }
  }
  return 0;
}

async function cmdVcpuSet(args: string[]): Promise<number> {
  const { values, positionals } = opts(
    "vcpu-set",
    args,
    { "ignore-host": { type: "boolean", short: "i" } },
    2,
    2,
  );
  const domid = await findDomain(positionals[0]!);
  if (!/^\d+$/.test(positionals[1]!)) throw new XlFail("Error: Invalid argument.");
  const n = Number(positionals[1]);
  if (!values["ignore-host"]) {
    const x = await xc();
    const online = (await x.domainGetInfo(domid)).onlineVcpus;
    const host = (await x.physinfo()).nrCpus;
    if (n > online && n > host) {
      throw new XlFail(
        `You are overcommmitting! You have ${host} physical CPUs and want ${n} vCPUs! Aborting, use --ignore-host to continue`,
      );
    }
  }
  await (await libxl()).call("vcpuSet", { domid, vcpus: n });
  return 0;
}

async function cmdVcpuPin(args: string[]): Promise<number> {
  const { positionals } = opts(
    "vcpu-pin",
    args,
    {
      force: { type: "boolean", short: "f" },
      "ignore-global-affinity-masks": { type: "boolean", short: "i" },
    },
    3,
    4,
  );
  const [dom, vcpu, hardStr, softStr] = positionals as [string, string, string, string?];
  const domid = await findDomain(dom);
  const x = await xc();
  const info = await x.domainGetInfo(domid);
  let vcpus: number[];
  if (vcpu === "all") vcpus = Array.from({ length: info.maxVcpuId + 1 }, (_, i) => i);
  else if (/^\d+$/.test(vcpu)) vcpus = [Number(vcpu)];
  else throw new XlFail(`Error: Invalid argument ${vcpu} as VCPU.`);
  const parse = (s: string | undefined): number | undefined => {
    if (s === undefined || s === "-") return undefined;
    const bits = parseCpuRange(s);
    if (bits === undefined) throw new XlFail(`Invalid argument: '${s}' is not a cpu range`);
    return bits;
  };
  const hard = parse(hardStr);
  const soft = parse(softStr);
  for (const v of vcpus) {
    const cur = await x.vcpuAffinity(domid, v).catch(() => {
      throw new XlFail(`Could not set affinity for vcpu \`${v}'.`);
    });
    try {
      await x.vcpuAffinity(domid, v, { hard: hard ?? cur.hard, soft: soft ?? cur.soft });
    } catch (e) {
      throw new XlFail(`Could not set affinity for vcpu \`${v}': ${(e as Error).message}`);
    }
  }
  return 0;
}

async function cmdSchedCredit(args: string[]): Promise<number> {
  const { values } = opts(
    "sched-credit",
    args,
    {
      domain: { type: "string", short: "d" },
      weight: { type: "string", short: "w" },
      cap: { type: "string", short: "c" },
    },
    0,
    0,
  );
  const x = await xc();
  const header = `${"Name".padEnd(33)} ${"ID".padStart(4)} ${"Weight".padStart(6)} ${"Cap".padStart(4)}`;
  const row = async (domid: number): Promise<string> => {
    const p = await x.schedCredit(domid);
    return `${(await domName(domid)).padEnd(33)} ${String(domid).padStart(4)} ${String(p.weight).padStart(6)} ${String(p.cap).padStart(4)}`;
  };
  const dom = values.domain as string | undefined;
  if (!dom) {
    if (values.weight !== undefined || values.cap !== undefined) {
      throw new XlFail("Must specify a domain.");
    }
    console.log("Cpupool Pool-0: tslice=10ms ratelimit=1000us migration-delay=0us");
    console.log(header);
    for (const i of await x.domainGetInfoList()) console.log(await row(i.domid));
    return 0;
  }
  const domid = await findDomain(dom);
  if (values.weight === undefined && values.cap === undefined) {
    console.log(header);
    console.log(await row(domid));
    return 0;
  }
  const cur = await x.schedCredit(domid);
  const num = (s: unknown, what: string): number => {
    if (typeof s !== "string" || !/^\d+$/.test(s))
      throw new XlFail(`invalid ${what}: ${String(s)}`);
    return Number(s);
  };
  const weight = values.weight === undefined ? cur.weight : num(values.weight, "weight");
  const cap = values.cap === undefined ? cur.cap : num(values.cap, "cap");
  if (weight < 1 || weight > 65535) throw new XlFail(`weight ${weight} is outside 1..65535`);
  try {
    await x.schedCredit(domid, { weight, cap });
  } catch (e) {
    throw new XlFail(`libxl_domain_sched_params_set failed: ${(e as Error).message}`);
  }
  return 0;
}

function uptimeString(s: number, short: boolean): string {
  const day = Math.floor(s / 86400);
  s -= day * 86400;
  const hour = Math.floor(s / 3600);
  s -= hour * 3600;
  const min = Math.floor(s / 60);
  const sec = Math.floor(s - min * 60);
  const hm = `${String(hour).padStart(2)}:${String(min).padStart(2, "0")}`;
  const t = short ? hm : `${hm}:${String(sec).padStart(2, "0")}`;
  return day > 1 ? `${day} days, ${t}` : day === 1 ? `1 day, ${t}` : t;
}

async function cmdUptime(args: string[]): Promise<number> {
  const { values, positionals } = opts("uptime", args, { s: { type: "boolean", short: "s" } }, 0);
  const short = values.s === true;
  const now = Date.now() / 1000;
  const domids =
    positionals.length > 0
      ? await Promise.all(positionals.map(findDomain))
      : (await (await xc()).domainGetInfoList()).map((i) => i.domid);
  if (!short) console.log(`${"Name".padEnd(33)} ${"ID".padStart(4)} Uptime`);
  for (const domid of domids) {
    let start: number;
    if (domid === 0) {
      // Dom0's kernel is the host daemon: its uptime is the daemon's.
      start = statSync(paths.pidFile).mtimeMs / 1000;
    } else {
      const vm = await xsRead(`/local/domain/${domid}/vm`);
      const t = vm ? Number(await xsRead(`${vm}/start_time`)) : NaN;
      if (!Number.isFinite(t)) continue;
      start = t;
    }
    const up = Math.max(0, now - start);
    const name = await domName(domid);
    if (short) {
      const clock = new Date().toTimeString().slice(0, 8);
      console.log(` ${clock} up ${uptimeString(up, true)}, ${name} (${domid})`);
    } else {
      console.log(`${name.padEnd(33)} ${String(domid).padStart(4)} ${uptimeString(up, false)}`);
    }
  }
  return 0;
}

async function cmdTop(args: string[]): Promise<number> {
  const { values } = opts(
    "top",
    args,
    {
      batch: { type: "boolean", short: "b" },
      iterations: { type: "string", short: "i" },
      delay: { type: "string", short: "d" },
      networks: { type: "boolean", short: "n" },
      vbds: { type: "boolean", short: "x" },
    },
    0,
    0,
  );
  const iterations = values.iterations === undefined ? Infinity : Number(values.iterations);
  const delay = values.delay === undefined ? 3 : Number(values.delay);
  if (!(iterations >= 1) || !(delay > 0))
    throw new XlFail("top: -i needs a count ≥ 1 and -d a delay > 0");
  const lx = await libxl();
  return runTop(await xc(), domName, {
    batch: values.batch === true,
    iterations,
    delayS: delay,
    networks: values.networks === true,
    vbds: values.vbds === true,
    stats: async () => ((await lx.call("backendStats", {})) as { devices: BackendStats[] }).devices,
  });
}

async function cmdBlockAttach(args: string[]): Promise<number> {
  const { positionals } = opts("block-attach", args, {}, 2);
  const domid = await findDomain(positionals[0]!);
  const spec = positionals.slice(1).join(",");
  try {
    await (await libxl()).call("diskAdd", { domid, spec });
  } catch (e) {
    throw new XlFail(`libxl_device_disk_add failed: ${(e as Error).message}`);
  }
  return 0;
}

async function cmdBlockDetach(args: string[]): Promise<number> {
  const { positionals } = opts(
    "block-detach",
    args,
    { force: { type: "boolean", short: "f" } },
    2,
    2,
  );
  const domid = await findDomain(positionals[0]!);
  try {
    await (await libxl()).call("diskRemove", { domid, vdev: positionals[1] });
  } catch (e) {
    throw new XlFail(`Error: Device ${positionals[1]} not connected: ${(e as Error).message}`);
  }
  return 0;
}

async function cmdBlockList(args: string[]): Promise<number> {
  const { positionals } = opts("block-list", args, {}, 1);
  console.log(
    `${"Vdev".padEnd(5)} ${"BE".padEnd(3)} ${"handle".padEnd(6)} ${"state".padEnd(5)} ${"evt-ch".padEnd(6)} ${"ring-ref".padEnd(8)} ${"BE-path".padEnd(30)}`,
  );
  for (const q of positionals) {
    const domid = await findDomain(q);
    const r = await (await libxl()).call("diskList", { domid });
    for (const d of r.disks as Array<Record<string, number | string>>) {
      console.log(
        `${String(d.vdev).padEnd(5)} ${String(d.backendId).padEnd(3)} ${String(domid).padEnd(6)} ${String(d.state).padEnd(5)} ${String(d.evtchn).padEnd(6)} ${String(d.ringRef).padEnd(8)} ${String(d.backend).padEnd(30)}`,
      );
    }
  }
  return 0;
}

async function cmdNetworkAttach(args: string[]): Promise<number> {
  const { positionals } = opts("network-attach", args, {}, 1);
  const domid = await findDomain(positionals[0]!);
  try {
    await (await libxl()).call("nicAdd", { domid, spec: positionals.slice(1).join(",") });
  } catch (e) {
    throw new XlFail(`libxl_device_nic_add failed: ${(e as Error).message}`);
  }
  return 0;
}

async function cmdNetworkDetach(args: string[]): Promise<number> {
  const { positionals } = opts("network-detach", args, {}, 2, 2);
  const domid = await findDomain(positionals[0]!);
  const which = positionals[1]!;
  const lx = await libxl();
  let devid: number | undefined = /^\d+$/.test(which) ? Number(which) : undefined;
  if (devid === undefined) {
    const nics = (await lx.call("nicList", { domid })).nics as Array<{
      devid: number;
      mac: string;
    }>;
    devid = nics.find((n) => n.mac === which.toLowerCase())?.devid;
  }
  if (devid === undefined) throw new XlFail(`Unknown device ${which}.`);
  try {
    await lx.call("nicRemove", { domid, devid });
  } catch (e) {
    throw new XlFail(`libxl_device_nic_remove failed: ${(e as Error).message}`);
  }
  return 0;
}

async function cmdNetworkList(args: string[]): Promise<number> {
  const { positionals } = opts("network-list", args, {}, 1);
  console.log(
    `${"Idx".padEnd(3)} ${"BE".padEnd(2)} ${"Mac Addr.".padEnd(17)} ${"handle".padEnd(6)} ${"state".padEnd(5)} ${"evt-ch".padEnd(6)} ${"tx-".padStart(5)}/${"rx-ring-ref".padEnd(11)} ${"BE-path".padEnd(30)}`,
  );
  for (const q of positionals) {
    const domid = await findDomain(q);
    const r = await (await libxl()).call("nicList", { domid });
    for (const n of r.nics as Array<Record<string, number | string>>) {
      console.log(
        `${String(n.devid).padEnd(3)} ${String(n.backendId).padEnd(2)} ${String(n.mac).padEnd(17)} ${String(n.devid).padEnd(6)} ${String(n.state).padEnd(5)} ${String(n.evtchn).padEnd(6)} ${String(n.txRingRef).padStart(5)}/${String(n.rxRingRef).padEnd(11)} ${String(n.backend).padEnd(30)}`,
      );
    }
  }
  return 0;
}

/**
 * xl channel-list: each channel of each domain named. Xen's columns, but
 * where Xen's xl prints only a pty's path after the connection, tsxen's
 * prints the socket's path and the channel's name (it has no pty channels),
 * so that the list says where to connect.
 */
async function cmdChannelList(args: string[]): Promise<number> {
  const { positionals } = opts("channel-list", args, {}, 1);
  console.log(
    `${"Idx".padEnd(3)} ${"BE".padEnd(2)} ${"state".padEnd(5)} ${"evt-ch".padEnd(6)} ${"ring-ref".padEnd(8)} ${"connection".padEnd(30)}`,
  );
  for (const q of positionals) {
    const domid = await findDomain(q);
    const r = await (await libxl()).call("channelList", { domid });
    for (const c of r.channels as Array<Record<string, number | string>>) {
      console.log(
        `${String(c.devid).padEnd(3)} ${String(c.backendId).padEnd(2)} ${String(c.state).padEnd(5)} ${String(c.evtchn).padEnd(6)} ${String(c.ringRef).padEnd(8)} ${`${String(c.connection)} ${String(c.path)}`.padEnd(30)} ${String(c.name)}`,
      );
    }
  }
  return 0;
}

const COMMANDS: Record<string, [string, (args: string[]) => Promise<number>]> = {
  create: ["Create a domain from config file <filename>", cmdCreate],
  list: ["List information about all/some domains", cmdList],
  destroy: ["Terminate a domain immediately", cmdDestroy],
  shutdown: ["Issue a shutdown signal to a domain", (a) => cmdShutdownOrReboot("shutdown", a)],
  reboot: ["Issue a reboot signal to a domain", (a) => cmdShutdownOrReboot("reboot", a)],
  pause: ["Pause execution of a domain", (a) => cmdPause(a, true)],
  unpause: ["Unpause a paused domain", (a) => cmdPause(a, false)],
  console: ["Attach to domain's console", cmdConsole],
  trigger: ["Send a trigger to a domain", cmdTrigger],
  sysrq: ["Send a sysrq to a domain", cmdSysrq],
  save: ["Save a domain state to restore later", cmdSave],
  restore: ["Restore a domain from a saved state", cmdRestore],
  migrate: ["Migrate a domain to another host", cmdMigrate],
  "migrate-receive": ["Restore a domain from a saved state", cmdMigrateReceive],
  "vm-list": ["List guest domains, excluding dom0, stubdoms, etc.", cmdVmList],
  "config-update": [
    "Update a running domain's saved configuration, used when rebuilding the domain after reboot.",
    cmdConfigUpdate,
  ],
  "dump-core": ["Core dump a domain", cmdDumpCore],
  info: ["Get information about Xen host", cmdInfo],
  dmesg: ["Read and/or clear dmesg buffer", cmdDmesg],
  "debug-keys": ["Send debug keys to Xen", cmdDebugKeys],
  domid: ["Convert a domain name to domain id", cmdDomid],
  domname: ["Convert a domain id to domain name", cmdDomname],
  rename: ["Rename a domain", cmdRename],
  "mem-set": ["Set the current memory usage for a domain", cmdMemSet],
  "mem-max": ["Set the maximum amount reservation for a domain", cmdMemMax],
  "vcpu-list": ["List the VCPUs for all/some domains", cmdVcpuList],
  "vcpu-set": ["Set the number of active VCPUs allowed for the domain", cmdVcpuSet],
  "vcpu-pin": ["Set which CPUs a VCPU can use", cmdVcpuPin],
  "sched-credit": ["Get/set credit scheduler parameters", cmdSchedCredit],
  uptime: ["Print uptime for all/some domains", cmdUptime],
  top: ["Monitor a host and the domains in real time", cmdTop],
  "block-attach": ["Create a new virtual block device", cmdBlockAttach],
  "block-detach": ["Destroy a domain's virtual block device", cmdBlockDetach],
  "block-list": ["List virtual block devices for a domain", cmdBlockList],
  "network-attach": ["Create a new virtual network device", cmdNetworkAttach],
  "network-detach": ["Destroy a domain's virtual network device", cmdNetworkDetach],
  "network-list": ["List virtual network interfaces for a domain", cmdNetworkList],
  "channel-list": ["List virtual channel devices for a domain", cmdChannelList],
  help: ["Print this help", async (a) => help(a[0])],
};

function help(cmd?: string): number {
  if (cmd && COMMANDS[cmd]) {
    process.stdout.write(usageText(cmd, COMMANDS[cmd][0]));
    return 0;
  }
  const lines = ["Usage xl [-v] <subcommand> [args]", "", "xl full list of subcommands:", ""];
  for (const [name, [text]] of Object.entries(COMMANDS)) lines.push(` ${name.padEnd(19)}${text}`);
  console.log(lines.join("\n"));
  return 0;
}

/** How many -v xl was given: create shows libxc's builder steps from one, libxl's debug lines from three. */
let verbose = 0;

/**
 * xl's global options, before the subcommand, as Xen's xl takes them: -v
 * (more verbose, as many times as wanted: `xl -vvv create` shows each step
 * of the domain builder), -N (dry run: only commands that implement it run, as in Xen,
 * and tsxen's create is the one), -f (force past a running xend: there is
 * none, so nothing is forced), -h. -t and -T (progress indicators and
 * timestamps for save and migrate's messages) are refused until those
 * commands exist.
 */
async function main(argv: string[]): Promise<number> {
  let i = 0;
  let dryRun = false;
  while (argv[i]?.startsWith("-") && argv[i] !== "-") {
    for (const flag of argv[i]!.slice(1)) {
      if (flag === "h") return help();
      if (flag === "N") dryRun = true;
      else if (flag === "t" || flag === "T") {
        console.error(
          `xl: -${flag} is not implemented by tsxen's xl (no command shows progress yet)`,
        );
        return 1;
      } else if (flag === "v") verbose++;
      else if (flag !== "f") {
        console.error(`xl: invalid option -- '${flag}'`);
        help();
        return 1;
      }
    }
    i++;
  }
  const cmd = argv[i];
  if (cmd === undefined) {
    help();
    return 1;
  }
  const entry = COMMANDS[cmd];
  if (!entry) {
    const why = MISSING[cmd];
    if (why) {
      console.error(
        why[0] === "later"
          ? `xl: '${cmd}' is not implemented by tsxen yet: ${why[1]}`
          : `xl: '${cmd}' does not apply on wasm32: ${why[1]}`,
      );
      return 1;
    }
    console.error("command not implemented");
    return 1;
  }
  const args = argv.slice(i + 1);
  if (args.includes("-h") || args.includes("--help")) return help(cmd);
  if (dryRun) {
    if (cmd !== "create") {
      console.error("command does not implement -N (dryrun) option");
      return 1;
    }
    return entry[1](["--dry-run", ...args]);
  }
  return entry[1](args);
}

// A promise, not a top-level await: the bundle xl runs as (build.ts) is CommonJS.
main(process.argv.slice(2)).then(
  (code) => {
    closeAll();
    process.exitCode = code;
  },
  (e: unknown) => {
    closeAll();
    if (e instanceof UsageError) {
      console.error(`xl ${e.cmd}: ${e.message} (see xl help ${e.cmd})`);
      process.exitCode = 2;
    } else {
      console.error((e as Error).message);
      process.exitCode = 1;
    }
  },
);
