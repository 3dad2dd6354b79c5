/**
 * Guest-to-guest UDP through netfront, netback and the xenbr0 bridge: the
 * ping guest sends datagrams of 1400 bytes to another's discard port and
 * asks how many arrived; throughput is what arrived over the time from the
 * first send to the answer. Baseline from the same run: copying the same
 * bytes in 1400-byte pieces with Buffer.copy (memcpy), the floor of any
 * way to move them. Also the ping round trip.
 */
import { guestPath } from "../extras/mini-os/paths.js";
import { Host } from "../tools/host/host.js";
import { Libxl } from "../tools/libxl/domain.js";
import { xlDomainConfig, type XlDomainConfig } from "../tools/libxl/config.js";
import { fmt, median, type Row, reportRow } from "./common.js";

const cfg = (name: string, cmdline: string): XlDomainConfig =>
  xlDomainConfig({
    name,
    kernel: guestPath("ping"),
    memory: 8,
    cmdline,
    onPoweroff: "preserve",
    onReboot: "destroy",
    onCrash: "preserve",
    vifs: ["bridge=xenbr0"],
  });

export async function run(quick: boolean): Promise<Row[]> {
  const n = quick ? 500 : 50_000;
  const size = 1400;
  const host = new Host({ memoryBytes: 2 * 1024 ** 3 });
  try {
    const libxl = new Libxl(host);
    await libxl.create(cfg("pong", "ip=10.0.0.2"));
    const d = await libxl.create(
      cfg("ping", `ip=10.0.0.1 peer=10.0.0.2 count=${quick ? 3 : 20} udp=${n} size=${size}`),
    );
    await host.waitShutdown(d.domid, 120_000);
    const out = host.xenconsoled.read(d.domid);
    const m = /sent \d+ datagrams of \d+ bytes in (\d+) us; peer says 'GOT (\d+) (\d+)'/.exec(out);
    if (!m) throw new Error(`ping printed no UDP result:\n${out}`);
    const us = Number(m[1]);
    const got = Number(m[2]);
    const bytes = Number(m[3]);
    const rtts = [...out.matchAll(/time=(\d+\.\d+) ms/g)].map((x) => Number(x[1]));
    const mbps = bytes / us; // bytes per µs = MB/s
    // Baseline: the same bytes through memcpy in datagram-sized pieces.
    const src = Buffer.alloc(size, 1);
    const dst = Buffer.alloc(1 << 20);
    const t0 = performance.now();
    for (let i = 0, at = 0; i < n; i++, at = (at + size) % (dst.length - size)) src.copy(dst, at);
    const base = (n * size) / ((performance.now() - t0) * 1000);
    return [
      {
        name: "guest→guest UDP, 1400-byte datagrams",
        measured: `${mbps.toFixed(0)} MB/s (${got}/${n} arrived)`,
        baseline: `memcpy ${base.toFixed(0)} MB/s`,
        ratio: mbps / base,
        target: "(report)",
        met: true,
      },
      reportRow("guest→guest ping round trip, median", fmt(median(rtts), "ms", 3)),
    ];
  } finally {
    await host.shutdown();
  }
}
