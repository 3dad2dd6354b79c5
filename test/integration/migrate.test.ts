/**
 * Live migration between two tsxen hosts on one machine (two run
 * directories), driven as a user drives it: `xl migrate -s <ssh> <domain>
 * <host>` with test/fixtures/ssh-rundir standing in for ssh (its "host" is
 * the other host's run directory). Checks Xen's conversation and messages,
 * the guest running on at the destination with its name, uuid, console and
 * clock, a guest that dirties all its memory all the time (its pages
 * checked by itself and, with --debug, by the receiver), and every failure
 * leaving the guest running on the source and nothing on the destination:
 * a stream cut short, a destination daemon killed mid-stream, a
 * destination that cannot start its copy.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { XsClient } from "../../tools/xenstore/client.js";
import { hostPaths } from "../../tools/rundir.js";
import { channelTalk, newHost, sleep, until } from "../helpers.js";
import { Libxl } from "../../tools/libxl/domain.js";
import { channelPair } from "../../tools/libxl/migrate.js";
import { parseCfg } from "../../tools/libxlu/cfg.js";
import { domainConfig } from "../../tools/libxl/config.js";
import { HVM_DIR } from "../../extras/hvm/build.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const XL = join(ROOT, "dist/tools/xl/xl.cjs");
const TSXEN = join(ROOT, "dist/tools/host/daemon.js");
const SSH = join(ROOT, "test/fixtures/ssh-rundir");
const EXAMPLES = join(ROOT, "extras/mini-os/examples");
const top = mkdtempSync(join(tmpdir(), "tsxen-migrate-"));

interface Run {
  code: number | null;
  out: string;
  err: string;
}

/** A host: its run and log directories, and xl and tsxen against it. */
function host(name: string) {
  const env = {
    ...process.env,
    TSXEN_RUN_DIR: join(top, name, "run"),
    TSXEN_LOG_DIR: join(top, name, "log"),
  };
  const run = (bin: string, args: string[]): Run => {
    const r = spawnSync(process.execPath, [bin, ...args], {
      env,
      cwd: ROOT,
      encoding: "utf8",
      timeout: 60_000,
    });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const xl = (...args: string[]): Run => run(XL, args);
  const ok = (...args: string[]): string => {
    const r = xl(...args);
    assert.equal(r.code, 0, `${name}: xl ${args.join(" ")} failed (${r.code}): ${r.err}`);
    return r.out;
  };
  return {
    env,
    run: env.TSXEN_RUN_DIR,
    xl,
    ok,
    tsxen: (...args: string[]): Run => run(TSXEN, args),
    /** Domain names and states from xl list. */
    domains: (): Map<string, { id: number; state: string }> =>
      new Map(
        ok("list")
          .trimEnd()
          .split("\n")
          .slice(1)
          .map((l) => [
            l.slice(0, 40).trimEnd(),
            { id: Number(l.slice(41, 46)), state: l.slice(63, 69) },
          ]),
      ),
    console: (dom: string): string => {
      const f = join(env.TSXEN_LOG_DIR, "console", `guest-${dom}.log`);
      return existsSync(f) ? readFileSync(f, "utf8") : "";
    },
    freeMemory: (): number => Number(/^free_memory\s+:\s+(\d+)$/m.exec(ok("info"))![1]),
    async xs(path: string): Promise<string | undefined> {
      const c = await XsClient.open(hostPaths(env.TSXEN_RUN_DIR).xenstored);
      try {
        return await c.readString(path);
      } catch {
        return undefined;
      } finally {
        c.close();
      }
    },
    /** The children of a xenstore node ([] if it has none or is missing). */
    async xsDir(path: string): Promise<string[]> {
      const c = await XsClient.open(hostPaths(env.TSXEN_RUN_DIR).xenstored);
      try {
        return await c.directory(path);
      } catch {
        return [];
      } finally {
        c.close();
      }
    },
  };
}
const A = host("a");
const B = host("b");

before(() => {
  for (const h of [A, B]) {
    const r = h.tsxen("start");
    assert.equal(r.code, 0, `tsxen start: ${r.err}`);
  }
});

after(() => {
  for (const h of [A, B]) h.tsxen("stop", "--timeout", "1");
  rmSync(top, { recursive: true, force: true });
});

test("xl migrate moves a ticking guest to another host: Xen's conversation, its name, uuid, xenstore data and clock go with it, nothing stays behind", async () => {
  A.ok("create", join(EXAMPLES, "ticker.cfg"));
  await until(() => A.console("ticker").includes("tick 2"), 10_000, "two ticks on A");
  const idA = A.domains().get("ticker")!.id;
  const uuid = (await A.xs(`/local/domain/${idA}/vm`))!.replace("/vm/", "");
  const freeB = B.freeMemory();
  const r = A.xl("migrate", "-s", SSH, "ticker", B.run);
  assert.equal(r.code, 0, r.err);
  // Xen's messages, from both ends (the receiver's stderr comes through the transport).
  const lines = r.err.trimEnd().split("\n");
  const expected = [
    "migration target: Ready to receive domain.",
    /^Saving to migration stream new xl format \(info 0x3\/0x0\/\d+\)$/,
    /^Loading new save file <incoming migration stream> \(new xl fmt info 0x3\/0x0\/\d+\)$/,
    " Savefile contains xl domain config in JSON format",
    "migration target: Transfer complete, requesting permission to start domain.",
    "migration sender: Target has acknowledged transfer.",
    "migration sender: Giving target permission to start.",
    "migration target: Got permission, starting domain.",
    "migration target: Domain started successsfully.",
    "migration sender: Target reports successful startup.",
    "Migration successful.",
  ];
  for (const want of expected)
    assert.ok(
      lines.some((l) => (typeof want === "string" ? l === want : want.test(l))),
      `'${String(want)}' in:\n${r.err}`,
    );
  assert.ok(
    lines.indexOf("migration sender: Giving target permission to start.") <
      lines.indexOf("migration target: Got permission, starting domain."),
  );
  assert.equal(A.domains().has("ticker"), false, "gone from the source");
  assert.deepEqual([...A.domains().keys()], ["Domain-0"]);
  const onB = B.domains().get("ticker");
  assert.ok(onB, "running on the destination under its name");
  assert.notEqual(onB.state[2], "p");
  assert.equal(await B.xs(`/local/domain/${onB.id}/name`), "ticker");
  assert.equal(await B.xs(`/local/domain/${onB.id}/vm`), `/vm/${uuid}`, "the same uuid");
  // Its clock went on: the next tick comes on time, numbered on.
  await until(() => /tick [4-9] /.test(B.console("ticker")), 10_000, "ticks on B");
  const ticks = [...B.console("ticker").matchAll(/tick (\d+) at (\d+) ms/g)].map((m) => [
    Number(m[1]),
    Number(m[2]),
  ]);
  assert.ok(ticks[0]![0]! >= 3, `B's first tick is ${ticks[0]![0]}, not 1`);
  for (const [n, ms] of ticks)
    assert.ok(Math.abs(ms! - n! * 1000) < 400, `tick ${n} at ${ms} ms: its clock carried over`);
  B.ok("destroy", "ticker");
  await until(() => B.freeMemory() === freeB, 5000, "B's memory back");
});

test("an HVM guest made saveable (nomigrate=0) migrates live: its ticks go on at the destination where they were, its open file too (--debug checks every page); one without nomigrate=0 is refused and runs on", async () => {
  const share = join(top, "share");
  mkdirSync(share, { recursive: true });
  const cfg = (name: string, extra: string): string => {
    const f = join(top, `${name}.cfg`);
    writeFileSync(
      f,
      `name = "${name}"\ntype = "hvm"\nkernel = "${join(HVM_DIR, "counter.wasm")}"\nmemory = 16\nextra = "tick 100000 40 /data/${name}"\np9 = [ "tag=data,security_model=none,path=${share}" ]\n${extra}`,
    );
    return f;
  };
  A.ok("create", cfg("hvmtick", "nomigrate = 0\n"));
  A.ok("create", cfg("hvmplain", ""));
  await until(() => A.console("hvmtick").includes("tick 5 "), 20_000, "five ticks on A");
  const plain = A.xl("migrate", "-s", SSH, "hvmplain", B.run);
  assert.equal(plain.code, 1);
  assert.match(plain.err, /an HVM guest is saved or migrated only with nomigrate=0/);
  assert.ok(A.domains().has("hvmplain"), "the refused guest stays");
  const r = A.xl("migrate", "--debug", "-s", SSH, "hvmtick", B.run);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /xc_domain_save: saving domain \d+ live, type wasm32 HVM/);
  assert.match(r.err, /pages sent with the domain stopped/);
  assert.match(r.err, /Migration successful\./);
  assert.equal(A.domains().has("hvmtick"), false, "gone from the source");
  const ticksOnB = (): number[] =>
    [...B.console("hvmtick").matchAll(/tick (\d+) at/g)].map((m) => Number(m[1]));
  await until(() => ticksOnB().length >= 10, 20_000, "ten ticks on B");
  B.ok("destroy", "hvmtick");
  const onB = ticksOnB();
  const lastOnA = Math.max(
    ...[...A.console("hvmtick").matchAll(/tick (\d+) at/g)].map((m) => Number(m[1])),
  );
  // B goes on from the tick after A's last: none twice, none lost.
  assert.equal(onB[0], lastOnA + 1, `A's last tick ${lastOnA}, B's first ${onB[0]}`);
  assert.deepEqual(
    onB,
    Array.from({ length: onB.length }, (_, i) => onB[0]! + i),
  );
  // The file the program opened on A was written on at its place on B.
  const lines = readFileSync(join(share, "hvmtick"), "utf8").trimEnd().split("\n");
  assert.ok(lines.length >= onB[onB.length - 1]!);
  assert.deepEqual(
    lines,
    Array.from({ length: lines.length }, (_, i) => `tick ${i + 1}`),
  );
  A.ok("destroy", "hvmplain");
});

