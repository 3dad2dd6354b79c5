#!/usr/bin/env node
/**
 * xentrace (Xen's `tools/xentrace/xentrace.c`, options as its man page
 * xentrace(8)): turns the hypervisor's trace buffers on, drains them into
 * a file in Xen's binary format until stopped, then turns them off. The
 * file is what Xen's readers take: `xenalyze` (Debian's) and
 * `xentrace_format` (tools/xentrace/xentrace_format.ts, with
 * tools/xentrace/formats).
 *
 * The format: for each CPU whose buffer had records, a
 * TRC_TRACE_CPU_CHANGE record (header, then the CPU and the byte count of
 * the records that follow, no time stamp), then those records as the
 * hypervisor wrote them (`t_rec`: header with the event, the count of
 * extra words and the cycle flag; the 64-bit time stamp; the extra words).
 *
 * It reaches the hypervisor through the daemon's privcmd socket: the
 * sysctl for the controls, and the socket's copies of the buffer pages
 * (DOMID_XEN frames) for the records and t_buf.cons.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseCommandLine } from "../cli.js";
import { hostPaths, runDir } from "../rundir.js";
import { XcInterface } from "../libxc/xc.js";
import { PrivcmdClient } from "../libxc/privcmd_socket.js";
import {
  TRACE_EXTRA_SHIFT,
  TRC_ALL,
  TRC_TRACE_CPU_CHANGE,
  t_buf,
} from "../../xen/include/public/trace.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";

/** xentrace's default CPU mask: every CPU (as Xen's). */
const ALL_CPUS = 0xffffffff;

/** How xentrace reaches the buffers: the sysctl, and Xen's pages by frame number. */
export interface TraceAccess {
  xc: XcInterface;
  read(mfns: number[]): Promise<(Uint8Array | undefined)[]>;
  write(mfn: number, offset: number, data: Uint8Array): Promise<void>;
}

export interface XentraceOptions {
  /** -e: the event mask (classes), TRC_ALL by default. */
  evtMask?: number;
  /** -c: the CPU mask. */
  cpuMask?: number;
  /** -S: pages per CPU's buffer (only before the buffers exist). */
  pages?: number;
  /** -s: how often the buffers are read, in ms (Xen's default 100). */
  pollMs?: number;
  /** -T: stop after this many seconds. */
  timeLimitS?: number;
  /** -D: discard what the buffers hold already. */
  discard?: boolean;
}

/** Stats of a run: bytes written and how many reads found records. */
export interface XentraceResult {
  bytes: number;
  reads: number;
}

/**
 * Traces until `stop` fires (or the -T limit), writing Xen's trace format
 * to `out`. The buffers are left disabled.
 */
export async function xentrace(
  access: TraceAccess,
  out: (bytes: Uint8Array) => void,
  opts: XentraceOptions,
  stop: AbortSignal,
  log: (msg: string) => void = () => {},
): Promise<XentraceResult> {
  const { xc } = access;
  if (opts.pages !== undefined) {
    try {
      await xc.tbufSetSize(opts.pages);
    } catch (e) {
      // As Xen's: the size is fixed once the buffers exist.
      log(
        `xentrace: the trace buffers are already allocated; -S ignored (${(e as Error).message})`,
      );
    }
  }
  await xc.tbufEnable(true);
  try {
    await xc.tbufSetEvtMask(opts.evtMask ?? TRC_ALL);
    await xc.tbufSetCpuMask(opts.cpuMask ?? ALL_CPUS);
    const info = await xc.tbufGetInfo();
    const [tinfo] = await access.read([info.mfn]);
    if (!tinfo) throw new Error("xentrace: cannot map the t_info page");
    const ti = new DataView(tinfo.buffer, tinfo.byteOffset, tinfo.byteLength);
    const pages = ti.getUint16(0, true);
    // t_info's mfn_offset[cpu]: where each CPU's frame list starts (0: no
    // buffer). The lists follow the offsets, so CPU 0's tells how many there are.
    const cpus: Array<{ cpu: number; mfns: number[] }> = [];
    const slots = Math.max(0, (ti.getUint16(2, true) * 4 - 2) / 2);
    for (let cpu = 0; cpu < slots; cpu++) {
      const word = ti.getUint16(2 + 2 * cpu, true);
      if (word === 0) continue;
      cpus.push({
        cpu,
        mfns: Array.from({ length: pages }, (_, i) => ti.getUint32((word + i) * 4, true)),
      });
    }
    const X = pages * PAGE_SIZE - t_buf.size;
    let bytes = 0;
    let reads = 0;
    const header = async (mfns: number[]): Promise<{ cons: number; prod: number }> => {
      const [p] = await access.read([mfns[0]!]);
      const dv = new DataView(p!.buffer, p!.byteOffset, p!.byteLength);
      return {
        cons: dv.getUint32(t_buf.fields.cons.offset, true),
        prod: dv.getUint32(t_buf.fields.prod.offset, true),
      };
    };
    const setCons = (mfns: number[], cons: number): Promise<void> => {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, cons, true);
      return access.write(mfns[0]!, t_buf.fields.cons.offset, b);
    };
    if (opts.discard) for (const c of cpus) await setCons(c.mfns, (await header(c.mfns)).prod);
    const drainCpu = async (cpu: number, mfns: number[]): Promise<void> => {
      const { cons, prod } = await header(mfns);
      if (cons === prod) return;
      const window = (prod - cons + 2 * X) % (2 * X);
      const all = await access.read(mfns);
      const buf = new Uint8Array(pages * PAGE_SIZE);
      all.forEach((p, i) => p && buf.set(p, i * PAGE_SIZE));
      const data = buf.subarray(t_buf.size);
      const start = cons % X;
      const first = data.subarray(start, Math.min(X, start + window));
      const second = data.subarray(0, window - first.length);
      const rec = new Uint8Array(12);
      const dv = new DataView(rec.buffer);
      dv.setUint32(0, (TRC_TRACE_CPU_CHANGE | (2 << TRACE_EXTRA_SHIFT)) >>> 0, true);
      dv.setUint32(4, cpu, true);
      dv.setUint32(8, window, true);
      out(rec);
      out(first);
      if (second.length > 0) out(second);
      bytes += rec.length + window;
      reads++;
      await setCons(mfns, prod);
    };
    const drain = async (): Promise<void> => {
      for (const c of cpus) await drainCpu(c.cpu, c.mfns);
    };
    const end = opts.timeLimitS !== undefined ? Date.now() + opts.timeLimitS * 1000 : Infinity;
    while (!stop.aborted && Date.now() < end) {
      await drain();
      const wait = Math.min(opts.pollMs ?? 100, end - Date.now());
      if (wait > 0)
        await new Promise<void>((r) => {
          const done = (): void => {
            clearTimeout(t);
            stop.removeEventListener("abort", done);
            r();
          };
          const t = setTimeout(done, wait);
          stop.addEventListener("abort", done);
        });
    }
    await drain();
    return { bytes, reads };
  } finally {
    await xc.tbufEnable(false).catch(() => {});
  }
}

