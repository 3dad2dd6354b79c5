/**
 * Grant tables through the hypercall and Dom0's gntdev/gntalloc, on paused
 * domains: map, unmap, copy both ways, table setup and placement, versions,
 * the hostile cases (bad ref, bad domain, no permission, read-only for write,
 * revoking while mapped, maptrack exhaustion), and destruction while mapped.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Host } from "../tools/host/host.js";
import { loadKernelFile } from "../xen/arch/wasm32/kernel.js";
import { guestPath } from "../extras/mini-os/paths.js";
import { HYPERVISOR as H, DOMID_SELF } from "../xen/include/public/xen.js";
import { XenErrno as E } from "../xen/include/public/errno.js";
import * as G from "../xen/include/public/grant_table.js";
import * as M from "../xen/include/public/memory.js";
import type { Domain } from "../xen/common/domain.js";
import { INVALID_GFN } from "../xen/common/grant_table.js";
import { SCRATCH, call, get, op, put } from "./hc.js";
import { accountedFrames, grantAccess } from "./helpers.js";

const GT = 6 * 4096;

async function setup(): Promise<{ host: Host; a: Domain; b: Domain; c: Domain }> {
  const host = new Host({ memoryBytes: 1024 ** 3, dom0MemoryBytes: 64 * 1024 ** 2 });
  const kernel = await loadKernelFile(guestPath("hello"));
  const mk = (name: string, maxMaptrackFrames?: number): Domain =>
    host.createSync({ name, kernel, memory: 2, paused: true, maxMaptrackFrames });
  return { host, a: mk("a"), b: mk("b", 1), c: mk("c") };
}

const grant = grantAccess;

const flags = (d: Domain, ref: number): number => d.mem.u16(GT + ref * 8);

/** Linux's gnttab_end_foreign_access_ref: succeeds only if the grantee is not using it. */
function endAccess(d: Domain, ref: number): boolean {
  const i = (GT + ref * 8) >> 2;
  const w = Atomics.load(d.mem.i32, i);
  if (w & (G.GTF_reading | G.GTF_writing)) return false;
  return Atomics.compareExchange(d.mem.i32, i, w, 0) === w;
}

function map(host: Host, d: Domain, dom: number, ref: number, fl = G.GNTMAP_host_map) {
  const r = op(
    host,
    d,
    H.__HYPERVISOR_grant_table_op,
    G.GNTTABOP_map_grant_ref,
    G.gnttab_map_grant_ref,
    {
      dom,
      ref,
      flags: fl,
    },
  );
  assert.equal(r.rc, 0);
  return { status: r.out("status"), handle: r.out("handle"), bus: r.out("dev_bus_addr") };
}

function unmap(host: Host, d: Domain, handle: number): number {
  const r = op(
    host,
    d,
    H.__HYPERVISOR_grant_table_op,
    G.GNTTABOP_unmap_grant_ref,
    G.gnttab_unmap_grant_ref,
    {
      handle,
    },
  );
  assert.equal(r.rc, 0);
  return r.out("status");
}

interface Side {
  ref?: number;
  gmfn?: number;
  domid: number;
  offset: number;
}

/** One GNTTABOP_copy of `len` bytes; returns its status. */
function copy(host: Host, d: Domain, src: Side, dst: Side, len: number): number {
  const f = G.gnttab_copy.fields;
  d.mem.clear(SCRATCH, G.gnttab_copy.size);
  const side = (at: number, s: Side): void =>
    put(d, G.gnttab_copy_ptr, SCRATCH + at, {
      u: s.ref ?? s.gmfn ?? 0,
      domid: s.domid,
      offset: s.offset,
    });
  side(f.source.offset, src);
  side(f.dest.offset, dst);
  d.mem.setU16(SCRATCH + f.len.offset, len);
  d.mem.setU16(
    SCRATCH + f.flags.offset,
    (src.ref !== undefined ? G.GNTCOPY_source_gref : 0) |
      (dst.ref !== undefined ? G.GNTCOPY_dest_gref : 0),
  );
  assert.equal(call(host, d, H.__HYPERVISOR_grant_table_op, G.GNTTABOP_copy, SCRATCH, 1), 0);
  return get(d, G.gnttab_copy, SCRATCH, "status");
}