test("a guest dirtying all its memory all the time migrates: five rounds, then the rest with it stopped, and every page checks out (--debug: the receiver compares them all)", async () => {
  A.ok(
    "create",
    join(EXAMPLES, "spin.cfg"),
    "name='dirtier'",
    `kernel='${join(ROOT, "build/mini-os/dirtier.wasm")}'`,
    "memory=16",
  );
  await until(() => /round \d+/.test(A.console("dirtier")), 10_000, "the dirtier's rounds");
  const r = A.xl("migrate", "--debug", "-s", SSH, "dirtier", B.run);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /Migration successful\./);
  // Every round finds most of its 4,000 pages dirty again: the fifth is the
  // last, and what it found goes with the domain stopped.
  const rounds = [...r.err.matchAll(/xc_domain_save: round (\d+): (\d+) pages dirty/g)];
  assert.deepEqual(
    rounds.map((m) => Number(m[1])),
    [1, 2, 3, 4, 5],
  );
  assert.ok(
    rounds.every((m) => Number(m[2]) > 3000),
    r.err,
  );
  const stopped = Number(/(\d+) pages sent with the domain stopped/.exec(r.err)![1]);
  assert.ok(stopped > 3000, `${stopped} pages in the last round`);
  // --debug: every page again, and the receiver found each as it had it.
  const checked = Number(/VERIFY: (\d+) pages checked, all as sent/.exec(r.err)![1]);
  assert.equal(checked, 16 * 256, "all 16 MiB");
  const before = [...A.console("dirtier").matchAll(/round (\d+)/g)].map((m) => Number(m[1]));
  await until(() => /round \d+/.test(B.console("dirtier")), 10_000, "rounds on B");
  await sleep(600);
  const out = B.console("dirtier");
  assert.doesNotMatch(out, /holds/, "no page came over wrong");
  const after = [...out.matchAll(/round (\d+)/g)].map((m) => Number(m[1]));
  assert.ok(after.length >= 2, out);
  assert.ok(after[0]! > before[before.length - 1]!, "it went on from where it was");
  assert.ok(
    after.every((n, i) => i === 0 || n > after[i - 1]!),
    "rounds go up",
  );
  B.ok("destroy", "dirtier");
});

