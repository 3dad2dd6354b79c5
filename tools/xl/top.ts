/**
 * `xl top`, which is xentop (xen-doc `man/xentop.1`): a table of every
 * domain with xentop's columns, refreshed every `delay` seconds; `-b`
 * prints each refresh plainly (batch mode) and `-i N` stops after N. On a
 * terminal, 'q' quits. The NETS and VBD columns are zeros: the backends'
 * counters are not exported to xl yet.
 */
import { cpus } from "node:os";
import type { XcDomInfo, XcInterface } from "../libxc/xc.js";

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

export async function runTop(
  xc: XcInterface,
  name: (domid: number) => Promise<string>,
  opts: { batch: boolean; iterations: number; delayS: number },
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
        `Mem: ${totalK}k total, ${usedK}k used, ${totalK - usedK}k free    CPUs: ${p.nrCpus} @ ${cpus()[0]?.speed ?? 0}MHz`,
        COLUMNS.map(([h, w]) => h.padStart(w)).join(" "),
      ];
      const next = new Map<number, number>();
      for (const i of list) {
        next.set(i.domid, i.cpuTime);
        const before = prev.get(i.domid);
        const pct = before === undefined || n === 0 ? 0 : ((i.cpuTime - before) / wallNs) * 100;
        const memK = i.totPages * 4;
        const maxK = i.maxPages * 4;
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
          "0".padStart(4),
          "0".padStart(8),
          "0".padStart(8),
          "0".padStart(4),
          "0".padStart(8),
          "0".padStart(8),
          "0".padStart(8),
          "0".padStart(10),
          "0".padStart(10),
          "0".padStart(4),
        ];
        out.push(cells.join(" "));
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
