/**
 * xl save and restore (#18; docs/save-format.md): a PV guest saved to a file
 * in Xen's format and restored into a new domain runs on exactly where it
 * was (the ticker's ticks go on in rhythm, not from 1); a checkpoint leaves
 * the guest running; files that are truncated, corrupt or not save files
 * at all are refused naming what and where, and leave nothing behind; a
 * FIFO or a directory as the file is refused without blocking.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { connect } from "node:net";
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../../extras/mini-os/paths.js";
import { parseCfg } from "../../tools/libxlu/cfg.js";
import { domainConfig, type XlDomainConfig } from "../../tools/libxl/config.js";
import { Libxl } from "../../tools/libxl/domain.js";
import { SAVEFILE_MAGIC } from "../../tools/libxl/save.js";
import { start_info } from "../../xen/include/public/arch-wasm32.js";
import type { Domain } from "../../xen/common/domain.js";
import type { Host } from "../../tools/host/host.js";
import { accountedFrames, channelTalk, grantAccess, newHost, sleep, until } from "../helpers.js";

const EX = join(ROOT, "extras", "mini-os", "examples");

function cfg(name: string, extra = ""): XlDomainConfig {
  const f = join(EX, `${name}.cfg`);
  return domainConfig(parseCfg(readFileSync(f, "utf8") + extra, f), f, EX).config;
}

/**
 * The xenstore example (`extra` added to its config), once its watches are
 * set: its memory/target watch has fired once.
 */
async function xenstoreGuest(host: Host, xl: Libxl, extra = ""): Promise<Domain> {
  const d = await xl.create(cfg("xenstore", extra));
  await until(
    () => host.xenconsoled.read(d.domid).includes("memory/target is"),
    5000,
    "the guest's watches",
  );
  return d;
}

/** The config JSON of save file `bytes` (xl's optional data). */
function configJsonOf(bytes: Buffer): Record<string, unknown> {
  const cfgLen = bytes.readUInt32LE(48);
  return JSON.parse(
    bytes
      .subarray(52, 52 + cfgLen)
      .toString()
      .replace(/\0$/, ""),
  ) as Record<string, unknown>;
}

/** Save file `bytes` with its config JSON changed by `edit`. */
function withConfigJson(bytes: Buffer, edit: (j: Record<string, unknown>) => void): Buffer {
  const optLen = bytes.readUInt32LE(44);
  const json = configJsonOf(bytes);
  edit(json);
  const text = Buffer.from(`${JSON.stringify(json)}\0`);
  const opt = Buffer.alloc(4 + text.length);
  opt.writeUInt32LE(text.length, 0);
  text.copy(opt, 4);
  const head = Buffer.from(bytes.subarray(0, 48));
  head.writeUInt32LE(opt.length, 44);
  return Buffer.concat([head, opt, bytes.subarray(48 + optLen)]);
}

test("a saved ticker is restored into a new domain and ticks on in rhythm", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-save-"));
  try {
    const xl = new Libxl(host);
    const d = await xl.create(cfg("ticker"));
    await until(() => host.xenconsoled.read(d.domid).includes("tick 2"), 5000, "two ticks");
    const file = join(dir, "ticker.save");
    const log: string[] = [];
    const size = await xl.save(d.domid, file, { log: (l) => log.push(l) });
    assert.equal(statSync(file).size, size);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.ok(readFileSync(file).subarray(0, 32).equals(SAVEFILE_MAGIC), "xl's magic");
    assert.match(log.join("\n"), /Saving to .* new xl format \(info 0x3\/0x0\/\d+\)/);
    assert.equal(host.hv.domains.size, 0, "saved and destroyed");

    const rlog: string[] = [];
    const r = await xl.restore(file, { log: (l) => rlog.push(l) });
    assert.notEqual(r.domid, d.domid);
    assert.match(rlog.join("\n"), /Loading new save file .* \(new xl fmt info 0x3\/0x0\/\d+\)/);
    assert.match(rlog.join("\n"), /xc: info: Restore successful/);
    await until(
      () => host.xenconsoled.read(r.domid).includes("tick 4"),
      6000,
      "ticks after restore",
    );
    const out = host.xenconsoled.read(r.domid);
    assert.doesNotMatch(out, /tick 1 /, "it did not boot again");
    const at = Number(/tick 3 at (\d+) ms/.exec(out)?.[1]);
    assert.ok(
      at >= 2900 && at < 3500,
      `tick 3 at ${at} ms: the guest's clock and timer carried on`,
    );
    assert.match(out, new RegExp(`ticker d${r.domid}: tick 3`), "it reads its new domid");
    assert.equal(host.xenstored.readText(`/local/domain/${r.domid}/name`), "ticker");
    assert.equal(xl.listLong([r.domid]).length > 0, true);
    assert.equal(accountedFrames(host), host.hv.frames.totalFrames);
  } finally {
    await host.shutdown();
  }
});

