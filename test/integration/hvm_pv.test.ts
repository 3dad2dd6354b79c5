/**
 * PV drivers on HVM (docs/hvm.md): WASI programs that import xen.hypercall,
 * built with Debian's clang and wasi-libc against Xen's own public headers
 * (libxen-dev) and tsxen's arch-wasm32.h (extras/hvm/pv). Each test checks
 * from the host's side: the struct layouts clang gives Xen's headers on
 * wasm32, a vchan between the program and a mini-os guest or Dom0 with its
 * xenstore rendezvous, the graceful shutdown its PV drivers allow, and
 * hostile hypercalls beside a PV ticker.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { WASI } from "node:wasi";
import { HVM_DIR, PV_CFLAGS } from "../../extras/hvm/build.js";
import { loadHvmImageFile } from "../../xen/arch/wasm32/hvm_image.js";
import type { Host } from "../../tools/host/host.js";
import type { Domain } from "../../xen/common/domain.js";
import { Vchan } from "../../tools/libvchan/vchan.js";
import type { Layout } from "../../xen/include/public/layout.js";
import * as ARCH from "../../xen/include/public/arch-wasm32.js";
import * as EV from "../../xen/include/public/event_channel.js";
import * as GT from "../../xen/include/public/grant_table.js";
import * as MEM from "../../xen/include/public/memory.js";
import * as SCHED from "../../xen/include/public/sched.js";
import * as VCPU from "../../xen/include/public/vcpu.js";
import * as DC from "../../xen/include/public/domctl.js";
import * as SC from "../../xen/include/public/sysctl.js";
import * as TRACE from "../../xen/include/public/trace.js";
import { xen_hvm_param } from "../../xen/include/public/hvm/hvm_op.js";
import { ioreq } from "../../xen/include/public/hvm/ioreq.js";
import { vchan_interface } from "../../xen/include/public/io/libxenvchan.js";
import { xencons_interface } from "../../xen/include/public/io/console.js";
import { xenstore_domain_interface, xsd_sockmsg } from "../../xen/include/public/io/xs_wire.js";
import { HVM_PARAM_CALLBACK_IRQ } from "../../xen/include/public/hvm/hvm_op.js";
import { accountedFrames, kernel, sleep, until, withHost } from "../helpers.js";

async function pvProgram(
  host: Host,
  name: string,
  args: string[],
  domid?: number,
): Promise<Domain> {
  const path = join(HVM_DIR, `${name}.wasm`);
  assert.ok(existsSync(path), `${path} is missing: run 'node dist/extras/hvm/build.js --require'`);
  return host.createHvm({
    name,
    image: await loadHvmImageFile(path),
    memory: 128,
    args: [name, ...args],
    env: [],
    shares: [],
    disks: [],
    xenstore: true,
    ...(domid !== undefined ? { domid } : {}),
  });
}

const serial = (host: Host, d: Domain): string => host.xenconsoled.read(d.domid, "serial");

// The guest-visible structs whose C layout, from Xen's headers with
// arch-wasm32.h, must be what the hypervisor reads (docs/arch-wasm32.md).
const LAYOUTS: Array<Layout<string>> = [
  ARCH.vcpu_time_info,
  ARCH.vcpu_info,
  ARCH.shared_info,
  ARCH.multicall_entry,
  ARCH.arch_wasm32_boot,
  EV.evtchn_alloc_unbound,
  EV.evtchn_bind_interdomain,
  EV.evtchn_bind_virq,
  EV.evtchn_bind_ipi,
  EV.evtchn_status,
  EV.evtchn_bind_vcpu,
  EV.evtchn_reset,
  EV.evtchn_init_control,
  EV.evtchn_expand_array,
  EV.evtchn_set_priority,
  EV.evtchn_fifo_control_block,
  GT.grant_entry_v1,
  GT.gnttab_map_grant_ref,
  GT.gnttab_unmap_grant_ref,
  GT.gnttab_setup_table,
  GT.gnttab_dump_table,
  GT.gnttab_copy,
  GT.gnttab_query_size,
  GT.gnttab_set_version,
  GT.gnttab_get_version,
  MEM.xen_memory_reservation,
  MEM.xen_add_to_physmap,
  SCHED.sched_shutdown,
  SCHED.sched_poll,
  SCHED.sched_remote_shutdown,
  VCPU.vcpu_runstate_info,
  VCPU.vcpu_set_periodic_timer,
  VCPU.vcpu_set_singleshot_timer,
  xen_hvm_param,
  ioreq,
  vchan_interface,
  xencons_interface,
  xenstore_domain_interface,
  xsd_sockmsg,
  // The toolstack's (domctl.h, sysctl.h and trace.h, under __XEN_TOOLS__),
  // with wasm32's parts from arch-wasm32.h.
  ARCH.vcpu_guest_context,
  DC.xen_domctl,
  DC.xen_arch_domainconfig,
  DC.xen_domctl_createdomain,
  DC.xen_domctl_getdomaininfo,
  DC.xen_domctl_max_mem,
  DC.xen_domctl_getvcpuinfo,
  DC.xen_domctl_vcpucontext,
  DC.xen_domctl_vcpuaffinity,
  DC.xen_domctl_max_vcpus,
  DC.xen_domctl_sched_credit,
  DC.xen_domctl_scheduler_op,
  DC.xen_domctl_setdomainhandle,
  DC.xen_domctl_shadow_op,
  DC.xen_domctl_wasm32_module,
  DC.xen_domctl_wasm32_set_label,
  SC.xen_sysctl,
  SC.xen_sysctl_readconsole,
  SC.xen_sysctl_tbuf_op,
  SC.xen_sysctl_physinfo,
  SC.xen_sysctl_getdomaininfolist,
  TRACE.t_buf,
];

/** Where tsxen's flattened field names sit in Xen's C structs (as offset expressions). */
const C_OFFSET: Record<string, string> = {
  "evtchn_status.u_port": "offsetof(struct evtchn_status, u.interdomain.port)",
  "evtchn_status.u": "offsetof(struct evtchn_status, u.virq)",
  // The byte of bit-fields (state, data_is_ptr, dir, df) after _pad0.
  "ioreq.flags": "offsetof(struct ioreq, _pad0) + sizeof(uint16_t)",
  "vchan_interface.left_cons": "offsetof(struct vchan_interface, left.cons)",
  "vchan_interface.left_prod": "offsetof(struct vchan_interface, left.prod)",
  "vchan_interface.right_cons": "offsetof(struct vchan_interface, right.cons)",
  "vchan_interface.right_prod": "offsetof(struct vchan_interface, right.prod)",
  "xen_domctl_shadow_op.fault_count": "offsetof(struct xen_domctl_shadow_op, stats.fault_count)",
  "xen_domctl_shadow_op.dirty_count": "offsetof(struct xen_domctl_shadow_op, stats.dirty_count)",
};

