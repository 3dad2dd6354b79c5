/**
 * domctl (Xen's `common/domctl.c`): the toolstack's per-domain control, for
 * privileged domains only. Implemented: destroydomain, pausedomain,
 * unpausedomain, getdomaininfo, max_mem, getvcpuinfo, getvcpucontext (wasm32's
 * vcpu_guest_context, public/arch-wasm32.ts), set/getvcpuaffinity,
 * scheduler_op (credit), setdomainhandle; and the domain builder's:
 * createdomain (PV), max_vcpus, setvcpucontext, and wasm32's two, the
 * module and the label (public/domctl.ts; docs/arch-wasm32.md, "Building
 * a domain"). libxc's builder (tools/libxc/xc_dom.ts) makes a domain with
 * these and memory_op alone.
 *
 * Layouts: `xen/include/public/domctl.ts`.
 */
import * as DC from "../include/public/domctl.js";
import { XenErrno } from "../include/public/errno.js";
import { PAGE_SHIFT } from "../include/xen/mm.js";
import { VcpuState, type Vcpu } from "../arch/wasm32/vcpu.js";
import {
  FRAMES_PER_WASM_PAGE,
  WASM32_MAX_WASM_PAGES,
  saveAreaMain,
} from "../arch/wasm32/config.js";
import {
  VGCF_online,
  WASM32_ENTRY_START,
  WASM32_ENTRY_START_VCPU,
  WASM32_NO_CONTINUATION_HALF,
  WASM32_SUSPENDED_MAIN,
  WASM32_SUSPENDED_UPCALL,
  vcpu_guest_context,
} from "../include/public/arch-wasm32.js";
import {
  RUNSTATE_blocked,
  RUNSTATE_offline,
  RUNSTATE_runnable,
  RUNSTATE_running,
} from "../include/public/vcpu.js";
import { DomainCreateError, type Domain } from "./domain.js";
import { logDirtyOp } from "./paging.js";
import {
  ContextError,
  decodeContext,
  encodeContext,
  restoreDomainContext,
  saveDomainContext,
} from "./domain_context.js";
import type { Hypervisor } from "./hypervisor.js";
import { HvmContextError, decodeHvmContext, type HvmContext } from "./hvm_context.js";

/** Largest WASM32_HVM_CONTEXT taken: the globals and a stack of HVM_STACK_AREA. */
const MAX_HVM_CONTEXT_BYTES = 32 + 16 * 65536 + 4 * 1024 * 1024;
import type { GuestMemory } from "./guest_access.js";

/** Physical CPUs that run guests: the host's main thread. */
export const NR_CPUS = 1;

/** Writes vCPU `t`'s wasm32 vcpu_guest_context (public/arch-wasm32.ts) at `a`. */
function writeVcpuContext(d: Domain, t: Vcpu, mem: GuestMemory, a: number): void {
  const f = vcpu_guest_context.fields;
  mem.clear(a, vcpu_guest_context.size);
  const online = d.hvm !== undefined || t.state !== VcpuState.Offline;
  mem.setU64(a + f.flags.offset, online ? VGCF_online : 0);
  mem.setU32(a + f.entry.offset, t.id === 0 ? WASM32_ENTRY_START : WASM32_ENTRY_START_VCPU);
  mem.setU32(a + f.arg.offset, d.hvm ? 0 : t.id === 0 ? d.startInfoAddr() : t.id);
  const runstate = d.hvm
    ? d.runState === "running"
      ? RUNSTATE_running
      : RUNSTATE_blocked
    : t.state === VcpuState.Running
      ? RUNSTATE_running
      : t.state === VcpuState.Runnable
        ? RUNSTATE_runnable
        : t.state === VcpuState.Blocked
          ? RUNSTATE_blocked
          : RUNSTATE_offline;
  mem.setU32(a + f.runstate.offset, runstate);
  const none = (): void => {
    mem.setU32(a + f.cont_op.offset, WASM32_NO_CONTINUATION_HALF);
    mem.setU32(a + f.cont_op.offset + 4, WASM32_NO_CONTINUATION_HALF);
  };
  if (d.hvm) {
    none();
    return;
  }
  mem.setU32(
    a + f.suspended.offset,
    (t.mainSuspended ? WASM32_SUSPENDED_MAIN : 0) |
      (t.upcallSuspended ? WASM32_SUSPENDED_UPCALL : 0),
  );
  mem.setU64(a + f.save_area.offset, saveAreaMain(t.id));
  const c = t.continuationOf(0);
  if (!c) none();
  else mem.setU64(a + f.cont_op.offset, c.op);
  c?.args.forEach((x, i) => mem.setU64(a + f.cont_args.offset + 8 * i, x >>> 0));
}

