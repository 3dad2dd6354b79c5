/**
 * libxenguest's domain builder for wasm32 PV guests (Xen's
 * `tools/libs/guest/xg_dom_core.c`, `xg_dom_boot.c` and `xg_dom_x86.c`): a
 * domain made with hypercalls only, step by step, each step logged as
 * libxc logs it (`xl -v create` shows them):
 *
 * 1. xc_dom_kernel_file / xc_dom_parse_image: the kernel file is read and
 *    parsed (the module's data segments and memory import; binary.ts is
 *    the parser, shared with the hypervisor as Xen shares libelf).
 * 2. xc_domain_create (XEN_DOMCTL_createdomain): an empty, paused domain;
 *    max_vcpus, the label and max_mem follow.
 * 3. xc_dom_boot_mem_init: XENMEM_populate_physmap of every page, for the
 *    new domain, in 64 KiB extents.
 * 4. xc_dom_build_image: the module goes to the hypervisor
 *    (XEN_DOMCTL_wasm32_module: bound by hash, uploaded first if the
 *    hypervisor does not have it), and the data segments are written
 *    through a foreign mapping (privcmd's MMAPBATCH_V2), as libxc copies a
 *    kernel's segments into the guest.
 * 5. The magic pages: start_info (with the xenstore and console ports,
 *    allocated unbound for Dom0 with EVTCHNOP_alloc_unbound), wasm32's boot
 *    page, every vCPU's upcall mask in shared_info, and the grant entries
 *    Dom0 needs for those rings (xc_dom_gnttab_seed).
 * 6. xc_vcpu_setcontext for each online vCPU: wasm32's vcpu_guest_context
 *    (the entry point and its argument).
 *
 * The caller (libxl) then introduces the domain to xenstore, adds its
 * devices and unpauses it. docs/arch-wasm32.md, "Building a domain".
 */
import { createHash } from "node:crypto";
import { FileCache, readHostFile } from "../../xen/common/host_file.js";
import { stripKernel, type DataSegment } from "../../xen/arch/wasm32/binary.js";
import { MAX_KERNEL_BYTES } from "../../xen/arch/wasm32/kernel.js";
import {
  FRAMES_PER_WASM_PAGE,
  GUEST_IMAGE_BASE,
  MAX_VIRT_CPUS,
  MIN_DOMAIN_FRAMES,
  PFN_BOOT_INFO,
  PFN_CONSOLE,
  PFN_GRANT_TABLE,
  PFN_SHARED_INFO,
  PFN_START_INFO,
  PFN_XENSTORE,
} from "../../xen/arch/wasm32/config.js";
import {
  VGCF_online,
  WASM32_ENTRY_START,
  WASM32_ENTRY_START_VCPU,
  arch_wasm32_boot,
  shared_info,
  start_info,
  vcpu_guest_context,
  vcpu_info,
} from "../../xen/include/public/arch-wasm32.js";
import {
  GNTTAB_RESERVED_CONSOLE,
  GNTTAB_RESERVED_XENSTORE,
  GTF_permit_access,
  grant_entry_v1,
} from "../../xen/include/public/grant_table.js";
import * as DC from "../../xen/include/public/domctl.js";
import { XEN_DOMCTL_WASM32_MODULE_has_start_vcpu } from "../../xen/include/public/domctl.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";
import { XenErrno } from "../../xen/include/public/errno.js";
import { XcError, type XcInterface } from "./xc.js";
import {
  MAX_BATCH,
  MAX_READ_RECORD,
  REC_TYPE_END,
  REC_TYPE_PAGE_DATA,
  REC_TYPE_VERIFY,
  REC_TYPE_WASM32_CONTEXT,
  REC_TYPE_WASM32_MODULE,
  moduleRecord,
  parseModuleRecord,
  DHDR_TYPE_WASM32_PV,
  DHDR_TYPE_WASM32_HVM,
  StreamError,
  checkStreamHeaders,
  nextRecord,
  pageDataPfns,
  pageDataRecord,
  record,
  streamHeaders,
  type SequentialSource,
  type StreamReader,
  type XcStream,
} from "./xc_sr.js";
import {
  XEN_DOMCTL_SHADOW_OP_CLEAN,
  XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY,
  XEN_DOMCTL_SHADOW_OP_OFF,
} from "../../xen/include/public/domctl.js";

/**
 * How a live save goes (Xen's libxc save policy, and libxl_domain_suspend's
 * properties max_iters and min_remaining): rounds of dirty pages while the
 * domain runs, at most `maxIters`, ending early once fewer than
 * `minRemaining` pages were dirtied in a round; then `suspend` stops the
 * domain for the last round.
 */
export interface LiveSaveOptions {
  maxIters: number;
  minRemaining: number;
  /** Stops the domain (pause, or the PV suspend protocol); the downtime starts. */
  suspend(): Promise<void>;
  /** xl migrate --debug: every page again after the last round, behind a VERIFY record. */
  verify?: boolean;
  /** Bytes that follow libxc's END in the stream (libxl's END record), written with it. */
  trailer?: Uint8Array[];
  /**
   * An HVM domain (tools/libxc/xc_hvm.ts): the stream's domain type is
   * wasm32 HVM, and once it is stopped, `finish` gives the records that end
   * libxc's stream in place of WASM32_CONTEXT (with `verify`, VERIFY and
   * every page again before them) and libxl's that follow its END.
   */
  hvm?: {
    finish(verify: boolean): Promise<{ libxc: Uint8Array[]; libxl: Uint8Array[] }>;
  };
}

/** A round's PAGE_DATA records and how many pages they carry. */
interface Collected {
  records: Uint8Array[];
  pages: number;
}

/** What a live save did: pages sent in each round (the last one with the domain stopped). */
export interface LiveSaveStats {
  rounds: number[];
  /** The last round's pages, sent while the domain was stopped. */
  stopped: number;
}

