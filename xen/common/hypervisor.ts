/**
 * The hypervisor: machine memory, domains, vCPUs, the scheduler, timers, the
 * console and the hypercall entry point. One instance is one machine.
 */
import { randomBytes } from "node:crypto";
import { XenErrno } from "../include/public/errno.js";
import {
  DOMID_FIRST_RESERVED,
  DOMID_XEN,
  NR_HYPERCALLS,
  SIF_INITDOMAIN,
  SIF_PRIVILEGED,
  VIRQ_CON_RING,
  VIRQ_CONSOLE,
  VIRQ_DOM_EXC,
  VIRQ_TIMER,
  hypercallName,
} from "../include/public/xen.js";
import { SHUTDOWN_NAMES, SHUTDOWN_crash, SHUTDOWN_suspend } from "../include/public/sched.js";
import {
  WASM32_ENTRY_START,
  WASM32_ENTRY_START_VCPU,
  arch_wasm32_boot,
  shared_info,
  start_info,
  vcpu_info,
  vcpu_time_info,
} from "../include/public/arch-wasm32.js";
import { PAGE_SIZE, _pfn, pfn_to_paddr } from "../include/xen/mm.js";
import {
  FRAMES_PER_WASM_PAGE,
  GUEST_IMAGE_BASE,
  MAX_VIRT_CPUS,
  MIN_DOMAIN_FRAMES,
  PFN_BOOT_INFO,
  PFN_CONSOLE,
  PFN_SHARED_INFO,
  PFN_START_INFO,
  PFN_XENSTORE,
  SAVE_MAIN_BYTES,
  SAVE_UPCALL_BYTES,
} from "../arch/wasm32/config.js";
import type { Kernel } from "../arch/wasm32/kernel.js";
import type { HvmImage } from "../arch/wasm32/hvm_image.js";
import type { HvmVcpuSaved } from "../arch/wasm32/hvm_vcpu_worker.js";
import { HvmVcpu } from "../arch/wasm32/hvm_vcpu.js";
import { HvmDomain, XenPages, type IoreqServer } from "./ioreq.js";
import { WASM32_MAX_WASM_PAGES } from "../arch/wasm32/config.js";
import { SHUTDOWN_poweroff } from "../include/public/sched.js";
import { GuestExit, Suspend, Vcpu, VcpuState, type VcpuHost } from "../arch/wasm32/vcpu.js";
import { SliceTimer } from "../arch/wasm32/slice_timer.js";
import { Domain, DomainCreateError, type DomainLimits } from "./domain.js";
import { DEFAULT_MAX_GRANT_FRAMES, DEFAULT_MAX_MAPTRACK_FRAMES } from "./grant_table.js";
import { unmapGrantRef } from "./grant_table_op.js";
import { handleKey } from "./keyhandler.js";
import { FrameAllocator } from "./page_alloc.js";
import { HypervisorConsole } from "./console.js";
import { CodeStore } from "../arch/wasm32/code_store.js";
import { TraceBuffers } from "./trace.js";
import type { VcpuContext } from "./domain_context.js";
import {
  TRC_DOM0_DOM_ADD,
  TRC_DOM0_DOM_REM,
  TRC_PV_EVTCHN_UPCALL,
  TRC_PV_HYPERCALL_V2,
  TRC_PV_HYPERCALL_V2_ARG_32,
} from "../include/public/trace.js";
import { GuestFault } from "./guest_access.js";
import { invokeHypercall } from "./hypercall.js";
import { chargeInitialTop, freeAllFrames, guestGrow, populatePfn } from "./memory.js";
import { XEN_EXTRAVERSION, XEN_SUBVERSION, XEN_VERSION } from "./version.js";
import { DEFAULT_SCHED_PARAMS, Scheduler, type SchedulerParams } from "./schedule.js";
import { TimerQueue, type Timer } from "./timer.js";
import { BOOT_WALLCLOCK_NS, NOW } from "./time.js";
import type { EventKick } from "./event_channel.js";
import {
  ACT_DOMID,
  ACT_HYPERCALL,
  ACT_VCPU,
  activity,
  describeHold,
  watchdog,
  type Stall,
} from "./watchdog.js";

/** Boot parameters of a machine. */
export interface HypervisorConfig {
  /** Machine memory, bytes. */
  memoryBytes: number;
  /** Memory accounted to Dom0, bytes (Xen's dom0_mem). */
  dom0MemoryBytes: number;
  sched: SchedulerParams;
  /** Xen's command line, as XENVER_commandline reports it. */
  commandLine: string;
}

export const DEFAULT_HYPERVISOR_CONFIG: HypervisorConfig = {
  memoryBytes: 8 * 1024 ** 3,
  dom0MemoryBytes: 512 * 1024 ** 2,
  sched: DEFAULT_SCHED_PARAMS,
  commandLine: "",
};

/** What creating a domain needs: a typed config, as libxl's domain_build_info. */
export interface DomainConfig {
  name: string;
  kernel: Kernel;
  /** Initial memory, MiB. */
  memory: number;
  /** Maximum memory, MiB (defaults to `memory`). */
  maxmem?: number;
  /** vCPUs online at boot (default 1). */
  vcpus?: number;
  /** vCPUs the domain may ever have (default `vcpus`). */
  maxvcpus?: number;
  /** The guest's command line (xl.cfg `extra`). */
  cmdline?: string;
  /** Ask for this domid; by default the next free one. */
  domid?: number;
  /** Create paused (xl create -p). */
  paused?: boolean;
  weight?: number;
  cap?: number;
  /** Highest event channel port (xl.cfg max_event_channels, as Xen's libxl passes it; default 1023). */
  maxEvtchnPort?: number;
  /** Grant table frames (xl.cfg max_grant_frames; default 64). */
  maxGrantFrames?: number;
  /** Maptrack frames (xl.cfg max_maptrack_frames; default 1024). */
  maxMaptrackFrames?: number;
}

/**
 * What creating an HVM domain needs (libxl's domain_build_info for type
 * "hvm"): a PV domain's settings but the kernel, maxmem and vCPU counts (one
 * vCPU; `memory` is all populated from the start, as Xen populates an HVM
 * guest), and the program.
 */
export type HvmDomainConfig = Omit<DomainConfig, "kernel" | "maxmem" | "vcpus" | "maxvcpus"> & {
  image: HvmImage;
  /** Seconds added to the host's clock for the guest's wallclock (xl.cfg rtc_timeoffset). */
  rtcTimeoffset?: number;
  /** A saved domain to make again (xl restore): docs/save-format.md, WASM32_HVM_CONTEXT. */
  restore?: HvmRestore;
};

/** What a restored HVM domain starts from, beside its memory (which the toolstack writes). */
export interface HvmRestore {
  /** The program's linear memory, in 64 KiB pages, when it was saved. */
  wasmPages: number;
  /** The domain's system time when it was saved (ns): its clock goes on from there. */
  stimeNs: number;
  vcpu: HvmVcpuSaved;
}

/** How long a device model has to power off a domain whose program called proc_exit. */
export const HVM_EXIT_GRACE_MS = 1000;

/**
 * How long one hypercall of an HVM program may hold the main thread before
 * it continues after the event loop has turned, µs: a tenth of a PV slice,
 * since it runs between the other domains' slices rather than in its own.
 */
export const HVM_HYPERCALL_BUDGET_US = 1000;

/** libxl's default for max_event_channels, the highest port (1,023 ports plus port 0). */
export const DEFAULT_MAX_EVTCHN_PORT = 1023;

/**
 * Dom0's memory window: the part of dom0_mem that Dom0's kernel addresses as
 * pages (hypercall buffers, shared_info, its grant table and the pages it
 * grants to guests). The rest of dom0_mem is accounted but never touched.
 */
export const DOM0_WINDOW_FRAMES = 4096;

/** Dom0's kernel, the host process, as the hypervisor sees it. */
export interface Dom0Kernel {
  /** Called (between guest slices, or from the event loop) after an event became pending for Dom0. */
  upcall(): void;
}

export { DomainCreateError } from "./domain.js";

/** TRC_PV_HYPERCALL_V2's flags for five 32-bit arguments. */
const HYPERCALL_V2_ALL_ARGS = [0, 1, 2, 3, 4].reduce(
  (f, i) => f | TRC_PV_HYPERCALL_V2_ARG_32(i),
  0,
);

