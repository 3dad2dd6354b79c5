#!/usr/bin/env node
/**
 * xentrace_format (after Xen's `tools/xentrace/xentrace_format`, whose
 * rules and output it keeps; Debian's copy is Python 2 and does not run
 * under Debian's python3): reads a xentrace file on standard input and
 * prints each record by the rule for its event in a definitions file
 * (tools/xentrace/formats is tsxen's). A rule is `{event id} {format}`;
 * the format takes Python's `%(name)d` conversions (d, u, x, X, o, s,
 * with flags and width) of `cpu`, `tsc`, `reltsc` (since the CPU's previous
 * record), `event`, and the data words `1` to `7`. A rule for event 0
 * catches events that have none; other events are not printed. `-c MHZ`
 * prints times in microseconds instead of cycles.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  TRACE_EXTRA_MAX,
  TRACE_EXTRA_SHIFT,
  TRC_HD_CYCLE_FLAG,
  TRC_TRACE_CPU_CHANGE,
} from "../../xen/include/public/trace.js";

/** One record of a trace file. */
export interface TraceRecord {
  cpu: number;
  event: number;
  /** Cycles (undefined when the record has no time stamp). */
  tsc: number | undefined;
  data: number[];
}

/**
 * The records of a xentrace file, in order, with the CPU each came from.
 * Throws naming the offset of a record cut short.
 */
export function parseTrace(bytes: Uint8Array): TraceRecord[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: TraceRecord[] = [];
  let cpu = 0;
  let o = 0;
  while (o + 4 <= bytes.length) {
    const h = dv.getUint32(o, true);
    const n = (h >>> TRACE_EXTRA_SHIFT) & TRACE_EXTRA_MAX;
    const cycles = (h & TRC_HD_CYCLE_FLAG) !== 0;
    const size = 4 + (cycles ? 8 : 0) + 4 * n;
    if (o + size > bytes.length)
      throw new Error(
        `trace record at offset ${o} is cut short (${size} bytes, ${bytes.length - o} left)`,
      );
    const event = h & 0x0fffffff;
    let p = o + 4;
    let tsc: number | undefined;
    if (cycles) {
      tsc = dv.getUint32(p, true) + dv.getUint32(p + 4, true) * 2 ** 32;
      p += 8;
    }
    const data = Array.from({ length: n }, (_, i) => dv.getUint32(p + 4 * i, true));
    if (event === TRC_TRACE_CPU_CHANGE) cpu = data[0] ?? 0;
    else out.push({ cpu, event, tsc, data });
    o += size;
  }
  return out;
}

/** A definitions file: event id → format. */
export function readDefs(text: string): Map<number, string> {
  const defs = new Map<number, string>();
  text.split("\n").forEach((line, i) => {
    if (line.startsWith("#") || line.trim() === "") return;
    const m = /^(\S+)\s+(\S.*)$/.exec(line);
    const id = m ? Number(m[1]) : NaN;
    if (!m || !Number.isInteger(id)) throw new Error(`Bad format file (line ${i + 1}: ${line})`);
    defs.set(id, m[2]!);
  });
  return defs;
}

/** Python's `fmt % args` for the conversions a rule may use. */
export function pyFormat(fmt: string, args: Record<string, number>): string {
  return fmt.replace(
    /%(?:\(([^)]*)\))?([-#0 +]*)(\d*)(?:\.(\d+))?([duxXos%])/g,
    (whole, key: string | undefined, flags: string, width: string, _prec, conv: string) => {
      if (conv === "%") return "%";
      if (key === undefined || !(key in args))
        throw new Error(`format ${whole}: no value '${key}'`);
      const v = args[key]!;
      let s =
        conv === "x"
          ? v.toString(16)
          : conv === "X"
            ? v.toString(16).toUpperCase()
            : conv === "o"
              ? v.toString(8)
              : String(v);
      if (flags.includes("#") && (conv === "x" || conv === "X")) s = `0${conv}${s}`;
      const w = Number(width || 0);
      if (s.length < w) {
        if (flags.includes("-")) s = s.padEnd(w);
        else if (flags.includes("0")) s = s.padStart(w, "0");
        else s = s.padStart(w);
      }
      return s;
    },
  );
}

/** The lines xentrace_format prints for `records` by `defs` (MHz: times in µs). */
export function formatTrace(records: TraceRecord[], defs: Map<number, string>, mhz = 0): string[] {
  const last = new Map<number, number>();
  const lines: string[] = [];
  for (const r of records) {
    const fmt = defs.get(r.event) ?? defs.get(0);
    const raw = r.tsc ?? 0;
    const prev = last.get(r.cpu) ?? raw;
    if (r.tsc !== undefined) last.set(r.cpu, raw);
    if (fmt === undefined) continue;
    const scale = (t: number): number => (mhz > 0 ? Math.floor(t / mhz) : t);
    const args: Record<string, number> = {
      cpu: r.cpu,
      tsc: scale(raw),
      reltsc: scale(raw - prev),
      event: r.event,
    };
    for (let i = 0; i < 7; i++) args[String(i + 1)] = r.data[i] ?? 0;
    lines.push(pyFormat(fmt, args));
  }
  return lines;
}

function main(argv: string[]): number {
  let mhz = 0;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "-c") mhz = Number(argv[++i]);
    else rest.push(argv[i]!);
  }
  if (rest.length !== 1 || !Number.isFinite(mhz) || mhz < 0) {
    console.error("Usage: xentrace_format [-c mhz] defs-file < trace-file");
    return 1;
  }
  try {
    const defs = readDefs(readFileSync(rest[0]!, "utf8"));
    const lines = formatTrace(parseTrace(readFileSync(0)), defs, mhz);
    process.stdout.write(lines.map((l) => `${l}\n`).join(""));
    return 0;
  } catch (e) {
    console.error(`xentrace_format: ${(e as Error).message}`);
    return 1;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url))
  process.exitCode = main(process.argv.slice(2));
