/**
 * tsxen's QEMU: the device model of an HVM domain, as Xen's libxl starts one
 * QEMU per HVM guest in Dom0. This is its main-thread half, which does what
 * QEMU's Xen glue does at start and stop (xen-hvm.c): create an ioreq server
 * with dm_op, claim the WASI ports, map the server's ioreq page and the
 * guest's memory, then enable the server; and the other way round at the
 * end. The device emulation runs on the device model's own thread
 * (dm_worker.ts), which this half feeds console input and from which it
 * takes console output and the guest's power-off.
 */
import { MessageChannel, Worker } from "node:worker_threads";
import { SHUTDOWN_poweroff, SHUTDOWN_reboot } from "../../xen/include/public/sched.js";
import {
  WASI_NR_PORTS,
  WASI_PORT_BASE,
  WASM32_IOREQ_DOORBELL,
} from "../../xen/include/public/hvm/wasm32_io.js";
import type { XenDevicemodel } from "../drivers/devicemodel.js";
import {
  CTL_DM_MSG,
  CTL_DM_SERIAL,
  SERIAL_HIGH,
  type DmCommand,
  type DmDiskSpec,
  type DmMessage,
  type DmWorkerData,
} from "./dm_protocol.js";
import type { ShareSpec, WasiState } from "./wasi.js";

export interface DeviceModelConfig {
  args: string[];
  env: string[];
  shares: ShareSpec[];
  disks: DmDiskSpec[];
  /** process.hrtime.bigint() at system time 0 (the hypervisor's NOW()). */
  systemTimeBase: bigint;
  /** A restored domain's devices (saveState's), opened again before the domain runs. */
  restore?: WasiState;
}

export interface DeviceModelHooks {
  /** Output of the emulated serial port. */
  serial(bytes: Uint8Array): void;
  /** A line for the device model's log. */
  log(line: string): void;
  /** The device model went while its domain still needed it (why, in words). */
  died(why: string): void;
}

/** The serial port's sustained rate (bytes a second) and burst, past which a writer waits. */
export const SERIAL_RATE = 4 * 1024 * 1024;
export const SERIAL_BURST = 1024 * 1024;

/** Worker heap for the device model's own JavaScript. */
const DM_HEAP_MB = 64;

export class DeviceModel {
  private readonly ctl = new SharedArrayBuffer(8);
  private readonly ctlI32 = new Int32Array(this.ctl);
  private readonly channel = new MessageChannel();
  private worker: Worker | undefined;
  /**
   * Settles when the thread has exited. Taken when the thread starts: a
   * thread that failed may exit before stop() looks, and its exit event
   * would then have gone by unseen.
   */
  private exited: Promise<void> = Promise.resolve();
  private serverId = -1;
  private page: Int32Array | undefined;
  private stopped = false;
  private ready = false;

  private constructor(
    readonly domid: number,
    private readonly dm: XenDevicemodel,
    private readonly hooks: DeviceModelHooks,
  ) {}

  /**
   * Starts the device model of HVM domain `domid` and resolves once its
   * ioreq server is enabled; rejects naming what failed (a share or disk
   * that cannot be opened, a dm_op refused), with nothing left behind.
   */
  static async start(
    domid: number,
    dm: XenDevicemodel,
    config: DeviceModelConfig,
    hooks: DeviceModelHooks,
  ): Promise<DeviceModel> {
    const m = new DeviceModel(domid, dm, hooks);
    try {
      await m.boot(config);
    } catch (e) {
      await m.stop();
      throw e;
    }
    return m;
  }

  private async boot(config: DeviceModelConfig): Promise<void> {
    this.serverId = this.dm.createIoreqServer(this.domid);
    this.dm.mapIoRangeToIoreqServer(
      this.domid,
      this.serverId,
      WASI_PORT_BASE,
      WASI_PORT_BASE + WASI_NR_PORTS - 1,
    );
    const page = this.dm.mapIoreqPage(this.domid, this.serverId);
    this.page = new Int32Array(page);
    const memory = this.dm.mapForeignMemory(this.domid);
    const data: DmWorkerData = {
      page,
      memory,
      ctl: this.ctl,
      port: this.channel.port2,
      args: config.args,
      env: config.env,
      shares: config.shares,
      disks: config.disks,
      systemTimeBase: config.systemTimeBase,
      restore: config.restore,
    };
    const w = new Worker(new URL("./dm_worker.js", import.meta.url), {
      workerData: data,
      transferList: [this.channel.port2],
      resourceLimits: { maxOldGenerationSizeMb: DM_HEAP_MB },
    });
    this.worker = w;
    this.exited = new Promise<void>((r) => w.once("exit", () => r()));
    await new Promise<void>((resolve, reject) => {
      w.on("message", (msg: DmMessage) => {
        switch (msg.kind) {
          case "ready":
            resolve();
            break;
          case "error":
            reject(new Error(msg.message));
            break;
          case "serial":
            this.hooks.serial(msg.bytes);
            this.taken(msg.bytes.length);
            break;
          case "state": {
            const p = this.statePending;
            this.statePending = undefined;
            if (msg.state) p?.resolve(msg.state);
            else p?.reject(new Error(msg.error ?? "the device model gave no state"));
            break;
          }
          case "exit":
            this.hooks.log(`d${this.domid}: the program exited with code ${msg.code}`);
            try {
              this.dm.shutdown(this.domid, SHUTDOWN_poweroff);
            } catch (e) {
              this.hooks.log(`d${this.domid}: power-off refused: ${(e as Error).message}`);
            }
            break;
        }
      });
      let failure: string | undefined;
      w.on("error", (e) => {
        failure = e.message;
        this.hooks.log(`d${this.domid}: the device model failed: ${e.message}`);
        reject(e);
      });
      w.on("exit", () => {
        reject(new Error("the device model stopped before it was ready"));
        // Its guest would wait for an answer that never comes: say why it
        // went. (Before it was ready, the create fails instead.)
        if (!this.stopped && this.ready) this.hooks.died(failure ?? "its thread exited");
      });
    });
    w.unref();
    this.ready = true;
    this.dm.setIoreqServerState(this.domid, this.serverId, true);
  }

