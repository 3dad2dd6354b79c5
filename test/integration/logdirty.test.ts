/**
 * The save side's domctls (#18): log-dirty mode (XEN_DOMCTL_shadow_op's
 * ENABLE_LOGDIRTY, PEEK, CLEAN, OFF; xen/common/paging.ts) finds every page
 * that changed, whoever wrote it (the guest, Dom0 through a foreign
 * mapping, the hypervisor), and pages the domain gained; and
 * XEN_DOMCTL_resumedomain runs a suspended domain on, its SHUTDOWN_suspend
 * returning 1 ("cancelled"), as a checkpoint needs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { XcInterface, XcError } from "../../tools/libxc/xc.js";
import { LocalHypercalls } from "../../tools/libxc/channel.js";
import * as DC from "../../xen/include/public/domctl.js";
import { XenErrno } from "../../xen/include/public/errno.js";
import { SHUTDOWN_suspend } from "../../xen/include/public/sched.js";
import { loadKernel } from "../../xen/arch/wasm32/kernel.js";
import { kernel, newHost, sleep, until, watBinary } from "../helpers.js";

const bit = (map: Uint8Array, p: number): boolean => (map[p >> 3]! & (1 << (p & 7))) !== 0;

test("log-dirty finds the pages that changed, whoever wrote them, and the pages a domain gained", async () => {
  const host = newHost();
  try {
    const xc = new XcInterface(new LocalHypercalls(host.dom0.privcmd));
    const d = host.createSync({
      name: "ticker",
      kernel: await kernel("ticker"),
      memory: 4,
      maxmem: 8,
      xenstore: true,
    });
    await until(() => host.readConsole(d.domid).includes("tick 1"), 5000, "a tick");
    const errno = (e: unknown): number => (e instanceof XcError ? e.errno : -1);
    await assert.rejects(
      xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_CLEAN),
      (e) => errno(e) === XenErrno.EINVAL,
      "CLEAN before ENABLE",
    );
    await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY);
    await assert.rejects(
      xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY),
      (e) => errno(e) === XenErrno.EINVAL,
      "ENABLE twice",
    );
    host.pause(d.domid);
    const map = new Uint8Array(1024 / 8);
    let r = await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_CLEAN, map);
    assert.equal(r.pages, 1024, "the domain's pfns");
    r = await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_PEEK, map);
    assert.equal(r.dirty, 0, "paused and just cleaned: nothing dirty");

    // Dom0 writes one page through a foreign mapping; the hypervisor writes
    // an event's pending bit into shared_info (pfn 2).
    const page = host.dom0.privcmd.mmapBatchV2(d.domid, [700]).pages[0]!;
    page[100] = page[100]! ^ 0x5a;
    const ev = host.dom0.openEvtchn();
    const port = ev.bindInterdomain(d.domid, ev.allocUnboundIn(d.domid, 0));
    ev.notify(port);
    r = await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_PEEK, map);
    assert.ok(bit(map, 700), "the page Dom0 wrote");
    assert.ok(bit(map, 2), "shared_info, where the event landed");
    assert.equal(r.dirty, [...Array(1024).keys()].filter((p) => bit(map, p)).length);
    r = await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_CLEAN, map);
    assert.ok(bit(map, 700), "CLEAN reports what PEEK saw");
    r = await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_PEEK, map);
    assert.equal(r.dirty, 0, "then starts again");

    // The guest's own writes while it runs: its console ring and stack at least.
    host.unpause(d.domid);
    await sleep(1200);
    host.pause(d.domid);
    r = await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_CLEAN, map);
    assert.ok(r.dirty > 0 && r.dirty < 1024, `${r.dirty} pages dirtied by a ticking guest`);
    assert.ok(bit(map, 3), "the console ring page");

    // Pages the domain gains are dirty once.
    await xc.populatePhysmapExact(
      d.domid,
      Array.from({ length: 16 }, (_, i) => 1024 + i),
    );
    const big = new Uint8Array(2048 / 8);
    r = await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_CLEAN, big);
    assert.equal(r.pages, 1040);
    for (let p = 1024; p < 1040; p++) assert.ok(bit(big, p), `new pfn ${p}`);
    r = await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_CLEAN, big);
    assert.equal(r.dirty, 0);

    await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_OFF);
    assert.equal(host.hv.domainById(d.domid)!.logDirty, undefined, "the copy is dropped");
    ev.dispose();
  } finally {
    await host.shutdown();
  }
});

test("a round after which the domain has not run compares only the pages others can write: grants, Dom0's mappings, the hypervisor's frames; once it runs, all of them", async () => {
  const host = newHost();
  try {
    const xc = new XcInterface(new LocalHypercalls(host.dom0.privcmd));
    const pc = host.dom0.privcmd;
    const d = host.createSync({ name: "t", kernel: await kernel("ticker"), memory: 4 });
    await until(() => host.readConsole(d.domid).includes("tick 1"), 5000, "a tick");
    host.pause(d.domid);
    await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY);
    const clean = async (): Promise<number[]> => {
      const map = new Uint8Array(1024 / 8);
      await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_CLEAN, map);
      return [...Array(1024).keys()].filter((p) => bit(map, p));
    };
    await clean();
    assert.deepEqual(await clean(), [], "paused and cleaned: nothing");

    // A write no one reports (only the domain's own code could make it):
    // the quiet round does not look at the page...
    const dom = host.hv.domainById(d.domid)!;
    dom.mem.u8[900 * 4096] = dom.mem.u8[900 * 4096]! ^ 0xff;
    // ...but it does look at a page the domain grants: Dom0 writes a grant
    // entry for pfn 901 (as the guest would) and copies into the grant.
    const ref = 40;
    const frame0 = pc.mmapBatchV2(d.domid, [6]).pages[0]!;
    const dv = new DataView(frame0.buffer, frame0.byteOffset + ref * 8, 8);
    dv.setUint16(2, 0, true);
    dv.setUint32(4, 901, true);
    dv.setUint16(0, 1, true); // GTF_permit_access
    pc.munmap(d.domid, [6]);
    const gnt = host.dom0.openGnttab();
    const st = gnt.grantCopy([
      { toGuest: true, domid: d.domid, ref, offset: 8, data: new Uint8Array([1, 2, 3]) },
    ]);
    assert.deepEqual(st, [0]);
    // A page Dom0 mapped and still holds is compared each round, written or not.
    const held = pc.mmapBatchV2(d.domid, [902]).pages[0]!;
    // A page Dom0 wrote and unmapped since the last round.
    pc.mmapBatchV2(d.domid, [903]).pages[0]!.fill(0x11, 5, 6);
    pc.munmap(d.domid, [903]);
    assert.deepEqual(
      await clean(),
      [6, 901, 903],
      "the grant frame, the granted page, the unmapped page",
    );
    held.fill(0x22, 7, 8);
    assert.deepEqual(await clean(), [902], "the page Dom0 holds mapped");
    pc.munmap(d.domid, [902]);
    assert.deepEqual(await clean(), [], "nothing since");

    // A batch of consecutive pfns is also mapped as one view, as privcmd
    // maps a batch at one range: the save writes it in one piece.
    const run = pc.mmapBatchV2(d.domid, [904, 905, 906]);
    assert.equal(run.region?.length, 3 * 4096);
    run.region![4096 + 9] = 0x77;
    assert.equal(dom.mem.u8[905 * 4096 + 9], 0x77, "the region is the domain's memory");
    assert.equal(pc.mmapBatchV2(d.domid, [904, 906]).region, undefined, "not consecutive");
    assert.equal(pc.mmapBatchV2(d.domid, [1023, 1024]).region, undefined, "past the memory");
    pc.munmap(d.domid, [904, 905, 906, 904, 906, 1023]);
    assert.deepEqual(await clean(), [905], "the page written through the region");

    // Once the domain runs, the round compares everything: the page nobody reported is found.
    host.unpause(d.domid);
    const entries = dom.guestEntries;
    await until(() => dom.guestEntries > entries, 5000, "the domain to run");
    host.pause(d.domid);
    const after = await clean();
    assert.ok(after.includes(900), `the unreported page among ${after.length} dirty`);
    await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_OFF);
  } finally {
    await host.shutdown();
  }
});

test("log-dirty's snapshot mapping shows each page as the last CLEAN saw it, read by Dom0 only, none while log-dirty is off", async () => {
  const host = newHost();
  try {
    const xc = new XcInterface(new LocalHypercalls(host.dom0.privcmd));
    const pc = host.dom0.privcmd;
    const d = host.createSync({ name: "t", kernel: await kernel("ticker"), memory: 4 });
    host.pause(d.domid);
    assert.equal(pc.logDirtySnapshot(d.domid, [700]).err[0], -XenErrno.ENOENT, "log-dirty is off");
    const page = pc.mmapBatchV2(d.domid, [700]).pages[0]!;
    page[0] = 1;
    await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY);
    page[0] = 2;
    // The snapshot is the page at ENABLE; CLEAN refreshes it, and it stays
    // so while the page changes on.
    assert.equal(pc.logDirtySnapshot(d.domid, [700]).pages[0]![0], 1);
    await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_CLEAN, new Uint8Array(128));
    page[0] = 3;
    assert.equal(pc.logDirtySnapshot(d.domid, [700]).pages[0]![0], 2);
    // A page changed and changed back between two CLEANs is clean, and the
    // snapshot (what a live save sent) is right about it.
    page[0] = 2;
    const bits = new Uint8Array(128);
    await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_CLEAN, bits);
    assert.equal(bit(bits, 700), false);
    assert.equal(pc.logDirtySnapshot(d.domid, [700]).pages[0]![0], page[0]);
    // Pfns the domain does not have, or past it, are refused.
    const r = pc.logDirtySnapshot(d.domid, [-1, 1.5, 5000]);
    assert.deepEqual(r.err, [-XenErrno.EINVAL, -XenErrno.EINVAL, -XenErrno.EINVAL]);
    // Only a privileged caller maps it.
    assert.throws(() => host.hv.logDirtySnapshotBatch(d, d.domid, [700]), /may not map/);
    await xc.shadowControl(d.domid, DC.XEN_DOMCTL_SHADOW_OP_OFF);
  } finally {
    await host.shutdown();
  }
});

test("resumedomain: a guest's SHUTDOWN_suspend returns 1 and it runs on", async () => {
  const host = newHost();
  try {
    const xc = new XcInterface(new LocalHypercalls(host.dom0.privcmd));
    // Asks for SHUTDOWN_suspend (sched_op 29, SCHEDOP_shutdown 2), records
    // what the call returned and that it returned, then yields forever.
    const k = await loadKernel(
      watBinary(`(module
        (import "env" "memory" (memory 5 65536 shared))
        (import "xen" "hypercall" (func $h (param i32 i32 i32 i32 i32 i32) (result i32)))
        (func (export "_start") (param i32)
          (i32.store (i32.const 0x50000) (i32.const ${SHUTDOWN_suspend}))
          (i32.store (i32.const 0x50004)
            (call $h (i32.const 29) (i32.const 2) (i32.const 0x50000) (i32.const 0) (i32.const 0) (i32.const 0)))
          (i32.store (i32.const 0x50008) (i32.const 1))
          (loop $l
            (drop (call $h (i32.const 29) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
            (br $l))))`),
    );
    const d = host.createSync({ name: "suspender", kernel: k, memory: 1 });
    await until(() => d.isShutdown, 5000, "the suspend");
    assert.equal(d.shutdownName, "suspend");
    assert.equal(d.mem.u32(0x50008), 0, "the call has not returned");
    await xc.domainResume(d.domid);
    await until(() => d.mem.u32(0x50008) === 1, 5000, "the call's return");
    assert.equal(d.mem.u32(0x50004), 1, "SHUTDOWN_suspend answers 1: resumed in the same domain");
    assert.equal(d.isShutdown, false);
    assert.match(host.dmesg(), /Domain \d+ \(suspender\) resumed/);
    await assert.rejects(
      xc.domainResume(0),
      (e) => e instanceof XcError && e.errno === XenErrno.EINVAL,
    );
  } finally {
    await host.shutdown();
  }
});