test("a guest using FIFO event channels is saved and restored: its control block, event array and queues come along, and its timer's events go on arriving", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-save-"));
  try {
    const xl = new Libxl(host);
    const d = await xl.create(cfg("ticker", 'extra = "fifo"\nname = "fifo-ticker"\n'));
    await until(() => host.xenconsoled.read(d.domid).includes("tick 2 "), 5000, "two ticks");
    assert.ok(d.evtchn.fifo, "the guest switched to FIFO");
    assert.doesNotMatch(host.xenconsoled.read(d.domid), /no FIFO events/);
    const file = join(dir, "fifo.save");
    await xl.save(d.domid, file);
    const r = await xl.restore(file);
    assert.ok(r.evtchn.fifo, "FIFO again in the new domain");
    await until(() => host.xenconsoled.read(r.domid).includes("tick 4 "), 6000, "ticks after");
    assert.doesNotMatch(host.xenconsoled.read(r.domid), /tick 1 /, "it did not boot again");
    // A file whose FIFO state names memory the domain does not have is refused.
    const bytes = readFileSync(file);
    const magic = bytes.indexOf(Buffer.from("W32C"));
    const ctxLen = bytes.readUInt32LE(magic - 4);
    const end = magic + ctxLen;
    // The FIFO section ends the context: the array pages (u64 each), each
    // vCPU's control block and 16 tails, the pending ports. Its last array
    // page is made to point past the domain's memory.
    const bad = Buffer.from(bytes);
    const n = bad.readUInt32LE(end - 4);
    const fifoAt = end - 4 - n * 4 - d.vcpus.length * (8 + 64);
    assert.equal(bad.readUInt32LE(fifoAt - 12), 1, "mini-os's FIFO has one event array page");
    bad.writeBigInt64LE(0x7fff0000n, fifoAt - 8);
    writeFileSync(join(dir, "badfifo.save"), bad);
    xl.destroy(r.domid);
    await assert.rejects(
      xl.restore(join(dir, "badfifo.save")),
      /xc_wasm32_setcontext\(\d+\) failed: Invalid argument/,
    );
    // The hypervisor says why on its console (xl dmesg).
    assert.match(host.hv.console.read(), /FIFO event channels: an event array page at 0x7fff0000/);
    assert.equal(host.hv.domains.size, 0, "nothing left");
  } finally {
    await host.shutdown();
  }
});

test("save -c leaves the guest running; a restore of its checkpoint needs the name free", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-save-"));
  try {
    const xl = new Libxl(host);
    const d = await xl.create(cfg("spin"));
    await until(() => d.vcpus[0]!.cpuTimeNs > 30e6, 5000, "spinning");
    const file = join(dir, "spin.save");
    await xl.save(d.domid, file, { checkpoint: true });
    assert.equal(d.isShutdown || d.isDying, false);
    assert.equal(d.pauseCount, 0, "running again");
    await assert.rejects(xl.restore(file), /domain with name 'spin' already exists/);
    xl.destroy(d.domid);
    const r = await xl.restore(file, { paused: true });
    assert.equal(r.runState, "paused", "-p");
    const t = r.vcpus[0]!.cpuTimeNs;
    host.unpause(r.domid);
    await until(() => r.vcpus[0]!.cpuTimeNs > t + 30e6, 5000, "spinning on");
    assert.equal(r.isShutdown, false);
  } finally {
    await host.shutdown();
  }
});

