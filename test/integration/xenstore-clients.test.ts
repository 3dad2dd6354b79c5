/**
 * Xen's own C clients against tsxen's xenstored, over its unix socket:
 * Xen's test-xenstore (every test must pass) and each xenstore-* tool of
 * Debian's xenstore-utils, whose output must be exactly what they print
 * against Xen's C xenstored (test/fixtures/xenstore-tools.out); and tsxen's
 * own xenstore-* tools, which must print the same. When Xen's C
 * daemon can run here (../shared/peers/cxenstored), the same script runs
 * against it too and both outputs are compared live.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT } from "../../extras/mini-os/paths.js";
import { Xenstored } from "../../tools/xenstored/xenstored.js";
import { XsSocketServer } from "../../tools/xenstored/socket.js";
import { XsClient } from "../../tools/xenstore/client.js";

const run = promisify(execFile);
const TEST_XENSTORE = "/usr/lib/xen-4.17/bin/test-xenstore";
const SCRIPT = join(ROOT, "test", "fixtures", "xenstore-tools.sh");
const GOLDEN = join(ROOT, "test", "fixtures", "xenstore-tools.out");
const PEER = join(ROOT, "..", "shared", "peers", "cxenstored", "run.sh");

async function withDaemon<T>(fn: (socket: string, d: Xenstored) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-xs-"));
  const d = new Xenstored();
  const server = new XsSocketServer(d, join(dir, "socket"));
  await server.listen();
  try {
    return await fn(join(dir, "socket"), d);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function toolScript(socket: string, dir: string, path = process.env.PATH): Promise<string> {
  const { stdout } = await run("bash", [SCRIPT], {
    env: { ...process.env, PATH: path, XENSTORED_PATH: socket, XW_OUT: join(dir, "watch.out") },
  });
  return stdout;
}

/** A directory of tsxen's own xenstore-* tools, to put first on PATH. */
function ourTools(dir: string): string {
  const bin = join(dir, "bin");
  mkdirSync(bin);
  for (const m of ["read", "write", "rm", "exists", "list", "ls", "chmod", "watch"]) {
    const js = join(ROOT, "dist", "tools", "xenstore", "bin", `xenstore-${m}.js`);
    chmodSync(js, 0o755);
    symlinkSync(js, join(bin, `xenstore-${m}`));
  }
  return bin;
}

test("the socket is created with mode 0600 and removed at close", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-xs-"));
  const server = new XsSocketServer(new Xenstored(), join(dir, "xenstored", "socket"));
  await server.listen();
  assert.equal(statSync(join(dir, "xenstored", "socket")).mode & 0o777, 0o600);
  await server.close();
  assert.equal(existsSync(join(dir, "xenstored", "socket")), false);
  rmSync(dir, { recursive: true, force: true });
});

test("Xen's test-xenstore passes every test against tsxen's xenstored", async () => {
  await withDaemon(async (socket, d) => {
    const { stdout } = await run(TEST_XENSTORE, [], {
      env: { ...process.env, XENSTORED_PATH: socket },
    });
    const lines = stdout.trim().split("\n");
    assert.equal(lines.length, 12, stdout);
    for (const l of lines) assert.match(l, /^.{10}: \d+ ns$/, `test-xenstore: ${l}`);
    assert.deepEqual(d.store.check(), []);
  });
});

