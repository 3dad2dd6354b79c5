/**
 * A PV domain's state beyond its memory, for save, restore and migration
 * (#18; the wasm32 counterpart of what XEN_DOMCTL_gethvmcontext returns for
 * an x86 HVM guest): each vCPU's state (which contexts are unwound into
 * their save areas, the hypercall results and continuations, the instance's
 * mutable globals, its timers) and the event channel table. With the
 * domain's pages, that is everything: a domain saved while paused resumes
 * exactly where each vCPU was, spinning, blocked in a hypercall or asleep
 * on a timer (docs/arch-wasm32.md, "Saving a domain").
 *
 * What does not carry over as it was: interdomain channels come back
 * unbound, offered to the same peer, for the toolstack to connect again
 * (xenstored and xenconsoled bind the xenstore and console ports); Dom0's
 * mappings of the domain's grants are made again the same way.
 *
 * Time: the context carries the domain's system time when it was taken,
 * and its timers' deadlines in that time. A restored domain's system time
 * goes on from there, on this host or another (Domain.stimeOffsetNs), as
 * Xen's TSC_INFO record carries a guest's clock: no jump forward by the
 * time it spent saved, none backward onto a host that booted later. Its
 * wallclock base moves the other way, so that its wallclock stays the
 * host's.
 */
import { XenErrno } from "../include/public/errno.js";
import { SHUTDOWN_suspend } from "../include/public/sched.js";
import {
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_ipi,
  EVTCHNSTAT_unbound,
  EVTCHNSTAT_virq,
} from "../include/public/event_channel.js";
import { VcpuState, type VcpuSnapshot } from "../arch/wasm32/vcpu.js";
import type { Domain } from "./domain.js";
import type { Hypervisor } from "./hypervisor.js";
import { MILLISECS, NOW } from "./time.js";
import type { FifoSnapshot } from "./event_fifo.js";

/** One vCPU's saved state. */
export interface VcpuContext {
  id: number;
  state: VcpuState;
  snapshot: VcpuSnapshot;
  /** Timer deadlines in the domain's system time (ns), -1 when not set. */
  singleshotNs: number;
  periodicNs: number;
  periodNs: number;
  pollPorts: number[] | undefined;
  pollNs: number;
  cpuTimeNs: number;
}

/** One bound event channel port. */
export interface EvtchnContext {
  port: number;
  state: number;
  vcpu: number;
  remoteDom: number;
  remotePort: number;
  virq: number;
  virqVcpu: number;
  priority: number;
}

export interface DomainContext {
  vcpus: VcpuContext[];
  evtchns: EvtchnContext[];
  sharedInfoAddr: number;
  /** The domain's system time when the context was taken (ns). */
  guestNowNs: number;
  /**
   * The domain had suspended itself (SHUTDOWN_suspend, Xen's PV suspend):
   * it resumes in a new domain as a Xen PV guest does, its suspend
   * returning 0, with no event channel of its old one (none is carried):
   * it binds its xenstore and console ports again from start_info, which
   * the toolstack fills with new ones, and registers its watches again.
   */
  suspended: boolean;
  /**
   * The FIFO event channel ABI's state, when the domain uses it (Fifo's
   * snapshot, and the ports raised while their event word's page was
   * missing); the event words and queues are in its memory.
   */
  fifo?: FifoSnapshot & { pendingPorts: number[] };
}

/** Thrown when a domain cannot be saved or restored; the message says why. */
export class ContextError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Takes `d`'s context. `d` must be a paused PV domain with none of its
 * vCPUs on the CPU, using the 2-level event channel ABI.
 */