/** A kernel as libxc holds it after xc_dom_kernel_file and xc_dom_parse_image. */
export interface XcDomImage {
  readonly path: string;
  readonly bytes: Uint8Array;
  /** sha256 of the bytes: the module's name for the hypervisor. */
  readonly sha256: Uint8Array;
  readonly segments: readonly DataSegment[];
  /** The memory import's minimum, in 64 KiB pages. */
  readonly minPages: number;
}

/** Images parsed from files, while the files stay the same. */
const images = new FileCache<XcDomImage>();

/**
 * xc_dom_kernel_file + xc_dom_parse_image: reads the kernel (without
 * blocking, refusing what is not a regular file of at most
 * MAX_KERNEL_BYTES) and parses its module. A file unchanged since it was
 * last read is not read again.
 */
export function xcDomKernelFile(path: string): Promise<XcDomImage> {
  return images.get(path, async () => {
    const { bytes } = await readHostFile(path, { what: "kernel", maxBytes: MAX_KERNEL_BYTES });
    let parsed;
    try {
      parsed = stripKernel(bytes);
    } catch (e) {
      throw new Error(`kernel ${path}: ${(e as Error).message}`, { cause: e });
    }
    return {
      path,
      bytes,
      sha256: createHash("sha256").update(bytes).digest(),
      segments: parsed.segments,
      minPages: parsed.minPages,
    };
  });
}

/** What the builder needs to know of the domain to build. */
export interface XcDomConfig {
  /** 0: the hypervisor chooses. */
  domid: number;
  name: string;
  handle: Uint8Array;
  memoryMiB: number;
  maxmemMiB: number;
  vcpus: number;
  maxVcpus: number;
  cmdline: string;
  maxEvtchnPort: number;
  /** -1: the hypervisor's default. */
  maxGrantFrames: number;
  maxMaptrackFrames: number;
}

/** What the builder leaves for libxl: the domain and its two rings' ports. */
export interface XcDomBuilt {
  domid: number;
  storeEvtchn: number;
  consoleEvtchn: number;
  /** A restored guest that had suspended itself: it binds its rings and sets its watches again. */
  reconnect?: boolean;
}

/** Dom0's foreign mapping of a domain's pages (Privcmd.mmapBatchV2). */
export type ForeignMap = (
  domid: number,
  gfns: readonly number[],
) => {
  pages: (Uint8Array | undefined)[];
  err: number[];
  /** The pages as one view, when the mapping gives them so (consecutive pfns, all mapped). */
  region?: Uint8Array;
};

/**
 * libxenforeignmemory over privcmd: map (xenforeignmemory_map) and unmap
 * (xenforeignmemory_unmap) a domain's pages. A page stays a candidate of
 * the domain's log-dirty rounds while it is mapped (xen/common/paging.ts),
 * so the builder unmaps what it has written.
 */
export interface ForeignMemory {
  readonly map: ForeignMap;
  readonly unmap: (domid: number, gfns: readonly number[]) => void;
}

/** Extents populated per XENMEM_populate_physmap call (a 32 KiB extent list). */
const POPULATE_BATCH = 4096;
/** Extents of 16 pages: one 64 KiB wasm page. */
const EXTENT_ORDER = 4;
/** Bytes of module per upload call: the hypercall buffers hold 256 KiB. */
const UPLOAD_CHUNK = 192 * 1024;
/** How long a bind waits for the hypervisor's check of a new module. */
const MODULE_WAIT_MS = 120_000;

export class XcDom {
  /**
   * @param log libxc's logger: each step as a line of `xl -v`'s output
   *   ("domainbuilder: detail: ...").
   */
  constructor(
    private readonly xc: XcInterface,
    private readonly fmem: ForeignMemory,
    private readonly log: (line: string) => void = () => {},
    /** The pages as log-dirty's copy holds them (Privcmd.logDirtySnapshot): what a live save sends. */
    private readonly snapshot?: ForeignMap,
  ) {}

  private detail(msg: string): void {
    this.log(`domainbuilder: detail: ${msg}`);
  }

  /**
   * Creates and builds domain `cfg` from `image`, leaving it paused. On
   * failure the domain is destroyed and the error names the step.
   */
  async build(cfg: XcDomConfig, image: XcDomImage): Promise<XcDomBuilt> {
    const xc = this.xc;
    this.detail(`xc_dom_allocate: cmdline="${cfg.cmdline}", features=""`);
    this.detail(`xc_dom_kernel_file: filename="${image.path}"`);
    this.detail(`xc_dom_malloc_filemap    : ${Math.ceil(image.bytes.length / 1024)} kB`);
    this.detail(
      `xc_dom_parse_image: wasm32 module, ${image.segments.length} data segments, memory import ${image.minPages * 64} KiB`,
    );
    const { memoryMiB: mem, maxmemMiB: max, vcpus, maxVcpus } = cfg;
    if (!Number.isInteger(mem) || mem <= 0)
      throw new Error(`memory=${mem} is not a positive whole number of MiB`);
    if (!Number.isInteger(max) || max < mem)
      throw new Error(`maxmem=${max} is less than memory=${mem}`);
    if (max > 4095) throw new Error(`maxmem=${max}M exceeds the 4 GiB of a wasm32 guest`);
    if (!Number.isInteger(vcpus) || vcpus < 1 || maxVcpus < vcpus || maxVcpus > MAX_VIRT_CPUS)
      throw new Error(
        `vcpus=${vcpus} maxvcpus=${maxVcpus}: must be 1 ≤ vcpus ≤ maxvcpus ≤ ${MAX_VIRT_CPUS}`,
      );
    const pages = cfg.memoryMiB * 256;
    if (pages < MIN_DOMAIN_FRAMES)
      throw new Error(
        `memory=${cfg.memoryMiB}M is below the wasm32 minimum of ${(MIN_DOMAIN_FRAMES * PAGE_SIZE) >> 10} KiB`,
      );
    if (image.minPages * FRAMES_PER_WASM_PAGE > pages)
      throw new Error(
        `the kernel needs ${image.minPages * 64} KiB of memory, memory is ${cfg.memoryMiB * 1024} KiB`,
      );
    for (const s of image.segments) {
      if (s.offset < GUEST_IMAGE_BASE)
        throw new Error(
          `kernel data at 0x${s.offset.toString(16)} overlaps the wasm32 architecture area (link with --memoryBase ${GUEST_IMAGE_BASE})`,
        );
      if (s.offset + s.data.length > pages * PAGE_SIZE)
        throw new Error(`kernel data does not fit in memory=${cfg.memoryMiB}M`);
    }
    const domid = await this.createDomain(cfg);
    try {
      return await this.buildInto(domid, cfg, image, pages);
    } catch (e) {
      await xc.domainDestroy(domid).catch(() => {});
      throw e;
    }
  }