test("a guest doing disk I/O is saved mid-run and restored: blkback attaches to its ring where it was, and its data verifies; a checkpointed guest's vif goes on answering", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-save-"));
  try {
    const xl = new Libxl(host);
    const img = join(dir, "bb.img");
    writeFileSync(img, Buffer.alloc(0));
    execFileSync("truncate", ["-s", "64M", img]);
    const disk = `format=raw, vdev=xvda, access=rw, target=${img}`;
    const d = await xl.create(cfg("blkbench", `\ndisk=["${disk}"]\nextra="mib=8 passes=100000"\n`));
    // Mid-run: writing and reading its 8 MiB over and over.
    const writesOf = (domid: number): number =>
      (host.vbd.list().find((x) => x.frontendId === domid)?.stats as { writes: number } | undefined)
        ?.writes ?? 0;
    await until(() => writesOf(d.domid) > 200, 10_000, "blkbench's writes");
    const file = join(dir, "bb.save");
    const log: string[] = [];
    await xl.save(d.domid, file, { log: (l) => log.push(l) });
    assert.equal(host.hv.domains.has(d.domid), false);
    const saved = JSON.parse(
      readFileSync(file)
        .subarray(52, 48 + readFileSync(file).readUInt32LE(44))
        .toString()
        .replace(/\0$/, ""),
    ) as { tsxen_frontends: Record<string, Record<string, string>> };
    const front = saved.tsxen_frontends["vbd/51712"]!;
    assert.equal(front.state, "4", "saved connected");
    assert.match(front["ring-ref"] ?? "", /^\d+$/);
    const r = await xl.restore(file);
    // It goes on where it was: its ring is the one it had, its writes go on.
    await until(() => writesOf(r.domid) > 50, 10_000, "writes after the restore");
    const { backend } = { backend: `/local/domain/0/backend/vbd/${r.domid}/51712` };
    assert.equal(host.xenstored.readText(`${backend}/state`), "4");
    assert.equal(
      host.xenstored.readText(`/local/domain/${r.domid}/device/vbd/51712/ring-ref`),
      front["ring-ref"],
      "the same ring",
    );
    assert.equal(
      host.xenstored.readText(`/local/domain/${r.domid}/device/vbd/51712/backend`),
      backend,
      "its backend's path is the new domain's",
    );
    // Cut the run short: a guest that reads back what it wrote, a verify-only blkbench.
    xl.destroy(r.domid);
    const v = await xl.create({
      ...cfg("blkbench", `\ndisk=["${disk}"]\nextra="mib=8 verify"\n`),
      name: "verify",
    });
    await host.waitShutdown(v.domid, 20_000);
    assert.match(host.xenconsoled.read(v.domid), /verify ok \(8 MiB\)/);

    // A networked guest checkpointed (-c): its vif is detached for the save
    // and attached again, and it answers pings.
    const pong = await xl.create(
      cfg("ping", `\nname="pong"\nextra="ip=10.0.0.2"\non_poweroff="preserve"\n`),
    );
    await until(
      () => host.xenconsoled.read(pong.domid).includes("is 10.0.0.2"),
      5000,
      "pong's address",
    );
    await xl.save(pong.domid, join(dir, "pong.save"), { checkpoint: true });
    // A pinger on the bridge gets its 3 answers from 10.0.0.2.
    const threePings = async (name: string, ip: string): Promise<void> => {
      const extra = `\nname="${name}"\nextra="ip=${ip} peer=10.0.0.2 count=3"\non_poweroff="preserve"\n`;
      const ping = await xl.create(cfg("ping", extra));
      await host.waitShutdown(ping.domid, 20_000);
      assert.match(host.xenconsoled.read(ping.domid), /3 packets transmitted, 3 received/);
    };
    await threePings("pinger", "10.0.0.1");
    // A peer pinging all along (one ping after another) while the server is
    // saved and restored: a ping or two go unanswered while it is away (each
    // waits 2 s), then it answers again, to the last.
    const n = 5000;
    const peer = await xl.create(
      cfg(
        "ping",
        `\nname="pinger2"\nextra="ip=10.0.0.3 peer=10.0.0.2 count=${n}"\non_poweroff="preserve"\non_crash="preserve"\n`,
      ),
    );
    const out = (): string => host.xenconsoled.read(peer.domid);
    await until(() => (out().match(/64 bytes from/g) ?? []).length >= 100, 10_000, "replies");
    await xl.save(pong.domid, join(dir, "pong2.save"));
    await xl.restore(join(dir, "pong2.save"));
    assert.equal(peer.isShutdown, false, "the peer was pinging all along");
    await until(() => out().includes("packets transmitted"), 60_000, "the peer's statistics");
    // (The console keeps the last lines: the statistics at the end count all.)
    const stats = new RegExp(`${n} packets transmitted, (\\d+) received`).exec(out());
    assert.ok(stats, out().slice(-400));
    const lost = n - Number(stats[1]);
    assert.ok(lost <= 3, `${lost} pings unanswered`);
    assert.match(out(), new RegExp(`icmp_seq=${n} ttl=64`), "the last is answered");
    // The restored server still holds its backend's path from before, which
    // names its old domid. A watch event that changes nothing (its backend's
    // state written again) has it look: it follows the path the toolstack
    // wrote afresh, finds the vif connected and answers on; an unplug there
    // it follows.
    const moved = [...host.hv.domains.values()].find((x) => x.name === "pong")!;
    assert.notEqual(moved.domid, pong.domid);
    host.xenstored.writeText(`/local/domain/0/backend/vif/${moved.domid}/0/state`, "4");
    await threePings("pinger3", "10.0.0.4");
    assert.equal(moved.isShutdown, false);
    const unplug = xl.removeNic(moved.domid, 0);
    assert.equal(await host.waitShutdown(moved.domid), "poweroff");
    await unplug;
    assert.match(host.xenconsoled.read(moved.domid), /the vif was unplugged; powering off/);
  } finally {
    await host.shutdown();
  }
});