test("guests with devices migrate: blkbench goes on writing and verifies on the destination (the same image, as shared storage); a networked guest answers pings on the destination's bridge; a channel's agent answers on its socket", async () => {
  const img = join(top, "bb.img");
  spawnSync("truncate", ["-s", "64M", img]);
  A.ok(
    "create",
    join(EXAMPLES, "blkbench.cfg"),
    `disk=["format=raw, vdev=xvda, access=rw, target=${img}"]`,
    'extra="mib=8 passes=3000"',
  );
  await until(() => A.console("blkbench").includes("xvda has"), 10_000, "blkbench's disk");
  await sleep(300);
  const r = A.xl("migrate", "--debug", "-s", SSH, "blkbench", B.run);
  assert.equal(r.code, 0, r.err);
  // Its passes go on at B, then it verifies every sector and powers off.
  await until(
    () => B.console("blkbench").includes("random 4 KiB reads"),
    60_000,
    "blkbench's end on B",
  );
  assert.match(B.console("blkbench"), /verify ok \(8 MiB\)/);
  assert.doesNotMatch(B.console("blkbench") + A.console("blkbench"), /FAILED|failed/);
  await until(() => !B.domains().has("blkbench"), 10_000, "blkbench to power off");

  A.ok("create", join(EXAMPLES, "ping.cfg"), 'name="pong"', 'extra="ip=10.0.0.2"');
  await until(() => A.console("pong").includes("is 10.0.0.2"), 10_000, "pong's address");
  const m = A.xl("migrate", "--debug", "-s", SSH, "pong", B.run);
  assert.equal(m.code, 0, m.err);
  B.ok(
    "create",
    join(EXAMPLES, "ping.cfg"),
    'name="pinger"',
    'extra="ip=10.0.0.3 peer=10.0.0.2 count=3"',
  );
  await until(() => B.console("pinger").includes("packets transmitted"), 20_000, "the pings");
  assert.match(B.console("pinger"), /3 packets transmitted, 3 received, 0% packet loss/);
  B.ok("destroy", "pong");

  // The same server handling suspend: it suspends itself on A, and on B its
  // netfront connects again to a new backend (Xen's way), and it answers.
  A.ok("create", join(EXAMPLES, "ping.cfg"), 'name="pong2"', 'extra="ip=10.0.0.4 suspend"');
  await until(() => A.console("pong2").includes("is 10.0.0.4"), 10_000, "pong2's address");
  const m2 = A.xl("migrate", "-s", SSH, "pong2", B.run);
  assert.equal(m2.code, 0, m2.err);
  assert.match(m2.err, /guest acknowledged suspend request/);
  // Its resume (the vif connected again) is the guest's, after the migration.
  await until(
    () => B.console("pong2").includes("resumed (suspend returned 0)"),
    20_000,
    "pong2's resume on B",
  );
  B.ok(
    "create",
    join(EXAMPLES, "ping.cfg"),
    'name="pinger2"',
    'extra="ip=10.0.0.5 peer=10.0.0.4 count=3"',
  );
  await until(() => B.console("pinger2").includes("packets transmitted"), 20_000, "the pings");
  assert.match(B.console("pinger2"), /3 packets transmitted, 3 received, 0% packet loss/);
  B.ok("destroy", "pong2");

  // A guest agent on a PV channel: its socket is served from B once it is there.
  const sock = join(top, "agent.sock");
  A.ok(
    "create",
    join(EXAMPLES, "channel-echo.cfg"),
    `channel=["name=org.tsxen.echo,connection=socket,path=${sock}"]`,
  );
  const talk = (line: string): Promise<string> => channelTalk(sock, line);
  await until(() => existsSync(sock), 10_000, "the channel's socket");
  assert.equal(await talk("on a"), "echo: ON A\n");
  const c = A.xl("migrate", "--debug", "-s", SSH, "channel-echo", B.run);
  assert.equal(c.code, 0, c.err);
  assert.equal(await talk("on b"), "echo: ON B\n");
  assert.ok(B.domains().has("channel-echo") && !A.domains().has("channel-echo"));
  B.ok("destroy", "channel-echo");
});