/** Fills a xen_domctl_getdomaininfo at `a` for `d` (also sysctl getdomaininfolist's rows). */
export function getdomaininfo(hv: Hypervisor, d: Domain, mem: GuestMemory, a: number): void {
  const f = DC.xen_domctl_getdomaininfo.fields;
  mem.check(a, DC.xen_domctl_getdomaininfo.size);
  mem.clear(a, DC.xen_domctl_getdomaininfo.size);
  let flags = 0;
  if (d.isDying) flags |= DC.XEN_DOMINF_dying;
  if (d.isShutdown) {
    flags |= DC.XEN_DOMINF_shutdown;
    flags |= (d.shutdownReason & DC.XEN_DOMINF_shutdownmask) << DC.XEN_DOMINF_shutdownshift;
  }
  if (d.pauseCount > 0) flags |= DC.XEN_DOMINF_paused;
  let online = 0;
  let maxId = -1;
  let running = false;
  let blocked = true;
  let cpuNs = 0;
  for (const v of d.vcpus) {
    cpuNs += v.cpuTimeNs;
    if (v.state === VcpuState.Offline) continue;
    online++;
    maxId = v.id;
    if (v.state === VcpuState.Running) running = true;
    if (v.state !== VcpuState.Blocked) blocked = false;
  }
  if (d.hvm) {
    // An HVM vCPU is a thread: running, or blocked waiting for an ioreq's answer.
    // A shut-down domain's vCPU is neither (its thread has stopped).
    const running_ = d.runState === "running";
    online = 1;
    maxId = 0;
    running = running_;
    blocked = !running_ && !d.isShutdown && !d.isDying;
    cpuNs = d.hvm.vcpu?.cpuTimeNs ?? 0;
    flags |= DC.XEN_DOMINF_hvm_guest;
  }
  if (d === hv.dom0) {
    // Dom0's kernel is the host process, which is running now on its vCPU.
    online = 1;
    maxId = 0;
    running = true;
    blocked = false;
    cpuNs = process.cpuUsage().user * 1000;
  }
  if (running) flags |= DC.XEN_DOMINF_running;
  else if (online > 0 && blocked) flags |= DC.XEN_DOMINF_blocked;
  // The rest of Xen's 4.17 flags: xs_domain (bit 7) when running xenstore.
  mem.setU16(a + f.domain.offset, d.domid);
  mem.setU32(a + f.flags.offset, flags >>> 0);
  mem.setU64(a + f.tot_pages.offset, d.domid === 0 ? hv.dom0Pages : d.totPages);
  mem.setU64(a + f.max_pages.offset, d.domid === 0 ? hv.dom0Pages : d.maxPages);
  mem.setU64(a + f.shared_info_frame.offset, d.sharedInfoAddr >>> PAGE_SHIFT);
  mem.setU64(a + f.cpu_time.offset, Math.round(cpuNs));
  mem.setU32(a + f.nr_online_vcpus.offset, online);
  mem.setU32(a + f.max_vcpu_id.offset, maxId >>> 0);
  mem.write(a + f.handle.offset, d.handle);
  mem.setU8(a + f.gpaddr_bits.offset, 32);
}

