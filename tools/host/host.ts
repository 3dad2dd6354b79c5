/**
 * The programmatic host API: boot a machine (hypervisor plus Dom0's record),
 * create domains from a config object, pause, unpause, shut down, destroy,
 * list, and read consoles; it runs Dom0's services (xenstored,
 * xenconsoled, the vbd and vif backends). Tests, benchmarks, `npm start`
 * and the host daemon (daemon.ts, which adds libxl and the toolstack's
 * sockets) use it.
 */
// First: the engine's settings apply to the code loaded after them.
import "./engine.js";
import { loadKernelFile, type Kernel } from "../../xen/arch/wasm32/kernel.js";
import {
  DEFAULT_HYPERVISOR_CONFIG,
  Hypervisor,
  type DomainConfig,
  type HypervisorConfig,
} from "../../xen/common/hypervisor.js";
import type { Domain, DomainRunState } from "../../xen/common/domain.js";
import { XenErrno } from "../../xen/include/public/errno.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";
import { Dom0Drivers } from "../../dom0/drivers/index.js";
import type { XenEvtchn } from "../../dom0/drivers/evtchn.js";
import { Xenstored } from "../xenstored/xenstored.js";
import { RingTransport } from "../xenstored/ring.js";
import { XsSocketServer } from "../xenstored/socket.js";
import { xenstoredSocket } from "../rundir.js";
import { restoreState, saveState, type XenstoreStateV1 } from "../xenstored/persist.js";
import {
  introduceStore,
  introduceToXenstore,
  releaseFromXenstore,
  seedConsole,
  writeConsoleDevice,
  writeDomainHome,
} from "./xenstore_domain.js";
import { domainPath } from "../xenstored/path.js";
import { Xenconsoled } from "../console/daemon.js";
import { LocalXenbusStore } from "./xenbus_store.js";
import { XenbusBackendBus, type DeviceInfo } from "../../dom0/backends/xenbus.js";
import { Blkback } from "../../dom0/backends/blkback.js";
import { RawFileStorage, type BlockStorage } from "../../dom0/backends/storage.js";
import { Qcow2Storage } from "../../dom0/backends/qcow2.js";
import { ChannelBackend } from "../../dom0/backends/channel.js";
import { Netback } from "../../dom0/backends/netback.js";
import { Bridge } from "../../dom0/backends/bridge.js";
import { XenDevicemodel } from "../../dom0/drivers/devicemodel.js";
import { DeviceModel } from "../../dom0/devicemodel/qemu.js";
import type { DmDiskSpec } from "../../dom0/devicemodel/dm_protocol.js";
import type { ShareSpec, WasiState } from "../../dom0/devicemodel/wasi.js";
import type { HvmVcpuSaved } from "../../xen/arch/wasm32/hvm_vcpu_worker.js";
import { HVM_DONE } from "../../xen/arch/wasm32/hvm_ctl.js";
import type { HvmImage } from "../../xen/arch/wasm32/hvm_image.js";
import { XcInterface } from "../libxc/xc.js";
import { LocalHypercalls } from "../libxc/channel.js";
import { XcDom } from "../libxc/xc_dom.js";
import { encodeHvmContext } from "../../xen/common/hvm_context.js";
import { WASM_PAGE_SIZE } from "../../xen/arch/wasm32/config.js";
import type { HvmDomainConfig } from "../../xen/common/hypervisor.js";
import { MAX_NR_IOREQ_SERVERS } from "../../xen/common/ioreq.js";
import { start_info } from "../../xen/include/public/arch-wasm32.js";
import { PFN_CONSOLE, PFN_XENSTORE } from "../../xen/arch/wasm32/config.js";
import {
  HVM_PARAM_CONSOLE_EVTCHN,
  HVM_PARAM_CONSOLE_PFN,
  HVM_PARAM_NR_IOREQ_SERVER_PAGES,
  HVM_PARAM_STORE_EVTCHN,
  HVM_PARAM_STORE_PFN,
} from "../../xen/include/public/hvm/hvm_op.js";

/** A domain config whose kernel is a file path or an already loaded Kernel. */
export type HostDomainConfig = Omit<DomainConfig, "kernel"> & {
  kernel: string | Kernel;
  /**
   * Connect the guest to xenstored (store ring, port, /local/domain/N) and
   * give it a PV console ring served by xenconsoled.
   * libxl sets it for every guest it creates. Off by default here: the
   * density and creation benchmarks measure bare domains, and Dom0's 2-level
   * event channels bound Dom0 to about 2,000 connected guests (two ports each).
   */
  xenstore?: boolean;
};

