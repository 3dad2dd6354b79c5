/**
 * The run directory cannot be someone else's: a local user who makes the
 * directory first, or may write in one above it, would receive this user's
 * xl requests on a socket of his own. The host refuses such a directory and
 * a client refuses to connect there (as OpenSSH checks the paths it trusts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkSafeDir, prepareRunDir, runDir } from "../tools/rundir.js";
import { connectUnix } from "../tools/jsonl.js";
import { XsClient } from "../tools/xenstore/client.js";

test("a user's default run directory is never a name in /tmp", () => {
  assert.equal(runDir({}, 0), "/run/tsxen");
  assert.equal(runDir({ XDG_RUNTIME_DIR: "/run/user/1000" }, 1000), "/run/user/1000/tsxen");
  const d = runDir({ XDG_STATE_HOME: "/home/u/.local/state" }, 1000);
  assert.equal(d, "/home/u/.local/state/tsxen/run");
  assert.ok(!runDir({}, 1000).startsWith(tmpdir()), runDir({}, 1000));
  assert.equal(runDir({ TSXEN_RUN_DIR: "/x" }, 1000), "/x");
});

test("the host makes its run directory 0700 and refuses one that is a symlink or under a directory others may write", () => {
  const base = mkdtempSync(join(tmpdir(), "tsxen-rundir-"));
  const run = join(base, "run");
  prepareRunDir(run);
  checkSafeDir(run, { privateDir: true });
  chmodSync(run, 0o770);
  prepareRunDir(run);
  checkSafeDir(run, { privateDir: true });

  const link = join(base, "link");
  symlinkSync(run, link);
  assert.throws(() => prepareRunDir(link), /link is a symbolic link, not a directory/);

  // Others may write in the parent, and it has no sticky bit: anyone could
  // have replaced the run directory.
  const open = join(base, "open");
  mkdirSync(open);
  chmodSync(open, 0o777);
  assert.throws(() => prepareRunDir(join(open, "run")), /bad modes for directory .*open: 777/);
  // With the sticky bit (as /tmp) the parent is fine: no one else can rename our directory.
  chmodSync(open, 0o1777);
  prepareRunDir(join(open, "run"));
});

test(
  "a run directory another user made first is refused by the host and by every client",
  {
    skip: process.getuid?.() !== 0 ? "needs root to make a directory owned by another user" : false,
  },
  async () => {
    const base = mkdtempSync(join(tmpdir(), "tsxen-rundir-"));
    const theirs = join(base, "run");
    mkdirSync(join(theirs, "xenstored"), { recursive: true, mode: 0o755 });
    chownSync(theirs, 4321, 4321);
    chownSync(join(theirs, "xenstored"), 4321, 4321);
    assert.throws(
      () => prepareRunDir(theirs),
      /bad ownership for directory .*run: owned by uid 4321, not by this user \(uid 0\)/,
    );
    await assert.rejects(
      connectUnix(join(theirs, "libxl"), "xl"),
      /xl: refusing .*libxl: bad ownership for directory .*run: owned by uid 4321/,
    );
    await assert.rejects(
      XsClient.open(join(theirs, "xenstored", "socket")),
      /xenstore: refusing .*socket: bad ownership for directory .*xenstored: owned by uid 4321/,
    );
  },
);
