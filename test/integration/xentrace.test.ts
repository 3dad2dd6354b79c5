/**
 * Tracing (docs/tracing.md): xentrace drains the hypervisor's trace buffers
 * into Xen's file format while example guests run; Debian's xenalyze reads
 * the file and its per-domain run time matches the CPU time the hypervisor
 * accounts (what `xl top` shows); tsxen's xentrace_format prints it by
 * tools/xentrace/formats; a consumer too slow loses records, counted as
 * Xen counts them; and a consumer that writes nonsense into the buffer's
 * header cannot make the hypervisor write outside it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../../extras/mini-os/paths.js";
import { XcInterface } from "../../tools/libxc/xc.js";
import { LocalHypercalls } from "../../tools/libxc/channel.js";
import {
  xentrace,
  type TraceAccess,
  type XentraceOptions,
  type XentraceResult,
} from "../../tools/xentrace/xentrace.js";
import {
  formatTrace,
  parseTrace,
  readDefs,
  type TraceRecord,
} from "../../tools/xentrace/xentrace_format.js";
import * as T from "../../xen/include/public/trace.js";
import { XenErrno } from "../../xen/include/public/errno.js";
import { DOMID_XEN, HYPERVISOR as H } from "../../xen/include/public/xen.js";
import type { Host } from "../../tools/host/host.js";
import { kernel, newHost, sleep, until } from "../helpers.js";
import { HVM_DIR } from "../../extras/hvm/build.js";
import { loadHvmImageFile } from "../../xen/arch/wasm32/hvm_image.js";
import { WASI_FUNCTIONS, WASI_PORT_BASE } from "../../xen/include/public/hvm/wasm32_io.js";

/** xentrace's access to the buffers from inside the host (the socket's copies, minus the socket). */
function localAccess(host: Host): TraceAccess {
  const pc = host.dom0.privcmd;
  return {
    xc: new XcInterface(new LocalHypercalls(pc)),
    read: (mfns) => Promise.resolve(pc.mmapBatchV2(DOMID_XEN, mfns).pages.map((p) => p?.slice())),
    write: (mfn, off, data) => {
      pc.mmapBatchV2(DOMID_XEN, [mfn]).pages[0]!.set(data, off);
      return Promise.resolve();
    },
  };
}

/** xentrace into memory until `finish`, which gives the file's bytes and xentrace's figures. */
function startTrace(access: TraceAccess, opts: XentraceOptions) {
  const chunks: Uint8Array[] = [];
  const stop = new AbortController();
  const run = xentrace(access, (b) => chunks.push(b.slice()), opts, stop.signal);
  return {
    async finish(): Promise<{ bytes: Buffer; result: XentraceResult }> {
      stop.abort();
      const result = await run;
      return { bytes: Buffer.concat(chunks), result };
    },
  };
}

