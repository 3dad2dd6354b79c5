/**
 * Disks through the daemon and xl: `disk=` in xl.cfg, `xl block-list`,
 * `block-attach` and `block-detach`, and durability: data blkbench wrote and
 * flushed is in the image file after the host process is killed with
 * SIGKILL.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { hostPaths } from "../../tools/rundir.js";
import { sleep } from "../helpers.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const XL = join(ROOT, "dist/tools/xl/xl.cjs");
const TSXEN = join(ROOT, "dist/tools/host/daemon.js");
const CFG = join(ROOT, "extras/mini-os/examples/blkbench.cfg");

/** blkbench's pattern word `i` of `sector` (extras/mini-os/examples/blkbench.ts). */
const word = (sector: number, i: number, seed: number): number =>
  (sector * 131 + i * 7 + seed * 1000003) >>> 0;

test("disk= and block-list, block-detach, block-attach; flushed data survives SIGKILL", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-blkxl-"));
  const env = { ...process.env, TSXEN_RUN_DIR: join(dir, "run"), TSXEN_LOG_DIR: join(dir, "log") };
  const run = (
    bin: string,
    ...args: string[]
  ): { code: number | null; out: string; err: string } => {
    const r = spawnSync(process.execPath, [bin, ...args], { env, cwd: ROOT, encoding: "utf8" });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const xl = (...args: string[]): string => {
    const r = run(XL, ...args);
    assert.equal(r.code, 0, `xl ${args.join(" ")}: ${r.err}`);
    return r.out;
  };
  const log = (name: string): string => {
    const f = join(dir, "log", "console", `guest-${name}.log`);
    return existsSync(f) ? readFileSync(f, "utf8") : "";
  };
  const until = async (pred: () => boolean, what: string): Promise<void> => {
    const end = Date.now() + 20_000;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await sleep(50);
    }
  };
  const img = join(dir, "a.img");
  const img2 = join(dir, "b.img");
  for (const p of [img, img2]) {
    writeFileSync(p, "");
    truncateSync(p, 8 * 2 ** 20);
  }
  assert.equal(run(TSXEN, "start").code, 0);
  let killed = false;
  try {
    const disk = `disk=["format=raw, vdev=xvda, access=rw, target=${img}"]`;
    xl("create", CFG, 'name="dur"', disk, 'extra="write seed=9 mib=2"', 'on_poweroff="preserve"');
    await until(() => log("dur").includes("sequential write 2 MiB"), "the flushed write");

    const domid = xl("domid", "dur").trim();
    const bl = xl("block-list", "dur").split("\n");
    assert.equal(bl[0], "Vdev  BE  handle state evt-ch ring-ref BE-path                       ");
    assert.match(
      bl[1]!,
      new RegExp(`^51712 0   ${domid} +4 +\\d+ +\\d+ +/local/domain/0/backend/vbd/${domid}/51712`),
    );

    // Hot-unplug (the guest is shut down and cannot answer: libxl's timeout
    // removes it), then hot-plug another disk.
    xl("block-detach", "dur", "xvda");
    assert.equal(xl("block-list", "dur").trim().split("\n").length, 1);
    xl("block-attach", "dur", `format=raw, vdev=xvdb, access=ro, target=${img2}`);
    assert.match(xl("block-list", "dur"), /^51728 0/m);
    const bad = run(XL, "block-attach", "dur", `vdev=xvdc, target=${join(dir, "nosuch.img")}`);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /nosuch\.img: No such file or directory/);
    // An image the backend refuses (a directory) fails block-attach too,
    // and leaves no device behind.
    const refused = run(XL, "block-attach", "dur", `vdev=xvdd, access=ro, target=${dir}`);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /libxl: disk xvdd: .*is a directory, not a regular file/);
    assert.doesNotMatch(xl("block-list", "dur"), /^51760 /m);
    const badSpec = run(XL, "block-attach", "dur", "vdev=floppy, target=/x");
    assert.equal(badSpec.code, 1);
    assert.match(badSpec.err, /vdev 'floppy' is not a disk name/);

    // Kill the host outright: what blkbench flushed is in the file.
    const pid = Number(readFileSync(hostPaths(env.TSXEN_RUN_DIR).pidFile, "utf8").split(" ")[0]);
    process.kill(pid, "SIGKILL");
    killed = true;
    const data = readFileSync(img);
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    for (let sector = 0; sector < 4096; sector++) {
      for (let i = 0; i < 128; i += 37) {
        assert.equal(
          dv.getUint32(sector * 512 + i * 4, true),
          word(sector, i, 9),
          `sector ${sector}`,
        );
      }
    }
  } finally {
    if (!killed) run(TSXEN, "stop", "--timeout", "1");
    rmSync(dir, { recursive: true, force: true });
  }
});
