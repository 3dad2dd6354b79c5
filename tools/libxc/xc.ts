/**
 * libxc: the `xc_*` operations the toolstack needs, with `xenctrl.h`'s
 * names, as hypercalls over a HypercallChannel (in process, or the host
 * daemon's privcmd socket). Each builds Xen's argument structs
 * (`xen/include/public/domctl.ts`, `sysctl.ts`) in hypercall buffers.
 * Failures are XcError, which names the call, the domain and the errno.
 */
import { getSystemErrorMap } from "node:util";
import * as DC from "../../xen/include/public/domctl.js";
import * as SC from "../../xen/include/public/sysctl.js";
import * as V from "../../xen/include/public/version.js";
import { XenErrno, errnoName } from "../../xen/include/public/errno.js";
import { HYPERVISOR } from "../../xen/include/public/xen.js";
import { vcpu_guest_context } from "../../xen/include/public/arch-wasm32.js";
import {
  XENMEM_maximum_gpfn,
  XENMEM_populate_physmap,
  xen_memory_reservation,
} from "../../xen/include/public/memory.js";
import {
  EVTCHNOP_alloc_unbound,
  evtchn_alloc_unbound,
} from "../../xen/include/public/event_channel.js";
import type { Layout } from "../../xen/include/public/layout.js";
import { bufferOffsets, type HypercallChannel } from "./channel.js";

/** C's strerror text for a (positive) errno: libuv's, capitalised as glibc's is. */
export function strerror(errno: number): string {
  const text = getSystemErrorMap().get(-errno)?.[1] ?? `error ${errno}`;
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** A failed libxc call: `op`, the positive Xen errno, and what the hypervisor said, if anything. */
export class XcError extends Error {
  constructor(
    readonly op: string,
    readonly errno: number,
    detail?: string,
  ) {
    const name = errnoName(errno);
    super(`${op} failed: ${detail ? `${detail}: ` : ""}${strerror(errno)} (${name})`);
  }
}

/** xc_dominfo_t, as xc_domain_getinfolist fills it. */
export interface XcDomInfo {
  domid: number;
  dying: boolean;
  shutdown: boolean;
  paused: boolean;
  blocked: boolean;
  running: boolean;
  /** XEN_DOMINF_hvm_guest. */
  hvm: boolean;
  /** SHUTDOWN_* when shutdown is set. */
  shutdownReason: number;
  totPages: number;
  maxPages: number;
  /** Nanoseconds. */
  cpuTime: number;
  onlineVcpus: number;
  maxVcpuId: number;
  /** The domain handle as a UUID string. */
  uuid: string;
}

export interface XcPhysinfo {
  nrCpus: number;
  threadsPerCore: number;
  coresPerSocket: number;
  nrNodes: number;
  cpuKhz: number;
  /** The host CPU's feature words (XEN_SYSCTL_physinfo hw_cap), as `xl info` prints them. */
  hwCap: number[];
  totalPages: number;
  freePages: number;
}

export interface XcVcpuInfo {
  online: boolean;
  blocked: boolean;
  running: boolean;
  cpuTime: number;
  cpu: number;
}

/** A little-endian struct in a hypercall buffer. */
class Buf {
  readonly bytes: Uint8Array;
  readonly dv: DataView;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.dv = new DataView(this.bytes.buffer);
  }
  u8(o: number): number {
    return this.bytes[o]!;
  }
  u16(o: number): number {
    return this.dv.getUint16(o, true);
  }
  u32(o: number): number {
    return this.dv.getUint32(o, true);
  }
  u64(o: number): number {
    return this.dv.getUint32(o, true) + this.dv.getUint32(o + 4, true) * 2 ** 32;
  }
  set16(o: number, v: number): void {
    this.dv.setUint16(o, v, true);
  }
  set32(o: number, v: number): void {
    this.dv.setUint32(o, v >>> 0, true);
  }
  set64(o: number, v: number): void {
    this.dv.setUint32(o, v >>> 0, true);
    this.dv.setUint32(o + 4, Math.floor(v / 2 ** 32), true);
  }
}

