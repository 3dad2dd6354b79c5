/**
 * ioreq servers (Xen's `common/ioreq.c`) and the rest of an HVM domain's
 * hypervisor state: its parameters (`hvm_op`), its program memory, its vCPU
 * thread. A device model in Dom0 creates servers with `dm_op`, claims ports
 * of the wasm32 I/O space (`public/hvm/wasm32_io.ts`), maps each server's
 * ioreq page with XENMEM_acquire_resource and enables it; the vCPU then sends
 * each WASI call on a claimed port to that server's page.
 */
import { XenErrno } from "../include/public/errno.js";
import { _mfn, mfn_x, PAGE_SIZE, type Mfn } from "../include/xen/mm.js";
import { HVM_NR_PARAMS } from "../include/public/hvm/hvm_op.js";
import type { HvmImage } from "../arch/wasm32/hvm_image.js";
import type { HvmVcpu } from "../arch/wasm32/hvm_vcpu.js";

/** Most ioreq servers per domain (Xen's MAX_NR_IOREQ_SERVERS). */
export const MAX_NR_IOREQ_SERVERS = 8;

/** A claimed range of one I/O space (XEN_DMOP_IO_RANGE_*), inclusive. */
export interface IoRange {
  readonly type: number;
  readonly start: number;
  readonly end: number;
}

export class IoreqServer {
  /** The ioreq page (shared_iopage_t plus wasm32's argument slots). */
  readonly page = new SharedArrayBuffer(PAGE_SIZE);
  readonly ranges: IoRange[] = [];
  enabled = false;

  constructor(
    readonly id: number,
    /** The domain that emulates (the caller of create_ioreq_server). */
    readonly emulator: number,
    /** The machine frame behind the ioreq page, as acquire_resource reports it. */
    readonly mfn: Mfn,
  ) {}
}

/** What an HVM domain has that a PV one does not. */
export class HvmDomain {
  /** HVM_PARAM_* values (hvm_op set_param / get_param). */
  readonly params: number[] = new Array<number>(HVM_NR_PARAMS).fill(0);
  readonly servers = new Map<number, IoreqServer>();
  vcpu: HvmVcpu | undefined;
  /** True while the hypervisor runs a hypercall of the program's (PV drivers). */
  inHypercall = false;
  /** The program's hypercall is held until an event (block) or a polled port or timeout (poll). */
  parked: "block" | "poll" | undefined;
  /** Hypercalls the program made, and how many of them continued after a turn of the event loop. */
  hypercalls = 0;
  continuations = 0;

  constructor(
    readonly image: HvmImage,
    /** The program's linear memory: its pseudo-physical memory. */
    readonly memory: WebAssembly.Memory,
    /** Wasm pages the program may grow to (memory=, or its own smaller maximum). */
    readonly maxWasmPages: number,
  ) {}

  /** The lowest free server id, or -ENOSPC. */
  freeServerId(): number {
    for (let id = 0; id < MAX_NR_IOREQ_SERVERS; id++) if (!this.servers.has(id)) return id;
    return -XenErrno.ENOSPC;
  }

  /**
   * The enabled servers' pages and port ranges, in id order: what the vCPU
   * thread routes by. The first server claiming a port gets it, as Xen's
   * ioreq_server_select takes the first match.
   */
  routes(): Array<{ id: number; page: SharedArrayBuffer; ranges: IoRange[] }> {
    return [...this.servers.values()]
      .filter((s) => s.enabled)
      .sort((a, b) => a.id - b.id)
      .map((s) => ({ id: s.id, page: s.page, ranges: [...s.ranges] }));
  }
}

/** Machine frames of ioreq pages: mfn → the page, for Dom0's mapping of acquired resources. */
export class XenPages {
  private readonly pages = new Map<number, Uint8Array>();
  /** Frames any privileged domain may map by number (Xen's share_xen_page_with_privileged_guests). */
  private readonly shared = new Set<number>();
  /**
   * `page`: a view of exactly one page (an ioreq page, a trace buffer's
   * page). Only a page set `sharedWithPrivileged` can be mapped as a
   * DOMID_XEN frame; the others are reached through their own interface
   * (an ioreq page with XENMEM_acquire_resource, by its emulator).
   */
  set(mfn: Mfn, page: Uint8Array, sharedWithPrivileged = false): void {
    this.pages.set(mfn_x(mfn), page);
    if (sharedWithPrivileged) this.shared.add(mfn_x(mfn));
  }
  get(mfn: number): Uint8Array | undefined {
    return this.pages.get(mfn);
  }
  /** Page `mfn` if it is shared with privileged domains (a DOMID_XEN foreign mapping). */
  getShared(mfn: number): Uint8Array | undefined {
    return this.shared.has(mfn) ? this.pages.get(mfn) : undefined;
  }
  delete(mfn: Mfn): void {
    this.pages.delete(mfn_x(mfn));
    this.shared.delete(mfn_x(mfn));
  }
}

export { _mfn };
