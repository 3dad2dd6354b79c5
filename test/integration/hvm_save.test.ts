/**
 * xl save and restore of HVM guests (#18; docs/hvm.md, "Saving an HVM
 * guest"; docs/save-format.md, "HVM domains"): a WASI program made
 * saveable (nomigrate=0) is saved wherever it is (sleeping, computing in a
 * loop, waiting for serial input) and runs on in the restored domain from
 * there: its memory, stack, globals, open files and clock come with it.
 * What cannot be saved is refused, the guest running on; bad files are
 * refused naming the record, leaving nothing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HVM_DIR } from "../../extras/hvm/build.js";
import { xlDomainConfig, type XlDomainConfig } from "../../tools/libxl/config.js";
import { Libxl } from "../../tools/libxl/domain.js";
import { emulatorRecord } from "../../tools/libxc/xc_hvm.js";
import { channelPair } from "../../tools/libxl/migrate.js";
import { streamPrologue } from "../../tools/libxl/save.js";
import { XcInterface } from "../../tools/libxc/xc.js";
import { LocalHypercalls } from "../../tools/libxc/channel.js";
import * as DC from "../../xen/include/public/domctl.js";
import type { Host } from "../../tools/host/host.js";
import { newHost, sleep, until } from "../helpers.js";

const counter = (name: string, cmdline: string, dir: string, more: Partial<XlDomainConfig> = {}) =>
  xlDomainConfig({
    name,
    type: "hvm",
    kernel: join(HVM_DIR, "counter.wasm"),
    memory: 16,
    cmdline,
    nomigrate: false,
    p9s: [`tag=data,security_model=none,path=${dir}`],
    // Kept once it ends, with its console, for the test to read.
    onPoweroff: "preserve",
    ...more,
  });

/** The echo program, saveable, kept once it ends. */
const echoCfg = (name: string, more: Partial<XlDomainConfig> = {}) =>
  xlDomainConfig({
    name,
    type: "hvm",
    kernel: join(HVM_DIR, "echo.wasm"),
    memory: 16,
    nomigrate: false,
    onPoweroff: "preserve",
    ...more,
  });

const serial = (host: Host, domid: number): string => host.xenconsoled.read(domid, "serial");

/** counter.c's mix() and spin loop, in JavaScript: the sum `spin n` prints. */
function spinSum(n: number): number {
  const mix = (x: number, depth: number): number =>
    depth === 0
      ? (Math.imul(x, 2654435761) + 1) >>> 0
      : (mix((x ^ (x >>> 13)) >>> 0, depth - 1) + depth) >>> 0;
  let sum = 0;
  for (let i = 0; i < n; i++) sum = mix((sum + i) >>> 0, 8);
  return sum;
}