test("a guest's xenstore watches come back with it: sysrq, mem-set and a shutdown request reach the restored guest", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-save-"));
  try {
    const xl = new Libxl(host);
    // A guest that does not say it handles suspend: paused where it is.
    const d = await xenstoreGuest(host, xl, '\nextra="no-suspend"\n');
    const file = join(dir, "xs.save");
    await xl.save(d.domid, file);
    const r = await xl.restore(file);
    const out = (): string => host.xenconsoled.read(r.domid);
    // The guest never registers them again: xenstored holds them for it.
    xl.sendSysrq(r.domid, "h");
    await until(() => out().includes("sysrq 'h'"), 5000, "the sysrq watch");
    xl.setMemoryTarget(r.domid, 3);
    await until(() => out().includes("memory/target is 3072 KiB"), 5000, "the balloon watch");
    assert.equal(await xl.shutdown(r.domid, "poweroff", 10_000), "poweroff");
    assert.match(out(), /control\/shutdown says 'poweroff'/);
  } finally {
    await host.shutdown();
  }
});

test("a guest that handles suspend is saved as Xen saves a PV guest: it suspends itself, and in the new domain its suspend returns 0 and it binds its rings and sets its watches again", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-save-"));
  try {
    const xl = new Libxl(host);
    const d = await xenstoreGuest(host, xl);
    assert.equal(host.xenstored.readText(`/local/domain/${d.domid}/control/feature-suspend`), "1");
    const storePortOf = (x: typeof d): number =>
      x.mem.u32(x.startInfoAddr() + start_info.fields.store_evtchn.offset);
    const storePort = storePortOf(d);
    const log: string[] = [];
    const file = join(dir, "xs.save");
    // A checkpoint first: the guest suspends, and resumes in the same domain (1).
    await xl.save(d.domid, file, { checkpoint: true, log: (l) => log.push(l) });
    assert.deepEqual(
      log.filter((l) => l.includes("libxl_dom_suspend")),
      [
        `libxl: debug: libxl_dom_suspend.c: Domain ${d.domid}:issuing PV suspend request via XenBus control node`,
        `libxl: debug: libxl_dom_suspend.c: Domain ${d.domid}:guest acknowledged suspend request`,
      ],
    );
    await until(
      () => host.xenconsoled.read(d.domid).includes("resumed (suspend returned 1)"),
      5000,
      "the checkpointed guest to run on",
    );
    // Neither its ports nor its watches are in the file: it makes them again.
    assert.deepEqual(configJsonOf(readFileSync(file)).tsxen_watches, []);
    xl.destroy(d.domid);

    const r = await xl.restore(file);
    const out = (): string => host.xenconsoled.read(r.domid);
    await until(() => out().includes("resumed (suspend returned 0)"), 5000, "the resume");
    assert.match(
      out(),
      /mini-os: resumed in a new domain: console and xenstore reconnected, 3 watches set again/,
    );
    // Its xenstore port is a new one, which start_info gave it, and the
    // only ports it has are the ones it bound again.
    const newPort = storePortOf(r);
    assert.ok(storePort > 0 && newPort > 0);
    assert.equal(host.xenstored.readText(`/local/domain/${r.domid}/store/port`), String(newPort));
    // The watches it set again work, as the console does.
    xl.sendSysrq(r.domid, "h");
    await until(() => out().includes("sysrq 'h'"), 5000, "the sysrq watch");
    xl.setMemoryTarget(r.domid, 3);
    await until(() => out().includes("memory/target is 3072 KiB"), 5000, "the balloon watch");
    assert.equal(await xl.shutdown(r.domid, "poweroff", 10_000), "poweroff");

    // One that says it handles suspend and does not answer is not saved:
    // Xen's message, and it runs on.
    const t = await xl.create(cfg("ticker"));
    host.xenstored.writeText(`/local/domain/${t.domid}/control/feature-suspend`, "1");
    await assert.rejects(
      xl.save(t.domid, join(dir, "t.save"), { ackTimeoutMs: 300 }),
      new RegExp(`libxl: Domain ${t.domid}:guest didn't acknowledge suspend, cancelling request`),
    );
    assert.equal(t.pauseCount, 0, "still running");
    assert.equal(t.isShutdown, false);
    assert.equal(host.xenstored.readText(`/local/domain/${t.domid}/control/shutdown`), "");
    // One that acknowledges (here Dom0 clears the request for it) and then
    // does not suspend: Xen's other message, and it runs on too.
    const ack = setInterval(() => {
      const p = `/local/domain/${t.domid}/control/shutdown`;
      if (host.xenstored.readText(p) === "suspend") host.xenstored.writeText(p, "");
    }, 5);
    try {
      await assert.rejects(
        xl.save(t.domid, join(dir, "t.save"), { ackTimeoutMs: 2000, suspendTimeoutMs: 300 }),
        new RegExp(`libxl: Domain ${t.domid}:guest did not suspend, timed out`),
      );
    } finally {
      clearInterval(ack);
    }
    assert.equal(t.pauseCount, 0, "still running");
    assert.equal(t.isShutdown, false);
    assert.equal(existsSync(join(dir, "t.save")), false, "no file");
  } finally {
    await host.shutdown();
  }
});