test("a guest's xenstore watches go with it: xl mem-set and shutdown on the destination reach it (a guest that handles suspend suspends itself, as Xen asks every PV guest it migrates, and sets its watches again)", async () => {
  A.ok("create", join(EXAMPLES, "xenstore.cfg"));
  await until(() => A.console("xenstore").includes("memory/target is"), 10_000, "its watches");
  const r = A.xl("migrate", "--debug", "-s", SSH, "xenstore", B.run);
  assert.equal(r.code, 0, r.err);
  // Xen's messages of the suspend, from the sender.
  assert.match(r.err, /issuing PV suspend request via XenBus control node/);
  assert.match(r.err, /guest acknowledged suspend request/);
  B.ok("mem-set", "xenstore", "3m");
  await until(
    () => B.console("xenstore").includes("memory/target is 3072 KiB"),
    10_000,
    "mem-set on B",
  );
  B.ok("shutdown", "-w", "xenstore");
  assert.match(B.console("xenstore"), /control\/shutdown says 'poweroff'/);
});

test("a stream cut mid-way, or a destination daemon killed mid-stream, leaves the guest running on the source and nothing on the destination", async () => {
  A.ok(
    "create",
    join(EXAMPLES, "spin.cfg"),
    "name='dirtier'",
    `kernel='${join(ROOT, "build/mini-os/dirtier.wasm")}'`,
    "memory=64",
  );
  await until(() => /round \d+/.test(A.console("dirtier")), 10_000, "the dirtier's rounds");
  const freeB = B.freeMemory();
  // -s "": the host is the whole command (Xen's rune); this one passes the
  // first 3 MB of the stream and then ends it.
  const cut = A.xl(
    "migrate",
    "-s",
    "",
    "dirtier",
    `head -c 3000000 | ${SSH} ${B.run} xl migrate-receive`,
  );
  assert.equal(cut.code, 1, cut.err);
  assert.match(cut.err, /Migration failed, resuming at sender\./);
  assert.match(cut.err, /migration target: Domain creation failed/);
  const onA = A.domains().get("dirtier");
  assert.ok(onA, "still on the source, under its name");
  assert.notEqual(onA.state[2], "p", "and running");
  const n0 = (A.console("dirtier").match(/round/g) ?? []).length;
  await until(
    () => (A.console("dirtier").match(/round/g) ?? []).length > n0,
    5000,
    "more rounds on A",
  );
  assert.deepEqual([...B.domains().keys()], ["Domain-0"], "nothing on the destination");
  // Nor in its xenstore: the receiver wrote the domain's home and /vm as
  // the pages began to come, and took them away.
  assert.deepEqual(await B.xsDir("/local/domain"), ["0"], "no home left on B");
  assert.deepEqual(await B.xsDir("/vm"), [], "no /vm left on B");
  assert.deepEqual(await B.xsDir("/libxl"), [], "no /libxl record left on B");
  await until(() => B.freeMemory() === freeB, 5000, "B's memory back");

  // The destination's daemon dies while the pages go.
  const pid = Number(readFileSync(hostPaths(B.run).pidFile, "utf8").split(" ")[0]);
  const mig = spawn(process.execPath, [XL, "migrate", "-s", SSH, "dirtier", B.run], {
    env: A.env,
    cwd: ROOT,
  });
  let err = "";
  mig.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = new Promise<number | null>((res) => mig.once("exit", (c) => res(c)));
  await until(() => err.includes("Saving to migration stream"), 10_000, "the stream to start");
  process.kill(pid, "SIGKILL");
  assert.equal(await code, 1, err);
  assert.match(err, /Migration failed, resuming at sender\./);
  const still = A.domains().get("dirtier");
  assert.ok(still && still.state[2] !== "p", "the guest runs on at the source");
  assert.doesNotMatch(A.console("dirtier"), /holds/);
  A.ok("destroy", "dirtier");
  // B comes back for the other tests.
  rmSync(hostPaths(B.run).pidFile, { force: true });
  const r = B.tsxen("start");
  assert.equal(r.code, 0, r.err);
});