/** Writes a one-word cpumap (bits of NR_CPUS pCPUs) into a xenctl_bitmap's buffer. */
function putCpumap(mem: GuestMemory, bm: number, bits: number): number {
  const f = DC.xenctl_bitmap.fields;
  const buf = mem.u64(bm + f.bitmap.offset);
  const nbits = mem.u32(bm + f.nr_bits.offset);
  const bytes = Math.ceil(nbits / 8);
  mem.check(buf, bytes);
  for (let i = 0; i < bytes; i++) mem.setU8(buf + i, i < 4 ? (bits >>> (i * 8)) & 0xff : 0);
  return 0;
}

/** Reads a xenctl_bitmap as the pCPUs it names (bits beyond 32 ignored, as no such pCPU exists). */
function getCpumap(mem: GuestMemory, bm: number): number {
  const f = DC.xenctl_bitmap.fields;
  const buf = mem.u64(bm + f.bitmap.offset);
  const nbits = mem.u32(bm + f.nr_bits.offset);
  const bytes = Math.min(4, Math.ceil(nbits / 8));
  mem.check(buf, bytes);
  let bits = 0;
  for (let i = 0; i < bytes; i++) bits |= mem.u8[buf + i]! << (i * 8);
  if (nbits < 32) bits &= (1 << nbits) - 1;
  return bits >>> 0;
}

/** XEN_DOMCTL_createdomain: the new domid goes back in the header's `domain`. */
function createdomain(hv: Hypervisor, mem: GuestMemory, arg: number): number {
  const f = DC.xen_domctl_createdomain.fields;
  const u = arg + DC.xen_domctl.fields.u.offset;
  const flags = mem.u32(u + f.flags.offset);
  if (flags & ~(DC.XEN_DOMCTL_CDF_hvm | DC.XEN_DOMCTL_CDF_hap | DC.XEN_DOMCTL_CDF_oos_off))
    return -XenErrno.EINVAL;
  const grantVersion = mem.u32(u + f.grant_opts.offset) & DC.XEN_DOMCTL_GRANT_version_mask;
  if (grantVersion > 1) return -XenErrno.EOPNOTSUPP;
  const signed = (o: number): number | undefined => {
    const x = mem.u32(u + o) | 0;
    return x < 0 ? undefined : x;
  };
  const want = mem.u16(arg + DC.xen_domctl.fields.domain.offset);
  try {
    const d = hv.createEmptyDomain({
      domid: want === 0 ? undefined : want,
      handle: mem.read(u + f.handle.offset, 16),
      maxVcpus: mem.u32(u + f.max_vcpus.offset),
      // 0 asks for the hypervisor's default (1023). Xen takes 0 as no ports
      // at all; tsxen never makes a domain without its xenstore and console.
      maxEvtchnPort: mem.u32(u + f.max_evtchn_port.offset) || undefined,
      maxGrantFrames: signed(f.max_grant_frames.offset),
      maxMaptrackFrames: signed(f.max_maptrack_frames.offset),
      hvm: (flags & DC.XEN_DOMCTL_CDF_hvm) !== 0,
    });
    mem.setU16(arg + DC.xen_domctl.fields.domain.offset, d.domid);
    return 0;
  } catch (e) {
    if (e instanceof DomainCreateError) {
      hv.console.printk(e.message);
      return -e.errno;
    }
    throw e;
  }
}