  /**
   * xc_domain_create and what libxl does next, before any memory:
   * max_vcpus, the label, max_mem. Leaves nothing when a step fails.
   */
  private async createDomain(
    cfg: Omit<XcDomConfig, "memoryMiB" | "vcpus" | "cmdline">,
    /** XEN_DOMCTL_CDF_*: an HVM domain's flags. */
    flags = 0,
  ): Promise<number> {
    const xc = this.xc;
    const domid = await xc.domainCreate(cfg.domid, {
      flags,
      handle: cfg.handle,
      maxVcpus: cfg.maxVcpus,
      maxEvtchnPort: cfg.maxEvtchnPort,
      maxGrantFrames: cfg.maxGrantFrames,
      maxMaptrackFrames: cfg.maxMaptrackFrames,
    });
    this.detail(`xc_domain_create: domid ${domid}, max_vcpus ${cfg.maxVcpus}`);
    try {
      await xc.domainMaxVcpus(domid, cfg.maxVcpus);
      await xc.wasm32SetLabel(domid, cfg.name);
      await xc.domainSetMaxMem(domid, cfg.maxmemMiB * 1024);
    } catch (e) {
      await xc.domainDestroy(domid).catch(() => {});
      throw e;
    }
    return domid;
  }

  private async buildInto(
    domid: number,
    cfg: XcDomConfig,
    image: XcDomImage,
    pages: number,
  ): Promise<XcDomBuilt> {
    const xc = this.xc;
    await this.populateAll(domid, cfg.memoryMiB);
    this.detail(`xc_dom_build_image: called`);
    const exports = await this.bindModule(domid, image);
    if (cfg.vcpus > 1 && !(exports.flags & XEN_DOMCTL_WASM32_MODULE_has_start_vcpu))
      throw new Error(`vcpus=${cfg.vcpus} but the kernel has no _start_vcpu export`);
    for (const s of image.segments) {
      this.writeGuest(domid, s.offset, s.data);
    }
    const bytes = image.segments.reduce((n, s) => n + s.data.length, 0);
    this.detail(
      `xc_dom_load_wasm_kernel: ${image.segments.length} segments, ${bytes} bytes from 0x${GUEST_IMAGE_BASE.toString(16)}`,
    );
    const storeEvtchn = await xc.evtchnAllocUnbound(domid, 0);
    const consoleEvtchn = await xc.evtchnAllocUnbound(domid, 0);
    this.detail(
      `xc_dom_alloc_magic_pages: start_info pfn ${PFN_START_INFO}, xenstore pfn ${PFN_XENSTORE} (evtchn ${storeEvtchn}), console pfn ${PFN_CONSOLE} (evtchn ${consoleEvtchn})`,
    );
    this.writeStartInfo(domid, cfg, pages, storeEvtchn, consoleEvtchn);
    this.writeSharedInfo(domid, cfg.maxVcpus);
    this.detail(`xc_dom_gnttab_seed: console and xenstore pages granted to domain 0`);
    this.seedGrants(domid);
    this.detail(`xc_dom_boot_image: called`);
    for (let v = 0; v < cfg.vcpus; v++) {
      const ctxt = new Uint8Array(vcpu_guest_context.size);
      const dv = new DataView(ctxt.buffer);
      const f = vcpu_guest_context.fields;
      dv.setUint32(f.flags.offset, VGCF_online, true);
      dv.setUint32(f.entry.offset, v === 0 ? WASM32_ENTRY_START : WASM32_ENTRY_START_VCPU, true);
      dv.setUint32(f.arg.offset, v === 0 ? PFN_START_INFO * PAGE_SIZE : v, true);
      await xc.vcpuSetContext(domid, v, ctxt);
      this.detail(
        `vcpu_wasm32: vcpu ${v} at ${v === 0 ? "_start(start_info)" : `_start_vcpu(${v})`}`,
      );
    }
    this.detail(`xc_dom_release: called`);
    return { domid, storeEvtchn, consoleEvtchn };
  }

  /**
   * xc_dom_mem_init and xc_dom_boot_mem_init: every page of `memoryMiB`,
   * pfn 0 up, in 64 KiB extents (order 4: one wasm page), as libxc
   * populates in superpages where it can; memory is whole MiB, so they
   * always fit.
   */
  private async populateAll(domid: number, memoryMiB: number): Promise<void> {
    const pages = memoryMiB * 256;
    this.detail(
      `xc_dom_mem_init: mem ${memoryMiB} MB, pages 0x${pages.toString(16)} pages, 4k each`,
    );
    this.detail(`xc_dom_boot_mem_init: called`);
    const extents = pages / FRAMES_PER_WASM_PAGE;
    for (let e = 0; e < extents; e += POPULATE_BATCH) {
      const n = Math.min(POPULATE_BATCH, extents - e);
      try {
        await this.xc.populatePhysmapExact(
          domid,
          Array.from({ length: n }, (_, i) => (e + i) * FRAMES_PER_WASM_PAGE),
          EXTENT_ORDER,
        );
      } catch (err) {
        throw new Error(
          `xc_dom_boot_mem_init: can't allocate memory for the domain (${pages} pages): ${(err as Error).message}`,
          { cause: err },
        );
      }
    }
  }