/** An HVM domain to create: the program and its device model's devices. */
export interface HostHvmConfig extends Omit<HvmDomainConfig, "image"> {
  /**
   * The program: prepared already by the hypervisor's compiler in this
   * process (hvm_image.ts; the code store takes it as it is), or its bytes
   * as a save file or a migration stream carries them, uploaded to the
   * hypervisor with XEN_DOMCTL_wasm32_module when it does not have them.
   */
  image: HvmImage | { sha256: Uint8Array; bytes: Uint8Array; saveable: boolean };
  /** argv[0], then the words of the command line. */
  args: string[];
  env: string[];
  shares: ShareSpec[];
  disks: DmDiskSpec[];
  /** The emulated serial port: "pty" (xenconsoled's serial console, the default) or "none". */
  serial?: "pty" | "none";
  xenstore?: boolean;
  /** libxc's domain builder's lines (xl -v create). */
  builderLog?: (line: string) => void;
  /**
   * Devices and memory of a saved domain (xl restore): `restore` (the
   * vCPU, clock and memory size) goes to the hypervisor, `fill` writes the
   * saved memory once the program is instantiated, `devices` are opened
   * again by the device model. The domain is made paused.
   */
  restored?: {
    fill(memory: WebAssembly.Memory): Promise<void>;
    devices: WasiState;
  };
}

/** A saveable HVM domain stopped for a save (Host.stopHvm): what the file carries beside its memory. */
export interface StoppedHvm {
  vcpu: HvmVcpuSaved;
  devices: WasiState;
  /** Its system time at the stop (ns), and its memory's size in wasm pages. */
  stimeNs: number;
  wasmPages: number;
  memory: WebAssembly.Memory;
}

/** One row of `list()`, with the fields `xl list` prints. */
export interface DomainInfo {
  name: string;
  domid: number;
  /** Current memory, MiB. */
  memMiB: number;
  maxMemMiB: number;
  vcpus: number;
  state: DomainRunState;
  /** `xl list`'s state column, e.g. "-b----". */
  stateFlags: string;
  /** CPU time used, seconds. */
  cpuTime: number;
  shutdownReason: string | undefined;
  crashMessage: string | undefined;
}

export class Host {
  readonly hv: Hypervisor;
  /** Dom0's kernel drivers: privcmd, evtchn, gntdev, gntalloc. */
  readonly dom0: Dom0Drivers;

  /** xenconsoled, as a Dom0 service: guests' console rings. */
  readonly xenconsoled: Xenconsoled;
  /** Dom0's xenbus (the backends' xenstore connection) and the block backend. */
  readonly xenbus: LocalXenbusStore;
  readonly blkback: Blkback;
  readonly vbd: XenbusBackendBus;
  /** The network backend, its vif bus, and the software bridges by name (xenbr0...). */
  readonly netback: Netback;
  readonly vif: XenbusBackendBus;
  /** PV channels (consoles 1 and up, xl.cfg's channel=): their backend and bus. */
  readonly channelBackend: ChannelBackend;
  readonly channels: XenbusBackendBus;
  readonly bridges = new Map<string, Bridge>();
  /** xenstored, as a Dom0 service with guest rings. */
  xenstored: Xenstored;
  private xsRings: RingTransport;
  private readonly xsServers: XsSocketServer[] = [];
  private readonly xsEvtchn: XenEvtchn;
  /** libxendevicemodel for the device models, and the running ones by domid. */
  readonly xendevicemodel: XenDevicemodel;
  readonly deviceModels = new Map<number, DeviceModel>();