test("Dom0 maps a guest's grant as a direct view; the guest cannot revoke it while mapped", async () => {
  const { host, a } = await setup();
  try {
    const page = 100 * 4096;
    a.mem.write(page, new TextEncoder().encode("hello from a"));
    grant(a, 8, 0, 100);
    const gd = host.dom0.openGnttab();
    const m = gd.map(a.domid, 8);
    assert.equal(new TextDecoder().decode(m.page.subarray(0, 12)), "hello from a");
    m.page.set(new TextEncoder().encode("dom0 was here"), 100);
    assert.equal(new TextDecoder().decode(a.mem.read(page + 100, 13)), "dom0 was here");
    assert.equal(flags(a, 8), G.GTF_permit_access | G.GTF_reading | G.GTF_writing);
    assert.equal(endAccess(a, 8), false, "revoking a mapped grant must fail");
    gd.unmap(m);
    assert.equal(flags(a, 8), G.GTF_permit_access);
    assert.equal(endAccess(a, 8), true);
    assert.throws(() => gd.map(a.domid, 8), /mapping grant 8 of d\d+ failed: GNTST_general_error/);
    assert.throws(() => gd.unmap(m), /handle \d+ is not mapped here/);
    // Read-only grants map read-only only.
    grant(a, 9, 0, 101, true);
    assert.throws(() => gd.map(a.domid, 9, true), /GNTST_general_error/);
    gd.map(a.domid, 9, false);
    assert.equal(flags(a, 9), G.GTF_permit_access | G.GTF_readonly | G.GTF_reading);
    // All or nothing: a batch with one bad ref leaves nothing mapped.
    grant(a, 10, 0, 102);
    assert.throws(() => gd.mapMany(a.domid, [10, 4000]), /grant 4000 .*GNTST_bad_gntref/);
    assert.equal(flags(a, 10), G.GTF_permit_access);
    assert.equal(gd.mapped, 1);
    gd.dispose();
    assert.equal(flags(a, 9), G.GTF_permit_access | G.GTF_readonly);
    assert.equal(host.hv.dom0.gnttab.mappings, 0);
  } finally {
    await host.shutdown();
  }
});

test("map and unmap refusals, each with Xen's status", async () => {
  const { host, a, b, c } = await setup();
  try {
    grant(a, 8, b.domid, 100);
    grant(a, 11, b.domid, 1 << 20); // a frame past a's memory
    const rows: Array<[string, () => number, number]> = [
      ["no host or device map flag", () => map(host, b, a.domid, 8, 0).status, G.GNTST_bad_gntref],
      ["a domain that does not exist", () => map(host, b, 4000, 8).status, G.GNTST_bad_domain],
      ["a ref past the table", () => map(host, b, a.domid, 512).status, G.GNTST_bad_gntref],
      ["a ref never granted", () => map(host, b, a.domid, 9).status, G.GNTST_general_error],
      ["a grant to somebody else", () => map(host, c, a.domid, 8).status, G.GNTST_general_error],
      [
        "a granted frame that does not exist",
        () => map(host, b, a.domid, 11).status,
        G.GNTST_bad_page,
      ],
      ["an unknown handle", () => unmap(host, b, 77), G.GNTST_bad_handle],
    ];
    for (const [what, f, st] of rows) assert.equal(f(), st, what);
    for (const ref of [8, 9, 11]) assert.ok(!(flags(a, ref) & (G.GTF_reading | G.GTF_writing)));
    // A pinned entry belongs to its grantee: c cannot pin it even if re-granted meanwhile.
    const m = map(host, b, a.domid, 8);
    assert.equal(m.status, 0);
    assert.equal(m.bus, Number(a.p2mLookup(100 as never)) * 4096);
    grant(a, 8, c.domid, 100);
    assert.equal(map(host, c, a.domid, 8).status, G.GNTST_general_error);
    assert.equal(unmap(host, b, m.handle), 0);
    assert.equal(unmap(host, b, m.handle), G.GNTST_bad_handle, "double unmap");
    // Maptrack: b may hold one frame's worth (512) of mappings.
    grant(a, 8, b.domid, 100);
    const handles: number[] = [];
    for (let i = 0; i < 512; i++) {
      const r = map(host, b, a.domid, 8, G.GNTMAP_host_map | G.GNTMAP_readonly);
      assert.equal(r.status, 0);
      handles.push(r.handle);
    }
    assert.equal(map(host, b, a.domid, 8).status, G.GNTST_no_space);
    for (const h of handles) assert.equal(unmap(host, b, h), 0);
    assert.equal(flags(a, 8), G.GTF_permit_access);
    // A wild batch pointer is -EFAULT, a huge count -EINVAL.
    assert.equal(
      call(host, b, H.__HYPERVISOR_grant_table_op, G.GNTTABOP_map_grant_ref, 0x7ffffff0, 4),
      -E.EFAULT,
    );
    assert.equal(
      call(host, b, H.__HYPERVISOR_grant_table_op, G.GNTTABOP_copy, SCRATCH, 1 << 20),
      -E.EINVAL,
    );
    assert.equal(call(host, b, H.__HYPERVISOR_grant_table_op, 99, SCRATCH, 1), -E.ENOSYS);
  } finally {
    await host.shutdown();
  }
});