test("a destination that cannot start its copy (the name is taken there) gives the guest back: the source resumes it", async () => {
  A.ok("create", join(EXAMPLES, "ticker.cfg"));
  B.ok("create", join(EXAMPLES, "ticker.cfg"));
  await until(() => A.console("ticker").includes("tick"), 10_000, "A's ticker");
  const r = A.xl("migrate", "-s", SSH, "ticker", B.run);
  assert.equal(r.code, 1, r.err);
  for (const line of [
    "migration sender: Giving target permission to start.",
    "migration target: Failure, destroying our copy.",
    "migration target: Cleanup OK, granting sender permission to resume.",
    "migration sender: Target reports startup failure (status code 3).",
    "migration sender: Trying to resume at our end.",
    "migration sender: Resumed OK.",
    "Migration failed due to problems at target.",
  ])
    assert.ok(r.err.includes(line), `'${line}' in:\n${r.err}`);
  const onA = A.domains().get("ticker");
  assert.ok(onA && onA.state[2] !== "p", "running again on the source, under its name");
  assert.deepEqual([...B.domains().keys()].sort(), ["Domain-0", "ticker"], "B's own ticker only");
  const ticks = (A.console("ticker").match(/tick/g) ?? []).length;
  await until(() => (A.console("ticker").match(/tick/g) ?? []).length > ticks, 5000, "A ticks on");
  A.ok("destroy", "ticker");
  B.ok("destroy", "ticker");
});