test("a guest on FIFO event channels that handles suspend is saved as Xen saves one: its new domain starts on the 2-level ABI, and it sets FIFO up again before it binds its rings", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-save-"));
  try {
    const xl = new Libxl(host);
    const d = await xenstoreGuest(host, xl, 'extra = "fifo"\nname = "fifo-xs"\n');
    assert.ok(d.evtchn.fifo, "the guest switched to FIFO");
    const file = join(dir, "fifo-xs.save");
    // A checkpoint: it suspends and runs on in the same domain, FIFO as it was.
    await xl.save(d.domid, file, { checkpoint: true });
    await until(
      () => host.xenconsoled.read(d.domid).includes("resumed (suspend returned 1)"),
      5000,
      "the checkpointed guest to run on",
    );
    assert.ok(d.evtchn.fifo);
    xl.sendSysrq(d.domid, "a");
    await until(() => host.xenconsoled.read(d.domid).includes("sysrq 'a'"), 5000, "its watch");
    xl.destroy(d.domid);

    const r = await xl.restore(file);
    const out = (): string => host.xenconsoled.read(r.domid);
    await until(() => out().includes("resumed (suspend returned 0)"), 5000, "the resume");
    assert.match(out(), /console and xenstore reconnected, 3 watches set again/);
    assert.doesNotMatch(out(), /could not be set up again/);
    assert.ok(r.evtchn.fifo, "FIFO again, set up by the guest in its new domain");
    // Its events come through FIFO: the watches it set again fire.
    xl.sendSysrq(r.domid, "b");
    await until(() => out().includes("sysrq 'b'"), 5000, "the sysrq watch");
    xl.setMemoryTarget(r.domid, 3);
    await until(() => out().includes("memory/target is 3072 KiB"), 5000, "the balloon watch");
    assert.equal(await xl.shutdown(r.domid, "poweroff", 10_000), "poweroff");
  } finally {
    await host.shutdown();
  }
});