test("grant copy in both directions, and its refusals", async () => {
  const { host, a, b, c } = await setup();
  try {
    a.mem.write(100 * 4096 + 10, new TextEncoder().encode("message from a"));
    grant(a, 8, b.domid, 100, true);
    grant(a, 9, b.domid, 101);
    // b reads a's message into its own frame 120.
    assert.equal(
      copy(
        host,
        b,
        { ref: 8, domid: a.domid, offset: 10 },
        { gmfn: 120, domid: DOMID_SELF, offset: 0 },
        14,
      ),
      0,
    );
    assert.equal(new TextDecoder().decode(b.mem.read(120 * 4096, 14)), "message from a");
    // b answers into a's writable grant.
    b.mem.write(121 * 4096, new TextEncoder().encode("answer"));
    assert.equal(
      copy(
        host,
        b,
        { gmfn: 121, domid: DOMID_SELF, offset: 0 },
        { ref: 9, domid: a.domid, offset: 4090 },
        6,
      ),
      0,
    );
    assert.equal(new TextDecoder().decode(a.mem.read(101 * 4096 + 4090, 6)), "answer");
    const self = { gmfn: 120, domid: DOMID_SELF, offset: 0 };
    const rows: Array<[string, () => number, number]> = [
      [
        "into a read-only grant",
        () => copy(host, b, self, { ref: 8, domid: a.domid, offset: 0 }, 4),
        G.GNTST_general_error,
      ],
      [
        "across the page end",
        () => copy(host, b, { ref: 8, domid: a.domid, offset: 4000 }, self, 100),
        G.GNTST_bad_copy_arg,
      ],
      [
        "another domain's frame by number",
        () => copy(host, b, { gmfn: 100, domid: a.domid, offset: 0 }, self, 4),
        G.GNTST_permission_denied,
      ],
      [
        "a frame it does not have",
        () => copy(host, b, { gmfn: 1 << 20, domid: DOMID_SELF, offset: 0 }, self, 4),
        G.GNTST_bad_page,
      ],
      [
        "a grant made to b, by c",
        () => copy(host, c, { ref: 8, domid: a.domid, offset: 0 }, self, 4),
        G.GNTST_general_error,
      ],
      [
        "a ref past the table",
        () => copy(host, b, { ref: 600, domid: a.domid, offset: 0 }, self, 4),
        G.GNTST_bad_gntref,
      ],
      [
        "a domain that does not exist",
        () => copy(host, b, { ref: 8, domid: 4000, offset: 0 }, self, 4),
        G.GNTST_bad_domain,
      ],
    ];
    const before = b.mem.read(120 * 4096, 4096);
    for (const [what, f, st] of rows) assert.equal(f(), st, what);
    assert.deepEqual(b.mem.read(120 * 4096, 4096), before, "a refused copy wrote nothing");
    // A copy holds its pins only while it copies.
    assert.equal(flags(a, 8), G.GTF_permit_access | G.GTF_readonly);
    assert.equal(flags(a, 9), G.GTF_permit_access);
    assert.equal(a.gnttab.pinned, 0);
  } finally {
    await host.shutdown();
  }
});

