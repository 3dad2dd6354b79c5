/**
 * The PV console end to end in one host: the builder's ring and port,
 * xenconsoled draining output into its replay buffer, the per-domain log and
 * attached clients, input typed into mini-os's input ring, a console kept
 * after a crash until the domain is destroyed, and a guest that scribbles
 * wild ring indices.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Host } from "../tools/host/host.js";
import { kernel, until } from "./helpers.js";
import { PFN_CONSOLE } from "../xen/arch/wasm32/config.js";
import { xencons_interface } from "../xen/include/public/io/console.js";
import { PAGE_SIZE } from "../xen/include/xen/mm.js";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

test("echo: output, input, replay, log, and the console after a crash", async () => {
  const logDir = mkdtempSync(join(tmpdir(), "tsxen-console-"));
  const host = new Host({ memoryBytes: 1024 ** 3 }, logDir);
  try {
    const d = await host.create({
      name: "echo",
      kernel: await kernel("echo"),
      memory: 4,
      xenstore: true,
    });
    const cons = host.xenconsoled;
    await until(() => cons.read(d.domid).includes("type a line"), 5000, "echo's prompt");
    assert.equal(host.xenstored.readText(`/local/domain/${d.domid}/console/type`), "xenconsoled");
    assert.match(cons.read(d.domid), /\r\n$/, "mini-os sends \\n to the ring as \\r\\n");

    // A client attaching late gets the replay first, then live output.
    let seen = "";
    let closed = "";
    const detach = cons.attach(d.domid, {
      output: (b) => (seen += Buffer.from(b).toString()),
      closed: (why) => (closed = why),
    });
    assert.match(seen, /type a line/);
    cons.input(d.domid, enc("hello there\r"));
    await until(() => seen.includes("echo: hello there"), 5000, "the echo");
    assert.match(seen, /hello there\r\necho: hello there\r\n/);
    detach();

    // More input than the 1 KiB input ring holds arrives whole, in order.
    const long = "x".repeat(200);
    for (let i = 0; i < 8; i++) cons.input(d.domid, enc(`${i}${long}\r`));
    await until(() => cons.read(d.domid).includes(`echo: 7${long}`), 5000, "eight long lines");
    for (let i = 0; i < 8; i++) assert.ok(cons.read(d.domid).includes(`echo: ${i}${long}`));

    // The console outlives a crash, until the domain is destroyed.
    host.hv.domainCrash(d, undefined, "test crash");
    assert.ok(cons.has(d.domid));
    assert.match(cons.read(d.domid), /echo: hello there/);
    const again = cons.attach(d.domid, { output: () => {}, closed: (why) => (closed = why) });
    host.destroy(d.domid);
    again();
    assert.equal(cons.has(d.domid), false);
    assert.match(closed, /destroyed/);
    await new Promise((r) => setTimeout(r, 50));
    const log = readFileSync(join(logDir, "guest-echo.log"), "utf8");
    assert.match(log, /type a line[\s\S]*echo: hello there/);
    assert.equal(host.hv.domains.size, 0, "nothing keeps the domain: its ring was unmapped");
  } finally {
    await host.shutdown();
    rmSync(logDir, { recursive: true, force: true });
  }
});

test("a guest with wild console indices costs at most a ring's worth, and nobody else notices", async () => {
  const host = new Host({ memoryBytes: 1024 ** 3 });
  try {
    const bad = await host.create({
      name: "bad",
      kernel: await kernel("ticker"),
      memory: 4,
      xenstore: true,
    });
    const good = await host.create({
      name: "good",
      kernel: await kernel("echo"),
      memory: 4,
      xenstore: true,
    });
    const ring = PFN_CONSOLE * PAGE_SIZE;
    const f = xencons_interface.fields;
    bad.mem.setU32(ring + f.out_prod.offset, 0x7fff_0000);
    bad.mem.setU32(ring + f.in_cons.offset, 0xdead_beef);
    host.xenconsoled.input(bad.domid, enc("ignored"));
    await until(() => host.xenconsoled.read(bad.domid).length >= 2048, 3000, "a ring's worth");
    assert.ok(host.xenconsoled.read(bad.domid).length <= 64 * 1024);
    await until(
      () => host.xenconsoled.read(good.domid).includes("type a line"),
      5000,
      "good's prompt",
    );
    host.xenconsoled.input(good.domid, enc("fine\r"));
    await until(
      () => host.xenconsoled.read(good.domid).includes("echo: fine"),
      5000,
      "good's echo",
    );
  } finally {
    await host.shutdown();
  }
});
