/**
 * libxl's domain lifecycle (Xen's libxl_create.c, libxl_domain.c), over the
 * host's hypervisor and xenstored, for a domain config from xl.cfg:
 * create (kernel, memory, vCPUs, command line, xenstore connection, and the
 * /vm and /local/domain/N nodes of xen-doc `misc/xenstore-paths`), shutdown
 * and reboot through control/shutdown, destroy, memory/target,
 * cpu/N/availability, and the on_poweroff / on_reboot / on_crash actions.
 *
 * It runs in the host daemon, where a wasm kernel must be compiled to run:
 * `xl` reaches it over the daemon's libxl socket (server.ts).
 */
import { createHash, randomUUID } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { basename, join } from "node:path";
import { logDir } from "../rundir.js";
import type { BlkbackStats } from "../../dom0/backends/blkback.js";
import type { NetbackStats } from "../../dom0/backends/netback.js";
import { loadHvmImage, loadHvmImageFile, type HvmImage } from "../../xen/arch/wasm32/hvm_image.js";
import { readHostFile } from "../../xen/common/host_file.js";
import { WASM_PAGE_SIZE } from "../../xen/arch/wasm32/config.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";
import { checkWasiState, type WasiState } from "../../dom0/devicemodel/wasi.js";
import {
  decodeHvmContext,
  emulatorRecord,
  hvmStream,
  hvmTail,
  readHvmStream,
  type HvmContext,
} from "../libxc/xc_hvm.js";
import { HVM_SAVEABLE_MAX_BYTES, HVM_UNWOUND } from "../../xen/arch/wasm32/hvm_ctl.js";
import { DHDR_TYPE_WASM32_HVM, type SequentialSource } from "../libxc/xc_sr.js";
import { p9GuestPath, parseP9Spec } from "./p9.js";
import type { Domain } from "../../xen/common/domain.js";
import type { Host, HostHvmConfig, StoppedHvm } from "../host/host.js";
import { domainPath } from "../xenstored/path.js";
import { DOM0 } from "../xenstored/perms.js";
import {
  isValidDomainName,
  migratable,
  splitCmdline,
  type Action,
  type XlDomainConfig,
} from "./config.js";
import { parseDiskSpec, vdevToDevid, type DiskSpec } from "./disk.js";
import { parseNicSpec, type NicSpec } from "./nic.js";
import { addDevice, devicePaths, frontendTree, listDevices, removeDevice } from "./device.js";
import { parseChannelSpec, type ChannelSpec } from "./channel.js";
import { XcInterface } from "../libxc/xc.js";
import { LocalHypercalls } from "../libxc/channel.js";
import { xcDomainDumpcore } from "../libxc/xc_core.js";
import {
  XcDom,
  xcDomKernelFile,
  type LiveSaveOptions,
  type LiveSaveStats,
  type XcDomConfig,
  type XcDomImage,
} from "../libxc/xc_dom.js";
import {
  saveFile,
  readSaveFile,
  type Frontends,
  type SavedDomain,
  type SavedWatch,
} from "./save.js";
import {
  receiveDomain,
  sendDomain,
  type MigrateOptions,
  type MigrationChannel,
} from "./migrate.js";
import { configJson } from "./json.js";
import {
  XenbusStateClosed,
  XenbusStateConnected,
  XenbusStateInitWait,
} from "../../xen/include/public/io/xenbus.js";
import { HVM_PARAM_CALLBACK_IRQ } from "../../xen/include/public/hvm/hvm_op.js";
import {
  GNTTAB_RESERVED_CONSOLE,
  GNTTAB_RESERVED_XENSTORE,
} from "../../xen/include/public/grant_table.js";

/** How long a create or block-attach waits for a disk's backend to open its image. */
export const BACKEND_WAIT_MS = 10_000;

/** A running domain as libxl knows it: its config and its /vm uuid. */
/** One backend device's counters (backendStats), as xentop shows them. */
export type BackendStats =
  | {
      kind: "vbd";
      domid: number;
      devid: number;
      /** Requests that waited for a free slot (Linux's oo_req): blkback never runs out. */
      oo: number;
      rd: number;
      wr: number;
      rsect: number;
      wsect: number;
    }
  | {
      kind: "vif";
      domid: number;
      devid: number;
      txBytes: number;
      txPackets: number;
      txErrors: number;
      rxBytes: number;
      rxPackets: number;
      rxDropped: number;
    };

export interface LibxlDomain {
  domid: number;
  config: XlDomainConfig;
  uuid: string;
  /** The kernel a PV domain was built from (what a save records as its module). */
  image?: Pick<XcDomImage, "sha256" | "bytes">;
}

export class Libxl {
  private readonly domains = new Map<number, LibxlDomain>();
  /** libxc, over Dom0's privcmd: the builder's and the toolstack's hypercalls. */
  readonly xc: XcInterface;
  /** Domains renamed by rename-restart, to keep names unique. */
  private renames = 0;
  /** Set while the host stops: no on_* action restarts anything. */
  private stopping = false;

  /**
   * @param dumpDir where on_crash's coredump-* actions write cores (Xen's
   *   XEN_DUMP_DIR, /var/lib/xen/dump): `<log dir>/dump` by default.
   */
  constructor(
    readonly host: Host,
    readonly dumpDir = join(logDir(), "dump"),
  ) {
    this.xc = new XcInterface(new LocalHypercalls(host.dom0.privcmd));
    host.hv.listeners.add({
      shutdown: (d) => setImmediate(() => this.onShutdown(d)),
      destroyed: (domid) => this.forget(domid),
    });
  }

  /** libxl_domain_create_new: builds and starts (or, paused, just builds) the domain. */
  /**
   * @param opts.log receives libxl's and libxc's log lines (what `xl -v`
   *   prints): each step of the domain builder.
   */
  async create(
    config: XlDomainConfig,
    opts: { paused?: boolean; log?: (line: string) => void } = {},
  ): Promise<Domain> {
    if (!isValidDomainName(config.name)) {
      throw new Error(`libxl: '${config.name}' is not a valid domain name`);
    }
    for (const x of this.domains.values()) {
      if (x.config.name === config.name) {
        throw new Error(`libxl: domain name '${config.name}' is in use by domain ${x.domid}`);
      }
    }
    // A vif without a MAC gets one now, and keeps it across reboots.
    config = {
      ...config,
      vifs: config.vifs.map((v) =>
        /(^|,)\s*mac=/.test(v) ? v : `${v}${v.trim() ? "," : ""}mac=${parseNicSpec(v).mac}`,
      ),
    };
    if (config.type === "hvm") return this.createHvm(config, opts.paused === true, opts.log);
    const log = opts.log ?? ((): void => {});
    const debug = (m: string): void => log(`libxl: debug: ${m}`);
    const uuid = config.uuid ?? randomUUID();
    config = { ...config, uuid };
    debug(`libxl_create.c: do_domain_create: name=${config.name} type=pv kernel=${config.kernel}`);
    const image = await xcDomKernelFile(config.kernel);
    // libxl__domain_make and libxl__build_pv: libxc's builder, hypercalls only.
    const builder = this.builder(log);
    const built = await builder.build(
      {
        ...this.domainOf(config, uuid),
        memoryMiB: config.memory,
        vcpus: config.vcpus,
        cmdline: config.cmdline,
      },
      image,
    );
    const domid = built.domid;
    const d = this.host.hv.domainById(domid)!;
    try {
      if (config.weight !== undefined || config.cap !== undefined) {
        await this.xc.schedCredit(domid, { weight: config.weight ?? 256, cap: config.cap ?? 0 });
      }
      debug(`libxl_dom.c: libxl__build_post: introducing domain ${domid} to xenstore`);
      this.host.connectBuilt(domid, config.name, built.storeEvtchn, built.consoleEvtchn);
      this.register(d, config, image);
      const disks = config.disks.map(parseDiskSpec);
      for (const disk of disks) this.addDisk(domid, disk);
      for (const spec of config.vifs) this.addNic(domid, parseNicSpec(spec));
      (config.channels ?? []).forEach((spec, i) =>
        this.addChannel(domid, i + 1, parseChannelSpec(spec)),
      );
      // The domain runs once every backend has its image open, as Xen's
      // libxl waits for its devices before unpausing.
      for (const disk of disks) await this.diskBackendReady(domid, disk);
      if (opts.paused !== true) {
        debug(`libxl_create.c: domcreate_complete: unpausing domain ${domid}`);
        await this.xc.domainUnpause(domid);
      }
    } catch (e) {
      this.discard(domid);
      throw e;
    }
    return d;
  }

