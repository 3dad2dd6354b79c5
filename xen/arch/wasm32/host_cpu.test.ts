/**
 * host_cpu.ts: Linux's flag names back into Xen's CPUID feature words.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { hwCapsFromFlags, hostCpu } from "./host_cpu.js";
import { readFileSync, existsSync } from "node:fs";

test("Linux's cpuinfo flags go back to the CPUID bits of Xen's feature words", () => {
  const w = hwCapsFromFlags(
    "fpu sse2 pni avx hypervisor syscall nx lm lahf_lm xsaveopt avx2 sha_ni gfni constant_tsc nonstop_tsc".split(
      " ",
    ),
  );
  assert.deepEqual(
    w.map((x) => x.toString(16)),
    [
      (1 | (1 << 26)).toString(16), // fpu, sse2
      ((1 | (1 << 28) | (1 << 31)) >>> 0).toString(16), // pni, avx, hypervisor
      ((1 << 11) | (1 << 20) | (1 << 29)).toString(16), // syscall, nx, lm
      "1", // lahf_lm
      "1", // xsaveopt
      ((1 << 5) | (1 << 29)).toString(16), // avx2, sha_ni
      (1 << 8).toString(16), // gfni
      (1 << 8).toString(16), // invariant TSC
    ],
  );
  // Without nonstop_tsc the TSC is not invariant; AMD repeats leaf 1's EDX bits in 0x80000001.
  assert.equal(hwCapsFromFlags(["constant_tsc"])[7], 0);
  assert.equal(hwCapsFromFlags(["fpu", "lm"], "AuthenticAMD")[2], 1 | (1 << 29));
  assert.equal(hwCapsFromFlags(["fpu", "lm"], "GenuineIntel")[2], 1 << 29);
});

test("the host's clock and features are read from /proc/cpuinfo where it has them", () => {
  const c = hostCpu();
  assert.equal(c.hwCaps.length, 8);
  if (!existsSync("/proc/cpuinfo")) return;
  const info = readFileSync("/proc/cpuinfo", "utf8");
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(info);
  if (mhz) assert.equal(c.khz, Math.round(Number(mhz[1]) * 1000));
  if (/^flags\s*:.*\bfpu\b/m.test(info))
    assert.equal(c.hwCaps[0]! & 1, 1, "fpu is bit 0 of word 0");
});