/** Hypervisor events that Dom0 services and the toolstack subscribe to. */
export interface HypervisorEvents {
  /** A domain was created (it may still be paused, or empty for the builder to fill). */
  created?(d: Domain): void;
  /** A domain shut down (its reason is in domain.shutdownReason) or crashed. */
  shutdown?(d: Domain): void;
  /**
   * A domain is being destroyed: its vCPUs and ports are gone. Dom0 services
   * drop their mappings of its pages now (as Xen's xenstored does on
   * VIRQ_DOM_EXC), so that its memory can be freed.
   */
  dying?(d: Domain): void;
  /** A domain was destroyed and its resources released. */
  destroyed?(domid: number): void;
}

export class Hypervisor implements VcpuHost {
  readonly frames: FrameAllocator;
  readonly domains = new Map<number, Domain>();
  readonly console = new HypervisorConsole();
  /** Guest modules checked and compiled for the domain builder (XEN_DOMCTL_wasm32_module). */
  readonly codeStore = new CodeStore();
  readonly timers = new TimerQueue((e) => this.console.printk(`BUG: a timer failed: ${String(e)}`));
  readonly sched: Scheduler;
  readonly bootDate = new Date().toUTCString();
  readonly listeners = new Set<HypervisorEvents>();
  /** Pages of Xen's own that Dom0 may map by frame (ioreq server pages). */
  readonly xenPages = new XenPages();
  /** Trace buffers (XEN_SYSCTL_tbuf_op; xentrace): off until enabled. */
  readonly trace: TraceBuffers;
  private readonly slice = new SliceTimer();
  private lastDomid = 0;
  private readonly pendingDestroy = new Set<Domain>();
  /** Pages accounted to Domain 0 (dom0_mem). */
  readonly dom0Pages: number;
  /**
   * Domain 0: privileged, with one vCPU that never runs wasm (its kernel is
   * the host process, which enters hypercalls on that vCPU's behalf) and a
   * memory window of DOM0_WINDOW_FRAMES pages.
   */
  readonly dom0: Domain;
  /** Receives Dom0's event upcalls (the Dom0 kernel's evtchn driver). */
  dom0Kernel: Dom0Kernel | undefined;
  private dom0UpcallPending = false;

  constructor(readonly config: HypervisorConfig = DEFAULT_HYPERVISOR_CONFIG) {
    this.frames = new FrameAllocator(Math.floor(config.memoryBytes / PAGE_SIZE));
    this.trace = new TraceBuffers(
      this.frames,
      this.xenPages,
      NOW,
      () => {
        const v = this.sched.current;
        return v ? { domid: v.domain.domid, vcpu: v.id } : undefined;
      },
      // A hypercall costs about 10 ns: even a test of `trace.on` showed on
      // it, so the recording entry is swapped in only while tracing is on.
      (on) => {
        this.hypercall = on ? this.tracedHypercall : Hypervisor.prototype.hypercall;
        if (on) for (const d of this.domains.values()) this.lendTraceCpu(d);
      },
    );
    this.sched = new Scheduler(this, { ...config.sched }, this.slice.ready, (e) =>
      this.console.printk(`BUG: the scheduler failed: ${String(e)}`),
    );
    this.sched.trace = this.trace;
    this.dom0Pages = Math.floor(config.dom0MemoryBytes / PAGE_SIZE);
    if (this.dom0Pages > this.frames.totalFrames || this.dom0Pages < MIN_DOMAIN_FRAMES)
      throw new Error(
        `dom0_mem must be between ${(MIN_DOMAIN_FRAMES * PAGE_SIZE) >> 10} KiB and machine memory`,
      );
    this.dom0 = this.buildDom0();
    this.console.onOutput = () => this.dom0.evtchn.sendGlobalVirq(VIRQ_CON_RING);
    this.console.onInput = () => this.dom0.evtchn.sendGlobalVirq(VIRQ_CONSOLE);
    this.console.printk(
      `Xen version ${XEN_VERSION}.${XEN_SUBVERSION}${XEN_EXTRAVERSION} (tsxen, wasm32): ${this.frames.totalFrames} frames of machine memory, dom0_mem=${config.dom0MemoryBytes >> 20}M`,
    );
    watchdog.subscribe(this.onStall);
  }

  /** The watchdog's report of a stall of the main thread, on this machine's console. */
  private readonly onStall = (s: Stall): void => {
    const by = describeHold(s.domid, s.vcpu, s.hypercall, this.domainById(s.domid)?.name);
    this.console.printk(`watchdog: the main thread was held for ${s.ms} ms ${by}`);
  };

  private buildDom0(): Domain {
    const window = Math.min(this.dom0Pages, DOM0_WINDOW_FRAMES);
    const wasmPages = Math.ceil(window / FRAMES_PER_WASM_PAGE);
    const memory = new WebAssembly.Memory({ initial: wasmPages, maximum: wasmPages, shared: true });
    const limits: DomainLimits = {
      maxEvtchnPort: 2 ** 31 - 1,
      maxGrantFrames: DEFAULT_MAX_GRANT_FRAMES,
      maxMaptrackFrames: DEFAULT_MAX_MAPTRACK_FRAMES,
    };
    const d = new Domain(
      0,
      "Domain-0",
      true,
      undefined,
      memory,
      wasmPages * FRAMES_PER_WASM_PAGE,
      this.dom0Pages,
      "",
      new Uint8Array(16),
      limits,
      this.kick,
    );
    chargeInitialTop(this, d);
    for (let p = 0; p < window; p++) populatePfn(this, d, _pfn(p));
    while (d.totPages < this.dom0Pages) {
      d.unmapped.push(this.frames.alloc(0)!);
      d.totPages++;
    }
    const none = (): void => {};
    d.vcpus.push(new Vcpu(d, 0, { singleshot: none, periodic: none, pollTimeout: none }));
    this.writeStartInfo(d, window);
    this.writeSharedInfo(d);
    return d;
  }

  /** A domain by id, Dom0 included (Xen's rcu_lock_domain_by_id). */
  domainById(domid: number): Domain | undefined {
    return domid === 0 ? this.dom0 : this.domains.get(domid);
  }

  /** Called by event channels when an event is newly pending for `v`. */
  readonly kick: EventKick = (v, port, pollOnly) => {
    v.attention = true;
    if (v.domain.domid === 0) {
      if (!pollOnly) this.scheduleDom0Upcall();
      return;
    }
    if (v.domain.hvm) {
      if (!pollOnly) this.hvmUnpark(v.domain, "block");
      if (v.pollPorts?.includes(port)) this.hvmUnpark(v.domain, "poll");
      return;
    }
    if (v.state !== VcpuState.Blocked) return;
    if (pollOnly && !v.pollPorts?.includes(port)) return;
    this.wake(v);
  };

  /**
   * Dom0's upcall runs between guest slices (SliceRunner.betweenSlices) or
   * from the event loop, whichever comes first; never inside a guest's
   * hypercall.
   */
  private scheduleDom0Upcall(): void {
    if (this.dom0UpcallPending || !this.dom0Kernel) return;
    this.dom0UpcallPending = true;
    setImmediate(() => this.betweenSlices());
  }

  /** Runs Dom0's pending upcall; whether there was one. */
  betweenSlices(): boolean {
    if (!this.dom0UpcallPending) return false;
    this.dom0UpcallPending = false;
    try {
      this.dom0Kernel?.upcall();
    } catch (e) {
      this.console.printk(`BUG: Dom0's event upcall failed: ${String(e)}`);
    }
    return true;
  }

  private wake(v: Vcpu): void {
    this.timers.stop(v.pollTimer);
    v.pollPorts = undefined;
    this.sched.wake(v);
  }

  // --- domains -------------------------------------------------------------

