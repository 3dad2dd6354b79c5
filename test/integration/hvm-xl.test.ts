/**
 * HVM guests as a user drives them: a host daemon and the `xl` command line.
 * An xl.cfg with type="hvm", p9= and disk=; xl create -c on the serial
 * console; xl list, pause, unpause; xl console -t serial and -t pv; xl
 * shutdown on a guest without PV drivers (Xen's words, then -F and the
 * ACPI power button); xl trigger; the console log; xl destroy; and the
 * config errors a careless user makes.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { HVM_DIR } from "../../extras/hvm/build.js";
import { sleep, until } from "../helpers.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const XL = join(ROOT, "dist/tools/xl/xl.cjs");
const TSXEN = join(ROOT, "dist/tools/host/daemon.js");
const dir = mkdtempSync(join(tmpdir(), "tsxen-hvm-xl-"));
const env = { ...process.env, TSXEN_RUN_DIR: join(dir, "run"), TSXEN_LOG_DIR: join(dir, "log") };

function run(bin: string, args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [bin, ...args], {
    env,
    cwd: ROOT,
    encoding: "utf8",
    timeout: 60_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const xl = (...args: string[]) => run(XL, args);
function ok(...args: string[]): string {
  const r = xl(...args);
  assert.equal(r.code, 0, `xl ${args.join(" ")} failed (${r.code}): ${r.err}`);
  return r.out;
}

const consoleLog = (name: string): string => {
  const f = join(env.TSXEN_LOG_DIR, "console", `guest-${name}.log`);
  return existsSync(f) ? readFileSync(f, "utf8") : "";
};

/** Writes an xl.cfg into the test's directory; its path. */
function cfg(name: string, text: string): string {
  const p = join(dir, `${name}.cfg`);
  writeFileSync(p, text);
  return p;
}

const stateOf = (name: string): string | undefined =>
  ok("list")
    .split("\n")
    .find((l) => l.startsWith(`${name} `))
    ?.slice(63, 69);

before(() => {
  mkdirSync(join(dir, "share"));
  const r = run(TSXEN, ["start"]);
  assert.equal(r.code, 0, `tsxen start: ${r.err}`);
});

after(() => {
  run(TSXEN, ["stop", "--timeout", "1"]);
  rmSync(dir, { recursive: true, force: true });
});

test('xl create of a type="hvm" config runs the program with its share and disk; the log has its serial output', async () => {
  writeFileSync(join(dir, "disk.raw"), Buffer.alloc(1 << 20));
  const f = cfg(
    "fs",
    `name = "fs"
type = "hvm"
kernel = "${join(HVM_DIR, "fsops.wasm")}"
memory = 32
extra = "/data"
p9 = [ "tag=data,security_model=none,path=${join(dir, "share")}" ]
disk = [ "${join(dir, "disk.raw")},raw,xvda,rw" ]
on_poweroff = "preserve"
`,
  );
  const c = xl("create", f);
  assert.equal(c.code, 0, c.err);
  assert.match(c.err, /Parsing config from/);
  await until(() => consoleLog("fs").includes("fsops: done"), 20_000, "fsops to finish");
  await until(() => stateOf("fs")?.[3] === "s", 10_000, "the shutdown");
  assert.equal(readFileSync(join(dir, "share", "dir", "renamed.txt"), "utf8"), "written");
  const info = JSON.parse(ok("list", "-l", "fs")) as Array<{
    config: { c_info: { type: string }; p9s: unknown[] };
  }>;
  assert.equal(info[0]!.config.c_info.type, "hvm");
  assert.equal(info[0]!.config.p9s.length, 1);
  ok("destroy", "fs");
});

