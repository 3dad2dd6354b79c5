/**
 * Debug keys (Xen's `common/keyhandler.c`, `xl debug-keys`): each key dumps
 * one part of the hypervisor's state on its console. 'q' also raises
 * VIRQ_DEBUG on every vCPU, asking guests to dump their own state, as Xen's
 * dump_domains does.
 *
 *   h  the keys and what each does
 *   q  domains: state, pages, vCPUs (and VIRQ_DEBUG to each vCPU)
 *   e  event channels of every domain
 *   g  grant tables of every domain: entries in use and who pins them
 *   m  machine memory: frames in all and free, and each domain's share
 *   t  the hypervisor's time: system time and the wall clock
 *   r  the run queue: what runs, and who waits with which priority and credit
 *   a  timer queues: every armed timer, earliest first
 *   0  Dom0's state: its vCPU, event delivery, pending ports and pages (x86
 *      Xen dumps Dom0's registers; Dom0's kernel here is the host process)
 *   i  interrupt bindings: on wasm32 a domain's interrupt lines are its
 *      event channels bound to VIRQs and to other domains, each with its
 *      pending and masked bits
 *   I  HVM domains: their program, vCPU thread, ioreq servers (the device
 *      model that owns each, its port ranges) and the ioreq in flight (x86
 *      Xen's 'I' dumps HVM interrupt state; on wasm32 the ioreqs are what an
 *      HVM guest is waiting on)
 */
import * as XEN from "../include/public/xen.js";
import {
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_ipi,
  EVTCHNSTAT_unbound,
  EVTCHNSTAT_virq,
} from "../include/public/event_channel.js";
import type { Domain } from "./domain.js";
import { IOREQ_FLAG_STATE_MASK, ioreq } from "../include/public/hvm/ioreq.js";
import { WASI_PORT_BASE, WASI_PORT_NAMES } from "../include/public/hvm/wasm32_io.js";
import { mfn_x } from "../include/xen/mm.js";

export const STATE_NAMES: Record<number, string> = {
  [EVTCHNSTAT_unbound]: "unbound",
  [EVTCHNSTAT_interdomain]: "interdomain",
  [EVTCHNSTAT_virq]: "virq",
  [EVTCHNSTAT_ipi]: "ipi",
};

/** The keys handleKey knows, with what each dumps (for `xl debug-keys h`). */
export const DEBUG_KEYS: Record<string, string> = {
  e: "dump evtchn info",
  g: "print grant table usage",
  h: "show this message",
  m: "memory info",
  q: "dump domain (and guest debug) info",
  t: "display multi-cpu clock info",
  r: "dump run queues",
  a: "dump timer queues",
  "0": "dump Dom0 registers",
  i: "dump interrupt bindings",
  I: "dump HVM ioreq servers and in-flight requests",
};

/** What the machine-wide keys read besides the domains. */
export interface MachineInfo {
  readonly totalFrames: number;
  readonly freeFrames: number;
  /** System time, ns since boot. */
  readonly nowNs: number;
  /** The wall clock at boot, ns since the epoch. */
  readonly bootWallclockNs: number;
  /** Debug key 'r': the scheduler's run queue dump. */
  runQueues(): string[];
  /** Debug key 'a': the timer queue dump. */
  timerQueues(): string[];
}