  private allocDomid(want: number | undefined): number {
    if (want !== undefined) {
      if (!Number.isInteger(want) || want <= 0 || want >= DOMID_FIRST_RESERVED) {
        throw new DomainCreateError(
          XenErrno.EINVAL,
          `domid ${want} is reserved or out of range (1..${DOMID_FIRST_RESERVED - 1})`,
        );
      }
      if (this.domains.has(want))
        throw new DomainCreateError(XenErrno.EEXIST, `domid ${want} is in use`);
      return want;
    }
    // Xen hands out ids in increasing order, wrapping below the reserved range.
    for (let i = 0; i < DOMID_FIRST_RESERVED; i++) {
      const id = ((this.lastDomid + i) % (DOMID_FIRST_RESERVED - 1)) + 1;
      if (!this.domains.has(id)) {
        this.lastDomid = id;
        return id;
      }
    }
    throw new DomainCreateError(XenErrno.ENOSPC, "no free domid");
  }

  /** What a guest vCPU's timers do when they fire (Vcpu's singleshot, periodic and poll timers). */
  private readonly vcpuTimers = {
    singleshot: (v: Vcpu): void => v.domain.evtchn.sendVirq(v.id, VIRQ_TIMER),
    periodic: (v: Vcpu): void => {
      v.domain.evtchn.sendVirq(v.id, VIRQ_TIMER);
      // After a stall, resynchronise rather than fire a burst of late ticks.
      if (v.periodNs > 0) {
        this.timers.set(v.periodic, Math.max(v.periodic.expires + v.periodNs, NOW()));
      }
    },
    pollTimeout: (v: Vcpu): void => {
      if (v.domain.hvm) this.hvmUnpark(v.domain, "poll");
      else if (v.state === VcpuState.Blocked && v.pollPorts) this.wake(v);
    },
  };

  /**
   * Creates a domain and, unless `paused`, starts vCPU 0 at the kernel's
   * `_start`. Throws DomainCreateError naming what was wrong; on failure
   * nothing is left allocated.
   */
  createDomain(cfg: DomainConfig): Domain {
    const memMiB = cfg.memory;
    const maxMiB = cfg.maxmem ?? cfg.memory;
    const vcpus = cfg.vcpus ?? 1;
    const maxVcpus = cfg.maxvcpus ?? vcpus;
    const fail = (errno: number, msg: string): never => {
      throw new DomainCreateError(errno, `cannot create domain '${cfg.name}': ${msg}`);
    };
    if (!Number.isInteger(memMiB) || memMiB <= 0)
      fail(XenErrno.EINVAL, `memory=${memMiB} is not a positive whole number of MiB`);
    if (!Number.isInteger(maxMiB) || maxMiB <= 0)
      fail(XenErrno.EINVAL, `maxmem=${maxMiB} is not a positive whole number of MiB`);
    if (maxMiB < memMiB) fail(XenErrno.EINVAL, `maxmem=${maxMiB} is less than memory=${memMiB}`);
    if (maxMiB > 4095)
      fail(XenErrno.EINVAL, `maxmem=${maxMiB}M exceeds the 4 GiB of a wasm32 guest`);
    const pages = memMiB * 256;
    const maxPages = maxMiB * 256;
    if (pages < MIN_DOMAIN_FRAMES)
      fail(
        XenErrno.EINVAL,
        `memory=${memMiB}M is below the wasm32 minimum of ${(MIN_DOMAIN_FRAMES * PAGE_SIZE) >> 10} KiB`,
      );
    if (!Number.isInteger(vcpus) || vcpus < 1 || maxVcpus < vcpus || maxVcpus > MAX_VIRT_CPUS) {
      fail(
        XenErrno.EINVAL,
        `vcpus=${vcpus} maxvcpus=${maxVcpus}: must be 1 ≤ vcpus ≤ maxvcpus ≤ ${MAX_VIRT_CPUS}`,
      );
    }
    if (vcpus > 1 && !cfg.kernel.hasSecondaryEntry)
      fail(XenErrno.EINVAL, `vcpus=${vcpus} but the kernel has no _start_vcpu export`);
    // Linear memory starts at `memory` and grows only as pages are given
    // (memory.ts), up to maxmem (which xl mem-max may raise later).
    const wasmPages = pages / FRAMES_PER_WASM_PAGE;
    if (cfg.kernel.minPages > wasmPages) {
      fail(
        XenErrno.ENOMEM,
        `the kernel needs ${cfg.kernel.minPages * 64} KiB of memory, memory is ${memMiB * 1024} KiB`,
      );
    }
    this.checkFreeFrames(pages, fail);
    for (const s of cfg.kernel.segments) {
      if (s.offset < GUEST_IMAGE_BASE) {
        fail(
          XenErrno.EINVAL,
          `kernel data at 0x${s.offset.toString(16)} overlaps the wasm32 architecture area (link with --memoryBase ${GUEST_IMAGE_BASE})`,
        );
      }
      if (s.offset + s.data.length > pages * PAGE_SIZE)
        fail(XenErrno.ENOMEM, `kernel data does not fit in memory=${memMiB}M`);
    }
    const { limits, cmdline } = this.checkLimitsAndCmdline(cfg, fail);
    const domid = this.allocDomid(cfg.domid);
    let wasmMemory: WebAssembly.Memory;
    try {
      wasmMemory = new WebAssembly.Memory({
        initial: wasmPages,
        maximum: WASM32_MAX_WASM_PAGES,
        shared: true,
      });
    } catch (e) {
      return fail(
        XenErrno.ENOMEM,
        `the host cannot reserve ${maxMiB} MiB of guest memory (${(e as Error).message})`,
      );
    }
    const d = new Domain(
      domid,
      cfg.name,
      false,
      cfg.kernel,
      wasmMemory,
      maxPages,
      maxPages,
      cmdline,
      randomBytes(16),
      limits,
      this.kick,
    );
    d.weight = cfg.weight ?? 256;
    d.cap = cfg.cap ?? 0;
    chargeInitialTop(this, d);
    for (let p = 0; p < pages; p++) populatePfn(this, d, _pfn(p));
    for (const s of cfg.kernel.segments) d.mem.u8.set(s.data, s.offset);
    for (let i = 0; i < maxVcpus; i++) d.vcpus.push(new Vcpu(d, i, this.vcpuTimers));
    this.writeStartInfo(d, pages);
    this.writeSharedInfo(d);
    this.domains.set(domid, d);
    if (this.trace.on) this.trace.record(TRC_DOM0_DOM_ADD, [domid]);
    if (cfg.paused) d.pauseCount++;
    this.announce(d);
    try {
      for (let i = 0; i < vcpus; i++) this.vcpuUp(d.vcpus[i]!);
    } catch (e) {
      this.destroyDomain(domid);
      return fail(XenErrno.EINVAL, `the kernel could not be instantiated: ${(e as Error).message}`);
    }
    return d;
  }