/** XEN_DOMCTL_wasm32_module: upload a module's bytes, or bind one to `d` (code_store.ts). */
function wasm32Module(hv: Hypervisor, d: Domain, mem: GuestMemory, u: number): number {
  const f = DC.xen_domctl_wasm32_module.fields;
  const hash = Buffer.from(mem.read(u + f.sha256.offset, 32)).toString("hex");
  const buf = mem.u64(u + f.buffer.offset);
  const len = mem.u32(u + f.len.offset);
  switch (mem.u32(u + f.op.offset)) {
    case DC.XEN_DOMCTL_WASM32_MODULE_upload: {
      const flags = mem.u32(u + f.flags.offset);
      if (flags & ~(DC.XEN_DOMCTL_WASM32_MODULE_hvm | DC.XEN_DOMCTL_WASM32_MODULE_saveable))
        return -XenErrno.EINVAL;
      return hv.codeStore.upload(
        hash,
        mem.u64(u + f.size.offset),
        mem.u64(u + f.offset.offset),
        mem.read(buf, len),
        flags & DC.XEN_DOMCTL_WASM32_MODULE_hvm
          ? { saveable: (flags & DC.XEN_DOMCTL_WASM32_MODULE_saveable) !== 0 }
          : undefined,
      );
    }
    case DC.XEN_DOMCTL_WASM32_MODULE_bind: {
      if (d.hvmBuild) return bindHvmProgram(hv, d, mem, u, hash);
      if (d.hvm || d === hv.dom0) return -XenErrno.EINVAL;
      if (d.vcpus.some((v) => v.state !== VcpuState.Offline)) return -XenErrno.EBUSY;
      const found = hv.codeStore.lookup(hash);
      if (found.kind !== "ready") return notReady(found, mem, buf, len);
      const k = found.kernel;
      // Instances made ahead of time (instantiate) were of the module bound before.
      if (d.kernel !== k) for (const v of d.vcpus) v.dropInstance();
      d.kernel = k;
      mem.setU32(
        u + f.flags.offset,
        (k.hasCallback ? DC.XEN_DOMCTL_WASM32_MODULE_has_callback : 0) |
          (k.hasSecondaryEntry ? DC.XEN_DOMCTL_WASM32_MODULE_has_start_vcpu : 0),
      );
      mem.setU32(u + f.min_pages.offset, k.minPages);
      return 0;
    }
    case DC.XEN_DOMCTL_WASM32_MODULE_instantiate: {
      if (d.hvm || d.hvmBuild || d === hv.dom0 || !d.kernel) return -XenErrno.EINVAL;
      if (d.pauseCount === 0 || d.vcpus.some((v) => v.state !== VcpuState.Offline))
        return -XenErrno.EBUSY;
      // An instance holds the memory: from here on it grows in place.
      d.memoryReplaceable = false;
      try {
        // And each finds its globals, which the context will set.
        for (const v of d.vcpus) {
          v.instantiate(hv);
          v.globals();
        }
      } catch (e) {
        for (const v of d.vcpus) v.dropInstance();
        hv.console.printk(
          `d${d.domid}: the module cannot be instantiated: ${(e as Error).message}`,
        );
        return -XenErrno.EINVAL;
      }
      return 0;
    }
    default:
      return -XenErrno.EINVAL;
  }
}

/**
 * A bind's answer for a module the store does not have ready: -ENOENT
 * (upload it), -EAGAIN (its check runs), or -EINVAL with the refusal
 * written to the caller's buffer.
 */
function notReady(
  found: { kind: "absent" } | { kind: "checking" } | { kind: "refused"; why: string },
  mem: GuestMemory,
  buf: number,
  len: number,
): number {
  switch (found.kind) {
    case "absent":
      return -XenErrno.ENOENT;
    case "checking":
      return -XenErrno.EAGAIN;
    case "refused":
      if (len > 0) mem.writeCString(buf, len, found.why);
      return -XenErrno.EINVAL;
  }
}

/**
 * XEN_DOMCTL_wasm32_module's bind for an HVM domain being built: the WASI
 * program `hash` (made saveable when the flags ask), prepared by the
 * hypervisor's HVM program compiler. OUT: min_pages, and whether it has PV
 * drivers (it imports xen.hypercall).
 */