  /**
   * libxenguest's HVM build (libxl__build_hvm, xc_dom_boot_mem_init) on
   * wasm32, through hypercalls only: XEN_DOMCTL_createdomain with
   * XEN_DOMCTL_CDF_hvm, max_vcpus (one: WASI has no threads), the label,
   * max_mem, settimeoffset (rtc_timeoffset), XENMEM_populate_physmap of all
   * of `memory` (an HVM guest's RAM is populated whole), the program bound
   * by hash (uploaded first when the hypervisor does not have it), then
   * setvcpucontext, which makes the program's memory and starts its vCPU's
   * thread, paused; or, for a restore, sethvmcontext with the saved
   * context. Leaves the domain paused; on failure it is destroyed and the
   * error names the step.
   */
  async buildHvm(
    cfg: Omit<XcDomConfig, "vcpus" | "maxVcpus" | "cmdline"> & { rtcTimeOffsetSeconds: number },
    program: { sha256: Uint8Array; bytes?: Uint8Array; saveable: boolean; path?: string },
    /** A WASM32_HVM_CONTEXT to restore instead of starting at _start. */
    context?: Uint8Array,
  ): Promise<{ domid: number; pvDrivers: boolean }> {
    const xc = this.xc;
    const mem = cfg.memoryMiB;
    if (!Number.isInteger(mem) || mem <= 0)
      throw new Error(`memory=${mem} is not a positive whole number of MiB`);
    if (mem > 4095) throw new Error(`memory=${mem}M exceeds the 4 GiB of a wasm32 guest`);
    const pages = mem * 256;
    this.detail(`xc_dom_allocate: cmdline="", features=""`);
    if (program.path) this.detail(`xc_dom_kernel_file: filename="${program.path}"`);
    const domid = await this.createDomain(
      { ...cfg, maxmemMiB: mem, maxVcpus: 1 },
      DC.XEN_DOMCTL_CDF_hvm | DC.XEN_DOMCTL_CDF_hap,
    );
    this.detail(`xc_hvm_build: domain ${domid}, type wasm32 HVM`);
    try {
      if (cfg.rtcTimeOffsetSeconds !== 0)
        await xc.domainSetTimeOffset(domid, cfg.rtcTimeOffsetSeconds);
      await this.populateAll(domid, mem);
      const bound = await this.bindModule(domid, program, { saveable: program.saveable });
      const pvDrivers = (bound.flags & DC.XEN_DOMCTL_WASM32_MODULE_pv_drivers) !== 0;
      if (bound.minPages * FRAMES_PER_WASM_PAGE > pages)
        throw new Error(
          `the program needs ${bound.minPages * 64} KiB of memory, memory is ${mem * 1024} KiB`,
        );
      this.detail(
        `xc_dom_wasm32_module: WASI program bound, memory import ${bound.minPages * 64} KiB${pvDrivers ? ", with PV drivers" : ""}${program.saveable ? ", saveable" : ""}`,
      );
      if (context) {
        await xc.domainHvmSetContext(domid, context);
        this.detail(`xc_domain_hvm_setcontext: ${context.length} bytes`);
      } else {
        const ctxt = new Uint8Array(vcpu_guest_context.size);
        const dv = new DataView(ctxt.buffer);
        const f = vcpu_guest_context.fields;
        dv.setUint32(f.flags.offset, VGCF_online, true);
        dv.setUint32(f.entry.offset, WASM32_ENTRY_START, true);
        await xc.vcpuSetContext(domid, 0, ctxt);
        this.detail(`vcpu_wasm32: vcpu 0 at the program's _start`);
      }
      return { domid, pvDrivers };
    } catch (e) {
      await xc.domainDestroy(domid).catch(() => {});
      throw e;
    }
  }

  /**
   * xc_domain_save: the libxc stream of paused PV domain `domid`, whose
   * module is `image` (docs/save-format.md): headers, the module, every
   * page (pfns the domain has not populated go as XTAB), the context, END.
   */
  async save(domid: number, image: Pick<XcDomImage, "sha256" | "bytes">): Promise<Uint8Array[]> {
    const info = await this.xc.domainGetInfo(domid);
    if (!info.paused) throw new Error(`xc_domain_save: domain ${domid} is not paused`);
    if (info.hvm) throw new Error(`xc_domain_save: domain ${domid} is an HVM guest`);
    const { major, minor } = await this.xc.version();
    this.detail(`xc_domain_save: saving domain ${domid}, type wasm32 PV`);
    const out: Uint8Array[] = [streamHeaders(major, minor), moduleRecord(image)];
    const pfns = (await this.xc.maximumGpfn(domid)) + 1;
    let sent = 0;
    for (let p = 0; p < pfns; p += MAX_BATCH) {
      const batch: number[] = [];
      for (let i = p; i < Math.min(p + MAX_BATCH, pfns); i++) batch.push(i);
      const m = this.fmem.map(domid, batch);
      // The pages go out as views of the paused domain's memory, not copies
      // (one view for the batch when the mapping gives one: `pages` is then
      // never asked for). They are only read from here on, so they are
      // unmapped at once: an unmapped page is no longer one Dom0 may write
      // (paging.ts).
      this.fmem.unmap(domid, batch);
      out.push(...pageDataRecord(batch, (pfn) => m.pages[pfn - p], m.region));
      sent += m.region ? batch.length : m.pages.filter((x) => x).length;
    }
    this.detail(`xc_domain_save: ${sent} pages of ${pfns} pfns`);
    out.push(record(REC_TYPE_WASM32_CONTEXT, await this.xc.wasm32GetContext(domid)));
    out.push(record(REC_TYPE_END, new Uint8Array(0)));
    return out;
  }

