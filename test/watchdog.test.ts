/**
 * The watchdog reports a main thread that stays away from the event loop past
 * its deadline: while it lasts (to the report fd, from the watchdog's own
 * thread) and after (on the hypervisor console), naming the guest, vCPU and
 * hypercall that held it, or saying it was no guest.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kernel, newHost, sleep, until } from "./helpers.js";
import {
  ACT_DOMID,
  ACT_HYPERCALL,
  ACT_VCPU,
  WATCHDOG_DEADLINE_MS,
  activity,
  watchdog,
} from "../xen/common/watchdog.js";

/** Holds the main thread for `ms`, as a runaway handler would. */
function hold(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

test("a main thread held past the deadline is reported with who held it", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-wd-"));
  const report = join(dir, "report");
  const fd = openSync(report, "w");
  try {
    const d = await host.create({
      name: "holder",
      kernel: await kernel("hello"),
      memory: 2,
      paused: true,
    });
    await sleep(100);
    watchdog.reportFd = fd;
    activity[ACT_DOMID] = d.domid;
    activity[ACT_VCPU] = 0;
    activity[ACT_HYPERCALL] = 20;
    hold(3 * WATCHDOG_DEADLINE_MS);
    activity[ACT_DOMID] = -1;
    activity[ACT_HYPERCALL] = -1;
    // Written while the thread was held, by the watchdog's own thread.
    assert.match(
      readFileSync(report, "utf8"),
      new RegExp(
        `missed its ${WATCHDOG_DEADLINE_MS} ms deadline, held by d${d.domid} vcpu#0 in hypercall grant_table_op \\(20\\)`,
      ),
    );
    await until(() => /watchdog: the main thread was held/.test(host.dmesg()), 2000, "the report");
    const line = host
      .dmesg()
      .split("\n")
      .find((l) => l.includes("watchdog:"))!;
    const m = /held for (\d+) ms by d(\d+) \(holder\) vcpu#0 in hypercall grant_table_op/.exec(
      line,
    );
    assert.ok(m, line);
    assert.ok(Number(m[1]) >= 2 * WATCHDOG_DEADLINE_MS, line);

    watchdog.reportFd = -1;
    hold(2 * WATCHDOG_DEADLINE_MS);
    await until(() => /outside any guest/.test(host.dmesg()), 2000, "the second report");
    // A thread that comes back in time is not reported.
    const before = host
      .dmesg()
      .split("\n")
      .filter((l) => l.includes("watchdog:")).length;
    hold(WATCHDOG_DEADLINE_MS / 4);
    await sleep(200);
    assert.equal(
      host
        .dmesg()
        .split("\n")
        .filter((l) => l.includes("watchdog:")).length,
      before,
    );
  } finally {
    watchdog.reportFd = -1;
    closeSync(fd);
    await host.shutdown();
  }
});