test("setup_table, add_to_physmap of grant frames, query_size, versions, dump", async () => {
  const { host, a, b } = await setup();
  try {
    const setup = (d: Domain, nr: number, dom = DOMID_SELF, count = 1) => {
      const list = SCRATCH + 256;
      put(d, G.gnttab_setup_table, SCRATCH, { dom, nr_frames: nr, frame_list: list });
      const rc = call(
        host,
        d,
        H.__HYPERVISOR_grant_table_op,
        G.GNTTABOP_setup_table,
        SCRATCH,
        count,
      );
      const frames = Array.from({ length: nr }, (_, i) => d.mem.u64(list + i * 8));
      return { rc, status: get(d, G.gnttab_setup_table, SCRATCH, "status"), frames };
    };
    assert.deepEqual(setup(a, 4).frames, [6, 7, 8, 9]);
    const eleven = setup(a, 11);
    assert.equal(eleven.status, 0);
    assert.equal(eleven.frames[10], INVALID_GFN);
    assert.equal(setup(a, 65).status, G.GNTST_general_error, "past max_grant_frames");
    assert.equal(setup(a, 1, DOMID_SELF, 2).rc, -E.EINVAL);
    assert.equal(setup(b, 1, a.domid).status, G.GNTST_permission_denied);
    assert.equal(setup(host.hv.dom0, 2, a.domid).status, 0, "Dom0 may set up a's table");
    // Frame 10 placed at pfn 200: its entries work like any other.
    const xatp = (idx: number, gpfn: number): number => {
      put(a, M.xen_add_to_physmap, SCRATCH, {
        domid: DOMID_SELF,
        space: M.XENMAPSPACE_grant_table,
        idx,
        gpfn,
      });
      return call(host, a, H.__HYPERVISOR_memory_op, M.XENMEM_add_to_physmap, SCRATCH);
    };
    assert.equal(xatp(10, 200), 0);
    assert.equal(xatp(64, 201), -E.EINVAL, "past max_grant_frames");
    assert.equal(xatp(11, 3), -E.EINVAL, "an architecture frame");
    assert.equal(xatp(11, 200), -E.EBUSY, "a page that already holds a frame");
    assert.equal(setup(a, 11).frames[10], 200);
    const ref = 10 * 512 + 3;
    a.mem.setU32(200 * 4096 + 3 * 8 + 4, 150);
    a.mem.setU16(200 * 4096 + 3 * 8 + 2, 0);
    a.mem.setU16(200 * 4096 + 3 * 8, G.GTF_permit_access);
    const gd = host.dom0.openGnttab();
    const m = gd.map(a.domid, ref);
    m.page[0] = 42;
    assert.equal(a.mem.u8[150 * 4096], 42);
    gd.dispose();
    const q = op(
      host,
      a,
      H.__HYPERVISOR_grant_table_op,
      G.GNTTABOP_query_size,
      G.gnttab_query_size,
      {
        dom: DOMID_SELF,
      },
    );
    assert.deepEqual([q.out("nr_frames"), q.out("max_nr_frames"), q.out("status")], [11, 64, 0]);
    const q2 = op(
      host,
      b,
      H.__HYPERVISOR_grant_table_op,
      G.GNTTABOP_query_size,
      G.gnttab_query_size,
      {
        dom: a.domid,
      },
    );
    assert.equal(q2.out("status"), G.GNTST_permission_denied);
    const ver = (v: number) =>
      op(host, a, H.__HYPERVISOR_grant_table_op, G.GNTTABOP_set_version, G.gnttab_set_version, {
        version: v,
      });
    assert.equal(ver(1).rc, 0);
    const v2 = ver(2);
    assert.equal(v2.rc, -E.ENOSYS, "v2 is refused as Xen refuses it with max version 1");
    assert.equal(v2.out("version"), 1);
    assert.equal(ver(3).rc, -E.EINVAL);
    const gv = op(
      host,
      a,
      H.__HYPERVISOR_grant_table_op,
      G.GNTTABOP_get_version,
      G.gnttab_get_version,
      {
        dom: DOMID_SELF,
      },
    );
    assert.deepEqual([gv.rc, gv.out("version")], [0, 1]);
    grant(a, 8, b.domid, 100);
    host.dmesg(true);
    op(host, a, H.__HYPERVISOR_grant_table_op, G.GNTTABOP_dump_table, G.gnttab_dump_table, {
      dom: DOMID_SELF,
    });
    assert.match(
      host.dmesg(),
      /grant table for d\d+: version 1, 11 of 64 frames[\s\S]*\[8\] flags 0x1 dom \d+ frame 0x64/,
    );
  } finally {
    await host.shutdown();
  }
});