  /** @param consoleLogDir where xenconsoled writes guest-<name>.log (none without it) */
  constructor(config: Partial<HypervisorConfig> = {}, consoleLogDir?: string) {
    this.hv = new Hypervisor({ ...DEFAULT_HYPERVISOR_CONFIG, ...config });
    this.dom0 = new Dom0Drivers(this.hv);
    this.xendevicemodel = new XenDevicemodel(this.dom0.privcmd);
    this.xsRings = new RingTransport(this.dom0, (id) => this.hv.domainById(id) !== undefined);
    this.xenstored = new Xenstored(this.xsRings);
    this.xsEvtchn = this.dom0.openEvtchn();
    this.xenconsoled = new Xenconsoled(this.dom0, consoleLogDir);
    this.xenbus = new LocalXenbusStore(this.xenstored);
    this.blkback = new Blkback(this.dom0);
    const log = (m: string): void => this.hv.console.printk(`blkback: ${m}`);
    this.vbd = new XenbusBackendBus(
      this.xenbus,
      "vbd",
      (info) => this.blkback.device(info, openDiskStorage(info), log),
      log,
    );
    this.netback = new Netback(this.dom0);
    const netlog = (m: string): void => this.hv.console.printk(`netback: ${m}`);
    this.vif = new XenbusBackendBus(
      this.xenbus,
      "vif",
      (info) =>
        this.netback.device(
          info,
          this.bridge(info.store.read(`${info.backend}/bridge`) ?? "xenbr0"),
          netlog,
        ),
      netlog,
    );
    this.channelBackend = new ChannelBackend(this.dom0);
    const chanlog = (m: string): void => this.hv.console.printk(`channel: ${m}`);
    this.channels = new XenbusBackendBus(
      this.xenbus,
      "console",
      (info) => this.channelBackend.device(info, chanlog),
      chanlog,
      // Console 0 is xenconsoled's; channels are consoles 1 and up.
      (devid) => devid > 0,
    );
    this.hv.listeners.add({
      shutdown: (d) => this.xenstored.domainShutdown(d.domid),
      dying: (d) => {
        const dm = this.deviceModels.get(d.domid);
        this.deviceModels.delete(d.domid);
        // Once the vCPU thread is gone: it may be in the middle of I/O on a
        // file the device model would close.
        void (d.hvm?.vcpu?.stopped ?? Promise.resolve()).then(() => dm?.stop());
        this.xenconsoled.remove(d.domid);
        releaseFromXenstore(d.domid, this.xenstored);
      },
    });
  }

  /** Creates a domain; rejects with an Error that names what was wrong. */
  async create(cfg: HostDomainConfig): Promise<Domain> {
    const kernel = typeof cfg.kernel === "string" ? await loadKernelFile(cfg.kernel) : cfg.kernel;
    return this.createSync({ ...cfg, kernel });
  }

  /** Creates a domain from an already loaded kernel, synchronously. */
  createSync(cfg: DomainConfig & { xenstore?: boolean }): Domain {
    const d = this.hv.createDomain(cfg);
    if (cfg.xenstore) {
      // Its console is its PV console ring: console_io is refused, as Xen's
      // release builds refuse it to a domain that is not a console domain.
      d.isConsole = false;
      try {
        introduceToXenstore(d, this.xenstored, this.xsEvtchn);
        this.xenconsoled.add(d.domid, seedConsole(d, this.xenstored, this.xsEvtchn), d.name);
      } catch (e) {
        this.hv.destroyDomain(d.domid);
        throw new Error(
          `cannot connect domain '${cfg.name}' to xenstore: ${(e as Error).message}`,
          {
            cause: e,
          },
        );
      }
    }
    return d;
  }

  /**
   * libxl's connection of a domain the builder made (tools/libxc/xc_dom.ts):
   * its xenstore nodes and XS_INTRODUCE, its console nodes, and xenconsoled
   * serving its console ring. Throws naming what failed.
   */
  /**
   * The block and network backends let go of domain `domid`'s rings,
   * leaving its devices' nodes as they are (a save or a migration: the
   * domain's next backends attach to the same rings); resolves once no
   * request of its is in flight.
   */
  async detachDevices(domid: number): Promise<void> {
    await Promise.all([
      this.vbd.detach(domid),
      this.vif.detach(domid),
      this.channels.detach(domid),
    ]);
  }

  /** The backends map `domid`'s rings again after detachDevices (a checkpoint, a failed migration). */
  reattachDevices(domid: number): void {
    this.vbd.reattach(domid);
    this.vif.reattach(domid);
    this.channels.reattach(domid);
  }

  /**
   * The xenstore nodes of a domain being made, before it is built or
   * restored: its home and its console's device (libxl__domain_make). A
   * migration's receiver writes them while the pages come, so that only
   * connectRings is left for the downtime.
   */
  writeBuiltHome(domid: number, name: string): void {
    writeDomainHome(domid, name, this.xenstored);
    writeConsoleDevice(domid, this.xenstored);
  }