test("xentrace records the example guests in Xen's format; xenalyze and xentrace_format read it", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-trace-"));
  try {
    const trace = startTrace(localAccess(host), { pollMs: 20 });
    await sleep(30);
    const ticker = host.createSync({
      name: "ticker",
      kernel: await kernel("ticker"),
      memory: 4,
      xenstore: true,
    });
    const spin = host.createSync({
      name: "spin",
      kernel: await kernel("spin"),
      memory: 4,
      xenstore: true,
    });
    await until(() => host.readConsole(ticker.domid).includes("tick 3"), 5000, "ticks");
    host.destroy(spin.domid);
    const spinNs = spin.vcpus[0]!.cpuTimeNs;
    await sleep(50);
    const { bytes, result } = await trace.finish();
    assert.ok(result.reads > 0);
    assert.equal(host.hv.trace.on, false, "xentrace turns tracing off when it stops");
    const file = join(dir, "guests.trace");
    writeFileSync(file, bytes);

    const recs = parseTrace(readFileSync(file));
    const of = (e: number): TraceRecord[] => recs.filter((r) => r.event === e);
    assert.deepEqual(
      of(T.TRC_DOM0_DOM_ADD).map((r) => r.data[0]),
      [ticker.domid, spin.domid],
    );
    assert.deepEqual(
      of(T.TRC_DOM0_DOM_REM).map((r) => r.data[0]),
      [spin.domid],
    );
    const runstate = recs.filter((r) => (r.event & ~0xff0) === T.TRC_SCHED_RUNSTATE_CHANGE);
    for (const d of [ticker, spin])
      assert.ok(
        runstate.some((r) => r.data[0] === d.domid << 16),
        `runstates of d${d.domid}`,
      );
    const calls = of(T.TRC_PV_HYPERCALL_V2).map((r) => r.data[0]! & 0xfffff);
    for (const op of [
      H.__HYPERVISOR_set_timer_op,
      H.__HYPERVISOR_sched_op,
      H.__HYPERVISOR_event_channel_op,
    ])
      assert.ok(calls.includes(op), `hypercall ${op} recorded`);
    assert.ok(of(T.TRC_PV_EVTCHN_SEND).length > 0, "the console's notifications");
    assert.ok(of(T.TRC_MEM_SET_P2M_ENTRY).length === 0, "the host API populates without memory_op");
    assert.ok(recs.every((r) => r.tsc !== undefined));
    assert.ok(
      recs.every((r, i) => i === 0 || r.tsc! >= recs[i - 1]!.tsc!),
      "time only goes forward",
    );

    // Debian's xenalyze: a domain per guest, and spin's run time is the CPU
    // time the hypervisor charged it (what xl top shows), within 10%.
    const summary = execFileSync("xenalyze", ["--summary", "--cpu-hz=1G", file], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    for (const d of [ticker, spin])
      assert.match(summary, new RegExp(`\\|-- Domain ${d.domid} --\\|`));
    const spinPart = summary.slice(summary.indexOf(`|-- Domain ${spin.domid} --|`));
    const running = /^ +running: +\d+ +([\d.]+)s/m.exec(spinPart);
    assert.ok(running, spinPart.slice(0, 600));
    const seconds = Number(running[1]);
    assert.ok(
      Math.abs(seconds - spinNs / 1e9) <= Math.max(0.1 * (spinNs / 1e9), 0.011),
      `xenalyze: spin ran ${seconds} s; the hypervisor charged ${spinNs / 1e9} s`,
    );
    const tickerPart = summary.slice(summary.indexOf(`|-- Domain ${ticker.domid} --|`));
    assert.match(tickerPart, /set_timer_op +\[15\]: +\d+/);
    assert.match(tickerPart, /sched_op +\[29\]: +\d+/);

    // xentrace_format by tsxen's definitions.
    const lines = formatTrace(
      recs,
      readDefs(readFileSync(join(ROOT, "tools/xentrace/formats"), "utf8")),
    );
    assert.equal(lines.length, recs.length, "a rule for every event tsxen records");
    assert.ok(lines.some((l) => /domain_create +\[ dom = \d+ \]/.test(l)));
    assert.ok(lines.some((l) => /runnable_to_running +\[ dom:vcpu = 0x000\d0000 \]/.test(l)));
    assert.ok(
      lines.some((l) => /hypercall +\[ op\|args = 0x1550000f/.test(l)),
      "set_timer_op",
    );
    const cli = execFileSync(
      process.execPath,
      [join(ROOT, "dist/tools/xentrace/xentrace_format.js"), join(ROOT, "tools/xentrace/formats")],
      { input: readFileSync(file), encoding: "utf8" },
    );
    assert.equal(cli, lines.map((l) => `${l}\n`).join(""));
  } finally {
    await host.shutdown();
  }
});

test("an HVM vCPU records its ioreqs on a trace CPU of its own; xenalyze files them as I/O exits", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-trace-"));
  try {
    const trace = startTrace(localAccess(host), { pollMs: 20 });
    await until(() => host.hv.trace.on, 2000, "tracing on");
    const image = await loadHvmImageFile(join(HVM_DIR, "hello.wasm"));
    const hvm = (name: string) =>
      host.createHvm({
        name,
        image,
        memory: 32,
        args: ["hello", "0", "one", "two"],
        env: [],
        shares: [],
        disks: [],
        xenstore: true,
      });
    const a = await hvm("hello-a");
    const b = await hvm("hello-b");
    const ticker = host.createSync({
      name: "ticker",
      kernel: await kernel("ticker"),
      memory: 4,
      xenstore: true,
    });
    await host.waitShutdown(a.domid, 30_000);
    await host.waitShutdown(b.domid, 30_000);
    await until(() => host.readConsole(ticker.domid).includes("tick 1"), 5000, "a tick");
    const ioreqs = new Map([a, b].map((d) => [d.domid, d.hvm!.vcpu!.ioreqs]));
    await sleep(50);
    const file = join(dir, "hvm.trace");
    writeFileSync(file, (await trace.finish()).bytes);
    const recs = parseTrace(readFileSync(file));

    // Each HVM vCPU's records are on a CPU of their own, not the main thread's.
    const cpuOf = new Map<number, number>();
    for (const r of recs)
      if (r.event === T.TRC_SCHED_SWITCH && r.cpu !== 0) cpuOf.set(r.data[2]!, r.cpu);
    assert.ok(cpuOf.has(a.domid) && cpuOf.has(b.domid), "each vCPU says it runs on its CPU");
    assert.notEqual(cpuOf.get(a.domid), cpuOf.get(b.domid));
    for (const d of [a, b]) {
      const mine = recs.filter((r) => r.cpu === cpuOf.get(d.domid));
      const io = mine.filter((r) => r.event === T.TRC_HVM_IOPORT_WRITE);
      const exits = mine.filter((r) => r.event === T.TRC_HVM_VMEXIT);
      const entries = mine.filter((r) => r.event === T.TRC_HVM_VMENTRY);
      // Every ioreq the vCPU sent is an exit, and comes back with its answer
      // (proc_exit's too, unless the domain went before the thread read it).
      assert.equal(exits.length, ioreqs.get(d.domid), `d${d.domid}'s exits`);
      assert.ok(io.length === exits.length || io.length === exits.length - 1);
      assert.equal(entries.length, io.length);
      assert.ok(exits.every((r) => r.data[0] === 30 && r.tsc !== undefined));
      assert.ok(
        io.every((r) => r.tsc === undefined),
        "an I/O record has no time stamp, as Xen's",
      );
      // hello's WASI calls in order, each with its port and answer (0: success).
      const port = (f: string): number => WASI_PORT_BASE + WASI_FUNCTIONS.get(f)!.port;
      const calls = ["args_sizes_get", "args_get", "fd_fdstat_get", "fd_write"];
      calls.push("environ_sizes_get", "fd_write", "proc_exit");
      assert.deepEqual(
        io.map((r) => r.data),
        calls.slice(0, io.length).map((f) => [port(f), 0]),
      );
      const stamps = mine.flatMap((r) => (r.tsc === undefined ? [] : [r.tsc]));
      assert.ok(
        stamps.every((t, i) => i === 0 || t > stamps[i - 1]!),
        "the CPU's time only goes forward",
      );
    }
    assert.ok(
      recs.filter((r) => r.cpu === 0).every((r) => (r.event & T.TRC_HVM) !== T.TRC_HVM),
      "no HVM record on the main thread's CPU",
    );

    // xenalyze: both HVM domains, with their I/O exits and port accesses
    // (an exit counts once the vCPU is back in the guest).
    const summary = execFileSync("xenalyze", ["--summary", "--cpu-hz=1G", file], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    for (const d of [a, b]) {
      const part = summary.slice(summary.indexOf(`|-- Domain ${d.domid} --|`));
      assert.ok(part.length < summary.length, `a section for d${d.domid}`);
      const mine = part.slice(0, part.indexOf("|-- Domain", 5));
      const back = recs.filter(
        (r) => r.cpu === cpuOf.get(d.domid) && r.event === T.TRC_HVM_VMENTRY,
      ).length;
      assert.match(mine, new RegExp(`IO_INSTRUCTION +${back} `), "the exits for I/O");
      // Its port summary: fd_write's port (0x101a) twice.
      assert.match(mine, /IO address summary:[^]*\n +101a:\[w\] +2 /);
    }
    // xentrace_format has rules for the HVM records too.
    const lines = formatTrace(
      recs,
      readDefs(readFileSync(join(ROOT, "tools/xentrace/formats"), "utf8")),
    );
    assert.ok(lines.some((l) => /VMEXIT/.test(l)));
    assert.ok(lines.some((l) => /IOPORT_WRITE/i.test(l)));
  } finally {
    await host.shutdown();
  }
});

test("trace CPUs are lent one per HVM vCPU thread, said when none is left, and come back when it ends", async () => {
  const host = newHost();
  try {
    const xc = localAccess(host).xc;
    await xc.tbufEnable(true);
    // Six of the seven lendable CPUs are taken (as by six HVM vCPUs).
    const taken = Array.from({ length: 6 }, () => host.hv.trace.lendCpu()!.cpu);
    assert.deepEqual(taken, [1, 2, 3, 4, 5, 6]);
    const image = await loadHvmImageFile(join(HVM_DIR, "hello.wasm"));
    const hvm = (name: string) =>
      host.createHvm({
        name,
        image,
        memory: 8,
        args: ["hello"],
        env: [],
        shares: [],
        disks: [],
        xenstore: true,
        paused: true,
      });
    const a = await hvm("a");
    assert.equal(a.hvm!.vcpu!.traceCpu, 7);
    const b = await hvm("b");
    assert.equal(b.hvm!.vcpu!.traceCpu, undefined);
    assert.match(host.dmesg(), /every trace CPU is lent; d\d+'s ioreqs are not recorded/);
    assert.equal(host.hv.trace.lendCpu(), undefined);
    // a's CPU comes back once its thread has ended, not before.
    host.destroy(a.domid);
    await a.hvm!.vcpu!.stopped;
    assert.equal(host.hv.trace.lendCpu()?.cpu, 7);
    // A CPU is lent to a vCPU that started before tracing did, when it starts.
    await xc.tbufEnable(false);
    host.hv.trace.returnCpu(7);
    host.hv.trace.returnCpu(1);
    await xc.tbufEnable(true);
    assert.ok([1, 7].includes(b.hvm!.vcpu!.traceCpu!), String(b.hvm!.vcpu!.traceCpu));
    await xc.tbufEnable(false);
  } finally {
    await host.shutdown();
  }
});

test("a consumer too slow loses records, counted; one that writes nonsense loses its backlog only", async () => {
  const host = newHost();
  try {
    const access = localAccess(host);
    await access.xc.tbufSetSize(1);
    await access.xc.tbufEnable(true);
    const spin = host.createSync({
      name: "spin",
      kernel: await kernel("spin"),
      memory: 4,
      xenstore: true,
    });
    const ticker = host.createSync({
      name: "ticker",
      kernel: await kernel("ticker"),
      memory: 4,
      xenstore: true,
    });
    // Nobody drains the one-page buffer while both run.
    await until(() => host.hv.trace.dropped > 0, 5000, "a full buffer");
    const chunks: Uint8Array[] = [];
    const stop = new AbortController();
    const run = xentrace(
      access,
      (b) => chunks.push(b.slice()),
      { pollMs: 5, pages: 4 },
      stop.signal,
    );
    await sleep(300);
    stop.abort();
    await run;
    const recs = parseTrace(Buffer.concat(chunks));
    const lost = recs.filter((r) => r.event === T.TRC_LOST_RECORDS);
    assert.ok(lost.length >= 1, "a lost-records record");
    assert.ok(lost[0]!.data[0]! > 0);
    // The summary tolerates what it finds (wraps and lost records included).
    const dir = mkdtempSync(join(tmpdir(), "tsxen-trace-"));
    writeFileSync(join(dir, "lossy.trace"), Buffer.concat(chunks));
    execFileSync("xenalyze", ["--summary", "--cpu-hz=1G", join(dir, "lossy.trace")], {
      stdio: "ignore",
    });

    // A consumer writing nonsense into t_buf.cons: the hypervisor drops
    // what was unread and goes on inside its buffer.
    await access.xc.tbufEnable(true);
    const info = await access.xc.tbufGetInfo();
    const [tinfo] = await access.read([info.mfn]);
    const ti = new DataView(tinfo!.buffer);
    // CPU 0's frame list starts at the word its mfn_offset names.
    const first = ti.getUint32(ti.getUint16(2, true) * 4, true);
    for (const bogus of [0xffffffff, 3, 0x7ffffff0]) {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, bogus, true);
      await access.write(first, T.t_buf.fields.cons.offset, b);
      await sleep(30);
      const [page] = await access.read([first]);
      const dv = new DataView(page!.buffer);
      const size = 1 * 4096 - 8;
      assert.ok(dv.getUint32(0, true) < 2 * size && dv.getUint32(4, true) < 2 * size);
    }
    await access.xc.tbufEnable(false);
    assert.equal(host.hv.domainById(ticker.domid)?.isShutdown, false, "guests unaffected");
    assert.equal(host.hv.domainById(spin.domid)?.isShutdown, false);
  } finally {
    await host.shutdown();
  }
});

test("records go round the buffer's end behind wrap records and arrive whole and in order", async () => {
  const host = newHost();
  try {
    const access = localAccess(host);
    await access.xc.tbufSetSize(1);
    const chunks: Uint8Array[] = [];
    const stop = new AbortController();
    const run = xentrace(access, (b) => chunks.push(b.slice()), { pollMs: 1 }, stop.signal);
    await until(() => host.hv.trace.on, 2000, "tracing on");
    // 400 records of 40 bytes through a 4,088-byte buffer, 50 at a time
    // (2,000 bytes: less than the buffer holds), drained between batches.
    const event = T.TRC_GUEST + 1;
    for (let i = 0; i < 400; i++) {
      host.hv.trace.record(event, [i, 1, 2, 3, 4, 5, i ^ 0xffffffff]);
      // xentrace polls every millisecond: the batch is drained before the next.
      if (i % 50 === 49) await sleep(30);
    }
    await sleep(20);
    stop.abort();
    await run;
    assert.equal(host.hv.trace.dropped, 0);
    const recs = parseTrace(Buffer.concat(chunks));
    const mine = recs.filter((r) => r.event === event);
    assert.deepEqual(
      mine.map((r) => r.data[0]),
      [...Array(400).keys()],
      "every record, in order",
    );
    assert.ok(mine.every((r) => r.data[6] === (r.data[0]! ^ 0xffffffff) >>> 0));
    assert.ok(
      recs.some((r) => r.event === T.TRC_TRACE_WRAP_BUFFER),
      "the buffer's end was crossed behind a wrap record",
    );
  } finally {
    await host.shutdown();
  }
});

test("tbuf_op refuses what Xen refuses: a size once the buffers exist, sizes out of range", async () => {
  const host = newHost();
  try {
    const xc = localAccess(host).xc;
    await assert.rejects(xc.tbufSetSize(0), /EINVAL/);
    await assert.rejects(xc.tbufSetSize(1 << 20), /EINVAL/);
    await assert.rejects(
      xc.tbufSetSize(128),
      /EINVAL/,
      "t_info's one page lists 8 CPUs' frames: 127 pages each",
    );
    await xc.tbufSetSize(127);
    assert.equal((await xc.tbufGetInfo()).mfn, 0, "no buffers before the first enable");
    await xc.tbufEnable(true);
    await assert.rejects(xc.tbufSetSize(8), /EBUSY/);
    const info = await xc.tbufGetInfo();
    assert.ok(info.mfn > 0);
    assert.equal(info.size, 4096);
    // Only the trace pages are Xen's to map by frame: a guest's frame, or
    // any other, is refused.
    const d = host.createSync({
      name: "g",
      kernel: await kernel("hello"),
      memory: 4,
      paused: true,
    });
    const guestFrame = d.p2m[100]!;
    const { pages, err } = host.dom0.privcmd.mmapBatchV2(DOMID_XEN, [guestFrame, info.mfn]);
    assert.equal(pages[0], undefined);
    assert.equal(err[0], -XenErrno.EINVAL);
    assert.ok(pages[1], "t_info is");
    await xc.tbufEnable(false);
  } finally {
    await host.shutdown();
  }
});
