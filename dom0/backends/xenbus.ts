/**
 * Dom0's xenbus backend core (Linux's xenbus_probe_backend and xenbus.c):
 * finds devices the toolstack writes under `/local/domain/0/backend/<type>/
 * <frontend domid>/<devid>`, and runs each device's half of the handshake
 * of xen-doc `misc/pv-drivers-lifecycle` (io/xenbus.h's states):
 *
 *   backend:  Initialising → (features written) InitWait
 *   frontend: Initialising → (ring-ref, event-channel written) Initialised
 *   backend:  maps the ring, binds the port → Connected
 *   frontend: Connected
 *   either side Closing → the backend disconnects → Closed
 *
 * and removes a device when the toolstack takes it away (`online` 0 with
 * state Closing, or its directory removed), or when the frontend's
 * directory disappears (its domain died). A frontend that lies (a bad
 * ring-ref or port, garbage in its nodes) gets `error` written and the
 * device Closed; one that stalls keeps only its own device waiting.
 *
 * xenstore is reached through XenbusStore, which the host implements over
 * xenstored (Dom0's kernel has no xenstored of its own).
 */
import { constants } from "node:os";
import type { RingIndices } from "../drivers/ring.js";
import {
  XENBUS_STATE_NAMES,
  XenbusStateClosed,
  XenbusStateClosing,
  XenbusStateConnected,
  XenbusStateInitialised,
  XenbusStateInitialising,
  XenbusStateInitWait,
} from "../../xen/include/public/io/xenbus.js";

/** What a backend needs of xenstore, as Dom0. */
export interface XenbusStore {
  read(path: string): string | undefined;
  write(path: string, value: string): void;
  rm(path: string): void;
  directory(path: string): string[];
  /** Calls `fn` (later, never inside the change) on changes at or under `path`; returns the unwatch. */
  watch(path: string, fn: (path: string) => void): () => void;
}

const DOM0_HOME = "/local/domain/0/";

/**
 * Where Linux's xenbus_dev_error puts a backend's error: error/<the device's
 * path> under the backend domain's home (/local/domain/0/error/backend/vbd/
 * 5/51712/error), as "<errno> <message>".
 */
export function linuxErrorPath(backend: string): string {
  const rel = backend.startsWith(DOM0_HOME) ? backend.slice(DOM0_HOME.length) : backend;
  return `${DOM0_HOME}error/${rel}/error`;
}

/** The errno a message names (ENOENT, EACCES...), or EIO's. */
function errnoOf(why: string): number {
  const name = /\b(E[A-Z0-9]{2,})\b/.exec(why)?.[1];
  const errno = constants.errno as Record<string, number>;
  return (name !== undefined ? errno[name] : undefined) ?? errno.EIO!;
}

/**
 * Records a device's failure: `error` in the backend's directory (what
 * libxl reads to fail a create) and Linux's error/ node beside it.
 */
function writeError(store: XenbusStore, backend: string, why: string): void {
  store.write(`${backend}/error`, why);
  store.write(linuxErrorPath(backend), `${errnoOf(why)} ${why}`);
}

/** One device as its driver sees it. */
export interface DeviceInfo {
  type: string;
  frontendId: number;
  devid: number;
  /** The backend's directory and the frontend's. */
  backend: string;
  frontend: string;
  store: XenbusStore;
  /**
   * xenbus_dev_fatal: the device cannot go on (a frontend broke its ring):
   * `why` goes to the backend's `error` node and the log, the driver
   * disconnects, and the backend moves to Closing.
   */
  fatal(why: string): void;
}

/**
 * The frontend's node `key` as a number (xenbus_scanf with "%u"); throws
 * naming the node and what it held when it is missing or not decimal.
 */
export function frontendUint(info: DeviceInfo, key: string): number {
  const v = info.store.read(`${info.frontend}/${key}`);
  if (v === undefined || !/^\d+$/.test(v)) {
    throw new Error(
      `the frontend's ${key} is ${v === undefined ? "missing" : `'${v.slice(0, 32)}'`}`,
    );
  }
  return Number(v);
}