  /**
   * libxl_domain_create_new for type "hvm": loads the WASI program, builds
   * the domain and starts its device model (tsxen's QEMU) with the
   * program's arguments, environment, serial port, shares and disks, as
   * libxl spawns QEMU for an HVM guest; the domain runs once its device
   * model is ready (unless `paused`).
   */
  private async createHvm(
    config: XlDomainConfig,
    paused: boolean,
    log?: (line: string) => void,
  ): Promise<Domain> {
    // A saveable program (nomigrate=0) is kept as given: a save carries it.
    let saved: Pick<XcDomImage, "sha256" | "bytes"> | undefined;
    let image: HvmImage;
    if (migratable(config)) {
      // Hashed here: read only up to the size a saveable program may have.
      const { bytes } = await readHostFile(config.kernel, {
        what: "kernel",
        maxBytes: HVM_SAVEABLE_MAX_BYTES,
      }).catch((e: Error) => {
        throw new Error(
          `nomigrate=0: ${e.message} (tsxen makes programs of at most ${HVM_SAVEABLE_MAX_BYTES} bytes saveable; docs/hvm.md)`,
          { cause: e },
        );
      });
      saved = {
        sha256: createHash("sha256").update(bytes).digest(),
        bytes: Uint8Array.from(bytes),
      };
      image = await loadHvmImage(bytes, true).catch((e: Error) => {
        throw new Error(`HVM program ${config.kernel}: ${e.message}`, { cause: e });
      });
    } else image = await loadHvmImageFile(config.kernel);
    log?.(
      `libxl: debug: libxl_create.c: do_domain_create: name=${config.name} type=hvm kernel=${config.kernel}`,
    );
    // libxl__domain_make and libxl__build_hvm: libxc's builder, hypercalls only.
    const d = await this.host.createHvm({
      ...this.hvmHostConfig(config, image),
      paused,
      builderLog: log,
    });
    this.register(d, config, saved);
    // Where QEMU says it runs (xenstore-paths: the device model's state).
    this.host.xenstored.writeText(`/local/domain/0/device-model/${d.domid}/state`, "running");
    return d;
  }

  /** What the host makes an HVM domain of (the program, its device model's devices) from its config. */
  private hvmHostConfig(config: XlDomainConfig, image: HostHvmConfig["image"]): HostHvmConfig {
    const argv0 = basename(config.kernel).replace(/\.wasm$/, "");
    return {
      name: config.name,
      image,
      memory: config.memory,
      cmdline: config.cmdline,
      weight: config.weight,
      cap: config.cap,
      maxEvtchnPort: config.maxEvtchnPort,
      maxGrantFrames: config.maxGrantFrames,
      maxMaptrackFrames: config.maxMaptrackFrames,
      rtcTimeoffset: config.rtcTimeoffset,
      args: [argv0, ...splitCmdline(config.cmdline)],
      env: config.env,
      serial: config.serial,
      shares: config.p9s.map((spec) => {
        const p = parseP9Spec(spec);
        return { guestPath: p9GuestPath(p.tag), path: p.path, readonly: p.readonly };
      }),
      disks: config.disks.map((spec) => {
        const k = parseDiskSpec(spec);
        return { name: k.vdev, path: k.target, format: k.format, readonly: k.readonly };
      }),
      xenstore: true,
    };
  }

  /** libxc's domain builder over Dom0's privcmd (hypercalls and foreign mappings), logging to `log`. */
  private builder(log: (line: string) => void): XcDom {
    const privcmd = this.host.dom0.privcmd;
    return new XcDom(
      this.xc,
      {
        map: (id, gfns) => privcmd.mmapBatchV2(id, gfns),
        unmap: (id, gfns) => privcmd.munmap(id, gfns),
      },
      log,
      (id, gfns) => privcmd.logDirtySnapshot(id, gfns),
    );
  }

  /** What createdomain and the steps before memory take from a config (libxl__domain_make). */
  private domainOf(
    config: XlDomainConfig,
    uuid: string,
  ): Omit<XcDomConfig, "memoryMiB" | "vcpus" | "cmdline"> {
    return {
      domid: 0,
      name: config.name,
      handle: Buffer.from(uuid.replace(/-/g, ""), "hex"),
      maxmemMiB: config.maxmem,
      maxVcpus: config.maxvcpus,
      maxEvtchnPort: config.maxEvtchnPort ?? 0,
      maxGrantFrames: config.maxGrantFrames ?? -1,
      maxMaptrackFrames: config.maxMaptrackFrames ?? -1,
    };
  }

  /** Records a new domain with libxl and writes its /vm and /local/domain/N nodes. */
  private register(
    d: Domain,
    config: XlDomainConfig,
    image?: Pick<XcDomImage, "sha256" | "bytes">,
  ): void {
    const uuid = config.uuid ?? randomUUID();
    // The builder passed it in createdomain; an HVM domain gets it here.
    d.handle.set(Buffer.from(uuid.replace(/-/g, ""), "hex"));
    this.domains.set(d.domid, { domid: d.domid, config, uuid, image });
    // xenstore-paths: /vm/<uuid> and the domain's home.
    const vm = `/vm/${uuid}`;
    this.host.xenstored.writeText(`${vm}/name`, config.name);
    this.host.xenstored.writeText(`${vm}/uuid`, uuid);
    // libxl's start_time: seconds since the epoch, with hundredths (xl uptime).
    this.host.xenstored.writeText(`${vm}/start_time`, (Date.now() / 1000).toFixed(2));
    const home = domainPath(d.domid);
    this.host.xenstored.writeText(`${home}/vm`, vm);
    this.host.xenstored.writeText(`${home}/memory/static-max`, String(config.maxmem * 1024));
    this.host.xenstored.writeText(`${home}/memory/target`, String(config.memory * 1024));
    for (let i = 0; i < config.maxvcpus; i++) {
      this.host.xenstored.writeText(
        `${home}/cpu/${i}/availability`,
        i < config.vcpus ? "online" : "offline",
      );
    }
    // What libxl's build_post records of the image (a PV guest's ostype is
    // "linux" whatever it runs, as in Xen).
    const hvm = d.hvm !== undefined;
    this.host.xenstored.writeText(`${vm}/image/ostype`, hvm ? "hvm" : "linux");
    this.host.xenstored.writeText(`${vm}/image/kernel`, config.kernel);
    this.host.xenstored.writeText(`${vm}/image/cmdline`, config.cmdline);
    // libxl's own record of the domain (/libxl/<domid>), read by libxl alone.
    this.host.xenstored.writeText(`/libxl/${d.domid}/type`, hvm ? "hvm" : "pv");
    if (hvm) this.host.xenstored.writeText(`/libxl/${d.domid}/dm-version`, "qemu_xen");
  }

