/**
 * The toolstack as a user drives it: a real host daemon (`tsxen start`) in a
 * temporary run directory, and the `xl` command line as a subprocess for
 * every step. Checks xl's exact list columns, the console (replayed, typed
 * into through a pty), pause/unpause, mem-set reaching the guest through
 * xenstore, shutdown and reboot through control/shutdown, each on_crash
 * action, destroy leaving no xenstore nodes, ports or grants, xl.cfg
 * errors, and one host per run directory.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { XsClient } from "../../tools/xenstore/client.js";
import { hostPaths } from "../../tools/rundir.js";
import { sleep } from "../helpers.js";
import { parseTrace } from "../../tools/xentrace/xentrace_format.js";
import { TRC_DOM0_DOM_ADD, TRC_PV_HYPERCALL_V2 } from "../../xen/include/public/trace.js";
import { hostCpu } from "../../xen/arch/wasm32/host_cpu.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const XL = join(ROOT, "dist/tools/xl/xl.cjs");
const TSXEN = join(ROOT, "dist/tools/host/daemon.js");
const EXAMPLES = join(ROOT, "extras/mini-os/examples");
const dir = mkdtempSync(join(tmpdir(), "tsxen-xl-"));
const env = { ...process.env, TSXEN_RUN_DIR: join(dir, "run"), TSXEN_LOG_DIR: join(dir, "log") };
const paths = hostPaths(env.TSXEN_RUN_DIR);

interface Run {
  code: number | null;
  out: string;
  err: string;
}

function run(bin: string, args: string[], input?: string): Run {
  const r = spawnSync(process.execPath, [bin, ...args], {
    env,
    cwd: ROOT,
    input,
    encoding: "utf8",
    timeout: 30_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const xl = (...args: string[]): Run => run(XL, args);
const tsxen = (...args: string[]): Run => run(TSXEN, args);

/** `xl ...` that must succeed: its stdout. */
function ok(...args: string[]): string {
  const r = xl(...args);
  assert.equal(r.code, 0, `xl ${args.join(" ")} failed (${r.code}): ${r.err}`);
  return r.out;
}

/** xl list's rows by name, cut at xl's fixed column positions. */
function list(): Map<string, { id: number; mem: number; vcpus: number; state: string }> {
  const lines = ok("list").trimEnd().split("\n");
  assert.equal(
    lines[0],
    "Name                                        ID   Mem VCPUs\tState\tTime(s)",
  );
  const rows = new Map<string, { id: number; mem: number; vcpus: number; state: string }>();
  for (const l of lines.slice(1)) {
    assert.match(l, /^.{40} [ \d]{5} [ \d]{5} [ \d]{5} {5}[-rbpscwSd?]{6} {2}[ \d.]{8}$/, l);
    rows.set(l.slice(0, 40).trimEnd(), {
      id: Number(l.slice(41, 46)),
      mem: Number(l.slice(47, 52)),
      vcpus: Number(l.slice(53, 58)),
      state: l.slice(63, 69),
    });
  }
  return rows;
}

