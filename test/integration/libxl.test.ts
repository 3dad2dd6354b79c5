/**
 * libxl's lifecycle from xl.cfg files: the xenstore nodes of a new domain,
 * shutdown and reboot through control/shutdown, memory and vCPU targets, and
 * the on_poweroff / on_reboot / on_crash actions.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../../extras/mini-os/paths.js";
import { parseCfg } from "../../tools/libxlu/cfg.js";
import { domainConfig, type XlDomainConfig } from "../../tools/libxl/config.js";
import { Libxl } from "../../tools/libxl/domain.js";
import type { Host } from "../../tools/host/host.js";
import { newHost, until } from "../helpers.js";

const EX = join(ROOT, "extras", "mini-os", "examples");

function cfg(name: string, extra = ""): XlDomainConfig {
  const f = join(EX, `${name}.cfg`);
  return domainConfig(parseCfg(readFileSync(f, "utf8") + extra, f), f, EX).config;
}

const read = (host: Host, p: string): string | undefined => {
  const n = host.xenstored.store.get(p);
  return n ? new TextDecoder().decode(n.value) : undefined;
};

const byName = (host: Host, name: string) =>
  [...host.hv.domains.values()].filter((d) => d.name === name);

test("create writes the domain's nodes; on_poweroff=destroy removes it all", async () => {
  const host = newHost();
  try {
    const xl = new Libxl(host);
    const d = await xl.create(cfg("hello"), { paused: true });
    const home = `/local/domain/${d.domid}`;
    const vm = read(host, `${home}/vm`)!;
    assert.match(vm, /^\/vm\/[0-9a-f-]{36}$/);
    assert.equal(read(host, `${vm}/name`), "hello");
    assert.equal(read(host, `${home}/memory/target`), "4096");
    assert.equal(read(host, `${home}/memory/static-max`), "4096");
    assert.equal(read(host, `${home}/cpu/0/availability`), "online");
    // xl list -l: the config in libxl's layout, with mem-set read back.
    xl.setMemoryTarget(d.domid, 2);
    const long = xl.listLong();
    assert.match(long, /^\[\n {4}\{\n {8}"domid": \d+,\n/);
    const [row] = JSON.parse(long) as Array<{
      domid: number;
      config: {
        c_info: { uuid: string };
        b_info: { kernel: string };
        on_poweroff: string;
        on_reboot: string;
        on_crash: string;
      };
    }>;
    assert.equal(row!.domid, d.domid);
    assert.equal(`/vm/${row!.config.c_info.uuid}`, vm);
    assert.deepEqual(
      { ...row!.config.b_info, kernel: undefined },
      {
        max_vcpus: 1,
        avail_vcpus: [0],
        max_memkb: 4096,
        target_memkb: 2048,
        sched_params: { weight: 256, cap: 0 },
        event_channels: 1023,
        max_grant_frames: 64,
        max_maptrack_frames: 1024,
        kernel: undefined,
        cmdline: "hello from an xl.cfg",
      },
    );
    assert.match(row!.config.b_info.kernel, /hello\.wasm$/);
    assert.deepEqual(
      [row!.config.on_poweroff, row!.config.on_reboot, row!.config.on_crash],
      ["destroy", "restart", "destroy"],
    );
    assert.throws(() => xl.listLong([4242]), /domain 4242 is not a domain libxl created/);
    await assert.rejects(
      xl.create(cfg("hello")),
      /libxl: domain name 'hello' is in use by domain \d+/,
    );
    // Its PV console, from before it runs (console_io is not its console).
    let out = "";
    host.onConsole(d.domid, (t) => (out += t));
    host.unpause(d.domid);
    await until(() => !host.hv.domains.has(d.domid), 5000, "hello destroyed after poweroff");
    assert.match(out, /hello from an xl\.cfg/);
    assert.doesNotMatch(host.dmesg(), /hello from an xl/, "guest output is not the hypervisor's");
    assert.equal(read(host, home), undefined);
    assert.equal(read(host, vm), undefined);
    assert.deepEqual(xl.list(), []);
  } finally {
    await host.shutdown();
  }
});

test("on_crash: preserve keeps the crashed domain; restart makes a new one of the same name", async () => {
  const host = newHost();
  try {
    const xl = new Libxl(host);
    const kept = await xl.create(cfg("crash"));
    await host.waitShutdown(kept.domid);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(kept.runState, "crashed");
    assert.ok(host.hv.domains.has(kept.domid), "preserved");
    assert.equal(host.list().find((r) => r.domid === kept.domid)?.stateFlags, "---sc-");
    xl.destroy(kept.domid);
    const first = await xl.create(cfg("crash", '\non_crash = "restart"\nname = "phoenix"\n'));
    await until(
      () => byName(host, "phoenix").some((d) => d.domid !== first.domid),
      5000,
      "a restarted domain",
    );
    xl.destroy(byName(host, "phoenix").find((d) => d.domid !== first.domid)!.domid);
  } finally {
    await host.shutdown();
  }
});

test("on_reboot=preserve keeps the domain, listed as shut down for a reboot", async () => {
  const host = newHost();
  try {
    const xl = new Libxl(host);
    const d = await xl.create(cfg("xenstore", '\non_reboot = "preserve"\n'));
    await until(
      () => /counter 1/.test(host.readConsole(d.domid)),
      5000,
      "the guest's xenstore work",
    );
    assert.equal(await xl.shutdown(d.domid, "reboot"), "reboot");
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(host.list().find((r) => r.domid === d.domid)?.stateFlags, "---sr-");
    assert.equal(byName(host, "xenstore").length, 1, "not restarted");
  } finally {
    await host.shutdown();
  }
});

test("shutdown and reboot through control/shutdown; on_reboot=restart; memory and vCPU targets", async () => {
  const host = newHost();
  try {
    const xl = new Libxl(host);
    const d = await xl.create(cfg("xenstore", "\nmaxmem = 8\n"));
    await until(
      () => /counter 1/.test(host.readConsole(d.domid)),
      5000,
      "the guest's xenstore work",
    );
    const vm = read(host, `/local/domain/${d.domid}/vm`);
    assert.equal(await xl.shutdown(d.domid, "reboot"), "reboot");
    await until(
      () => byName(host, "xenstore").some((x) => x.domid !== d.domid),
      5000,
      "the rebooted domain",
    );
    const again = byName(host, "xenstore").find((x) => x.domid !== d.domid)!;
    assert.equal(read(host, `/local/domain/${again.domid}/vm`), vm, "a reboot keeps the uuid");
    await until(
      () => /counter 1/.test(host.readConsole(again.domid)),
      5000,
      "the rebooted guest's xenstore work",
    );
    xl.setMemoryTarget(again.domid, 6);
    assert.equal(read(host, `/local/domain/${again.domid}/memory/target`), "6144");
    assert.throws(
      () => xl.setMemoryTarget(again.domid, 9),
      /memory target 9 MiB is outside 1\.\.8 \(maxmem\)/,
    );
    assert.throws(() => xl.setVcpus(again.domid, 2), /2 vCPUs is outside 1\.\.1 \(maxvcpus\)/);
    assert.equal(await xl.shutdown(again.domid, "poweroff"), "poweroff");
    await until(() => byName(host, "xenstore").length === 0, 5000, "destroyed after poweroff");
    assert.throws(() => xl.destroy(12345), /domain 12345 is not a domain libxl created/);
  } finally {
    await host.shutdown();
  }
});
