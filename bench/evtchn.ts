/**
 * Event channel round trip between two guests: the pingpong example guests
 * bounce an event over an interdomain channel, timing each round trip with
 * their own clock (2-level and FIFO ABIs). The baseline is the issue's
 * target, 2 µs. A round trip is two sends, two wake-ups, two upcalls and two
 * switches between guests.
 */
import { guestPath } from "../extras/mini-os/paths.js";
import { Host } from "../tools/host/host.js";
import { loadKernelFile } from "../xen/arch/wasm32/kernel.js";
import { fmt, median, type Row } from "./common.js";

async function pingpong(host: Host, n: number, fifo: boolean): Promise<number> {
  const kernel = await loadKernelFile(guestPath("pingpong"));
  const extra = fifo ? " fifo" : "";
  const pong = host.createSync({
    name: "pong",
    kernel,
    memory: 2,
    domid: 50,
    cmdline: `role=pong peer=51 n=${n}${extra}`,
  });
  let port: string | undefined;
  for (let i = 0; i < 2000 && !port; i++) {
    await new Promise((r) => setTimeout(r, 1));
    port = /offers port (\d+)/.exec(host.readConsole(pong.domid))?.[1];
  }
  if (!port) throw new Error(`pong offered no port: ${host.readConsole(pong.domid)}`);
  const ping = host.createSync({
    name: "ping",
    kernel,
    memory: 2,
    domid: 51,
    cmdline: `role=ping peer=50 port=${port} n=${n}${extra}`,
  });
  await host.waitShutdown(ping.domid, 120_000);
  const m = /median (\d+) ns/.exec(host.readConsole(ping.domid));
  if (!m) throw new Error(`ping reported nothing: ${host.readConsole(ping.domid)}`);
  host.destroy(ping.domid);
  host.destroy(pong.domid);
  return Number(m[1]);
}

export async function run(quick: boolean): Promise<Row[]> {
  const host = new Host({ memoryBytes: 2 * 1024 ** 3 });
  try {
    const rows: Row[] = [];
    for (const fifo of [false, true]) {
      const runs: number[] = [];
      for (let rep = 0; rep < (quick ? 1 : 3); rep++) {
        runs.push(await pingpong(host, quick ? 2_000 : 100_000, fifo));
      }
      const ns = median(runs);
      rows.push({
        name: `event channel round trip, guest↔guest, ${fifo ? "FIFO" : "2-level"} (median)`,
        measured: fmt(ns / 1000, "µs"),
        baseline: fmt(2, "µs"),
        ratio: ns / 2000,
        target: "≤ 2 µs",
        met: ns <= 2000,
      });
    }
    return rows;
  } finally {
    await host.shutdown();
  }
}
