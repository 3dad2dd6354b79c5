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
 * mappings of the domain's grants are made again the same way. Timers
 * keep their deadlines in system time, which is the host's own clock.
 */
import { XenErrno } from "../include/public/errno.js";
import {
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_ipi,
  EVTCHNSTAT_unbound,
  EVTCHNSTAT_virq,
} from "../include/public/event_channel.js";
import { VcpuState, type VcpuSnapshot } from "../arch/wasm32/vcpu.js";
import type { Domain } from "./domain.js";
import type { Hypervisor } from "./hypervisor.js";

/** One vCPU's saved state. */
export interface VcpuContext {
  id: number;
  state: VcpuState;
  snapshot: VcpuSnapshot;
  /** Timer deadlines in system time (ns), -1 when not set. */
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
  if (d.evtchn.fifo) fail(XenErrno.EOPNOTSUPP, "FIFO event channels cannot be saved yet");
  const ms = (t: { active: boolean; expires: number }): number => (t.active ? t.expires : -1);
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
  for (const [port, ch] of d.evtchn.channels()) {
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
  }
  return { vcpus, evtchns, sharedInfoAddr: d.sharedInfoAddr };
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
  d.sharedInfoAddr = ctx.sharedInfoAddr;
  for (const e of ctx.evtchns) {
    const state = e.state === EVTCHNSTAT_interdomain ? EVTCHNSTAT_unbound : e.state;
    if (
      ![EVTCHNSTAT_unbound, EVTCHNSTAT_virq, EVTCHNSTAT_ipi].includes(state) ||
      !d.evtchn.restorePort(e.port, { ...e, state })
    )
      fail(XenErrno.EINVAL, `event channel ${e.port} cannot be restored`);
  }
  for (const c of ctx.vcpus) {
    const v = d.vcpus[c.id];
    if (!v) return fail(XenErrno.EINVAL, `no vCPU ${c.id}`);
    if (c.state === VcpuState.Offline) continue;
    hv.vcpuRestore(v, c);
  }
}