  /**
   * XEN_DOMCTL_createdomain for a PV domain (Xen's domain_create): an empty
   * domain, paused by its controller until the first unpause, with its
   * vCPUs allocated but offline, no pages (max_pages 0 until
   * XEN_DOMCTL_max_mem; the architecture area's frames are held for it) and
   * no code. The domain builder gives it the rest
   * through hypercalls (tools/libxc/xc_dom.ts). Throws DomainCreateError.
   */
  createEmptyDomain(cfg: {
    domid?: number;
    handle: Uint8Array;
    maxVcpus: number;
    maxEvtchnPort?: number;
    maxGrantFrames?: number;
    maxMaptrackFrames?: number;
    /** XEN_DOMCTL_CDF_hvm: an HVM domain, finished by startHvm. */
    hvm?: boolean;
  }): Domain {
    const fail = (errno: number, msg: string): never => {
      throw new DomainCreateError(errno, `cannot create a domain: ${msg}`);
    };
    if (!Number.isInteger(cfg.maxVcpus) || cfg.maxVcpus < 1 || cfg.maxVcpus > MAX_VIRT_CPUS)
      fail(XenErrno.EINVAL, `max_vcpus=${cfg.maxVcpus}: must be 1..${MAX_VIRT_CPUS}`);
    // WASI preview1 has no threads: an HVM domain runs one program on one vCPU.
    if (cfg.hvm && cfg.maxVcpus !== 1)
      fail(XenErrno.EINVAL, `max_vcpus=${cfg.maxVcpus}: an HVM domain on wasm32 has one vCPU`);
    const { limits } = this.checkLimitsAndCmdline(cfg, fail);
    // The architecture area's first wasm page exists from the start, as Xen
    // gives a new domain its shared_info and grant frames at creation: the
    // hypervisor's writes there (an event sent to the domain before it is
    // built) always land. Its frames are charged to the domain as holes,
    // which populating those pfns takes.
    this.checkFreeFrames(FRAMES_PER_WASM_PAGE, fail);
    const domid = this.allocDomid(cfg.domid);
    let wasmMemory: WebAssembly.Memory;
    try {
      // An HVM domain's is the hypervisor's page area beside its program's
      // memory (startHvm makes that), and never grows.
      wasmMemory = new WebAssembly.Memory({
        initial: 1,
        maximum: cfg.hvm ? 1 : WASM32_MAX_WASM_PAGES,
        shared: true,
      });
    } catch (e) {
      return fail(
        XenErrno.ENOMEM,
        `the host cannot reserve a guest's address space (${(e as Error).message})`,
      );
    }
    const d = new Domain(
      domid,
      `d${domid}`,
      false,
      undefined,
      wasmMemory,
      0,
      0,
      "",
      Uint8Array.from(cfg.handle),
      limits,
      this.kick,
    );
    if (cfg.hvm) {
      // Its memory is all populated by the builder, pfn 0 up; the page area is the hypervisor's.
      d.hvmBuild = { image: undefined, rtcTimeOffsetSeconds: 0 };
    } else {
      chargeInitialTop(this, d);
      d.memoryReplaceable = true;
    }
    for (let i = 0; i < cfg.maxVcpus; i++) d.vcpus.push(new Vcpu(d, i, this.vcpuTimers));
    // Xen's controller pause: the domain runs from its first unpause.
    d.pauseCount = 1;
    // A guest the toolstack builds has a PV console ring: console_io is
    // refused to it, as Xen's release builds refuse it to a domU.
    d.isConsole = false;
    this.domains.set(domid, d);
    if (this.trace.on) this.trace.record(TRC_DOM0_DOM_ADD, [domid]);
    this.announce(d);
    return d;
  }

  /** Tells the listeners a domain now exists; one that throws is reported, not passed on. */
  private announce(d: Domain): void {
    for (const l of this.listeners) {
      try {
        l.created?.(d);
      } catch (e) {
        this.console.printk(`BUG: a listener failed on d${d.domid}'s creation: ${String(e)}`);
      }
    }
  }

  /**
   * XEN_DOMCTL_setvcpucontext for a PV domain being built: vCPU `v` starts
   * at `entry` with `arg` (start_info's address for vCPU 0, its id for the
   * others, as wasm32's entry points take them) once the domain is
   * unpaused. The domain must have its module and the memory it asks for;
   * the first vCPU set also stamps the wall clock into shared_info, which
   * must be populated. Returns 0 or a negative Xen errno; what was wrong is
   * said on the console.
   */
  setVcpuContext(
    v: Vcpu,
    ctx: { online: boolean; entry: number; arg: number; suspended: number },
  ): number {
    const d = v.domain;
    const refuse = (errno: number, why: string): number => {
      this.console.printk(`d${d.domid}v${v.id}: setvcpucontext refused: ${why}`);
      return -errno;
    };
    if (d.hvm || d.privileged) return refuse(XenErrno.EINVAL, "not a PV guest");
    if (v.state !== VcpuState.Offline) return refuse(XenErrno.EEXIST, "the vCPU is already up");
    if (!ctx.online) return 0;
    if (ctx.suspended !== 0)
      return refuse(XenErrno.EOPNOTSUPP, "a suspended context is restored only by a restore");
    const kernel = d.kernel;
    if (!kernel) return refuse(XenErrno.EINVAL, "the domain has no module yet");
    const want = v.id === 0 ? WASM32_ENTRY_START : WASM32_ENTRY_START_VCPU;
    const wantArg = v.id === 0 ? d.startInfoAddr() : v.id;
    if (ctx.entry !== want || ctx.arg !== wantArg)
      return refuse(
        XenErrno.EINVAL,
        `entry ${ctx.entry} (${ctx.arg}): vCPU ${v.id} starts at entry ${want} (${wantArg})`,
      );
    if (!v.startable) return refuse(XenErrno.EINVAL, "the kernel has no _start_vcpu export");
    if (d.topPfn < kernel.minPages * FRAMES_PER_WASM_PAGE)
      return refuse(XenErrno.ENOMEM, `the kernel needs ${kernel.minPages * 64} KiB of memory`);
    for (const p of [PFN_START_INFO, PFN_SHARED_INFO]) {
      if (!d.isPopulated(p)) return refuse(XenErrno.EINVAL, `pfn ${p} is not populated`);
    }
    if (d.vcpus.every((x) => x.state === VcpuState.Offline)) this.writeWallclock(d);
    try {
      this.vcpuUp(v);
    } catch (e) {
      return refuse(
        XenErrno.EINVAL,
        `the kernel could not be instantiated: ${(e as Error).message}`,
      );
    }
    return 0;
  }

  /**
   * XEN_DOMCTL_setvcpucontext (or XEN_DOMCTL_sethvmcontext, a restore) of
   * an HVM domain the builder has made (docs/arch-wasm32.md, "HVM
   * domains"): its program bound (XEN_DOMCTL_wasm32_module) and its memory
   * populated, pfn 0 up, as Xen's builder populates an HVM guest's RAM
   * whole. The program's linear memory is made now, starting at its own
   * minimum (a restore's saved size) and capped at the populated memory;
   * its vCPU's thread starts, and waits for the domain's unpause. Returns 0
   * or a negative Xen errno; what was wrong is said on the console.
   */
  startHvm(d: Domain, restore?: HvmRestore): number {
    const refuse = (errno: number, why: string): number => {
      this.console.printk(`d${d.domid}: HVM domain not started: ${why}`);
      return -errno;
    };
    const b = d.hvmBuild;
    if (!b) return refuse(XenErrno.EINVAL, "not an HVM domain being built");
    const image = b.image;
    if (!image) return refuse(XenErrno.EINVAL, "no program is bound to it");
    const pages = d.totPages;
    for (let p = 0; p < pages; p++)
      if (!d.isPopulated(_pfn(p)))
        return refuse(XenErrno.EINVAL, `its memory is not populated from pfn 0 (pfn ${p})`);
    const wasmPages = Math.floor(pages / FRAMES_PER_WASM_PAGE);
    if (wasmPages < 1 || image.minPages > wasmPages)
      return refuse(
        XenErrno.ENOMEM,
        `the program needs ${image.minPages * 64} KiB of memory, it has ${pages * 4} KiB`,
      );
    const maxWasmPages = Math.min(image.maxPages, wasmPages);
    const r = restore;
    if (r && (!image.saveable || r.wasmPages < image.minPages || r.wasmPages > maxWasmPages))
      return refuse(
        XenErrno.EINVAL,
        image.saveable
          ? `the saved memory of ${r.wasmPages} wasm pages does not fit the program (${image.minPages}..${maxWasmPages})`
          : "the program was not made saveable",
      );
    let program: WebAssembly.Memory;
    try {
      program = new WebAssembly.Memory({
        initial: r ? r.wasmPages : image.minPages,
        maximum: maxWasmPages,
        shared: true,
      });
    } catch (e) {
      return refuse(
        XenErrno.ENOMEM,
        `the host cannot reserve ${pages * 4} KiB of guest memory (${(e as Error).message})`,
      );
    }
    // The hypervisor's own pages for the domain were a wasm page of their
    // own, out of the program's reach. A program with PV drivers has them in
    // its own memory, below its data, where hvm_image.ts checked there is
    // room: the domain's memory becomes the program's.
    const pv = image.hypercalls;
    if (pv) {
      new Uint8Array(program.buffer).set(d.mem.u8.subarray(0, Math.min(d.mem.u8.length, 65536)));
      d.mem.retarget(program);
      d.wasmMemory = program;
    }
    // A restored domain's clock goes on from the saved time.
    if (r) d.stimeOffsetNs = r.stimeNs - NOW();
    d.hvmBuild = undefined;
    d.hvm = new HvmDomain(image, program, maxWasmPages);
    this.writeStartInfo(d, pv ? pages : FRAMES_PER_WASM_PAGE);
    this.writeSharedInfo(d);
    const vcpu = new HvmVcpu(
      image,
      program,
      {
        ended: (how) => {
          if (d.isDying) return;
          if (how.kind === "crash") {
            this.domainCrash(d, d.vcpus[0], how.why);
            return;
          }
          // proc_exit: the device model that took it powers the domain off,
          // after the output it still has for the console. Only a program
          // with no device model, or one that does not do it, is powered
          // off here.
          const poweroff = (): void => {
            if (!d.isShutdown && !d.isDying) this.domainShutdown(d, SHUTDOWN_poweroff);
          };
          if (d.hvm!.routes().length === 0) poweroff();
          else setTimeout(poweroff, HVM_EXIT_GRACE_MS).unref();
        },
        hypercall: pv
          ? (op, a1, a2, a3, a4, a5) => {
              d.hvm!.hypercalls++;
              this.hvmHypercall(d, op, a1, a2, a3, a4, a5);
            }
          : undefined,
      },
      {
        // The domain's system time, as its vcpu_time_info would say.
        systemTimeBase: process.hrtime.bigint() - BigInt(Math.round(d.stime())),
        wallclockOffsetNs: BigInt(b.rtcTimeOffsetSeconds) * 1_000_000_000n,
        vpEport: 0,
      },
    );
    d.hvm.vcpu = vcpu;
    vcpu.start(d.pauseCount, r?.vcpu);
    this.lendTraceCpu(d);
    return 0;
  }