test("a guest agent on a PV channel is saved and restored: its socket is there again at its path, and it answers", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-save-"));
  try {
    const xl = new Libxl(host);
    const sock = join(dir, "c.sock");
    const c = await xl.create(
      cfg("channel-echo", `\nchannel=["name=org.tsxen.echo,connection=socket,path=${sock}"]\n`),
    );
    const talk = (line: string): Promise<string> => channelTalk(sock, line);
    await until(() => existsSync(sock), 5000, "the channel's socket");
    assert.equal(await talk("before"), "echo: BEFORE\n");
    // One client at a time: a second waits, unread, until the first goes.
    const first = connect(sock);
    await new Promise((r) => first.once("connect", r));
    await sleep(50);
    const waiting = talk("queued");
    await sleep(200);
    first.destroy();
    assert.equal(await waiting, "echo: QUEUED\n");
    const file = join(dir, "c.save");
    await xl.save(c.domid, file);
    assert.equal(host.hv.domains.has(c.domid), false);
    const r = await xl.restore(file);
    assert.equal(
      host.xenstored.readText(`/local/domain/0/backend/console/${r.domid}/1/state`),
      "4",
      "the channel's backend attached to the saved ring",
    );
    assert.equal(await talk("after"), "echo: AFTER\n");
    // A checkpoint keeps it serving where it is.
    await xl.save(r.domid, join(dir, "c2.save"), { checkpoint: true });
    assert.equal(await talk("still"), "echo: STILL\n");
    // Its copy (under another name) cannot take the path while the
    // original listens there: the restore fails naming it, nothing is left.
    xl.rename(r.domid, "original");
    const before = [...host.hv.domains.keys()];
    await assert.rejects(xl.restore(join(dir, "c2.save")), (e: Error) => {
      assert.match(e.message, /channel 'org\.tsxen\.echo'/);
      return true;
    });
    assert.deepEqual([...host.hv.domains.keys()], before, "nothing left");
    assert.equal(await talk("last"), "echo: LAST\n");
  } finally {
    await host.shutdown();
  }
});

test("guests with a disk or a vif that handle suspend connect their frontends again in the new domain, as Xen's do: the disk's data is all there and its writes go on, the vif answers pings, a PV channel's agent answers on its socket", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-save-"));
  try {
    const xl = new Libxl(host);
    const img = join(dir, "d.img");
    execFileSync("truncate", ["-s", "8M", img]);
    const f = join(EX, "spin.cfg");
    const text = [
      `name="suspender"`,
      `kernel="${join(ROOT, "build/mini-os/suspender.wasm")}"`,
      `memory=8`,
      `disk=["format=raw, vdev=xvda, access=rw, target=${img}"]`,
    ].join("\n");
    const d = await xl.create(domainConfig(parseCfg(text, f), f, EX).config);
    await until(() => host.xenconsoled.read(d.domid).includes("round 100"), 10_000, "its rounds");
    const file = join(dir, "s.save");
    await xl.save(d.domid, file);
    assert.equal(host.hv.domains.has(d.domid), false);
    assert.deepEqual(configJsonOf(readFileSync(file)).tsxen_frontends, {}, "no ring carried");
    const r = await xl.restore(file);
    const out = (): string => host.xenconsoled.read(r.domid);
    await until(() => out().includes("sectors hold"), 10_000, "its check after the resume");
    assert.match(
      out(),
      /resumed \(suspend returned 0\)\r?\nsuspender: 64 sectors hold what was written/,
    );
    // The device was made afresh and the guest went through the handshake again.
    const back = `/local/domain/0/backend/vbd/${r.domid}/51712`;
    assert.equal(host.xenstored.readText(`${back}/state`), "4");
    assert.equal(host.xenstored.readText(`/local/domain/${r.domid}/device/vbd/51712/state`), "4");
    const n = (out().match(/round \d+/g) ?? []).length;
    await until(() => (out().match(/round \d+/g) ?? []).length > n, 10_000, "more rounds");
    xl.destroy(r.domid);

    // A ping server that handles suspend connects its vif again: a pinger
    // on the bridge gets its answers from the new domain.
    const pong = await xl.create({
      ...cfg("ping", '\nextra="ip=10.0.0.2 suspend"\n'),
      name: "pong",
    });
    // It says it handles suspend once it serves (it has its address before).
    await until(
      () => host.xenstored.readText(`/local/domain/${pong.domid}/control/feature-suspend`) === "1",
      10_000,
      "pong's control/feature-suspend",
    );
    const plog: string[] = [];
    await xl.save(pong.domid, join(dir, "p.save"), { log: (l) => plog.push(l) });
    assert.match(plog.join("\n"), /guest acknowledged suspend request/);
    const p2 = await xl.restore(join(dir, "p.save"));
    await until(
      () => host.xenconsoled.read(p2.domid).includes("resumed (suspend returned 0)"),
      10_000,
      "pong's resume",
    );
    const pinger = await xl.create(
      cfg(
        "ping",
        '\nname="pinger"\nextra="ip=10.0.0.3 peer=10.0.0.2 count=3"\non_poweroff="preserve"\n',
      ),
    );
    const pings = (): string => host.xenconsoled.read(pinger.domid);
    await until(() => pings().includes("packets transmitted"), 20_000, "the pings");
    assert.match(pings(), /3 packets transmitted, 3 received, 0% packet loss/);

    // A guest agent on a PV channel that handles suspend: in the new domain
    // its channel connects again (a new port, the same ring) and it answers
    // on the same socket.
    const sock = join(dir, "c.sock");
    const c = await xl.create(
      cfg(
        "channel-echo",
        `\nchannel=["name=org.tsxen.echo,connection=socket,path=${sock}"]\nextra="suspend"\n`,
      ),
    );
    await until(() => existsSync(sock), 10_000, "the channel's socket");
    assert.equal(await channelTalk(sock, "before"), "echo: BEFORE\n");
    const clog: string[] = [];
    await xl.save(c.domid, join(dir, "c.save"), { log: (l) => clog.push(l) });
    assert.match(clog.join("\n"), /guest acknowledged suspend request/);
    const rc = await xl.restore(join(dir, "c.save"));
    await until(
      () => host.xenconsoled.read(rc.domid).includes("resumed (suspend returned 0)"),
      10_000,
      "its resume",
    );
    assert.equal(await channelTalk(sock, "after"), "echo: AFTER\n");
  } finally {
    await host.shutdown();
  }
});

