/**
 * Domains (Xen's `struct domain` and `domain.c`): identity, memory with its
 * pseudo-physical-to-machine map, vCPUs, lifecycle state, and the special
 * pages of the wasm32 layout.
 */
import {
  INVALID_MFN,
  PAGE_SIZE,
  _mfn,
  mfn_x,
  pfn_to_paddr,
  type Mfn,
  type Pfn,
} from "../include/xen/mm.js";
import { PFN_SHARED_INFO, PFN_START_INFO } from "../arch/wasm32/config.js";
import { Vcpu, VcpuState } from "../arch/wasm32/vcpu.js";
import type { Kernel } from "../arch/wasm32/kernel.js";
import { GuestMemory } from "./guest_access.js";
import { EventChannels, type EventKick } from "./event_channel.js";
import { GrantTable } from "./grant_table.js";
import { SHUTDOWN_NAMES, SHUTDOWN_crash } from "../include/public/sched.js";
import type { HvmDomain } from "./ioreq.js";
import type { HvmImage } from "../arch/wasm32/hvm_image.js";
import type { LogDirty } from "./paging.js";
import { HVM_RUNNING } from "../arch/wasm32/hvm_ctl.js";
import { NOW } from "./time.js";

/** What `xl list` shows in its State column, one letter each: r b p s c d. */
export type DomainRunState = "running" | "blocked" | "paused" | "shutdown" | "crashed" | "dying";

/** Per-domain limits set at creation (xl.cfg max_event_channels, max_grant_frames, ...). */
export interface DomainLimits {
  /** Highest event channel port (Xen's max_evtchn_port). */
  maxEvtchnPort: number;
  maxGrantFrames: number;
  maxMaptrackFrames: number;
}

/** A domain creation that failed: says what was wrong, with Xen's errno. */
export class DomainCreateError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/** Bytes of console output kept per domain for readers that attach late. */
export const CONSOLE_KEEP_BYTES = 64 * 1024;

export class Domain {
  readonly vcpus: Vcpu[] = [];
  readonly mem: GuestMemory;
  /** pfn → mfn for every pfn up to maxmem; INVALID_MFN where the frame is not populated. */
  p2m: Uint32Array;
  /** Frames allocated to the domain but not in its physmap (increase_reservation). */
  readonly unmapped: Mfn[] = [];
  /**
   * Frames behind the pfns below the top of linear memory that are not
   * populated (released with decrease_reservation, or above the pfns asked
   * for in the last wasm page of a growth). Wasm memory cannot shrink or
   * unmap a page, so every page below the top may cost the host real memory:
   * it stays charged to the domain, out of the free heap, until the domain
   * repopulates it or dies (docs/arch-wasm32.md, "Memory accounting").
   */
  readonly holes: Mfn[] = [];
  /** Pages the domain holds (Xen's tot_pages). */
  totPages = 0;
  /** Most pages the domain may hold (Xen's max_pages). */
  maxPages: number;
  sharedInfoAddr = pfn_to_paddr(PFN_SHARED_INFO);
  /**
   * The domain's system time less the host's (ns): 0 for a domain made
   * here; a restored or migrated one goes on from the time it had when it
   * was saved (domain_context.ts), on whatever host, as Xen carries a
   * guest's time across with its TSC_INFO record.
   */
  stimeOffsetNs = 0;
  pauseCount = 0;
  isShutdown = false;
  shutdownReason = -1;
  /** Code set with SCHEDOP_shutdown_code, reported with a later shutdown. */
  shutdownCode = -1;
  isDying = false;
  /**
   * A console domain (Xen's is_console): its console_io writes are its
   * console. True unless the toolstack gives it a PV console ring
   * (console.ts says why).
   */
  isConsole = true;
  /** Why the domain crashed, for the console and `xl list -l`. */
  crashMessage: string | undefined;
  readonly evtchn: EventChannels;
  readonly gnttab: GrantTable;
  weight = 256;
  cap = 0;
  /** Hypercalls already reported as unimplemented for this domain. */
  readonly loggedUnimplemented = new Set<string>();
  /** Console output not yet ended by a newline (console_io is line-buffered). */
  private consoleLine = "";
  /** Streaming, so a UTF-8 character split across two writes decodes whole. */
  private readonly consoleDecoder = new TextDecoder();
  private consoleKept: Uint8Array[] = [];
  private consoleKeptBytes = 0;
  readonly consoleListeners = new Set<(bytes: Uint8Array) => void>();
  /** A 16-byte handle (UUID) as `xl` shows and XENVER_guest_handle returns. */
  readonly handle: Uint8Array;
  /**
   * An HVM domain's program, memory, parameters, ioreq servers and vCPU
   * thread; undefined for PV domains. An HVM domain's `mem` is not the
   * program's memory but a page area of the hypervisor's own (shared_info,
   * the console and xenstore pages, grant frames), which the program cannot
   * reach: events sent to it land there, never in the program's data. A
   * program with PV drivers (it imports xen.hypercall) is the exception: its
   * memory is `mem`, with wasm32's architecture area below 256 KiB as a PV
   * kernel's (docs/hvm.md, "PV drivers on HVM").
   */
  hvm: HvmDomain | undefined;
  /**
   * An HVM domain the builder is making (XEN_DOMCTL_createdomain with
   * XEN_DOMCTL_CDF_hvm), until its vCPU context starts it
   * (Hypervisor.startHvm): the program bound to it and its RTC offset
   * (XEN_DOMCTL_settimeoffset). Its pfns are only frames until then.
   */
  hvmBuild: { image: HvmImage | undefined; rtcTimeOffsetSeconds: number } | undefined;
  /**
   * Times a vCPU has entered the domain's code (a slice, an upcall): while
   * it does not change, only others can have written the domain's memory
   * (log-dirty's quiet rounds, paging.ts).
   */
  guestEntries = 0;
  /**
   * How many privcmd mappings Dom0 holds of each pfn (Hypervisor.
   * foreignMapBatch): pages Dom0 may write at any time, which log-dirty's
   * quiet rounds compare. As long as the highest pfn ever mapped (doubling
   * as it grows), two bytes a pfn; a count that reaches the most it can
   * hold stays there, the page a candidate for good (never too few).
   */
  private foreignMaps: Uint16Array | undefined;
  /** Pfns with at least one privcmd mapping held. */
  private foreignMapped = 0;