  /**
   * Lends an HVM domain's vCPU thread a trace CPU of its own, once the trace
   * buffers exist, for the ioreqs it records (docs/tracing.md); the CPU comes
   * back when the thread has ended. With every CPU lent, the vCPU records
   * nothing, and the console says so once.
   */
  private lendTraceCpu(d: Domain): void {
    const vcpu = d.hvm?.vcpu;
    if (!vcpu || vcpu.traceCpu !== undefined || d.isDying || d.isShutdown) return;
    const t = this.trace.lendCpu();
    if (!t) {
      if (this.trace.info().mfn !== 0 && !this.traceCpusShort) {
        this.traceCpusShort = true;
        this.console.printk(
          `tracing: every trace CPU is lent; d${d.domid}'s ioreqs are not recorded`,
        );
      }
      return;
    }
    vcpu.setTrace(t, d.domid, () => this.trace.returnCpu(t.cpu));
  }
  /** The console said once that the trace CPUs ran out. */
  private traceCpusShort = false;

  /**
   * A hypercall of an HVM program with PV drivers, on the main thread. It
   * runs as a PV guest's does, within a budget of HVM_HYPERCALL_BUDGET_US:
   * a longer one continues after the event loop has turned (Xen's
   * continuation), so one program's batch cannot hold the host. A call that
   * blocks (SCHEDOP_block, SCHEDOP_poll) is parked: the vCPU's thread stays
   * in its hypercall until an event or the poll's timeout unparks it.
   */
  private hvmHypercall(
    d: Domain,
    op: number,
    a1: number,
    a2: number,
    a3: number,
    a4: number,
    a5: number,
  ): void {
    const hvm = d.hvm!;
    if (d.isDying || d.isShutdown || !hvm.vcpu) return;
    const v = d.vcpus[0]!;
    this.slice.start(HVM_HYPERCALL_BUDGET_US);
    hvm.inHypercall = true;
    activity[ACT_DOMID] = d.domid;
    activity[ACT_VCPU] = v.id;
    let rc: number;
    try {
      rc = this.dispatch(v, op, a1, a2, a3, a4, a5);
    } catch (e) {
      this.domainCrash(d, v, `hypervisor error in hypercall ${op}: ${(e as Error).message}`);
      return;
    } finally {
      hvm.inHypercall = false;
      activity[ACT_DOMID] = -1;
      activity[ACT_HYPERCALL] = -1;
    }
    const why = v.suspend;
    v.suspend = Suspend.None;
    // Nothing to deliver an upcall to: the program looks at its events itself.
    v.attention = false;
    if (d.isDying || d.isShutdown) return;
    switch (why) {
      case Suspend.Preempt: {
        const c = v.takeContinuation();
        if (!c) break;
        const [b1, b2, b3, b4, b5] = c.args as [number, number, number, number, number];
        hvm.continuations++;
        setImmediate(() => this.hvmHypercall(d, c.op, b1, b2, b3, b4, b5));
        return;
      }
      case Suspend.Block:
        hvm.parked = "block";
        return;
      case Suspend.Poll:
        hvm.parked = "poll";
        return;
      default:
        break;
    }
    hvm.vcpu.answerHypercall(rc);
  }

  /** Ends the parked hypercall of `d`'s program if it waits as `how` (0: an event or a timeout came). */
  private hvmUnpark(d: Domain, how: "block" | "poll"): void {
    const hvm = d.hvm!;
    if (hvm.parked !== how) return;
    hvm.parked = undefined;
    const v = d.vcpus[0]!;
    this.timers.stop(v.pollTimer);
    v.pollPorts = undefined;
    hvm.vcpu?.answerHypercall(0);
  }

  /** The enabled ioreq servers of `d` changed: its vCPU follows the new routes. */
  hvmRoutesChanged(d: Domain): void {
    d.hvm?.vcpu?.setRoutes(d.hvm.routes());
  }

  /** Destroys ioreq server `s` of `d`: its page and frame go. */
  destroyIoreqServer(d: Domain, s: IoreqServer): void {
    d.hvm!.servers.delete(s.id);
    this.xenPages.delete(s.mfn);
    this.frames.free(s.mfn);
    this.hvmRoutesChanged(d);
    this.console.printk(`d${d.domid}: ioreq server ${s.id} destroyed`);
  }

  /**
   * Dom0's foreign mapping of a domain's memory (privcmd's
   * IOCTL_PRIVCMD_MMAPBATCH_V2 over the whole physmap, as QEMU's mapcache
   * maps a guest and xc_domain_dumpcore reads one): its linear memory (an
   * HVM domain's program memory), for a privileged caller only. Throws
   * naming what was refused.
   */
  mapForeignMemory(caller: Domain, domid: number): WebAssembly.Memory {
    if (!caller.privileged) throw new Error(`d${caller.domid} may not map d${domid}'s memory`);
    const d = this.domains.get(domid);
    if (!d || d.isDying) throw new Error(`no domain ${domid}`);
    d.memoryReplaceable = false;
    d.wholeMemoryMapped = true;
    return d.hvm ? d.hvm.memory : d.wasmMemory;
  }

  /**
   * Dom0's foreign mapping of pages `gfns` of domain `domid`
   * (IOCTL_PRIVCMD_MMAPBATCH_V2's contract, as the domain builder and
   * libxenforeignmemory use it): a view of each page, or its error in
   * `err` (-EINVAL for a gfn the domain has not populated), and all of them
   * as one view (`region`) when they are consecutive and all mapped. With
   * DOMID_XEN, the frames are pages of Xen's that it shares with privileged
   * domains (the trace buffers). A privileged caller only; throws naming
   * what was refused.
   */
  foreignMapBatch(
    caller: Domain,
    domid: number,
    gfns: readonly number[],
  ): { pages: (Uint8Array | undefined)[]; err: number[]; region?: Uint8Array } {
    if (!caller.privileged) throw new Error(`d${caller.domid} may not map d${domid}'s memory`);
    if (domid === DOMID_XEN) {
      // Pages of Xen's shared with privileged domains (the trace buffers), by mfn.
      const pages = gfns.map((g) => this.xenPages.getShared(g));
      return { pages, err: pages.map((p) => (p ? 0 : -XenErrno.EINVAL)) };
    }
    const d = this.domains.get(domid);
    if (!d || d.isDying || d.hvm) throw new Error(`no PV domain ${domid}`);
    const err: number[] = [];
    for (const g of gfns) {
      const ok = Number.isSafeInteger(g) && g >= 0 && d.isPopulated(_pfn(g));
      err.push(ok ? 0 : -XenErrno.EINVAL);
      if (ok) d.addForeignMap(g);
    }
    // Consecutive pfns, all mapped: also as one view, as privcmd maps a
    // batch at one virtual range (a save writes it in one piece).
    const g0 = gfns[0];
    const whole =
      g0 !== undefined &&
      err.every((e) => e === 0) &&
      gfns.every((g, i) => g === g0 + i) &&
      (g0 + gfns.length) * PAGE_SIZE <= d.mem.size;
    // Each page's own view is made when first asked for: a caller that
    // takes the region never pays for thousands of views. A view handed out
    // must stay the memory's, so the memory now grows in place (as for a
    // page view) rather than being replaced by a larger one.
    if (whole) d.memoryReplaceable = false;
    let pages: (Uint8Array | undefined)[] | undefined;
    return {
      get pages() {
        pages ??= gfns.map((g, i) => (err[i] === 0 ? d.pageView(g) : undefined));
        return pages;
      },
      err,
      region: whole ? d.mem.u8.subarray(g0 * PAGE_SIZE, (g0 + gfns.length) * PAGE_SIZE) : undefined,
    };
  }

