/**
 * vchan throughput and latency, against memcpy in the same run:
 * - guest ↔ guest: the vchan-echo pair moves N bytes through an echo server
 *   (each byte crosses twice); the figure is N over the wall time;
 * - Dom0 ↔ guest: a Dom0 client streams N bytes through a guest's echo;
 * - the baseline: TypedArray.set of the same bytes twice, 16 KiB at a time
 *   (what the two crossings would cost as plain copies);
 * - round trip of a 64-byte message, Dom0 ↔ guest echo, median.
 */
import { guestPath } from "../extras/mini-os/paths.js";
import { Host } from "../tools/host/host.js";
import { Vchan } from "../tools/libvchan/vchan.js";
import { loadKernelFile } from "../xen/arch/wasm32/kernel.js";
import { fmt, median, type Row, reportRow } from "./common.js";

async function until(pred: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000 && !pred(); i++) await new Promise((r) => setTimeout(r, 2));
  if (!pred()) throw new Error(`bench vchan: ${what} did not happen`);
}

export async function run(quick: boolean): Promise<Row[]> {
  const bytes = quick ? 4 * 2 ** 20 : 200 * 2 ** 20;
  const host = new Host({ memoryBytes: 2 * 1024 ** 3 });
  try {
    const kernel = await loadKernelFile(guestPath("vchan-echo"));
    // guest ↔ guest
    host.createSync({
      name: "srv",
      kernel,
      memory: 4,
      domid: 60,
      cmdline: "role=server peer=61",
      xenstore: true,
    });
    await until(() => /serves d61/.test(host.readConsole(60)), "the echo server");
    // Timed from the client's creation: its boot is microseconds.
    let t0 = performance.now();
    host.createSync({
      name: "cli",
      kernel,
      memory: 4,
      domid: 61,
      cmdline: `role=client peer=60 bytes=${bytes} nocheck`,
      xenstore: true,
    });
    await host.waitShutdown(61, 120_000);
    const ggMs = performance.now() - t0;
    if (!/echo fnv \d+ ok/.test(host.readConsole(61)))
      throw new Error(`bench vchan: ${host.readConsole(61)}`);
    await host.waitShutdown(60, 5000);
    // Dom0 ↔ guest
    host.createSync({
      name: "srv2",
      kernel,
      memory: 4,
      domid: 62,
      cmdline: "role=server peer=0",
      xenstore: true,
    });
    await until(() => /serves d0/.test(host.readConsole(62)), "the second echo server");
    const cli = Vchan.client(
      { drivers: host.dom0, xenstored: host.xenstored },
      62,
      "/local/domain/62/data/vchan/echo",
    );
    const chunk = new Uint8Array(1 << 20);
    // 64-byte round trips first, on a quiet channel.
    const rtt: number[] = [];
    const small = new Uint8Array(64);
    for (let i = 0; i < (quick ? 200 : 5000); i++) {
      const s = performance.now();
      await cli.writeAll(small);
      await cli.readExact(64);
      rtt.push((performance.now() - s) * 1000);
    }
    t0 = performance.now();
    await Promise.all([
      (async () => {
        for (let off = 0; off < bytes; off += chunk.length) await cli.writeAll(chunk);
      })(),
      (async () => {
        for (let off = 0; off < bytes; off += chunk.length) await cli.readExact(chunk.length);
      })(),
    ]);
    const dgMs = performance.now() - t0;
    cli.close();
    // The baseline: the same bytes copied twice, 16 KiB at a time.
    const a = new Uint8Array(bytes);
    const b = new Uint8Array(bytes);
    let best = Infinity;
    for (let rep = 0; rep < 3; rep++) {
      const s = performance.now();
      for (let k = 0; k < 2; k++) {
        for (let off = 0; off < bytes; off += 16384) b.set(a.subarray(off, off + 16384), off);
      }
      best = Math.min(best, performance.now() - s);
    }
    const mb = (ms: number): number => bytes / 2 ** 20 / (ms / 1000);
    return [
      {
        name: "vchan guest↔guest echo throughput vs memcpy",
        measured: fmt(mb(ggMs), "MiB/s", 0),
        baseline: fmt(mb(best), "MiB/s", 0),
        ratio: mb(ggMs) / mb(best),
        target: "(report)",
        met: true,
      },
      {
        name: "vchan Dom0↔guest echo throughput vs memcpy",
        measured: fmt(mb(dgMs), "MiB/s", 0),
        baseline: fmt(mb(best), "MiB/s", 0),
        ratio: mb(dgMs) / mb(best),
        target: "(report)",
        met: true,
      },
      reportRow("vchan 64-byte round trip, Dom0↔guest (median)", fmt(median(rtt), "µs", 1)),
    ];
  } finally {
    await host.shutdown();
  }
}
