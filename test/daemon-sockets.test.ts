/**
 * The host daemon's sockets against clients that misbehave: the privcmd
 * socket refuses malformed requests and hypercalls that are not the
 * toolstack's, the libxl socket refuses bad calls and bad configs with
 * errors that say what was wrong, xenconsoled's refuses unknown domains, and
 * none of it disturbs the host: afterwards a guest still runs and libxc
 * still works. Only the socket's owner may connect (mode 0600).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newHost, until } from "./helpers.js";
import { PrivcmdClient, PrivcmdServer } from "../tools/libxc/privcmd_socket.js";
import { XcInterface } from "../tools/libxc/xc.js";
import { Libxl } from "../tools/libxl/domain.js";
import { LibxlClient, LibxlServer } from "../tools/libxl/server.js";
import { ConsoleServer, attachConsole } from "../tools/console/socket.js";
import { HYPERVISOR as H } from "../xen/include/public/xen.js";
import { guestPath } from "../extras/mini-os/paths.js";
import { xlDomainConfig } from "../tools/libxl/config.js";

/** Sends raw bytes, resolves with everything received until the server closes or 300 ms pass. */
function raw(path: string, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s: Socket = createConnection(path);
    let got = "";
    s.on("data", (b) => (got += b.toString()));
    s.on("error", () => {});
    s.on("connect", () => s.write(bytes));
    const done = (): void => resolve(got);
    s.on("close", done);
    setTimeout(() => {
      s.destroy();
      done();
    }, 300);
  });
}

test("privcmd, libxl and console sockets refuse bad clients and the host carries on", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-sock-"));
  const host = newHost();
  const log: string[] = [];
  const privcmd = new PrivcmdServer(host.dom0.privcmd, join(dir, "privcmd"), (m) => log.push(m));
  const libxl = new Libxl(host);
  const lx = new LibxlServer(
    libxl,
    join(dir, "libxl"),
    async () => {},
    (m) => log.push(m),
  );
  const cons = new ConsoleServer(() => host.xenconsoled, join(dir, "console"));
  await Promise.all([privcmd.listen(), lx.listen(), cons.listen()]);
  try {
    for (const p of ["privcmd", "libxl", "console"]) {
      assert.equal(statSync(join(dir, p)).mode & 0o777, 0o600, `${p} is the owner's only`);
    }
    // privcmd: garbage, a non-object, a bad number, a Dom0-kernel hypercall, a huge buffer.
    assert.equal(await raw(join(dir, "privcmd"), "this is not json\n"), "");
    assert.match(log.join("\n"), /privcmd: a client sent not a JSON object/);
    const one = async (m: unknown): Promise<Record<string, unknown>> =>
      JSON.parse(await raw(join(dir, "privcmd"), `${JSON.stringify(m)}\n`)) as Record<
        string,
        unknown
      >;
    assert.match(String((await one({ id: 1, nr: 9999, args: [], bufs: [] })).error), /not 0\.\.63/);
    assert.match(
      String((await one({ id: 2, nr: H.__HYPERVISOR_sched_op, args: [2, 0], bufs: [] })).error),
      /__HYPERVISOR_sched_op is not available over the socket/,
    );
    assert.match(
      String((await one({ id: 3, nr: 36, args: ["x"], bufs: [] })).error),
      /args must be/,
    );
    // Too big for the bounce area (said in a length, or in bytes), or not {n, b}: refused
    // before the daemon allocates anything.
    for (const bufs of [
      [{ n: 300 * 1024, b: "" }],
      [{ n: 2 ** 50, b: "" }],
      [{ n: 8, b: Buffer.alloc(4096).toString("base64") }],
      [Buffer.alloc(8).toString("base64")],
      [{ n: -1, b: "" }],
    ]) {
      assert.match(
        String((await one({ id: 4, nr: 36, args: [0], bufs })).error),
        /bufs must be \{n, b\}.*bytes at most in all/,
      );
    }
    const r = await one({ id: 5, nr: 36, args: [0x40000], bufs: [{ n: 8, b: "" }] });
    assert.equal(r.rc, -13, "a domctl with a wrong interface version is EACCES, as in Xen");

    // libxl: an unknown call, a bad argument, configs that cannot be built.
    const c = await LibxlClient.connect(join(dir, "libxl"));
    await assert.rejects(c.call("frobnicate"), /libxl: unknown call "frobnicate"/);
    await assert.rejects(
      c.call("destroy", { domid: -1 }),
      /'domid' must be a non-negative integer/,
    );
    await assert.rejects(
      c.call("destroy", { domid: 42 }),
      /domain 42 is not a domain libxl created/,
    );
    await assert.rejects(c.call("create", { config: 5 }), /create needs a domain config/);
    const base = xlDomainConfig({ name: "x", kernel: guestPath("ticker"), memory: 4 });
    await assert.rejects(
      c.call("create", { config: { ...base, kernel: join(dir, "nosuch.wasm") } }),
      /nosuch\.wasm/,
    );
    await assert.rejects(c.call("create", { config: { ...base, vcpus: 0 } }), /vcpus=0/);
    await assert.rejects(
      c.call("create", { config: { ...base, name: "../../etc/x" } }),
      /config field .name. is not a valid domain name/,
    );
    await assert.rejects(
      c.call("create", { config: { ...base, memory: "lots" } }),
      /config field .memory. must be a non-negative integer/,
    );
    assert.equal(host.hv.domains.size, 0, "nothing half-built is left");
    assert.equal(await raw(join(dir, "libxl"), "[1,2]\n"), "");

    // xenconsoled: an unknown domain, and garbage for a handshake.
    await assert.rejects(attachConsole(join(dir, "console"), 77), /domain 77 has no console/);
    assert.equal(await raw(join(dir, "console"), "x".repeat(5000)), "");

    // The host is fine: a guest boots and prints, libxc answers.
    const { domid } = (await c.call("create", { config: base })) as { domid: number };
    await until(() => host.xenconsoled.read(domid).includes("tick 1"), 5000, "a tick");
    const xc = new XcInterface(await PrivcmdClient.connect(join(dir, "privcmd")));
    assert.deepEqual(
      (await xc.domainGetInfoList()).map((i) => i.domid),
      [0, domid],
    );
    xc.close();
    c.close();
  } finally {
    await Promise.all([privcmd.close(), lx.close(), cons.close()]);
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});