  /**
   * The unmap of pages foreignMapBatch mapped: each stops being one Dom0
   * may write once its last mapping goes. A page written and then unmapped
   * between two log-dirty rounds is still compared in the second (marked).
   */
  foreignUnmapBatch(caller: Domain, domid: number, gfns: readonly number[]): void {
    if (!caller.privileged) throw new Error(`d${caller.domid} may not map d${domid}'s memory`);
    const d = this.domains.get(domid);
    if (!d) return;
    for (const g of gfns) {
      if (!d.dropForeignMap(g)) continue;
      d.logDirty?.mark(g);
    }
  }

  /**
   * tsxen's privcmd extension for a live save: domain `domid`'s pages as
   * its log-dirty copy holds them (paging.ts: what the last CLEAN saw),
   * read-only views; -EINVAL for a pfn the domain has not populated or the
   * copy does not hold, -ENOENT when log-dirty is off.
   */
  logDirtySnapshotBatch(
    caller: Domain,
    domid: number,
    gfns: readonly number[],
  ): { pages: (Uint8Array | undefined)[]; err: number[] } {
    if (!caller.privileged) throw new Error(`d${caller.domid} may not map d${domid}'s memory`);
    const d = this.domains.get(domid);
    if (!d || d.isDying) throw new Error(`no domain ${domid}`);
    const ld = d.logDirty;
    // An HVM domain's pfns are its program's memory, all of it populated.
    const present = (g: number): boolean => (d.hvm ? g < d.topPfn : d.isPopulated(_pfn(g)));
    const pages = gfns.map((g) =>
      ld && Number.isSafeInteger(g) && g >= 0 && present(g) ? ld.snapshot(g) : undefined,
    );
    return {
      pages,
      err: pages.map((p) => (p ? 0 : ld ? -XenErrno.EINVAL : -XenErrno.ENOENT)),
    };
  }

  /** Fails (ENOMEM) unless the heap has `pages` free frames. */
  private checkFreeFrames(pages: number, fail: (errno: number, msg: string) => never): void {
    if (this.frames.freeFrames < pages) {
      fail(
        XenErrno.ENOMEM,
        `not enough free machine memory: need ${pages} pages, ${this.frames.freeFrames} free`,
      );
    }
  }

  /** A new domain's limits (xl.cfg's max_* keys, checked) and command line (it must fit start_info). */
  private checkLimitsAndCmdline(
    cfg: Pick<DomainConfig, "maxEvtchnPort" | "maxGrantFrames" | "maxMaptrackFrames" | "cmdline">,
    fail: (errno: number, msg: string) => never,
  ): { limits: DomainLimits; cmdline: string } {
    const limits: DomainLimits = {
      maxEvtchnPort: cfg.maxEvtchnPort ?? DEFAULT_MAX_EVTCHN_PORT,
      maxGrantFrames: cfg.maxGrantFrames ?? DEFAULT_MAX_GRANT_FRAMES,
      maxMaptrackFrames: cfg.maxMaptrackFrames ?? DEFAULT_MAX_MAPTRACK_FRAMES,
    };
    for (const [k, v, lo] of [
      ["max_event_channels", limits.maxEvtchnPort, 1],
      ["max_grant_frames", limits.maxGrantFrames, 1],
      ["max_maptrack_frames", limits.maxMaptrackFrames, 0],
    ] as const) {
      if (!Number.isInteger(v) || v < lo || v > 2 ** 31 - 1)
        fail(XenErrno.EINVAL, `${k}=${v} is not a whole number from ${lo}`);
    }
    const cmdline = cfg.cmdline ?? "";
    if (Buffer.byteLength(cmdline) >= start_info.fields.cmd_line.size) {
      fail(
        XenErrno.E2BIG,
        `command line is longer than ${start_info.fields.cmd_line.size - 1} bytes`,
      );
    }
    return { limits, cmdline };
  }

  private writeStartInfo(d: Domain, pages: number): void {
    const f = start_info.fields;
    const a = d.startInfoAddr();
    const mem = d.mem;
    mem.writeCString(a + f.magic.offset, f.magic.size, "xen-3.0-wasm32");
    mem.setU64(a + f.nr_pages.offset, pages);
    mem.setU64(a + f.shared_info.offset, d.sharedInfoAddr);
    mem.setU32(a + f.flags.offset, d.privileged ? SIF_PRIVILEGED | SIF_INITDOMAIN : 0);
    mem.setU64(a + f.store_mfn.offset, PFN_XENSTORE);
    mem.setU32(a + f.store_evtchn.offset, 0);
    mem.setU64(a + f.console_mfn.offset, PFN_CONSOLE);
    mem.setU32(a + f.console_evtchn.offset, 0);
    mem.writeCString(a + f.cmd_line.offset, f.cmd_line.size, d.cmdline);
    mem.setU64(a + f.first_p2m_pfn.offset, 0);
    mem.setU64(a + f.nr_p2m_frames.offset, 0);
    const b = pfn_to_paddr(PFN_BOOT_INFO);
    mem.setU32(b + arch_wasm32_boot.fields.domid.offset, d.domid);
    mem.setU32(b + arch_wasm32_boot.fields.max_vcpus.offset, d.vcpus.length);
  }

  private writeSharedInfo(d: Domain): void {
    this.writeWallclock(d);
    // Event delivery starts masked on every vCPU; the guest unmasks when ready.
    for (const v of d.vcpus) v.setUpcallMask(true);
  }

  /** The wall clock at system time 0, in shared_info (seqlock: odd version while writing). */
  writeWallclock(d: Domain): void {
    const f = shared_info.fields;
    const a = d.sharedInfoAddr;
    // Wallclock = wc + the domain's system time, which may run behind the host's.
    const wc = BOOT_WALLCLOCK_NS - d.stimeOffsetNs;
    const sec = Math.floor(wc / 1e9);
    const ver = d.mem.u32(a + f.wc_version.offset);
    d.mem.setU32(a + f.wc_version.offset, (ver | 1) >>> 0);
    d.mem.setU32(a + f.wc_sec.offset, sec >>> 0);
    d.mem.setU32(a + f.wc_nsec.offset, Math.floor(wc - sec * 1e9));
    d.mem.setU32(a + f.wc_sec_hi.offset, Math.floor(sec / 2 ** 32));
    d.mem.setU32(a + f.wc_version.offset, ((ver | 1) + 1) >>> 0);
  }

  /** Writes system time into `v`'s vcpu_time_info (seqlock: odd version while updating). */
  updateVcpuTime(v: Vcpu): void {
    const a = v.vcpuInfoAddr + vcpu_info.fields.time.offset;
    const f = vcpu_time_info.fields;
    const dv = v.domain.mem.dv;
    const now = v.domain.stime();
    const ver = dv.getUint32(a + f.version.offset, true);
    dv.setUint32(a + f.version.offset, (ver | 1) >>> 0, true);
    const lo = now >>> 0;
    const hi = Math.floor(now / 2 ** 32);
    dv.setUint32(a + f.system_time.offset, lo, true);
    dv.setUint32(a + f.system_time.offset + 4, hi, true);
    // wasm32 has no TSC: the "TSC" is system time itself, scale 1.
    dv.setUint32(a + f.tsc_timestamp.offset, lo, true);
    dv.setUint32(a + f.tsc_timestamp.offset + 4, hi, true);
    dv.setUint32(a + f.tsc_to_system_mul.offset, 0x80000000, true);
    dv.setInt8(a + f.tsc_shift.offset, 1);
    dv.setUint32(a + f.version.offset, ((ver | 1) + 1) >>> 0, true);
  }