function bindHvmProgram(
  hv: Hypervisor,
  d: Domain,
  mem: GuestMemory,
  u: number,
  hash: string,
): number {
  const f = DC.xen_domctl_wasm32_module.fields;
  const flags = mem.u32(u + f.flags.offset);
  if (!(flags & DC.XEN_DOMCTL_WASM32_MODULE_hvm)) return -XenErrno.EINVAL;
  const found = hv.codeStore.lookupHvm(hash, (flags & DC.XEN_DOMCTL_WASM32_MODULE_saveable) !== 0);
  if (found.kind !== "ready")
    return notReady(found, mem, mem.u64(u + f.buffer.offset), mem.u32(u + f.len.offset));
  d.hvmBuild!.image = found.image;
  mem.setU32(
    u + f.flags.offset,
    found.image.hypercalls ? DC.XEN_DOMCTL_WASM32_MODULE_pv_drivers : 0,
  );
  mem.setU32(u + f.min_pages.offset, found.image.minPages);
  return 0;
}

/**
 * XEN_DOMCTL_shadow_op: log-dirty mode (paging.ts). CLEAN and PEEK take a
 * bitmap of `pages` bits (none: counts only) and answer the domain's pfn
 * count in `pages` and the dirty pages in the stats, as Xen's do.
 */
function shadowOp(d: Domain, mem: GuestMemory, u: number): number {
  const f = DC.xen_domctl_shadow_op.fields;
  const op = mem.u32(u + f.op.offset);
  switch (op) {
    case DC.XEN_DOMCTL_SHADOW_OP_OFF:
      return logDirtyOp(d, "off");
    case DC.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY:
      return logDirtyOp(d, "enable");
    case DC.XEN_DOMCTL_SHADOW_OP_ENABLE:
      // Only log-dirty: the other modes are x86's shadow page tables.
      if (mem.u32(u + f.mode.offset) !== DC.XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY)
        return -XenErrno.EINVAL;
      return logDirtyOp(d, "enable");
    case DC.XEN_DOMCTL_SHADOW_OP_CLEAN:
    case DC.XEN_DOMCTL_SHADOW_OP_PEEK: {
      if (!d.logDirty) return -XenErrno.EINVAL;
      const bits = mem.u64(u + f.pages.offset);
      const at = mem.u64(u + f.dirty_bitmap.offset);
      let out: Uint8Array | undefined;
      if (at !== 0 && bits > 0) {
        const bytes = Math.ceil(bits / 8);
        mem.check(at, bytes);
        out = mem.u8.subarray(at, at + bytes);
        out.fill(0);
      }
      const dirty = d.logDirty.scan(
        out,
        at === 0 ? d.topPfn : bits,
        op === DC.XEN_DOMCTL_SHADOW_OP_CLEAN,
      );
      mem.setU64(u + f.pages.offset, d.topPfn);
      mem.setU32(u + f.dirty_count.offset, dirty);
      mem.setU32(u + f.fault_count.offset, dirty);
      return 0;
    }
    default:
      return -XenErrno.EINVAL;
  }
}