  /**
   * xc_domain_save with XCFLAGS_LIVE (Xen's send_domain_memory_live): the
   * libxc stream of running PV domain `domid`, written to `sink` as it is
   * made. Log-dirty is turned on, every page goes out, then rounds of the
   * pages dirtied meanwhile (opts); then the domain is stopped and the
   * pages dirtied since the last round, with those the last CLEAN found and
   * no round sent, go out with the context and END. Every round sends
   * log-dirty's copy of its pages (the snapshot mapping), which nothing
   * changes until the next CLEAN. Log-dirty is off again when this returns
   * or throws.
   */
  async saveLive(
    domid: number,
    image: Pick<XcDomImage, "sha256" | "bytes">,
    sink: (chunks: Uint8Array[]) => Promise<void>,
    opts: LiveSaveOptions,
  ): Promise<LiveSaveStats> {
    const xc = this.xc;
    const info = await xc.domainGetInfo(domid);
    if (info.hvm !== (opts.hvm !== undefined))
      throw new Error(`xc_domain_save: domain ${domid} is ${info.hvm ? "" : "not "}an HVM guest`);
    const { major, minor } = await xc.version();
    this.detail(
      `xc_domain_save: saving domain ${domid} live, type wasm32 ${info.hvm ? "HVM" : "PV"}`,
    );
    await sink([
      streamHeaders(major, minor, info.hvm ? DHDR_TYPE_WASM32_HVM : DHDR_TYPE_WASM32_PV),
      moduleRecord(image),
    ]);
    const stats: LiveSaveStats = { rounds: [], stopped: 0 };
    const snapshot = this.snapshot;
    if (!snapshot)
      throw new Error("xc_domain_save: a live save needs log-dirty's snapshot mapping");
    // The PAGE_DATA records of `pfns` from `map`: views, read before the
    // next CLEAN changes anything (the sink has copied them when it returns).
    const collect = (pfns: readonly number[], map: ForeignMap): Collected => {
      const out: Uint8Array[] = [];
      let pages = 0;
      for (let i = 0; i < pfns.length; i += MAX_BATCH) {
        const batch = pfns.slice(i, i + MAX_BATCH);
        const mapped = map(domid, batch).pages;
        const at = new Map(batch.map((p, j) => [p, j]));
        out.push(...pageDataRecord(batch, (pfn) => mapped[at.get(pfn)!]));
        pages += mapped.filter((x) => x).length;
      }
      return { records: out, pages };
    };
    // Log-dirty compares memory with its copy, refreshed at each CLEAN, so a
    // round sends the copy's pages, not the live ones: what the receiver has
    // is then what the copy holds, page for page, and a page that changed
    // and changed back before the round read it is not missed. Round 0
    // sends the copy ENABLE took; the last round, with the domain stopped,
    // the copy the last CLEAN refreshed, which is its memory.
    const cleanAndCollect = async (
      also: readonly number[],
    ): Promise<{ dirty: number[]; collected: Collected }> => {
      const pfns = (await xc.maximumGpfn(domid)) + 1;
      const bits = new Uint8Array(Math.ceil(pfns / 8));
      await xc.shadowControl(domid, XEN_DOMCTL_SHADOW_OP_CLEAN, bits);
      const set = new Set(also);
      for (let i = 0; i < bits.length; i++) {
        const b = bits[i]!;
        if (b === 0) continue;
        for (let j = 0; j < 8; j++) if (b & (1 << j)) set.add(i * 8 + j);
      }
      const dirty = [...set].sort((a, b) => a - b);
      return { dirty, collected: collect(dirty, snapshot) };
    };
    await xc.shadowControl(domid, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY);
    try {
      // Round 0: every pfn, as the memory was when log-dirty took its copy.
      const all = [...Array((await xc.maximumGpfn(domid)) + 1).keys()];
      const first = collect(all, snapshot);
      stats.rounds.push(first.pages);
      await sink(first.records);
      let pending: number[] = [];
      for (let iter = 1; ; iter++) {
        const round = await cleanAndCollect([]);
        this.detail(`xc_domain_save: round ${iter}: ${round.dirty.length} pages dirty`);
        if (iter >= opts.maxIters || round.dirty.length < opts.minRemaining) {
          // Not sent: they go in the last round, with what changes until the stop.
          pending = round.dirty;
          break;
        }
        stats.rounds.push(round.collected.pages);
        await sink(round.collected.records);
      }
      await opts.suspend();
      const last = await cleanAndCollect(pending);
      stats.stopped = last.collected.pages;
      stats.rounds.push(stats.stopped);
      this.detail(`xc_domain_save: ${stats.stopped} pages sent with the domain stopped`);
      // The rest goes in one write (one hop to the receiver, inside the
      // downtime): the last round, the context, END and what follows it.
      const tail: Uint8Array[] = [...last.collected.records];
      if (opts.hvm) {
        const f = await opts.hvm.finish(opts.verify === true);
        tail.push(
          ...f.libxc,
          record(REC_TYPE_END, new Uint8Array(0)),
          ...f.libxl,
          ...(opts.trailer ?? []),
        );
        await sink(tail);
        return stats;
      }
      if (opts.verify) {
        tail.push(record(REC_TYPE_VERIFY, new Uint8Array(0)));
        await sink(tail.splice(0));
        const every = [...Array((await xc.maximumGpfn(domid)) + 1).keys()];
        // The live memory this time: the receiver checks it against what the rounds sent.
        await sink(collect(every, this.fmem.map).records);
        this.fmem.unmap(domid, every);
      }
      tail.push(
        record(REC_TYPE_WASM32_CONTEXT, await xc.wasm32GetContext(domid)),
        record(REC_TYPE_END, new Uint8Array(0)),
        ...(opts.trailer ?? []),
      );
      await sink(tail);
      return stats;
    } finally {
      await xc.shadowControl(domid, XEN_DOMCTL_SHADOW_OP_OFF).catch(() => {});
    }
  }