export function saveDomainContext(hv: Hypervisor, d: Domain): DomainContext {
  const fail = (errno: number, why: string): never => {
    throw new ContextError(errno, `d${d.domid}: ${why}`);
  };
  if (d.hvm || d.privileged) fail(XenErrno.EINVAL, "not a PV guest");
  if (d.pauseCount === 0) fail(XenErrno.EBUSY, "the domain must be paused");
  if (hv.sched.current?.domain === d) fail(XenErrno.EBUSY, "a vCPU is on the CPU");
  // A domain that suspended itself takes none of its ports along: it will
  // bind what it needs again, as on Xen.
  // The FIFO ABI's state stays behind with them: the new domain starts with
  // the 2-level ABI, and the guest sets FIFO up again if it wants it.
  const suspended = d.isShutdown && d.shutdownReason === SHUTDOWN_suspend;
  const off = d.stimeOffsetNs;
  const ms = (t: { active: boolean; expires: number }): number =>
    t.active ? Math.round(t.expires + off) : -1;
  const vcpus = d.vcpus.map((v) => {
    let snapshot: VcpuSnapshot;
    try {
      snapshot = v.snapshot();
    } catch (e) {
      return fail(XenErrno.EOPNOTSUPP, (e as Error).message);
    }
    return {
      id: v.id,
      state: v.state === VcpuState.Running ? VcpuState.Runnable : v.state,
      snapshot,
      singleshotNs: ms(v.singleshot),
      periodicNs: ms(v.periodic),
      periodNs: v.periodNs,
      pollPorts: v.pollPorts ? [...v.pollPorts] : undefined,
      pollNs: ms(v.pollTimer),
      cpuTimeNs: v.cpuTimeNs,
    };
  });
  const evtchns: EvtchnContext[] = [];
  const pendingPorts: number[] = [];
  for (const [port, ch] of suspended ? [] : d.evtchn.channels()) {
    evtchns.push({
      port,
      state: ch.state,
      vcpu: ch.vcpu,
      remoteDom: ch.remoteDom,
      remotePort: ch.remotePort,
      virq: ch.virq,
      virqVcpu: ch.virqVcpu,
      priority: ch.priority,
    });
    if (ch.pending) pendingPorts.push(port);
  }
  const fifo =
    d.evtchn.fifo && !suspended ? { ...d.evtchn.fifo.snapshot(), pendingPorts } : undefined;
  return {
    vcpus,
    evtchns,
    sharedInfoAddr: d.sharedInfoAddr,
    guestNowNs: d.stime(),
    suspended,
    ...(fifo ? { fifo } : {}),
  };
}

/**
 * Puts `ctx` into `d`: a PV domain being built (its module bound and its
 * memory, with the saved pages, in place), paused, with no vCPU up and no
 * port bound. Interdomain ports come back unbound, offered to their old
 * peer. Throws ContextError; `d` is then for the caller to destroy.
 */
export function restoreDomainContext(hv: Hypervisor, d: Domain, ctx: DomainContext): void {
  const fail = (errno: number, why: string): never => {
    throw new ContextError(errno, `d${d.domid}: ${why}`);
  };
  if (d.hvm || d.privileged || !d.kernel) fail(XenErrno.EINVAL, "not a PV guest with a module");
  if (d.pauseCount === 0) fail(XenErrno.EBUSY, "the domain must be paused");
  if (ctx.vcpus.length !== d.vcpus.length)
    fail(XenErrno.EINVAL, `${ctx.vcpus.length} vCPUs saved, the domain has ${d.vcpus.length}`);
  if (d.vcpus.some((v) => v.state !== VcpuState.Offline) || d.evtchn.inUse > 0)
    fail(XenErrno.EBUSY, "the domain already runs or has ports");
  const seen = new Set<number>();
  for (const c of ctx.vcpus) {
    if (seen.has(c.id) || !d.vcpus[c.id]) fail(XenErrno.EINVAL, `vCPU ${c.id} is not one of its`);
    seen.add(c.id);
    for (const x of [c.singleshotNs, c.periodicNs, c.pollNs])
      if (!Number.isSafeInteger(x) || x < -1)
        fail(XenErrno.EINVAL, `vCPU ${c.id}: a timer is ${x}`);
    // The period obeys VCPUOP_set_periodic_timer's rule (at least 1 ms, or
    // none): a file must not give a guest a timer that fires without end.
    if (
      !Number.isSafeInteger(c.periodNs) ||
      (c.periodNs !== 0 && c.periodNs < MILLISECS(1)) ||
      !(c.cpuTimeNs >= 0)
    )
      fail(XenErrno.EINVAL, `vCPU ${c.id}: its period or CPU time is out of range`);
  }
  if (!Number.isSafeInteger(ctx.guestNowNs) || ctx.guestNowNs < 0)
    fail(XenErrno.EINVAL, `its system time ${ctx.guestNowNs} is out of range`);
  if (
    !Number.isSafeInteger(ctx.sharedInfoAddr) ||
    ctx.sharedInfoAddr % 4096 !== 0 ||
    !d.isPopulated((ctx.sharedInfoAddr / 4096) as never)
  )
    fail(
      XenErrno.EINVAL,
      `shared_info at 0x${ctx.sharedInfoAddr.toString(16)} is not a page of its`,
    );
  // All checked: now the domain changes. Its time goes on from the saved one.
  d.sharedInfoAddr = ctx.sharedInfoAddr;
  d.stimeOffsetNs = ctx.guestNowNs - NOW();
  hv.writeWallclock(d);
  const host = (t: number): number => (t >= 0 ? Math.max(0, d.hostTime(t)) : -1);
  if (ctx.fifo) {
    // Every page of [addr, addr + len) is the domain's.
    const inMemory = (addr: number, len: number): boolean => {
      for (let p = Math.floor(addr / 4096); p * 4096 < addr + len; p++)
        if (!d.isPopulated(p as never)) return false;
      return true;
    };
    const why = d.evtchn.restoreFifo(ctx.fifo, inMemory);
    if (why) fail(XenErrno.EINVAL, `FIFO event channels: ${why}`);
  }
  const pending = new Set(ctx.fifo?.pendingPorts ?? []);
  for (const e of ctx.evtchns) {
    const state = e.state === EVTCHNSTAT_interdomain ? EVTCHNSTAT_unbound : e.state;
    if (
      ![EVTCHNSTAT_unbound, EVTCHNSTAT_virq, EVTCHNSTAT_ipi].includes(state) ||
      !d.evtchn.restorePort(e.port, { ...e, state, pending: pending.has(e.port) })
    )
      fail(XenErrno.EINVAL, `event channel ${e.port} cannot be restored`);
  }
  for (const c of ctx.vcpus) {
    const v = d.vcpus[c.id]!;
    if (c.state === VcpuState.Offline) continue;
    try {
      hv.vcpuRestore(v, {
        ...c,
        singleshotNs: host(c.singleshotNs),
        periodicNs: host(c.periodicNs),
        pollNs: host(c.pollNs),
      });
    } catch (e) {
      fail(XenErrno.EINVAL, `vCPU ${c.id}: ${(e as Error).message}`);
    }
  }
}