test("xl create -c attaches to the serial console; typed lines reach stdin; xl list, pause and unpause", async () => {
  const f = cfg(
    "echo",
    `name = "echo"\ntype = "hvm"\nkernel = "${join(HVM_DIR, "echo.wasm")}"\nmemory = 16\n`,
  );
  const con = spawn(process.execPath, [XL, "create", "-c", f], { env, cwd: ROOT });
  const conExited = new Promise((r) => con.on("exit", r));
  let seen = "";
  con.stdout.on("data", (b: Buffer) => (seen += b.toString()));
  await until(() => seen.includes("echo: ready"), 20_000, "the program's prompt on xl create -c");
  assert.match(stateOf("echo") ?? "", /^-b----$/);
  ok("pause", "echo");
  // Blocked (in its read of the serial port) and paused.
  assert.equal(stateOf("echo"), "-bp---");
  con.stdin.write("while paused\n");
  await sleep(300);
  assert.doesNotMatch(seen, /echo: while paused/);
  ok("unpause", "echo");
  await until(() => seen.includes("echo: while paused"), 5000, "the echo after unpause");
  con.stdin.write("\x1d");
  assert.equal(await conExited, 0);
  // -t serial again, replaying; -t pv finds the PV console every guest has.
  const again = spawn(process.execPath, [XL, "console", "-t", "serial", "echo"], {
    env,
    cwd: ROOT,
  });
  const exited = new Promise((r) => again.on("exit", r));
  let replay = "";
  again.stdout.on("data", (b: Buffer) => (replay += b.toString()));
  await until(() => replay.includes("echo: while paused"), 5000, "the replay");
  again.stdin.write("quit\n");
  await until(() => replay.includes("echo: bye"), 5000, "the program to end");
  // The domain goes (on_poweroff=destroy), and xl console with it.
  assert.equal(await exited, 0);
  assert.match(consoleLog("echo"), /echo: ready\necho: while paused\necho: bye\n/);
});

test("xl shutdown of an HVM guest without PV drivers says so; -F presses the ACPI power button", async () => {
  const f = cfg(
    "sleeper",
    `name = "sleeper"\ntype = "hvm"\nkernel = "${join(HVM_DIR, "echo.wasm")}"\nmemory = 16\n`,
  );
  ok("create", f);
  await until(() => consoleLog("sleeper").includes("echo: ready"), 20_000, "boot");
  const r = xl("shutdown", "sleeper");
  assert.equal(r.code, 1);
  assert.match(
    r.err,
    /PV control interface not available: external graceful shutdown not possible\.\nUse "-F" to fallback to ACPI power event\.\n/,
  );
  assert.match(r.err, /shutdown failed \(rc=-8\)/);
  assert.equal(stateOf("sleeper"), "-b----");
  const w = xl("shutdown", "-F", "-w", "sleeper");
  assert.equal(w.code, 0, w.err);
  assert.match(w.err, /PV control interface not available: sending ACPI power button event\./);
  assert.match(w.err, /Domain \d+ has been (shut down|destroyed)/);
  assert.equal(stateOf("sleeper"), undefined, "on_poweroff=destroy took it away");
  assert.match(ok("dmesg"), /ACPI power button: the guest has no ACPI handler, powering off/);
});

test("xl shutdown of an HVM guest with PV drivers goes through control/shutdown, as for a PV guest", async () => {
  // extras/hvm/pvecho.cfg, as shipped: its kernel path is relative to the file.
  ok("create", join(ROOT, "extras/hvm/pvecho.cfg"));
  await until(() => consoleLog("pvecho").includes("serves d0"), 20_000, "boot");
  assert.match(consoleLog("pvecho"), /pvecho: I am d\d+ \(pvecho\); xenstore ring at pfn 4/);
  const r = xl("shutdown", "-w", "pvecho");
  assert.equal(r.code, 0, r.err);
  assert.doesNotMatch(r.err, /PV control interface not available/);
  assert.match(consoleLog("pvecho"), /pvecho: control\/shutdown says poweroff\n/);
  assert.equal(stateOf("pvecho"), undefined, "on_poweroff=destroy took it away");
});