  /**
   * xc_domain_restore of a stream read in order (a migration): the domain
   * is made when the module arrives, each page is populated when it first
   * comes and written each time it comes again (later rounds), and after
   * a VERIFY record each page is compared with what the domain has. The
   * context is set at END, with the new domid in the boot page; the domain
   * stays paused. On any failure the domain is destroyed and the error
   * names the record and its offset in the stream.
   */
  async restoreStream(
    cfg: Omit<XcDomConfig, "memoryMiB" | "vcpus" | "cmdline">,
    src: SequentialSource,
    /** Called once the domain exists (its module bound), before its pages come: libxl's own records of it. */
    onCreated?: (domid: number, module: { sha256: Uint8Array; bytes: Uint8Array }) => void,
  ): Promise<XcDomBuilt & { verified: number; module: { sha256: Uint8Array; bytes: Uint8Array } }> {
    const xc = this.xc;
    const maxPfn = cfg.maxmemMiB * 256;
    const fail = (what: string, at: number): never => {
      throw new StreamError(`libxc stream: ${what} at offset ${at}`);
    };
    const at0 = src.offset;
    if (checkStreamHeaders(await src.read(40), at0).domainType !== DHDR_TYPE_WASM32_PV)
      fail("an HVM domain's stream for a PV domain's config", at0 + 24);
    let domid: number | undefined;
    let module: { sha256: Uint8Array; bytes: Uint8Array } | undefined;
    let context: Uint8Array | undefined;
    let verifying = false;
    let verified = 0;
    const populated = new Uint8Array(Math.ceil(maxPfn / 8));
    const isPopulated = (p: number): boolean => (populated[p >> 3]! & (1 << (p & 7))) !== 0;
    // The vCPUs' instances are made while the stream waits for the sender,
    // once pages have come (before, the memory may still be swapped for a
    // larger one as it is populated): not in the downtime.
    let instantiated = false;
    let anyPopulated = false;
    try {
      for (;;) {
        if (!instantiated && anyPopulated && src.buffered === 0) {
          instantiated = true;
          await xc.wasm32ModuleInstantiate(domid!);
        }
        const rec = await nextRecord(src, MAX_READ_RECORD);
        const { body, at } = rec;
        if (rec.type === REC_TYPE_END) {
          if (body.length !== 0) fail("END has a body", at);
          break;
        }
        switch (rec.type) {
          case REC_TYPE_WASM32_MODULE: {
            if (domid !== undefined) fail("a second WASM32_MODULE", at);
            module = parseModuleRecord(body, at);
            domid = await this.createDomain(cfg);
            this.detail(`xc_domain_restore: domain ${domid}, from a stream`);
            await this.bindModule(domid, module);
            onCreated?.(domid, module);
            break;
          }
          case REC_TYPE_PAGE_DATA: {
            if (domid === undefined) return fail("PAGE_DATA before WASM32_MODULE", at);
            if (body.length < 8) fail("PAGE_DATA is too short", at);
            const count = body.readUInt32LE(0);
            const list = pageDataPfns(
              body.subarray(8, 8 + 8 * Math.min(count, MAX_BATCH)),
              count,
              body.length,
              at,
              maxPfn,
            );
            const fresh = list.filter((e) => e.present && !isPopulated(e.pfn)).map((e) => e.pfn);
            if (verifying && fresh.length > 0)
              fail(`VERIFY: pfn ${fresh[0]} was never sent before`, at);
            for (let i = 0; i < fresh.length; i += POPULATE_BATCH)
              await xc.populatePhysmapExact(domid, fresh.slice(i, i + POPULATE_BATCH));
            for (const p of fresh) populated[p >> 3]! |= 1 << (p & 7);
            if (fresh.length > 0) anyPopulated = true;
            const present = list.filter((e) => e.present).map((e) => e.pfn);
            const { pages, err } = this.fmem.map(domid, present);
            try {
              let data = 8 + 8 * count;
              present.forEach((pfn, i) => {
                const to = pages[i];
                if (!to) throw new XcError(`xc_map_foreign_pages(${domid}, pfn ${pfn})`, -err[i]!);
                const from = body.subarray(data, data + PAGE_SIZE);
                data += PAGE_SIZE;
                if (!verifying) to.set(from);
                else if (Buffer.compare(from, to) !== 0)
                  fail(`VERIFY: pfn 0x${pfn.toString(16)} differs from what was sent before`, at);
                else verified++;
              });
            } finally {
              this.fmem.unmap(domid, present);
            }
            break;
          }
          case REC_TYPE_VERIFY:
            if (body.length !== 0) fail("VERIFY has a body", at);
            verifying = true;
            break;
          case REC_TYPE_WASM32_CONTEXT:
            if (context) fail("a second WASM32_CONTEXT", at);
            context = Uint8Array.from(body);
            break;
          default:
            if (!(rec.type & 0x80000000)) fail(`${rec.name}, which this restore does not know`, at);
        }
      }
      if (domid === undefined || !module) return fail("no WASM32_MODULE record", at0);
      if (verifying)
        this.detail(`xc_domain_restore: VERIFY: ${verified} pages checked, all as sent`);
      if (!context) return fail("no WASM32_CONTEXT record", at0);
      return { domid, ...(await this.finishRestore(domid, context)), verified, module };
    } catch (e) {
      if (domid !== undefined) await xc.domainDestroy(domid).catch(() => {});
      throw e;
    }
  }

