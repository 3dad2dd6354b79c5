/**
 * One host per run directory, however it is started, and a host is known by
 * more than its pid: a stale pid file whose pid now belongs to another
 * process is neither reported as running nor signalled. A host whose output
 * pipe closes (`npm start | head -3`) stops cleanly, not of an EPIPE.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { hostPaths } from "../../tools/rundir.js";
import { runningPid } from "../../tools/host/pidlock.js";
import { sleep, until } from "../helpers.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const MAIN = join(ROOT, "dist/tools/host/main.js");
const TSXEN = join(ROOT, "dist/tools/host/daemon.js");

function envFor(): NodeJS.ProcessEnv {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-lock-"));
  return { ...process.env, TSXEN_RUN_DIR: join(dir, "run"), TSXEN_LOG_DIR: join(dir, "log") };
}

/** npm start's host, its output collected. */
function npmStart(env: NodeJS.ProcessEnv): { child: ChildProcess; out: () => string } {
  const child = spawn(process.execPath, [MAIN, "--guest", "ticker"], { env });
  let out = "";
  child.stdout!.on("data", (b) => (out += String(b)));
  child.stderr!.on("data", (b) => (out += String(b)));
  return { child, out: () => out };
}

const exited = (c: ChildProcess): Promise<number | null> =>
  c.exitCode !== null ? Promise.resolve(c.exitCode) : new Promise((r) => c.once("exit", r));

test("a second npm start on the same run directory is refused; the first keeps its sockets", async () => {
  const env = envFor();
  const a = npmStart(env);
  try {
    await until(() => /xenstored listening/.test(a.out()), 20_000, "the first host");
    const b = npmStart(env);
    assert.equal(await exited(b.child), 1);
    assert.match(b.out(), /a host is already running on .*run \(pid \d+\)/);
    // So is the daemon on the same directory.
    const d = spawnSync(process.execPath, [TSXEN, "start"], { env, encoding: "utf8" });
    assert.equal(d.status, 1);
    assert.match(d.stderr, /a host is already running/);
    const s = spawnSync(process.execPath, [TSXEN, "status"], { env, encoding: "utf8" });
    assert.match(s.stdout, new RegExp(`running \\(pid ${a.child.pid}\\)`));
  } finally {
    a.child.kill("SIGTERM");
    await exited(a.child);
  }
  assert.equal(runningPid(hostPaths(env.TSXEN_RUN_DIR).pidFile), undefined, "the lock went");
});

test("a stale pid file naming another live process: status says not running, stop signals nothing", async () => {
  const env = envFor();
  const paths = hostPaths(env.TSXEN_RUN_DIR);
  spawnSync("mkdir", ["-p", "-m", "700", env.TSXEN_RUN_DIR!]);
  // A process that is not a host, with the pid the file names and another start time.
  const bystander = spawn("sleep", ["30"]);
  try {
    writeFileSync(paths.pidFile, `${bystander.pid} 1\n`);
    const s = spawnSync(process.execPath, [TSXEN, "status"], { env, encoding: "utf8" });
    assert.equal(s.status, 3, s.stdout);
    const st = spawnSync(process.execPath, [TSXEN, "stop", "--timeout", "1"], {
      env,
      encoding: "utf8",
    });
    assert.equal(st.status, 0);
    assert.match(st.stdout, /no host is running/);
    await sleep(200);
    assert.equal(bystander.exitCode, null, "the bystander was signalled");
    assert.equal(bystander.signalCode, null);
  } finally {
    bystander.kill();
  }
});

test("npm start | head -3: when the pipe closes the host stops cleanly, as on SIGTERM", async () => {
  const env = envFor();
  const child = spawn(process.execPath, [MAIN, "--guest", "ticker", "--list-every", "1"], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let lines = 0;
  await new Promise<void>((resolve) => {
    child.stdout!.on("data", (b: Buffer) => {
      lines += String(b).split("\n").length - 1;
      if (lines >= 3) {
        // What head does after its three lines.
        child.stdout!.destroy();
        resolve();
      }
    });
  });
  const stderr: string[] = [];
  child.stderr!.on("data", (b) => stderr.push(String(b)));
  const code = await Promise.race([exited(child), sleep(10_000).then(() => "still running")]);
  if (code === "still running") child.kill("SIGKILL");
  assert.equal(code, 0, `the host ended with ${String(code)}: ${stderr.join("")}`);
  assert.doesNotMatch(stderr.join(""), /EPIPE|Unhandled/);
  assert.equal(runningPid(hostPaths(env.TSXEN_RUN_DIR).pidFile), undefined, "the lock went");
});

test("tsxen stop says which domains it shuts down and when each is down", async () => {
  const env = envFor();
  const XL = join(ROOT, "dist/tools/xl/xl.cjs");
  const start = spawnSync(process.execPath, [TSXEN, "start"], { env, encoding: "utf8" });
  assert.equal(start.status, 0, start.stderr);
  try {
    const c = spawnSync(
      process.execPath,
      [XL, "create", join(ROOT, "extras/mini-os/examples/xenstore.cfg")],
      { env, encoding: "utf8" },
    );
    assert.equal(c.status, 0, c.stderr);
  } finally {
    const stop = spawnSync(process.execPath, [TSXEN, "stop", "--timeout", "10"], {
      env,
      encoding: "utf8",
    });
    assert.equal(stop.status, 0, stop.stderr);
    assert.match(stop.stdout, /^tsxen: shutting down 1 domain\(s\): xenstore$/m);
    assert.match(stop.stdout, /^tsxen: xenstore \(domain \d+\) is down$/m);
    assert.match(stop.stdout, /^tsxen: host stopped \(pid \d+\)$/m);
  }
});