  /** Brings vCPU `v` online (VCPUOP_up, domain creation). */
  vcpuUp(v: Vcpu): void {
    if (v.state !== VcpuState.Offline) return;
    v.domain.memoryReplaceable = false;
    v.instantiate(this);
    v.state = VcpuState.Blocked;
    this.sched.add(v);
    this.sched.wake(v);
  }

  /**
   * Brings vCPU `v` of a domain being restored back as it was saved
   * (domain_context.ts): a new instance with the saved globals, its
   * contexts to be rewound from their save areas, its timers, blocked or
   * runnable. Throws what the instance or the snapshot refuses.
   */
  vcpuRestore(v: Vcpu, c: VcpuContext): void {
    v.domain.memoryReplaceable = false;
    v.instantiate(this);
    v.restoreSnapshot(c.snapshot);
    v.cpuTimeNs = c.cpuTimeNs;
    v.periodNs = c.periodNs;
    if (c.singleshotNs >= 0) this.timers.set(v.singleshot, c.singleshotNs);
    if (c.periodicNs >= 0) this.timers.set(v.periodic, c.periodicNs);
    v.pollPorts = c.pollPorts ? [...c.pollPorts] : undefined;
    if (c.pollNs >= 0) this.timers.set(v.pollTimer, c.pollNs);
    // A vCPU saved blocked whose memory shows an event pending (one that
    // came after it blocked, as the domain was being saved) runs: blocking
    // with an event pending returns at once, as SCHEDOP_block does.
    v.state =
      c.state === VcpuState.Blocked && !v.upcallPending ? VcpuState.Blocked : VcpuState.Runnable;
    this.sched.add(v);
    if (v.state === VcpuState.Runnable) this.sched.enqueue(v);
  }

  /** Takes vCPU `v` offline (VCPUOP_down on another vCPU). */
  vcpuDown(v: Vcpu): void {
    if (v.state === VcpuState.Offline) return;
    if (v.state === VcpuState.Running) {
      v.suspend = Suspend.Down;
      return;
    }
    v.state = VcpuState.Offline;
    this.sched.remove(v);
  }

  /** Pauses a domain (xl pause): nestable, as Xen's pause count is. */
  pauseDomain(d: Domain): void {
    d.pauseCount++;
    d.hvm?.vcpu?.setPause(d.pauseCount);
    for (const v of d.vcpus) v.attention = true;
    if (this.sched.current?.domain === d) this.slice.expireNow();
    for (const v of d.vcpus) this.sched.remove(v);
    for (const v of d.vcpus) if (v.state !== VcpuState.Offline) this.sched.add(v);
  }

  /** Undoes one pause; -EINVAL if the domain was not paused. */
  unpauseDomain(d: Domain): number {
    if (d.pauseCount === 0) return -XenErrno.EINVAL;
    d.pauseCount--;
    d.hvm?.vcpu?.setPause(d.pauseCount);
    if (d.runnable) for (const v of d.vcpus) this.sched.enqueue(v);
    return 0;
  }

  /**
   * XEN_DOMCTL_resumedomain (Xen's domain_resume): a domain shut down (a
   * suspend, for a checkpoint) runs on. The vCPU that asked for
   * SHUTDOWN_suspend sees its hypercall return 1, "cancelled": the guest
   * resumes in the same domain, so its event channels, rings and devices
   * are still connected. Only PV domains.
   */
  resumeDomain(d: Domain): number {
    if (d.hvm) return -XenErrno.EOPNOTSUPP;
    if (!d.isShutdown) return 0;
    const by = d.suspendedBy;
    d.suspendedBy = undefined;
    if (by && d.shutdownReason === SHUTDOWN_suspend && (by.mainSuspended || by.upcallSuspended))
      by.resumeValue = 1;
    d.isShutdown = false;
    d.shutdownReason = -1;
    d.shutdownCode = -1;
    d.crashMessage = undefined;
    this.console.printk(`Domain ${d.domid} (${d.name}) resumed`);
    if (d.runnable) for (const v of d.vcpus) if (v.state !== VcpuState.Offline) this.sched.wake(v);
    return 0;
  }

  /** Shuts a domain down with `reason` (SHUTDOWN_*); the first reason wins. */
  domainShutdown(d: Domain, reason: number): void {
    if (d.isShutdown || d.isDying) return;
    d.isShutdown = true;
    d.shutdownReason = reason;
    // A WASI program's proc_exit status is its shutdown code (as SCHEDOP_shutdown_code).
    const status = d.hvm?.vcpu?.exitCode;
    if (status !== undefined && d.shutdownCode < 0) d.shutdownCode = status;
    for (const v of d.vcpus) v.attention = true;
    // An HVM vCPU stops where it is; its memory stays for the toolstack.
    void d.hvm?.vcpu?.stop();
    const cur = this.sched.current;
    if (cur?.domain === d) {
      cur.suspend = Suspend.Shutdown;
      this.slice.expireNow();
    }
    for (const v of d.vcpus) {
      this.sched.remove(v);
      if (v.state !== VcpuState.Offline) this.sched.add(v);
    }
    const why = SHUTDOWN_NAMES[reason] ?? String(reason);
    this.console.printk(
      `Domain ${d.domid} (${d.name}) shutdown: ${why}${d.shutdownCode >= 0 ? ` (code ${d.shutdownCode})` : ""}`,
    );
    this.dom0.evtchn.sendGlobalVirq(VIRQ_DOM_EXC);
    for (const l of this.listeners) l.shutdown?.(d);
  }