  /**
   * xc_domain_restore: a new domain, paused, from libxc stream `s`: made
   * as `build` makes one, given the saved pages instead of the kernel's
   * data, its domid written into the boot page, then the saved context.
   * The toolstack connects its xenstore and console rings (their ports
   * are the guest's own, now offered to Dom0) and unpauses it.
   */
  async restore(
    cfg: Omit<XcDomConfig, "memoryMiB" | "vcpus" | "cmdline">,
    s: XcStream,
    reader: StreamReader,
  ): Promise<XcDomBuilt> {
    const xc = this.xc;
    if (!s.module) throw new Error("xc_domain_restore: the stream has no WASM32_MODULE record");
    if (!s.context) throw new Error("xc_domain_restore: the stream has no WASM32_CONTEXT record");
    const runs = [...s.runs].sort((a, b) => a.pfn - b.pfn);
    if (s.pageCount > cfg.maxmemMiB * 256)
      throw new Error(
        `xc_domain_restore: ${s.pageCount} pages saved, maxmem is ${cfg.maxmemMiB * 256}`,
      );
    const domid = await this.createDomain(cfg);
    this.detail(`xc_domain_restore: domain ${domid}, ${s.pageCount} pages`);
    try {
      // Whole aligned runs of 16 pfns (a wasm page) as one extent of order 4.
      const extents: number[] = [];
      const singles: number[] = [];
      for (const r of runs) {
        for (let p = r.pfn; p < r.pfn + r.count;) {
          if (p % FRAMES_PER_WASM_PAGE === 0 && p + FRAMES_PER_WASM_PAGE <= r.pfn + r.count) {
            extents.push(p);
            p += FRAMES_PER_WASM_PAGE;
          } else singles.push(p++);
        }
      }
      for (let i = 0; i < extents.length; i += POPULATE_BATCH)
        await xc.populatePhysmapExact(domid, extents.slice(i, i + POPULATE_BATCH), EXTENT_ORDER);
      for (let i = 0; i < singles.length; i += POPULATE_BATCH)
        await xc.populatePhysmapExact(domid, singles.slice(i, i + POPULATE_BATCH));
      await this.bindModule(domid, s.module);
      // Each run straight from the file into the domain's memory: one
      // mapping and one read (pages one by one where the mapping gives no
      // single view).
      for (const r of runs) {
        for (let first = r.pfn; first < r.pfn + r.count; first += POPULATE_BATCH) {
          const n = Math.min(POPULATE_BATCH, r.pfn + r.count - first);
          const gfns = Array.from({ length: n }, (_, k) => first + k);
          const at = r.at + (first - r.pfn) * PAGE_SIZE;
          const m = this.fmem.map(domid, gfns);
          try {
            const bad = m.err.findIndex((e) => e !== 0);
            if (bad >= 0)
              throw new XcError(`xc_map_foreign_pages(${domid}, pfn ${gfns[bad]})`, -m.err[bad]!);
            if (m.region) await reader.readInto(m.region, at);
            else for (let k = 0; k < n; k++) await reader.readInto(m.pages[k]!, at + k * PAGE_SIZE);
          } finally {
            this.fmem.unmap(domid, gfns);
          }
        }
      }
      return { domid, ...(await this.finishRestore(domid, s.context)) };
    } catch (e) {
      await xc.domainDestroy(domid).catch(() => {});
      throw e;
    }
  }

  /**
   * Gives `domid` its module: bound by hash, uploaded in chunks first when
   * the hypervisor does not have it, then bound once the hypervisor's check
   * is done (it answers -EAGAIN until then).
   */
  private async bindModule(
    domid: number,
    image: { sha256: Uint8Array; bytes?: Uint8Array },
    hvm?: { saveable: boolean },
  ): Promise<{ flags: number; minPages: number }> {
    const hash = Buffer.from(image.sha256).toString("hex").slice(0, 16);
    let r = await this.xc.wasm32ModuleBind(domid, image.sha256, hvm);
    if (r === "absent" && !image.bytes)
      throw new XcError(
        `xc_wasm32_module_bind(${domid})`,
        XenErrno.ENOENT,
        "the hypervisor does not have the module and no bytes were given",
      );
    if (r === "absent" && image.bytes) {
      this.detail(
        `xc_dom_wasm32_module: uploading ${image.bytes.length} bytes (sha256 ${hash}...)`,
      );
      for (let off = 0; off < image.bytes.length; off += UPLOAD_CHUNK) {
        const chunk = image.bytes.subarray(off, off + UPLOAD_CHUNK);
        await this.xc.wasm32ModuleUpload(domid, image.sha256, image.bytes.length, off, chunk, hvm);
      }
      r = await this.xc.wasm32ModuleBind(domid, image.sha256, hvm);
    }
    const end = Date.now() + MODULE_WAIT_MS;
    while (r === "checking") {
      if (Date.now() > end)
        throw new XcError(
          `xc_wasm32_module_bind(${domid})`,
          XenErrno.EAGAIN,
          "the hypervisor's check took too long",
        );
      await new Promise((res) => setTimeout(res, 5));
      r = await this.xc.wasm32ModuleBind(domid, image.sha256, hvm);
    }
    if (r === "absent")
      throw new XcError(`xc_wasm32_module_bind(${domid})`, XenErrno.ENOENT, "the upload was lost");
    this.detail(`xc_dom_wasm32_module: module sha256 ${hash}... bound`);
    return r;
  }

  /**
   * The end of every restore: the new domid in the boot page, the context
   * set, and the xenstore and console ports. A guest saved running (paused
   * by the toolstack) has its ports back, offered to Dom0, as start_info
   * says. One that had suspended itself (the context's `suspended` flag,
   * Xen's PV suspend) has none: as Xen's restore does, new ones are
   * allocated and written into its start_info, where it reads them when
   * its suspend returns 0.
   */
  private async finishRestore(
    domid: number,
    context: Uint8Array,
  ): Promise<{ storeEvtchn: number; consoleEvtchn: number; reconnect: boolean }> {
    const xc = this.xc;
    this.page(domid, PFN_BOOT_INFO).setUint32(arch_wasm32_boot.fields.domid.offset, domid, true);
    await xc.wasm32SetContext(domid, context);
    const si = this.page(domid, PFN_START_INFO);
    const f = start_info.fields;
    if (!contextSuspended(context))
      return {
        storeEvtchn: si.getUint32(f.store_evtchn.offset, true),
        consoleEvtchn: si.getUint32(f.console_evtchn.offset, true),
        reconnect: false,
      };
    const storeEvtchn = await xc.evtchnAllocUnbound(domid, 0);
    const consoleEvtchn = await xc.evtchnAllocUnbound(domid, 0);
    si.setUint32(f.store_evtchn.offset, storeEvtchn, true);
    si.setUint32(f.console_evtchn.offset, consoleEvtchn, true);
    this.detail(
      `xc_domain_restore: the guest suspended itself: it reconnects, store evtchn ${storeEvtchn}, console evtchn ${consoleEvtchn}`,
    );
    return { storeEvtchn, consoleEvtchn, reconnect: true };
  }