test("xenstore-utils print against tsxen exactly what they print against Xen's C xenstored", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-xs-"));
  try {
    const ours = await withDaemon((socket) => toolScript(socket, dir));
    assert.equal(ours, readFileSync(GOLDEN, "utf8"));
    if (existsSync(PEER) && existsSync("/usr/lib/xen-4.17/bin/xenstored")) {
      const cdir = join(dir, "cxs");
      await run("sh", [PEER, cdir], { env: { ...process.env, CXS_BACKGROUND: "1" } });
      try {
        assert.equal(await toolScript(join(cdir, "socket"), dir), ours, "Xen's C xenstored, live");
      } finally {
        const pid = Number(readFileSync(join(cdir, "xenstored.pid"), "utf8"));
        process.kill(pid, "SIGTERM");
      }
    } else {
      console.log(
        `# Xen's C xenstored is not runnable here (${PEER}): compared with the recorded output only`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("tsxen's own xenstore-* tools print exactly what Xen's print", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-xs-"));
  try {
    const bin = ourTools(dir);
    const ours = await withDaemon((socket) =>
      toolScript(socket, dir, `${bin}:${process.env.PATH}`),
    );
    assert.equal(ours, readFileSync(GOLDEN, "utf8"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the TypeScript client: reads, writes, watches and transactions with retry", async () => {
  await withDaemon(async (socket) => {
    const a = await XsClient.open(socket);
    const b = await XsClient.open(socket);
    try {
      await a.write("/c/x", "1");
      assert.equal(await a.readString("/c/x"), "1");
      assert.deepEqual(await a.directory("/c"), ["x"]);
      assert.deepEqual(await a.getPerms("/c/x"), ["n0"]);
      await assert.rejects(a.read("/c/none"), /xenstore read \/c\/none: ENOENT/);
      const events: string[] = [];
      await b.watch("/c", "tok", (p) => events.push(p));
      await a.write("/c/y", "2");
      await a.rm("/c/x");
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(events, ["/c", "/c/y", "/c/x"]);
      // Two clients increment one counter in transactions: no update is lost.
      await a.write("/c/n", "0");
      const bump = (cl: XsClient): Promise<void> =>
        cl.transaction(async (tx) => {
          const n = Number(await cl.readString("/c/n", tx));
          await cl.write("/c/n", String(n + 1), tx);
        });
      await Promise.all(Array.from({ length: 20 }, (_, i) => bump(i % 2 ? a : b)));
      assert.equal(await a.readString("/c/n"), "20");
      await b.unwatch("/c", "tok");
    } finally {
      a.close();
      b.close();
    }
  });
});

test("a client sending an oversized header is disconnected; the others carry on", async () => {
  await withDaemon(async (socket, d) => {
    const good = await XsClient.open(socket);
    await good.write("/k", "v");
    const { connect } = await import("node:net");
    const bad = connect(socket);
    await new Promise((r) => bad.once("connect", r));
    const head = Buffer.alloc(16);
    head.writeUInt32LE(2, 0);
    head.writeUInt32LE(100_000, 12);
    bad.write(head);
    await new Promise((r) => bad.once("close", r));
    assert.equal(await good.readString("/k"), "v");
    assert.ok(d.logLines.some((l) => /exceeds XENSTORE_PAYLOAD_MAX/.test(l)));
    good.close();
  });
});

test("fuzzed bytes on the socket: clients are dropped or answered, the daemon and its tree survive", async () => {
  await withDaemon(async (socket, d) => {
    const keeper = await XsClient.open(socket);
    await keeper.write("/keep", "safe");
    const { connect } = await import("node:net");
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    for (let k = 0; k < 40; k++) {
      const s = connect(socket);
      await new Promise((r) => s.once("connect", r));
      s.on("error", () => {});
      s.on("data", () => {});
      for (let m = 0; m < 20; m++) {
        const len = rand(64);
        const head = Buffer.alloc(16);
        head.writeUInt32LE(rand(32), 0);
        head.writeUInt32LE(rand(1000), 4);
        head.writeUInt32LE(rand(4), 8);
        head.writeUInt32LE(rand(20) === 0 ? 5000 + rand(100000) : len, 12);
        const body = Buffer.from(
          Array.from({ length: len }, () => (rand(3) === 0 ? 0 : 32 + rand(95))),
        );
        s.write(Buffer.concat([head, body]));
      }
      s.end();
      await new Promise((r) => s.once("close", r));
    }
    assert.equal(await keeper.readString("/keep"), "safe");
    assert.deepEqual(d.store.check(), []);
    keeper.close();
  });
});
