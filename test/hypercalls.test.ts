/**
 * Hypercalls called directly on a paused domain (its vCPU never runs), as
 * scenario tables: each row is a call, the expected result and its effect.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Host } from "../tools/host/host.js";
import { accountedFrames } from "./helpers.js";
import { guestPath } from "../extras/mini-os/paths.js";
import { loadKernelFile } from "../xen/arch/wasm32/kernel.js";
import {
  HYPERVISOR as H,
  CONSOLEIO_read,
  CONSOLEIO_write,
  DOMID_SELF,
  VIRQ_TIMER,
} from "../xen/include/public/xen.js";
import { XenErrno as E } from "../xen/include/public/errno.js";
import * as V from "../xen/include/public/version.js";
import * as M from "../xen/include/public/memory.js";
import * as S from "../xen/include/public/sched.js";
import * as C from "../xen/include/public/vcpu.js";
import * as EV from "../xen/include/public/event_channel.js";
import { PFN_SHARED_INFO } from "../xen/arch/wasm32/config.js";
import type { Domain } from "../xen/common/domain.js";
import { Suspend } from "../xen/arch/wasm32/vcpu.js";
import { shared_info } from "../xen/include/public/arch-wasm32.js";
import { NOW } from "../xen/common/time.js";

const SCRATCH = 0x60000;

async function setup(): Promise<{ host: Host; d: Domain; other: Domain }> {
  const host = new Host({ memoryBytes: 1024 ** 3, dom0MemoryBytes: 64 * 1024 ** 2 });
  const kernel = await loadKernelFile(guestPath("hello"));
  const d = host.createSync({ name: "t", kernel, memory: 2, maxmem: 4, paused: true });
  const other = host.createSync({ name: "o", kernel, memory: 2, paused: true });
  return { host, d, other };
}

function call(host: Host, d: Domain, op: number, ...a: number[]): number {
  return host.hv.dispatch(d.vcpus[0]!, op, a[0] ?? 0, a[1] ?? 0, a[2] ?? 0, a[3] ?? 0, a[4] ?? 0);
}

const cstr = (d: Domain, addr: number): string => {
  const u8 = d.mem.u8;
  let end = addr;
  while (u8[end] !== 0) end++;
  return new TextDecoder().decode(u8.subarray(addr, end));
};

test("xen_version", async () => {
  const { host, d } = await setup();
  try {
    const rows: Array<[string, number, number]> = [
      ["version", V.XENVER_version, (4 << 16) | 17],
      ["extraversion", V.XENVER_extraversion, 0],
      ["capabilities", V.XENVER_capabilities, 0],
      ["pagesize", V.XENVER_pagesize, 4096],
      ["commandline is privileged", V.XENVER_commandline, -E.EPERM],
      ["build_id is absent", V.XENVER_build_id, -E.ENODATA],
      ["unknown", 99, -E.ENOSYS],
    ];
    for (const [what, cmd, rc] of rows)
      assert.equal(call(host, d, H.__HYPERVISOR_xen_version, cmd, SCRATCH), rc, what);
    call(host, d, H.__HYPERVISOR_xen_version, V.XENVER_extraversion, SCRATCH);
    assert.equal(cstr(d, SCRATCH), ".0-tsxen");
    call(host, d, H.__HYPERVISOR_xen_version, V.XENVER_capabilities, SCRATCH);
    assert.equal(cstr(d, SCRATCH), "xen-3.0-wasm32 hvm-3.0-wasm32");
    d.mem.setU32(SCRATCH, 0);
    assert.equal(call(host, d, H.__HYPERVISOR_xen_version, V.XENVER_get_features, SCRATCH), 0);
    assert.equal(d.mem.u32(SCRATCH + 4), 1 << V.XENFEAT_auto_translated_physmap);
    d.mem.setU32(SCRATCH, 1);
    assert.equal(
      call(host, d, H.__HYPERVISOR_xen_version, V.XENVER_get_features, SCRATCH),
      -E.EINVAL,
    );
    for (const bad of [-1, d.mem.size - 8, 0x7fffffff]) {
      assert.equal(
        call(host, d, H.__HYPERVISOR_xen_version, V.XENVER_extraversion, bad),
        -E.EFAULT,
        `ptr ${bad}`,
      );
    }
  } finally {
    await host.shutdown();
  }
});

test("memory_op keeps the books exact", async () => {
  const { host, d, other } = await setup();
  try {
    const free0 = host.hv.frames.freeFrames;
    const reservation = (extents: number, nr: number, order = 0, domid = DOMID_SELF): void => {
      const f = M.xen_memory_reservation.fields;
      d.mem.setU64(SCRATCH + f.extent_start.offset, extents);
      d.mem.setU64(SCRATCH + f.nr_extents.offset, nr);
      d.mem.setU32(SCRATCH + f.extent_order.offset, order);
      d.mem.setU32(SCRATCH + f.mem_flags.offset, 0);
      d.mem.setU16(SCRATCH + f.domid.offset, domid);
    };
    const list = SCRATCH + 0x100;
    d.mem.setU16(SCRATCH, DOMID_SELF);
    assert.equal(
      call(host, d, H.__HYPERVISOR_memory_op, M.XENMEM_current_reservation, SCRATCH),
      512,
    );
    assert.equal(
      call(host, d, H.__HYPERVISOR_memory_op, M.XENMEM_maximum_reservation, SCRATCH),
      1024,
    );
    d.mem.setU16(SCRATCH, other.domid);
    assert.equal(
      call(host, d, H.__HYPERVISOR_memory_op, M.XENMEM_current_reservation, SCRATCH),
      -E.EPERM,
    );

    // Linear memory is as large as what was given: 2 MiB, not maxmem's 4.
    assert.equal(d.mem.size, 2 * 1024 ** 2);
    assert.equal(d.topPfn, 512);
    // populate two free pfns above the initial 2 MiB; the third is past maxmem.
    // Memory grows to cover them, in whole 64 KiB wasm pages: pfns 512..607
    // become addressable, and the 94 not asked for are holes charged to d.
    d.mem.setU64(list, 600);
    d.mem.setU64(list + 8, 601);
    d.mem.setU64(list + 16, 5000);
    reservation(list, 3);
    assert.equal(call(host, d, H.__HYPERVISOR_memory_op, M.XENMEM_populate_physmap, SCRATCH), 2);
    assert.equal(d.totPages, 514);
    assert.equal(d.topPfn, 608);
    assert.equal(d.holes.length, 94);
    assert.equal(host.hv.frames.freeFrames, free0 - 96);
    // A hole below the top is filled from its own frame: the heap is untouched.
    d.mem.setU64(list, 520);
    reservation(list, 1);
    assert.equal(call(host, d, H.__HYPERVISOR_memory_op, M.XENMEM_populate_physmap, SCRATCH), 1);
    assert.equal(d.holes.length, 93);
    assert.equal(host.hv.frames.freeFrames, free0 - 96);
    // Populating a populated pfn stops the batch.
    reservation(list, 1);
    assert.equal(call(host, d, H.__HYPERVISOR_memory_op, M.XENMEM_populate_physmap, SCRATCH), 0);

    // decrease: pfn 600 goes (its page zeroed); the shared_info frame cannot.
    d.mem.u8.fill(7, 600 * 4096, 601 * 4096);
    d.mem.setU64(list, 600);
    d.mem.setU64(list + 8, PFN_SHARED_INFO);
    reservation(list, 2);
    assert.equal(
      call(host, d, H.__HYPERVISOR_memory_op, M.XENMEM_decrease_reservation, SCRATCH),
      1,
    );
    assert.equal(d.totPages, 514);
    assert.equal(
      d.mem.u8.subarray(600 * 4096, 601 * 4096).some((b) => b !== 0),
      false,
    );
    // Its page stays addressable (wasm cannot unmap it), so its frame stays
    // charged to d as a hole rather than going back to the heap.
    assert.equal(d.holes.length, 94);
    assert.equal(host.hv.frames.freeFrames, free0 - 96);
    assert.equal(accountedFrames(host), host.hv.frames.totalFrames);

    // increase_reservation up to max_pages (1024): 510 more fit, not 600.
    reservation(0, 600);
    assert.equal(
      call(host, d, H.__HYPERVISOR_memory_op, M.XENMEM_increase_reservation, SCRATCH),
      510,
    );
    assert.equal(d.totPages, 1024);
    // An order above the domU limit does nothing.
    reservation(list, 1, 10);
    assert.equal(call(host, d, H.__HYPERVISOR_memory_op, M.XENMEM_populate_physmap, SCRATCH), 0);
    // Another domain's reservation is not ours to change.
    reservation(list, 1, 0, other.domid);
    assert.equal(
      call(host, d, H.__HYPERVISOR_memory_op, M.XENMEM_populate_physmap, SCRATCH),
      -E.EPERM,
    );

    // add_to_physmap moves shared_info; arch frames and other spaces are refused.
    const xatp = (space: number, gpfn: number): number => {
      const f = M.xen_add_to_physmap.fields;
      d.mem.setU16(SCRATCH + f.domid.offset, DOMID_SELF);
      d.mem.setU32(SCRATCH + f.space.offset, space);
      d.mem.setU64(SCRATCH + f.idx.offset, 0);
      d.mem.setU64(SCRATCH + f.gpfn.offset, gpfn);
      return call(host, d, H.__HYPERVISOR_memory_op, M.XENMEM_add_to_physmap, SCRATCH);
    };
    assert.equal(xatp(M.XENMAPSPACE_shared_info, 3), -E.EINVAL);
    assert.equal(xatp(M.XENMAPSPACE_gmfn, 100), -E.ENOSYS);
    assert.equal(xatp(M.XENMAPSPACE_shared_info, 100), 0);
    assert.equal(d.sharedInfoAddr, 100 * 4096);

    host.destroy(d.domid);
    host.destroy(other.domid);
    assert.equal(accountedFrames(host), host.hv.frames.totalFrames);
  } finally {
    await host.shutdown();
  }
});

test("sched_op, vcpu_op and multicall refuse what Xen refuses", async () => {
  const { host, d, other } = await setup();
  try {
    const rows: Array<[string, () => number, number]> = [
      [
        "shutdown reason out of range",
        () => (
          d.mem.setU32(SCRATCH, 9),
          call(host, d, H.__HYPERVISOR_sched_op, S.SCHEDOP_shutdown, SCRATCH)
        ),
        -E.EINVAL,
      ],
      [
        "shutdown_code",
        () => (
          d.mem.setU32(SCRATCH, 1),
          call(host, d, H.__HYPERVISOR_sched_op, S.SCHEDOP_shutdown_code, SCRATCH)
        ),
        0,
      ],
      [
        "poll with too many ports",
        () => (
          d.mem.setU32(SCRATCH + 8, 200),
          call(host, d, H.__HYPERVISOR_sched_op, S.SCHEDOP_poll, SCRATCH)
        ),
        -E.EINVAL,
      ],
      [
        "remote_shutdown from a domU",
        () => (
          d.mem.setU16(SCRATCH, other.domid),
          call(host, d, H.__HYPERVISOR_sched_op, S.SCHEDOP_remote_shutdown, SCRATCH)
        ),
        -E.EPERM,
      ],
      ["unknown sched op", () => call(host, d, H.__HYPERVISOR_sched_op, 99, 0), -E.ENOSYS],
      [
        "vcpu that does not exist",
        () => call(host, d, H.__HYPERVISOR_vcpu_op, C.VCPUOP_is_up, 5, 0),
        -E.ENOENT,
      ],
      ["is_up", () => call(host, d, H.__HYPERVISOR_vcpu_op, C.VCPUOP_is_up, 0, 0), 1],
      [
        "periodic timer under 1 ms",
        () => (
          d.mem.setU64(SCRATCH, 1000),
          call(host, d, H.__HYPERVISOR_vcpu_op, C.VCPUOP_set_periodic_timer, 0, SCRATCH)
        ),
        -E.EINVAL,
      ],
      [
        "single-shot in the past with VCPU_SSHOTTMR_future",
        () => (
          d.mem.setU64(SCRATCH, 1),
          d.mem.setU32(SCRATCH + 8, C.VCPU_SSHOTTMR_future),
          call(host, d, H.__HYPERVISOR_vcpu_op, C.VCPUOP_set_singleshot_timer, 0, SCRATCH)
        ),
        -E.ETIME,
      ],
      [
        "single-shot in the future",
        () => (
          d.mem.setU64(SCRATCH, NOW() + 1e9),
          call(host, d, H.__HYPERVISOR_vcpu_op, C.VCPUOP_set_singleshot_timer, 0, SCRATCH)
        ),
        0,
      ],
    ];
    for (const [what, fn, rc] of rows) {
      d.mem.clear(SCRATCH, 64);
      assert.equal(fn(), rc, what);
    }
    assert.equal(d.shutdownCode, 1);
    assert.equal(d.isShutdown, false);
    assert.equal(host.hv.timers.size, 1, "the single-shot timer is armed");

    // multicall: xen_version, then a nested multicall.
    d.mem.clear(SCRATCH, 128);
    d.mem.setU64(SCRATCH, H.__HYPERVISOR_xen_version);
    d.mem.setU64(SCRATCH + 64, H.__HYPERVISOR_multicall);
    assert.equal(call(host, d, H.__HYPERVISOR_multicall, SCRATCH, 2), 0);
    assert.equal(d.mem.u32(SCRATCH + 8), (4 << 16) | 17);
    assert.equal(d.mem.dv.getInt32(SCRATCH + 64 + 8, true), -E.EINVAL);
    assert.equal(call(host, d, H.__HYPERVISOR_multicall, d.mem.size - 32, 1), -E.EFAULT);
  } finally {
    await host.shutdown();
  }
});

test("event channels: bind_virq, status, unmask and close", async () => {
  const { host, d } = await setup();
  try {
    const bind = (virq: number, vcpu: number): number => {
      d.mem.setU32(SCRATCH, virq);
      d.mem.setU32(SCRATCH + 4, vcpu);
      return call(host, d, H.__HYPERVISOR_event_channel_op, EV.EVTCHNOP_bind_virq, SCRATCH);
    };
    assert.equal(bind(VIRQ_TIMER, 0), 0);
    const port = d.mem.u32(SCRATCH + 8);
    assert.equal(port, 1);
    assert.equal(bind(VIRQ_TIMER, 0), -E.EEXIST);
    assert.equal(bind(99, 0), -E.EINVAL);
    assert.equal(bind(VIRQ_TIMER, 7), -E.ENOENT);
    d.mem.setU16(SCRATCH, DOMID_SELF);
    d.mem.setU32(SCRATCH + 4, port);
    assert.equal(call(host, d, H.__HYPERVISOR_event_channel_op, EV.EVTCHNOP_status, SCRATCH), 0);
    assert.equal(d.mem.u32(SCRATCH + 8), EV.EVTCHNSTAT_virq);
    assert.equal(d.mem.u32(SCRATCH + 16), VIRQ_TIMER);
    // A timer event marks the port pending and raises the upcall flag.
    d.evtchn.sendVirq(0, VIRQ_TIMER);
    assert.equal(d.evtchn.isPending(port), true);
    assert.equal(d.vcpus[0]!.upcallPending, true);
    d.mem.setU32(SCRATCH, port);
    assert.equal(call(host, d, H.__HYPERVISOR_event_channel_op, EV.EVTCHNOP_close, SCRATCH), 0);
    assert.equal(
      call(host, d, H.__HYPERVISOR_event_channel_op, EV.EVTCHNOP_close, SCRATCH),
      -E.EINVAL,
    );
    // A closed port inside the allocated bucket may be unmasked, as in Xen.
    assert.equal(call(host, d, H.__HYPERVISOR_event_channel_op, EV.EVTCHNOP_unmask, SCRATCH), 0);
    d.mem.setU32(SCRATCH, 4096);
    assert.equal(
      call(host, d, H.__HYPERVISOR_event_channel_op, EV.EVTCHNOP_unmask, SCRATCH),
      -E.EINVAL,
    );
    assert.equal(
      call(host, d, H.__HYPERVISOR_event_channel_op, EV.EVTCHNOP_bind_pirq, SCRATCH),
      -E.ENOSYS,
    );
    assert.equal(d.evtchn.inUse, 0);
  } finally {
    await host.shutdown();
  }
});

test("an unimplemented hypercall is -ENOSYS, reported once per domain by name", async () => {
  const { host, d } = await setup();
  try {
    for (let i = 0; i < 3; i++) assert.equal(call(host, d, H.__HYPERVISOR_mmu_update), -E.ENOSYS);
    for (const op of [1000, 2000, -5]) assert.equal(call(host, d, op), -E.ENOSYS);
    const lines = host.dmesg().split("\n");
    assert.equal(
      lines.filter((l) => l.includes(`d${d.domid}: hypercall mmu_update (1) is not implemented`))
        .length,
      1,
    );
    assert.equal(lines.filter((l) => l.includes(`d${d.domid}: hypercall number`)).length, 1);
  } finally {
    await host.shutdown();
  }
});

test("vcpu_op up and down on a kernel with _start_vcpu", async () => {
  const host = new Host({ memoryBytes: 1024 ** 3, dom0MemoryBytes: 64 * 1024 ** 2 });
  try {
    const kernel = await loadKernelFile(guestPath("scribble"));
    const d = host.createSync({
      name: "smp",
      kernel,
      memory: 2,
      vcpus: 1,
      maxvcpus: 2,
      paused: true,
    });
    assert.equal(call(host, d, H.__HYPERVISOR_vcpu_op, C.VCPUOP_is_up, 1, 0), 0);
    assert.equal(call(host, d, H.__HYPERVISOR_vcpu_op, C.VCPUOP_up, 1, 0), 0);
    assert.equal(call(host, d, H.__HYPERVISOR_vcpu_op, C.VCPUOP_is_up, 1, 0), 1);
    assert.equal(call(host, d, H.__HYPERVISOR_vcpu_op, C.VCPUOP_down, 1, 0), 0);
    assert.equal(call(host, d, H.__HYPERVISOR_vcpu_op, C.VCPUOP_is_up, 1, 0), 0);
    const hello = host.createSync({
      name: "up",
      kernel: await loadKernelFile(guestPath("hello")),
      memory: 2,
      maxvcpus: 2,
      paused: true,
    });
    assert.equal(
      call(host, hello, H.__HYPERVISOR_vcpu_op, C.VCPUOP_up, 1, 0),
      -E.EINVAL,
      "no _start_vcpu export",
    );
  } finally {
    await host.shutdown();
  }
});

test("SCHEDOP_poll returns at once on a pending port, otherwise waits with its timeout", async () => {
  const { host, d } = await setup();
  try {
    const v = d.vcpus[0]!;
    d.mem.setU32(SCRATCH, VIRQ_TIMER);
    d.mem.setU32(SCRATCH + 4, 0);
    assert.equal(call(host, d, H.__HYPERVISOR_event_channel_op, EV.EVTCHNOP_bind_virq, SCRATCH), 0);
    const port = d.mem.u32(SCRATCH + 8);
    const poll = (timeout: number): number => {
      const f = S.sched_poll.fields;
      d.mem.setU32(SCRATCH + 0x40, port);
      d.mem.setU64(SCRATCH + f.ports.offset, SCRATCH + 0x40);
      d.mem.setU32(SCRATCH + f.nr_ports.offset, 1);
      d.mem.setU64(SCRATCH + f.timeout.offset, timeout);
      return call(host, d, H.__HYPERVISOR_sched_op, S.SCHEDOP_poll, SCRATCH);
    };
    // Nothing pending: the vCPU is to be descheduled, with the timeout armed.
    assert.equal(poll(NOW() + 5e9), 0);
    assert.equal(v.suspend, Suspend.Poll);
    assert.deepEqual(v.pollPorts, [port]);
    assert.equal(v.pollTimer.active, true);
    v.suspend = Suspend.None;
    host.hv.timers.stop(v.pollTimer);
    // Pending: returns at once, no suspension.
    d.evtchn.sendVirq(0, VIRQ_TIMER);
    assert.equal(poll(0), 0);
    assert.equal(v.suspend, Suspend.None);
  } finally {
    await host.shutdown();
  }
});

test("a periodic timer raises VIRQ_TIMER every period until stopped", async () => {
  const { host, d } = await setup();
  try {
    d.mem.setU32(SCRATCH, VIRQ_TIMER);
    d.mem.setU32(SCRATCH + 4, 0);
    assert.equal(call(host, d, H.__HYPERVISOR_event_channel_op, EV.EVTCHNOP_bind_virq, SCRATCH), 0);
    const port = d.mem.u32(SCRATCH + 8);
    let fired = 0;
    // Count deliveries by clearing the pending bit as a guest would.
    const clear = setInterval(() => {
      if (d.evtchn.isPending(port)) {
        fired++;
        const pending = d.sharedInfoAddr + shared_info.fields.evtchn_pending.offset;
        d.mem.u8.fill(0, pending, pending + 8);
      }
    }, 2);
    d.mem.setU64(SCRATCH, 20e6);
    assert.equal(call(host, d, H.__HYPERVISOR_vcpu_op, C.VCPUOP_set_periodic_timer, 0, SCRATCH), 0);
    await new Promise((r) => setTimeout(r, 130));
    assert.equal(call(host, d, H.__HYPERVISOR_vcpu_op, C.VCPUOP_stop_periodic_timer, 0, 0), 0);
    const atStop = fired;
    await new Promise((r) => setTimeout(r, 60));
    clearInterval(clear);
    assert.ok(atStop >= 4 && atStop <= 7, `${atStop} periodic events in 130 ms at a 20 ms period`);
    assert.equal(fired, atStop, "events after VCPUOP_stop_periodic_timer");
  } finally {
    await host.shutdown();
  }
});

test("console_io: a console domain's writes are its own console (UTF-8 split across writes stays whole), not the hypervisor's; others are refused", async () => {
  const { host, d } = await setup();
  try {
    const bytes = new TextEncoder().encode("caf\u00e9 au lait\n");
    const split = 4; // between the two bytes of "é"
    d.mem.write(SCRATCH, bytes);
    assert.equal(call(host, d, H.__HYPERVISOR_console_io, CONSOLEIO_write, split, SCRATCH), 0);
    assert.equal(
      call(
        host,
        d,
        H.__HYPERVISOR_console_io,
        CONSOLEIO_write,
        bytes.length - split,
        SCRATCH + split,
      ),
      0,
    );
    // A console domain's writes are its console, not the hypervisor's (a
    // release build's guest_loglvl).
    assert.match(host.readConsole(d.domid), /caf\u00e9 au lait\n$/);
    assert.doesNotMatch(host.dmesg(), /caf/);
    // A domain with a PV console ring is refused, as Xen's XSM policy refuses it.
    d.isConsole = false;
    assert.equal(call(host, d, H.__HYPERVISOR_console_io, CONSOLEIO_write, 4, SCRATCH), -E.EPERM);
    d.isConsole = true;
    assert.equal(call(host, d, H.__HYPERVISOR_console_io, CONSOLEIO_read, 100, SCRATCH), -E.EPERM);
    assert.equal(
      call(host, d, H.__HYPERVISOR_console_io, CONSOLEIO_write, 16, d.mem.size - 8),
      -E.EFAULT,
    );
  } finally {
    await host.shutdown();
  }
});

test("an event that came while upcalls were masked is delivered on the next hypercall's return", async () => {
  const host = new Host({ memoryBytes: 2 * 1024 ** 3 });
  try {
    const d = await host.create({ name: "upcall", kernel: guestPath("upcall"), memory: 2 });
    await host.waitShutdown(d.domid, 10_000);
    assert.match(host.readConsole(d.domid), /upcall: 0 while masked, 1 after one hypercall/);
  } finally {
    await host.shutdown();
  }
});