/** A driver's device: what it advertises, how it connects and disconnects. */
export interface BackendDevice {
  /** Nodes to write in the backend directory before InitWait (features, sizes). */
  features(): Record<string, string>;
  /** Maps the frontend's rings and binds its port; throws naming what the frontend got wrong. */
  connect(): void;
  /** Lets go of rings and ports; idempotent. */
  disconnect(): void;
  /** The device is gone for good (its storage may close). */
  destroy(): void;
  /** The driver's counters (blkback's requests and sectors, netback's packets and bytes). */
  readonly stats?: object;
  /** Resolves when nothing the device started is still in flight (after disconnect). */
  drained?(): Promise<void>;
  /** Its rings' indices now (none while disconnected), named as the driver names them. */
  rings?(): Array<{ name: string } & RingIndices>;
  /** Requests taken off its rings and not yet answered. */
  inFlight?(): number;
}

/** Makes a driver's device; throws if the toolstack's nodes are wrong (bad params, say). */
export type DeviceFactory = (dev: DeviceInfo) => BackendDevice;

class Device {
  state = XenbusStateInitialising;
  connected = false;
  /** Let go of the rings with the state left Connected, for another backend to attach (detach). */
  detached = false;
  private readonly unwatch: Array<() => void> = [];

  constructor(
    readonly info: DeviceInfo,
    readonly impl: BackendDevice,
    private readonly log: (msg: string) => void,
    private readonly gone: () => void,
  ) {
    const s = info.store;
    for (const [k, v] of Object.entries(impl.features())) s.write(`${info.backend}/${k}`, v);
    this.setState(XenbusStateInitWait);
    this.unwatch.push(s.watch(`${info.frontend}/state`, () => this.frontendChanged()));
    this.unwatch.push(s.watch(`${info.backend}/state`, () => this.backendChanged()));
    this.unwatch.push(s.watch(`${info.backend}/online`, () => this.backendChanged()));
    this.frontendChanged();
  }

  private setState(state: number): void {
    this.state = state;
    this.info.store.write(`${this.info.backend}/state`, String(state));
  }

  /** DeviceInfo.fatal: error node, disconnect, Closing (Linux's xenbus_dev_fatal). */
  fatal(why: string): void {
    this.log(`${this.info.backend}: ${why}; closing the device`);
    writeError(this.info.store, this.info.backend, why);
    this.disconnect();
    this.setState(XenbusStateClosing);
  }

  /** A connect that cannot be made: error node, disconnect, Closed. */
  private fail(why: string): void {
    this.log(`${this.info.backend}: ${why}`);
    writeError(this.info.store, this.info.backend, why);
    this.disconnect();
    this.setState(XenbusStateClosed);
  }

  private disconnect(): void {
    if (this.connected) this.impl.disconnect();
    this.connected = false;
  }

  /** The frontend wrote its state (or its directory went). */
  frontendChanged(): void {
    const s = this.info.store;
    if (s.read(this.info.backend) === undefined) return this.remove();
    const raw = s.read(`${this.info.frontend}/state`);
    if (raw === undefined) {
      // The frontend's directory is gone: its domain died or was destroyed.
      if (s.read(this.info.frontend) === undefined) return this.remove();
      return;
    }
    const fs = Number(raw);
    if (!Number.isInteger(fs) || fs < 0 || fs >= XENBUS_STATE_NAMES.length) {
      return this.fail(`frontend state '${raw.slice(0, 32)}' is not a xenbus state`);
    }
    switch (fs) {
      case XenbusStateInitialised:
      case XenbusStateConnected:
        if (this.state !== XenbusStateInitWait || this.connected) return;
        try {
          this.impl.connect();
        } catch (e) {
          return this.fail(`connecting to the frontend: ${(e as Error).message}`);
        }
        this.connected = true;
        this.setState(XenbusStateConnected);
        return;
      case XenbusStateClosing:
        this.disconnect();
        if (this.state !== XenbusStateClosed) this.setState(XenbusStateClosing);
        return;
      case XenbusStateClosed:
        this.disconnect();
        this.setState(XenbusStateClosed);
        if (s.read(`${this.info.backend}/online`) === "0") return this.remove();
        // A frontend that closes and starts again (a guest reboots its driver).
        this.setState(XenbusStateInitWait);
        return;
      default:
        return;
    }
  }

  /**
   * Lets go of the frontend's rings and port, leaving every node as it is:
   * the domain is being saved or migrated, and whoever serves it next
   * attaches to the same rings. Resolves once nothing is in flight.
   */
  async detach(): Promise<void> {
    if (!this.connected) return;
    this.disconnect();
    this.detached = true;
    await this.impl.drained?.();
  }