test("Xen's public headers with arch-wasm32.h give every guest struct, compiled by clang for wasm32, tsxen's layout", () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-layout-"));
  try {
    const lines: string[] = [];
    for (const l of LAYOUTS) {
      const c = `struct ${l.name}`;
      lines.push(`  printf("${l.name} %zu\\n", sizeof(${c}));`);
      for (const f of Object.keys(l.fields)) {
        const at = C_OFFSET[`${l.name}.${f}`] ?? `offsetof(${c}, ${f})`;
        lines.push(`  printf("${l.name}.${f} %zu\\n", (size_t)(${at}));`);
      }
    }
    const src = [
      "#include <stddef.h>",
      "#include <stdio.h>",
      ...[
        "xen.h",
        "event_channel.h",
        "grant_table.h",
        "memory.h",
        "sched.h",
        "vcpu.h",
        "hvm/hvm_op.h",
        "hvm/ioreq.h",
        "io/libxenvchan.h",
        "io/console.h",
        "io/xs_wire.h",
        "domctl.h",
        "sysctl.h",
        "trace.h",
      ].map((h) => `#include <xen/${h}>`),
      "int main(void) {",
      ...lines,
      "  return 0;",
      "}",
    ].join("\n");
    writeFileSync(join(dir, "layout.c"), src);
    execFileSync(
      "clang",
      [
        "--target=wasm32-wasi",
        "-O1",
        "-D__XEN_TOOLS__",
        ...PV_CFLAGS,
        "-o",
        join(dir, "layout.wasm"),
        join(dir, "layout.c"),
      ],
      { stdio: ["ignore", "ignore", "inherit"] },
    );
    const out = join(dir, "out.txt");
    const fd = openSync(out, "w");
    const wasi = new WASI({ version: "preview1", stdout: fd });
    wasi.start(
      new WebAssembly.Instance(new WebAssembly.Module(readFileSync(join(dir, "layout.wasm"))), {
        wasi_snapshot_preview1: wasi.wasiImport,
      }),
    );
    closeSync(fd);
    const got = new Map(
      readFileSync(out, "utf8")
        .trim()
        .split("\n")
        .map((l) => l.split(" ") as [string, string]),
    );
    let checked = 0;
    for (const l of LAYOUTS) {
      assert.equal(Number(got.get(l.name)), l.size, `sizeof(struct ${l.name})`);
      for (const [f, { offset }] of Object.entries(l.fields)) {
        assert.equal(Number(got.get(`${l.name}.${f}`)), offset, `offsetof(struct ${l.name}, ${f})`);
        checked++;
      }
    }
    assert.ok(checked > 150, `only ${checked} fields checked`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an HVM program with PV drivers talks to xenstore over its ring and serves a vchan to a mini-os guest", async () => {
  await withHost(async (host) => {
    const d = await pvProgram(host, "pvecho", ["41"], 40);
    await until(() => /serves d41/.test(serial(host, d)), 10_000, "the vchan server");
    const out = serial(host, d);
    assert.match(out, /^pvecho: Xen 4\.17\.0-tsxen\n/);
    assert.match(out, /pvecho: I am d40 \(pvecho\); xenstore ring at pfn 4, port \d+\n/);
    assert.match(out, /pvecho: d40 serves d41 at data\/vchan\/echo \(gref 8, port \d+\)\n/);
    // What it wrote through its ring, as Dom0 reads it, with the permissions it set.
    const xs = host.xenstored;
    assert.equal(xs.readText("/local/domain/40/data/pvecho"), "ready");
    assert.equal(xs.readText("/local/domain/40/data/vchan/echo/ring-ref"), "8");
    assert.deepEqual(
      xs.store
        .get("/local/domain/40/data/vchan/echo/event-channel")!
        .perms.map((p) => [p.domid, p.access]),
      [
        [40, 0],
        [41, 1],
      ],
    );
    // It told the toolstack it has PV drivers.
    assert.notEqual(d.hvm!.params[HVM_PARAM_CALLBACK_IRQ], 0);
    await host.create({
      name: "client",
      kernel: await kernel("vchan-echo"),
      memory: 4,
      domid: 41,
      cmdline: "role=client peer=40 bytes=1048576",
      xenstore: true,
    });
    assert.equal(await host.waitShutdown(41, 60_000), "poweroff");
    assert.match(host.readConsole(41), /sent 1048576 bytes, fnv (\d+); echo fnv \1 ok/);
    await until(() => /client closed/.test(serial(host, d)), 5000, "the server to see the close");
    assert.match(serial(host, d), /pvecho: echoed 1048576 bytes; the client closed\n/);
    // Written after the line above, through its ring: looked at until it lands.
    await until(
      () => xs.readText("/local/domain/40/data/pvecho") === "done",
      5000,
      "data/pvecho to say done",
    );
    // A guest with PV drivers: the toolstack asks through control/shutdown
    // (what libxl writes; hvm-xl.test.ts runs xl shutdown), and it obeys.
    xs.writeText("/local/domain/40/control/shutdown", "poweroff");
    assert.equal(await host.waitShutdown(40, 10_000), "poweroff");
    assert.match(serial(host, d), /pvecho: control\/shutdown says poweroff\n/);
    assert.equal(xs.readText("/local/domain/40/control/shutdown"), "");
    host.destroy(40);
    await until(() => !host.hv.domains.has(40), 2000, "the domain to go");
    assert.equal(accountedFrames(host), host.hv.frames.totalFrames);
  });
});

test("an HVM program with PV drivers serves a vchan to Dom0", async () => {
  await withHost(async (host) => {
    const d = await pvProgram(host, "pvecho", ["0"]);
    await until(() => /serves d0/.test(serial(host, d)), 10_000, "the vchan server");
    const cli = Vchan.client(
      { drivers: host.dom0, xenstored: host.xenstored },
      d.domid,
      `/local/domain/${d.domid}/data/vchan/echo`,
    );
    const sent = new Uint8Array(256 * 1024).map((_, i) => (i * 13 + 5) & 255);
    const [, got] = await Promise.all([cli.writeAll(sent), cli.readExact(sent.length)]);
    assert.deepEqual(got, sent);
    cli.close();
    await until(() => /client closed/.test(serial(host, d)), 5000, "the server to see the close");
    assert.match(serial(host, d), /pvecho: echoed 262144 bytes; the client closed\n/);
  });
});

test("hostile hypercalls from an HVM program get Xen's errors and touch nothing else", async () => {
  await withHost(async (host) => {
    const d = await pvProgram(host, "pvhostile", ["wild"]);
    await host.waitShutdown(d.domid, 20_000);
    const got = Object.fromEntries(
      [...serial(host, d).matchAll(/^wild: (.*) = (-?\d+)$/gm)].map((m) => [m[1], Number(m[2])]),
    );
    assert.deepEqual(got, {
      "xen_version(extraversion, wild)": -14,
      "memory_op(add_to_physmap, wild)": -14,
      "add_to_physmap(shared_info, past its memory)": -22,
      "add_to_physmap(shared_info, of dom0)": -1,
      "decrease_reservation(shared_info's frame)": 0,
      "grant_table_op(setup_table, wild frame_list)": -14,
      "grant_table_op(copy, wild, 1000000)": -22,
      "hvm_op(set_param STORE_PFN)": -1,
      "hvm_op(get_param of dom0)": -1,
      "hvm_op(get_param 1000)": -22,
      "sched_op(remote_shutdown dom0)": -1,
      "domctl(wild)": -1,
      "hypercall 40": -38,
      "hypercall -1": -38,
      "event_channel_op(bind dom0's port 1)": -22,
      "event_channel_op(send 100000)": -22,
      "sched_op(poll 200 ports)": -22,
    });
    assert.equal(d.shutdownName, "poweroff");
    assert.equal(d.shutdownCode, 0);
    assert.equal(host.hv.dom0.isShutdown, false);
  });
});

/** Runs pvhostile `args` beside a PV ticker; the ticker keeps time and the event loop answers. */
async function beside(
  args: string[],
  check: (host: Host, d: Domain) => Promise<void>,
): Promise<void> {
  await withHost(async (host) => {
    const ticker = await host.create({ name: "ticker", kernel: await kernel("ticker"), memory: 2 });
    const ticks: number[] = [];
    host.onConsole(ticker.domid, () => ticks.push(performance.now()));
    const loop = monitorEventLoopDelay({ resolution: 5 });
    const d = await pvProgram(host, "pvhostile", args);
    loop.enable();
    await until(() => ticks.length >= 4, 15_000, "four ticks beside the attacker");
    loop.disable();
    for (let i = 1; i < ticks.length; i++) {
      const gap = ticks[i]! - ticks[i - 1]!;
      assert.ok(
        Math.abs(gap - 1000) < 50,
        `tick gap ${gap.toFixed(1)} ms beside '${args.join(" ")}'`,
      );
    }
    assert.ok(
      loop.max / 1e6 < 100,
      `the event loop stalled ${(loop.max / 1e6).toFixed(1)} ms beside '${args.join(" ")}'`,
    );
    await check(host, d);
    host.destroy(d.domid);
    await until(() => !host.hv.domains.has(d.domid), 2000, "the attacker to go");
    assert.equal(accountedFrames(host), host.hv.frames.totalFrames);
  });
}

test("a flood of hypercalls from an HVM program leaves a PV ticker and the host on time", async () => {
  await beside(["flood", "100000000"], async (host, d) => {
    assert.match(host.hv.domains.get(d.domid)!.runState, /running|blocked/);
    assert.equal(serial(host, d), "", "still flooding when checked");
  });
});

test("a batch of 8,192 grant copies continues across turns of the event loop and moves every byte", async () => {
  await beside(["batch", "8192"], async (host, d) => {
    await until(() => /batch:/.test(serial(host, d)), 30_000, "the batch");
    assert.match(serial(host, d), /batch: 8192 copies rc 0, 0 failed, data equal/);
    // It took more than one turn: debug key I counts the continuations.
    host.hv.debugKeys("I");
    const line = /PV drivers: (\d+) hypercalls, (\d+) continued/.exec(host.dmesg());
    assert.ok(line && Number(line[2]) > 0, `no continuation: ${line?.[0]}`);
  });
});

test("an HVM program blocked forever in SCHEDOP_block shows blocked, pauses, and is destroyed", async () => {
  await withHost(async (host) => {
    const d = await pvProgram(host, "pvhostile", ["block"]);
    await until(() => /blocking/.test(serial(host, d)), 10_000, "the block");
    await sleep(200);
    assert.equal(d.runState, "blocked");
    host.hv.pauseDomain(d);
    assert.equal(d.runState, "paused");
    assert.equal(host.hv.unpauseDomain(d), 0);
    assert.equal(d.runState, "blocked");
    assert.doesNotMatch(serial(host, d), /woke up/);
    host.destroy(d.domid);
    await until(() => !host.hv.domains.has(d.domid), 2000, "the domain to go");
    assert.equal(accountedFrames(host), host.hv.frames.totalFrames);
  });
});