/**
 * The context as bytes (little-endian), the body of the save stream's
 * WASM32_CONTEXT record (docs/save-format.md): a header (magic "W32C",
 * version 2, vCPU and port counts, shared_info's address, the domain's
 * system time), then per vCPU
 * id, state, flags (bit 0 main unwound, 1 upcall unwound, 2 in the
 * upcall), the resume value, two continuations (op, five arguments),
 * timer deadlines (i64, -1: none), period, CPU time, the poll ports and
 * the globals (index, kind 0 number as f64 / 1 i64, value); then per port
 * its eight fields.
 */
export function encodeContext(ctx: DomainContext): Uint8Array {
  // Written straight into a buffer that doubles when full (a context is a
  // few hundred bytes; this runs inside a migration's downtime).
  let bytes = new Uint8Array(1024);
  let dv = new DataView(bytes.buffer);
  let o = 40;
  const room = (n: number): void => {
    if (o + n <= bytes.length) return;
    const next = new Uint8Array(Math.max(bytes.length * 2, o + n));
    next.set(bytes);
    bytes = next;
    dv = new DataView(bytes.buffer);
  };
  const u32 = (v: number): void => {
    room(4);
    dv.setUint32(o, v >>> 0, true);
    o += 4;
  };
  const i64 = (v: number | bigint): void => {
    room(8);
    dv.setBigInt64(o, BigInt(v), true);
    o += 8;
  };
  const f64 = (v: number): void => {
    room(8);
    dv.setFloat64(o, v, true);
    o += 8;
  };
  for (const v of ctx.vcpus) {
    const s = v.snapshot;
    u32(v.id);
    u32(v.state);
    u32((s.mainSuspended ? 1 : 0) | (s.upcallSuspended ? 2 : 0) | (s.inUpcall ? 4 : 0));
    u32(s.resumeValue);
    for (let c = 0; c < 2; c++) {
      u32(s.continuations[c]?.op ?? -1);
      for (let a = 0; a < 5; a++) u32(s.continuations[c]?.args[a] ?? 0);
    }
    i64(v.singleshotNs);
    i64(v.periodicNs);
    i64(v.periodNs);
    i64(v.pollNs);
    i64(Math.round(v.cpuTimeNs));
    u32(v.pollPorts ? v.pollPorts.length : 0xffffffff);
    u32(s.globals.length);
    for (const p of v.pollPorts ?? []) u32(p);
    for (const [i, g] of s.globals) {
      u32(i);
      u32(typeof g === "bigint" ? 1 : 0);
      if (typeof g === "bigint") i64(g);
      else f64(g);
    }
  }
  for (const e of ctx.evtchns)
    for (const x of [
      e.port,
      e.state,
      e.vcpu,
      e.remoteDom,
      e.remotePort,
      e.virq,
      e.virqVcpu,
      e.priority,
    ])
      u32(x);
  if (ctx.fifo) {
    u32(ctx.fifo.arrayPages.length);
    for (const a of ctx.fifo.arrayPages) i64(a);
    for (const v of ctx.fifo.vcpus) {
      i64(v.controlBlock ?? -1);
      for (const t of v.tails) u32(t);
    }
    u32(ctx.fifo.pendingPorts.length);
    for (const p of ctx.fifo.pendingPorts) u32(p);
  }
  dv.setUint32(0, CONTEXT_MAGIC, true);
  dv.setUint32(4, CONTEXT_VERSION, true);
  dv.setUint32(8, ctx.vcpus.length, true);
  dv.setUint32(12, ctx.evtchns.length, true);
  dv.setBigUint64(16, BigInt(ctx.sharedInfoAddr), true);
  dv.setBigInt64(24, BigInt(ctx.guestNowNs), true);
  dv.setUint32(
    32,
    (ctx.suspended ? CONTEXT_F_SUSPENDED : 0) | (ctx.fifo ? CONTEXT_F_FIFO : 0),
    true,
  );
  return bytes.slice(0, o);
}

