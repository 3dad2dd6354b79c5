/**
 * Xen's PV suspend protocol (libxl's suspend, the first step of a save or a
 * checkpoint): "suspend" in control/shutdown, the guest acknowledges and
 * calls SCHEDOP_shutdown(SHUTDOWN_suspend); resumed in the same domain, its
 * hypercall returns 1 and it carries on. A guest that ignores the request
 * has it withdrawn, with libxl's message, and is left running.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../../extras/mini-os/paths.js";
import { parseCfg } from "../../tools/libxlu/cfg.js";
import { domainConfig, type XlDomainConfig } from "../../tools/libxl/config.js";
import { Libxl } from "../../tools/libxl/domain.js";
import { newHost, until } from "../helpers.js";

const EX = join(ROOT, "extras", "mini-os", "examples");

function cfg(name: string, extra = ""): XlDomainConfig {
  const f = join(EX, `${name}.cfg`);
  return domainConfig(parseCfg(readFileSync(f, "utf8") + extra, f), f, EX).config;
}

test("a PV guest suspends when asked, and carries on when resumed in the same domain", async () => {
  const host = newHost();
  try {
    const xl = new Libxl(host);
    const d = await xl.create(cfg("xenstore", 'on_poweroff = "preserve"\n'));
    const out = (): string => host.readConsole(d.domid);
    await until(() => out().includes("counter"), 5000, "the guest's watches");
    const log: string[] = [];
    await xl.suspend(d.domid, { log: (l) => log.push(l) });
    assert.equal(d.shutdownName, "suspend");
    assert.match(out(), /control\/shutdown says 'suspend'/);
    assert.match(log.join("\n"), /guest acknowledged suspend request/);
    const path = `/local/domain/${d.domid}/control/shutdown`;
    assert.equal(host.xenstored.readText(path), "", "the guest cleared the request");
    await xl.suspend(d.domid); // already suspended: nothing to do
    await xl.resume(d.domid);
    await until(() => out().includes("resumed (suspend returned 1)"), 5000, "the resume");
    assert.equal(d.isShutdown, false);
    // Still connected: it obeys the next request.
    assert.equal(await xl.shutdown(d.domid, "poweroff"), "poweroff");
  } finally {
    await host.shutdown();
  }
});

test("a guest that ignores the suspend request has it withdrawn and runs on", async () => {
  const host = newHost();
  try {
    const xl = new Libxl(host);
    const d = await xl.create(cfg("spin"));
    await assert.rejects(
      xl.suspend(d.domid, { ackTimeoutMs: 300 }),
      /libxl: Domain \d+:guest didn't acknowledge suspend, cancelling request/,
    );
    assert.equal(host.xenstored.readText(`/local/domain/${d.domid}/control/shutdown`), "");
    assert.equal(d.isShutdown, false);
    assert.equal(d.runState === "running" || d.runState === "blocked", true);
  } finally {
    await host.shutdown();
  }
});