/** Parses a mask as xentrace does: decimal or 0x hex. */
function mask(s: string, what: string): number {
  const n = /^0x[0-9a-f]+$/i.test(s) ? parseInt(s.slice(2), 16) : /^\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) {
    console.error(`xentrace: invalid ${what} '${s}'`);
    process.exit(1);
  }
  return n;
}

async function main(): Promise<number> {
  const { values, positionals } = parseCommandLine(
    "xentrace",
    {
      options: {
        "cpu-mask": { type: "string", short: "c" },
        "evt-mask": { type: "string", short: "e" },
        "poll-sleep": { type: "string", short: "s" },
        "trace-buf-size": { type: "string", short: "S" },
        "time-interval": { type: "string", short: "T" },
        "discard-buffers": { type: "boolean", short: "D" },
        help: { type: "boolean", short: "?" },
      },
      allowPositionals: true,
    },
    "xentrace --help",
  );
  if (values.help || positionals.length !== 1) {
    console.error(
      [
        "Usage: xentrace [OPTION...] [output file]",
        "Tool to capture Xen trace buffer data",
        "",
        "  -c, --cpu-mask=c        Set cpu-mask, using hex or decimal (bit n: pCPU n)",
        "  -e, --evt-mask=e        Set evt-mask (event classes), hex or decimal",
        "  -s, --poll-sleep=p      Set sleep time, p, in milliseconds (default 100)",
        "  -S, --trace-buf-size=N  Set trace buffer size in pages (default 32)",
        "  -T, --time-interval=s   Run xentrace for s seconds and quit",
        "  -D, --discard-buffers   Discard all records currently in the trace buffers",
      ].join("\n"),
    );
    return values.help ? 0 : 1;
  }
  const paths = hostPaths(runDir());
  let client: PrivcmdClient;
  try {
    client = await PrivcmdClient.connect(paths.privcmd);
  } catch (e) {
    console.error(`xentrace: ${(e as Error).message}`);
    return 1;
  }
  let fd: number;
  try {
    fd = openSync(positionals[0]!, "w", 0o644);
  } catch (e) {
    console.error(`xentrace: cannot open ${positionals[0]}: ${(e as Error).message}`);
    client.close();
    return 1;
  }
  const stop = new AbortController();
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, () => stop.abort());
  const num = (s: string | undefined, what: string): number | undefined =>
    s === undefined ? undefined : mask(s, what);
  try {
    await xentrace(
      {
        xc: new XcInterface(client),
        read: (mfns) => client.mmapXen(mfns),
        write: (mfn, off, data) => client.pokeXen(mfn, off, data),
      },
      (b) => writeSync(fd, b),
      {
        cpuMask: num(values["cpu-mask"], "cpu-mask"),
        evtMask: num(values["evt-mask"], "evt-mask"),
        pollMs: num(values["poll-sleep"], "poll-sleep"),
        pages: num(values["trace-buf-size"], "trace-buf-size"),
        timeLimitS: num(values["time-interval"], "time-interval"),
        discard: values["discard-buffers"] === true,
      },
      stop.signal,
      (m) => console.error(m),
    );
    return 0;
  } catch (e) {
    console.error(`xentrace: ${(e as Error).message}`);
    return 1;
  } finally {
    closeSync(fd);
    client.close();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exitCode = await main();
