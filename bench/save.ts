/**
 * xl save and restore of a 64 MiB PV guest (#18's targets), against Node
 * doing the same bytes in the same run: save against writing the file's
 * bytes with writeFileSync (target ≤ 1.5×), restore to a running guest
 * against reading them with readFileSync (target ≤ 2×). Median of seven
 * runs after an untimed one; each writes a new file, as Node's does.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../extras/mini-os/paths.js";
import { Host } from "../tools/host/host.js";
import { parseCfg } from "../tools/libxlu/cfg.js";
import { domainConfig } from "../tools/libxl/config.js";
import { Libxl } from "../tools/libxl/domain.js";
import { fmt, median, type Row } from "./common.js";

export async function run(quick: boolean): Promise<Row[]> {
  const memory = quick ? 8 : 64;
  // One untimed round first: the first save and restore of a process
  // compile the code they run (about 100 ms each here), once.
  const reps = quick ? 1 : 7;
  const host = new Host({ memoryBytes: 2 * 1024 ** 3 });
  const dir = mkdtempSync(join(tmpdir(), "tsxen-bench-save-"));
  try {
    const ex = join(ROOT, "extras", "mini-os", "examples");
    const file = join(ex, "ticker.cfg");
    const cfg = {
      ...domainConfig(parseCfg(readFileSync(file, "utf8"), file), file, ex).config,
      memory,
      maxmem: memory,
    };
    const xl = new Libxl(host);
    const path = join(dir, "guest.save");
    const save: number[] = [];
    const write: number[] = [];
    const restore: number[] = [];
    const read: number[] = [];
    let d = await xl.create(cfg);
    await xl.save(d.domid, path);
    d = await xl.restore(path);
    for (let i = 0; i < reps; i++) {
      // Both write new files: overwriting one would add ext4's truncation
      // and its flush at close of a truncated file (auto_da_alloc) to
      // whichever came second, 30–100 ms either way here.
      rmSync(path, { force: true });
      let t0 = performance.now();
      await xl.save(d.domid, path);
      save.push(performance.now() - t0);
      const bytes = readFileSync(path);
      rmSync(join(dir, "node.bin"), { force: true });
      t0 = performance.now();
      writeFileSync(join(dir, "node.bin"), bytes);
      write.push(performance.now() - t0);
      t0 = performance.now();
      readFileSync(join(dir, "node.bin"));
      read.push(performance.now() - t0);
      t0 = performance.now();
      d = await xl.restore(path);
      restore.push(performance.now() - t0);
    }
    const mib = statSync(path).size / 1024 ** 2;
    const [s, w, r, rd] = [save, write, restore, read].map(median) as [
      number,
      number,
      number,
      number,
    ];
    return [
      {
        name: `save of a ${memory} MiB guest (${mib.toFixed(0)} MiB file) vs Node writing the bytes`,
        measured: fmt(s, "ms", 1),
        baseline: fmt(w, "ms", 1),
        ratio: s / w,
        target: "≤ 1.5×",
        met: s / w <= 1.5,
      },
      {
        name: `restore of a ${memory} MiB guest to running vs Node reading the bytes`,
        measured: fmt(r, "ms", 1),
        baseline: fmt(rd, "ms", 1),
        ratio: r / rd,
        target: "≤ 2×",
        met: r / rd <= 2,
      },
    ];
  } finally {
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}
