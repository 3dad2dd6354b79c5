/**
 * The host CPU under the wasm32 guests, as XEN_SYSCTL_physinfo reports a
 * machine's: its clock (cpu_khz) and its feature words (hw_cap), which
 * `xl info` prints as cpu_mhz and hw_caps.
 *
 * Xen measures the clock against the TSC and reads the features with CPUID;
 * tsxen runs in a Linux process, so it reads what Linux found: "cpu MHz"
 * and "flags" of /proc/cpuinfo. The flags are put back into Xen's feature
 * words (Xen's `public/arch-x86/cpufeatureset.h`: word 0 is CPUID leaf 1
 * EDX, 1 is leaf 1 ECX, 2 is leaf 0x80000001 EDX, 3 is 0x80000001 ECX, 4 is
 * leaf 0xd subleaf 1 EAX, 5 is leaf 7 EBX, 6 is leaf 7 ECX, 7 is 0x80000007
 * EDX) by the bit each flag reports in Intel's and AMD's manuals. On a host
 * that is not x86, or without /proc/cpuinfo, the words are zero and the
 * clock is Node's figure (0 when it has none), as Xen on Arm reports no
 * x86 features.
 */
import { readFileSync } from "node:fs";
import { cpus } from "node:os";

/**
 * Linux's /proc/cpuinfo flag names, word by word, in bit order from bit 0
 * ("-" for a bit Linux does not name).
 */
const WORDS: ReadonlyArray<readonly string[]> = [
  // 0: CPUID 1, EDX
  "fpu vme de pse tsc msr pae mce cx8 apic - sep mtrr pge mca cmov pat pse36 pn clflush - dts acpi mmx fxsr sse sse2 ss ht tm ia64 pbe",
  // 1: CPUID 1, ECX
  "pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 cid sdbg fma cx16 xtpr pdcm - pcid dca sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave - avx f16c rdrand hypervisor",
  // 2: CPUID 0x80000001, EDX (the bits Linux names apart from leaf 1's)
  "- - - - - - - - - - - syscall - - - - - - - mp nx - mmxext - - fxsr_opt pdpe1gb rdtscp - lm 3dnowext 3dnow",
  // 3: CPUID 0x80000001, ECX
  "lahf_lm cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs xop skinit wdt - lwp fma4 tce - nodeid_msr - tbm topoext perfctr_core perfctr_nb - bpext ptsc perfctr_llc mwaitx",
  // 4: CPUID 0xd subleaf 1, EAX
  "xsaveopt xsavec xgetbv1 xsaves",
  // 5: CPUID 7, EBX
  "fsgsbase tsc_adjust sgx bmi1 hle avx2 - smep bmi2 erms invpcid rtm cqm - mpx rdt_a avx512f avx512dq rdseed adx smap avx512ifma - clflushopt clwb intel_pt avx512pf avx512er avx512cd sha_ni avx512bw avx512vl",
  // 6: CPUID 7, ECX
  "- avx512vbmi umip pku ospke waitpkg avx512_vbmi2 - gfni vaes vpclmulqdq avx512_vnni avx512_bitalg - avx512_vpopcntdq - la57 - - - - - rdpid - bus_lock_detect cldemote - movdiri movdir64b",
  // 7: CPUID 0x80000007, EDX: bit 8 is the invariant TSC, which Linux reports as two flags.
  "- - - - - - - - constant_tsc",
].map((w) => w.split(" "));

/** Leaf 1 EDX bits that AMD's 0x80000001 EDX repeats (Linux names each once). */
const AMD_MIRRORED = 0x0183f3ff;

/** Xen's feature words from a /proc/cpuinfo "flags" line and "vendor_id" (exported for the tests). */
export function hwCapsFromFlags(flags: readonly string[], vendor = ""): number[] {
  const have = new Set(flags);
  const words = WORDS.map((names) => {
    let w = 0;
    names.forEach((n, bit) => {
      if (n !== "-" && have.has(n)) w |= 1 << bit;
    });
    return w >>> 0;
  });
  // The invariant TSC needs both of Linux's names.
  if (!have.has("nonstop_tsc")) words[7] = (words[7]! & ~(1 << 8)) >>> 0;
  if (vendor === "AuthenticAMD" || vendor === "HygonGenuine")
    words[2] = (words[2]! | (words[0]! & AMD_MIRRORED)) >>> 0;
  return words;
}

let cached: { khz: number; hwCaps: number[] } | undefined;

/** The host CPU's clock (kHz) and Xen's eight feature words. */
export function hostCpu(): { khz: number; hwCaps: number[] } {
  if (cached) return cached;
  let khz = (cpus()[0]?.speed ?? 0) * 1000;
  let hwCaps = new Array<number>(8).fill(0);
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(info);
    if (mhz) khz = Math.round(Number(mhz[1]) * 1000);
    const flags = /^flags\s*:(.*)$/m.exec(info);
    const vendor = /^vendor_id\s*:\s*(\S+)/m.exec(info)?.[1];
    if (flags) hwCaps = hwCapsFromFlags(flags[1]!.trim().split(/\s+/), vendor);
  } catch {
    // Not Linux: Node's figure, and no x86 feature words.
  }
  cached = { khz, hwCaps };
  return cached;
}