  /** Dom0 mapped pfn `p` (a valid pfn of this domain). */
  addForeignMap(p: number): void {
    let m = this.foreignMaps;
    if (!m || p >= m.length) {
      const grown = new Uint16Array(Math.max(64, 2 ** Math.ceil(Math.log2(p + 1))));
      if (m) grown.set(m);
      this.foreignMaps = m = grown;
    }
    const n = m[p]!;
    if (n === 0xffff) return;
    if (n === 0) this.foreignMapped++;
    m[p] = n + 1;
  }

  /** Dom0 unmapped pfn `p`; false if it held no mapping of it. */
  dropForeignMap(p: number): boolean {
    const m = this.foreignMaps;
    if (!m || !(p >= 0 && p < m.length) || m[p] === 0) return false;
    if (m[p] === 0xffff) return true;
    if (--m[p]! === 0) this.foreignMapped--;
    return true;
  }

  /** The pfns Dom0 holds privcmd mappings of. */
  foreignMappedPfns(): number[] {
    const out: number[] = [];
    const m = this.foreignMaps;
    if (!m || this.foreignMapped === 0) return out;
    for (let p = 0; p < m.length; p++) if (m[p] !== 0) out.push(p);
    return out;
  }
  /** Dom0 mapped the whole memory once (mapForeignMemory): every log-dirty round compares it all. */
  wholeMemoryMapped = false;
  /** Log-dirty mode's copy of the memory (XEN_DOMCTL_shadow_op), while it is on. */
  logDirty: LogDirty | undefined;
  /** The vCPU that asked for SHUTDOWN_suspend: its hypercall returns 1 if the domain is resumed. */
  suspendedBy: Vcpu | undefined;

  /**
   * @param kernel the guest kernel; undefined for Dom0, whose kernel is the
   *   host process itself, and for a domain being built until the builder
   *   binds its module (XEN_DOMCTL_wasm32_module).
   */
  constructor(
    readonly domid: number,
    public name: string,
    readonly privileged: boolean,
    public kernel: Kernel | undefined,
    public wasmMemory: WebAssembly.Memory,
    maxPfns: number,
    maxPages: number,
    readonly cmdline: string,
    handle: Uint8Array,
    limits: DomainLimits,
    kick: EventKick,
  ) {
    this.mem = new GuestMemory(wasmMemory.buffer, wasmMemory);
    this.p2m = new Uint32Array(maxPfns).fill(mfn_x(INVALID_MFN));
    this.maxPages = maxPages;
    this.evtchn = new EventChannels(this, kick, limits.maxEvtchnPort);
    this.gnttab = new GrantTable(this, limits.maxGrantFrames, limits.maxMaptrackFrames);
    this.handle = handle;
    this.hvm = undefined;
  }

  /** Pfns the domain may address: up to its maxmem. */
  get nrPfns(): number {
    return this.p2m.length;
  }

  /** Lets the domain address pfns up to `pfns` (XEN_DOMCTL_max_mem raising maxmem). */
  extendPhysmap(pfns: number): void {
    if (pfns <= this.p2m.length) return;
    const p2m = new Uint32Array(pfns).fill(mfn_x(INVALID_MFN));
    p2m.set(this.p2m);
    this.p2m = p2m;
  }