/** Runs debug key `key` over `domains` (Dom0 first), printing with `printk`. */
export function handleKey(
  key: string,
  domains: Domain[],
  printk: (s: string) => void,
  machine: MachineInfo,
): boolean {
  switch (key) {
    case "h": {
      printk("'h' pressed -> showing installed handlers");
      const byCode = Object.entries(DEBUG_KEYS).sort(
        ([a], [b]) => a.charCodeAt(0) - b.charCodeAt(0),
      );
      for (const [k, what] of byCode) {
        printk(` key '${k}' (ascii '${k.charCodeAt(0).toString(16).padStart(2, "0")}') => ${what}`);
      }
      return true;
    }
    case "I":
      printk("'I' pressed -> dumping HVM ioreq servers");
      for (const d of domains) if (d.hvm) dumpHvm(d, printk);
      return true;
    case "m": {
      printk("'m' pressed -> Memory info");
      const mib = (frames: number): string => `${(frames / 256).toFixed(1)} MiB`;
      printk(
        `    machine: ${machine.totalFrames} frames (${mib(machine.totalFrames)}), ${machine.freeFrames} free (${mib(machine.freeFrames)})`,
      );
      for (const d of domains) {
        printk(
          `    d${d.domid}: tot_pages=${d.totPages} max_pages=${d.maxPages} top=${d.topPfn} holes=${d.holes.length} charged=${d.totPages + d.holes.length} (${mib(d.totPages + d.holes.length)})`,
        );
      }
      return true;
    }
    case "t": {
      printk("'t' pressed -> dumping time info");
      const wall = machine.bootWallclockNs + machine.nowNs;
      printk(
        `    system time ${(machine.nowNs / 1e9).toFixed(6)} s since boot; wall clock ${new Date(wall / 1e6).toISOString()}`,
      );
      return true;
    }
    case "r":
      printk("'r' pressed -> dumping run queues");
      printk(`NOW=${machine.nowNs}`);
      for (const l of machine.runQueues()) printk(l);
      return true;
    case "a":
      printk("'a' pressed -> dumping timer queues");
      printk("Dumping timer queues:");
      printk("CPU00:");
      for (const l of machine.timerQueues()) printk(l);
      return true;
    case "0":
      printk("'0' pressed -> dumping Dom0's registers");
      dumpDom0(domains[0]!, printk);
      return true;
    case "i":
      printk("'i' pressed -> dumping interrupt bindings");
      printk("Guest interrupt information (event channels bound to VIRQs and domains):");
      for (const d of domains) dumpLines(d, printk);
      return true;
    case "q":
      printk("'q' pressed -> dumping domain info");
      for (const d of domains) {
        printk(`General information for domain ${d.domid} (${d.name}):`);
        printk(
          `    state=${d.runState} pause_count=${d.pauseCount} tot_pages=${d.totPages} max_pages=${d.maxPages} top=${d.topPfn} holes=${d.holes.length}`,
        );
        for (const v of d.vcpus) {
          printk(
            `    VCPU${v.id}: state=${v.state} upcall_pend=${v.upcallPending ? 1 : 0} upcall_mask=${v.upcallMasked ? 1 : 0}`,
          );
          d.evtchn.sendVirq(v.id, XEN.VIRQ_DEBUG);
        }
      }
      return true;
    case "e":
      printk("'e' pressed -> dumping event-channel info");
      for (const d of domains) {
        printk(`Event channel information for domain ${d.domid} (${d.evtchn.ops.name} ABI):`);
        for (const [port, st] of d.evtchn.bound()) {
          const what =
            st.state === EVTCHNSTAT_interdomain
              ? ` d${st.u}:${st.uPort}`
              : st.state === EVTCHNSTAT_unbound
                ? ` for d${st.u}`
                : st.state === EVTCHNSTAT_virq
                  ? ` v=${st.u}`
                  : "";
          printk(
            `    ${String(port).padStart(4)} [${d.evtchn.isPending(port) ? 1 : 0}/${d.evtchn.ops.isMasked(port) ? 1 : 0}]: s=${st.state} (${STATE_NAMES[st.state] ?? "?"}) n=${st.vcpu}${what}`,
          );
        }
      }
      return true;
    case "g":
      printk("'g' pressed -> grant table usage");
      for (const d of domains) for (const line of d.gnttab.dump()) printk(line);
      return true;
    default:
      return false;
  }
}

/** Debug key '0': what Dom0 has instead of registers on wasm32. */
function dumpDom0(d: Domain, printk: (s: string) => void): void {
  for (const v of d.vcpus) {
    printk(`*** Dumping Dom0 vcpu#${v.id} state: ***`);
    printk(
      `    state=${v.state} upcall_pend=${v.upcallPending ? 1 : 0} upcall_mask=${v.upcallMasked ? 1 : 0} time=${(v.cpuTimeNs / 1e9).toFixed(3)}s`,
    );
  }
  const ports = [...d.evtchn.bound()];
  const pending = ports.filter(([p]) => d.evtchn.isPending(p)).map(([p]) => p);
  printk(
    `    kernel: the host process; ${ports.length} ports bound, pending: ${pending.length ? pending.join(" ") : "none"}`,
  );
  printk(
    `    tot_pages=${d.totPages} max_pages=${d.maxPages} grant mappings=${d.gnttab.mappings} pinned=${d.gnttab.pinned}`,
  );
}