function uuidOf(b: Uint8Array): string {
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function parseDomInfo(b: Buf, base: number): XcDomInfo {
  const f = DC.xen_domctl_getdomaininfo.fields;
  const flags = b.u32(base + f.flags.offset);
  return {
    domid: b.u16(base + f.domain.offset),
    dying: (flags & DC.XEN_DOMINF_dying) !== 0,
    shutdown: (flags & DC.XEN_DOMINF_shutdown) !== 0,
    paused: (flags & DC.XEN_DOMINF_paused) !== 0,
    blocked: (flags & DC.XEN_DOMINF_blocked) !== 0,
    running: (flags & DC.XEN_DOMINF_running) !== 0,
    hvm: (flags & DC.XEN_DOMINF_hvm_guest) !== 0,
    shutdownReason: (flags >>> DC.XEN_DOMINF_shutdownshift) & DC.XEN_DOMINF_shutdownmask,
    totPages: b.u64(base + f.tot_pages.offset),
    maxPages: b.u64(base + f.max_pages.offset),
    cpuTime: b.u64(base + f.cpu_time.offset),
    onlineVcpus: b.u32(base + f.nr_online_vcpus.offset),
    maxVcpuId: b.u32(base + f.max_vcpu_id.offset) | 0,
    uuid: uuidOf(b.bytes.subarray(base + f.handle.offset, base + f.handle.offset + 16)),
  };
}

export class XcInterface {
  /** The buffer wasm32GetContext offers first: the largest context it has seen. */
  private contextGuess = 4096;

  constructor(readonly channel: HypercallChannel) {}

  /** Bounce addresses of buffers of `sizes`, in call order. */
  private addrs(...sizes: number[]): number[] {
    return bufferOffsets(sizes).map((o) => this.channel.bounceBase + o);
  }

  /**
   * A domctl or sysctl (same shape: cmd, interface version, a union at
   * `u`): `head` fills the header's other fields, `fill` the union, given
   * the bounce addresses of `extras` (buffers the union points at).
   * Resolves with the struct as the hypervisor left it; throws XcError as `op`.
   */
  private async control(
    nr: number,
    layout: typeof DC.xen_domctl | typeof SC.xen_sysctl,
    version: number,
    op: string,
    cmd: number,
    head: (b: Buf) => void,
    fill: (b: Buf, u: number, extra: number[]) => void,
    extras: Buf[],
  ): Promise<Buf> {
    const b = new Buf(layout.size);
    const [addr, ...extra] = this.addrs(b.bytes.length, ...extras.map((e) => e.bytes.length));
    b.set32(layout.fields.cmd.offset, cmd);
    b.set32(layout.fields.interface_version.offset, version);
    head(b);
    fill(b, layout.fields.u.offset, extra);
    const rc = await this.channel.call(nr, [addr!], [b.bytes, ...extras.map((e) => e.bytes)]);
    if (rc < 0) throw new XcError(op, -rc);
    return b;
  }

  /** A domctl on `domid` (the error names it). */
  private domctl(
    op: string,
    cmd: number,
    domid: number,
    fill: (b: Buf, u: number, extra: number[]) => void = () => {},
    extras: Buf[] = [],
  ): Promise<Buf> {
    const version = DC.XEN_DOMCTL_INTERFACE_VERSION;
    const head = (b: Buf): void => b.set16(DC.xen_domctl.fields.domain.offset, domid);
    const nr = HYPERVISOR.__HYPERVISOR_domctl;
    return this.control(nr, DC.xen_domctl, version, `${op}(${domid})`, cmd, head, fill, extras);
  }

  /**
   * A domctl whose union holds one buffer: its address at `ptr` and its
   * length in bytes at `len` (offsets in the union), the buffer `buf`.
   */
  private domctlBuffer(
    op: string,
    cmd: number,
    domid: number,
    ptr: number,
    len: number,
    buf: Buf,
  ): Promise<Buf> {
    return this.domctl(
      op,
      cmd,
      domid,
      (b, u, [a]) => {
        b.set64(u + ptr, a!);
        b.set32(u + len, buf.bytes.length);
      },
      [buf],
    );
  }

  private sysctl(
    op: string,
    cmd: number,
    fill: (b: Buf, u: number, extra: number[]) => void = () => {},
    extras: Buf[] = [],
  ): Promise<Buf> {
    const version = SC.XEN_SYSCTL_INTERFACE_VERSION;
    const nr = HYPERVISOR.__HYPERVISOR_sysctl;
    return this.control(nr, SC.xen_sysctl, version, op, cmd, () => {}, fill, extras);
  }

  /** xc_domain_getinfolist: up to `max` domains from `first` on, by domid. */
  async domainGetInfoList(first = 0, max = 1024): Promise<XcDomInfo[]> {
    const size = DC.xen_domctl_getdomaininfo.size;
    const list = new Buf(size * max);
    const f = SC.xen_sysctl_getdomaininfolist.fields;
    const b = await this.sysctl(
      "xc_domain_getinfolist",
      SC.XEN_SYSCTL_getdomaininfolist,
      (b, u, [buf]) => {
        b.set16(u + f.first_domain.offset, first);
        b.set32(u + f.max_domains.offset, max);
        b.set64(u + f.buffer.offset, buf!);
      },
      [list],
    );
    const n = b.u32(SC.xen_sysctl.fields.u.offset + f.num_domains.offset);
    return Array.from({ length: n }, (_, i) => parseDomInfo(list, i * size));
  }

  /** xc_domain_getinfo_single */
  async domainGetInfo(domid: number): Promise<XcDomInfo> {
    const b = await this.domctl("xc_domain_getinfo_single", DC.XEN_DOMCTL_getdomaininfo, domid);
    return parseDomInfo(b, DC.xen_domctl.fields.u.offset);
  }

  async domainPause(domid: number): Promise<void> {
    await this.domctl("xc_domain_pause", DC.XEN_DOMCTL_pausedomain, domid);
  }

  async domainUnpause(domid: number): Promise<void> {
    await this.domctl("xc_domain_unpause", DC.XEN_DOMCTL_unpausedomain, domid);
  }

  async domainDestroy(domid: number): Promise<void> {
    await this.domctl("xc_domain_destroy", DC.XEN_DOMCTL_destroydomain, domid);
  }

  /** xc_domain_setmaxmem, in KiB. */
  async domainSetMaxMem(domid: number, maxKiB: number): Promise<void> {
    await this.domctl("xc_domain_setmaxmem", DC.XEN_DOMCTL_max_mem, domid, (b, u) =>
      b.set64(u + DC.xen_domctl_max_mem.fields.max_memkb.offset, maxKiB),
    );
  }

  /** xc_domain_sethandle */
  async domainSetHandle(domid: number, handle: Uint8Array): Promise<void> {
    await this.domctl("xc_domain_sethandle", DC.XEN_DOMCTL_setdomainhandle, domid, (b, u) =>
      b.bytes.set(handle, u + DC.xen_domctl_setdomainhandle.fields.handle.offset),
    );
  }

  /** xc_vcpu_getinfo */
  async vcpuGetInfo(domid: number, vcpu: number): Promise<XcVcpuInfo> {
    const f = DC.xen_domctl_getvcpuinfo.fields;
    const b = await this.domctl("xc_vcpu_getinfo", DC.XEN_DOMCTL_getvcpuinfo, domid, (b, u) =>
      b.set32(u + f.vcpu.offset, vcpu),
    );
    const u = DC.xen_domctl.fields.u.offset;
    return {
      online: b.u8(u + f.online.offset) !== 0,
      blocked: b.u8(u + f.blocked.offset) !== 0,
      running: b.u8(u + f.running.offset) !== 0,
      cpuTime: b.u64(u + f.cpu_time.offset),
      cpu: b.u32(u + f.cpu.offset),
    };
  }

  /**
   * xc_vcpu_setaffinity / xc_vcpu_getaffinity: hard and soft affinity as
   * bitmaps of pCPUs (bit n is pCPU n). Set resolves with the effective ones.
   */
  async vcpuAffinity(
    domid: number,
    vcpu: number,
    set?: { hard: number; soft: number },
  ): Promise<{ hard: number; soft: number }> {
    const f = DC.xen_domctl_vcpuaffinity.fields;
    const bm = DC.xenctl_bitmap.fields;
    const hard = new Buf(4);
    const soft = new Buf(4);
    if (set) {
      hard.set32(0, set.hard);
      soft.set32(0, set.soft);
    }
    const op = set ? "xc_vcpu_setaffinity" : "xc_vcpu_getaffinity";
    await this.domctl(
      op,
      set ? DC.XEN_DOMCTL_setvcpuaffinity : DC.XEN_DOMCTL_getvcpuaffinity,
      domid,
      (b, u, [h, s]) => {
        b.set32(u + f.vcpu.offset, vcpu);
        b.set32(u + f.flags.offset, DC.XEN_VCPUAFFINITY_HARD | DC.XEN_VCPUAFFINITY_SOFT);
        b.set64(u + f.cpumap_hard.offset + bm.bitmap.offset, h!);
        b.set32(u + f.cpumap_hard.offset + bm.nr_bits.offset, 32);
        b.set64(u + f.cpumap_soft.offset + bm.bitmap.offset, s!);
        b.set32(u + f.cpumap_soft.offset + bm.nr_bits.offset, 32);
      },
      [hard, soft],
    );
    return { hard: hard.u32(0), soft: soft.u32(0) };
  }

  /** xc_sched_credit_domain_get / _set: weight and cap. */
  async schedCredit(
    domid: number,
    set?: { weight: number; cap: number },
  ): Promise<{ weight: number; cap: number }> {
    const f = DC.xen_domctl_scheduler_op.fields;
    const c = DC.xen_domctl_sched_credit.fields;
    const b = await this.domctl(
      set ? "xc_sched_credit_domain_set" : "xc_sched_credit_domain_get",
      DC.XEN_DOMCTL_scheduler_op,
      domid,
      (b, u) => {
        b.set32(u + f.sched_id.offset, DC.XEN_SCHEDULER_CREDIT);
        b.set32(
          u + f.cmd.offset,
          set ? DC.XEN_DOMCTL_SCHEDOP_putinfo : DC.XEN_DOMCTL_SCHEDOP_getinfo,
        );
        if (set) {
          b.set16(u + f.u.offset + c.weight.offset, set.weight);
          b.set16(u + f.u.offset + c.cap.offset, set.cap);
        }
      },
    );
    const p = DC.xen_domctl.fields.u.offset + f.u.offset;
    return set ?? { weight: b.u16(p + c.weight.offset), cap: b.u16(p + c.cap.offset) };
  }

  /** xc_physinfo */
  async physinfo(): Promise<XcPhysinfo> {
    const f = SC.xen_sysctl_physinfo.fields;
    const b = await this.sysctl("xc_physinfo", SC.XEN_SYSCTL_physinfo);
    const u = SC.xen_sysctl.fields.u.offset;
    return {
      nrCpus: b.u32(u + f.nr_cpus.offset),
      threadsPerCore: b.u32(u + f.threads_per_core.offset),
      coresPerSocket: b.u32(u + f.cores_per_socket.offset),
      nrNodes: b.u32(u + f.nr_nodes.offset),
      cpuKhz: b.u32(u + f.cpu_khz.offset),
      hwCap: Array.from({ length: 8 }, (_, i) => b.u32(u + f.hw_cap.offset + 4 * i)),
      totalPages: b.u64(u + f.total_pages.offset),
      freePages: b.u64(u + f.free_pages.offset),
    };
  }

  /** xc_sched_id */
  async schedId(): Promise<number> {
    const b = await this.sysctl("xc_sched_id", SC.XEN_SYSCTL_sched_id);
    return b.u32(SC.xen_sysctl.fields.u.offset + SC.xen_sysctl_sched_id.fields.sched_id.offset);
  }

  /** xc_readconsolering: the hypervisor's console ring (xl dmesg [-c]). */
  async readConsoleRing(clear = false): Promise<string> {
    const f = SC.xen_sysctl_readconsole.fields;
    const chunks: Uint8Array[] = [];
    let index = 0;
    for (;;) {
      const out = new Buf(16384);
      const b = await this.sysctl(
        "xc_readconsolering",
        SC.XEN_SYSCTL_readconsole,
        (b, u, [buf]) => {
          b.bytes[u + f.incremental.offset] = 1;
          b.set32(u + f.index.offset, index);
          b.set64(u + f.buffer.offset, buf!);
          b.set32(u + f.count.offset, out.bytes.length);
        },
        [out],
      );
      const u = SC.xen_sysctl.fields.u.offset;
      const n = b.u32(u + f.count.offset);
      index = b.u32(u + f.index.offset);
      chunks.push(out.bytes.slice(0, n));
      if (n < out.bytes.length) break;
    }
    if (clear) {
      await this.sysctl("xc_readconsolering", SC.XEN_SYSCTL_readconsole, (b, u) => {
        b.bytes[u + f.clear.offset] = 1;
      });
    }
    return Buffer.concat(chunks).toString("utf8");
  }

  /** xc_send_debug_keys: runs hypervisor debug keys (their output goes to the console ring). */
  async sendDebugKeys(keys: string): Promise<void> {
    const f = SC.xen_sysctl_debug_keys.fields;
    const buf = new Buf(Math.max(1, keys.length));
    for (let i = 0; i < keys.length; i++) buf.bytes[i] = keys.charCodeAt(i) & 0xff;
    await this.sysctl(
      "xc_send_debug_keys",
      SC.XEN_SYSCTL_debug_keys,
      (b, u, [k]) => {
        b.set64(u + f.keys.offset, k!);
        b.set32(u + f.nr_keys.offset, keys.length);
      },
      [buf],
    );
  }

  /** One xen_version call with a `size`-byte buffer (none when 0): its result and the buffer. */
  private async xenVersion(cmd: number, size: number): Promise<[number, Uint8Array]> {
    const buf = new Uint8Array(size);
    const [a] = this.addrs(Math.max(size, 1));
    const rc = await this.channel.call(
      HYPERVISOR.__HYPERVISOR_xen_version,
      [cmd, size > 0 ? a! : 0],
      size > 0 ? [buf] : [],
    );
    if (rc < 0) throw new XcError(`xc_version(${cmd})`, -rc);
    return [rc, buf];
  }

  /** xc_vcpu_getcontext: vCPU `vcpu`'s wasm32 vcpu_guest_context (public/arch-wasm32.ts), raw. */
  async vcpuGetContext(domid: number, vcpu: number): Promise<Uint8Array> {
    const ctxt = new Buf(vcpu_guest_context.size);
    const f = DC.xen_domctl_vcpucontext.fields;
    await this.domctl(
      "xc_vcpu_getcontext",
      DC.XEN_DOMCTL_getvcpucontext,
      domid,
      (b, u, [buf]) => {
        b.set32(u + f.vcpu.offset, vcpu);
        b.set64(u + f.ctxt.offset, buf!);
      },
      [ctxt],
    );
    return ctxt.bytes;
  }

  /**
   * xc_domain_create: an empty, paused domain; resolves with its domid
   * (`domid` 0: the hypervisor chooses).
   */
  async domainCreate(
    domid: number,
    config: {
      handle: Uint8Array;
      flags?: number;
      maxVcpus: number;
      maxEvtchnPort: number;
      maxGrantFrames: number;
      maxMaptrackFrames: number;
    },
  ): Promise<number> {
    const f = DC.xen_domctl_createdomain.fields;
    const b = await this.domctl("xc_domain_create", DC.XEN_DOMCTL_createdomain, domid, (b, u) => {
      b.bytes.set(config.handle, u + f.handle.offset);
      b.set32(u + f.flags.offset, config.flags ?? 0);
      b.set32(u + f.max_vcpus.offset, config.maxVcpus);
      b.set32(u + f.max_evtchn_port.offset, config.maxEvtchnPort);
      b.set32(u + f.max_grant_frames.offset, config.maxGrantFrames);
      b.set32(u + f.max_maptrack_frames.offset, config.maxMaptrackFrames);
      b.set32(u + f.grant_opts.offset, 1);
    });
    return b.u16(DC.xen_domctl.fields.domain.offset);
  }

  /** xc_domain_set_time_offset: seconds added to an HVM domain's wallclock (its RTC). */
  async domainSetTimeOffset(domid: number, seconds: number): Promise<void> {
    await this.domctl("xc_domain_set_time_offset", DC.XEN_DOMCTL_settimeoffset, domid, (b, u) => {
      const at = u + DC.xen_domctl_settimeoffset.fields.time_offset_seconds.offset;
      b.set32(at, seconds >>> 0);
      b.set32(at + 4, Math.floor(seconds / 2 ** 32) >>> 0);
    });
  }

  /** xc_domain_hvm_setcontext: an HVM domain's context (on wasm32 a WASM32_HVM_CONTEXT). */
  async domainHvmSetContext(domid: number, ctxt: Uint8Array): Promise<void> {
    const c = new Buf(ctxt.length);
    c.bytes.set(ctxt);
    const f = DC.xen_domctl_hvmcontext.fields;
    await this.domctl(
      "xc_domain_hvm_setcontext",
      DC.XEN_DOMCTL_sethvmcontext,
      domid,
      (b, u, [buf]) => {
        b.set32(u + f.size.offset, ctxt.length);
        b.set64(u + f.buffer.offset, buf!);
      },
      [c],
    );
  }

  /** xc_domain_max_vcpus */
  async domainMaxVcpus(domid: number, max: number): Promise<void> {
    await this.domctl("xc_domain_max_vcpus", DC.XEN_DOMCTL_max_vcpus, domid, (b, u) =>
      b.set32(u + DC.xen_domctl_max_vcpus.fields.max.offset, max),
    );
  }

  /** xc_vcpu_setcontext: `ctxt` is a wasm32 vcpu_guest_context (public/arch-wasm32.ts). */
  async vcpuSetContext(domid: number, vcpu: number, ctxt: Uint8Array): Promise<void> {
    const c = new Buf(vcpu_guest_context.size);
    c.bytes.set(ctxt);
    const f = DC.xen_domctl_vcpucontext.fields;
    await this.domctl(
      "xc_vcpu_setcontext",
      DC.XEN_DOMCTL_setvcpucontext,
      domid,
      (b, u, [buf]) => {
        b.set32(u + f.vcpu.offset, vcpu);
        b.set64(u + f.ctxt.offset, buf!);
      },
      [c],
    );
  }

  /** xc_wasm32_set_label (tsxen): the name the hypervisor's messages give `domid`. */
  async wasm32SetLabel(domid: number, label: string): Promise<void> {
    const text = new Buf(Buffer.byteLength(label));
    text.bytes.set(Buffer.from(label));
    const f = DC.xen_domctl_wasm32_set_label.fields;
    await this.domctlBuffer(
      "xc_wasm32_set_label",
      DC.XEN_DOMCTL_wasm32_set_label,
      domid,
      f.label.offset,
      f.len.offset,
      text,
    );
  }

  /**
   * XEN_DOMCTL_wasm32_module's bind: gives `domid` the module whose sha256
   * is `sha256`. Resolves with what the module exports, or with "absent"
   * (upload it first) or "checking" (try again soon); throws XcError for a
   * refused module, its message carrying the hypervisor's reason.
   */
  async wasm32ModuleBind(
    domid: number,
    sha256: Uint8Array,
    /** A WASI program for an HVM domain (XEN_DOMCTL_WASM32_MODULE_hvm). */
    hvm?: { saveable: boolean },
  ): Promise<{ flags: number; minPages: number } | "absent" | "checking"> {
    const why = new Buf(256);
    const f = DC.xen_domctl_wasm32_module.fields;
    const op = `xc_wasm32_module_bind(${domid})`;
    const inFlags = hvm
      ? DC.XEN_DOMCTL_WASM32_MODULE_hvm | (hvm.saveable ? DC.XEN_DOMCTL_WASM32_MODULE_saveable : 0)
      : 0;
    try {
      const b = await this.domctl(
        op,
        DC.XEN_DOMCTL_wasm32_module,
        domid,
        (b, u, [buf]) => {
          b.set32(u + f.op.offset, DC.XEN_DOMCTL_WASM32_MODULE_bind);
          b.set32(u + f.flags.offset, inFlags);
          b.bytes.set(sha256, u + f.sha256.offset);
          b.set64(u + f.buffer.offset, buf!);
          b.set32(u + f.len.offset, why.bytes.length);
        },
        [why],
      );
      const u = DC.xen_domctl.fields.u.offset;
      return { flags: b.u32(u + f.flags.offset), minPages: b.u32(u + f.min_pages.offset) };
    } catch (e) {
      if (!(e instanceof XcError)) throw e;
      if (e.errno === XenErrno.ENOENT) return "absent";
      if (e.errno === XenErrno.EAGAIN) return "checking";
      const text = Buffer.from(why.bytes.subarray(0, why.bytes.indexOf(0)));
      if (e.errno === XenErrno.EINVAL && text.length > 0)
        throw new XcError(op, e.errno, text.toString("utf8"));
      throw e;
    }
  }

  /**
   * XEN_DOMCTL_wasm32_module's instantiate: the bound module's vCPU
   * instances, made now (a migration's receiver, once the pages came).
   */
  async wasm32ModuleInstantiate(domid: number): Promise<void> {
    const f = DC.xen_domctl_wasm32_module.fields;
    await this.domctl(`xc_wasm32_module_instantiate`, DC.XEN_DOMCTL_wasm32_module, domid, (b, u) =>
      b.set32(u + f.op.offset, DC.XEN_DOMCTL_WASM32_MODULE_instantiate),
    );
  }

  /** XEN_DOMCTL_wasm32_module's upload: `chunk` is bytes `offset`.. of the `size`-byte module `sha256`. */
  async wasm32ModuleUpload(
    domid: number,
    sha256: Uint8Array,
    size: number,
    offset: number,
    chunk: Uint8Array,
    hvm?: { saveable: boolean },
  ): Promise<void> {
    const inFlags = hvm
      ? DC.XEN_DOMCTL_WASM32_MODULE_hvm | (hvm.saveable ? DC.XEN_DOMCTL_WASM32_MODULE_saveable : 0)
      : 0;
    const data = new Buf(chunk.length);
    data.bytes.set(chunk);
    const f = DC.xen_domctl_wasm32_module.fields;
    await this.domctl(
      "xc_wasm32_module_upload",
      DC.XEN_DOMCTL_wasm32_module,
      domid,
      (b, u, [buf]) => {
        b.set32(u + f.op.offset, DC.XEN_DOMCTL_WASM32_MODULE_upload);
        b.set32(u + f.flags.offset, inFlags);
        b.bytes.set(sha256, u + f.sha256.offset);
        b.set64(u + f.size.offset, size);
        b.set64(u + f.offset.offset, offset);
        b.set64(u + f.buffer.offset, buf!);
        b.set32(u + f.len.offset, chunk.length);
      },
      [data],
    );
  }

  /**
   * xc_domain_populate_physmap_exact: gives `domid` the extents of 2^order
   * pages starting at `pfns`; throws unless every one was populated.
   */
  async populatePhysmapExact(domid: number, pfns: readonly number[], order = 0): Promise<void> {
    const res = new Buf(xen_memory_reservation.size);
    const list = new Buf(pfns.length * 8);
    pfns.forEach((p, i) => list.set64(i * 8, p));
    const [a, l] = this.addrs(res.bytes.length, list.bytes.length);
    const f = xen_memory_reservation.fields;
    res.set64(f.extent_start.offset, l!);
    res.set64(f.nr_extents.offset, pfns.length);
    res.set32(f.extent_order.offset, order);
    res.set16(f.domid.offset, domid);
    const rc = await this.channel.call(
      HYPERVISOR.__HYPERVISOR_memory_op,
      [XENMEM_populate_physmap, a!],
      [res.bytes, list.bytes],
    );
    const op = `xc_domain_populate_physmap_exact(${domid})`;
    if (rc < 0) throw new XcError(op, -rc);
    if (rc !== pfns.length) throw new XcError(op, XenErrno.ENOMEM);
  }

  /** xc_evtchn_alloc_unbound: a port of `domid`'s for `remote` to bind. */
  async evtchnAllocUnbound(domid: number, remote: number): Promise<number> {
    const arg = new Buf(evtchn_alloc_unbound.size);
    const f = evtchn_alloc_unbound.fields;
    arg.set16(f.dom.offset, domid);
    arg.set16(f.remote_dom.offset, remote);
    const [a] = this.addrs(arg.bytes.length);
    const rc = await this.channel.call(
      HYPERVISOR.__HYPERVISOR_event_channel_op,
      [EVTCHNOP_alloc_unbound, a!],
      [arg.bytes],
    );
    if (rc < 0) throw new XcError(`xc_evtchn_alloc_unbound(${domid})`, -rc);
    return arg.u32(f.port.offset);
  }

  /** XEN_SYSCTL_tbuf_op `cmd` (xc_tbuf_*): fills the struct with `fill`, returns it as Xen left it. */
  private async tbufOp(
    op: string,
    cmd: number,
    fill: (b: Buf, u: number, extra: number[]) => void = () => {},
    extras: Buf[] = [],
  ): Promise<{ evtMask: number; mfn: number; size: number }> {
    const f = SC.xen_sysctl_tbuf_op.fields;
    const b = await this.sysctl(
      op,
      SC.XEN_SYSCTL_tbuf_op,
      (b, u, extra) => {
        b.set32(u + f.cmd.offset, cmd);
        fill(b, u, extra);
      },
      extras,
    );
    const u = SC.xen_sysctl.fields.u.offset;
    return {
      evtMask: b.u32(u + f.evt_mask.offset),
      mfn: b.u64(u + f.buffer_mfn.offset),
      size: b.u32(u + f.size.offset),
    };
  }

  /** xc_tbuf_get_size's source: where t_info is (mfn 0 before the buffers exist) and its bytes. */
  tbufGetInfo(): Promise<{ evtMask: number; mfn: number; size: number }> {
    return this.tbufOp("xc_tbuf_get_info", SC.XEN_SYSCTL_TBUFOP_get_info);
  }

  /** xc_tbuf_set_size: pages per CPU (before the buffers are made). */
  async tbufSetSize(pages: number): Promise<void> {
    await this.tbufOp("xc_tbuf_set_size", SC.XEN_SYSCTL_TBUFOP_set_size, (b, u) =>
      b.set32(u + SC.xen_sysctl_tbuf_op.fields.size.offset, pages),
    );
  }

  /** xc_tbuf_enable / xc_tbuf_disable */
  async tbufEnable(on: boolean): Promise<void> {
    await this.tbufOp(
      on ? "xc_tbuf_enable" : "xc_tbuf_disable",
      on ? SC.XEN_SYSCTL_TBUFOP_enable : SC.XEN_SYSCTL_TBUFOP_disable,
    );
  }

  /** xc_tbuf_set_evt_mask */
  async tbufSetEvtMask(mask: number): Promise<void> {
    await this.tbufOp("xc_tbuf_set_evt_mask", SC.XEN_SYSCTL_TBUFOP_set_evt_mask, (b, u) =>
      b.set32(u + SC.xen_sysctl_tbuf_op.fields.evt_mask.offset, mask),
    );
  }

  /** xc_tbuf_set_cpu_mask: bit n traces pCPU n. */
  async tbufSetCpuMask(mask: number): Promise<void> {
    const bits = new Buf(8);
    bits.set32(0, mask);
    const f = SC.xen_sysctl_tbuf_op.fields;
    await this.tbufOp(
      "xc_tbuf_set_cpu_mask",
      SC.XEN_SYSCTL_TBUFOP_set_cpu_mask,
      (b, u, [buf]) => {
        b.set64(u + f.cpu_mask.offset, buf!);
        b.set32(u + f.cpu_mask.offset + 8, 64);
      },
      [bits],
    );
  }

  /**
   * XEN_DOMCTL_wasm32_getcontext: a paused PV domain's context beyond its
   * pages, as bytes. One call with a buffer as large as the last context
   * (a migration's stop takes it inside the downtime); a second, sized as
   * the hypervisor said, when it did not fit (-ENOBUFS).
   */
  async wasm32GetContext(domid: number): Promise<Uint8Array> {
    const f = DC.xen_domctl_wasm32_context.fields;
    const u = DC.xen_domctl.fields.u.offset;
    const get = (buf: Buf): Promise<Buf> =>
      this.domctlBuffer(
        "xc_wasm32_getcontext",
        DC.XEN_DOMCTL_wasm32_getcontext,
        domid,
        f.buffer.offset,
        f.size.offset,
        buf,
      );
    let buf = new Buf(this.contextGuess);
    let got: Buf;
    try {
      got = await get(buf);
    } catch (e) {
      if (!(e instanceof XcError) || e.errno !== XenErrno.ENOBUFS) throw e;
      const sized = await this.domctl(
        "xc_wasm32_getcontext",
        DC.XEN_DOMCTL_wasm32_getcontext,
        domid,
      );
      buf = new Buf(sized.u32(u + f.size.offset));
      got = await get(buf);
    }
    const size = got.u32(u + f.size.offset);
    this.contextGuess = Math.max(this.contextGuess, size);
    return buf.bytes.subarray(0, size);
  }

  /** XEN_DOMCTL_wasm32_setcontext: puts a saved context into a domain being restored. */
  async wasm32SetContext(domid: number, context: Uint8Array): Promise<void> {
    const buf = new Buf(context.length);
    buf.bytes.set(context);
    const f = DC.xen_domctl_wasm32_context.fields;
    await this.domctlBuffer(
      "xc_wasm32_setcontext",
      DC.XEN_DOMCTL_wasm32_setcontext,
      domid,
      f.buffer.offset,
      f.size.offset,
      buf,
    );
  }

  /** xc_domain_resume's hypercall (XEN_DOMCTL_resumedomain): a suspended domain runs on. */
  async domainResume(domid: number): Promise<void> {
    await this.domctl("xc_domain_resume", DC.XEN_DOMCTL_resumedomain, domid);
  }

  /**
   * xc_shadow_control: log-dirty's OFF, ENABLE_LOGDIRTY, CLEAN and PEEK. For
   * CLEAN and PEEK, `bitmap` (if given) receives a bit per pfn; resolves
   * with the domain's pfn count and the dirty pages.
   */
  async shadowControl(
    domid: number,
    op: number,
    bitmap?: Uint8Array,
  ): Promise<{ pages: number; dirty: number }> {
    const f = DC.xen_domctl_shadow_op.fields;
    const bits = new Buf(bitmap?.length ?? 0);
    const b = await this.domctl(
      "xc_shadow_control",
      DC.XEN_DOMCTL_shadow_op,
      domid,
      (b, u, [buf]) => {
        b.set32(u + f.op.offset, op);
        if (bitmap) {
          b.set64(u + f.dirty_bitmap.offset, buf!);
          b.set64(u + f.pages.offset, bitmap.length * 8);
        }
      },
      bitmap ? [bits] : [],
    );
    bitmap?.set(bits.bytes);
    const u = DC.xen_domctl.fields.u.offset;
    return { pages: b.u64(u + f.pages.offset), dirty: b.u32(u + f.dirty_count.offset) };
  }

  /** xc_domain_maximum_gpfn: the highest pfn `domid` can address. */
  async maximumGpfn(domid: number): Promise<number> {
    const arg = new Buf(2);
    arg.set16(0, domid);
    const [a] = this.addrs(2);
    const rc = await this.channel.call(
      HYPERVISOR.__HYPERVISOR_memory_op,
      [XENMEM_maximum_gpfn, a!],
      [arg.bytes],
    );
    if (rc < 0) throw new XcError(`xc_domain_maximum_gpfn(${domid})`, -rc);
    return rc;
  }

  /**
   * The xen_version answers a dump-core file records, as the hypervisor
   * wrote them: version, extraversion, compile_info, capabilities,
   * changeset, platform_parameters and pagesize.
   */
  async versionRecords(): Promise<{
    version: number;
    extra: Uint8Array;
    compileInfo: Uint8Array;
    capabilities: Uint8Array;
    changeset: Uint8Array;
    platform: Uint8Array;
    pagesize: number;
  }> {
    const call = (cmd: number, size: number): Promise<[number, Uint8Array]> =>
      this.xenVersion(cmd, size);
    const [version] = await call(V.XENVER_version, 0);
    const [, extra] = await call(V.XENVER_extraversion, V.XEN_EXTRAVERSION_LEN);
    const [, compileInfo] = await call(V.XENVER_compile_info, V.xen_compile_info.size);
    const [, capabilities] = await call(V.XENVER_capabilities, V.XEN_CAPABILITIES_INFO_LEN);
    const [, changeset] = await call(V.XENVER_changeset, V.XEN_CHANGESET_INFO_LEN);
    const [, platform] = await call(V.XENVER_platform_parameters, V.xen_platform_parameters.size);
    const [pagesize] = await call(V.XENVER_pagesize, 0);
    return { version, extra, compileInfo, capabilities, changeset, platform, pagesize };
  }

  /** xc_version: XENVER_version, extraversion, capabilities and compile info. */
  async version(): Promise<{
    major: number;
    minor: number;
    extra: string;
    capabilities: string;
    compiler: string;
    compileDate: string;
  }> {
    const call = (cmd: number, size: number): Promise<[number, Uint8Array]> =>
      this.xenVersion(cmd, size);
    const cstr = (b: Uint8Array, l?: Layout<string>, field?: string): string => {
      const s = l && field ? b.subarray(l.fields[field]!.offset) : b;
      const end = s.indexOf(0);
      return Buffer.from(s.subarray(0, end < 0 ? s.length : end)).toString("utf8");
    };
    const [v] = await call(V.XENVER_version, 0);
    const [, extra] = await call(V.XENVER_extraversion, V.XEN_EXTRAVERSION_LEN);
    const [, caps] = await call(V.XENVER_capabilities, V.XEN_CAPABILITIES_INFO_LEN);
    const [, ci] = await call(V.XENVER_compile_info, V.xen_compile_info.size);
    return {
      major: v >>> 16,
      minor: v & 0xffff,
      extra: cstr(extra),
      capabilities: cstr(caps),
      compiler: cstr(ci, V.xen_compile_info, "compiler"),
      compileDate: cstr(ci, V.xen_compile_info, "compile_date"),
    };
  }

  close(): void {
    this.channel.close();
  }
}