  /**
   * Pfns its linear memory has now: every one below is charged to the
   * domain. An HVM domain's is its program's memory (`mem` may be the Xen
   * area beside it).
   */
  get topPfn(): number {
    return (this.hvm ? this.hvm.memory.buffer.byteLength : this.mem.size) / PAGE_SIZE;
  }

  /**
   * Whether `pfn` is backed and addressable. The pages of an HVM program
   * with PV drivers are all populated at creation, but only those below its
   * linear memory's current size can be addressed.
   */
  isPopulated(pfn: Pfn): boolean {
    if (!(pfn < this.p2m.length && this.p2m[pfn] !== mfn_x(INVALID_MFN))) return false;
    if (!this.hvm || (pfn + 1) * PAGE_SIZE <= this.mem.size) return true;
    this.mem.grown();
    return (pfn + 1) * PAGE_SIZE <= this.mem.size;
  }

  /**
   * Whether the linear memory may still be replaced rather than grown: true
   * for a domain being built (Hypervisor.createEmptyDomain) until anything
   * can hold a view of it (a vCPU instance, a page view, a foreign
   * mapping). Growing a shared memory in place costs far more once
   * thousands exist; a memory nothing holds can be swapped for a larger one.
   */
  memoryReplaceable = false;

  /** Views of single pages, made on first use (grant copies of whole pages read them). */
  private readonly pageViews: (Uint8Array | undefined)[] = [];

  /** Page `pfn` of this domain's memory as a view (cached; valid for the domain's life). */
  pageView(pfn: number): Uint8Array {
    let v = this.pageViews[pfn];
    if (!v) {
      this.memoryReplaceable = false;
      this.mem.check(pfn * PAGE_SIZE, PAGE_SIZE);
      v = this.mem.u8.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
      this.pageViews[pfn] = v;
    }
    return v;
  }

  /** The machine frame behind `pfn`, or INVALID_MFN. */
  p2mLookup(pfn: Pfn): Mfn {
    return pfn < this.p2m.length ? _mfn(this.p2m[pfn]!) : INVALID_MFN;
  }

  /** The domain's system time (ns): what its vcpu_time_info says, and its timers count in. */
  stime(): number {
    return NOW() + this.stimeOffsetNs;
  }

  /** A deadline in the domain's system time, as host system time (what its timers count in). */
  hostTime(guestNs: number): number {
    return guestNs - this.stimeOffsetNs;
  }

  startInfoAddr(): number {
    return pfn_to_paddr(PFN_START_INFO);
  }

  /** Whether any vCPU is schedulable: up, not paused, not shut down. */
  get runnable(): boolean {
    return this.pauseCount === 0 && !this.isShutdown && !this.isDying;
  }

  /** The single state `xl list` would show first for this domain. */
  get runState(): DomainRunState {
    if (this.isDying) return "dying";
    if (this.isShutdown) return this.shutdownReason === SHUTDOWN_crash ? "crashed" : "shutdown";
    if (this.pauseCount > 0) return "paused";
    if (this.hvm) {
      // Waiting for an ioreq's answer is the HVM counterpart of SCHEDOP_block.
      return this.hvm.vcpu?.state === HVM_RUNNING ? "running" : "blocked";
    }
    if (this.vcpus.some((v) => v.state === VcpuState.Running || v.state === VcpuState.Runnable)) {
      return "running";
    }
    return "blocked";
  }

  /** Name of the shutdown reason, or undefined while not shut down. */
  get shutdownName(): string | undefined {
    return this.isShutdown ? SHUTDOWN_NAMES[this.shutdownReason] : undefined;
  }

  /**
   * Appends guest console output (console_io). Listeners see the bytes at once;
   * the hypervisor console gets whole lines through `emitLine`.
   */
  consoleWrite(bytes: Uint8Array, emitLine: (line: string) => void): void {
    this.consoleKept.push(bytes);
    this.consoleKeptBytes += bytes.length;
    while (this.consoleKeptBytes > CONSOLE_KEEP_BYTES && this.consoleKept.length > 1) {
      this.consoleKeptBytes -= this.consoleKept.shift()!.length;
    }
    for (const l of this.consoleListeners) l(bytes);
    this.consoleLine += this.consoleDecoder.decode(bytes, { stream: true });
    let nl: number;
    while ((nl = this.consoleLine.indexOf("\n")) >= 0) {
      emitLine(this.consoleLine.slice(0, nl));
      this.consoleLine = this.consoleLine.slice(nl + 1);
    }
    if (this.consoleLine.length > 4096) {
      emitLine(this.consoleLine);
      this.consoleLine = "";
    }
  }

  /** Everything kept of this domain's console output (the last CONSOLE_KEEP_BYTES). */
  consoleHistory(): Uint8Array {
    return Buffer.concat(this.consoleKept);
  }
}