/** VIRQ numbers → their names (public/xen.ts's VIRQ_* constants), for debug key 'i'. */
export const VIRQ_NAMES = new Map(
  Object.entries(XEN)
    .filter(([k, v]) => k.startsWith("VIRQ_") && typeof v === "number")
    .map(([k, v]) => [v as number, k]),
);

/** Debug key 'i': a domain's VIRQ and interdomain ports, as interrupt lines with their state. */
function dumpLines(d: Domain, printk: (s: string) => void): void {
  for (const [port, st] of d.evtchn.bound()) {
    let line: string;
    if (st.state === EVTCHNSTAT_virq) line = VIRQ_NAMES.get(st.u) ?? `VIRQ ${st.u}`;
    else if (st.state === EVTCHNSTAT_interdomain) line = `from d${st.u} port ${st.uPort}`;
    else if (st.state === EVTCHNSTAT_ipi) line = "IPI";
    else continue;
    printk(
      `   d${d.domid} port ${String(port).padStart(4)}: ${line.padEnd(24)} vcpu ${st.vcpu} ${d.evtchn.isPending(port) ? "PENDING" : "idle"}${d.evtchn.ops.isMasked(port) ? " masked" : ""}`,
    );
  }
}

const HVM_STATES = [
  "starting",
  "running",
  "waiting for an ioreq",
  "paused",
  "ended",
  "in a hypercall",
];
const IOREQ_STATES = ["none", "ready", "in process", "answered"];

/** One HVM domain's part of the 'I' dump. */
function dumpHvm(d: Domain, printk: (s: string) => void): void {
  const h = d.hvm!;
  const v = h.vcpu;
  printk(
    `  d${d.domid} (${d.name}): program ${h.image.hash.slice(0, 12)} (${h.image.size} bytes, loop checks: ${h.image.loopChecks}), memory ${h.memory.buffer.byteLength >> 10} KiB of ${h.maxWasmPages * 64} KiB`,
  );
  if (v) {
    const port = v.portInFlight;
    printk(
      `    vcpu0: ${HVM_STATES[v.state] ?? v.state}, ${v.ioreqs} ioreqs, cpu ${(v.cpuTimeNs / 1e9).toFixed(3)} s${port >= 0 ? `, in flight: ${WASI_PORT_NAMES[port] ?? port} (port 0x${(WASI_PORT_BASE + port).toString(16)})` : ""}`,
    );
  }
  if (h.image.hypercalls) {
    printk(
      `    PV drivers: ${h.hypercalls} hypercalls, ${h.continuations} continued${h.parked ? `, parked in ${h.parked === "block" ? "SCHEDOP_block" : "SCHEDOP_poll"}` : ""}`,
    );
  }
  if (h.servers.size === 0) printk("    no ioreq servers: WASI calls return ENOSYS");
  for (const s of h.servers.values()) {
    const ranges = s.ranges
      .map((r) => `port 0x${r.start.toString(16)}-0x${r.end.toString(16)}`)
      .join(", ");
    printk(
      `    ioreq server ${s.id}: emulator d${s.emulator}, ${s.enabled ? "enabled" : "disabled"}, page mfn ${mfn_x(s.mfn)}, ${ranges || "no ranges"}`,
    );
    // vCPU 0's ioreq_t in the page: state, port and argument count.
    const dv = new DataView(s.page);
    const flags = dv.getUint8(ioreq.fields.flags.offset);
    const state = flags & IOREQ_FLAG_STATE_MASK;
    const addr = dv.getUint32(ioreq.fields.addr.offset, true);
    printk(
      `      vcpu0 ioreq: ${IOREQ_STATES[state] ?? state}${state !== 0 ? `, port 0x${addr.toString(16)} (${WASI_PORT_NAMES[addr - WASI_PORT_BASE] ?? "?"}), ${dv.getUint32(ioreq.fields.count.offset, true)} args` : ""}`,
    );
  }
}