test("xl trigger: power and reset for HVM guests; the others named as meaningless; PV guests refused", async () => {
  const f = cfg(
    "trig",
    `name = "trig"\ntype = "hvm"\nkernel = "${join(HVM_DIR, "echo.wasm")}"\nmemory = 16\non_poweroff = "preserve"\n`,
  );
  ok("create", f);
  const bad = xl("trigger", "trig", "sleep");
  assert.equal(bad.code, 1);
  assert.match(bad.err, /trigger 'sleep' has no wasm32 meaning/);
  const invalid = xl("trigger", "trig", "explode");
  assert.equal(invalid.code, 1);
  assert.match(invalid.err, /Invalid trigger "explode"/);
  ok("trigger", "trig", "power");
  await until(() => stateOf("trig")?.[3] === "s", 5000, "the power-off");
  ok("destroy", "trig");
  const pv = cfg(
    "pvt",
    `name = "pvt"\nkernel = "${join(ROOT, "build/mini-os/hello.wasm")}"\nmemory = 4\non_poweroff = "preserve"\n`,
  );
  ok("create", pv);
  const r = xl("trigger", "pvt", "power");
  assert.equal(r.code, 1);
  assert.match(r.err, /is a PV domain \(triggers are for HVM domains\)/);
  ok("destroy", "pvt");
});

test("careless configs: each error names the key and what was wrong", () => {
  const cases: Array<[string, RegExp]> = [
    [`type = "hvm"\nvcpus = 2`, /'vcpus' must be 1 for an HVM guest on wasm32/],
    [
      `type = "hvm"\nchannel = [ "name=a,connection=socket,path=/tmp/x" ]`,
      /'channel' needs a PV console frontend, which a WASI program does not have/,
    ],
    [
      `type = "hvm"\nvif = [ "bridge=xenbr0" ]`,
      /'vif' an HVM guest on wasm32 has no emulated network card/,
    ],
    [`type = "hvm"\np9 = [ "tag=x,security_model=mapped,path=/tmp" ]`, /only 'none' is supported/],
    [`type = "hvm"\np9 = [ "security_model=none,path=/tmp" ]`, /tag= is mandatory/],
    [`type = "hvm"\np9 = [ "tag=dev,path=/tmp" ]`, /not dev, where disks live/],
    [`type = "hvm"\nserial = "tcp:1234"`, /'serial' must be "pty" or "none"/],
    [`type = "hvm"\nenv = [ "NOEQUALS" ]`, /'env' entries must be NAME=VALUE/],
    [`type = "pv"\np9 = [ "tag=x,path=/tmp" ]`, /'p9' needs a 9pfs frontend/],
    [`type = "pvh"`, /'type' 'pvh' is not available on wasm32/],
  ];
  for (const [body, want] of cases) {
    const f = cfg("bad", `name = "bad"\nkernel = "${join(HVM_DIR, "hello.wasm")}"\n${body}\n`);
    const r = xl("create", f);
    assert.equal(r.code, 1, body);
    assert.match(r.err, want, body);
  }
  // Not a WASI program: a PV kernel given as an HVM program.
  const f = cfg(
    "notwasi",
    `name = "notwasi"\ntype = "hvm"\nkernel = "${join(ROOT, "build/mini-os/hello.wasm")}"\n`,
  );
  const r = xl("create", f);
  assert.equal(r.code, 1);
  assert.match(
    r.err,
    /HVM program .*hello\.wasm: it imports its memory \(env\.memory\); an HVM program defines its own \(a PV kernel imports it: use type = "pv"\)/,
  );
  // A share directory that does not exist fails the create, naming it; nothing is left.
  const g = cfg(
    "noshare",
    `name = "noshare"\ntype = "hvm"\nkernel = "${join(HVM_DIR, "hello.wasm")}"\np9 = [ "tag=x,path=/nonexistent-share" ]\n`,
  );
  const s = xl("create", g);
  assert.equal(s.code, 1);
  assert.match(s.err, /p9 share '\/x': cannot open \/nonexistent-share/);
  assert.equal(stateOf("noshare"), undefined);
});

test("tsxen stop powers an HVM guest off through its ACPI power button, as xendomains would", async () => {
  const f = cfg(
    "last",
    `name = "last"\ntype = "hvm"\nkernel = "${join(HVM_DIR, "echo.wasm")}"\nmemory = 16\n`,
  );
  ok("create", f);
  await until(() => consoleLog("last").includes("echo: ready"), 20_000, "boot");
  const r = run(TSXEN, ["stop", "--timeout", "10"]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out + r.err, /last \(domain \d+\) is down/);
  const log = readFileSync(join(env.TSXEN_LOG_DIR, "tsxen.log"), "utf8");
  assert.match(log, /ACPI power button: the guest has no ACPI handler/);
  assert.doesNotMatch(log, /did not shut down in time/);
});
