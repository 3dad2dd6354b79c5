/**
 * `xl top`, which is xentop (xen-doc `man/xentop.1`): a table of every
 * domain with xentop's columns, refreshed every `delay` seconds; `-b`
 * prints each refresh plainly (batch mode) and `-i N` stops after N. On a
 * terminal, 'q' quits. The NETS and VBD columns come from the backends'
 * counters (libxl's backendStats, what libxenstat reads from sysfs and
 * /proc/net/dev on Linux); `-n` and `-x` add each domain's networks and
 * block devices, in xentop's lines.
 */
import type { XcDomInfo, XcInterface } from "../libxc/xc.js";
import type { BackendStats } from "../libxl/domain.js";

const COLUMNS: Array<[string, number]> = [
  ["NAME", 10],
  ["STATE", 6],
  ["CPU(sec)", 10],
  ["CPU(%)", 6],
  ["MEM(k)", 10],
  ["MEM(%)", 6],
  ["MAXMEM(k)", 10],
  ["MAXMEM(%)", 9],
  ["VCPUS", 5],
  ["NETS", 4],
  ["NETTX(k)", 8],
  ["NETRX(k)", 8],
  ["VBDS", 4],
  ["VBD_OO", 8],
  ["VBD_RD", 8],
  ["VBD_WR", 8],
  ["VBD_RSECT", 10],
  ["VBD_WSECT", 10],
  ["SSID", 4],
];

/** xentop's state letters: dying, shutdown, crashed, blocked, paused, running. */
function state(i: XcDomInfo): string {
  return (
    (i.dying ? "d" : "-") +
    (i.shutdown && i.shutdownReason !== 3 ? "s" : "-") +
    (i.shutdown && i.shutdownReason === 3 ? "c" : "-") +
    (i.blocked ? "b" : "-") +
    (i.paused ? "p" : "-") +
    (i.running ? "r" : "-")
  );
}

type Vbd = Extract<BackendStats, { kind: "vbd" }>;
type Vif = Extract<BackendStats, { kind: "vif" }>;

const sum = <T>(xs: T[], f: (x: T) => number): number => xs.reduce((a, x) => a + f(x), 0);

/** xentop's per-network line (-n). */
function netLine(i: number, v: Vif): string {
  const n = (x: number): string => String(x).padStart(8);
  return (
    `Net${i} RX: ${n(v.rxBytes)}bytes ${n(v.rxPackets)}pkts ${n(0)}err ${n(v.rxDropped)}drop  ` +
    `TX: ${n(v.txBytes)}bytes ${n(v.txPackets)}pkts ${n(v.txErrors)}err ${n(0)}drop`
  );
}

/** xentop's per-VBD line (-x): BlkBack, the device number and its major:minor. */
function vbdLine(v: Vbd): string {
  const hex2 = (x: number): string => x.toString(16).padStart(2);
  const details = `[${hex2(v.devid >> 8)}:${hex2(v.devid & 0xff)}] `;
  return (
    `VBD BlkBack ${String(v.devid).padStart(4)} ${details}OO: ${String(v.oo).padStart(8)}   ` +
    `RD: ${String(v.rd).padStart(8)}   WR: ${String(v.wr).padStart(8)}   ` +
    `RSECT: ${String(v.rsect).padStart(10)}   WSECT: ${String(v.wsect).padStart(10)}`
  );
}