test("what save cannot carry is refused, and the guest runs on: a device not yet connected, a grant mapped by another domain", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-save-"));
  try {
    const xl = new Libxl(host);
    // blkbench waiting for a disk to be hot-plugged: the vbd's frontend never connects.
    const img = join(dir, "w.img");
    execFileSync("truncate", ["-s", "8M", img]);
    const w = await xl.create({ ...cfg("blkbench", `\ndisk=[]\nextra="wait"\n`), name: "waiter" });
    await xl.attachDisk(w.domid, {
      ...(await import("../../tools/libxl/disk.js")).parseDiskSpec(
        `format=raw, vdev=xvdb, access=rw, target=${img}`,
      ),
    });
    await assert.rejects(
      xl.save(w.domid, join(dir, "w.save")),
      /its vbd 51728 is not connected \(frontend state \d\); save it once it is/,
    );
    assert.equal(w.pauseCount, 0, "still running");
    // A grant of the guest's mapped in Dom0 (as a vchan server would): the
    // mapping would point at the old domain's memory after the move.
    const t = await xl.create(cfg("ticker"));
    grantAccess(t, 9, 0, 700);
    const gnt = host.dom0.openGnttab();
    const m = gnt.map(t.domid, 9);
    await assert.rejects(
      xl.save(t.domid, join(dir, "t.save")),
      /1 of its grants \(ref 9\.\.\.\) are mapped by domain 0; it cannot be saved or moved while they are/,
    );
    assert.equal(t.pauseCount, 0, "still running");
    gnt.unmap(m);
    await xl.save(t.domid, join(dir, "t.save"));
    gnt.dispose();
  } finally {
    await host.shutdown();
  }
});