/** "W32C", little-endian. */
export const CONTEXT_MAGIC = 0x43323357;
/**
 * 4: flags bit 1 and the FIFO section after the ports. 3 (read still): flags
 * (and a word kept 0) follow the domain's system time; 2 (read still) has
 * neither: its domain's system time followed shared_info's address.
 */
export const CONTEXT_VERSION = 4;
/** Flags bit 0: the domain had suspended itself (DomainContext.suspended). */
export const CONTEXT_F_SUSPENDED = 1;
/** Flags bit 1: the domain uses the FIFO event channel ABI; its state follows the ports. */
export const CONTEXT_F_FIFO = 2;

/** Reads what encodeContext wrote; throws ContextError naming the offset of what is wrong. */
export function decodeContext(bytes: Uint8Array): DomainContext {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = 0;
  const need = (n: number, what: string): void => {
    if (o + n > bytes.length)
      throw new ContextError(XenErrno.EINVAL, `context: ${what} at offset ${o} is cut short`);
  };
  const u32 = (what: string): number => {
    need(4, what);
    const v = dv.getUint32(o, true);
    o += 4;
    return v;
  };
  const i64 = (what: string): bigint => {
    need(8, what);
    const v = dv.getBigInt64(o, true);
    o += 8;
    return v;
  };
  if (u32("the magic") !== CONTEXT_MAGIC)
    throw new ContextError(XenErrno.EINVAL, "context: not a wasm32 domain context (magic)");
  const version = u32("the version");
  if (version < 2 || version > CONTEXT_VERSION)
    throw new ContextError(
      XenErrno.EINVAL,
      `context: version ${version}, not 2 to ${CONTEXT_VERSION}`,
    );
  const nv = u32("the vCPU count");
  const ne = u32("the port count");
  if (nv < 1 || nv > 16 || ne > 1 << 17)
    throw new ContextError(XenErrno.EINVAL, `context: ${nv} vCPUs and ${ne} ports is not a domain`);
  const sharedInfoAddr = Number(i64("shared_info's address"));
  const guestNowNs = Number(i64("the domain's system time"));
  const flags = version >= 3 ? u32("the flags") : 0;
  if (version >= 3 && u32("the word after the flags") !== 0)
    throw new ContextError(XenErrno.EINVAL, "context: the word after the flags is not 0");
  const known = version >= 4 ? CONTEXT_F_SUSPENDED | CONTEXT_F_FIFO : CONTEXT_F_SUSPENDED;
  if (flags & ~known)
    throw new ContextError(XenErrno.EINVAL, `context: unknown flags 0x${flags.toString(16)}`);
  const suspended = (flags & CONTEXT_F_SUSPENDED) !== 0;
  if (suspended && ne !== 0)
    throw new ContextError(XenErrno.EINVAL, "context: a suspended domain's ports are not carried");
  if (suspended && flags & CONTEXT_F_FIFO)
    throw new ContextError(
      XenErrno.EINVAL,
      "context: a suspended domain's FIFO state is not carried",
    );
  const vcpus: VcpuContext[] = [];
  for (let n = 0; n < nv; n++) {
    const id = u32("a vCPU id");
    const state = u32("a vCPU state");
    const flags = u32("a vCPU's flags");
    const resumeValue = u32("a resume value") | 0;
    const continuations = [0, 1].map(() => ({
      op: u32("a continuation") | 0,
      args: [0, 1, 2, 3, 4].map(() => u32("a continuation's argument")),
    }));
    const singleshotNs = Number(i64("a timer"));
    const periodicNs = Number(i64("a timer"));
    const periodNs = Number(i64("a period"));
    const pollNs = Number(i64("a timer"));
    const cpuTimeNs = Number(i64("CPU time"));
    const npoll = u32("the poll port count");
    const nglobals = u32("the global count");
    if ((npoll !== 0xffffffff && npoll > 128) || nglobals > 1 << 16)
      throw new ContextError(
        XenErrno.EINVAL,
        `context: vCPU ${id} at offset ${o}: counts out of range`,
      );
    const pollPorts =
      npoll === 0xffffffff ? undefined : Array.from({ length: npoll }, () => u32("a poll port"));
    const globals: Array<[number, number | bigint]> = [];
    for (let g = 0; g < nglobals; g++) {
      const index = u32("a global's index");
      const kind = u32("a global's kind");
      if (kind > 1)
        throw new ContextError(
          XenErrno.EINVAL,
          `context: a global's kind ${kind} at offset ${o - 4}`,
        );
      if (kind === 1) globals.push([index, i64("a global")]);
      else {
        need(8, "a global");
        globals.push([index, dv.getFloat64(o, true)]);
        o += 8;
      }
    }
    if (![VcpuState.Offline, VcpuState.Runnable, VcpuState.Blocked].includes(state))
      throw new ContextError(XenErrno.EINVAL, `context: vCPU ${id}: state ${state}`);
    vcpus.push({
      id,
      state,
      snapshot: {
        mainSuspended: (flags & 1) !== 0,
        upcallSuspended: (flags & 2) !== 0,
        inUpcall: (flags & 4) !== 0,
        resumeValue,
        continuations,
        globals,
      },
      singleshotNs,
      periodicNs,
      periodNs,
      pollPorts,
      pollNs,
      cpuTimeNs,
    });
  }
  const evtchns: EvtchnContext[] = [];
  for (let n = 0; n < ne; n++) {
    const [port, state, vcpu, remoteDom, remotePort, virq, virqVcpu, priority] = Array.from(
      { length: 8 },
      () => u32("an event channel"),
    ) as [number, number, number, number, number, number, number, number];
    evtchns.push({ port, state, vcpu, remoteDom, remotePort, virq, virqVcpu, priority });
  }
  let fifo: DomainContext["fifo"];
  if (flags & CONTEXT_F_FIFO) {
    const npages = u32("the FIFO event array's page count");
    if (npages > 1 << 10)
      throw new ContextError(XenErrno.EINVAL, `context: ${npages} FIFO event array pages`);
    const arrayPages = Array.from({ length: npages }, () => Number(i64("an event array page")));
    const fvcpus = vcpus.map(() => {
      const cb = i64("a FIFO control block");
      const tails = Array.from({ length: 16 }, () => u32("a FIFO queue's tail"));
      return { controlBlock: cb < 0n ? undefined : Number(cb), tails };
    });
    const npending = u32("the FIFO pending port count");
    if (npending > ne)
      throw new ContextError(XenErrno.EINVAL, `context: ${npending} FIFO pending ports`);
    const pendingPorts = Array.from({ length: npending }, () => u32("a FIFO pending port"));
    fifo = { arrayPages, vcpus: fvcpus, pendingPorts };
  }
  if (o !== bytes.length)
    throw new ContextError(
      XenErrno.EINVAL,
      `context: ${bytes.length - o} bytes after the end at offset ${o}`,
    );
  return { vcpus, evtchns, sharedInfoAddr, guestNowNs, suspended, ...(fifo ? { fifo } : {}) };
}
