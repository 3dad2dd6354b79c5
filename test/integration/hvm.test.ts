/**
 * HVM domains: unmodified WASI programs (built by extras/hvm/build.ts with
 * Debian's clang and wasi-libc) on their vCPU threads, with tsxen's device
 * model in Dom0 serving them. Each test checks what the program did from
 * the host's side: its serial output, its exit code as the domain's
 * shutdown code, files it wrote in a share (read back with the host's own
 * tools), disk images (qemu-img), and that hostile programs hurt nothing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { monitorEventLoopDelay } from "node:perf_hooks";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HVM_DIR } from "../../extras/hvm/build.js";
import { loadHvmImageFile, type HvmImage } from "../../xen/arch/wasm32/hvm_image.js";
import type { Host, HostHvmConfig } from "../../tools/host/host.js";
import type { Domain } from "../../xen/common/domain.js";
import { accountedFrames, kernel, sleep, until, withHost } from "../helpers.js";
import { YOSYS_WASM, runNodeWasi, yosysComparable, yosysShare } from "../wasi_peer.js";
import { PFN_CONSOLE, PFN_XENSTORE } from "../../xen/arch/wasm32/config.js";
import {
  HVM_PARAM_CALLBACK_IRQ,
  HVM_PARAM_CONSOLE_PFN,
  HVM_PARAM_NR_IOREQ_SERVER_PAGES,
  HVM_PARAM_STORE_EVTCHN,
  HVM_PARAM_STORE_PFN,
} from "../../xen/include/public/hvm/hvm_op.js";

/** A built WASI program; fails naming the build step when it is missing. */
async function program(name: string): Promise<HvmImage> {
  const path = join(HVM_DIR, `${name}.wasm`);
  assert.ok(existsSync(path), `${path} is missing: run 'node dist/extras/hvm/build.js --require'`);
  return loadHvmImageFile(path);
}

type Run = Partial<HostHvmConfig> & { program: string };

/** Runs a program to its end on `host`; its domain. */
async function start(host: Host, r: Run): Promise<Domain> {
  return host.createHvm({
    name: r.name ?? r.program,
    image: await program(r.program),
    memory: r.memory ?? 32,
    args: r.args ?? [r.program],
    env: r.env ?? [],
    shares: r.shares ?? [],
    disks: r.disks ?? [],
    xenstore: true,
    ...(r.paused ? { paused: true } : {}),
  });
}

async function runToEnd(host: Host, r: Run): Promise<{ d: Domain; out: string }> {
  const d = await start(host, r);
  await host.waitShutdown(d.domid, 60_000);
  return { d, out: host.xenconsoled.read(d.domid, "serial") };
}

const scratch = (): string => mkdtempSync(join(tmpdir(), "tsxen-hvm-"));

test("a WASI program gets its argv and environment, prints on the serial port, and its exit status is the shutdown code", async () => {
  await withHost(async (host) => {
    const { d, out } = await runToEnd(host, {
      program: "hello",
      args: ["hello", "7", "two words"],
      env: ["GREETING=from the toolstack"],
    });
    assert.equal(
      out,
      "hello from an HVM guest, argc=3\nargv[0]=hello\nargv[1]=7\nargv[2]=two words\nGREETING=from the toolstack\n",
    );
    assert.equal(d.shutdownName, "poweroff");
    assert.equal(d.shutdownCode, 7);
    assert.match(host.dmesg(), /Domain \d+ \(hello\) shutdown: poweroff \(code 7\)/);
    assert.match(host.dmesg(), /ioreq server 0 created by d0/);
    // The toolstack's HVM params, read back as the device model reads them.
    const dm = host.xendevicemodel;
    assert.equal(dm.getParam(d.domid, HVM_PARAM_STORE_PFN), PFN_XENSTORE);
    assert.ok(dm.getParam(d.domid, HVM_PARAM_STORE_EVTCHN) > 0);
    assert.equal(dm.getParam(d.domid, HVM_PARAM_CONSOLE_PFN), PFN_CONSOLE);
    assert.equal(dm.getParam(d.domid, HVM_PARAM_NR_IOREQ_SERVER_PAGES), 8);
    assert.equal(dm.getParam(d.domid, HVM_PARAM_CALLBACK_IRQ), 0, "no PV drivers");
    assert.throws(() => dm.getParam(d.domid, 99), /hvm_param_get\(99\) failed: EINVAL/);
    const row = host.list().find((x) => x.domid === d.domid)!;
    assert.equal(row.vcpus, 1);
    assert.equal(row.memMiB, 32);
  });
});

