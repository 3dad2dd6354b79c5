/**
 * Grant tables from Dom0's side, as a backend uses them:
 * - GNTTABOP_copy of 4 KiB pages granted by a guest into Dom0's pages, 256
 *   copies per hypercall, against TypedArray.set of the same bytes between
 *   the same memories in the same run (target ≥ 0.8× its throughput);
 * - gntdev map + unmap of one grant, against one plain hypercall from Dom0.
 */
import { guestPath } from "../extras/mini-os/paths.js";
import { Host } from "../tools/host/host.js";
import { loadKernelFile } from "../xen/arch/wasm32/kernel.js";
import * as G from "../xen/include/public/grant_table.js";
import { HYPERVISOR, DOMID_SELF } from "../xen/include/public/xen.js";
import { XENVER_version } from "../xen/include/public/version.js";
import { bestMs, fmt, type Row } from "./common.js";

const PAGES = 256;
const PAGE = 4096;
/** The guest's granted pages start at this pfn (free memory above a mini-os image). */
const GUEST_PFN = 512;

export async function run(quick: boolean): Promise<Row[]> {
  const host = new Host({ memoryBytes: 2 * 1024 ** 3 });
  try {
    const kernel = await loadKernelFile(guestPath("hello"));
    const d = host.createSync({ name: "granter", kernel, memory: 8, paused: true });
    // The guest grants PAGES pages to Dom0, as a frontend grants its buffers.
    for (let i = 0; i < PAGES; i++) {
      const e = 6 * PAGE + (8 + i) * 8;
      d.mem.setU32(e + 4, GUEST_PFN + i);
      d.mem.setU16(e + 2, 0);
      d.mem.setU16(e, G.GTF_permit_access);
      d.mem.u8.fill(i & 0xff, (GUEST_PFN + i) * PAGE, (GUEST_PFN + i + 1) * PAGE);
    }
    const pc = host.dom0.privcmd;
    const dst: number[] = [];
    for (let i = 0; i < PAGES; i++) dst.push(pc.allocPage()!);
    const size = G.gnttab_copy.size;
    const f = G.gnttab_copy.fields;
    const p = G.gnttab_copy_ptr.fields;
    const fill = (): number => {
      const a = pc.bounce(size * PAGES);
      for (let i = 0; i < PAGES; i++) {
        const op = a + i * size;
        pc.mem.setU32(op + f.source.offset + p.u.offset, 8 + i);
        pc.mem.setU16(op + f.source.offset + p.domid.offset, d.domid);
        pc.mem.setU32(op + f.dest.offset + p.u.offset, dst[i]!);
        pc.mem.setU16(op + f.dest.offset + p.domid.offset, DOMID_SELF);
        pc.mem.setU16(op + f.len.offset, PAGE);
        pc.mem.setU16(op + f.flags.offset, G.GNTCOPY_source_gref);
      }
      return a;
    };
    const ops = fill();
    const rounds = quick ? 20 : 400;
    const copyOnce = (): void => {
      const rc = pc.hypercall(HYPERVISOR.__HYPERVISOR_grant_table_op, G.GNTTABOP_copy, ops, PAGES);
      if (rc !== 0) throw new Error(`grant copy failed: ${rc}`);
    };
    copyOnce();
    for (let i = 0; i < PAGES; i++) {
      const st = pc.mem.u16(ops + i * size + f.status.offset);
      if (st !== 0) throw new Error(`grant copy ${i} failed: ${G.gntstName((st << 16) >> 16)}`);
    }
    if (pc.mem.u8[dst[7]! * PAGE + 100] !== 7) throw new Error("grant copy moved the wrong bytes");
    const src = d.mem.u8;
    const to = pc.mem.u8;
    const setOnce = (): void => {
      for (let i = 0; i < PAGES; i++) {
        const s = (GUEST_PFN + i) * PAGE;
        to.set(src.subarray(s, s + PAGE), dst[i]! * PAGE);
      }
    };
    const bytes = rounds * PAGES * PAGE;
    const reps = quick ? 1 : 5;
    // Interleave the two, so that both see the same machine.
    let copyMs = Infinity;
    let setMs = Infinity;
    for (let r = 0; r < reps; r++) {
      copyMs = Math.min(
        copyMs,
        bestMs(1, () => {
          for (let i = 0; i < rounds; i++) copyOnce();
        }),
      );
      setMs = Math.min(
        setMs,
        bestMs(1, () => {
          for (let i = 0; i < rounds; i++) setOnce();
        }),
      );
    }
    const copyGBs = bytes / copyMs / 1e6;
    const setGBs = bytes / setMs / 1e6;

    // Map + unmap through gntdev, against a plain hypercall.
    const gd = host.dom0.openGnttab();
    const n = quick ? 2_000 : 100_000;
    const mapUs =
      (bestMs(reps, () => {
        for (let i = 0; i < n; i++) gd.unmap(gd.map(d.domid, 8 + (i % PAGES)));
      }) *
        1000) /
      n;
    const hcUs =
      (bestMs(reps, () => {
        for (let i = 0; i < n; i++)
          pc.hypercall(HYPERVISOR.__HYPERVISOR_xen_version, XENVER_version, 0);
      }) *
        1000) /
      n;
    gd.dispose();
    return [
      {
        name: "grant copy, 4 KiB pages, guest→Dom0 vs TypedArray.set",
        measured: fmt(copyGBs, "GB/s"),
        baseline: fmt(setGBs, "GB/s"),
        ratio: copyGBs / setGBs,
        target: "≥ 0.8× (throughput)",
        met: copyGBs / setGBs >= 0.8,
      },
      {
        name: "gntdev map + unmap of one grant vs one Dom0 hypercall",
        measured: fmt(mapUs, "µs", 3),
        baseline: fmt(hcUs, "µs", 3),
        ratio: mapUs / hcUs,
        target: "(report)",
        met: true,
      },
    ];
  } finally {
    await host.shutdown();
  }
}