export async function runTop(
  xc: XcInterface,
  name: (domid: number) => Promise<string>,
  opts: {
    batch: boolean;
    iterations: number;
    delayS: number;
    networks?: boolean;
    vbds?: boolean;
    stats?: () => Promise<BackendStats[]>;
  },
): Promise<number> {
  const interactive = !opts.batch && process.stdin.isTTY === true && process.stdout.isTTY === true;
  let quit = false;
  if (interactive) {
    process.stdin.setRawMode(true);
    process.stdin.on("data", (b: Buffer) => {
      if (b.includes(0x71) || b.includes(0x03)) quit = true; // 'q' or Ctrl-C
    });
  }
  const v = await xc.version();
  let prev = new Map<number, number>();
  let prevAt = process.hrtime.bigint();
  try {
    for (let n = 0; n < opts.iterations && !quit; n++) {
      const p = await xc.physinfo();
      const list = await xc.domainGetInfoList();
      const devices = (await opts.stats?.()) ?? [];
      const now = process.hrtime.bigint();
      const wallNs = Number(now - prevAt);
      const totalK = p.totalPages * 4;
      const usedK = (p.totalPages - p.freePages) * 4;
      const count = (f: (i: XcDomInfo) => boolean): number => list.filter(f).length;
      const out: string[] = [
        `xentop - ${new Date().toTimeString().slice(0, 8)}   Xen ${v.major}.${v.minor}${v.extra}`,
        `${list.length} domains: ${count((i) => i.running)} running, ${count((i) => i.blocked)} blocked, ` +
          `${count((i) => i.paused)} paused, ${count((i) => i.shutdown && i.shutdownReason === 3)} crashed, ` +
          `${count((i) => i.dying)} dying, ${count((i) => i.shutdown && i.shutdownReason !== 3)} shutdown `,
        `Mem: ${totalK}k total, ${usedK}k used, ${totalK - usedK}k free    CPUs: ${p.nrCpus} @ ${Math.round(p.cpuKhz / 1000)}MHz`,
        COLUMNS.map(([h, w]) => h.padStart(w)).join(" "),
      ];
      const next = new Map<number, number>();
      for (const i of list) {
        next.set(i.domid, i.cpuTime);
        const before = prev.get(i.domid);
        const pct = before === undefined || n === 0 ? 0 : ((i.cpuTime - before) / wallNs) * 100;
        const memK = i.totPages * 4;
        const maxK = i.maxPages * 4;
        const vifs = devices.filter((x): x is Vif => x.kind === "vif" && x.domid === i.domid);
        const vbds = devices.filter((x): x is Vbd => x.kind === "vbd" && x.domid === i.domid);
        const cells = [
          (await name(i.domid)).slice(0, 10).padStart(10),
          state(i),
          String(Math.floor(i.cpuTime / 1e9)).padStart(10),
          pct.toFixed(1).padStart(6),
          String(memK).padStart(10),
          ((memK / totalK) * 100).toFixed(1).padStart(6),
          String(maxK).padStart(10),
          ((maxK / totalK) * 100).toFixed(1).padStart(9),
          String(i.onlineVcpus).padStart(5),
          String(vifs.length).padStart(4),
          String(Math.floor(sum(vifs, (v) => v.txBytes) / 1024)).padStart(8),
          String(Math.floor(sum(vifs, (v) => v.rxBytes) / 1024)).padStart(8),
          String(vbds.length).padStart(4),
          String(sum(vbds, (v) => v.oo)).padStart(8),
          String(sum(vbds, (v) => v.rd)).padStart(8),
          String(sum(vbds, (v) => v.wr)).padStart(8),
          String(sum(vbds, (v) => v.rsect)).padStart(10),
          String(sum(vbds, (v) => v.wsect)).padStart(10),
          "0".padStart(4),
        ];
        out.push(cells.join(" "));
        if (opts.networks) vifs.forEach((v, k) => out.push(netLine(k, v)));
        if (opts.vbds) for (const v of vbds) out.push(vbdLine(v));
      }
      prev = next;
      prevAt = now;
      if (interactive) process.stdout.write("\x1b[H\x1b[2J");
      process.stdout.write(`${out.join("\n")}\n`);
      if (n + 1 < opts.iterations) {
        const end = Date.now() + opts.delayS * 1000;
        while (Date.now() < end && !quit) await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    if (interactive) {
      process.stdin.setRawMode(false);
      process.stdin.pause();
    }
  }
  return 0;
}