  /** Writes `bytes` at guest address `addr` of `domid` through a foreign mapping of the pages it spans. */
  private writeGuest(domid: number, addr: number, bytes: Uint8Array): void {
    const first = Math.floor(addr / PAGE_SIZE);
    const last = Math.floor((addr + bytes.length - 1) / PAGE_SIZE);
    const gfns = Array.from({ length: last - first + 1 }, (_, i) => first + i);
    const { pages, err } = this.fmem.map(domid, gfns);
    let done = 0;
    try {
      gfns.forEach((g, i) => {
        const page = pages[i];
        if (!page) throw new XcError(`xc_map_foreign_pages(${domid}, pfn ${g})`, -err[i]!);
        const at = i === 0 ? addr - first * PAGE_SIZE : 0;
        const n = Math.min(PAGE_SIZE - at, bytes.length - done);
        page.set(bytes.subarray(done, done + n), at);
        done += n;
      });
    } finally {
      this.fmem.unmap(domid, gfns);
    }
  }

  /**
   * One mapped page of `domid`, as a DataView. Only the architecture's
   * frames (start_info, the boot page, shared_info, grant frame 0), which
   * log-dirty compares in every round anyway: left mapped.
   */
  private page(domid: number, pfn: number): DataView {
    const { pages, err } = this.fmem.map(domid, [pfn]);
    const p = pages[0];
    if (!p) throw new XcError(`xc_map_foreign_range(${domid}, pfn ${pfn})`, -err[0]!);
    return new DataView(p.buffer, p.byteOffset, p.byteLength);
  }

  /** start_info and wasm32's boot page, as xc_dom's start_info_x86_64 fills start_info. */
  private writeStartInfo(
    domid: number,
    cfg: XcDomConfig,
    pages: number,
    storeEvtchn: number,
    consoleEvtchn: number,
  ): void {
    const si = this.page(domid, PFN_START_INFO);
    const f = start_info.fields;
    const set64 = (o: number, v: number): void => si.setBigUint64(o, BigInt(v), true);
    const text = (o: number, cap: number, s: string): void => {
      const b = Buffer.from(s).subarray(0, cap - 1);
      for (let i = 0; i < cap; i++) si.setUint8(o + i, i < b.length ? b[i]! : 0);
    };
    text(f.magic.offset, f.magic.size, "xen-3.0-wasm32");
    set64(f.nr_pages.offset, pages);
    set64(f.shared_info.offset, PFN_SHARED_INFO * PAGE_SIZE);
    si.setUint32(f.flags.offset, 0, true);
    set64(f.store_mfn.offset, PFN_XENSTORE);
    si.setUint32(f.store_evtchn.offset, storeEvtchn, true);
    set64(f.console_mfn.offset, PFN_CONSOLE);
    si.setUint32(f.console_evtchn.offset, consoleEvtchn, true);
    if (Buffer.byteLength(cfg.cmdline) >= f.cmd_line.size)
      throw new Error(`command line is longer than ${f.cmd_line.size - 1} bytes`);
    text(f.cmd_line.offset, f.cmd_line.size, cfg.cmdline);
    const boot = this.page(domid, PFN_BOOT_INFO);
    boot.setUint32(arch_wasm32_boot.fields.domid.offset, domid, true);
    boot.setUint32(arch_wasm32_boot.fields.max_vcpus.offset, cfg.maxVcpus, true);
  }

  /** Every vCPU starts with events masked (xc_dom's shared_info_x86_64). */
  private writeSharedInfo(domid: number, maxVcpus: number): void {
    const sh = this.page(domid, PFN_SHARED_INFO);
    for (let v = 0; v < maxVcpus; v++) {
      const a = shared_info.fields.vcpu_info.offset + v * vcpu_info.size;
      sh.setUint8(a + vcpu_info.fields.evtchn_upcall_mask.offset, 1);
    }
  }

  /** xc_dom_gnttab_seed: Dom0 is granted the console and xenstore pages by the reserved entries. */
  private seedGrants(domid: number): void {
    const gt = this.page(domid, PFN_GRANT_TABLE);
    const f = grant_entry_v1.fields;
    for (const [ref, pfn] of [
      [GNTTAB_RESERVED_CONSOLE, PFN_CONSOLE],
      [GNTTAB_RESERVED_XENSTORE, PFN_XENSTORE],
    ] as const) {
      const e = ref * grant_entry_v1.size;
      gt.setUint32(e + f.frame.offset, pfn, true);
      gt.setUint16(e + f.domid.offset, 0, true);
      gt.setUint16(e + f.flags.offset, GTF_permit_access, true);
    }
  }
}

/** The WASM32_MODULE record: the module's sha256, its length, its bytes. */
/**
 * Whether a WASM32_CONTEXT body is a suspended domain's (version 3's
 * flags, bit 0: xen/common/domain_context.ts); the hypervisor checks the
 * rest when it is set.
 */
function contextSuspended(c: Uint8Array): boolean {
  if (c.length < 40) return false;
  const dv = new DataView(c.buffer, c.byteOffset, c.byteLength);
  return dv.getUint32(4, true) >= 3 && (dv.getUint32(32, true) & 1) !== 0;
}