  /** Connects a built (or restored) domain to xenstore and xenconsoled: writeBuiltHome, then connectRings. */
  connectBuilt(domid: number, name: string, storePort: number, consolePort: number): void {
    this.writeBuiltHome(domid, name);
    this.connectRings(domid, name, storePort, consolePort);
  }

  /**
   * The part of connectBuilt that needs the domain's rings in place: the
   * store's ring and port and XS_INTRODUCE (libxl's build_post), the
   * console's port, and xenconsoled.
   */
  connectRings(domid: number, name: string, storePort: number, consolePort: number): void {
    try {
      introduceStore(domid, storePort, this.xenstored);
      this.xenstored.writeText(`${domainPath(domid)}/console/port`, String(consolePort));
      this.xenconsoled.add(domid, consolePort, name);
    } catch (e) {
      throw new Error(`cannot connect domain '${name}' to xenstore: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }

  /**
   * Creates an HVM domain and its device model (as libxl spawns QEMU): the
   * domain is built paused, the device model starts and enables its ioreq
   * server, then the domain runs unless `paused`. The serial console is
   * xenconsoled's, as `xl console -t serial` reaches it. Rejects naming what
   * failed, with nothing left behind.
   */
  async createHvm(cfg: HostHvmConfig): Promise<Domain> {
    if (cfg.restore && !cfg.restored)
      throw new Error("a restore needs the saved memory and devices");
    // The program was prepared by the hypervisor's own compiler, in this
    // process: the code store takes it under its content hash, as if its
    // bytes had been uploaded (a restore's and a migration's are).
    const img = cfg.image;
    if ("module" in img) this.hv.codeStore.adoptHvm(img);
    const program =
      "module" in img
        ? { sha256: Buffer.from(img.hash, "hex"), saveable: img.saveable }
        : { sha256: img.sha256, bytes: img.bytes, saveable: img.saveable };
    const xc = new XcInterface(new LocalHypercalls(this.dom0.privcmd));
    const privcmd = this.dom0.privcmd;
    const builder = new XcDom(
      xc,
      { map: (id, g) => privcmd.mmapBatchV2(id, g), unmap: (id, g) => privcmd.munmap(id, g) },
      cfg.builderLog,
    );
    const r = cfg.restore;
    let domid: number;
    try {
      ({ domid } = await builder.buildHvm(
        {
          domid: cfg.domid ?? 0,
          name: cfg.name,
          handle: new Uint8Array(16),
          memoryMiB: cfg.memory,
          maxmemMiB: cfg.memory,
          maxEvtchnPort: cfg.maxEvtchnPort ?? 0,
          maxGrantFrames: cfg.maxGrantFrames ?? -1,
          maxMaptrackFrames: cfg.maxMaptrackFrames ?? -1,
          rtcTimeOffsetSeconds: Math.round(cfg.rtcTimeoffset ?? 0),
        },
        program,
        r
          ? encodeHvmContext({ stimeNs: r.stimeNs, wasmPages: r.wasmPages, vcpu: r.vcpu })
          : undefined,
      ));
    } catch (e) {
      throw new Error(`cannot create domain '${cfg.name}': ${(e as Error).message}`, { cause: e });
    }
    const d = this.get(domid);
    try {
      if (cfg.weight !== undefined || cfg.cap !== undefined)
        await xc.schedCredit(domid, { weight: cfg.weight ?? 256, cap: cfg.cap ?? 0 });
      if (cfg.restored) {
        // The saved memory goes in over what the program's data segments wrote.
        await d.hvm!.vcpu!.instantiated();
        if (d.hvm!.vcpu!.state === HVM_DONE) throw new Error("the program's vCPU did not start");
        await cfg.restored.fill(d.hvm!.memory);
      }
      if (cfg.xenstore) {
        d.isConsole = false;
        introduceToXenstore(d, this.xenstored, this.xsEvtchn);
        const consolePort = seedConsole(d, this.xenstored, this.xsEvtchn);
        this.xenconsoled.add(domid, consolePort, d.name);
        // What libxl's HVM build records for the guest's PV drivers: the
        // pages (in the domain's Xen area, out of a WASI program's reach)
        // and ports of its xenstore and console rings.
        const si = (f: "store_evtchn" | "console_evtchn"): number =>
          d.mem.u32(d.startInfoAddr() + start_info.fields[f].offset);
        const set = (i: number, v: number): void => this.xendevicemodel.setParam(domid, i, v);
        set(HVM_PARAM_STORE_PFN, PFN_XENSTORE);
        set(HVM_PARAM_STORE_EVTCHN, si("store_evtchn"));
        set(HVM_PARAM_CONSOLE_PFN, PFN_CONSOLE);
        set(HVM_PARAM_CONSOLE_EVTCHN, consolePort);
      }
      this.xendevicemodel.setParam(domid, HVM_PARAM_NR_IOREQ_SERVER_PAGES, MAX_NR_IOREQ_SERVERS);
      const started: { dm?: DeviceModel } = {};
      if (cfg.serial !== "none")
        this.xenconsoled.addSerial(domid, d.name, (b) => started.dm?.input(b));
      const dm = await DeviceModel.start(
        domid,
        this.xendevicemodel,
        {
          args: cfg.args,
          env: cfg.env,
          shares: cfg.shares,
          disks: cfg.disks,
          systemTimeBase: process.hrtime.bigint() - BigInt(Math.round(d.stime())),
          restore: cfg.restored?.devices,
        },
        {
          serial: (b) => this.xenconsoled.serialOutput(domid, b),
          log: (line) => this.hv.console.printk(`qemu-dm: ${line}`),
          // An HVM guest without its device model waits forever on its next
          // I/O: it is crashed instead, naming the cause, and on_crash decides.
          died: (why) => {
            this.deviceModels.delete(domid);
            if (this.hv.domains.get(domid) === d)
              this.hv.domainCrash(d, undefined, `its device model stopped: ${why}`);
          },
        },
      );
      if (this.hv.domains.get(domid) !== d || d.isDying) {
        await dm.stop();
        throw new Error("the domain was destroyed while its device model started");
      }
      started.dm = dm;
      this.deviceModels.set(domid, dm);
    } catch (e) {
      if (this.hv.domains.get(domid) === d) this.hv.destroyDomain(domid);
      throw new Error(`cannot start the device model of '${cfg.name}': ${(e as Error).message}`, {
        cause: e,
      });
    }
    // libxl's domcreate_complete: the domain runs.
    if (!cfg.paused) await xc.domainUnpause(domid);
    return d;
  }

  /**
   * Stops paused HVM domain `domid` for a save (docs/hvm.md, "Saving an HVM
   * guest"): its device model withdraws a call the program waits in, the
   * program's stack is unwound at its next safe point, and the device
   * model's descriptors are described. Rejects (and the domain goes on as
   * it was) when the program was not made saveable, reaches no safe point
   * within `timeoutMs`, or holds a descriptor that cannot be opened again.
   */
  async stopHvm(domid: number, timeoutMs = 10_000): Promise<StoppedHvm> {
    const d = this.get(domid);
    const vcpu = d.hvm?.vcpu;
    const dm = this.deviceModels.get(domid);
    if (!d.hvm || !vcpu) throw new Error(`domain ${domid} is not an HVM domain`);
    if (d.isShutdown || d.isDying)
      throw new Error(`domain ${domid} has shut down (${d.shutdownName ?? "dying"})`);
    if (!d.hvm.image.saveable)
      throw new Error(
        `domain ${domid}: its program was not made saveable (xl.cfg nomigrate=0; HVM guests default to nomigrate=1 on tsxen, docs/hvm.md)`,
      );
    if (!dm) throw new Error(`domain ${domid} has no device model`);
    dm.quiesce();
    let saved: HvmVcpuSaved;
    try {
      saved = await vcpu.unwind(timeoutMs);
    } catch (e) {
      dm.resume();
      throw new Error(`domain ${domid}: ${(e as Error).message}`, { cause: e });
    }
    try {
      const devices = await dm.saveState();
      return {
        vcpu: saved,
        devices,
        stimeNs: d.stime(),
        wasmPages: d.hvm.memory.buffer.byteLength / WASM_PAGE_SIZE,
        memory: d.hvm.memory,
      };
    } catch (e) {
      this.resumeHvm(domid);
      throw new Error(`domain ${domid}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** After stopHvm: the program goes on in this domain where it stopped (xl save -c). */
  resumeHvm(domid: number): void {
    const d = this.hv.domains.get(domid);
    d?.hvm?.vcpu?.rewind();
    this.deviceModels.get(domid)?.resume();
  }

  /**
   * The software bridge `name`, made on first use (as `brctl addbr` would)
   * and said so on the console: tsxen creates the bridges vifs ask for,
   * where Xen's vif-bridge script fails on one that does not exist.
   */
  bridge(name: string): Bridge {
    let b = this.bridges.get(name);
    if (!b) {
      b = new Bridge(name);
      this.bridges.set(name, b);
      this.hv.console.printk(`netback: bridge ${name} created (bridges are made on first use)`);
    }
    return b;
  }

  private get(domid: number): Domain {
    const d = this.hv.domains.get(domid);
    if (!d) throw new Error(`domain ${domid} does not exist`);
    return d;
  }

  pause(domid: number): void {
    this.hv.pauseDomain(this.get(domid));
  }

  unpause(domid: number): void {
    if (this.hv.unpauseDomain(this.get(domid)) < 0)
      throw new Error(`domain ${domid} is not paused`);
  }

  destroy(domid: number): void {
    const rc = this.hv.destroyDomain(domid);
    if (rc === -XenErrno.ESRCH) throw new Error(`domain ${domid} does not exist`);
    if (rc === -XenErrno.EPERM) throw new Error("domain 0 cannot be destroyed");
  }

  /** Every domain's state, Dom0 first, as `xl list` shows them. */
  list(): DomainInfo[] {
    const rows: DomainInfo[] = [
      {
        name: "Domain-0",
        domid: 0,
        memMiB: (this.hv.dom0Pages * PAGE_SIZE) >> 20,
        maxMemMiB: (this.hv.dom0Pages * PAGE_SIZE) >> 20,
        vcpus: 1,
        state: "running",
        stateFlags: "r-----",
        cpuTime: process.cpuUsage().user / 1e6,
        shutdownReason: undefined,
        crashMessage: undefined,
      },
    ];
    for (const d of [...this.hv.domains.values()].sort((a, b) => a.domid - b.domid)) {
      const s = d.runState;
      const flag = (c: string, on: boolean): string => (on ? c : "-");
      rows.push({
        name: d.name,
        domid: d.domid,
        memMiB: Math.floor((d.totPages * PAGE_SIZE) / 2 ** 20),
        maxMemMiB: Math.floor((d.maxPages * PAGE_SIZE) / 2 ** 20),
        vcpus: d.hvm ? 1 : d.vcpus.filter((v) => v.state !== 0).length,
        state: s,
        stateFlags:
          flag("r", s === "running") +
          flag("b", s === "blocked") +
          flag("p", d.pauseCount > 0) +
          flag("s", d.isShutdown) +
          // The shutdown reason's letter, as xl's "-rscwS" (poweroff shows '-').
          (d.isShutdown ? ("-rscwS"[d.shutdownReason] ?? "?") : "-") +
          flag("d", d.isDying),
        cpuTime: (d.hvm?.vcpu?.cpuTimeNs ?? d.vcpus.reduce((t, v) => t + v.cpuTimeNs, 0)) / 1e9,
        shutdownReason: d.shutdownName,
        crashMessage: d.crashMessage,
      });
    }
    return rows;
  }

  /**
   * Everything kept of a domain's console output: its PV console (what
   * xenconsoled keeps, with the "\r\n" a guest sends a terminal read as
   * "\n"), or, for a console domain without one, what it wrote with
   * console_io.
   */
  readConsole(domid: number): string {
    const d = this.get(domid);
    if (!d.isConsole && this.xenconsoled.has(domid))
      return this.xenconsoled.read(domid).replace(/\r\n/g, "\n");
    return new TextDecoder().decode(d.consoleHistory());
  }

  /** Calls `fn` with each piece of a domain's console output as it arrives; returns an unsubscribe. */
  onConsole(domid: number, fn: (text: string) => void): () => void {
    const d = this.get(domid);
    if (!d.isConsole && this.xenconsoled.has(domid)) {
      const decoder = new TextDecoder();
      return this.xenconsoled.attach(
        domid,
        {
          output: (b) => fn(decoder.decode(b, { stream: true }).replace(/\r\n/g, "\n")),
          closed: () => {},
        },
        false,
      );
    }
    const l = (b: Uint8Array): void => fn(new TextDecoder().decode(b));
    d.consoleListeners.add(l);
    return () => d.consoleListeners.delete(l);
  }

  /**
   * Resolves when domain `domid` has shut down (or crashed), with its reason
   * name ("destroyed" if it went without), or rejects after `timeoutMs`.
   */
  waitShutdown(domid: number, timeoutMs = 10_000): Promise<string> {
    const d = this.get(domid);
    if (d.isShutdown) return Promise.resolve(d.shutdownName ?? "unknown");
    return new Promise((resolve, reject) => {
      // Infinity: as long as it takes (xl shutdown -w).
      const timer = Number.isFinite(timeoutMs)
        ? setTimeout(() => {
            this.hv.listeners.delete(l);
            reject(new Error(`domain ${domid} did not shut down within ${timeoutMs} ms`));
          }, timeoutMs)
        : undefined;
      const done = (why: string): void => {
        clearTimeout(timer);
        this.hv.listeners.delete(l);
        resolve(why);
      };
      const l = {
        shutdown: (s: Domain) => {
          if (s === d) done(s.shutdownName ?? "unknown");
        },
        // Destroyed without shutting down: nothing more will come.
        destroyed: (id: number) => {
          if (id === domid) done("destroyed");
        },
      };
      this.hv.listeners.add(l);
    });
  }

  /** Runs hypervisor debug keys (xl debug-keys): 'q' domains, 'e' event channels, 'g' grants. */
  debugKeys(keys: string): void {
    this.hv.debugKeys(keys);
  }

  /** The hypervisor console (xl dmesg). */
  dmesg(clear = false): string {
    return this.hv.console.read(clear);
  }

  /**
   * Restarts xenstored as Xen's live update does: saves its state, stops it
   * (its rings are unmapped and its ports closed), and starts a new one from
   * the state, which reconnects to every guest. Returns the saved state.
   */
  restartXenstored(): XenstoreStateV1 {
    const state = saveState(this.xenstored);
    this.xsRings.dispose();
    this.xsRings = new RingTransport(this.dom0, (id) => this.hv.domainById(id) !== undefined);
    // Through JSON, as a state file would go.
    this.xenstored = restoreState(JSON.parse(JSON.stringify(state)), this.xsRings);
    return state;
  }

  /**
   * Serves xenstored on a unix socket (default `$TSXEN_RUN_DIR/xenstored/socket`),
   * for `xenstore-*` tools, Xen's and ours. Resolves once it listens.
   */
  async serveXenstore(path = xenstoredSocket()): Promise<XsSocketServer> {
    const server = new XsSocketServer(() => this.xenstored, path);
    await server.listen();
    this.xsServers.push(server);
    return server;
  }

  /** Destroys every domain and stops the machine. */
  async shutdown(): Promise<void> {
    for (const s of this.xsServers.splice(0)) await s.close();
    this.vbd.dispose();
    this.blkback.dispose();
    this.vif.dispose();
    this.netback.dispose();
    this.channels.dispose();
    this.channelBackend.dispose();
    this.xenbus.dispose();
    this.xenconsoled.dispose();
    const dms = [...this.deviceModels.values()];
    this.deviceModels.clear();
    await Promise.all(dms.map((dm) => dm.stop()));
    await this.hv.dispose();
    this.xsRings.dispose();
    this.xsEvtchn.dispose();
  }
}

/**
 * The storage a vbd backend directory names: `params` (the image), `format`
 * and `mode`, as libxl writes them. Throws naming what is wrong.
 */
export function openDiskStorage(info: DeviceInfo): BlockStorage {
  const node = (k: string): string | undefined => info.store.read(`${info.backend}/${k}`);
  const params = node("params");
  if (!params) throw new Error("no params (the disk image) in the backend directory");
  const format = node("format") ?? "raw";
  if (format !== "raw" && format !== "qcow2") {
    throw new Error(`${params}: format ${format} is not raw or qcow2`);
  }
  const ro = node("mode") !== "w";
  try {
    return format === "qcow2" ? new Qcow2Storage(params, ro) : new RawFileStorage(params, ro);
  } catch (e) {
    // The storage's own messages name the image already.
    const why = (e as Error).message;
    throw new Error(why.includes(params) ? why : `cannot open ${params}: ${why}`, { cause: e });
  }
}