async function until(
  pred: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

const consoleLog = (name: string): string => {
  const f = join(env.TSXEN_LOG_DIR, "console", `guest-${name}.log`);
  return existsSync(f) ? readFileSync(f, "utf8") : "";
};

/** A xenstore node's value through the host's xenstored socket, or undefined. */
async function readXs(path: string): Promise<string | undefined> {
  const c = await XsClient.open(paths.xenstored);
  try {
    return await c.readString(path);
  } catch {
    return undefined;
  } finally {
    c.close();
  }
}

/** What Dom0's event channels and the grant tables still say about `domid`. */
function leftovers(domid: number): string[] {
  ok("dmesg", "-c");
  ok("debug-keys", "qeg");
  const dump = ok("dmesg");
  return dump
    .split("\n")
    .filter((l) =>
      new RegExp(
        `\\bd${domid}:|for d${domid}\\b|dom ${domid} |pinned by d${domid}\\b|domain ${domid} `,
      ).test(l),
    );
}

before(() => {
  const r = tsxen("start");
  assert.equal(r.code, 0, `tsxen start: ${r.err}`);
});

after(() => {
  const r = tsxen("stop", "--timeout", "1");
  rmSync(dir, { recursive: true, force: true });
  assert.equal(r.code, 0, r.err);
});

test("one host per run directory; status", () => {
  const again = tsxen("start");
  assert.equal(again.code, 1);
  assert.match(again.err, /a host is already running on .* \(pid \d+\)/);
  const fg = tsxen("start", "--foreground");
  assert.equal(fg.code, 1);
  assert.match(fg.err, /already running/);
  const st = tsxen("status");
  assert.equal(st.code, 0);
  assert.match(st.out, /running \(pid \d+\)/);
  // The pid and the process's start time: a pid alone could be anyone's later.
  assert.match(readFileSync(paths.pidFile, "utf8"), /^\d+ \d+\n$/);
});

test("create, list's columns, pause and unpause, console replay, mem-set, shutdown -w", async () => {
  const c = xl("create", join(EXAMPLES, "xenstore.cfg"));
  assert.equal(c.code, 0, c.err);
  assert.match(c.err, /^Parsing config from .*xenstore\.cfg\n$/);
  const domid = Number(ok("domid", "xenstore").trim());
  assert.equal(ok("domname", String(domid)).trim(), "xenstore");
  await until(() => consoleLog("xenstore").includes("counter"), 10_000, "the guest's console");
  let row = list().get("xenstore")!;
  assert.deepEqual([row.id, row.mem, row.vcpus], [domid, 4, 1]);
  assert.equal(row.state, "-b----");
  assert.equal(list().get("Domain-0")!.state, "r-----");

  ok("pause", "xenstore");
  row = list().get("xenstore")!;
  assert.equal(row.state[2], "p");
  ok("unpause", "xenstore");
  assert.equal(list().get("xenstore")!.state[2], "-");
  const again = xl("unpause", "xenstore");
  assert.equal(again.code, 1);
  assert.match(again.err, /xc_domain_unpause\(\d+\) failed: Invalid argument \(EINVAL\)/);

  // xl console replays what was printed; Ctrl-] detaches with status 0.
  const con = spawn(process.execPath, [XL, "console", "xenstore"], { env, cwd: ROOT });
  let seen = "";
  con.stdout.on("data", (b: Buffer) => (seen += b.toString()));
  await until(() => seen.includes("is named 'xenstore'"), 10_000, "the replay");
  con.stdin.write("\x1d");
  const code = await new Promise((r) => con.on("exit", r));
  assert.equal(code, 0);

  // mem-set reaches the guest's balloon watch through xenstore.
  ok("mem-set", "xenstore", "2");
  await until(
    () => consoleLog("xenstore").includes("memory/target is 2048 KiB"),
    10_000,
    "the guest to see its target",
  );
  const long = JSON.parse(ok("list", "-l", "xenstore")) as Array<{
    config: { b_info: { target_memkb: number } };
  }>;
  assert.equal(long[0]!.config.b_info.target_memkb, 2048);
  // Its balloon driver gives the pages back: xl list's Mem follows.
  await until(() => consoleLog("xenstore").includes("balloon: 2048 KiB"), 10_000, "the balloon");
  assert.equal(list().get("xenstore")!.mem, 2);
  const tooBig = xl("mem-set", "xenstore", "64");
  assert.equal(tooBig.code, 1);
  assert.match(tooBig.err, /libxl: memory target 64 MiB is outside 1\.\.4 \(maxmem\)/);
  // Past its creation maxmem, with units as xl takes them: 8m, then 6144k.
  ok("mem-max", "xenstore", "8m");
  ok("mem-set", "xenstore", "6144k");
  await until(() => consoleLog("xenstore").includes("balloon: 6144 KiB"), 10_000, "the balloon up");
  assert.equal(list().get("xenstore")!.mem, 6);

  const vm = (await readXs(`/local/domain/${domid}/vm`))!;
  const sd = xl("shutdown", "-w", "xenstore");
  assert.equal(sd.code, 0, sd.err);
  assert.match(
    sd.err,
    /Shutting down domain \d+\nWaiting for 1 domains\nDomain \d+ has been shut down, reason code 0/,
  );
  await until(() => !list().has("xenstore"), 5000, "on_poweroff=destroy");
  assert.match(consoleLog("xenstore"), /control\/shutdown says 'poweroff'/);
  assert.equal(await readXs(`/local/domain/${domid}`), undefined, "the domain's home is gone");
  assert.equal(await readXs(vm), undefined, "its /vm entry is gone");
  assert.deepEqual(leftovers(domid), [], "no port or grant refers to the domain");
});

test("xenstore-paths: what the guest, libxl and the console write; xl sysrq reaches control/sysrq", async () => {
  ok("create", join(EXAMPLES, "xenstore.cfg"), "name='xspaths'");
  const domid = Number(ok("domid", "xspaths").trim());
  await until(() => consoleLog("xspaths").includes("counter"), 10_000, "the guest's console");
  const home = `/local/domain/${domid}`;
  await until(
    async () => (await readXs(`${home}/control/feature-poweroff`)) === "1",
    5000,
    "the guest's features",
  );
  // The guest's own (mini-os's xenstore example, as Linux writes them).
  assert.equal(await readXs(`${home}/control/feature-reboot`), "1");
  assert.equal(
    await readXs(`${home}/control/feature-suspend`),
    "1",
    "it suspends itself, and reconnects in a new domain",
  );
  // The toolstack's.
  assert.equal(await readXs(`${home}/control/platform-feature-xs_reset_watches`), "1");
  assert.equal(await readXs(`${home}/control/platform-feature-multiprocessor-suspend`), "1");
  const backend = `/local/domain/0/backend/console/${domid}/0`;
  assert.equal(await readXs(`${home}/console/backend`), backend);
  assert.equal(await readXs(`${home}/console/backend-id`), "0");
  assert.equal(await readXs(`${backend}/frontend`), `${home}/console`);
  assert.equal(await readXs(`${backend}/frontend-id`), String(domid));
  assert.equal(await readXs(`/libxl/${domid}/type`), "pv");
  const vm = (await readXs(`${home}/vm`))!;
  assert.equal(await readXs(`${vm}/image/ostype`), "linux");
  assert.match((await readXs(`${vm}/image/kernel`))!, /build\/mini-os\/xenstore\.wasm$/);
  // xl sysrq: the letter reaches the guest, which reads and clears it.
  ok("sysrq", "xspaths", "s");
  await until(() => consoleLog("xspaths").includes("xenstore: sysrq 's'"), 5000, "the sysrq");
  assert.equal(await readXs(`${home}/control/sysrq`), "");
  const bad = xl("sysrq", "xspaths", "ab");
  assert.equal(bad.code, 1);
  assert.match(bad.err, /sysrq "ab": give one letter/);
  ok("destroy", "xspaths");
  assert.equal(await readXs(`/libxl/${domid}/type`), undefined);
  assert.equal(await readXs(backend), undefined);
});

test("vm-list; dump-core writes Xen's dump-core ELF, which readelf reads; a FIFO is refused at once; missing commands say why", async () => {
  ok("create", join(EXAMPLES, "ticker.cfg"), "name='dumped'");
  const domid = Number(ok("domid", "dumped").trim());
  await until(() => consoleLog("dumped").includes("tick"), 10_000, "the ticker");
  const vms = ok("vm-list").split("\n");
  assert.equal(vms[0], "UUID                                  ID    name");
  assert.ok(!vms.some((l) => /Domain-0/.test(l)), "vm-list leaves Dom0 out");
  const row = vms.find((l) => / dumped +$/.test(l));
  assert.match(
    row ?? "",
    new RegExp(
      `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}  ${domid}    dumped {24}$`,
    ),
  );

  const core = join(dir, "dumped.core");
  ok("dump-core", "dumped", core);
  const sections = execFileSync("readelf", ["-S", "-W", core], { encoding: "utf8" });
  for (const name of [".note.Xen", ".xen_prstatus", ".xen_shared_info", ".xen_pfn", ".xen_pages"])
    assert.match(sections, new RegExp(`\\${name} `), name);
  const all = execFileSync("readelf", ["-a", "-W", core], { encoding: "utf8", stdio: "pipe" });
  assert.match(all, /Type: +CORE \(Core file\)/);
  assert.doesNotMatch(all, /Warning|Error/i);
  // The notes and pages, read back by hand: the header note's magic and
  // counts, and the guest's start_info page (pfn 1) among the pages.
  const f = readFileSync(core);
  const shoff = Number(f.readBigUInt64LE(40));
  const shnum = f.readUInt16LE(60);
  const strOff = Number(f.readBigUInt64LE(shoff + 64 + 24));
  const section = (want: string): { off: number; size: number } => {
    for (let i = 0; i < shnum; i++) {
      const h = shoff + i * 64;
      const name = f.toString(
        "latin1",
        strOff + f.readUInt32LE(h),
        f.indexOf(0, strOff + f.readUInt32LE(h)),
      );
      if (name === want)
        return { off: Number(f.readBigUInt64LE(h + 24)), size: Number(f.readBigUInt64LE(h + 32)) };
    }
    throw new Error(`no ${want}`);
  };
  const notes = section(".note.Xen");
  // The second note: XEN_ELFNOTE_DUMPCORE_HEADER.
  const h = notes.off + 16;
  assert.equal(f.readUInt32LE(h + 8), 0x2000001);
  assert.equal(f.readUInt32LE(h + 16), 0xf00febed, "XC_CORE_MAGIC: a PV domain");
  assert.equal(f.readUInt32LE(h + 24), 1, "one vCPU");
  const nrPages = f.readUInt32LE(h + 32);
  assert.equal(nrPages, 4 * 256, "memory = 4: every page");
  assert.equal(f.readUInt32LE(h + 40), 4096);
  const pages = section(".xen_pages");
  assert.equal(pages.size, nrPages * 4096);
  assert.equal(pages.off % 4096, 0);
  assert.equal(f.toString("latin1", pages.off + 4096, pages.off + 4096 + 14), "xen-3.0-wasm32");
  const prstatus = section(".xen_prstatus");
  assert.equal(f.readUInt32LE(prstatus.off) & 0x20, 0x20, "vCPU 0 is online (VGCF_online)");

  const fifo = join(dir, "core.fifo");
  execFileSync("mkfifo", [fifo]);
  const t = performance.now();
  const bad = xl("dump-core", "dumped", fifo);
  assert.equal(bad.code, 1);
  assert.match(
    bad.err,
    /core dump of domain \d+ failed: cannot open .*core\.fifo|is not a regular file/,
  );
  assert.ok(performance.now() - t < 3000, "refused at once");
  ok("destroy", "dumped");

  const later = xl("remus", "whatever", "elsewhere");
  assert.equal(later.code, 1);
  assert.match(later.err, /^xl: 'remus' is not implemented by tsxen yet: /);
  const na = xl("pci-list", "whatever");
  assert.match(na.err, /^xl: 'pci-list' does not apply on wasm32: a wasm32 guest has no PCI bus/);
  assert.equal(xl("frobnicate").err, "command not implemented\n");
});

test("xl top shows the backends' counters: NETS, NETTX/NETRX, VBDS and the VBD columns, with -n and -x lines", async () => {
  const img = join(dir, "top.img");
  writeFileSync(img, "");
  truncateSync(img, 8 * 2 ** 20);
  const disk = `disk=["format=raw, vdev=xvda, access=rw, target=${img}"]`;
  ok(
    "create",
    join(EXAMPLES, "blkbench.cfg"),
    'name="topdisk"',
    disk,
    'extra="write seed=3 mib=2"',
    'on_poweroff="preserve"',
  );
  const ping = join(EXAMPLES, "ping.cfg");
  ok("create", ping, 'name="toppong"', 'vif=["bridge=xentop0"]', 'extra="ip=10.9.0.2"');
  ok(
    "create",
    ping,
    'name="topping"',
    'vif=["bridge=xentop0"]',
    'extra="ip=10.9.0.1 peer=10.9.0.2"',
  );
  await until(
    () => /sequential write 2 MiB/.test(consoleLog("topdisk")),
    20_000,
    "the disk writes",
  );
  await until(
    () => /64 bytes from 10\.9\.0\.2/.test(consoleLog("topping")),
    20_000,
    "a ping reply",
  );
  const top = ok("top", "-b", "-i", "1", "-n", "-x").split("\n");
  const row = (name: string): string[] => {
    const l = top.find((x) => new RegExp(`^ +${name} `).test(x));
    assert.ok(l, `no row for ${name} in ${top.join("\n")}`);
    return l.trim().split(/ +/);
  };
  // NAME STATE CPU(sec) CPU(%) MEM(k) MEM(%) MAXMEM(k) MAXMEM(%) VCPUS NETS NETTX NETRX VBDS VBD_OO VBD_RD VBD_WR VBD_RSECT VBD_WSECT SSID
  const d = row("topdisk");
  assert.equal(d[12], "1", "VBDS");
  assert.ok(Number(d[15]) > 0, `VBD_WR ${d[15]}`);
  assert.ok(Number(d[17]) >= 4096, `VBD_WSECT ${d[17]}: 2 MiB is 4096 sectors`);
  assert.equal(d[9], "0", "no NETS");
  // The pinging guest has finished and gone; the one it pinged answered.
  const p = row("toppong");
  assert.equal(p[9], "1", "NETS");
  assert.equal(p[12], "0", "no VBDS");
  const at = top.findIndex((x) => /^ +toppong /.test(x));
  assert.match(
    top[at + 1]!,
    /^Net0 RX: +\d+bytes +\d+pkts +0err +\d+drop {2}TX: +\d+bytes +\d+pkts +\d+err +0drop$/,
  );
  const [, rx, tx] = /RX: +(\d+)bytes.*TX: +(\d+)bytes/.exec(top[at + 1]!)!;
  assert.ok(Number(rx) > 0 && Number(tx) > 0, top[at + 1]);
  const dat = top.findIndex((x) => /^ +topdisk /.test(x));
  assert.match(
    top[dat + 1]!,
    /^VBD BlkBack 51712 \[ca: 0\] OO: +0 +RD: +\d+ +WR: +[1-9]\d* +RSECT: +\d+ +WSECT: +[1-9]\d*$/,
  );
  for (const n of ["topdisk", "toppong"]) ok("destroy", n);
});

test("PV channels: channel= gives a guest agent a socket in Dom0; xl channel-list shows it; careless specs are refused", async () => {
  const sock = join(dir, "echo.sock");
  ok(
    "create",
    join(EXAMPLES, "channel-echo.cfg"),
    `channel=["name=org.tsxen.echo,connection=socket,path=${sock}"]`,
  );
  await until(
    () => consoleLog("channel-echo").includes("has channel org.tsxen.echo"),
    10_000,
    "the agent",
  );
  const cl = ok("channel-list", "channel-echo").split("\n");
  assert.equal(cl[0], "Idx BE state evt-ch ring-ref connection                    ");
  assert.match(
    cl[1]!,
    new RegExp(
      `^1 +0 +4 +\\d+ +\\d+ +socket ${sock.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} +org\\.tsxen\\.echo$`,
    ),
  );
  const { connect } = await import("node:net");
  const s = connect(sock);
  let got = "";
  s.on("data", (b: Buffer) => (got += b.toString()));
  s.write("hello from the host\n");
  await until(() => got.includes("\n"), 5000, "the echo");
  assert.equal(got, "echo: HELLO FROM THE HOST\n");
  s.write("quit\n");
  await until(() => !list().has("channel-echo"), 5000, "the agent to finish");
  s.destroy();
  assert.ok(!existsSync(sock), "the socket goes with the channel");

  // A path where another program listens is not taken from it.
  const busy = join(dir, "busy.sock");
  const { createServer } = await import("node:net");
  const other = createServer((c) => {
    // The backend's probe hangs up at once: that is not an error here.
    c.on("error", () => {});
    c.end("still mine\n");
  });
  await new Promise<void>((r) => other.listen(busy, r));
  try {
    ok(
      "create",
      join(EXAMPLES, "channel-echo.cfg"),
      'name="busy-echo"',
      `channel=["name=org.tsxen.echo,connection=socket,path=${busy}"]`,
    );
    await until(
      () => ok("dmesg").includes("another program listens on that socket"),
      5000,
      "the refusal",
    );
    const c = connect(busy);
    let reply = "";
    c.on("data", (b: Buffer) => (reply += b.toString()));
    await until(() => reply.includes("still mine"), 5000, "the other program's answer");
    c.destroy();
    await until(() => !list().has("busy-echo"), 10_000, "the agent without its channel to go");
  } finally {
    other.close();
  }

  const cfgFile = join(dir, "chan.cfg");
  for (const [spec, msg] of [
    ["connection=socket,path=/tmp/x", /channel: name= is mandatory/],
    ["name=a,connection=pty", /connection=pty needs a pseudo-terminal.*use connection=socket/],
    ["name=a,connection=socket", /connection=socket needs path=/],
    ["name=a,connection=socket,path=/tmp/x,backend=3", /only Dom0 serves channels/],
    ["name=a,colour=blue", /unknown key 'colour'/],
  ] as const) {
    writeFileSync(
      cfgFile,
      `name = "chan"\nmemory = 4\nkernel = "${join(ROOT, "build/mini-os/hello.wasm")}"\nchannel = [ "${spec}" ]\n`,
    );
    const r = xl("create", cfgFile);
    assert.equal(r.code, 1, spec);
    assert.match(r.err, msg, spec);
  }
  assert.ok(!list().has("chan"));
});

test("reboot with on_reboot=restart keeps the name and uuid", async () => {
  ok("create", join(EXAMPLES, "xenstore.cfg"), 'name="rebooter"');
  const before = ok("list", "-v", "rebooter").split("\n")[1]!;
  const [oldId, uuid] = [Number(before.slice(41, 46)), before.split(/\s+/)[6]];
  await until(() => consoleLog("rebooter").includes("counter"), 10_000, "boot");
  ok("reboot", "-w", "rebooter");
  await until(() => (list().get("rebooter")?.id ?? oldId) !== oldId, 10_000, "the restart");
  const afterRow = ok("list", "-v", "rebooter").split("\n")[1]!;
  assert.equal(afterRow.split(/\s+/)[6], uuid);
  assert.match(consoleLog("rebooter"), /control\/shutdown says 'reboot'/);

  // config-update: the next rebuild takes the new config; the running domain keeps its own.
  const upd = xl(
    "config-update",
    "rebooter",
    join(EXAMPLES, "xenstore.cfg"),
    'name="rebooter"',
    "memory=8",
  );
  assert.equal(upd.code, 0, upd.err);
  assert.match(upd.err, /^WARNING: xl now has better capability to manage domain configuration/);
  assert.equal(list().get("rebooter")!.mem, 4, "not applied to the running domain");
  const id2 = list().get("rebooter")!.id;
  await until(() => consoleLog("rebooter").split("counter").length > 2, 10_000, "the second boot");
  ok("reboot", "-w", "rebooter");
  await until(() => (list().get("rebooter")?.id ?? id2) !== id2, 10_000, "the second restart");
  assert.equal(list().get("rebooter")!.mem, 8, "the rebuilt domain has the updated config");
  assert.equal(ok("list", "-v", "rebooter").split("\n")[1]!.split(/\s+/)[6], uuid);
  ok("destroy", "rebooter");
  await until(() => !list().has("rebooter"), 5000, "destroy");
  assert.deepEqual(leftovers(oldId), []);
});

test("each on_crash action", async () => {
  const crash = (action: string, delay: number): number => {
    ok(
      "create",
      join(EXAMPLES, "crash.cfg"),
      `name="c-${action}"`,
      `on_crash="${action}"`,
      `extra="delay=${delay}"`,
    );
    return list().get(`c-${action}`)!.id;
  };
  // Long enough for xl list to see it before it crashes, even on a busy machine.
  const d = crash("destroy", 1500);
  await until(() => !list().has("c-destroy"), 5000, "on_crash=destroy");
  assert.match(consoleLog("c-destroy"), /about to trap/);
  assert.deepEqual(leftovers(d), []);

  crash("preserve", 0);
  await until(() => list().get("c-preserve")?.state === "---sc-", 5000, "a preserved crash");
  ok("destroy", "c-preserve");

  const r = crash("restart", 1500);
  await until(() => (list().get("c-restart")?.id ?? r) !== r, 10_000, "on_crash=restart");
  ok("destroy", "c-restart");

  const rr = crash("rename-restart", 1500);
  await until(
    () => list().has("c-rename-restart-1") && list().has("c-rename-restart"),
    10_000,
    "rename-restart",
  );
  const rows = list();
  assert.equal(
    rows.get("c-rename-restart-1")!.id,
    rr,
    "the crashed domain keeps its id under its new name",
  );
  assert.equal(rows.get("c-rename-restart-1")!.state, "---sc-");
  ok("destroy", "c-rename-restart");
  ok("destroy", "c-rename-restart-1");

  // coredump-destroy: the core goes to <log dir>/dump/<name> (Xen's
  // XEN_DUMP_DIR), then the domain is destroyed.
  crash("coredump-destroy", 300);
  const core = join(env.TSXEN_LOG_DIR, "dump", "c-coredump-destroy");
  await until(
    () => !list().has("c-coredump-destroy") && existsSync(core),
    10_000,
    "coredump-destroy",
  );
  assert.match(ok("dmesg"), /libxl: dumping core of domain \d+ to .*dump\/c-coredump-destroy/);
  assert.match(
    execFileSync("readelf", ["-S", "-W", core], { encoding: "utf8" }),
    /\.xen_pages +PROGBITS/,
  );
  await until(() => ![...list().keys()].some((n) => n.startsWith("c-")), 5000, "all destroyed");
});

test("xl.cfg errors, bad commands and unknown domains", () => {
  const bad = join(dir, "bad.cfg");
  writeFileSync(bad, 'name = "bad"\nmemory = = 4\n');
  let r = xl("create", bad);
  assert.equal(r.code, 1);
  assert.match(r.err, /Failed to parse config: .*bad\.cfg:2:10: /);
  writeFileSync(bad, 'name = "bad"\nkernel = "nosuch.wasm"\nfrobnicate = 1\n');
  r = xl("create", bad);
  assert.equal(r.code, 1);
  assert.match(r.err, /Warning: .*bad\.cfg:3: ignoring option 'frobnicate'/);
  assert.match(r.err, /nosuch\.wasm/);
  r = xl("create", join(dir, "missing.cfg"));
  assert.equal(r.code, 1);
  assert.match(r.err, /Failed to read config file: .*missing\.cfg: No such file or directory/);
  r = xl("list", "nosuch");
  assert.equal(r.code, 1);
  assert.equal(r.err, "nosuch is an invalid domain identifier (rc=-6)\n");
  r = xl("pause", "999");
  assert.equal(r.code, 1);
  assert.match(r.err, /xc_domain_pause\(999\) failed: No such process \(ESRCH\)/);
  r = xl("destroy", "0");
  assert.equal(r.code, 1);
  assert.match(r.err, /Not destroying domain 0/);
  r = xl("list", "--bogus");
  assert.equal(r.code, 2);
  r = xl("frobnicate");
  assert.equal(r.code, 1);
  assert.equal(r.err, "command not implemented\n");
  assert.equal(list().size, 1, "nothing was left half-created");
});

test("hostile files through xl: a FIFO kernel or disk, /dev/zero, a directory, a FIFO config, disks the backend cannot serve: refused at once; the host answers", () => {
  const fifo = join(dir, "fifo");
  execFileSync("mkfifo", [fifo]);
  const cfg = join(dir, "hostile.cfg");
  const rows: Array<[string, RegExp]> = [
    [`kernel = "${fifo}"`, /kernel .*fifo: is a FIFO, not a regular file/],
    [`kernel = "/dev/zero"`, /kernel \/dev\/zero: is a character device, not a regular file/],
    [`kernel = "${dir}"`, /kernel .*: is a directory, not a regular file/],
  ];
  for (const [line, msg] of rows) {
    writeFileSync(cfg, `name = "hostile"\nmemory = 4\n${line}\n`);
    const t = performance.now();
    const r = xl("create", cfg);
    assert.equal(r.code, 1, line);
    assert.match(r.err, msg, line);
    assert.ok(performance.now() - t < 5000, `${line}: xl create took ${performance.now() - t} ms`);
  }
  let r = xl("create", fifo);
  assert.equal(r.code, 1);
  assert.match(r.err, /Failed to read config file: .*fifo: is a FIFO, not a regular file/);
  assert.equal(list().size, 1, "nothing was left half-created, and the host answers");

  // A disk the backend cannot serve fails the create, as in Xen, naming the
  // image and the cause, and leaves nothing behind: a read-only raw disk
  // that is a FIFO (which once hung the host in open), a directory, a qcow2
  // whose header is cut short, a raw file declared qcow2.
  const hello = join(EXAMPLES, "..", "..", "..", "build", "mini-os", "hello.wasm");
  const short = join(dir, "short.qcow2");
  writeFileSync(short, Buffer.from("QFI\xfb\0\0\0\x03", "latin1"));
  const rawfile = join(dir, "raw.img");
  writeFileSync(rawfile, Buffer.alloc(65536));
  const disks: Array<[string, RegExp]> = [
    [
      `format=raw, vdev=xvda, access=ro, target=${fifo}`,
      /fifo: is a FIFO, not a regular file or block device/,
    ],
    [`format=raw, vdev=xvda, target=${dir}`, /Is a directory \(EISDIR\)/],
    [`format=qcow2, vdev=xvda, target=${short}`, /short\.qcow2: the header is truncated/],
    [`format=qcow2, vdev=xvda, target=${rawfile}`, /raw\.img: not a qcow2 image/],
  ];
  for (const [spec, msg] of disks) {
    writeFileSync(cfg, `name = "baddisk"\nmemory = 4\nkernel = "${hello}"\ndisk = [ "${spec}" ]\n`);
    const t = performance.now();
    r = xl("create", cfg);
    assert.equal(r.code, 1, spec);
    assert.match(r.err, /libxl: disk xvda: /, spec);
    assert.match(r.err, msg, spec);
    assert.ok(performance.now() - t < 5000, `${spec}: xl create took ${performance.now() - t} ms`);
    assert.equal(list().size, 1, `${spec}: nothing was left behind`);
  }
});

test("global options: -N is a dry run (create prints libxl's config and makes nothing), -t/-T are refused, unknown ones fail", () => {
  const cfg = join(EXAMPLES, "hello.cfg");
  let r = xl("-N", "create", cfg);
  assert.equal(r.code, 0, r.err);
  const out = JSON.parse(r.out) as {
    domid: null;
    config: { c_info: { name: string; uuid: string }; b_info: { max_memkb: number } };
  };
  assert.equal(out.domid, null);
  assert.equal(out.config.c_info.name, "hello");
  assert.match(out.config.c_info.uuid, /^[0-9a-f-]{36}$/);
  assert.ok(out.config.b_info.max_memkb > 0);
  assert.equal(list().size, 1, "a dry run made no domain");
  assert.equal(xl("create", "-n", cfg).code, 0);
  assert.equal(list().size, 1);
  r = xl("-N", "destroy", "0");
  assert.equal(r.code, 1);
  assert.equal(r.err, "command does not implement -N (dryrun) option\n");
  r = xl("-t", "list");
  assert.equal(r.code, 1);
  assert.match(r.err, /-t is not implemented by tsxen's xl/);
  r = xl("-x", "list");
  assert.equal(r.code, 1);
  assert.match(r.err, /invalid option -- 'x'/);
  assert.equal(xl("-v", "-f", "list").code, 0);
});

test("xl -vvv create shows each step of the domain builder, and -v only libxc's", async () => {
  const cfg = join(EXAMPLES, "hello.cfg");
  let r = xl("-vvv", "create", cfg, 'name="verbose"', 'on_poweroff="destroy"');
  assert.equal(r.code, 0, r.err);
  for (const step of [
    "xc_dom_allocate",
    "xc_dom_kernel_file",
    "xc_domain_create",
    "xc_dom_mem_init",
    "xc_dom_boot_mem_init",
    "xc_dom_build_image",
    "xc_dom_alloc_magic_pages",
    "xc_dom_gnttab_seed",
    "vcpu_wasm32",
  ])
    assert.match(r.err, new RegExp(`^domainbuilder: detail: ${step}`, "m"));
  assert.match(r.err, /^libxl: debug: libxl_create\.c: domcreate_complete/m);
  await until(() => !list().has("verbose"), 10_000, "hello's poweroff");
  r = xl("-v", "create", cfg, 'name="verbose1"', 'on_poweroff="destroy"');
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^domainbuilder: detail: xc_dom_boot_image/m);
  assert.doesNotMatch(r.err, /libxl: debug/);
  assert.doesNotMatch(
    xl("create", cfg, 'name="quiet"', 'on_poweroff="destroy"').err,
    /domainbuilder/,
  );
  // A refused config: what the builder did before it failed, then the error.
  r = xl("-v", "create", cfg, 'name="toobig"', "memory=999999");
  assert.equal(r.code, 1);
  assert.match(r.err, /maxmem=999999M exceeds the 4 GiB of a wasm32 guest/);
  await until(() => !list().has("verbose1") && !list().has("quiet"), 10_000, "poweroffs");
});

test("xentrace over the daemon's privcmd socket records a domain being built, then stops", async () => {
  const file = join(dir, "xl.trace");
  const tr = spawn(
    process.execPath,
    [join(ROOT, "dist/tools/xentrace/xentrace.js"), "-T", "1", "-s", "20", file],
    { env },
  );
  let err = "";
  tr.stderr.on("data", (b) => (err += String(b)));
  const done = new Promise<number | null>((r) => tr.once("exit", r));
  await sleep(200);
  ok("create", join(EXAMPLES, "ticker.cfg"), 'name="traced"');
  const domid = Number(ok("domid", "traced").trim());
  assert.equal(await done, 0, err);
  ok("destroy", "traced");
  const recs = parseTrace(readFileSync(file));
  assert.ok(
    recs.some((r) => r.event === TRC_DOM0_DOM_ADD && r.data[0] === domid),
    "the create is in the trace",
  );
  assert.ok(
    recs.some((r) => r.event === TRC_PV_HYPERCALL_V2),
    "and the guest's hypercalls",
  );
  await until(() => !list().has("traced"), 10_000, "hello's poweroff");
  const bad = run(join(ROOT, "dist/tools/xentrace/xentrace.js"), ["-e", "lots", file]);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /xentrace: invalid evt-mask 'lots'/);
});

