/**
 * Event channels through the hypercall, as scenario tables on paused domains:
 * every operation, the hostile cases (bad port, another domain's port, double
 * bind, exhaustion), both ABIs, and what destruction leaves behind.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Host } from "../tools/host/host.js";
import { loadKernelFile } from "../xen/arch/wasm32/kernel.js";
import { guestPath } from "../extras/mini-os/paths.js";
import {
  HYPERVISOR as H,
  CONSOLEIO_read,
  DOMID_SELF,
  VIRQ_CONSOLE,
  VIRQ_CON_RING,
  VIRQ_DEBUG,
  VIRQ_DOM_EXC,
  VIRQ_TIMER,
} from "../xen/include/public/xen.js";
import { XenErrno as E } from "../xen/include/public/errno.js";
import * as EV from "../xen/include/public/event_channel.js";
import type { Domain } from "../xen/common/domain.js";
import { SCRATCH, call, op } from "./hc.js";
import { until } from "./helpers.js";

async function setup(): Promise<{ host: Host; a: Domain; b: Domain; c: Domain }> {
  const host = new Host({ memoryBytes: 1024 ** 3, dom0MemoryBytes: 64 * 1024 ** 2 });
  const kernel = await loadKernelFile(guestPath("hello"));
  const mk = (name: string): Domain => host.createSync({ name, kernel, memory: 2, paused: true });
  return { host, a: mk("a"), b: mk("b"), c: mk("c") };
}

const ev = (host: Host, d: Domain, cmd: number, layout: Parameters<typeof op>[4], input = {}) =>
  op(host, d, H.__HYPERVISOR_event_channel_op, cmd, layout, input);

function allocUnbound(host: Host, d: Domain, remote: number, dom = DOMID_SELF): number {
  const r = ev(host, d, EV.EVTCHNOP_alloc_unbound, EV.evtchn_alloc_unbound, {
    dom,
    remote_dom: remote,
  });
  return r.rc < 0 ? r.rc : r.out("port");
}

function bindInterdomain(host: Host, d: Domain, rdom: number, rport: number): number {
  const r = ev(host, d, EV.EVTCHNOP_bind_interdomain, EV.evtchn_bind_interdomain, {
    remote_dom: rdom,
    remote_port: rport,
  });
  return r.rc < 0 ? r.rc : r.out("local_port");
}

const portOp = (host: Host, d: Domain, cmd: number, port: number): number =>
  ev(host, d, cmd, EV.evtchn_port_arg, { port }).rc;

function status(host: Host, d: Domain, port: number, dom = DOMID_SELF) {
  const r = ev(host, d, EV.EVTCHNOP_status, EV.evtchn_status, { dom, port });
  return r.rc < 0
    ? { rc: r.rc }
    : { rc: 0, state: r.out("status"), vcpu: r.out("vcpu"), u: r.out("u"), port: r.out("u_port") };
}

test("interdomain channels: offer, bind, send both ways, close, rebind", async () => {
  const { host, a, b, c } = await setup();
  try {
    const pa = allocUnbound(host, a, b.domid);
    assert.equal(pa, 1);
    assert.deepEqual(status(host, a, pa), {
      rc: 0,
      state: EV.EVTCHNSTAT_unbound,
      vcpu: 0,
      u: b.domid,
      port: 0,
    });
    // Sending on an unbound port is dropped, as Xen drops it.
    assert.equal(portOp(host, a, EV.EVTCHNOP_send, pa), 0);
    const rows: Array<[string, () => number, number]> = [
      [
        "a domain the port was not offered to",
        () => bindInterdomain(host, c, a.domid, pa),
        -E.EINVAL,
      ],
      ["a port that does not exist", () => bindInterdomain(host, b, a.domid, 999), -E.EINVAL],
      ["port 0", () => bindInterdomain(host, b, a.domid, 0), -E.EINVAL],
      ["a domain that does not exist", () => bindInterdomain(host, b, 7777, pa), -E.ESRCH],
      [
        "another domain's unbound port for someone else",
        () => allocUnbound(host, b, c.domid, a.domid),
        -E.EPERM,
      ],
    ];
    for (const [what, f, rc] of rows) assert.equal(f(), rc, what);
    const pb = bindInterdomain(host, b, a.domid, pa);
    assert.equal(pb, 1);
    // Binding raises the new port: nothing sent before the bind is lost.
    assert.equal(b.evtchn.isPending(pb), true);
    assert.equal(bindInterdomain(host, b, a.domid, pa), -E.EINVAL, "double bind");
    assert.deepEqual(status(host, a, pa), {
      rc: 0,
      state: EV.EVTCHNSTAT_interdomain,
      vcpu: 0,
      u: b.domid,
      port: pb,
    });
    b.evtchn.ops.clearPending(pb);
    assert.equal(portOp(host, b, EV.EVTCHNOP_send, pb), 0);
    assert.equal(a.evtchn.isPending(pa), true);
    assert.equal(a.vcpus[0]!.upcallPending, true);
    assert.equal(portOp(host, a, EV.EVTCHNOP_send, pa), 0);
    assert.equal(b.evtchn.isPending(pb), true);
    // Another domain's port number means nothing to c: it has no such port.
    assert.equal(portOp(host, c, EV.EVTCHNOP_send, pb), -E.EINVAL);
    assert.equal(portOp(host, c, EV.EVTCHNOP_close, pb), -E.EINVAL);
    assert.equal(status(host, c, pa, a.domid).rc, -E.EPERM, "status of another domain");
    assert.equal(status(host, host.hv.dom0, pa, a.domid).state, EV.EVTCHNSTAT_interdomain);
    assert.equal(status(host, a, 5000).rc, -E.EINVAL);
    // Port 0 is reserved: closed to status, refused to close and send, unmaskable.
    assert.equal(status(host, a, 0).state, EV.EVTCHNSTAT_closed);
    assert.equal(portOp(host, a, EV.EVTCHNOP_close, 0), -E.EINVAL);
    assert.equal(portOp(host, a, EV.EVTCHNOP_send, 0), -E.EINVAL);
    assert.equal(portOp(host, a, EV.EVTCHNOP_unmask, 0), 0);
    // Closing one end leaves the other unbound, offered to the closer again.
    assert.equal(portOp(host, b, EV.EVTCHNOP_close, pb), 0);
    assert.equal(portOp(host, b, EV.EVTCHNOP_close, pb), -E.EINVAL, "double close");
    assert.equal(portOp(host, b, EV.EVTCHNOP_send, pb), -E.EINVAL, "send on a closed port");
    assert.deepEqual(status(host, a, pa), {
      rc: 0,
      state: EV.EVTCHNSTAT_unbound,
      vcpu: 0,
      u: b.domid,
      port: 0,
    });
    assert.equal(bindInterdomain(host, b, a.domid, pa), 1);
    // Loopback: a domain may bind to a port it offered itself.
    const self = allocUnbound(host, c, DOMID_SELF);
    const back = bindInterdomain(host, c, DOMID_SELF, self);
    assert.equal(back, self + 1);
    c.evtchn.ops.clearPending(back);
    assert.equal(portOp(host, c, EV.EVTCHNOP_send, back), 0);
    assert.equal(c.evtchn.isPending(self), true);
  } finally {
    await host.shutdown();
  }
});

test("VIRQs, IPIs and bind_vcpu on a two-vCPU domain", async () => {
  const host = new Host({ memoryBytes: 1024 ** 3, dom0MemoryBytes: 64 * 1024 ** 2 });
  try {
    const kernel = await loadKernelFile(guestPath("scribble"));
    const d = host.createSync({ name: "smp", kernel, memory: 2, vcpus: 2, paused: true });
    const virq = (v: number, vcpu: number): number => {
      const r = ev(host, d, EV.EVTCHNOP_bind_virq, EV.evtchn_bind_virq, { virq: v, vcpu });
      return r.rc < 0 ? r.rc : r.out("port");
    };
    const ipi = (vcpu: number): number => {
      const r = ev(host, d, EV.EVTCHNOP_bind_ipi, EV.evtchn_bind_ipi, { vcpu });
      return r.rc < 0 ? r.rc : r.out("port");
    };
    const bindVcpu = (port: number, vcpu: number): number =>
      ev(host, d, EV.EVTCHNOP_bind_vcpu, EV.evtchn_bind_vcpu, { port, vcpu }).rc;
    const timer1 = virq(VIRQ_TIMER, 1);
    assert.ok(timer1 > 0);
    assert.equal(virq(VIRQ_TIMER, 1), -E.EEXIST);
    assert.equal(virq(VIRQ_DOM_EXC, 1), -E.EINVAL, "a global VIRQ binds on vCPU 0 only");
    assert.equal(virq(VIRQ_TIMER, 9), -E.ENOENT);
    assert.equal(virq(24, 0), -E.EINVAL);
    const p = ipi(1);
    assert.equal(ipi(9), -E.ENOENT);
    assert.equal(portOp(host, d, EV.EVTCHNOP_send, p), 0);
    assert.equal(d.vcpus[1]!.upcallPending, true, "the IPI reached vCPU 1");
    assert.equal(d.vcpus[0]!.upcallPending, false);
    assert.equal(bindVcpu(p, 0), -E.EINVAL, "an IPI is tied to its vCPU");
    assert.equal(bindVcpu(timer1, 0), -E.EINVAL, "a per-vCPU VIRQ is tied to its vCPU");
    const dex = virq(VIRQ_DOM_EXC, 0);
    assert.equal(bindVcpu(dex, 1), 0);
    assert.equal(status(host, d, dex).vcpu, 1);
    d.evtchn.sendGlobalVirq(VIRQ_DOM_EXC);
    assert.equal(d.evtchn.isPending(dex), true, "a moved global VIRQ still fires");
    // Closing a moved VIRQ frees its binding: it can be bound again.
    assert.equal(portOp(host, d, EV.EVTCHNOP_close, dex), 0);
    assert.equal(virq(VIRQ_DOM_EXC, 0), dex);
    const u = allocUnbound(host, d, 0);
    assert.equal(bindVcpu(u, 1), 0);
    assert.equal(bindVcpu(u, 5), -E.ENOENT);
    assert.equal(bindVcpu(999, 1), -E.EINVAL);
    // Reset closes everything.
    assert.equal(ev(host, d, EV.EVTCHNOP_reset, EV.evtchn_reset, { dom: DOMID_SELF }).rc, 0);
    assert.equal(d.evtchn.inUse, 0);
    assert.equal(virq(VIRQ_TIMER, 1), 1, "ports are reused from the lowest");
  } finally {
    await host.shutdown();
  }
});

test("ports run out at max_event_channels and at the 2-level limit, with -ENOSPC", async () => {
  const host = new Host({ memoryBytes: 1024 ** 3, dom0MemoryBytes: 64 * 1024 ** 2 });
  try {
    const kernel = await loadKernelFile(guestPath("hello"));
    const d = host.createSync({ name: "few", kernel, memory: 2, paused: true, maxEvtchnPort: 7 });
    for (let i = 1; i <= 7; i++) assert.equal(allocUnbound(host, d, 0), i);
    assert.equal(allocUnbound(host, d, 0), -E.ENOSPC);
    assert.equal(portOp(host, d, EV.EVTCHNOP_unmask, 8), -E.EINVAL, "past the limit");
    assert.equal(portOp(host, d, EV.EVTCHNOP_close, 3), 0);
    assert.equal(allocUnbound(host, d, 0), 3);
    // Dom0 has no max_evtchn_port: the 2-level ABI's 4,096 ports bound it.
    const dom0 = host.hv.dom0;
    let n = 0;
    while (allocUnbound(host, dom0, d.domid) > 0) n++;
    assert.equal(n, EV.EVTCHN_2L_NR_CHANNELS - 1);
    assert.equal(allocUnbound(host, dom0, d.domid), -E.ENOSPC);
    assert.throws(
      () => host.createSync({ name: "x", kernel, memory: 2, maxEvtchnPort: -5 }),
      /max_event_channels=-5 is not a whole number from 1/,
    );
  } finally {
    await host.shutdown();
  }
});

test("FIFO ABI: control block, event array, queues by priority, masking, limits", async () => {
  const { host, a, b } = await setup();
  try {
    const CB = 100;
    const ARRAY = 101;
    const pfifo = allocUnbound(host, a, b.domid);
    const pb = bindInterdomain(host, b, a.domid, pfifo);
    // Pending under 2-level before the switch: must survive it.
    assert.equal(portOp(host, b, EV.EVTCHNOP_send, pb), 0);
    const setPrio = (port: number, priority: number): number =>
      ev(host, a, EV.EVTCHNOP_set_priority, EV.evtchn_set_priority, { port, priority }).rc;
    assert.equal(setPrio(pfifo, 3), -E.ENOSYS, "2-level has no priorities");
    const init = (gfn: number, offset: number, vcpu = 0) =>
      ev(host, a, EV.EVTCHNOP_init_control, EV.evtchn_init_control, {
        control_gfn: gfn,
        offset,
        vcpu,
      });
    const expand = (gfn: number): number =>
      ev(host, a, EV.EVTCHNOP_expand_array, EV.evtchn_expand_array, { array_gfn: gfn }).rc;
    assert.equal(expand(ARRAY), -E.EOPNOTSUPP, "expand before init");
    const rows: Array<[string, number, number, number, number]> = [
      ["unaligned offset", CB, 4, 0, -E.EINVAL],
      ["offset past the page", CB, 4096 - 64, 0, -E.EINVAL],
      ["no such vCPU", CB, 0, 3, -E.ENOENT],
      ["an architecture frame", 2, 0, 0, -E.EINVAL],
      ["a frame past memory", 1 << 20, 0, 0, -E.EINVAL],
    ];
    for (const [what, gfn, off, vcpu, rc] of rows) assert.equal(init(gfn, off, vcpu).rc, rc, what);
    const r = init(CB, 0);
    assert.equal(r.rc, 0);
    assert.equal(r.out("link_bits"), EV.EVTCHN_FIFO_LINK_BITS);
    assert.equal(init(CB, 0).rc, -E.EINVAL, "a second control block for vCPU 0");
    assert.equal(a.evtchn.maxPorts, 1024, "max_evtchn_port still caps FIFO");
    assert.equal(expand(ARRAY), 0);
    const word = (port: number): number => a.mem.u32(ARRAY * 4096 + port * 4);
    const head = (prio: number): number => a.mem.u32(CB * 4096 + 8 + prio * 4);
    const ready = (): number => a.mem.u32(CB * 4096);
    const P = 2 ** EV.EVTCHN_FIFO_PENDING;
    const M = 2 ** EV.EVTCHN_FIFO_MASKED;
    const L = 2 ** EV.EVTCHN_FIFO_LINKED;
    // The event raised under 2-level is now linked at the default priority.
    assert.equal(word(pfifo), P + L);
    assert.equal(head(EV.EVTCHN_FIFO_PRIORITY_DEFAULT), pfifo);
    assert.equal(ready(), 1 << EV.EVTCHN_FIFO_PRIORITY_DEFAULT);
    assert.equal(a.vcpus[0]!.upcallPending, true);
    // A second port on the same queue is linked behind the first.
    const p2 = allocUnbound(host, a, b.domid);
    const pb2 = bindInterdomain(host, b, a.domid, p2);
    assert.equal(portOp(host, b, EV.EVTCHNOP_send, pb2), 0);
    assert.equal(word(pfifo) & EV.EVTCHN_FIFO_LINK_MASK, p2);
    assert.equal(word(p2), P + L);
    // A higher priority gets its own queue and READY bit.
    const p3 = allocUnbound(host, a, b.domid);
    const pb3 = bindInterdomain(host, b, a.domid, p3);
    assert.equal(setPrio(p3, 2), 0);
    assert.equal(setPrio(p3, 16), -E.EINVAL);
    assert.equal(setPrio(999, 2), -E.EINVAL);
    assert.equal(portOp(host, b, EV.EVTCHNOP_send, pb3), 0);
    assert.equal(head(2), p3);
    assert.equal(ready(), (1 << 2) | (1 << EV.EVTCHN_FIFO_PRIORITY_DEFAULT));
    // Masked: pending but not linked, until unmask links it.
    const p4 = allocUnbound(host, a, b.domid);
    const pb4 = bindInterdomain(host, b, a.domid, p4);
    a.mem.setU32(ARRAY * 4096 + p4 * 4, M);
    assert.equal(portOp(host, b, EV.EVTCHNOP_send, pb4), 0);
    assert.equal(word(p4), M + P);
    assert.equal(portOp(host, a, EV.EVTCHNOP_unmask, p4), 0);
    assert.equal(word(p4), P + L);
    // The guest consumed the queue head: the tail is unlinked, so the next
    // event starts a new queue rather than linking behind a stale tail.
    for (const p of [pfifo, p2, p4]) a.mem.setU32(ARRAY * 4096 + p * 4, 0);
    a.mem.setU32(CB * 4096, 0);
    assert.equal(portOp(host, b, EV.EVTCHNOP_send, pb2), 0);
    assert.equal(head(EV.EVTCHN_FIFO_PRIORITY_DEFAULT), p2);
    assert.equal(ready(), 1 << EV.EVTCHN_FIFO_PRIORITY_DEFAULT);
    // Up to 128 event array pages.
    for (let i = 1; i < 128; i++) assert.equal(expand(ARRAY), 0);
    assert.equal(expand(ARRAY), -E.ENOSPC);
    // Reset returns to 2-level.
    assert.equal(ev(host, a, EV.EVTCHNOP_reset, EV.evtchn_reset, { dom: DOMID_SELF }).rc, 0);
    assert.equal(a.evtchn.ops.name, "2-level");
  } finally {
    await host.shutdown();
  }
});

test("Dom0's evtchn device: bind to a guest, receive, notify, unmask, unbind", async () => {
  const { host, a } = await setup();
  try {
    const h = host.dom0.openEvtchn();
    const got: number[] = [];
    h.on((p) => got.push(p));
    const local = h.bindUnboundPort(a.domid);
    const remote = bindInterdomain(host, a, 0, local);
    assert.equal(portOp(host, a, EV.EVTCHNOP_send, remote), 0);
    await until(() => got.length === 1, 1000, "a's event reaching Dom0");
    assert.deepEqual(got, [local]);
    // Masked until the listener unmasks: a second event waits, then arrives.
    assert.equal(portOp(host, a, EV.EVTCHNOP_send, remote), 0);
    await new Promise((r) => setImmediate(r));
    assert.equal(got.length, 1);
    h.unmask(local);
    await until(() => got.length === 2, 1000, "the held event");
    a.evtchn.ops.clearPending(remote);
    h.notify(local);
    assert.equal(a.evtchn.isPending(remote), true);
    assert.throws(() => h.notify(4000), /evtchn: send on port 4000 failed: EINVAL/);
    // The toolstack's way: a port in the guest, offered to Dom0.
    const inA = h.allocUnboundIn(a.domid, 0);
    assert.equal(status(host, a, inA).state, EV.EVTCHNSTAT_unbound);
    assert.equal(status(host, a, inA).u, 0);
    const mine = h.bindInterdomain(a.domid, inA);
    assert.equal(status(host, a, inA).port, mine);
    assert.throws(
      () => h.bindInterdomain(a.domid, 77),
      /bind_interdomain to d\d+ port 77 failed: EINVAL/,
    );
    // VIRQ_DOM_EXC tells Dom0 a domain shut down.
    const dex = h.bindVirq(VIRQ_DOM_EXC);
    host.hv.domainShutdown(a, 0);
    await until(() => got.includes(dex), 1000, "VIRQ_DOM_EXC");
    h.dispose();
    h.dispose();
    assert.equal(host.hv.dom0.evtchn.inUse, 0);
    assert.equal(status(host, a, remote).state, EV.EVTCHNSTAT_unbound);
  } finally {
    await host.shutdown();
  }
});

test("a destroyed domain leaves no ports behind, and its peers' ports go unbound", async () => {
  const { host, a, b } = await setup();
  try {
    const h = host.dom0.openEvtchn();
    const d0 = h.bindUnboundPort(b.domid);
    bindInterdomain(host, b, 0, d0);
    const pa = allocUnbound(host, a, b.domid);
    bindInterdomain(host, b, a.domid, pa);
    host.destroy(b.domid);
    assert.equal(status(host, a, pa).state, EV.EVTCHNSTAT_unbound);
    assert.equal(status(host, host.hv.dom0, d0).state, EV.EVTCHNSTAT_unbound);
    assert.equal(b.evtchn.inUse, 0);
    h.dispose();
    assert.equal(host.hv.dom0.evtchn.inUse, 0);
  } finally {
    await host.shutdown();
  }
});

test("VIRQ_CONSOLE, VIRQ_CON_RING and VIRQ_DEBUG are raised as Xen raises them", async () => {
  const { host, a } = await setup();
  try {
    const h = host.dom0.openEvtchn();
    const fired = new Set<number>();
    h.on((p) => {
      fired.add(p);
      h.unmask(p);
    });
    const con = h.bindVirq(VIRQ_CONSOLE);
    const ring = h.bindVirq(VIRQ_CON_RING);
    // Serial input: VIRQ_CONSOLE, then Dom0 reads it with CONSOLEIO_read.
    assert.equal(host.hv.console.input(new TextEncoder().encode("xl\r")), 3);
    await until(() => fired.has(con), 1000, "VIRQ_CONSOLE");
    const dom0 = host.hv.dom0;
    assert.equal(call(host, dom0, H.__HYPERVISOR_console_io, CONSOLEIO_read, 16, SCRATCH), 3);
    assert.equal(new TextDecoder().decode(dom0.mem.read(SCRATCH, 3)), "xl\r");
    assert.equal(call(host, dom0, H.__HYPERVISOR_console_io, CONSOLEIO_read, 16, SCRATCH), 0);
    assert.equal(host.hv.console.input(new Uint8Array(500)), 128, "the rest is dropped");
    // Console output: VIRQ_CON_RING.
    host.hv.console.printk("something to read");
    await until(() => fired.has(ring), 1000, "VIRQ_CON_RING");
    // Debug key 'q': every vCPU gets VIRQ_DEBUG; 'e' and 'g' dump state.
    const r = ev(host, a, EV.EVTCHNOP_bind_virq, EV.evtchn_bind_virq, {
      virq: VIRQ_DEBUG,
      vcpu: 0,
    });
    const dbg = r.out("port");
    const pa = allocUnbound(host, a, 0);
    host.dmesg(true);
    host.debugKeys("qegz");
    assert.equal(a.evtchn.isPending(dbg), true);
    const out = host.dmesg();
    assert.match(out, /General information for domain \d+ \(a\)/);
    assert.match(
      out,
      new RegExp(`Event channel information for domain ${a.domid} \\(2-level ABI\\):`),
    );
    assert.match(out, new RegExp(`\\s+${pa} \\[0/0\\]: s=1 \\(unbound\\) n=0 for d0`));
    assert.match(out, /grant table for d0: version 1/);
    assert.match(out, /'z' pressed -> no handler for this key/);
    h.dispose();
  } finally {
    await host.shutdown();
  }
});