  /** Crashes a domain (Xen's domain_crash): the console names the cause. */
  domainCrash(d: Domain, v: Vcpu | undefined, why: string): void {
    if (d.isShutdown || d.isDying) return;
    d.crashMessage = why;
    this.console.printk(`Domain ${d.domid} (${d.name}) ${v ? `vcpu#${v.id} ` : ""}crashed: ${why}`);
    this.domainShutdown(d, SHUTDOWN_crash);
  }

  /**
   * Destroys a domain: every vCPU, timer, port and machine frame is released.
   * Returns -ESRCH for an unknown domid, -EPERM for Dom0.
   */
  destroyDomain(domid: number): number {
    const d = this.domains.get(domid);
    if (domid === 0) return -XenErrno.EPERM;
    if (!d) return -XenErrno.ESRCH;
    if (d.isDying) return 0;
    d.isDying = true;
    for (const v of d.vcpus) v.attention = true;
    if (this.sched.current?.domain === d) {
      // Its vCPU is on the pCPU (a console listener is destroying it): finish
      // once the slice returns.
      this.slice.expireNow();
      this.pendingDestroy.add(d);
      return 0;
    }
    this.finishDestroy(d);
    return 0;
  }

  /**
   * Tears a dying domain down: vCPUs, timers, its ports (peers go back to
   * unbound) and its own mappings of other domains' grants. Its memory goes
   * too, unless another domain still maps one of its grants: then it stays
   * dying until the last of those mappings is unmapped.
   */
  private finishDestroy(d: Domain): void {
    for (const v of d.vcpus) {
      this.sched.remove(v);
      v.dispose((t: Timer) => this.timers.stop(t));
    }
    d.evtchn.dispose();
    if (d.hvm) {
      void d.hvm.vcpu?.stop();
      for (const s of [...d.hvm.servers.values()]) this.destroyIoreqServer(d, s);
    }
    for (const h of d.gnttab.handles()) unmapGrantRef(this, d, h);
    d.consoleListeners.clear();
    for (const l of this.listeners) {
      try {
        l.dying?.(d);
      } catch (e) {
        this.console.printk(`BUG: a listener failed on d${d.domid}'s destruction: ${String(e)}`);
      }
    }
    if (d.gnttab.pinned === 0) this.releaseDyingDomain(d);
  }

  /**
   * The page behind Dom0's grant mapping `handle`, as a view of the granting
   * domain's memory (zero copy): what Dom0's page tables would point at after
   * GNTTABOP_map_grant_ref. Undefined for an unknown handle.
   */
  grantMappingView(handle: number): Uint8Array | undefined {
    const m = this.dom0.gnttab.mapping(handle);
    if (!m) return undefined;
    const a = pfn_to_paddr(m.pfn);
    return m.granter.mem.u8.subarray(a, a + PAGE_SIZE);
  }

  /** Runs debug keys (xl debug-keys): each known key dumps state on the console. */
  debugKeys(keys: string): void {
    const all = [this.dom0, ...[...this.domains.values()].sort((a, b) => a.domid - b.domid)];
    for (const k of keys) {
      const now = NOW();
      const machine = {
        totalFrames: this.frames.totalFrames,
        freeFrames: this.frames.freeFrames,
        nowNs: now,
        bootWallclockNs: BOOT_WALLCLOCK_NS,
        runQueues: () => this.sched.dump(),
        timerQueues: () => this.timers.dump(now),
      };
      if (!handleKey(k, all, (s) => this.console.printk(s), machine))
        this.console.printk(`'${k}' pressed -> no handler for this key`);
    }
  }

  /** Frees a dying domain's memory and forgets it (called once nothing maps it). */
  releaseDyingDomain(d: Domain): void {
    if (this.domains.get(d.domid) !== d) return;
    if (this.trace.on) this.trace.record(TRC_DOM0_DOM_REM, [d.domid]);
    freeAllFrames(this, d);
    this.domains.delete(d.domid);
    this.console.forgetGuest(d.domid);
    this.dom0.evtchn.sendGlobalVirq(VIRQ_DOM_EXC);
    for (const l of this.listeners) l.destroyed?.(d.domid);
  }

  // --- running vCPUs ---------------------------------------------------------

  sliceExpired(): boolean {
    return this.slice.expired();
  }

  /**
   * Xen's hypercall_preempt_check: whether a long hypercall of `v`'s should
   * stop here and continue in a later slice. Only for a guest vCPU running
   * its slice; Dom0's kernel (the host process) finishes what it asks.
   */
  preemptCheck(v: Vcpu): boolean {
    return (v.running || v.domain.hvm?.inHypercall === true) && this.slice.expired();
  }

  /**
   * Xen's hypercall_create_continuation: `v` is descheduled when its current
   * hypercall returns (unless it is already blocking or yielding) and, when
   * it runs again, the hypercall is made again as `op` with `args`, which
   * say how far it got. The handler's own return value is then not seen.
   */
  createContinuation(v: Vcpu, op: number, ...args: number[]): number {
    v.setContinuation(op, args);
    if (v.suspend === Suspend.None) v.suspend = Suspend.Preempt;
    return 0;
  }

  /** A guest's memory.grow (VcpuHost): pages from its reservation, or -1. */
  growMemory(v: Vcpu, delta: number): number {
    return guestGrow(this, v.domain, delta);
  }

  /** Runs one slice of `v` (the scheduler's SliceRunner). */
  runSlice(v: Vcpu, sliceUs: number, now?: number): Suspend {
    const d = v.domain;
    this.slice.start(sliceUs, now);
    this.updateVcpuTime(v);
    let reason: Suspend;
    activity[ACT_DOMID] = d.domid;
    activity[ACT_VCPU] = v.id;
    try {
      reason = v.run(this);
    } catch (e) {
      // A trap while a suspension was under way is Asyncify overflowing the
      // save area: the stack was too deep to deschedule.
      const why =
        v.suspend !== Suspend.None && e instanceof WebAssembly.RuntimeError
          ? `wasm trap while descheduling: the call stack is deeper than the vCPU's ${v.inUpcall ? SAVE_UPCALL_BYTES : SAVE_MAIN_BYTES}-byte save area`
          : describeTrap(e);
      reason = Suspend.Shutdown;
      this.domainCrash(d, v, why);
    } finally {
      activity[ACT_DOMID] = -1;
      activity[ACT_HYPERCALL] = -1;
    }
    if (this.pendingDestroy.delete(d)) {
      v.state = VcpuState.Offline;
      this.finishDestroy(d);
    } else if (!d.runnable) {
      v.state = VcpuState.Runnable;
      return Suspend.Shutdown;
    }
    return reason;
  }

  /**
   * TRC_PV_HYPERCALL_V2: the op with a flag per argument that follows, and
   * the five arguments (all 32-bit on wasm32), for a guest vCPU's call: the
   * vCPU is the one the CPU is running, as its runstate records say. Dom0's
   * calls, made from the host's event loop where no vCPU of Dom0's is
   * scheduled, are not recorded.
   */
  private readonly tracedHypercall = (
    v: Vcpu,
    op: number,
    a1: number,
    a2: number,
    a3: number,
    a4: number,
    a5: number,
  ): number => {
    this.trace.record(TRC_PV_HYPERCALL_V2, [
      (op | HYPERCALL_V2_ALL_ARGS) >>> 0,
      a1,
      a2,
      a3,
      a4,
      a5,
    ]);
    return Hypervisor.prototype.hypercall.call(this, v, op, a1, a2, a3, a4, a5);
  };

  /** The hypercall import: dispatch, then turn a suspend request into an unwind. */
  hypercall(
    v: Vcpu,
    op: number,
    a1: number,
    a2: number,
    a3: number,
    a4: number,
    a5: number,
  ): number {
    const rc = this.dispatch(v, op, a1, a2, a3, a4, a5);
    // One flag on the usual path: each further check cost 1–3 ns of a 12 ns call.
    if (v.suspend !== Suspend.None) v.startUnwind(v.suspend, rc);
    else if (v.attention) this.attend(v, rc);
    return rc;
  }

  /** A hypercall's return when `v.attention` is set: stop, enter the upcall, or clear the flag. */
  private attend(v: Vcpu, rc: number): void {
    if (!v.domain.runnable) v.startUnwind(Suspend.Shutdown, rc);
    else if (!v.upcallPending || v.domain.kernel?.hasCallback !== true) v.attention = false;
    else if (!v.inUpcall && v.upcallDeliverable()) {
      if (this.trace.on)
        this.trace.record(TRC_PV_EVTCHN_UPCALL, [((v.domain.domid << 16) | v.id) >>> 0]);
      v.startUnwind(Suspend.Upcall, rc);
    }
    // Otherwise pending but masked, or inside the upcall: keep looking, so that
    // the hypercall a guest makes after unmasking delivers it.
  }

  /** Runs hypercall `op` for `v` and returns its result (multicall uses this too). */
  dispatch(
    v: Vcpu,
    op: number,
    a1: number,
    a2: number,
    a3: number,
    a4: number,
    a5: number,
  ): number {
    try {
      return invokeHypercall(this, v, op, a1, a2, a3, a4, a5);
    } catch (e) {
      if (e instanceof GuestFault) return -XenErrno.EFAULT;
      throw e;
    }
  }

  /** -ENOSYS, reported on the console once per domain and name (kept off the hot path). */
  unimplemented(v: Vcpu, op: number): number {
    // Numbers past the table share one report, so garbage cannot flood the console.
    const inTable = Number.isInteger(op) && op >= 0 && op < NR_HYPERCALLS;
    const name = inTable ? hypercallName(op) : "out-of-range";
    if (!v.domain.loggedUnimplemented.has(name)) {
      v.domain.loggedUnimplemented.add(name);
      this.console.printk(
        inTable
          ? `d${v.domain.domid}: hypercall ${name} (${op}) is not implemented on wasm32: -ENOSYS`
          : `d${v.domain.domid}: hypercall number ${op} is past the table (${NR_HYPERCALLS}): -ENOSYS (reported once)`,
      );
    }
    return -XenErrno.ENOSYS;
  }

  /** Stops every guest and releases the machine. */
  async dispose(): Promise<void> {
    for (const id of [...this.domains.keys()]) this.destroyDomain(id);
    this.sched.dispose();
    this.timers.dispose();
    await this.slice.dispose();
    await watchdog.unsubscribe(this.onStall);
  }
}

/** A one-line description of what a guest threw, naming the trap. */
export function describeTrap(e: unknown): string {
  if (e instanceof WebAssembly.RuntimeError) return `wasm trap: ${e.message}`;
  if (e instanceof RangeError && /call stack/.test(e.message)) return "wasm trap: stack overflow";
  if (e instanceof GuestExit) return e.message;
  if (e instanceof Error) return `hypervisor error while running the guest: ${e.message}`;
  return `unknown failure: ${String(e)}`;
}
