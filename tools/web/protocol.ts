/**
 * What the web console's host and page send each other (session.ts lists
 * the messages): the shapes both sides use, with nothing imported but
 * types, so that the page (built for the browser) and the host (for
 * Node) check against the same types.
 */
import type { RingIndices } from "../../dom0/drivers/ring.js";

/** One domain's row: xentop's columns, as numbers. */
export interface DomainRow {
  domid: number;
  name: string;
  type: "pv" | "hvm" | "dom0";
  /** xl list's State flags ("r-----"). */
  state: string;
  /** CPU time, seconds (xl list Time(s), xentop CPU(sec)). */
  cpuS: number;
  /** CPU % over the last sample (xentop CPU(%)), one core = 100. */
  cpuPct: number;
  memKiB: number;
  maxMemKiB: number;
  vcpus: number;
  /** When it started, ms since the epoch (/vm/<uuid>/start_time, or when first seen). */
  startMs: number;
  nets: number;
  netTxB: number;
  netRxB: number;
  vbds: number;
  vbdRd: number;
  vbdWr: number;
  vbdRsect: number;
  vbdWsect: number;
  /** Why it shut down or crashed, when it did. */
  reason?: string;
}

/** The series a domain's graph shows: CPU %, block sectors/s, network bytes/s. */
export interface History {
  /** Sample times, ms since the epoch. */
  t: number[];
  cpu: number[];
  vbd: number[];
  net: number[];
}

/** A back ring's indices (dom0/drivers/ring.ts), named as its driver names the ring. */
export interface RingView extends RingIndices {
  name: string;
}

export interface PortView {
  port: number;
  state: string;
  vcpu: number;
  /** interdomain: the other end; unbound: the domain it is offered to. */
  remote?: { domid: number; port?: number };
  virq?: string;
  pending: boolean;
  masked: boolean;
}

export interface GrantView {
  ref: number;
  /** GTF_* flags, named. */
  flags: string;
  /** The domain it is granted to. */
  domid: number;
  frame: number;
  /** Who has it mapped or held for a copy now. */
  pin?: { domid: number; readers: number; writers: number };
}

export interface DeviceView {
  kind: string;
  devid: number;
  frontendId: number;
  backendId: number;
  backend: string;
  frontend: string;
  backendState: string;
  frontendState: string;
  connected: boolean;
  rings: RingView[];
  inFlight: number;
  /** The driver's counters (blkback's requests and sectors, netback's packets and bytes). */
  stats: Record<string, number> | undefined;
}

export interface VchanView {
  path: string;
  server: number;
  /** The domain the server offered it to (its grants' and port's grantee). */
  client: number | undefined;
  ringRef: number;
  port: number;
  /** The server's port is bound to the client's now. */
  connected: boolean;
}

export interface DomainPlumbing {
  domid: number;
  name: string;
  abi: string;
  ports: PortView[];
  /** Its grant entries in use (the first MAX_GRANTS_SHOWN), and how many there are. */
  grants: GrantView[];
  grantCount: number;
  /** Grants of other domains this domain maps. */
  maps: Array<{ handle: number; domid: number; ref: number; readonly: boolean }>;
}

export interface Plumbing {
  domains: DomainPlumbing[];
  devices: DeviceView[];
  vchans: VchanView[];
}

/** A node as the xenstore view lists it: its value, permissions (xenstore-ls -p) and children. */
export interface XsNodeView {
  value: string;
  perms: string;
  children: Array<{ name: string; value: string; perms: string; n: number }>;
}
