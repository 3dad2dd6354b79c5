/**
 * libxc over domctl and sysctl, in process: what `xl list`, `pause`,
 * `mem-max`, `vcpu-list`, `vcpu-pin`, `sched-credit`, `info` and `dmesg`
 * read and change, checked against the hypervisor's own state, and the
 * refusals Xen gives (a guest calling them, unknown domains, bad values).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { kernel, newHost, until } from "./helpers.js";
import { LocalHypercalls } from "../tools/libxc/channel.js";
import { XcError, XcInterface } from "../tools/libxc/xc.js";
import { XenErrno as E } from "../xen/include/public/errno.js";
import { HYPERVISOR as H } from "../xen/include/public/xen.js";
import * as DC from "../xen/include/public/domctl.js";
import { SHUTDOWN_crash } from "../xen/include/public/sched.js";

async function rejects(p: Promise<unknown>, errno: number, op: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof XcError, String(e));
    assert.equal(e.errno, errno);
    assert.match(e.message, op);
    return true;
  });
}

test("getinfolist, pause, unpause, destroy as the hypervisor sees them", async () => {
  const host = newHost();
  const xc = new XcInterface(new LocalHypercalls(host.dom0.privcmd));
  try {
    const a = await host.create({ name: "a", kernel: await kernel("ticker"), memory: 4 });
    const b = await host.create({ name: "b", kernel: await kernel("spin"), memory: 8 });
    const list = await xc.domainGetInfoList();
    assert.deepEqual(
      list.map((i) => i.domid),
      [0, a.domid, b.domid],
    );
    const ib = list[2]!;
    assert.equal(ib.totPages, b.totPages);
    assert.equal(ib.maxPages, b.maxPages);
    assert.equal(ib.onlineVcpus, 1);
    assert.equal(ib.maxVcpuId, 0);
    assert.equal(ib.paused, false);
    assert.equal(list[0]!.running, true, "Dom0 runs: it is the caller");
    assert.deepEqual(
      (await xc.domainGetInfoList(a.domid + 1)).map((i) => i.domid),
      [b.domid],
    );
    assert.equal((await xc.domainGetInfoList(0, 1)).length, 1, "max_domains is honoured");

    await xc.domainPause(a.domid);
    assert.equal(a.pauseCount, 1);
    assert.equal((await xc.domainGetInfo(a.domid)).paused, true);
    await xc.domainUnpause(a.domid);
    assert.equal(a.pauseCount, 0);
    await rejects(xc.domainUnpause(a.domid), E.EINVAL, /xc_domain_unpause\(\d+\)/);
    await rejects(xc.domainPause(0), E.EINVAL, /xc_domain_pause\(0\)/);
    await rejects(xc.domainPause(999), E.ESRCH, /No such process \(ESRCH\)/);

    // Cpu time grows while b spins.
    const t0 = (await xc.domainGetInfo(b.domid)).cpuTime;
    await until(() => b.vcpus[0]!.cpuTimeNs > t0 + 5e6, 2000, "b to run");
    assert.ok((await xc.domainGetInfo(b.domid)).cpuTime > t0);

    host.hv.domainCrash(a, undefined, "test");
    const ia = await xc.domainGetInfo(a.domid);
    assert.equal(ia.shutdown, true);
    assert.equal(ia.shutdownReason, SHUTDOWN_crash);
    await xc.domainDestroy(a.domid);
    assert.equal(host.hv.domains.has(a.domid), false);
    await rejects(xc.domainDestroy(0), E.EPERM, /xc_domain_destroy\(0\)/);
  } finally {
    await host.shutdown();
  }
});

test("max_mem, handle, vCPU info and affinity, credit parameters", async () => {
  const host = newHost();
  const xc = new XcInterface(new LocalHypercalls(host.dom0.privcmd));
  try {
    const d = await host.create({
      name: "d",
      kernel: await kernel("ticker"),
      memory: 4,
      maxmem: 8,
    });
    await xc.domainSetMaxMem(d.domid, 6 * 1024);
    assert.equal(d.maxPages, (6 * 1024) / 4);
    // Past the maxmem it was created with (8 MiB): its physmap follows.
    await xc.domainSetMaxMem(d.domid, 64 * 1024);
    assert.equal(d.maxPages, (64 * 1024) / 4);
    assert.equal(d.nrPfns, (64 * 1024) / 4);
    // Not to wasm32's 4 GiB.
    await rejects(xc.domainSetMaxMem(d.domid, 4 * 1024 * 1024), E.ENOMEM, /xc_domain_setmaxmem/);
    assert.equal(d.maxPages, (64 * 1024) / 4, "a refused max_mem changes nothing");

    const h = new Uint8Array(16).map((_, i) => i + 1);
    await xc.domainSetHandle(d.domid, h);
    assert.equal((await xc.domainGetInfo(d.domid)).uuid, "01020304-0506-0708-090a-0b0c0d0e0f10");

    const vi = await xc.vcpuGetInfo(d.domid, 0);
    assert.equal(vi.online, true);
    await rejects(xc.vcpuGetInfo(d.domid, 5), E.EINVAL, /xc_vcpu_getinfo/);

    assert.deepEqual(await xc.vcpuAffinity(d.domid, 0), { hard: 0xffffffff, soft: 0xffffffff });
    assert.deepEqual(await xc.vcpuAffinity(d.domid, 0, { hard: 1, soft: 3 }), { hard: 1, soft: 1 });
    assert.equal(d.vcpus[0]!.hardAffinity, 1);
    await rejects(
      xc.vcpuAffinity(d.domid, 0, { hard: 2, soft: 2 }),
      E.EINVAL,
      /xc_vcpu_setaffinity/,
    );
    assert.equal(d.vcpus[0]!.hardAffinity, 1, "a refused pin keeps the old affinity");

    assert.deepEqual(await xc.schedCredit(d.domid), { weight: 256, cap: 0 });
    await xc.schedCredit(d.domid, { weight: 512, cap: 50 });
    assert.deepEqual([d.weight, d.cap], [512, 50]);
    await rejects(xc.schedCredit(d.domid, { weight: 512, cap: 101 }), E.EINVAL, /credit/);
    assert.equal(d.cap, 50);
  } finally {
    await host.shutdown();
  }
});

test("physinfo, sched_id, version and the console ring", async () => {
  const host = newHost();
  const xc = new XcInterface(new LocalHypercalls(host.dom0.privcmd));
  try {
    const p = await xc.physinfo();
    assert.equal(p.nrCpus, 1);
    assert.equal(p.totalPages, (2 * 1024 ** 3) / 4096);
    assert.equal(p.freePages, host.hv.frames.freeFrames);
    assert.equal(await xc.schedId(), DC.XEN_SCHEDULER_CREDIT);
    const v = await xc.version();
    assert.deepEqual([v.major, v.minor], [4, 17]);
    for (let i = 0; i < 400; i++) host.hv.console.printk(`line ${i} ${"x".repeat(60)}`);
    const ring = await xc.readConsoleRing();
    assert.equal(ring, host.dmesg(), "read across several 16 KiB chunks");
    assert.ok(ring.length > 16384);
    await xc.readConsoleRing(true);
    assert.equal(host.dmesg(), "");
  } finally {
    await host.shutdown();
  }
});

test("a guest calling domctl or sysctl is refused with EPERM", async () => {
  const host = newHost();
  try {
    const d = await host.create({ name: "g", kernel: await kernel("ticker"), memory: 4 });
    for (const op of [H.__HYPERVISOR_domctl, H.__HYPERVISOR_sysctl]) {
      assert.equal(host.hv.dispatch(d.vcpus[0]!, op, 0, 0, 0, 0, 0), -E.EPERM);
    }
    // Dom0 with a wrong interface version, or a bad pointer.
    const pc = host.dom0.privcmd;
    const a = pc.bounce(DC.xen_domctl.size);
    pc.mem.setU32(a, DC.XEN_DOMCTL_getdomaininfo);
    pc.mem.setU32(a + 4, 0x14);
    assert.equal(pc.hypercall(H.__HYPERVISOR_domctl, a), -E.EACCES);
    assert.equal(pc.hypercall(H.__HYPERVISOR_domctl, pc.mem.size - 8), -E.EFAULT);
  } finally {
    await host.shutdown();
  }
});