test("a destroyed domain stays dying while Dom0 maps its page, and is freed at the last unmap", async () => {
  const { host, a, b } = await setup();
  try {
    const free0 = host.hv.frames.freeFrames;
    grant(a, 8, 0, 100);
    grant(a, 9, b.domid, 101);
    a.mem.setU32(100 * 4096, 0xdeadbeef);
    const gd = host.dom0.openGnttab();
    const m = gd.map(a.domid, 8);
    const mb = map(host, b, a.domid, 9);
    assert.equal(mb.status, 0);
    host.destroy(a.domid);
    assert.equal(a.runState, "dying");
    assert.equal(host.hv.domains.get(a.domid), a, "still there, dying");
    assert.equal(host.hv.frames.freeFrames, free0, "its memory is kept");
    assert.equal(new DataView(m.page.buffer, m.page.byteOffset).getUint32(0, true), 0xdeadbeef);
    assert.equal(accountedFrames(host), host.hv.frames.totalFrames);
    // b's mapping goes when b is destroyed; Dom0's still holds a.
    host.destroy(b.domid);
    assert.equal(host.hv.domains.has(b.domid), false);
    assert.equal(host.hv.domains.has(a.domid), true);
    gd.unmap(m);
    assert.equal(host.hv.domains.has(a.domid), false, "freed at the last unmap");
    assert.equal(host.hv.frames.freeFrames, free0 + 2 * 512);
    assert.equal(accountedFrames(host), host.hv.frames.totalFrames);
    assert.equal(host.hv.dom0.gnttab.mappings, 0);
  } finally {
    await host.shutdown();
  }
});

test("gntalloc: Dom0 shares a page; a guest copies from it and pins it; unshare waits for the pin", async () => {
  const { host, a } = await setup();
  try {
    const sh = host.dom0.openGntshr();
    const [p] = sh.share(a.domid, 1);
    p!.page.set(new TextEncoder().encode("from dom0"));
    assert.equal(
      copy(
        host,
        a,
        { ref: p!.ref, domid: 0, offset: 0 },
        { gmfn: 120, domid: DOMID_SELF, offset: 0 },
        9,
      ),
      0,
    );
    assert.equal(new TextDecoder().decode(a.mem.read(120 * 4096, 9)), "from dom0");
    const m = map(host, a, 0, p!.ref);
    assert.equal(m.status, 0);
    assert.equal(sh.unshare(p!), false, "mapped: the page stays shared");
    assert.equal(unmap(host, a, m.handle), 0);
    assert.equal(sh.unshare(p!), true);
    assert.equal(
      copy(
        host,
        a,
        { ref: p!.ref, domid: 0, offset: 0 },
        { gmfn: 120, domid: DOMID_SELF, offset: 0 },
        9,
      ),
      G.GNTST_general_error,
    );
    const many = sh.share(a.domid, 3, false);
    assert.equal(new Set(many.map((x) => x.ref)).size, 3);
    assert.equal(sh.dispose(), 0);
    assert.equal(sh.count, 0);
  } finally {
    await host.shutdown();
  }
});