test("xl save and xl restore: the ticker goes on where it was, with Xen's messages", async () => {
  ok("create", join(EXAMPLES, "ticker.cfg"), 'name="saved"');
  await until(() => consoleLog("saved").includes("tick 2"), 10_000, "two ticks");
  const file = join(dir, "saved.save");
  let r = xl("save", "saved", file);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^Saving to .*saved\.save new xl format \(info 0x3\/0x0\/\d+\)$/m);
  assert.equal(list().has("saved"), false, "saved and destroyed");
  r = xl("restore", file);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^Loading new save file .*saved\.save \(new xl fmt info 0x3\/0x0\/\d+\)$/m);
  assert.match(r.err, /^ Savefile contains xl domain config in JSON format$/m);
  assert.equal(list().get("saved")?.mem, 4);
  await until(() => /tick 4/.test(consoleLog("saved")), 10_000, "ticks after the restore");
  r = xl("restore", join(dir, "nosuch.save"));
  assert.equal(r.code, 1);
  assert.match(r.err, /nosuch\.save/);
  r = xl("save", "-h");
  assert.match(r.out, /^-c +Leave domain running after creating the snapshot\./m);
  ok("destroy", "saved");
});

test("xl shutdown -w waits as long as the domain takes, as Xen's does, and ends when it is destroyed", async () => {
  ok("create", join(EXAMPLES, "spin.cfg"));
  // spin never answers control/shutdown: the wait outlives the old 10 s limit.
  const w = spawn(process.execPath, [XL, "shutdown", "-w", "spin"], { env });
  let err = "";
  w.stderr.on("data", (b) => (err += String(b)));
  const code = new Promise<number | null>((r) => w.once("exit", r));
  await sleep(11_000);
  assert.equal(w.exitCode, null, `xl shutdown -w gave up: ${err}`);
  ok("destroy", "spin");
  assert.equal(await code, 0);
  assert.match(err, /Domain \d+ has been destroyed\./);
});

