import { test } from "node:test";
import assert from "node:assert/strict";
import { parseDiskSpec, vdevToDevid } from "./disk.js";

test("vdev names become the vbd numbers of xen-vbd-interface(7)", () => {
  assert.equal(vdevToDevid("xvda"), 51712);
  assert.equal(vdevToDevid("xvdb"), 51728);
  assert.equal(vdevToDevid("xvda1"), 51713);
  assert.equal(vdevToDevid("xvdq"), (1 << 28) | (16 << 8));
  assert.equal(vdevToDevid("hda"), 768);
  assert.equal(vdevToDevid("hdc"), 5632);
  assert.equal(vdevToDevid("sda"), 2048);
  assert.equal(vdevToDevid("51712"), 51712);
  assert.equal(vdevToDevid("floppy"), undefined);
});

test("disk specs: key=value, positional, and the errors", () => {
  assert.deepEqual(parseDiskSpec("format=raw, vdev=xvda, access=rw, target=/img/a,b.img"), {
    target: "/img/a,b.img",
    format: "raw",
    vdev: "xvda",
    devid: 51712,
    readonly: false,
    devtype: "disk",
    discard: true,
  });
  const p = parseDiskSpec("/img/x.img,raw,xvdb,ro");
  assert.deepEqual([p.target, p.format, p.vdev, p.readonly], ["/img/x.img", "raw", "xvdb", true]);
  assert.equal(parseDiskSpec("/x,,xvdc").format, "raw");
  const legacy = parseDiskSpec("file:/tmp/d.img,xvda,w");
  assert.deepEqual([legacy.target, legacy.vdev, legacy.readonly], ["/tmp/d.img", "xvda", false]);
  assert.equal(parseDiskSpec("tap:qcow2:/i.qcow2,xvdb,r").format, "qcow2");
  assert.equal(parseDiskSpec("vdev=xvda, no-discard, target=/x").discard, false);
  for (const [spec, why] of [
    ["vdev=xvda", /no target/],
    ["target=/x", /no vdev/],
    ["/x,raw,floppy", /not a disk name/],
    ["/x,vmdk,xvda", /format 'vmdk'/],
    ["/x,raw,xvda,rx", /access 'rx'/],
    ["vdev=xvda, colour=blue, target=/x", /unknown key 'colour'/],
  ] as const) {
    assert.throws(() => parseDiskSpec(spec), why, spec);
  }
});
