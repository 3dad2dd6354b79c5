/**
 * PV channels against a misbehaving client (dom0/backends/channel.ts): a
 * client that never reads holds the guest back through its ring, not the
 * host's memory, and everything flows again once it reads.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Libxl } from "../../tools/libxl/domain.js";
import { xlDomainConfig } from "../../tools/libxl/config.js";
import type { ChannelStats } from "../../dom0/backends/channel.js";
import { guestPath, sleep, until, withHost } from "../helpers.js";

test("a channel client that never reads cannot make the host buffer the guest's output", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-pvchannel-"));
  try {
    await withHost(async (host) => {
      const sock = join(dir, "echo.sock");
      const d = await new Libxl(host).create(
        xlDomainConfig({
          name: "agent",
          kernel: guestPath("channel-echo"),
          memory: 4,
          channels: [`name=org.tsxen.echo,connection=socket,path=${sock}`],
        }),
      );
      await until(() => /has channel/.test(host.readConsole(d.domid)), 5000, "the agent");
      const s = connect(sock);
      s.pause(); // reads nothing
      const line = Buffer.alloc(1000, 97);
      line[999] = 10;
      // 8 MB of lines: the agent echoes each, into a socket nobody reads.
      for (let i = 0; i < 8; i++) {
        s.write(Buffer.concat(Array<Buffer>(1000).fill(line)));
        await sleep(100);
      }
      const stats = host.channels.list()[0]!.stats as ChannelStats;
      assert.ok(stats.toGuest > 0, "the agent got input");
      assert.ok(stats.toSocket < 1 << 20, `${stats.toSocket} bytes went to a socket nobody reads`);
      // Once the client reads, the echo flows again.
      let got = 0;
      s.on("data", (b: Buffer) => (got += b.length));
      s.resume();
      await until(() => got > 1 << 20, 20_000, "the echo to flow again");
      s.destroy();
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