  /**
   * Waits until the backend of vbd `disk` has its image open (InitWait or
   * later) or has refused it (its `error` node, state Closed, as the xenbus
   * backend core writes them), at most BACKEND_WAIT_MS; throws naming the
   * disk and the backend's reason. In Xen the backend's failure fails the
   * create, and `xl block-attach`, the same way.
   */
  async diskBackendReady(domid: number, disk: DiskSpec): Promise<void> {
    const { backend } = devicePaths("vbd", domid, disk.devid);
    const xs = this.host.xenstored;
    const end = Date.now() + BACKEND_WAIT_MS;
    for (;;) {
      const error = xs.store.get(`${backend}/error`) ? xs.readText(`${backend}/error`) : undefined;
      const state = Number(xs.readText(`${backend}/state`));
      if (error !== undefined || state === XenbusStateClosed) {
        throw new Error(`libxl: disk ${disk.vdev}: ${error ?? "the backend closed the device"}`);
      }
      if (state >= XenbusStateInitWait) return;
      if (Date.now() > end) {
        throw new Error(
          `libxl: disk ${disk.vdev}: the backend did not answer in ${BACKEND_WAIT_MS} ms`,
        );
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** libxl_device_disk_add for a running domain (xl block-attach): fails, leaving nothing, when the backend refuses the image. */
  async attachDisk(domid: number, disk: DiskSpec): Promise<void> {
    this.addDisk(domid, disk);
    try {
      await this.diskBackendReady(domid, disk);
    } catch (e) {
      await removeDevice(this.host, "vbd", domid, disk.devid, 0);
      throw e;
    }
  }

  /**
   * libxl_device_disk_add: the vbd's backend and frontend directories
   * (device.ts); blkback notices the backend's and the guest's blkfront its
   * own. The target must exist (libxl checks too).
   */
  addDisk(domid: number, disk: DiskSpec, restoredFrontend?: Record<string, string>): void {
    this.get(domid);
    if (!existsSync(disk.target)) {
      throw new Error(`libxl: disk ${disk.vdev}: ${disk.target}: No such file or directory`);
    }
    addDevice(
      this.host,
      "vbd",
      domid,
      disk.devid,
      {
        params: disk.target,
        format: disk.format,
        type: "phy",
        mode: disk.readonly ? "r" : "w",
        dev: disk.vdev,
        "device-type": disk.devtype,
        removable: "0",
        bootable: "1",
        "discard-enable": disk.discard ? "1" : "0",
      },
      { "virtual-device": String(disk.devid), "device-type": disk.devtype },
      restoredFrontend,
    );
  }

  /** libxl_device_disk_remove (see removeDevice). */
  async removeDisk(domid: number, vdev: string, timeoutMs = 10_000): Promise<void> {
    this.get(domid);
    const devid = /^\d+$/.test(vdev) ? Number(vdev) : vdevToDevid(vdev);
    if (devid === undefined) throw new Error(`libxl: '${vdev}' is not a disk name`);
    await removeDevice(this.host, "vbd", domid, devid, timeoutMs);
  }

  /** libxl_device_disk_list, as xl block-list shows it. */
  listDisks(domid: number): Array<{
    vdev: number;
    backendId: number;
    state: number;
    evtchn: number;
    ringRef: number;
    backend: string;
  }> {
    this.get(domid);
    return listDevices(this.host, "vbd", domid).map(({ devid, node }) => ({
      vdev: devid,
      backendId: Number(node("backend-id") ?? -1),
      state: Number(node("state") ?? -1),
      evtchn: Number(node("event-channel") ?? -1),
      ringRef: Number(node("ring-ref") ?? -1),
      backend: node("backend") ?? "",
    }));
  }

  /** libxl_device_nic_add: a vif on a bridge, with its MAC on both sides. */
  addNic(domid: number, nic: NicSpec, restoredFrontend?: Record<string, string>): number {
    this.get(domid);
    const devid = nic.devid ?? this.nextNicDevid(domid);
    addDevice(
      this.host,
      "vif",
      domid,
      devid,
      {
        mac: nic.mac,
        bridge: nic.bridge,
        handle: String(devid),
        type: "vif",
        script: "vif-bridge",
      },
      { mac: nic.mac, handle: String(devid) },
      restoredFrontend,
    );
    return devid;
  }

  private nextNicDevid(domid: number): number {
    const used = new Set(listDevices(this.host, "vif", domid).map((d) => d.devid));
    let n = 0;
    while (used.has(n)) n++;
    return n;
  }

  /** libxl_device_nic_remove (see removeDevice). */
  async removeNic(domid: number, devid: number, timeoutMs = 10_000): Promise<void> {
    this.get(domid);
    await removeDevice(this.host, "vif", domid, devid, timeoutMs);
  }

  /** libxl_device_nic_list, as xl network-list shows it. */
  listNics(domid: number): Array<Record<string, string | number>> {
    this.get(domid);
    return listDevices(this.host, "vif", domid).map(({ devid, node }) => ({
      devid,
      backendId: Number(node("backend-id") ?? -1),
      mac: node("mac") ?? "",
      state: Number(node("state") ?? -1),
      evtchn: Number(node("event-channel") ?? -1),
      txRingRef: Number(node("tx-ring-ref") ?? -1),
      rxRingRef: Number(node("rx-ring-ref") ?? -1),
      backend: node("backend") ?? "",
    }));
  }

  /**
   * A PV channel: console device `devid` (1 and up; 0 is the domain's
   * console), named in the frontend, its connection in the backend, as
   * xen-doc `misc/console.txt` lays them out. The guest's frontend sets the
   * ring up; Dom0's channel backend (dom0/backends/channel.ts) serves it.
   */
  addChannel(
    domid: number,
    devid: number,
    c: ChannelSpec,
    restoredFrontend?: Record<string, string>,
  ): void {
    addDevice(
      this.host,
      "console",
      domid,
      devid,
      {
        name: c.name,
        connection: c.connection,
        path: c.path,
        output: `chardev:libxl-channel${devid - 1}`,
        protocol: "vt100",
      },
      { name: c.name, type: "ioemu", limit: String(1024 * 1024) },
      restoredFrontend,
    );
  }

  /** xl channel-list's rows: each channel's devid, states, port, ring and connection. */
  listChannels(domid: number): Array<Record<string, string | number>> {
    this.get(domid);
    return listDevices(this.host, "console", domid).map(({ devid, node }) => {
      const backend = node("backend") ?? "";
      const back = (k: string): string => this.host.xenstored.readText(`${backend}/${k}`) ?? "";
      return {
        devid,
        backendId: Number(node("backend-id") ?? -1),
        state: Number(node("state") ?? -1),
        evtchn: Number(node("port") ?? -1),
        ringRef: Number(node("ring-ref") ?? -1),
        name: node("name") ?? "",
        connection: back("connection"),
        path: back("path"),
      };
    });
  }

  /** The domain's record, or an Error naming the domid. */
  private get(domid: number): LibxlDomain {
    const x = this.domains.get(domid);
    if (!x) throw new Error(`libxl: domain ${domid} is not a domain libxl created`);
    return x;
  }

  /**
   * libxl_domain_shutdown / libxl_domain_reboot: asks the guest through
   * control/shutdown, as a PV guest expects. Resolves with the reason once it
   * shut down; rejects after `timeoutMs` (xl shutdown -w waits like this).
   * Throws at once (not through the promise) when the request cannot be made.
   */
  shutdown(domid: number, reason: "poweroff" | "reboot", timeoutMs = 10_000): Promise<string> {
    this.get(domid);
    if (!this.pvcontrolAvailable(domid)) {
      // What libxl returns (ERROR_NOPARAVIRT) and xl explains.
      throw new Error(
        `libxl: ERROR_NOPARAVIRT: domain ${domid} has no PV control interface (an HVM guest without PV drivers)`,
      );
    }
    this.host.xenstored.writeText(`${domainPath(domid)}/control/shutdown`, reason);
    return this.host.waitShutdown(domid, timeoutMs);
  }

  /**
   * libxl's PV suspend (libxl_dom_suspend.c), the first step of a save:
   * "suspend" goes to control/shutdown; the guest acknowledges by clearing
   * it, then shuts down with SHUTDOWN_suspend, and stays so until the
   * toolstack resumes it (resume) or saves and destroys it. A guest that
   * does not acknowledge within `ackTimeoutMs` has the request withdrawn
   * and is left running: Xen's "guest didn't acknowledge suspend,
   * cancelling request". One that acknowledges and does not suspend within
   * `suspendTimeoutMs`: "guest did not suspend, timed out". Libxl's
   * timeouts are a minute each.
   */
  async suspend(
    domid: number,
    opts: { ackTimeoutMs?: number; suspendTimeoutMs?: number; log?: (line: string) => void } = {},
  ): Promise<void> {
    this.get(domid);
    const d = this.host.hv.domainById(domid)!;
    if (!this.pvcontrolAvailable(domid))
      throw new Error(
        `libxl: ERROR_NOPARAVIRT: domain ${domid} has no PV control interface (an HVM guest without PV drivers)`,
      );
    if (d.isShutdown && d.shutdownName === "suspend") return;
    const xs = this.host.xenstored;
    const path = `${domainPath(domid)}/control/shutdown`;
    const read = (): string => (xs.store.get(path) ? (xs.readText(path) ?? "") : "");
    const waitFor = async (done: () => boolean, ms: number): Promise<boolean> => {
      const end = Date.now() + ms;
      while (!done()) {
        if (Date.now() > end) return false;
        await new Promise((r) => setTimeout(r, 5));
      }
      return true;
    };
    const log = opts.log ?? ((): void => {});
    xs.writeText(path, "suspend");
    log(
      `libxl: debug: libxl_dom_suspend.c: Domain ${domid}:issuing PV suspend request via XenBus control node`,
    );
    const acked = await waitFor(() => read() !== "suspend", opts.ackTimeoutMs ?? 60_000);
    if (!acked && read() === "suspend") {
      // Read and withdrawn in one turn of the host's thread, where no guest
      // runs: an acknowledgement that came first still counts, as libxl's
      // transaction makes sure.
      xs.writeText(path, "");
      throw new Error(
        `libxl: Domain ${domid}:guest didn't acknowledge suspend, cancelling request`,
      );
    }
    log(`libxl: debug: libxl_dom_suspend.c: Domain ${domid}:guest acknowledged suspend request`);
    const suspended = await waitFor(
      () => d.isShutdown || d.isDying,
      opts.suspendTimeoutMs ?? 60_000,
    );
    if (!suspended || d.shutdownName !== "suspend")
      throw new Error(`libxl: Domain ${domid}:guest did not suspend, timed out`);
  }

  /**
   * libxl_domain_suspend to a file (xl save): the domain is paused, its
   * state written to `path` in xl's save format (tools/libxl/save.ts), then
   * destroyed; with `checkpoint` it runs on (or stays paused with
   * `leavePaused`). PV guests, with their disks and vifs: the backends
   * detach from the rings now and the restored domain's attach to them
   * (docs/save-format.md, "Devices"), PV channels too.
   * Resolves with the file's size.
   */
  async save(
    domid: number,
    path: string,
    opts: {
      checkpoint?: boolean;
      leavePaused?: boolean;
      log?: (line: string) => void;
      /** The PV suspend protocol's timeouts (suspend), for tests. */
      ackTimeoutMs?: number;
      suspendTimeoutMs?: number;
    } = {},
  ): Promise<number> {
    const x = this.get(domid);
    const log = opts.log ?? ((): void => {});
    const c = x.config;
    if (c.type === "hvm") return this.saveHvm(domid, x, path, opts, log);
    const image = this.checkSavable(domid, x);
    // A guest that says it handles suspend (control/feature-suspend = 1)
    // is saved as Xen saves a PV guest: it suspends itself, and resumes in
    // the new domain by binding its rings and setting its watches again,
    // so neither its ports nor its watches are carried. Any other is
    // paused where it is and restored as it was (docs/save-format.md).
    const cooperative = this.readFeature(domid, "control/feature-suspend");
    if (cooperative) await this.suspend(domid, { ...opts, log });
    const frontends = cooperative ? {} : this.frontends(domid);
    const watches = cooperative ? [] : this.watchesOf(domid);
    try {
      await this.stop(domid);
    } catch (e) {
      if (cooperative) await this.xc.domainResume(domid).catch(() => {});
      throw e;
    }
    try {
      const builder = this.builder(log);
      const libxc = await builder.save(domid, image);
      const size = saveFile(
        path,
        { ...c, uuid: x.uuid },
        configJson(c, x.uuid),
        libxc,
        log,
        frontends,
        watches,
      );
      if (!opts.checkpoint) this.destroy(domid);
      else {
        this.host.reattachDevices(domid);
        // A suspended guest's suspend returns 1: it runs on in this domain.
        if (cooperative) await this.xc.domainResume(domid);
        if (!opts.leavePaused) await this.xc.domainUnpause(domid);
      }
      return size;
    } catch (e) {
      if (this.host.hv.domains.has(domid)) {
        if (cooperative) await this.xc.domainResume(domid).catch(() => {});
        await this.resumeStopped(domid).catch(() => {});
      }
      throw e;
    }
  }

  /**
   * libxl_domain_create_restore (xl restore): a new domain from a save file,
   * running where the saved one was (or paused), connected to xenstore and
   * xenconsoled again. Rejects naming what is wrong with the file, the
   * record and its offset; nothing is left half-made.
   */
  async restore(
    path: string,
    opts: { paused?: boolean; log?: (line: string) => void } = {},
  ): Promise<Domain> {
    const log = opts.log ?? ((): void => {});
    const saved = await readSaveFile(path, log);
    try {
      return await this.restoreFrom(saved, opts.paused === true, log);
    } finally {
      saved.close();
    }
  }

  /** Refuses what save and migrate cannot carry (an HVM guest without nomigrate=0); the module. */
  private checkSavable(domid: number, x: LibxlDomain): Pick<XcDomImage, "sha256" | "bytes"> {
    if (!migratable(x.config) || !x.image)
      throw new Error(
        `libxl: domain ${domid}: an HVM guest is saved or migrated only with nomigrate=0 in its config (its program is then made saveable; HVM guests default to nomigrate=1 on tsxen, docs/hvm.md)`,
      );
    return x.image;
  }

  /**
   * xl save of an HVM guest (docs/hvm.md, "Saving an HVM guest"): paused,
   * its program's stack unwound and its device model's state taken
   * (Host.stopHvm), then the file: its memory, the vCPU and clock
   * (WASM32_HVM_CONTEXT), the device model's state (EMULATOR_CONTEXT).
   * Only a program made saveable (nomigrate=0) can be; the refusal says so.
   */
  private async saveHvm(
    domid: number,
    x: LibxlDomain,
    path: string,
    opts: { checkpoint?: boolean; leavePaused?: boolean },
    log: (line: string) => void,
  ): Promise<number> {
    const c = x.config;
    const image = this.checkSavable(domid, x);
    await this.xc.domainPause(domid);
    let stopped: StoppedHvm;
    try {
      stopped = await this.host.stopHvm(domid);
    } catch (e) {
      await this.xc.domainUnpause(domid).catch(() => {});
      throw new Error(`libxl: ${(e as Error).message}`, { cause: e });
    }
    try {
      const { major, minor } = await this.xc.version();
      log(`xc: detail: xc_domain_save: saving domain ${domid}, type wasm32 HVM`);
      const libxc = hvmStream({ major, minor }, image, stopped.memory, {
        stimeNs: stopped.stimeNs,
        wasmPages: stopped.wasmPages,
        vcpu: stopped.vcpu,
      });
      const size = saveFile(
        path,
        { ...c, uuid: x.uuid },
        configJson(c, x.uuid),
        libxc,
        log,
        {},
        [],
        [emulatorRecord(stopped.devices)],
      );
      if (!opts.checkpoint) this.destroy(domid);
      else {
        this.host.resumeHvm(domid);
        if (!opts.leavePaused) await this.xc.domainUnpause(domid);
      }
      return size;
    } catch (e) {
      if (this.host.hv.domains.has(domid)) {
        this.host.resumeHvm(domid);
        await this.xc.domainUnpause(domid).catch(() => {});
      }
      throw e;
    }
  }

  /**
   * xl restore of an HVM guest: the program (made saveable again from the
   * file's copy), the domain made with the saved memory size and clock,
   * the memory read in once the program is instantiated, the vCPU rewound
   * where it stopped, the device model's descriptors opened again.
   */
  private async restoreHvm(
    saved: SavedDomain,
    paused: boolean,
    log: (line: string) => void,
  ): Promise<Domain> {
    const config = saved.config;
    this.checkNameFree(config.name);
    if (!migratable(config))
      throw new Error(
        `libxl: domain '${config.name}': an HVM guest's save file without nomigrate=0`,
      );
    const uuid = config.uuid ?? randomUUID();
    let ctx: HvmContext;
    try {
      ctx = decodeHvmContext(Buffer.from(saved.stream.hvmContext!), saved.stream.hvmContextAt!);
    } catch (e) {
      throw new Error(`libxl: save file: ${(e as Error).message}`, { cause: e });
    }
    const runs = saved.stream.runs;
    const pfns = (ctx.wasmPages * WASM_PAGE_SIZE) / PAGE_SIZE;
    const bad = runs.find((r) => r.pfn + r.count > pfns);
    if (bad || saved.stream.pageCount !== pfns)
      throw new Error(
        `libxl: the file's ${saved.stream.pageCount} pages are not the ${pfns} of the saved memory`,
      );
    log(`xc: detail: xc_domain_restore: wasm32 HVM domain, ${pfns} pages`);
    const d = await this.makeRestoredHvm(
      { ...config, uuid },
      config.name,
      saved.image,
      ctx,
      saved.emulator!,
      async (memory) => {
        for (const r of runs)
          await saved.reader.readInto(
            new Uint8Array(memory.buffer, r.pfn * PAGE_SIZE, r.count * PAGE_SIZE),
            r.at,
          );
      },
    );
    try {
      if (!paused) await this.xc.domainUnpause(d.domid);
    } catch (e) {
      this.discard(d.domid);
      throw e;
    }
    log(`xc: info: Restore successful`);
    return d;
  }

  /**
   * A saved HVM domain made again, paused, named `name`: its program made
   * saveable from the saved copy, its memory written by `fill`, its vCPU
   * rewound, its device model's descriptors (EMULATOR_CONTEXT's JSON,
   * checked) opened again; registered with libxl.
   */
  private async makeRestoredHvm(
    config: XlDomainConfig & { uuid: string },
    name: string,
    module: { sha256: Uint8Array; bytes: Uint8Array },
    ctx: HvmContext,
    emulator: { blob: Buffer; at: number },
    fill: (memory: WebAssembly.Memory) => Promise<void>,
  ): Promise<Domain> {
    let devices: WasiState;
    try {
      devices = checkWasiState(JSON.parse(emulator.blob.toString("utf8")));
    } catch (e) {
      throw new Error(`libxl: EMULATOR_CONTEXT at offset ${emulator.at}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    // Uploaded to the hypervisor as the file or stream carries it (it prepares it again).
    const d = await this.host.createHvm({
      ...this.hvmHostConfig({ ...config, name }, { ...module, saveable: true }),
      paused: true,
      restore: { wasmPages: ctx.wasmPages, stimeNs: ctx.stimeNs, vcpu: ctx.vcpu },
      restored: { devices, fill },
    });
    try {
      this.register(d, { ...config, name }, module);
      this.host.xenstored.writeText(`/local/domain/0/device-model/${d.domid}/state`, "running");
    } catch (e) {
      this.discard(d.domid);
      throw e;
    }
    return d;
  }

  /**
   * The guest's side of each disk and vif (device.ts's frontendTree), for
   * its next backends to attach to the same rings; every device must be
   * connected.
   */
  private frontends(domid: number): Frontends {
    const out: Frontends = {};
    // Consoles past the first are PV channels (console 0 is not a device here).
    for (const type of ["vbd", "vif", "console"])
      for (const { devid } of listDevices(this.host, type, domid)) {
        const nodes = frontendTree(this.host, type, domid, devid);
        if (nodes.state !== String(XenbusStateConnected))
          throw new Error(
            `libxl: domain ${domid}: its ${type} ${devid} is not connected (frontend state ${nodes.state ?? "none"}); save it once it is`,
          );
        out[`${type}/${devid}`] = nodes;
      }
    return out;
  }

  /**
   * The guest's xenstore watches (save.ts's SavedWatch): xenstored's own,
   * which a transparent restore gives back to the new domain's connection,
   * as the guest never registers them again.
   */
  private watchesOf(domid: number): SavedWatch[] {
    const xs = this.host.xenstored;
    const c = xs.domains.get(domid)?.connection;
    if (!c) return [];
    const home = `${domainPath(domid)}/`;
    // A path under one of its backends' directories, /local/domain/0/backend/TYPE/DOMID/...:
    // "TYPE/..." (string tests: this runs inside a migration's downtime).
    const backends = "/local/domain/0/backend/";
    const underBackend = (path: string): string | undefined => {
      if (!path.startsWith(backends)) return undefined;
      const slash = path.indexOf("/", backends.length);
      const type = path.slice(backends.length, slash);
      if (slash < 0 || !/^[a-z]+$/.test(type)) return undefined;
      const rest = `${domid}/`;
      return path.startsWith(rest, slash + 1)
        ? `${type}/${path.slice(slash + 1 + rest.length)}`
        : undefined;
    };
    return xs.watches.of(c).map((w) => {
      const b = underBackend(w.path);
      return {
        path: w.path.startsWith(home) ? w.path.slice(home.length) : (b ?? w.path),
        home: w.path.startsWith(home),
        ...(b !== undefined ? { backend: true } : {}),
        token: w.token,
        relative: w.relative,
        depth: w.depth ?? null,
      };
    });
  }

  /**
   * Gives restored domain `domid` its saved watches on its new connection,
   * paths under its home and its backends' directories following its new
   * domid. They do not fire now, and they are set once the backends have
   * attached. A frontend holds its backend's old path; mini-os's reads its
   * `backend` node again each time it looks (xenbus_follow_backend) and
   * follows the new one.
   */
  private restoreWatches(domid: number, watches: readonly SavedWatch[]): void {
    const xs = this.host.xenstored;
    const c = xs.domains.get(domid)?.connection;
    if (!c) return;
    for (const w of watches) {
      const [type, ...rest] = w.path.split("/");
      const path = w.home
        ? `${domainPath(domid)}/${w.path}`
        : w.backend
          ? `/local/domain/0/backend/${type}/${domid}/${rest.join("/")}`
          : w.path;
      xs.watches.add({
        owner: c,
        path,
        token: w.token,
        relative: w.relative,
        depth: w.depth ?? undefined,
      });
    }
  }

  /**
   * Stops a domain for the last of its pages (save, migration): paused, its
   * backends detached from its rings with nothing of theirs in flight.
   */
  private async stop(domid: number): Promise<void> {
    await this.xc.domainPause(domid);
    await this.host.detachDevices(domid);
    // What would not come along: mappings of grants, this domain's of
    // another's or another's of this one's (a vchan, a gntdev user), other
    // than Dom0's of its console and xenstore pages, which are made again.
    const d = this.host.hv.domainById(domid);
    const why = d ? grantsInUse(d) : undefined;
    if (why) {
      await this.resumeStopped(domid).catch(() => {});
      throw new Error(`libxl: domain ${domid}: ${why}; it cannot be saved or moved while they are`);
    }
  }

  /** Undoes stop: the backends attach to the rings again and the domain runs. */
  private async resumeStopped(domid: number): Promise<void> {
    this.host.reattachDevices(domid);
    await this.xc.domainUnpause(domid);
  }

  /**
   * The devices of a restored domain, from its config, each attached to
   * the rings its saved frontend names (blkback and netback attach at the
   * ring's last response); resolves when every backend has connected. For
   * a guest that suspended itself (`reconnect`), each is made afresh and
   * resolves once its backend waits for the guest (InitWait), as Xen's.
   */
  private async restoreDevices(
    domid: number,
    config: XlDomainConfig,
    frontends: Frontends,
    /** A guest that suspended itself connects them: the backends wait for it (InitWait). */
    reconnect = false,
  ) {
    const disks = config.disks.map(parseDiskSpec);
    for (const disk of disks) this.addDisk(domid, disk, frontends[`vbd/${disk.devid}`]);
    config.vifs.forEach((spec, i) => {
      const nic = parseNicSpec(spec);
      const devid = nic.devid ?? i;
      this.addNic(domid, { ...nic, devid }, frontends[`vif/${devid}`]);
    });
    const channels = (config.channels ?? []).map((spec) => parseChannelSpec(spec));
    // A channel's backend listens on its path again, attached to the same ring.
    channels.forEach((c, i) => this.addChannel(domid, i + 1, c, frontends[`console/${i + 1}`]));
    const devices = [
      ...disks.map((d) => ["vbd", d.devid, `disk ${d.vdev}`] as const),
      ...config.vifs.map((s, i) => ["vif", parseNicSpec(s).devid ?? i, `vif ${i}`] as const),
      ...channels.map((c, i) => ["console", i + 1, `channel '${c.name}'`] as const),
    ];
    const xs = this.host.xenstored;
    for (const [type, devid, what] of devices) {
      const { backend } = devicePaths(type, domid, devid);
      const end = Date.now() + BACKEND_WAIT_MS;
      for (;;) {
        const error = xs.store.get(`${backend}/error`)
          ? xs.readText(`${backend}/error`)
          : undefined;
        const state = Number(xs.readText(`${backend}/state`));
        if (error !== undefined || state === XenbusStateClosed)
          throw new Error(`libxl: ${what}: ${error ?? "the backend closed the device"}`);
        if (state === (reconnect ? XenbusStateInitWait : XenbusStateConnected)) {
          if (type !== "console" || reconnect) break;
          // A channel's device is made once its socket listens (or could not).
          // (Reconnecting, it listens once the guest connects its ring.)
          await this.host.channelBackend.listening(backend);
          if (!xs.store.get(`${backend}/error`)) break;
          continue;
        }
        if (Date.now() > end)
          throw new Error(`libxl: ${what}: the backend did not attach in ${BACKEND_WAIT_MS} ms`);
        await new Promise((r) => setTimeout(r, 2));
      }
    }
  }

  /** Refuses a name another domain has (libxl's check before a create or restore). */
  private checkNameFree(name: string): void {
    for (const x of this.domains.values()) {
      if (x.config.name === name)
        throw new Error(`libxl: domain with name '${name}' already exists (domain ${x.domid})`);
    }
  }

  private async restoreFrom(
    saved: SavedDomain,
    paused: boolean,
    log: (line: string) => void,
  ): Promise<Domain> {
    if (saved.stream.domainType === DHDR_TYPE_WASM32_HVM)
      return this.restoreHvm(saved, paused, log);
    const config = saved.config;
    this.checkNameFree(config.name);
    const uuid = config.uuid ?? randomUUID();
    const builder = this.builder(log);
    const built = await builder.restore(this.domainOf(config, uuid), saved.stream, saved.reader);
    const domid = built.domid;
    const d = this.host.hv.domainById(domid)!;
    try {
      log(`xc: info: XenStore: mfn 0x4, dom 0, evt ${built.storeEvtchn}`);
      log(`xc: info: Console: mfn 0x3, dom 0, evt ${built.consoleEvtchn}`);
      this.host.connectBuilt(domid, config.name, built.storeEvtchn, built.consoleEvtchn);
      this.register(d, { ...config, uuid }, saved.image);
      const devices = config.disks.length + config.vifs.length + (config.channels?.length ?? 0);
      if (devices > 0 && !built.reconnect && Object.keys(saved.frontends).length === 0)
        throw new Error(
          `libxl: domain '${config.name}': the file carries no device frontends, and its guest did not suspend itself to connect them again (${devices} device(s))`,
        );
      await this.restoreDevices(domid, config, saved.frontends, built.reconnect === true);
      this.restoreWatches(domid, saved.watches);
      if (!paused) await this.xc.domainUnpause(domid);
    } catch (e) {
      this.discard(domid);
      throw e;
    }
    log(`xc: info: Restore successful`);
    return d;
  }

  /**
   * xl migrate's sender, in the daemon (tools/libxl/migrate.ts): `domid`
   * goes live to the peer on `ch`, and is destroyed here once the peer runs
   * it. The same guests as `save` can go: PV, disks and vifs included.
   */
  migrateSend(domid: number, ch: MigrationChannel, opts: MigrateOptions) {
    // What the stream's header says of the devices and watches: taken at the
    // start, and checked again at the stop (a guest may change them while
    // the rounds go; the destination would then attach to stale rings).
    // A guest that handles suspend (control/feature-suspend) is stopped as
    // Xen stops every PV guest it migrates: it suspends itself, and at the
    // destination binds its rings, sets its watches and connects its
    // devices again, so the header carries none of them.
    let sent = "";
    let cooperative = false;
    const devicesAndWatches = (id: number) => {
      const frontends = cooperative ? {} : this.frontends(id);
      const watches = cooperative ? [] : this.watchesOf(id);
      return { frontends, watches, key: JSON.stringify([frontends, watches]) };
    };
    return sendDomain(
      {
        describe: (id) => {
          const x = this.get(id);
          const image = this.checkSavable(id, x);
          cooperative = x.config.type === "pv" && this.readFeature(id, "control/feature-suspend");
          const { frontends, watches, key } = devicesAndWatches(id);
          sent = key;
          return {
            name: x.config.name,
            config: { ...x.config, uuid: x.uuid },
            json: configJson(x.config, x.uuid),
            image,
            frontends,
            watches,
          };
        },
        // With --debug, libxc's lines (each round) go to xl's stderr.
        saveLive: (id, image, sink, o) =>
          this.get(id).config.type === "hvm"
            ? this.sendHvm(id, image, sink, o, opts.debug ? (l) => ch.log(l) : () => {})
            : this.builder(opts.debug ? (l) => ch.log(l) : () => {}).saveLive(id, image, sink, o),
        pause: async (id) => {
          if (cooperative) await this.suspend(id, { log: (l) => ch.log(l) });
          try {
            await this.stop(id);
          } catch (e) {
            if (cooperative) await this.xc.domainResume(id).catch(() => {});
            throw e;
          }
          if (devicesAndWatches(id).key !== sent) {
            if (cooperative) await this.xc.domainResume(id).catch(() => {});
            await this.resumeStopped(id);
            throw new Error(
              `libxl: domain ${id}: its devices or xenstore watches changed while it was being migrated; migrate it again`,
            );
          }
        },
        unpause: async (id) => {
          const d = this.host.hv.domainById(id);
          // An HVM guest whose program was unwound for the stream runs on where it stopped.
          if (d?.hvm?.vcpu?.state === HVM_UNWOUND) this.host.resumeHvm(id);
          // A guest that suspended itself: its suspend returns 1, and it runs on here.
          if (d?.isShutdown && d.shutdownName === "suspend") await this.xc.domainResume(id);
          await this.resumeStopped(id);
        },
        rename: (id, name) => this.rename(id, name),
        destroy: (id) => this.destroy(id),
      },
      domid,
      ch,
      opts,
    );
  }

  /**
   * An HVM guest's side of xl migrate: live, as a PV guest's (XcDom.saveLive:
   * rounds of the pages log-dirty finds changed, compared with its copy
   * since the program's thread and device model write the memory
   * directly), then the stop: paused and unwound (Host.stopHvm), the last
   * round, WASM32_HVM_CONTEXT (with --debug, every page again behind
   * VERIFY before it) and libxl's EMULATOR_CONTEXT.
   */
  private sendHvm(
    domid: number,
    image: { sha256: Uint8Array; bytes: Uint8Array },
    sink: (chunks: Uint8Array[]) => Promise<void>,
    o: LiveSaveOptions,
    log: (line: string) => void,
  ): Promise<LiveSaveStats> {
    let stopped: StoppedHvm | undefined;
    return this.builder(log).saveLive(domid, image, sink, {
      ...o,
      suspend: async () => {
        await o.suspend();
        stopped = await this.host.stopHvm(domid);
      },
      hvm: {
        finish: async (verify) => {
          const s = stopped!;
          const ctx = { stimeNs: s.stimeNs, wasmPages: s.wasmPages, vcpu: s.vcpu };
          return { libxc: hvmTail(s.memory, ctx, verify), libxl: [emulatorRecord(s.devices)] };
        },
      },
    });
  }

  /** An HVM guest's migration stream made into a domain named `name`, paused. */
  private async receiveHvm(
    config: XlDomainConfig,
    name: string,
    src: SequentialSource,
  ): Promise<number> {
    this.checkNameFree(name);
    if (!migratable(config))
      throw new Error(`libxl: domain '${config.name}': an HVM guest's stream without nomigrate=0`);
    // The stream is read whole before the domain is made (its memory
    // becomes the program's at the vCPU's start): a sender's config must
    // not have the receiver hold more than the host could give the domain.
    const free = this.host.hv.frames.freeFrames;
    if (config.memory * 256 > free)
      throw new Error(
        `libxl: domain '${config.name}' needs ${config.memory} MiB; the host has ${Math.floor(free / 256)} MiB free`,
      );
    const got = await readHvmStream(src, config.memory * 256);
    const d = await this.makeRestoredHvm(
      { ...config, uuid: config.uuid ?? randomUUID() },
      name,
      got.module,
      got.ctx,
      got.emulator,
      async (memory) => {
        new Uint8Array(memory.buffer).set(got.memory);
      },
    );
    return d.domid;
  }

  /**
   * xl migrate-receive, in the daemon: a domain from the peer on `ch`,
   * built paused as `<name>--incoming`, started as `<name>` when the sender
   * says so (paused with `paused`). Resolves with its domid and when it
   * was unpaused.
   */
  migrateReceive(
    ch: MigrationChannel,
    opts: { paused: boolean; debug: boolean },
  ): Promise<{ domid: number; startedAt: number }> {
    return receiveDomain(
      {
        restoreStream: async (config, name, src, frontends, watches) => {
          if (config.type === "hvm") return this.receiveHvm(config, name, src);
          this.checkNameFree(name);
          const uuid = config.uuid ?? randomUUID();
          const log = opts.debug ? (l: string): void => ch.log(l) : (): void => {};
          const cfg = { ...config, name, uuid };
          // libxl's records of the domain (its home, /vm, the console's
          // device) are written once it exists, while its pages come: only
          // the connection to xenstore and the console is left for the end.
          let made: number | undefined;
          try {
            const built = await this.builder(log).restoreStream(
              this.domainOf({ ...config, name }, uuid),
              src,
              (domid, module) => {
                made = domid;
                this.host.writeBuiltHome(domid, name);
                this.register(this.host.hv.domainById(domid)!, cfg, module);
              },
            );
            this.host.connectRings(built.domid, name, built.storeEvtchn, built.consoleEvtchn);
            // A guest that suspended itself connects its devices again (InitWait).
            await this.restoreDevices(built.domid, config, frontends, built.reconnect === true);
            this.restoreWatches(built.domid, watches);
            return built.domid;
          } catch (e) {
            if (made !== undefined) this.discard(made);
            throw e;
          }
        },
        unpause: (id) => this.xc.domainUnpause(id),
        rename: (id, name) => this.rename(id, name),
        destroy: (id) => this.discard(id),
      },
      ch,
      opts,
    );
  }

  /** libxl_domain_resume (cooperative): a suspended domain runs on; its suspend hypercall returns 1. */
  async resume(domid: number): Promise<void> {
    this.get(domid);
    await this.xc.domainResume(domid);
  }

  /**
   * libxl_domain_rename: the name in xenstore (domain home and /vm), the
   * hypervisor's record and the console log follow. Names stay unique.
   */
  rename(domid: number, name: string): void {
    const x = this.get(domid);
    if (!isValidDomainName(name)) {
      throw new Error(`libxl: '${name}' is not a valid domain name`);
    }
    for (const y of this.domains.values()) {
      if (y.config.name === name && y.domid !== domid) {
        throw new Error(`libxl: domain name '${name}' is in use by domain ${y.domid}`);
      }
    }
    x.config = { ...x.config, name };
    // The hypervisor's label follows (XEN_DOMCTL_wasm32_set_label; the call
    // runs before this returns, over the in-process channel).
    this.xc
      .wasm32SetLabel(domid, name)
      .catch((e: Error) => this.host.hv.console.printk(`libxl: ${e.message}`));
    this.host.xenstored.writeText(`${domainPath(domid)}/name`, name);
    this.host.xenstored.writeText(`/vm/${x.uuid}/name`, name);
    this.host.xenconsoled.rename(domid, name);
  }

  /** libxl_domain_destroy: the domain and its nodes go. */
  destroy(domid: number): void {
    this.get(domid);
    this.host.destroy(domid);
    this.forget(domid);
  }

  /** A domain whose creation failed, registered with libxl yet or not: destroyed, and its nodes gone. */
  private discard(domid: number): void {
    if (this.host.hv.domains.has(domid)) this.host.destroy(domid);
    // Its home, if the domain went without the host (the builder destroyed it).
    const home = domainPath(domid);
    if (this.host.xenstored.store.get(home))
      this.host.xenstored.rm(this.host.xenstored.store, DOM0, home);
    this.forget(domid);
  }

  /** libxl_set_memory_target: memory/target, in KiB as Xen writes it. */
  setMemoryTarget(domid: number, mib: number): void {
    this.get(domid);
    // The domain's maxmem now: xl mem-max may have moved it since creation.
    const d = this.host.hv.domains.get(domid);
    const maxmem = d ? Math.floor(d.maxPages / 256) : 0;
    if (!Number.isInteger(mib) || mib < 1 || mib > maxmem) {
      throw new Error(
        `libxl: memory target ${mib} MiB is outside 1..${maxmem} (maxmem) for domain ${domid}`,
      );
    }
    this.host.xenstored.writeText(`${domainPath(domid)}/memory/target`, String(mib * 1024));
  }

  /** libxl_set_vcpuonline: cpu/N/availability for each vCPU up to maxvcpus. */
  setVcpus(domid: number, n: number): void {
    const x = this.get(domid);
    if (!Number.isInteger(n) || n < 1 || n > x.config.maxvcpus) {
      throw new Error(
        `libxl: ${n} vCPUs is outside 1..${x.config.maxvcpus} (maxvcpus) for domain ${domid}`,
      );
    }
    for (let i = 0; i < x.config.maxvcpus; i++) {
      this.host.xenstored.writeText(
        `${domainPath(domid)}/cpu/${i}/availability`,
        i < n ? "online" : "offline",
      );
    }
  }

  /**
   * libxl_retrieve_domain_configuration as JSON: the config the domain was
   * created with, in libxl_domain_config's layout (c_info, b_info, on_*),
   * with what has changed since read back from xenstore as libxl does: the
   * memory target and maximum, and the online vCPUs. Disks are listed as
   * libxl_device_disk entries; vifs are left out until netback exists.
   */
  retrieveConfig(domid: number): Record<string, unknown> {
    const x = this.get(domid);
    const c = x.config;
    const home = domainPath(domid);
    const node = (p: string): string | undefined => this.host.xenstored.readText(`${home}/${p}`);
    const targetKiB = Number(node("memory/target") ?? c.memory * 1024);
    const maxKiB = Number(node("memory/static-max") ?? c.maxmem * 1024);
    const online: number[] = [];
    for (let i = 0; i < c.maxvcpus; i++) {
      if ((node(`cpu/${i}/availability`) ?? (i < c.vcpus ? "online" : "")) === "online") {
        online.push(i);
      }
    }
    return configJson(c, x.uuid, { targetKiB, maxKiB, online });
  }

  /**
   * What `xl list -l` prints: an array of { domid, config } for `domids`
   * (default: every domain libxl created), indented by four as libxl's
   * JSON generator does.
   */
  listLong(domids: number[] = this.list().map((x) => x.domid)): string {
    const rows = domids.map((domid) => ({ domid, config: this.retrieveConfig(domid) }));
    return JSON.stringify(rows, null, 4) + "\n";
  }

  /** The domains libxl created, by domid. */
  list(): LibxlDomain[] {
    return [...this.domains.values()].sort((a, b) => a.domid - b.domid);
  }

  private forget(domid: number): void {
    const x = this.domains.get(domid);
    this.domains.delete(domid);
    const xs = this.host.xenstored;
    const gone = [`/libxl/${domid}`];
    if (x) gone.push(`/vm/${x.uuid}`);
    // Its devices' backend directories and errors go too (the backends let
    // go as they go), whether or not its creation finished.
    for (const type of ["vbd", "vif", "console"]) {
      gone.push(`/local/domain/0/backend/${type}/${domid}`);
      gone.push(`/local/domain/0/error/backend/${type}/${domid}`);
    }
    for (const p of gone) if (xs.store.get(p)) xs.rm(xs.store, DOM0, p);
  }

  /** Resolves with the reason once domain `domid` shut down ("destroyed" if it went without). */
  waitShutdown(domid: number): Promise<string> {
    // Gone already (on_poweroff=destroy may be quicker than the caller).
    if (!this.host.hv.domains.has(domid)) return Promise.resolve("destroyed");
    return this.host.waitShutdown(domid, Infinity);
  }

  /** Whether the guest wrote "1" to `node` under its home (a control/feature-* flag). */
  private readFeature(domid: number, node: string): boolean {
    const xs = this.host.xenstored;
    const path = `${domainPath(domid)}/${node}`;
    return xs.store.get(path) !== undefined && xs.readText(path) === "1";
  }

  /**
   * libxl__domain_pvcontrol_available: a PV guest always has control/shutdown;
   * an HVM guest only once its PV drivers registered their event callback
   * (HVM_PARAM_CALLBACK_IRQ), which a plain WASI program never does.
   */
  pvcontrolAvailable(domid: number): boolean {
    const d = this.host.hv.domains.get(domid);
    if (!d?.hvm) return true;
    return d.hvm.params[HVM_PARAM_CALLBACK_IRQ] !== 0;
  }

  /**
   * libxl_send_trigger: the ACPI power button ("power") or reset ("reset")
   * of an HVM domain, which its device model presses. Xen's other triggers
   * (nmi, init, sleep, s3resume) have no wasm32 meaning.
   */
  /**
   * xl config-update: the config domain `domid` is rebuilt from when it
   * restarts (its uuid stays, as the domain's); the running domain is not
   * touched. libxl keeps it as Xen's keeps the domain's userdata.
   */
  updateConfig(domid: number, config: XlDomainConfig): void {
    const x = this.get(domid);
    x.config = { ...config, uuid: x.uuid };
  }

  /**
   * What libxenstat reads for xentop (Linux's blkback statistics in sysfs
   * and the vifs' counters in /proc/net/dev): every backend device's
   * counters, by frontend domain. Network counters are the guest's view:
   * tx is what it sent.
   */
  backendStats(): BackendStats[] {
    const out: BackendStats[] = [];
    for (const v of this.host.vbd.list()) {
      const s = v.stats as Partial<BlkbackStats> | undefined;
      out.push({
        kind: "vbd",
        domid: v.frontendId,
        devid: v.devid,
        oo: 0,
        rd: s?.reads ?? 0,
        wr: s?.writes ?? 0,
        rsect: s?.sectorsRead ?? 0,
        wsect: s?.sectorsWritten ?? 0,
      });
    }
    for (const v of this.host.vif.list()) {
      const s = v.stats as Partial<NetbackStats> | undefined;
      out.push({
        kind: "vif",
        domid: v.frontendId,
        devid: v.devid,
        txBytes: s?.txBytes ?? 0,
        txPackets: s?.txPackets ?? 0,
        txErrors: s?.txErrors ?? 0,
        rxBytes: s?.rxBytes ?? 0,
        rxPackets: s?.rxPackets ?? 0,
        rxDropped: s?.rxDropped ?? 0,
      });
    }
    return out;
  }

  /**
   * libxl_domain_core_dump: domain `domid`'s core, in Xen's dump-core
   * format, to `path` (tools/libxc/xc_core.ts), through libxc's hypercalls
   * and Dom0's foreign mapping.
   */
  async coreDump(domid: number, path: string): Promise<number> {
    if (!this.host.hv.domains.has(domid)) throw new Error(`libxl: domain ${domid} does not exist`);
    const privcmd = this.host.dom0.privcmd;
    const xc = new XcInterface(new LocalHypercalls(privcmd));
    try {
      return await xcDomainDumpcore(
        xc,
        (id) => privcmd.hv.mapForeignMemory(privcmd.dom0, id),
        domid,
        path,
      );
    } catch (e) {
      throw new Error(`libxl: core dump of domain ${domid} failed: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }

  /**
   * libxl_send_sysrq: the letter goes to the guest's control/sysrq, where a
   * PV guest's sysrq watch (Linux's, mini-os's xenstore example) reads it,
   * clears it and acts on it.
   */
  sendSysrq(domid: number, key: string): void {
    const d = this.host.hv.domains.get(domid);
    if (!d) throw new Error(`libxl: domain ${domid} does not exist`);
    this.host.xenstored.writeText(`${domainPath(domid)}/control/sysrq`, key);
  }

  sendTrigger(domid: number, trigger: string): void {
    const d = this.host.hv.domains.get(domid);
    if (!d) throw new Error(`libxl: domain ${domid} does not exist`);
    if (!d.hvm)
      throw new Error(
        `libxl: send_trigger: domain ${domid} is a PV domain (triggers are for HVM domains)`,
      );
    const dm = this.host.deviceModels.get(domid);
    if (!dm) throw new Error(`libxl: send_trigger: domain ${domid} has no device model running`);
    if (trigger === "power") dm.powerButton();
    else if (trigger === "reset") dm.resetButton();
    else
      throw new Error(
        `libxl: send_trigger: trigger '${trigger}' has no wasm32 meaning (power and reset do)`,
      );
  }

  /** Creates the domain again from its config, keeping its uuid, as a reboot does. */
  private restart(x: LibxlDomain, freshUuid = false): void {
    this.create(freshUuid ? x.config : { ...x.config, uuid: x.uuid }).catch((e: Error) =>
      this.host.hv.console.printk(`libxl: restarting '${x.config.name}' failed: ${e.message}`),
    );
  }

  /**
   * What xendomains does when the host stops: asks every domain to power
   * off (an HVM guest without PV drivers through its ACPI power button),
   * waits up to `timeoutMs` for all of them, then destroys every domain
   * that is left. Nothing restarts meanwhile. Resolves with how many domains
   * had to be destroyed without shutting down.
   */
  async shutdownAll(timeoutMs: number): Promise<number> {
    this.stopping = true;
    const one = async (domid: number): Promise<void> => {
      // An HVM guest without PV drivers gets the ACPI power button, as
      // `xl shutdown -F` gives it.
      if (this.pvcontrolAvailable(domid)) await this.shutdown(domid, "poweroff", timeoutMs);
      else {
        this.sendTrigger(domid, "power");
        await this.host.waitShutdown(domid, timeoutMs);
      }
    };
    const waits = this.list().map((x) =>
      one(x.domid).then(
        () => true,
        () => false,
      ),
    );
    const clean = (await Promise.all(waits)).filter(Boolean).length;
    const left = [...this.host.hv.domains.keys()];
    for (const domid of left) this.host.destroy(domid);
    return waits.length - clean;
  }

  /** What xl does when a domain shuts down: its config's on_* action. */
  private onShutdown(d: Domain): void {
    const x = this.domains.get(d.domid);
    if (!x || d.isDying) return;
    if (this.stopping) {
      this.destroy(d.domid);
      return;
    }
    const reason = d.shutdownName;
    const action: Action =
      reason === "poweroff"
        ? x.config.onPoweroff
        : reason === "reboot"
          ? x.config.onReboot
          : reason === "crash"
            ? x.config.onCrash
            : "preserve";
    if (action === "coredump-destroy" || action === "coredump-restart") {
      // As xl does: the core goes to the dump directory under the domain's
      // name, a failure is logged, and the action goes on.
      const core = join(this.dumpDir, x.config.name);
      this.host.hv.console.printk(`libxl: dumping core of domain ${d.domid} to ${core}`);
      try {
        mkdirSync(this.dumpDir, { recursive: true, mode: 0o700 });
      } catch {
        // The dump's own open reports it.
      }
      void this.coreDump(d.domid, core)
        .catch((e: Error) => this.host.hv.console.printk(`libxl: ${e.message}`))
        .then(() => this.act(d, x, action === "coredump-destroy" ? "destroy" : "restart"));
      return;
    }
    this.act(d, x, action);
  }

  /** Carries out on_poweroff/on_reboot/on_crash's `action` for `d`. */
  private act(d: Domain, x: LibxlDomain, action: Action): void {
    if (d.isDying || this.host.hv.domains.get(d.domid) !== d) return;
    switch (action) {
      case "preserve":
        return;
      case "destroy":
        this.destroy(d.domid);
        return;
      case "rename-restart": {
        // The old domain stays, under a new name, for a post-mortem.
        const original = x.config;
        this.rename(d.domid, `${original.name}-${++this.renames}`);
        this.restart({ ...x, config: { ...original, uuid: undefined } }, true);
        return;
      }
      case "restart":
      case "soft-reset":
        this.destroy(d.domid);
        this.restart(x);
        return;
    }
  }
}

/**
 * Grant mappings a save cannot carry: `d`'s of other domains' grants, and
 * other domains' of `d`'s, but Dom0's of the console and xenstore pages
 * (the reserved entries, which the restore grants and maps again).
 * Undefined when there are none.
 */
function grantsInUse(d: Domain): string | undefined {
  if (d.gnttab.mappings > 0) return `it maps ${d.gnttab.mappings} grant(s) of other domains`;
  const other = d.gnttab
    .pins()
    .filter(
      (p) =>
        !(
          p.domid === 0 &&
          (p.ref === GNTTAB_RESERVED_CONSOLE || p.ref === GNTTAB_RESERVED_XENSTORE)
        ),
    );
  if (other.length === 0) return undefined;
  const by = [...new Set(other.map((p) => p.domid))].join(", ");
  return `${other.length} of its grants (ref ${other[0]!.ref}...) are mapped by domain ${by}`;
}