test("files in a 9pfs share: created, appended, renamed, linked, listed and truncated as the host sees them; escapes refused", async () => {
  const dir = scratch();
  try {
    await withHost(async (host) => {
      const { out } = await runToEnd(host, {
        program: "fsops",
        args: ["fsops", "/data"],
        shares: [{ guestPath: "/data", path: dir, readonly: false }],
      });
      for (const line of out.trim().split("\n").slice(0, -1)) {
        assert.match(line, /: (ok|refused)$/, `fsops step failed: ${line}`);
      }
      assert.match(out, /fsops: done/);
    });
    assert.equal(readFileSync(join(dir, "dir/renamed.txt"), "utf8"), "written");
    assert.equal(readFileSync(join(dir, "big.bin")).length, 1 << 20);
    assert.equal(readFileSync(join(dir, "big.bin"))[3 * 1024 + 5], 3);
    assert.ok(!existsSync(join(dir, "dir/out")), "an absolute symlink was made");
    // The relative symlink pointing up exists (made inside the share) but was never followed out.
    assert.ok(lstatSync(join(dir, "dir/up")).isSymbolicLink());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a read-only share refuses every change with EROFS and leaves the directory untouched", async () => {
  const dir = scratch();
  writeFileSync(join(dir, "keep.txt"), "unchanged");
  try {
    await withHost(async (host) => {
      const { out } = await runToEnd(host, {
        program: "fsops",
        args: ["fsops", "/ro"],
        shares: [{ guestPath: "/ro", path: dir, readonly: true }],
      });
      assert.match(out, /^mkdir: Read-only file system$/m);
      assert.match(out, /^create: Read-only file system$/m);
      assert.match(out, /^write-1MiB: Read-only file system$/m);
    });
    assert.deepEqual(readdirSync(dir), ["keep.txt"]);
    assert.equal(readFileSync(join(dir, "keep.txt"), "utf8"), "unchanged");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a share whose directory is swapped for a symlink mid-run still cannot be left", async () => {
  const dir = scratch();
  const outside = scratch();
  writeFileSync(join(outside, "secret"), "host secret");
  mkdirSync(join(dir, "sub"));
  try {
    await withHost(async (host) => {
      // The host swaps sub for a symlink out of the share while the guest may be walking it.
      let swaps = 0;
      const swapper = setInterval(() => {
        try {
          rmSync(join(dir, "sub"), { recursive: true, force: true });
          if (swaps++ % 2) mkdirSync(join(dir, "sub"));
          else execFileSync("ln", ["-s", outside, join(dir, "sub")]);
        } catch {
          // Racing with itself is fine.
        }
      }, 1);
      try {
        const { out } = await runToEnd(host, {
          program: "hostile",
          args: ["hostile", "race", "sub/secret"],
          shares: [{ guestPath: "/s", path: dir, readonly: false }],
        });
        assert.doesNotMatch(out, /host secret/);
        assert.match(out, /race: \d+ opens, 0 escaped/);
      } finally {
        clearInterval(swapper);
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  }
});

test("disks are /dev/xvdX block devices: raw and qcow2 images read, written, sized and synced byte-wise", async () => {
  const dir = scratch();
  const raw = join(dir, "d.raw");
  const qcow = join(dir, "d.qcow2");
  writeFileSync(raw, Buffer.alloc(1 << 20));
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", qcow, "4M"]);
  try {
    await withHost(async (host) => {
      for (const [path, format, size] of [
        [raw, "raw", 1 << 20],
        [qcow, "qcow2", 4 << 20],
      ] as const) {
        const { out, d } = await runToEnd(host, {
          name: `disk-${format}`,
          program: "disk",
          disks: [{ name: "xvda", path, format, readonly: false }],
        });
        assert.equal(
          out,
          `disk: size ${size}\ndisk: read back ok\ndisk: write past end wrote 4\ndisk: fsync ok\ndisk: write to read-only fd refused\n`,
        );
        assert.equal(d.shutdownCode, 0);
        host.destroy(d.domid);
      }
    });
    const text = "the guest wrote this across a sector boundary";
    assert.equal(
      readFileSync(raw)
        .subarray(1000, 1000 + text.length)
        .toString(),
      text,
    );
    assert.equal(
      readFileSync(raw)
        .subarray((1 << 20) - 4)
        .toString(),
      "1234",
    );
    execFileSync("qemu-img", ["check", "-q", qcow]);
    const back = join(dir, "back.raw");
    execFileSync("qemu-img", ["convert", "-O", "raw", qcow, back]);
    assert.equal(
      readFileSync(back)
        .subarray(1000, 1000 + text.length)
        .toString(),
      text,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test(
  "a disk that cannot be opened fails the create, naming it, and leaves nothing behind",
  { timeout: 60_000 },
  async () => {
    await withHost(async (host) => {
      const free = host.hv.frames.freeFrames;
      // Twenty times: the device model's thread exits as soon as it has
      // failed, and the create used to hang, now and then, when that exit
      // came before the create's cleanup looked for it.
      for (let i = 0; i < 20; i++)
        await assert.rejects(
          start(host, {
            program: "disk",
            disks: [{ name: "xvda", path: "/nonexistent.img", format: "raw", readonly: false }],
          }),
          /device model of 'disk': disk xvda: .*\/nonexistent\.img/,
        );
      await assert.rejects(
        start(host, {
          program: "fsops",
          shares: [{ guestPath: "/x", path: "/nonexistent-dir", readonly: false }],
        }),
        /p9 share '\/x': cannot open \/nonexistent-dir/,
      );
      await until(() => host.hv.domains.size === 0, 2000, "the failed domains to go");
      assert.equal(host.hv.frames.freeFrames, free);
      // A create that failed is not also reported as a crash.
      assert.doesNotMatch(host.dmesg(), /crashed/);
    });
  },
);

test("serial input reaches the program's stdin; a read with nothing typed waits", async () => {
  await withHost(async (host) => {
    const d = await start(host, { program: "echo" });
    await until(() => host.xenconsoled.read(d.domid, "serial").includes("ready"), 10_000, "ready");
    await sleep(100);
    assert.equal(d.runState, "blocked", "waiting for input is blocked, not running");
    host.xenconsoled.input(d.domid, Buffer.from("first line\n"), "serial");
    await until(
      () => host.xenconsoled.read(d.domid, "serial").includes("echo: first line"),
      5000,
      "echo",
    );
    host.xenconsoled.input(d.domid, Buffer.from("quit\n"), "serial");
    await host.waitShutdown(d.domid, 5000);
    assert.equal(
      host.xenconsoled.read(d.domid, "serial"),
      "echo: ready\necho: first line\necho: bye\n",
    );
  });
});

test("poll_oneoff sleeps block the vCPU on a timer", async () => {
  await withHost(async (host) => {
    const t = performance.now();
    const { out, d } = await runToEnd(host, { program: "sleep", args: ["sleep", "300"] });
    const slept = Number(/slept (\d+) ms/.exec(out)![1]);
    assert.ok(slept >= 300 && slept < 400, `slept ${slept} ms`);
    assert.ok(performance.now() - t >= 300);
    assert.ok(
      d.hvm!.vcpu!.cpuTimeNs < 100e6,
      `sleeping cost ${d.hvm!.vcpu!.cpuTimeNs / 1e6} ms of CPU`,
    );
  });
});

test("pause holds an HVM guest at its next I/O and unpause lets it go on", async () => {
  await withHost(async (host) => {
    const d = await start(host, { program: "echo" });
    await until(() => host.xenconsoled.read(d.domid, "serial").includes("ready"), 10_000, "ready");
    host.pause(d.domid);
    assert.equal(d.runState, "paused");
    host.xenconsoled.input(d.domid, Buffer.from("while paused\n"), "serial");
    await sleep(300);
    assert.doesNotMatch(host.xenconsoled.read(d.domid, "serial"), /while paused/);
    host.unpause(d.domid);
    await until(
      () => host.xenconsoled.read(d.domid, "serial").includes("echo: while paused"),
      5000,
      "echo after unpause",
    );
  });
});

test("real programs: Zopfli's gzip output passes gzip -t and decompresses to the input", async () => {
  const dir = scratch();
  let text = "";
  for (let i = 0; i < 4000; i++) text += `line ${i}: the quick brown fox ${(i * 7919) % 1000}\n`;
  writeFileSync(join(dir, "input.txt"), text);
  try {
    await withHost(async (host) => {
      const { d } = await runToEnd(host, {
        program: "zopfli",
        args: ["zopfli", "--gzip", "/data/input.txt"],
        shares: [{ guestPath: "/data", path: dir, readonly: false }],
      });
      assert.equal(d.shutdownCode, 0);
    });
    execFileSync("gzip", ["-t", join(dir, "input.txt.gz")]);
    assert.equal(
      execFileSync("gzip", ["-dc", join(dir, "input.txt.gz")], { encoding: "utf8" }),
      text,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("real programs: the database SQLite's shell writes into a share is read by Debian's sqlite3", async () => {
  const dir = scratch();
  try {
    await withHost(async (host) => {
      const sql =
        "CREATE TABLE t(a INTEGER, b TEXT); " +
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<2000) " +
        "INSERT INTO t SELECT x, 'row ' || x FROM c; SELECT count(*), sum(a) FROM t;";
      const { out, d } = await runToEnd(host, {
        program: "sqlite3",
        args: ["sqlite3", "/data/test.db", sql],
        shares: [{ guestPath: "/data", path: dir, readonly: false }],
      });
      assert.equal(d.shutdownCode, 0);
      assert.match(out, /^2000\|2001000$/m);
    });
    const check = execFileSync(
      "sqlite3",
      [join(dir, "test.db"), "PRAGMA integrity_check; SELECT count(*), sum(a), max(a) FROM t;"],
      { encoding: "utf8" },
    );
    assert.equal(check, "ok\n2000|2001000|2000\n");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a hostile program's wild pointers, lengths, descriptors, paths and polls are refused with WASI errnos", async () => {
  const dir = scratch();
  try {
    await withHost(async (host) => {
      const { out, d } = await runToEnd(host, {
        program: "hostile",
        shares: [{ guestPath: "/s", path: dir, readonly: false }],
      });
      const got = new Map(
        out
          .trim()
          .split("\n")
          .map((l) => l.split(": ") as [string, string]),
      );
      const EFAULT = "21";
      const EINVAL = "28";
      const EBADF = "8";
      const ENOTCAPABLE = "76";
      const expect: Record<string, string> = {
        "write-wild-iovec": EFAULT,
        "write-wild-buffer": EFAULT,
        "write-huge-iovcnt": EINVAL,
        "read-huge-length": EFAULT,
        "write-wild-result": EFAULT,
        "random-wild": EFAULT,
        "random-huge": EFAULT,
        "args-wild": EFAULT,
        "prestat-name-wild": EFAULT,
        "readdir-wild": EFAULT,
        "clock-wild": EFAULT,
        "clock-bad-id": EINVAL,
        "file-fd-is-fast": "yes",
        "file-write-wild-buffer": EFAULT,
        "file-write-wild-iovec": EFAULT,
        "file-read-huge-length": EFAULT,
        "file-write-huge-iovcnt": EINVAL,
        "file-write": "0",
        "file-written": "3",
        "write-fd-1000": EBADF,
        "write-fd-negative": EBADF,
        "close-fd-99": EBADF,
        "seek-stdout": "70",
        "open-dotdot": ENOTCAPABLE,
        "open-absolute": ENOTCAPABLE,
        "open-nul": EINVAL,
        "open-wild-path": "37",
        "symlink-absolute": ENOTCAPABLE,
        "symlink-up": "0",
        "open-through-symlink-up": ENOTCAPABLE,
        "poll-4000": "0",
        "poll-4000-events": "4000",
        "poll-huge": EINVAL,
        "poll-zero": EINVAL,
        hostile: "survived",
      };
      for (const [k, v] of Object.entries(expect))
        assert.equal(got.get(k), v, `${k}: ${got.get(k)}`);
      assert.equal(d.shutdownCode, 0);
    });
    // The wild writes wrote nothing; the good one wrote its 3 bytes.
    assert.equal(readFileSync(join(dir, "f"), "utf8"), "abc");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Runs a hostile mode beside a PV ticker and checks the host and the ticker held. */
async function beside(
  mode: string,
  check?: (host: Host, d: Domain) => Promise<void>,
): Promise<void> {
  await withHost(async (host) => {
    const ticker = await host.create({ name: "ticker", kernel: await kernel("ticker"), memory: 2 });
    const ticks: number[] = [];
    host.onConsole(ticker.domid, () => ticks.push(performance.now()));
    const loop = monitorEventLoopDelay({ resolution: 5 });
    const rss0 = process.memoryUsage().rss;
    const d = await start(host, { program: "hostile", args: ["hostile", mode], memory: 64 });
    loop.enable();
    await until(() => ticks.length >= 4, 10_000, "four ticks beside the attacker");
    loop.disable();
    for (let i = 1; i < ticks.length; i++) {
      const gap = ticks[i]! - ticks[i - 1]!;
      assert.ok(Math.abs(gap - 1000) < 50, `tick gap ${gap.toFixed(1)} ms beside '${mode}'`);
    }
    assert.ok(
      loop.max / 1e6 < 100,
      `the event loop stalled ${(loop.max / 1e6).toFixed(1)} ms beside '${mode}'`,
    );
    const grown = process.memoryUsage().rss - rss0;
    assert.ok(grown < (64 + 128) * 2 ** 20, `host RSS grew ${grown >> 20} MiB beside '${mode}'`);
    await check?.(host, d);
    host.destroy(d.domid);
    await until(() => !host.hv.domains.has(d.domid), 2000, "the attacker to go");
    assert.equal(accountedFrames(host), host.hv.frames.totalFrames);
  });
}

test("an HVM guest in an infinite loop leaves the host and a PV ticker on time, and destroy ends it", async () => {
  await beside("spin", async (_host, d) => {
    assert.equal(d.runState, "running");
    assert.ok(d.hvm!.vcpu!.cpuTimeNs > 1e9, "the spinner ran");
  });
});

test("a program flooding its serial port is throttled to the port's rate", async () => {
  await beside("flood", async (host, d) => {
    let bytes = 0;
    const detach = host.xenconsoled.attach(
      d.domid,
      { output: (b) => (bytes += b.length), closed: () => {} },
      false,
      "serial",
    );
    await sleep(2000);
    detach();
    // SERIAL_RATE (4 MiB/s) after a burst of 1 MiB, and some slack for timers.
    assert.ok(bytes > 1 << 20, `only ${bytes} bytes came through in 2 s`);
    assert.ok(bytes < 10.5 * 2 ** 20, `${(bytes / 2 ** 20).toFixed(1)} MiB in 2 s: not throttled`);
  });
});

test("a program cannot grow past memory=: malloc fails at the domain's size", async () => {
  await withHost(async (host) => {
    const { out } = await runToEnd(host, {
      program: "hostile",
      args: ["hostile", "grow"],
      memory: 32,
    });
    const mib = Number(/malloc stopped at (\d+) MiB/.exec(out)![1]);
    assert.ok(mib >= 28 && mib < 32, `malloc got ${mib} MiB of a 32 MiB domain`);
  });
});

test("a trap crashes the domain with the trap's name", async () => {
  await withHost(async (host) => {
    const d = await start(host, { program: "hostile", args: ["hostile", "trap"] });
    await host.waitShutdown(d.domid, 10_000);
    // The console's output and the vCPU's trap come from two threads.
    await until(
      () => /about to trap/.test(host.xenconsoled.read(d.domid, "serial")),
      2000,
      "output",
    );
    assert.equal(d.runState, "crashed");
    assert.match(host.dmesg(), /crashed: wasm trap: unreachable/);
  });
});

test("destroying an HVM domain ends its threads and gives back every frame", async () => {
  await withHost(async (host) => {
    const free = host.hv.frames.freeFrames;
    const d = await start(host, { program: "echo", memory: 64 });
    assert.equal(host.hv.frames.freeFrames, free - 64 * 256 - 1, "memory= and the ioreq page");
    host.destroy(d.domid);
    await until(() => !host.hv.domains.has(d.domid), 2000, "the domain to go");
    assert.equal(host.hv.frames.freeFrames, free);
    assert.equal(host.deviceModels.size, 0);
    assert.match(host.dmesg(), /ioreq server 0 destroyed/);
  });
});

test("a prebuilt third-party WASI binary: yosys from npm synthesises a design exactly as under node:wasi", async () => {
  const share = await yosysShare();
  const dir = scratch();
  const design = `module counter(input clk, input rst, input en, output reg [7:0] q);
  always @(posedge clk) if (rst) q <= 0; else if (en) q <= q + 1;
endmodule
`;
  const script =
    "read_verilog /work/counter.v; synth -top counter -noabc; stat; write_json /work/out.json";
  try {
    for (const who of ["node", "tsxen"]) {
      const work = join(dir, who);
      mkdirSync(join(work, "tmp"), { recursive: true });
      writeFileSync(join(work, "counter.v"), design);
    }
    const peer = await runNodeWasi(
      YOSYS_WASM,
      ["yosys", "-p", script],
      { "/share": share, "/work": join(dir, "node"), "/tmp": join(dir, "node", "tmp") },
      join(dir, "node", "stdout.txt"),
    );
    assert.equal(peer.code, 0);
    await withHost(async (host) => {
      const d = await host.createHvm({
        name: "yosys",
        image: await loadHvmImageFile(YOSYS_WASM),
        memory: 512,
        args: ["yosys", "-p", script],
        env: [],
        shares: [
          { guestPath: "/share", path: share, readonly: true },
          { guestPath: "/work", path: join(dir, "tsxen"), readonly: false },
          { guestPath: "/tmp", path: join(dir, "tsxen", "tmp"), readonly: false },
        ],
        disks: [],
        xenstore: true,
      });
      let out = "";
      host.xenconsoled.attach(
        d.domid,
        { output: (b) => (out += Buffer.from(b).toString()), closed: () => {} },
        true,
        "serial",
      );
      await host.waitShutdown(d.domid, 120_000);
      await until(() => out.includes("End of script"), 5000, "yosys's last lines");
      assert.equal(d.shutdownCode, 0);
      const ours = readFileSync(join(dir, "tsxen", "out.json"), "utf8");
      assert.equal(ours, readFileSync(join(dir, "node", "out.json"), "utf8"));
      assert.match(ours, /"\$_SDFFE_PP0P_"|"\$_SDFF/);
      assert.equal(
        yosysComparable(out),
        yosysComparable(readFileSync(join(dir, "node", "stdout.txt"), "utf8")),
      );
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("pause stops an HVM guest that computes without I/O (its loop checks), and unpause lets it go on", async () => {
  await withHost(async (host) => {
    const d = await start(host, { program: "hostile", args: ["hostile", "spin"] });
    assert.ok(
      typeof d.hvm!.image.loopChecks === "number" && d.hvm!.image.loopChecks > 0,
      String(d.hvm!.image.loopChecks),
    );
    await until(
      () => host.xenconsoled.read(d.domid, "serial").includes("spinning"),
      10_000,
      "the spinner",
    );
    await sleep(100);
    host.pause(d.domid);
    await sleep(50);
    const t1 = d.hvm!.vcpu!.cpuTimeNs;
    await sleep(300);
    const t2 = d.hvm!.vcpu!.cpuTimeNs;
    assert.ok(t2 - t1 < 5e6, `a paused guest ran ${(t2 - t1) / 1e6} ms`);
    assert.equal(d.runState, "paused");
    host.unpause(d.domid);
    await sleep(300);
    assert.ok(d.hvm!.vcpu!.cpuTimeNs - t2 > 100e6, "the guest runs again after unpause");
    assert.equal(d.runState, "running");
  });
});

test("debug key 'I' shows the ioreq servers and the request a waiting guest has in flight", async () => {
  await withHost(async (host) => {
    const d = await start(host, { program: "echo" });
    await until(() => host.xenconsoled.read(d.domid, "serial").includes("ready"), 10_000, "ready");
    await sleep(50);
    host.debugKeys("I");
    const out = host.dmesg();
    assert.match(out, /'I' pressed -> dumping HVM ioreq servers/);
    assert.match(
      out,
      new RegExp(
        `d${d.domid} \\(echo\\): program [0-9a-f]{12} \\(\\d+ bytes, loop checks: \\d+\\)`,
      ),
    );
    assert.match(
      out,
      /vcpu0: waiting for an ioreq, \d+ ioreqs, cpu [\d.]+ s, in flight: fd_read \(port 0x1014\)/,
    );
    assert.match(out, /ioreq server 0: emulator d0, enabled, page mfn \d+, port 0x1000-0x102d/);
    assert.match(out, /vcpu0 ioreq: in process, port 0x1014 \(fd_read\), 4 args/);
  });
});

test("a device model that dies crashes its domain with the cause, instead of leaving it waiting", async () => {
  await withHost(async (host) => {
    const d = await start(host, { program: "echo" });
    await until(() => host.xenconsoled.read(d.domid, "serial").includes("ready"), 10_000, "ready");
    // What an out-of-memory or a bug in the device model's thread would do.
    await (host.deviceModels.get(d.domid) as unknown as { worker: Worker }).worker.terminate();
    await until(() => d.runState === "crashed", 5000, "the crash");
    assert.match(host.dmesg(), /crashed: its device model stopped: its thread exited/);
    assert.equal(host.deviceModels.has(d.domid), false);
  });
});