test("what cannot migrate is refused before anything moves, with the reason", () => {
  A.ok("create", join(EXAMPLES, "ticker.cfg"));
  const bad = A.xl("migrate", "--max-iters", "0", "-s", SSH, "ticker", B.run);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /--max-iters must be a whole number of at least 1, not '0'/);
  const missing = A.xl("migrate", "-s", SSH, "nosuch", B.run);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /nosuch is an invalid domain identifier/);
  // A transport that cannot run: the banner never comes.
  const nossh = A.xl("migrate", "-s", "/nonexistent/ssh", "ticker", B.run);
  assert.equal(nossh.code, 1);
  assert.match(nossh.err, /migration receiver stream.*banner/);
  assert.ok(A.domains().get("ticker"), "the guest stays");
  assert.notEqual(A.domains().get("ticker")!.state[2], "p");
  A.ok("destroy", "ticker");
});

test("a guest whose watches change while its pages go is not moved: the migration fails and it runs on at the source (two hosts in one process)", async () => {
  const [ha, hb] = [newHost(), newHost()];
  try {
    const [xa, xb] = [new Libxl(ha), new Libxl(hb)];
    const f = join(EXAMPLES, "xenstore.cfg");
    const cfg = {
      ...domainConfig(parseCfg(readFileSync(f, "utf8"), f), f, EXAMPLES).config,
      memory: 64,
      maxmem: 64,
      // Paused where it is, its watches carried by xenstored: what the guard checks.
      cmdline: "no-suspend",
    };
    const d = await xa.create(cfg);
    await until(() => ha.xenconsoled.read(d.domid).includes("memory/target is"), 5000, "watches");
    const lines: string[] = [];
    const [cs, cr] = channelPair((l) => lines.push(l));
    // Once the pages have begun to go, the guest (as xenstored sees it) sets one more watch.
    const orig = cs.write.bind(cs);
    let added = false;
    cs.write = async (chunks) => {
      if (!added && cs.offset >= 0 && chunks.length > 100) {
        added = true;
        const c = ha.xenstored.domains.get(d.domid)!.connection!;
        ha.xenstored.watches.add({
          owner: c,
          path: `/local/domain/${d.domid}/data`,
          token: "late",
          relative: false,
          depth: undefined,
        });
      }
      return orig(chunks);
    };
    const opts = { debug: false, maxIters: 5, minRemaining: 50 };
    const [sent, received] = await Promise.allSettled([
      xa.migrateSend(d.domid, cs, opts).finally(() => cs.end()),
      xb.migrateReceive(cr, { paused: false, debug: false }).finally(() => cr.end()),
    ]);
    assert.ok(added, "the watch came mid-migration");
    assert.equal(sent.status, "rejected");
    assert.match(
      String((sent as PromiseRejectedResult).reason),
      /Migration failed, resuming at sender/,
    );
    assert.ok(
      lines.some((l) => /xenstore watches changed while it was being migrated/.test(l)),
      lines.join("\n"),
    );
    assert.equal(received.status, "rejected");
    const still = ha.hv.domainById(d.domid)!;
    assert.equal(still.isShutdown || still.isDying, false);
    assert.equal(still.pauseCount, 0, "running again");
    assert.deepEqual([...hb.hv.domains.keys()], [], "nothing on the destination");
  } finally {
    await ha.shutdown();
    await hb.shutdown();
  }
});