test("a saveable HVM guest saved while it sleeps between ticks runs on in the restored domain: the ticks go on numbered, its clock goes on, its open file keeps its place", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-hvmsave-"));
  try {
    const xl = new Libxl(host);
    const d = await xl.create(counter("ctr", "tick 40 40 /data/ticks", dir));
    await until(() => serial(host, d.domid).includes("tick 5 "), 10_000, "five ticks");
    const log: string[] = [];
    await xl.save(d.domid, join(dir, "ctr.save"), { log: (l) => log.push(l) });
    assert.match(log.join("\n"), /xc_domain_save: saving domain \d+, type wasm32 HVM/);
    assert.equal(host.hv.domains.size, 0, "saved and destroyed");
    const rlog: string[] = [];
    const r = await xl.restore(join(dir, "ctr.save"), { log: (l) => rlog.push(l) });
    assert.match(rlog.join("\n"), /Found wasm32 HVM domain/);
    assert.equal(r.name, "ctr");
    await until(() => serial(host, r.domid).includes("counter: done"), 20_000, "the last tick");
    const after = [...serial(host, r.domid).matchAll(/tick (\d+) at (\d+) ms/g)].map((m) => [
      Number(m[1]),
      Number(m[2]),
    ]);
    // The restored program goes on from where it was: no tick twice, none lost.
    const first = after[0]![0]!;
    assert.ok(first > 5, `the restored guest went on from tick ${first}`);
    assert.deepEqual(
      after.map(([n]) => n),
      Array.from({ length: 41 - first }, (_, i) => first + i),
    );
    // Its monotonic clock went on from the saved time: the ticks stay about 40 ms apart.
    const gaps = after.slice(1).map(([, t], i) => t! - after[i]![1]!);
    assert.ok(
      gaps.every((g) => g >= 35 && g < 400),
      `gaps between ticks: ${gaps.join(", ")}`,
    );
    // The file it opened before the save was written on at its place, line after line.
    assert.equal(
      readFileSync(join(dir, "ticks"), "utf8"),
      Array.from({ length: 40 }, (_, i) => `tick ${i + 1}\n`).join(""),
    );
  } finally {
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an HVM guest computing in a loop is saved mid-loop (at a loop check) and its result in the restored domain is exact", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-hvmsave-"));
  const n = 40_000_000;
  try {
    const xl = new Libxl(host);
    const d = await xl.create(counter("spin", `spin ${n}`, dir));
    await until(() => serial(host, d.domid).includes("spin 1/8"), 20_000, "an eighth of the loop");
    await xl.save(d.domid, join(dir, "spin.save"), { checkpoint: true, leavePaused: true });
    assert.doesNotMatch(serial(host, d.domid), /spin: sum/, "saved before the loop ended");
    xl.destroy(d.domid);
    const r = await xl.restore(join(dir, "spin.save"));
    await until(() => /spin: sum \d+/.test(serial(host, r.domid)), 60_000, "the loop's end");
    const sum = Number(/spin: sum (\d+)/.exec(serial(host, r.domid))![1]);
    assert.equal(sum, spinSum(n));
  } finally {
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("xl save -c of an HVM guest waiting for serial input: it runs on and answers; its checkpoint restores and answers too", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-hvmsave-"));
  try {
    const xl = new Libxl(host);
    const echo = echoCfg("echo");
    const d = await xl.create(echo);
    await until(() => serial(host, d.domid).includes("echo: ready"), 10_000, "the prompt");
    // The program waits in its read of the serial port: the device model
    // withdraws the read, and the program makes it again when it goes on.
    await sleep(50);
    await xl.save(d.domid, join(dir, "echo.save"), { checkpoint: true });
    host.xenconsoled.input(d.domid, Buffer.from("one\n"), "serial");
    await until(() => serial(host, d.domid).includes("echo: one"), 5000, "the original's echo");
    xl.destroy(d.domid);
    const r = await xl.restore(join(dir, "echo.save"));
    host.xenconsoled.input(r.domid, Buffer.from("two\n"), "serial");
    await until(() => serial(host, r.domid).includes("echo: two"), 5000, "the restored echo");
    host.xenconsoled.input(r.domid, Buffer.from("quit\n"), "serial");
    await until(() => serial(host, r.domid).includes("echo: bye"), 5000, "its end");
  } finally {
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("what cannot be saved is refused and the HVM guest runs on: a guest without nomigrate=0, a file it holds open that was removed; a program with PV drivers is not made saveable", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-hvmsave-"));
  try {
    const xl = new Libxl(host);
    const plain = await xl.create(
      counter("plain", "tick 1000 20 /data/plain", dir, { nomigrate: undefined }),
    );
    await assert.rejects(
      xl.save(plain.domid, join(dir, "plain.save")),
      /an HVM guest is saved or migrated only with nomigrate=0/,
    );
    const n = (serial(host, plain.domid).match(/tick/g) ?? []).length;
    await until(
      () => (serial(host, plain.domid).match(/tick/g) ?? []).length > n + 2,
      5000,
      "the unsaved guest to tick on",
    );

    const held = await xl.create(counter("held", "tick 1000 20 /data/held", dir));
    await until(() => serial(host, held.domid).includes("tick 2 "), 5000, "ticks");
    unlinkSync(join(dir, "held"));
    await assert.rejects(
      xl.save(held.domid, join(dir, "held.save")),
      /descriptor \d+ \(.*held \(deleted\)\) was removed from share \/data/,
    );
    const m = (serial(host, held.domid).match(/tick/g) ?? []).length;
    await until(
      () => (serial(host, held.domid).match(/tick/g) ?? []).length > m + 2,
      5000,
      "the refused guest to tick on",
    );

    await assert.rejects(
      xl.create(
        xlDomainConfig({
          name: "pv",
          type: "hvm",
          kernel: join(HVM_DIR, "pvecho.wasm"),
          memory: 16,
          nomigrate: false,
        }),
      ),
      /nomigrate=0: a program with PV drivers \(it imports xen\.hypercall\) cannot be saved yet/,
    );
    // A program too large to make saveable: refused before it is even read whole.
    await assert.rejects(
      xl.create(
        xlDomainConfig({
          name: "big",
          type: "hvm",
          kernel: join(HVM_DIR, "sqlite3.wasm"),
          memory: 32,
          nomigrate: false,
        }),
      ),
      /nomigrate=0: .*sqlite3\.wasm: is 1\.\d MiB; a kernel may be at most 1 MiB/,
    );
  } finally {
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("bad HVM save files are refused naming the record, and leave nothing: a broken vCPU context, a device model state that lies or climbs out of its share, none at all", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-hvmsave-"));
  try {
    const xl = new Libxl(host);
    const d = await xl.create(counter("bad", "tick 1000 20 /data/ticks", dir));
    await until(() => serial(host, d.domid).includes("tick 2 "), 5000, "ticks");
    const file = join(dir, "bad.save");
    await xl.save(d.domid, file);
    const good = readFileSync(file);
    const frames = host.hv.frames.freeFrames;
    const end = good.length - 8;
    const emu = good.indexOf(Buffer.from('{"fds":'));
    const ctxAt = good.indexOf(Buffer.from("W32H"));
    assert.ok(emu > 0 && ctxAt > 0);
    const state = JSON.parse(good.subarray(emu, end).toString().replace(/\0+$/, "")) as {
      fds: Array<Record<string, unknown>>;
      serialIn: string;
    };
    const withState = (s: unknown): Buffer =>
      Buffer.concat([good.subarray(0, emu - 16), emulatorRecord(s), good.subarray(end)]);
    const bad = (name: string, bytes: Buffer): string => {
      const p = join(dir, name);
      writeFileSync(p, bytes);
      return p;
    };
    const refused = async (p: string, re: RegExp): Promise<void> => {
      await assert.rejects(xl.restore(p), re);
      assert.equal(host.hv.domains.size, 0, `nothing left after ${p}`);
      assert.equal(host.hv.frames.freeFrames, frames, `no frame kept after ${p}`);
    };
    const ctx = Buffer.from(good);
    ctx[ctxAt] = 0;
    await refused(bad("magic.save", ctx), /WASM32_HVM_CONTEXT: bad magic at offset \d+/);
    const stack = Buffer.from(good);
    stack.writeUInt32LE(0xfffffff, ctxAt + 24);
    await refused(bad("stack.save", stack), /WASM32_HVM_CONTEXT: a stack of 268435455 bytes/);
    await refused(
      bad("json.save", withState({ fds: "x", serialIn: "" })),
      /EMULATOR_CONTEXT at offset \d+: device model state: fds must be a list/,
    );
    const file3 = state.fds.find((f) => f.kind === "file")!;
    await refused(
      bad(
        "climb.save",
        withState({
          ...state,
          fds: [...state.fds.filter((f) => f !== file3), { ...file3, path: "../../etc/passwd" }],
        }),
      ),
      /descriptor \d+: cannot open \/data\/\.\.\/\.\.\/etc\/passwd again/,
    );
    await refused(
      bad(
        "noshare.save",
        withState({ ...state, fds: [...state.fds, { ...file3, n: 40, share: 7 }] }),
      ),
      /descriptor 40: no share 7/,
    );
    await refused(
      bad("noemu.save", Buffer.concat([good.subarray(0, emu - 16), good.subarray(end)])),
      /no EMULATOR_CONTEXT record \(the device model's state\)/,
    );
    // The file itself restores.
    const r = await xl.restore(file);
    await until(() => serial(host, r.domid).includes("tick"), 5000, "the good file's guest");
  } finally {
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an HVM guest writing its memory all the time migrates live between two hosts: rounds carry what it dirtied, --debug's VERIFY checks every page, and its own check of its work passes at the destination", async () => {
  const [ha, hb] = [newHost(), newHost()];
  try {
    const [xa, xb] = [new Libxl(ha), new Libxl(hb)];
    const d = await xa.create(
      xlDomainConfig({
        name: "mix",
        type: "hvm",
        kernel: join(HVM_DIR, "wasibench.wasm"),
        memory: 64,
        cmdline: "cpu 60",
        nomigrate: false,
        onPoweroff: "preserve",
      }),
    );
    // Computing for a while already (its thread starts slowly on a busy machine).
    await until(() => (d.hvm?.vcpu?.cpuTimeNs ?? 0) > 200e6, 30_000, "the program computing");
    const lines: string[] = [];
    const [cs, cr] = channelPair((l) => lines.push(l));
    const [sent, received] = await Promise.all([
      xa
        .migrateSend(d.domid, cs, { debug: true, maxIters: 5, minRemaining: 50 })
        .finally(() => cs.end()),
      xb.migrateReceive(cr, { paused: false, debug: true }).finally(() => cr.end()),
    ]);
    // How many pages each round carried depends on how much the program ran
    // meanwhile (on a loaded machine its thread may not run in a 20 ms
    // migration at all); what must hold is that nothing was missed, which
    // --debug's VERIFY checked page by page, and the program's own check.
    assert.ok(sent.stats.rounds[0]! > 0, `round 0: ${sent.stats.rounds.join(", ")}`);
    assert.match(lines.join("\n"), /xc_domain_save: saving domain \d+ live, type wasm32 HVM/);
    assert.equal(ha.hv.domains.size, 0, "gone from the source");
    // Every round of the mix gives the same value and 60 of them XOR to 0:
    // a round computed wrong after the move would show.
    await until(
      () => /result: cpu [\d.]+ ms \(check 0\)/.test(serial(hb, received.domid)),
      60_000,
      "the program's result at the destination",
    );
  } finally {
    await ha.shutdown();
    await hb.shutdown();
  }
});

test("log-dirty sees an HVM program's memory: a page written since the last CLEAN is dirty, and only that one", async () => {
  const host = newHost();
  try {
    const xl = new Libxl(host);
    // nomigrate not set: log-dirty still tracks it.
    const d = await xl.create(echoCfg("still", { nomigrate: undefined }));
    // Waiting for serial input: the program writes nothing of its own meanwhile.
    await until(() => serial(host, d.domid).includes("echo: ready"), 10_000, "the prompt");
    const xc = new XcInterface(new LocalHypercalls(host.dom0.privcmd));
    await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY);
    const pfns = (await xc.maximumGpfn(d.domid)) + 1;
    const bits = new Uint8Array(Math.ceil(pfns / 8));
    await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_CLEAN, bits);
    const mem = new Uint8Array(d.hvm!.memory.buffer);
    mem[5 * 4096 + 17]! ^= 0xff;
    bits.fill(0);
    const r = await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_CLEAN, bits);
    assert.equal(r.dirty, 1);
    assert.equal(bits[0], 1 << 5);
    assert.equal(r.pages, pfns);
    await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_OFF);
  } finally {
    await host.shutdown();
  }
});

test("an HVM migration stream whose config asks more memory than the receiving host has free is refused before any of it is held, naming the sizes", async () => {
  const hb = newHost(256 * 1024 ** 2 + 64 * 1024 ** 2);
  try {
    const xb = new Libxl(hb);
    const config = echoCfg("huge", { memory: 4000 });
    const free = hb.hv.frames.freeFrames;
    const lines: string[] = [];
    const [cs, cr] = channelPair((l) => lines.push(l));
    // Its prologue, then nothing: the sender's stream ends there.
    await cs.write(streamPrologue("migration stream", config, {}, () => {}));
    cs.end();
    await assert.rejects(
      xb.migrateReceive(cr, { paused: false, debug: false }).finally(() => cr.end()),
      /Domain creation failed/,
    );
    assert.match(lines.join("\n"), /domain 'huge' needs 4000 MiB; the host has \d+ MiB free/);
    assert.equal(hb.hv.domains.size, 0);
    assert.equal(hb.hv.frames.freeFrames, free);
  } finally {
    await hb.shutdown();
  }
});
