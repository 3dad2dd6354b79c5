/**
 * The domain builder (tools/libxc/xc_dom.ts): `xl create` of a PV guest
 * makes the domain with Dom0's hypercalls alone, each step logged as
 * libxc logs it; a module the hypervisor refuses fails the create with the
 * hypervisor's reason and leaves nothing; and a careless or hostile Dom0
 * calling the builder's hypercalls in the wrong order gets errors, never a
 * broken hypervisor.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../../extras/mini-os/paths.js";
import { parseCfg } from "../../tools/libxlu/cfg.js";
import { domainConfig, xlDomainConfig, type XlDomainConfig } from "../../tools/libxl/config.js";
import { HVM_DIR } from "../../extras/hvm/build.js";
import { Libxl } from "../../tools/libxl/domain.js";
import { XcInterface, XcError } from "../../tools/libxc/xc.js";
import { LocalHypercalls } from "../../tools/libxc/channel.js";
import * as DC from "../../xen/include/public/domctl.js";
import { HYPERVISOR as H } from "../../xen/include/public/xen.js";
import { XenErrno } from "../../xen/include/public/errno.js";
import { VGCF_online, vcpu_guest_context } from "../../xen/include/public/arch-wasm32.js";
import { accountedFrames, newHost, until, watBinary } from "../helpers.js";

const EX = join(ROOT, "extras", "mini-os", "examples");

function cfg(name: string, extra = ""): XlDomainConfig {
  const f = join(EX, `${name}.cfg`);
  return domainConfig(parseCfg(readFileSync(f, "utf8") + extra, f), f, EX).config;
}

test("xl create builds a PV domain with hypercalls only, each step logged as libxc does", async () => {
  const host = newHost();
  try {
    const xl = new Libxl(host);
    // Warm: the hypervisor has checked hello's module once.
    await xl.create({ ...cfg("hello"), name: "warm" }, { paused: true });
    const privcmd = host.dom0.privcmd;
    const calls: string[] = [];
    const hypercall = privcmd.hypercall.bind(privcmd);
    privcmd.hypercall = (op, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0) => {
      const name = Object.entries(H).find(([, n]) => n === op)?.[0] ?? String(op);
      let what = name.replace("__HYPERVISOR_", "");
      if (op === H.__HYPERVISOR_domctl) {
        const cmd = privcmd.mem.u32(a1 + DC.xen_domctl.fields.cmd.offset);
        what += `:${Object.entries(DC).find(([k, n]) => /^XEN_DOMCTL_[a-z]/.test(k) && n === cmd)?.[0]}`;
      } else what += `:${a1}`;
      calls.push(what);
      return hypercall(op, a1, a2, a3, a4, a5);
    };
    const direct = host.hv.createDomain.bind(host.hv);
    let directCreates = 0;
    host.hv.createDomain = (c) => {
      directCreates++;
      return direct(c);
    };
    const log: string[] = [];
    const d = await xl.create(cfg("hello", 'on_poweroff = "preserve"\n'), {
      log: (l) => log.push(l),
    });
    privcmd.hypercall = hypercall;
    await until(() => host.readConsole(d.domid).includes("hello from an xl.cfg"), 5000, "hello");

    assert.equal(directCreates, 0, "nothing calls into the hypervisor object to build");
    const domctls = calls.filter((c) => c.startsWith("domctl:"));
    assert.deepEqual(domctls, [
      "domctl:XEN_DOMCTL_createdomain",
      "domctl:XEN_DOMCTL_max_vcpus",
      "domctl:XEN_DOMCTL_wasm32_set_label",
      "domctl:XEN_DOMCTL_max_mem",
      "domctl:XEN_DOMCTL_wasm32_module",
      "domctl:XEN_DOMCTL_setvcpucontext",
      "domctl:XEN_DOMCTL_scheduler_op",
      "domctl:XEN_DOMCTL_unpausedomain",
    ]);
    // 4 MiB: 1,024 pages in one populate_physmap (XENMEM_populate_physmap = 6),
    // and the two ports (EVTCHNOP_alloc_unbound = 6).
    assert.deepEqual(
      calls.filter((c) => c.startsWith("memory_op")),
      ["memory_op:6"],
    );
    assert.ok(calls.filter((c) => c === "event_channel_op:6").length >= 2);
    assert.equal(d.name, "hello", "the label names it in the hypervisor's messages");
    assert.equal(d.totPages, 1024);
    assert.equal(accountedFrames(host), host.hv.frames.totalFrames);

    for (const step of [
      /^domainbuilder: detail: xc_dom_allocate: cmdline="hello from an xl\.cfg"/m,
      /^domainbuilder: detail: xc_dom_kernel_file: filename=".*hello\.wasm"/m,
      /^domainbuilder: detail: xc_domain_create: domid \d+, max_vcpus 1/m,
      /^domainbuilder: detail: xc_dom_mem_init: mem 4 MB, pages 0x400 pages, 4k each/m,
      /^domainbuilder: detail: xc_dom_wasm32_module: module sha256 [0-9a-f]{16}\.\.\. bound/m,
      /^domainbuilder: detail: xc_dom_alloc_magic_pages: start_info pfn 1, xenstore pfn 4 \(evtchn \d+\), console pfn 3 \(evtchn \d+\)/m,
      /^domainbuilder: detail: vcpu_wasm32: vcpu 0 at _start\(start_info\)/m,
      /^libxl: debug: libxl_create\.c: domcreate_complete: unpausing domain \d+/m,
    ]) {
      assert.match(log.join("\n"), step);
    }
  } finally {
    await host.shutdown();
  }
});

test("xl create builds an HVM domain with hypercalls only too: createdomain with XEN_DOMCTL_CDF_hvm, its memory populated whole, the WASI program bound by hash, setvcpucontext starting its vCPU", async () => {
  const host = newHost();
  try {
    const xl = new Libxl(host);
    const privcmd = host.dom0.privcmd;
    const calls: string[] = [];
    let inHypercall = 0;
    const hypercall = privcmd.hypercall.bind(privcmd);
    privcmd.hypercall = (op, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0) => {
      let what = (Object.entries(H).find(([, n]) => n === op)?.[0] ?? String(op)).replace(
        "__HYPERVISOR_",
        "",
      );
      if (op === H.__HYPERVISOR_domctl) {
        const cmd = privcmd.mem.u32(a1 + DC.xen_domctl.fields.cmd.offset);
        what += `:${Object.entries(DC).find(([k, n]) => /^XEN_DOMCTL_[a-z]/.test(k) && n === cmd)?.[0]}`;
        if (cmd === DC.XEN_DOMCTL_createdomain)
          what += `(flags ${privcmd.mem.u32(a1 + DC.xen_domctl.fields.u.offset + DC.xen_domctl_createdomain.fields.flags.offset)})`;
      } else what += `:${a1}`;
      calls.push(what);
      inHypercall++;
      try {
        return hypercall(op, a1, a2, a3, a4, a5);
      } finally {
        inHypercall--;
      }
    };
    // The hypervisor starts the domain only inside Dom0's hypercall.
    const start = host.hv.startHvm.bind(host.hv);
    let outside = 0;
    host.hv.startHvm = (d, r) => {
      if (inHypercall === 0) outside++;
      return start(d, r);
    };
    const log: string[] = [];
    const d = await xl.create(
      xlDomainConfig({
        name: "hvm-hello",
        type: "hvm",
        kernel: join(HVM_DIR, "hello.wasm"),
        memory: 8,
        rtcTimeoffset: 3600,
        onPoweroff: "preserve",
      }),
      { log: (l) => log.push(l) },
    );
    privcmd.hypercall = hypercall;
    await until(() => d.isShutdown, 10_000, "hello to finish");
    assert.equal(outside, 0, "nothing outside a hypercall starts it");
    const domctls = calls.filter((c) => c.startsWith("domctl:"));
    assert.deepEqual(domctls.slice(0, 7), [
      `domctl:XEN_DOMCTL_createdomain(flags ${DC.XEN_DOMCTL_CDF_hvm | DC.XEN_DOMCTL_CDF_hap})`,
      "domctl:XEN_DOMCTL_max_vcpus",
      "domctl:XEN_DOMCTL_wasm32_set_label",
      "domctl:XEN_DOMCTL_max_mem",
      "domctl:XEN_DOMCTL_settimeoffset",
      "domctl:XEN_DOMCTL_wasm32_module",
      "domctl:XEN_DOMCTL_setvcpucontext",
    ]);
    assert.equal(domctls[domctls.length - 1], "domctl:XEN_DOMCTL_unpausedomain");
    // 8 MiB: 128 extents of a wasm page in one populate_physmap
    // (XENMEM_populate_physmap = 6); then the device model acquires its
    // ioreq page (XENMEM_acquire_resource = 28).
    assert.deepEqual(
      calls.filter((c) => c.startsWith("memory_op")),
      ["memory_op:6", "memory_op:28"],
    );
    assert.equal(d.totPages, 2048);
    assert.ok(d.hvm, "an HVM domain");
    for (const step of [
      /^libxl: debug: libxl_create\.c: do_domain_create: name=hvm-hello type=hvm/m,
      /^domainbuilder: detail: xc_hvm_build: domain \d+, type wasm32 HVM/m,
      /^domainbuilder: detail: xc_dom_mem_init: mem 8 MB, pages 0x800 pages, 4k each/m,
      /^domainbuilder: detail: xc_dom_wasm32_module: WASI program bound/m,
      /^domainbuilder: detail: vcpu_wasm32: vcpu 0 at the program's _start/m,
    ])
      assert.match(log.join("\n"), step);
    // Wrong order: a vCPU context before a program, a program on a PV domain.
    const xc = new XcInterface(new LocalHypercalls(privcmd));
    const id = await xc.domainCreate(0, {
      flags: DC.XEN_DOMCTL_CDF_hvm,
      handle: new Uint8Array(16),
      maxVcpus: 1,
      maxEvtchnPort: 0,
      maxGrantFrames: -1,
      maxMaptrackFrames: -1,
    });
    const ctxt = new Uint8Array(vcpu_guest_context.size);
    new DataView(ctxt.buffer).setUint32(vcpu_guest_context.fields.flags.offset, VGCF_online, true);
    await assert.rejects(
      xc.vcpuSetContext(id, 0, ctxt),
      (e: XcError) => e.errno === XenErrno.EINVAL,
    );
    assert.match(host.hv.console.read(), /HVM domain not started: no program is bound to it/);
    await assert.rejects(
      xc.domainCreate(0, {
        flags: DC.XEN_DOMCTL_CDF_hvm,
        handle: new Uint8Array(16),
        maxVcpus: 2,
        maxEvtchnPort: 0,
        maxGrantFrames: -1,
        maxMaptrackFrames: -1,
      }),
      (e: XcError) => e.errno === XenErrno.EINVAL,
    );
    // The program bound but no memory populated: refused, naming the need.
    const hello = createHash("sha256")
      .update(readFileSync(join(HVM_DIR, "hello.wasm")))
      .digest();
    assert.notEqual(await xc.wasm32ModuleBind(id, hello, { saveable: false }), "absent");
    await assert.rejects(
      xc.vcpuSetContext(id, 0, ctxt),
      (e: XcError) => e.errno === XenErrno.ENOMEM,
    );
    assert.match(host.hv.console.read(), /HVM domain not started: the program needs \d+ KiB/);
    // A context that is not one: refused, naming what is wrong.
    await assert.rejects(
      xc.domainHvmSetContext(id, new Uint8Array(40)),
      (e: XcError) => e.errno === XenErrno.EINVAL,
    );
    assert.match(host.hv.console.read(), /sethvmcontext refused: WASM32_HVM_CONTEXT: bad magic/);
    await xc.domainDestroy(id);
    // Every frame comes back: its memory's and its ioreq page's.
    xl.destroy(d.domid);
    await until(
      () => accountedFrames(host) === host.hv.frames.totalFrames,
      5000,
      "the frames back",
    );
  } finally {
    await host.shutdown();
  }
});

test("a module the hypervisor refuses fails the create with its reason; nothing is left", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-builder-"));
  try {
    const xl = new Libxl(host);
    // A valid module that keeps the contract but for its entry point.
    const bad = join(dir, "noentry.wasm");
    writeFileSync(
      bad,
      watBinary(`(module
        (import "env" "memory" (memory 5 65536 shared))
        (import "xen" "hypercall" (func (param i32 i32 i32 i32 i32 i32) (result i32)))
        (func (export "main")))`),
    );
    const free = host.hv.frames.freeFrames;
    const log: string[] = [];
    await assert.rejects(
      xl.create({ ...cfg("hello"), name: "bad", kernel: bad }, { log: (l) => log.push(l) }),
      /xc_wasm32_module_bind\(\d+\) failed: kernel does not export its entry point _start: Invalid argument \(EINVAL\)/,
    );
    assert.match(log.join("\n"), /xc_dom_wasm32_module: uploading \d+ bytes/);
    assert.equal(host.hv.domains.size, 0, "the half-built domain is gone");
    assert.equal(host.hv.frames.freeFrames, free, "its pages went back");
    // The same module again: the refusal is remembered, not checked again.
    await assert.rejects(
      xl.create({ ...cfg("hello"), name: "bad", kernel: bad }),
      /kernel does not export its entry point _start/,
    );
    // Two creates of a kernel new to the hypervisor, at once: both upload
    // it, and both get it.
    const fresh = join(dir, "fresh.wasm");
    const hello = readFileSync(join(ROOT, "build", "mini-os", "hello.wasm"));
    // A custom section at the end: new bytes, the same kernel.
    writeFileSync(fresh, Buffer.concat([hello, Buffer.from([0, 4, 3, 0x74, 0x73, 0x78])]));
    const both = await Promise.all(
      ["f1", "f2"].map((name) =>
        xl.create({ ...cfg("hello", 'on_poweroff = "preserve"\n'), name, kernel: fresh }),
      ),
    );
    for (const d of both)
      await until(() => host.readConsole(d.domid).includes("hello from"), 10_000, d.name);
    for (const d of both) xl.destroy(d.domid);
    // Data below the architecture area is refused before anything is made.
    const low = join(dir, "low.wasm");
    writeFileSync(
      low,
      watBinary(`(module
        (import "env" "memory" (memory 5 65536 shared))
        (data (i32.const 4096) "x")
        (func (export "_start") (param i32)))`),
    );
    await assert.rejects(
      xl.create({ ...cfg("hello"), name: "low", kernel: low }),
      /kernel data at 0x1000 overlaps the wasm32 architecture area/,
    );
    assert.equal(host.hv.domains.size, 0);
  } finally {
    await host.shutdown();
  }
});

test("the builder's hypercalls in the wrong order, or with wrong arguments, fail cleanly", async () => {
  const host = newHost();
  try {
    const xc = new XcInterface(new LocalHypercalls(host.dom0.privcmd));
    const errno = async (p: Promise<unknown>): Promise<number> => {
      try {
        await p;
        return 0;
      } catch (e) {
        if (e instanceof XcError) return e.errno;
        throw e;
      }
    };
    const base = {
      handle: new Uint8Array(16),
      maxVcpus: 2,
      maxEvtchnPort: 0,
      maxGrantFrames: -1,
      maxMaptrackFrames: -1,
    };
    // An HVM domain has one vCPU (WASI has no threads); an unknown flag is refused.
    assert.equal(
      await errno(xc.domainCreate(0, { ...base, flags: DC.XEN_DOMCTL_CDF_hvm })),
      XenErrno.EINVAL,
    );
    assert.equal(
      await errno(xc.domainCreate(0, { ...base, flags: DC.XEN_DOMCTL_CDF_iommu })),
      XenErrno.EINVAL,
    );
    assert.equal(await errno(xc.domainCreate(0, { ...base, maxVcpus: 0 })), XenErrno.EINVAL);
    assert.equal(await errno(xc.domainCreate(0, { ...base, maxVcpus: 17 })), XenErrno.EINVAL);
    const domid = await xc.domainCreate(0, base);
    assert.equal(await errno(xc.domainCreate(domid, base)), XenErrno.EEXIST);
    assert.equal(await errno(xc.domainMaxVcpus(domid, 3)), XenErrno.EINVAL);
    assert.equal(await errno(xc.wasm32SetLabel(domid, "a/b")), XenErrno.EINVAL);
    assert.equal(await errno(xc.wasm32SetLabel(domid, "x".repeat(65))), XenErrno.EINVAL);

    const ctxt = new Uint8Array(vcpu_guest_context.size);
    new DataView(ctxt.buffer).setUint32(vcpu_guest_context.fields.flags.offset, VGCF_online, true);
    new DataView(ctxt.buffer).setUint32(vcpu_guest_context.fields.arg.offset, 4096, true);
    // No module, no memory: a vCPU cannot start.
    assert.equal(await errno(xc.vcpuSetContext(domid, 0, ctxt)), XenErrno.EINVAL);
    assert.equal(await errno(xc.vcpuSetContext(domid, 5, ctxt)), XenErrno.EINVAL);
    // Pages past max_mem (0 until set) are refused.
    assert.equal(await errno(xc.populatePhysmapExact(domid, [0, 1])), XenErrno.ENOMEM);
    // A port in a domain with no memory yet, and Dom0 signalling it: no fault.
    const port = await xc.evtchnAllocUnbound(domid, 0);
    const ev = host.dom0.openEvtchn();
    const local = ev.bindInterdomain(domid, port);
    ev.notify(local);
    ev.dispose();

    // Modules: unknown, out of order, a lie about the hash.
    const bytes = readFileSync(join(ROOT, "build", "mini-os", "hello.wasm"));
    const sha = createHash("sha256").update(bytes).digest();
    const wrong = createHash("sha256").update("not it").digest();
    assert.equal(await xc.wasm32ModuleBind(domid, wrong), "absent");
    assert.equal(
      await errno(xc.wasm32ModuleUpload(domid, wrong, 10, 5, new Uint8Array(5))),
      XenErrno.EINVAL,
      "an upload starts at 0",
    );
    assert.equal(
      await errno(xc.wasm32ModuleUpload(domid, wrong, bytes.length, 0, bytes.subarray(0, 100))),
      0,
    );
    assert.equal(
      await errno(xc.wasm32ModuleUpload(domid, wrong, bytes.length, 200, bytes.subarray(200, 300))),
      XenErrno.EINVAL,
      "chunks come in order",
    );
    assert.equal(
      await errno(xc.wasm32ModuleUpload(domid, wrong, 64 * 1024 ** 2, 0, bytes.subarray(0, 10))),
      XenErrno.E2BIG,
    );
    assert.equal(
      await errno(xc.wasm32ModuleUpload(domid, wrong, 300, 0, bytes.subarray(0, 300))),
      XenErrno.EINVAL,
      "bytes that are not what the hash says",
    );
    assert.equal(await xc.wasm32ModuleBind(domid, wrong), "absent");
    // Instances ahead of time need a bound module.
    assert.equal(await errno(xc.wasm32ModuleInstantiate(domid)), XenErrno.EINVAL);

    // Done properly, the domain still builds and runs.
    await xc.domainSetMaxMem(domid, 4096);
    await xc.populatePhysmapExact(
      domid,
      Array.from({ length: 1024 }, (_, i) => i),
    );
    for (let off = 0; off < bytes.length; off += 100_000)
      await xc.wasm32ModuleUpload(
        domid,
        sha,
        bytes.length,
        off,
        bytes.subarray(off, off + 100_000),
      );
    let bound = await xc.wasm32ModuleBind(domid, sha);
    while (typeof bound === "string") {
      await new Promise((r) => setTimeout(r, 5));
      bound = await xc.wasm32ModuleBind(domid, sha);
    }
    // Made ahead (as a migration's receiver does), twice, then used by the vCPU that starts.
    assert.equal(await errno(xc.wasm32ModuleInstantiate(domid)), 0);
    assert.equal(await errno(xc.wasm32ModuleInstantiate(domid)), 0);
    assert.equal(await errno(xc.vcpuSetContext(domid, 0, ctxt)), 0);
    assert.equal(
      await errno(xc.wasm32ModuleInstantiate(domid)),
      XenErrno.EBUSY,
      "not once a vCPU is up",
    );
    assert.equal(await errno(xc.vcpuSetContext(domid, 0, ctxt)), XenErrno.EEXIST);
    assert.equal(
      await errno(xc.wasm32ModuleBind(domid, sha)),
      XenErrno.EBUSY,
      "a running module is not swapped",
    );
    await xc.domainUnpause(domid);
    await until(() => host.hv.domainById(domid)?.isShutdown === true, 5000, "hello's poweroff");
    assert.match(host.dmesg(), /setvcpucontext refused: the domain has no module yet/);
  } finally {
    await host.shutdown();
  }
});

test("a domain being built grows by a new memory once for a run of extents, and what its populated pages hold comes along", async () => {
  const host = newHost();
  try {
    const xc = new XcInterface(new LocalHypercalls(host.dom0.privcmd));
    const domid = await xc.domainCreate(0, {
      handle: new Uint8Array(16),
      maxVcpus: 1,
      maxEvtchnPort: 0,
      maxGrantFrames: -1,
      maxMaptrackFrames: -1,
    });
    await xc.domainSetMaxMem(domid, 4096);
    const d = host.hv.domainById(domid)!;
    // One extent of order 4 (a wasm page): within the memory it was made with.
    await xc.populatePhysmapExact(domid, [0], 4);
    const first = d.wasmMemory;
    d.mem.u8.set([1, 2, 3], 3 * 4096 + 5);
    // The rest of 4 MiB in one call: one new memory of the whole run, and
    // the bytes written before are in it.
    await xc.populatePhysmapExact(
      domid,
      Array.from({ length: 63 }, (_, i) => (i + 1) * 16),
      4,
    );
    assert.notEqual(d.wasmMemory, first, "replaced, not grown in place");
    assert.equal(d.wasmMemory.buffer.byteLength, 4 * 1024 * 1024);
    assert.deepEqual([...d.mem.u8.subarray(3 * 4096 + 5, 3 * 4096 + 8)], [1, 2, 3]);
    assert.equal(d.totPages, 1024);
    // Once something holds a view of it, the memory grows in place.
    d.pageView(0);
    await xc.domainSetMaxMem(domid, 8192);
    const held = d.wasmMemory;
    await xc.populatePhysmapExact(domid, [1024], 4);
    assert.equal(d.wasmMemory, held, "grown in place");
    assert.deepEqual([...d.mem.u8.subarray(3 * 4096 + 5, 3 * 4096 + 8)], [1, 2, 3]);
    await xc.domainDestroy(domid);
  } finally {
    await host.shutdown();
  }
});