  /**
   * Serial bytes the console took: they leave the device model's in-flight
   * count as the rate allows (SERIAL_RATE bytes a second after a burst of
   * SERIAL_BURST), so that a program flooding its serial port is held back
   * like a UART at its baud rate, and cannot fill the host's disk with its
   * log or its CPU with copying.
   */
  private taken(n: number): void {
    const now = performance.now();
    this.tokens = Math.min(
      SERIAL_BURST,
      this.tokens + ((now - this.refilled) / 1000) * SERIAL_RATE,
    );
    this.refilled = now;
    this.tokens -= n;
    const release = (): void => {
      if (this.stopped) return;
      const before = Atomics.sub(this.ctlI32, CTL_DM_SERIAL, n);
      // A write held for a backed-up console goes on once it drained.
      if (before > SERIAL_HIGH && before - n <= SERIAL_HIGH) this.ring();
    };
    if (this.tokens >= 0) release();
    else setTimeout(release, (-this.tokens / SERIAL_RATE) * 1000).unref();
  }
  private tokens = SERIAL_BURST;
  private refilled = performance.now();

  /** Rings the device model's doorbell: a message is waiting, or its console drained. */
  private ring(): void {
    if (!this.page) return;
    Atomics.add(this.page, WASM32_IOREQ_DOORBELL >> 2, 1);
    Atomics.notify(this.page, WASM32_IOREQ_DOORBELL >> 2);
  }

  private send(cmd: DmCommand): void {
    this.channel.port1.postMessage(cmd);
    Atomics.add(this.ctlI32, CTL_DM_MSG, 1);
    this.ring();
  }

  /**
   * The ACPI power button (xl trigger power, xl shutdown -F). A WASI program
   * has no ACPI and so no handler for the button's event: the device
   * model's firmware turns the machine off, as a machine does when the
   * button is held.
   */
  powerButton(): void {
    this.hooks.log(
      `d${this.domid}: ACPI power button: the guest has no ACPI handler, powering off`,
    );
    this.dm.shutdown(this.domid, SHUTDOWN_poweroff);
  }

  /** The reset button (xl trigger reset): the machine restarts (SHUTDOWN_reboot; on_reboot decides). */
  resetButton(): void {
    this.hooks.log(`d${this.domid}: reset button`);
    this.dm.shutdown(this.domid, SHUTDOWN_reboot);
  }

  private statePending: { resolve(s: WasiState): void; reject(e: Error): void } | undefined;

  /**
   * The domain is being saved (QEMU's stop before xen-save-devices-state):
   * a call the program is waiting in is withdrawn and made again when the
   * program goes on, here (resume) or in the restored domain.
   */
  quiesce(): void {
    if (!this.stopped) this.send({ kind: "quiesce" });
  }

  /** The save is over and the domain goes on here: calls may wait again. */
  resume(): void {
    if (!this.stopped) this.send({ kind: "resume" });
  }

  /**
   * The devices' state (QEMU's xen-save-devices-state), once the vCPU has
   * stopped: its descriptors and what was typed and not read. Rejects
   * naming a descriptor that could not be opened again.
   */
  saveState(): Promise<WasiState> {
    if (this.stopped) return Promise.reject(new Error("the device model has stopped"));
    if (this.statePending) return Promise.reject(new Error("a save of its state is under way"));
    return new Promise((resolve, reject) => {
      this.statePending = { resolve, reject };
      this.send({ kind: "save" });
    });
  }

  /** Console input for the emulated serial port. */
  input(bytes: Uint8Array): void {
    if (!this.stopped) this.send({ kind: "input", bytes });
  }

  /**
   * Stops the device model: its ioreq server is destroyed (when the domain
   * still exists) and its thread ends.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.statePending?.reject(new Error("the device model stopped"));
    this.statePending = undefined;
    if (this.serverId >= 0) {
      try {
        this.dm.destroyIoreqServer(this.domid, this.serverId);
      } catch {
        // Destroyed with its domain.
      }
    }
    const w = this.worker;
    this.worker = undefined;
    if (w) {
      this.send({ kind: "stop" });
      const t = setTimeout(() => void w.terminate(), 1000);
      await this.exited;
      clearTimeout(t);
    }
    this.channel.port1.close();
  }
}