/** domctl(u_domctl) */
export function do_domctl(hv: Hypervisor, v: Vcpu, arg: number): number {
  const caller = v.domain;
  if (!caller.privileged) return -XenErrno.EPERM;
  const mem = caller.mem;
  arg >>>= 0;
  const h = DC.xen_domctl.fields;
  mem.check(arg, DC.xen_domctl.size);
  if (mem.u32(arg + h.interface_version.offset) !== DC.XEN_DOMCTL_INTERFACE_VERSION) {
    return -XenErrno.EACCES;
  }
  const cmd = mem.u32(arg + h.cmd.offset);
  const domid = mem.u16(arg + h.domain.offset);
  const u = arg + h.u.offset;
  if (cmd === DC.XEN_DOMCTL_createdomain) return createdomain(hv, mem, arg);
  const d = hv.domainById(domid);
  if (!d) return -XenErrno.ESRCH;
  switch (cmd) {
    case DC.XEN_DOMCTL_max_vcpus: {
      // Since Xen 4.12 createdomain sizes the vCPU array; this only confirms it.
      const max = mem.u32(u + DC.xen_domctl_max_vcpus.fields.max.offset);
      return d !== caller && max >= 1 && max <= d.vcpus.length ? 0 : -XenErrno.EINVAL;
    }
    case DC.XEN_DOMCTL_setvcpucontext: {
      const f = DC.xen_domctl_vcpucontext.fields;
      const t = d.vcpus[mem.u32(u + f.vcpu.offset)];
      if (!t || d === caller) return -XenErrno.EINVAL;
      const c = mem.u64(u + f.ctxt.offset);
      if (c === 0) return -XenErrno.EINVAL;
      mem.check(c, vcpu_guest_context.size);
      const g = vcpu_guest_context.fields;
      if (d.hvmBuild) {
        // An HVM vCPU starts at the program's _start; the context says only that it is up.
        const online = (mem.u32(c + g.flags.offset) & VGCF_online) !== 0;
        if (!online || mem.u32(c + g.entry.offset) !== WASM32_ENTRY_START) return -XenErrno.EINVAL;
        return hv.startHvm(d);
      }
      return hv.setVcpuContext(t, {
        online: (mem.u32(c + g.flags.offset) & VGCF_online) !== 0,
        entry: mem.u32(c + g.entry.offset),
        arg: mem.u32(c + g.arg.offset),
        suspended: mem.u32(c + g.suspended.offset),
      });
    }
    case DC.XEN_DOMCTL_wasm32_module:
      return wasm32Module(hv, d, mem, u);
    case DC.XEN_DOMCTL_settimeoffset: {
      // Xen takes it for any domain at any time; on wasm32 only an HVM
      // program reads a wallclock offset, and its vCPU thread takes it when
      // it starts: so only while the builder makes one (-EINVAL otherwise).
      if (!d.hvmBuild) return -XenErrno.EINVAL;
      // int64: the high word signed.
      const at = u + DC.xen_domctl_settimeoffset.fields.time_offset_seconds.offset;
      const off = (mem.u32(at + 4) | 0) * 2 ** 32 + mem.u32(at);
      // xl.cfg's rtc_timeoffset is a 32-bit count of seconds.
      if (!Number.isSafeInteger(off) || Math.abs(off) > 2 ** 31) return -XenErrno.EINVAL;
      d.hvmBuild.rtcTimeOffsetSeconds = off;
      return 0;
    }
    case DC.XEN_DOMCTL_sethvmcontext: {
      if (!d.hvmBuild || d === caller) return -XenErrno.EINVAL;
      const f = DC.xen_domctl_hvmcontext.fields;
      const size = mem.u32(u + f.size.offset);
      const buf = mem.u64(u + f.buffer.offset);
      if (size > MAX_HVM_CONTEXT_BYTES) return -XenErrno.E2BIG;
      let ctx: HvmContext;
      try {
        ctx = decodeHvmContext(Buffer.from(mem.read(buf, size)), 0);
      } catch (e) {
        if (!(e instanceof HvmContextError)) throw e;
        hv.console.printk(`d${d.domid}: sethvmcontext refused: ${e.message}`);
        return -XenErrno.EINVAL;
      }
      return hv.startHvm(d, { wasmPages: ctx.wasmPages, stimeNs: ctx.stimeNs, vcpu: ctx.vcpu });
    }
    case DC.XEN_DOMCTL_wasm32_getcontext:
    case DC.XEN_DOMCTL_wasm32_setcontext: {
      if (d === caller) return -XenErrno.EINVAL;
      const f = DC.xen_domctl_wasm32_context.fields;
      const buf = mem.u64(u + f.buffer.offset);
      const size = mem.u32(u + f.size.offset);
      try {
        if (cmd === DC.XEN_DOMCTL_wasm32_setcontext) {
          restoreDomainContext(hv, d, decodeContext(mem.read(buf, size)));
          return 0;
        }
        const bytes = encodeContext(saveDomainContext(hv, d));
        mem.setU32(u + f.size.offset, bytes.length);
        if (buf === 0) return 0;
        if (size < bytes.length) return -XenErrno.ENOBUFS;
        mem.write(buf, bytes);
        return 0;
      } catch (e) {
        if (!(e instanceof ContextError)) throw e;
        hv.console.printk(e.message);
        return -e.errno;
      }
    }
    case DC.XEN_DOMCTL_shadow_op:
      return d === caller ? -XenErrno.EINVAL : shadowOp(d, mem, u);
    case DC.XEN_DOMCTL_resumedomain:
      return d === caller || d.isDying ? -XenErrno.EINVAL : hv.resumeDomain(d);
    case DC.XEN_DOMCTL_wasm32_set_label: {
      const f = DC.xen_domctl_wasm32_set_label.fields;
      const len = mem.u32(u + f.len.offset);
      if (len === 0 || len > 64 || d === hv.dom0) return -XenErrno.EINVAL;
      const label = Buffer.from(mem.read(mem.u64(u + f.label.offset), len)).toString("utf8");
      // A label is printed on the console: no '/' and no control characters.
      if ([...label].some((c) => c === "/" || c.charCodeAt(0) < 0x20)) return -XenErrno.EINVAL;
      d.name = label;
      return 0;
    }
    case DC.XEN_DOMCTL_destroydomain:
      return hv.destroyDomain(domid);
    case DC.XEN_DOMCTL_pausedomain:
      if (d === caller) return -XenErrno.EINVAL;
      if (d.isDying) return -XenErrno.EINVAL;
      hv.pauseDomain(d);
      return 0;
    case DC.XEN_DOMCTL_unpausedomain:
      if (d === caller || d.isDying) return -XenErrno.EINVAL;
      return hv.unpauseDomain(d);
    case DC.XEN_DOMCTL_getdomaininfo:
      getdomaininfo(hv, d, mem, u);
      return 0;
    case DC.XEN_DOMCTL_max_mem: {
      const pages = Math.floor(mem.u64(u + DC.xen_domctl_max_mem.fields.max_memkb.offset) / 4);
      if (d === hv.dom0) return -XenErrno.EINVAL;
      // A PV domain may grow to wasm32's 4 GiB: its physmap follows maxmem.
      // An HVM domain's memory is populated whole at creation and never
      // grows (no populate-on-demand): its maxmem cannot rise.
      if (pages > d.nrPfns) {
        if (d.hvm || pages >= WASM32_MAX_WASM_PAGES * FRAMES_PER_WASM_PAGE) return -XenErrno.ENOMEM;
        d.extendPhysmap(pages);
      }
      d.maxPages = pages;
      return 0;
    }
    case DC.XEN_DOMCTL_getvcpuinfo: {
      const f = DC.xen_domctl_getvcpuinfo.fields;
      const t = d.vcpus[mem.u32(u + f.vcpu.offset)];
      if (!t) return -XenErrno.EINVAL;
      const dom0 = d === hv.dom0;
      if (d.hvm) {
        // The vCPU thread's state (hvm_vcpu.ts), as a PV vCPU's would read.
        const running = d.runState === "running";
        mem.setU8(u + f.online.offset, 1);
        mem.setU8(u + f.blocked.offset, running ? 0 : 1);
        mem.setU8(u + f.running.offset, running ? 1 : 0);
        mem.setU64(u + f.cpu_time.offset, Math.round(d.hvm.vcpu?.cpuTimeNs ?? 0));
        mem.setU32(u + f.cpu.offset, 0);
        return 0;
      }
      mem.setU8(u + f.online.offset, dom0 || t.state !== VcpuState.Offline ? 1 : 0);
      mem.setU8(u + f.blocked.offset, !dom0 && t.state === VcpuState.Blocked ? 1 : 0);
      mem.setU8(u + f.running.offset, dom0 || t.state === VcpuState.Running ? 1 : 0);
      const ns = dom0 ? process.cpuUsage().user * 1000 : t.cpuTimeNs;
      mem.setU64(u + f.cpu_time.offset, Math.round(ns));
      mem.setU32(u + f.cpu.offset, 0);
      return 0;
    }
    case DC.XEN_DOMCTL_getvcpucontext: {
      const f = DC.xen_domctl_vcpucontext.fields;
      const t = d.vcpus[mem.u32(u + f.vcpu.offset)];
      if (!t) return -XenErrno.EINVAL;
      if (d === v.domain) return -XenErrno.EINVAL;
      const to = mem.u64(u + f.ctxt.offset);
      mem.check(to, vcpu_guest_context.size);
      writeVcpuContext(d, t, mem, to);
      return 0;
    }
    case DC.XEN_DOMCTL_setvcpuaffinity:
    case DC.XEN_DOMCTL_getvcpuaffinity: {
      const f = DC.xen_domctl_vcpuaffinity.fields;
      const t = d.vcpus[mem.u32(u + f.vcpu.offset)];
      if (!t) return -XenErrno.EINVAL;
      const flags = mem.u32(u + f.flags.offset);
      if ((flags & (DC.XEN_VCPUAFFINITY_HARD | DC.XEN_VCPUAFFINITY_SOFT)) === 0) {
        return -XenErrno.EINVAL;
      }
      const all = (1 << NR_CPUS) - 1;
      if (cmd === DC.XEN_DOMCTL_setvcpuaffinity) {
        if (flags & DC.XEN_VCPUAFFINITY_HARD) {
          const hard = getCpumap(mem, u + f.cpumap_hard.offset);
          // Xen refuses a hard affinity with no online pCPU in it.
          if ((hard & all) === 0) return -XenErrno.EINVAL;
          t.hardAffinity = hard;
        }
        if (flags & DC.XEN_VCPUAFFINITY_SOFT)
          t.softAffinity = getCpumap(mem, u + f.cpumap_soft.offset);
        // On return: the effective affinities, as Xen gives them.
        if (flags & DC.XEN_VCPUAFFINITY_HARD) {
          putCpumap(mem, u + f.cpumap_hard.offset, t.hardAffinity & all);
        }
        if (flags & DC.XEN_VCPUAFFINITY_SOFT) {
          putCpumap(mem, u + f.cpumap_soft.offset, t.softAffinity & t.hardAffinity & all);
        }
        return 0;
      }
      if (flags & DC.XEN_VCPUAFFINITY_HARD)
        putCpumap(mem, u + f.cpumap_hard.offset, t.hardAffinity);
      if (flags & DC.XEN_VCPUAFFINITY_SOFT)
        putCpumap(mem, u + f.cpumap_soft.offset, t.softAffinity);
      return 0;
    }
    case DC.XEN_DOMCTL_scheduler_op: {
      const f = DC.xen_domctl_scheduler_op.fields;
      const c = DC.xen_domctl_sched_credit.fields;
      if (mem.u32(u + f.sched_id.offset) !== DC.XEN_SCHEDULER_CREDIT) return -XenErrno.EINVAL;
      const p = u + f.u.offset;
      switch (mem.u32(u + f.cmd.offset)) {
        case DC.XEN_DOMCTL_SCHEDOP_getinfo:
          mem.setU16(p + c.weight.offset, d.weight);
          mem.setU16(p + c.cap.offset, d.cap);
          return 0;
        case DC.XEN_DOMCTL_SCHEDOP_putinfo: {
          // Credit's rules: weight 1..65535 (0 leaves it), cap ≤ 100 × vCPUs.
          const weight = mem.u16(p + c.weight.offset);
          const cap = mem.u16(p + c.cap.offset);
          if (cap > 100 * d.vcpus.length) return -XenErrno.EINVAL;
          if (weight !== 0) d.weight = weight;
          d.cap = cap;
          return 0;
        }
        default:
          return -XenErrno.EINVAL;
      }
    }
    case DC.XEN_DOMCTL_setdomainhandle:
      d.handle.set(mem.read(u + DC.xen_domctl_setdomainhandle.fields.handle.offset, 16));
      return 0;
    default:
      return -XenErrno.ENOSYS;
  }
}