test("bad save files are refused naming what and where, and leave nothing", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-save-"));
  try {
    const xl = new Libxl(host);
    const d = await xl.create(cfg("ticker"));
    await until(() => host.xenconsoled.read(d.domid).includes("tick 1"), 5000, "a tick");
    const good = join(dir, "good.save");
    await xl.save(d.domid, good);
    const bytes = readFileSync(good);
    const free = host.hv.frames.freeFrames;
    const bad = join(dir, "bad.save");
    const refuse = async (b: Uint8Array, want: RegExp): Promise<void> => {
      writeFileSync(bad, b);
      await assert.rejects(xl.restore(bad), want);
      assert.equal(host.hv.domains.size, 0, `nothing left after ${want}`);
    };
    await refuse(Buffer.from("hello"), /not an xl save file \(magic\) at offset 0/);
    await refuse(bytes.subarray(0, 100), /at offset/);
    await refuse(bytes.subarray(0, bytes.length - 8), /ends before its END record|cut short/);
    const optLen = bytes.readUInt32LE(44);
    const libxc = 48 + optLen + 16 + 8;
    const flip = (at: number, v: number): Buffer => {
      const b = Buffer.from(bytes);
      b[at] = v;
      return b;
    };
    await refuse(flip(36, 7), /unknown mandatory flags 0x4 at offset 36/);
    await refuse(flip(libxc + 8, 0), /the image header's id is not XENF at offset \d+/);
    await refuse(flip(libxc + 24, 1), /domain type 0x101, not wasm32 PV or HVM at offset \d+/);
    await refuse(flip(libxc + 24 + 0, 1) && flip(libxc + 24, 1), /not wasm32 PV/);
    // The first record (WASM32_MODULE): a type this restore does not know.
    await refuse(
      flip(libxc + 40, 0x77),
      /record type 0x1077, which this restore does not know at offset \d+/,
    );
    // A mutated config: not a config.
    await refuse(flip(52, 0x21), /its config: .* at offset 52/);
    // The devices' frontends must be the config's devices' own.
    const withJson = (edit: (j: Record<string, unknown>) => void): Buffer =>
      withConfigJson(bytes, edit);
    await refuse(
      withJson((j) => (j.tsxen_frontends = { "vbd/51712": { "ring-ref": "8" } })),
      /its devices' frontends: 'vbd\/51712' is not one of the domain's devices at offset 52/,
    );
    await refuse(
      withJson((j) => (j.tsxen_frontends = [])),
      /its devices' frontends: not an object at offset 52/,
    );
    // Random damage with a fixed seed: each is refused or, if only page
    // contents were hit, gives a domain that is destroyed; the host goes on.
    let seed = 842673405;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let i = 0; i < 40; i++) {
      const b = Buffer.from(bytes);
      // Headers and record headers are where the parser is; hit them more.
      const at = i % 2 === 0 ? rand(Math.min(b.length, 4096)) : rand(b.length);
      b[at] = rand(256);
      writeFileSync(bad, b);
      try {
        const r = await xl.restore(bad);
        xl.destroy(r.domid);
      } catch (e) {
        assert.match((e as Error).message, /libxl|xc_|context|d\d+/, (e as Error).message);
      }
      for (const x of [...host.hv.domains.values()]) xl.destroy(x.domid);
    }
    assert.equal(host.hv.frames.freeFrames, free, "every frame came back");
    // A FIFO or a directory where the file should be: refused, nothing blocks.
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    await assert.rejects(xl.restore(fifo), /FIFO|not a regular file/);
    const d2 = await xl.create(cfg("ticker"));
    await assert.rejects(xl.save(d2.domid, fifo), /save file|No such device|ENXIO/);
    await assert.rejects(xl.save(d2.domid, dir), /save file .*(directory|EISDIR)/i);
    assert.equal(d2.pauseCount, 0, "a failed save leaves the guest running");
  } finally {
    await host.shutdown();
  }
});

test("a save file whose frontends lie (another ring's port, a grant that is not there, a ring too large) is refused at once, naming the fault, and leaves nothing", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-save-"));
  try {
    const xl = new Libxl(host);
    const img = join(dir, "i.img");
    execFileSync("truncate", ["-s", "16M", img]);
    const d = await xl.create(
      cfg(
        "blkbench",
        `\ndisk=["format=raw, vdev=xvda, access=rw, target=${img}"]\nextra="mib=2 hold"\n`,
      ),
    );
    await until(
      () => host.xenconsoled.read(d.domid).includes("holding"),
      10_000,
      "blkbench holding",
    );
    const file = join(dir, "b.save");
    await xl.save(d.domid, file);
    const bytes = readFileSync(file);
    const withFrontend = (key: string, value: string): Buffer =>
      withConfigJson(bytes, (j) => {
        (j.tsxen_frontends as Record<string, Record<string, string>>)["vbd/51712"]![key] = value;
      });
    const free = host.hv.frames.freeFrames;
    const bad = join(dir, "bad.save");
    for (const [key, value, why] of [
      ["event-channel", "1", /bind_interdomain to d\d+ port 1 failed: EINVAL/],
      ["ring-ref", "99999", /mapping grant 99999 of d\d+ failed: GNTST_bad_gntref/],
      ["ring-page-order", "9", /ring-page-order 9 is above max-ring-page-order 4/],
    ] as const) {
      writeFileSync(bad, withFrontend(key, value));
      await assert.rejects(xl.restore(bad), (e: Error) => {
        assert.match(e.message, /^libxl: disk xvda: connecting to the frontend: /);
        assert.match(e.message, why);
        return true;
      });
      assert.deepEqual([...host.hv.domains.keys()], [], `nothing left after ${key}`);
      assert.equal(host.hv.frames.freeFrames, free, "every frame back");
    }
    // No frontend at all, from a guest that did not suspend itself: it
    // would never connect its disk again.
    writeFileSync(
      bad,
      withConfigJson(bytes, (j) => (j.tsxen_frontends = {})),
    );
    await assert.rejects(
      xl.restore(bad),
      /carries no device frontends, and its guest did not suspend itself/,
    );
    assert.deepEqual([...host.hv.domains.keys()], [], "nothing left");
    assert.equal(host.hv.frames.freeFrames, free, "every frame back");
  } finally {
    await host.shutdown();
  }
});