test("xl <command> -h prints each command's usage and options; bash completion knows the commands and the domains", () => {
  const commands = ok("help")
    .split("\n")
    .slice(4)
    .map((l) => l.trim().split(/\s+/)[0]!)
    .filter((c) => c);
  assert.ok(commands.length > 25, commands.join(" "));
  for (const cmd of commands) {
    const r = xl(cmd, "-h");
    assert.equal(r.code, 0, cmd);
    assert.match(r.out, new RegExp(`^Usage: xl \\[-v\\] ${cmd} `), cmd);
    assert.doesNotMatch(r.out, /See xl\(1\)/, `${cmd} still prints the stub`);
  }
  assert.match(xl("create", "-h").out, /^-p +Leave the domain paused/m);
  assert.match(xl("sched-credit", "-h").out, /^-w WEIGHT, --weight=WEIGHT +/m);
  // Completion, in a bash where `xl` is this xl.
  const complete = (line: string): string[] => {
    const words = line.split(" ");
    const script = [
      `xl() { "${process.execPath}" "${XL}" "$@"; }`,
      `source "${join(ROOT, "tools/xl/bash-completion/xl")}"`,
      `COMP_WORDS=(${words.map((w) => `"${w}"`).join(" ")}); COMP_CWORD=${words.length - 1}`,
      `_xl; printf '%s\\n' "\${COMPREPLY[@]}"`,
    ].join("\n");
    const r = spawnSync("bash", ["-c", script], { env, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split("\n").filter((w) => w);
  };
  assert.deepEqual(complete("xl cre").sort(), ["create"]);
  assert.ok(complete("xl -v block-").includes("block-attach"));
  assert.ok(complete("xl pause ").includes("Domain-0"));
});

test("create -c shows a guest's output from its first byte", () => {
  const r = run(XL, ["create", "-c", join(EXAMPLES, "hello.cfg")], "");
  assert.equal(r.code, 0, r.err);
  assert.match(
    r.out,
    /^Hello from tsxen! This is domain \d+, command line: 'hello from an xl.cfg'\r\n$/,
  );
});

test("a terminal: typing into xl console under a pty reaches the guest and echoes", async () => {
  ok("create", join(EXAMPLES, "echo.cfg"));
  await until(() => consoleLog("echo").includes("type a line"), 10_000, "echo's prompt");
  // script(1) runs xl console on a pty; what we write to it is typed there.
  const t = spawn("script", ["-qfec", `${process.execPath} ${XL} console echo`, "/dev/null"], {
    env,
    cwd: ROOT,
  });
  let seen = "";
  t.stdout.on("data", (b: Buffer) => (seen += b.toString()));
  await until(() => seen.includes("type a line"), 10_000, "the replayed prompt");
  t.stdin.write("ping pong\r");
  await until(() => seen.includes("echo: ping pong"), 10_000, "the guest's echo");
  t.stdin.write("\x1d");
  const code = await new Promise((r) => t.on("exit", r));
  assert.equal(code, 0);
  ok("destroy", "echo");
});

test("info, dmesg, vcpu-list, vcpu-pin, sched-credit, uptime, top -b, rename, mem-max", async () => {
  const info = ok("info");
  assert.match(info, /^host {19}: /);
  assert.match(info, /\nxen_version {12}: 4\.17/);
  assert.match(info, /\nxen_scheduler {10}: credit\n/);
  assert.equal(ok("info", "nr_cpus").trim(), "1");
  // The host's figures (xen/arch/wasm32/host_cpu.ts), not zeros.
  const cpu = hostCpu();
  assert.match(info, new RegExp(`\\ncpu_mhz {16}: ${Math.floor(cpu.khz / 1000)}\\.\\d{3}\\n`));
  assert.match(
    info,
    new RegExp(
      `\\nhw_caps {16}: ${cpu.hwCaps.map((w) => w.toString(16).padStart(8, "0")).join(":")}\\n`,
    ),
  );
  ok("debug-keys", "q");
  assert.match(ok("dmesg"), /\(XEN\) 'q' pressed -> dumping domain info\n/);
  ok("debug-keys", "hmt");
  const keys = ok("dmesg");
  for (const k of ["e", "g", "h", "m", "q", "t", "r", "a", "0", "i", "I"])
    assert.match(keys, new RegExp(`\\(XEN\\)  key '${k}' \\(ascii '[0-9a-f]{2}'\\) => `));
  assert.match(keys, /\(XEN\) {5}machine: \d+ frames \([\d.]+ MiB\), \d+ free/);
  assert.match(keys, /\(XEN\) {5}d0: tot_pages=\d+ max_pages=\d+ top=\d+ holes=0 charged=\d+/);
  assert.match(keys, /\(XEN\) {5}system time [\d.]+ s since boot; wall clock 20\d\d-/);

  ok("create", join(EXAMPLES, "ticker.cfg"));
  // Xen's r, a, 0 and i, as wasm32 has them.
  ok("debug-keys", "ra0i");
  const more = ok("dmesg");
  assert.match(more, /\(XEN\) 'r' pressed -> dumping run queues\n/);
  assert.match(more, /\(XEN\) Scheduler: SMP Credit Scheduler \(credit\)\n/);
  assert.match(more, /\(XEN\) CPU\[00\] current=(idle|d\d+v\d+)\n/);
  assert.match(more, /\(XEN\) 'a' pressed -> dumping timer queues\n(.*\n)*?\(XEN\) CPU00:\n/);
  assert.match(more, /\(XEN\) {3}ex= +-?\d+us timer=d\d+v0 (singleshot|periodic) \(VIRQ_TIMER\)\n/);
  assert.match(more, /\(XEN\) \*\*\* Dumping Dom0 vcpu#0 state: \*\*\*\n/);
  assert.match(more, /\(XEN\) {5}kernel: the host process; \d+ ports bound, pending: /);
  assert.match(more, /\(XEN\) {4}d\d+ port +\d+: VIRQ_TIMER +vcpu 0 (PENDING|idle)/);
  assert.match(more, /\(XEN\) {4}d0 port +\d+: from d\d+ port \d+ +vcpu 0 /);
  const vl = ok("vcpu-list", "ticker").split("\n");
  assert.equal(
    vl[0],
    "Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)",
  );
  assert.match(vl[1]!, /^ticker {27} +\d+ +0 +0 +-[b-]- +\d+\.\d {2}all \/ all$/);
  ok("vcpu-pin", "ticker", "0", "0");
  assert.match(
    ok("vcpu-list", "ticker"),
    /all \/ all/,
    "pinned to the one pCPU there is: still all",
  );
  const pin = xl("vcpu-pin", "ticker", "0", "3");
  assert.equal(pin.code, 1);
  assert.match(pin.err, /Could not set affinity for vcpu `0'/);

  ok("sched-credit", "-d", "ticker", "-w", "512", "-c", "50");
  const sc = ok("sched-credit", "-d", "ticker").split("\n");
  assert.equal(sc[0], "Name                                ID Weight  Cap");
  assert.match(sc[1]!, /^ticker {27} +\d+ {4}512 {3}50$/);

  // xl's "%-33s %4s %s" columns.
  assert.match(ok("uptime"), /^Name {32}ID Uptime\nDomain-0 {29}0 +\d+:\d\d:\d\d\n/);
  const top = ok("top", "-b", "-i", "2", "-d", "0.2").split("\n");
  assert.match(top[0]!, /^xentop - \d\d:\d\d:\d\d {3}Xen 4\.17/);
  assert.match(top[3]!, /^ +NAME +STATE +CPU\(sec\) CPU\(%\) +MEM\(k\)/);
  assert.ok(top.some((l) => /^ +ticker -{3}[b-][p-][r-] /.test(l)));

  ok("rename", "ticker", "tocker");
  assert.ok(list().has("tocker"));
  ok("mem-max", "tocker", "4m");
  let mm = xl("mem-max", "tocker", "2m");
  assert.equal(mm.code, 1);
  assert.match(mm.err, /below the target 4096 KiB/);
  // Past the maxmem it was created with (4 MiB here), as on Xen; not past wasm32's 4 GiB.
  ok("mem-max", "tocker", "8m");
  const tid = list().get("tocker")!.id;
  assert.equal(await readXs(`/local/domain/${tid}/memory/static-max`), "8192");
  ok("mem-set", "tocker", "6m");
  assert.equal(await readXs(`/local/domain/${tid}/memory/target`), "6144");
  mm = xl("mem-max", "tocker", "5g");
  assert.equal(mm.code, 1);
  assert.match(
    mm.err,
    /xc_domain_setmaxmem\(\d+\) failed: Not enough memory \(ENOMEM\): past wasm32's 4 GiB/,
  );
  ok("destroy", "tocker");
});