  /** Maps the rings again after a detach (the save kept the domain, or the migration failed). */
  reattach(): void {
    if (!this.detached) return;
    this.detached = false;
    try {
      this.impl.connect();
      this.connected = true;
    } catch (e) {
      this.fail(`connecting to the frontend again: ${(e as Error).message}`);
    }
  }

  /** The toolstack changed the backend's online or state (hot-unplug). */
  backendChanged(): void {
    const s = this.info.store;
    if (s.read(this.info.backend) === undefined) return this.remove();
    if (s.read(`${this.info.backend}/online`) !== "0") return;
    const state = Number(s.read(`${this.info.backend}/state`));
    if (state === XenbusStateClosing && this.state !== XenbusStateClosing) {
      // Ask the frontend to let go; it answers by closing.
      this.state = XenbusStateClosing;
      const fs = Number(s.read(`${this.info.frontend}/state`));
      if (!(fs > XenbusStateInitialising && fs < XenbusStateClosing)) {
        // No frontend to wait for.
        this.disconnect();
        this.setState(XenbusStateClosed);
      }
    }
  }

  remove(): void {
    for (const u of this.unwatch.splice(0)) u();
    this.disconnect();
    this.impl.destroy();
    this.gone();
  }
}

export class XenbusBackendBus {
  private readonly devices = new Map<string, Device>();
  private readonly unwatch: () => void;
  readonly root: string;

  /**
   * @param serves which device numbers this bus serves (the console bus
   *   leaves console 0 to xenconsoled)
   */
  constructor(
    readonly store: XenbusStore,
    readonly type: string,
    private readonly factory: DeviceFactory,
    private readonly log: (msg: string) => void = () => {},
    private readonly serves: (devid: number) => boolean = () => true,
  ) {
    this.root = `/local/domain/0/backend/${type}`;
    this.unwatch = store.watch(this.root, () => this.scan());
    this.scan();
  }

  /** Finds new device directories (those with a `frontend` node). */
  private scan(): void {
    for (const dom of this.store.directory(this.root)) {
      for (const dev of this.store.directory(`${this.root}/${dom}`)) {
        const backend = `${this.root}/${dom}/${dev}`;
        if (this.devices.has(backend)) continue;
        const frontend = this.store.read(`${backend}/frontend`);
        const state = this.store.read(`${backend}/state`);
        // The toolstack writes the directory whole in one transaction, state
        // Initialising; a device we closed and left stays left.
        if (frontend === undefined || state !== String(XenbusStateInitialising)) continue;
        const frontendId = Number(dom);
        const devid = Number(dev);
        if (!Number.isInteger(frontendId) || !Number.isInteger(devid)) continue;
        if (!this.serves(devid)) continue;
        // The device exists once the driver has made its half of it.
        const made: { device?: Device } = {};
        const info: DeviceInfo = {
          type: this.type,
          frontendId,
          devid,
          backend,
          frontend,
          store: this.store,
          fatal: (why) => made.device?.fatal(why),
        };
        let impl: BackendDevice;
        try {
          impl = this.factory(info);
        } catch (e) {
          this.log(`${backend}: ${(e as Error).message}`);
          writeError(this.store, backend, (e as Error).message);
          this.store.write(`${backend}/state`, String(XenbusStateClosed));
          continue;
        }
        made.device = new Device(info, impl, this.log, () => this.devices.delete(backend));
        this.devices.set(backend, made.device);
      }
    }
  }

  /** Detaches every connected device of domain `domid` (Device.detach). */
  async detach(domid: number): Promise<void> {
    await Promise.all(
      [...this.devices.values()].filter((d) => d.info.frontendId === domid).map((d) => d.detach()),
    );
  }

  /** Reattaches the devices of `domid` that were detached. */
  reattach(domid: number): void {
    for (const d of this.devices.values()) if (d.info.frontendId === domid) d.reattach();
  }

  /** The devices being served, by backend path, with their states. */
  list(): Array<{
    backend: string;
    frontendId: number;
    devid: number;
    state: number;
    connected: boolean;
    stats: object | undefined;
    impl: BackendDevice;
  }> {
    return [...this.devices.entries()].map(([backend, d]) => ({
      backend,
      frontendId: d.info.frontendId,
      devid: d.info.devid,
      state: d.state,
      connected: d.connected,
      stats: d.impl.stats,
      impl: d.impl,
    }));
  }

  dispose(): void {
    this.unwatch();
    for (const d of [...this.devices.values()]) d.remove();
  }
}
