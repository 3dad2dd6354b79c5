/**
 * Builds the HVM guests: unmodified WASI programs compiled with Debian's
 * clang, lld and wasi-libc into build/hvm/NAME.wasm.
 *
 * - extras/hvm/*.c: tsxen's own test and benchmark programs (plain C that
 *   knows nothing of Xen);
 * - upstream programs nobody here wrote, from source tarballs on the npm
 *   registry (fetched with `npm pack`, which checks their integrity and runs
 *   none of their scripts): Zopfli's command-line compressor (from
 *   node-zopfli) and SQLite's shell (the amalgamation in node-sqlite3's
 *   tarball). Their sources are built as they come; SQLite's shell links
 *   three libc functions wasi-libc lacks from compat/wasi-compat.c.
 *
 * - extras/hvm/pv/*.c: HVM programs with PV drivers (docs/hvm.md, "PV
 *   drivers on HVM"), built against Xen's own public headers from
 *   libxen-dev with tsxen's arch-wasm32.h beside them: the headers are
 *   copied into build/hvm/include/xen/ and wasm32 is added to xen.h's
 *   architecture switch, as a new port of Xen adds itself there.
 *
 * Without clang's wasm32-wasi target this says what to install and builds
 * nothing (`npm start` and the PV guests do not need it); `npm test`
 * installs it first (scripts/ensure-deps.ts).
 */
import { execFileSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const SRC = join(ROOT, "extras", "hvm");
/** Where the built programs go. */
export const HVM_DIR = join(ROOT, "build", "hvm");
const CACHE = join(HVM_DIR, "src");
/** Xen's public headers with wasm32 added: `-I` this for `#include <xen/xen.h>`. */
export const XEN_INCLUDE = join(HVM_DIR, "include");
const XEN_HEADERS = "/usr/include/xen";
const ARCH_HEADER = join(ROOT, "xen", "include", "public", "arch-wasm32.h");
const PV_SRC = join(SRC, "pv");
/** How C code with PV drivers is compiled and linked (the data above the architecture area). */
export const PV_CFLAGS = [
  "-matomics",
  "-D__XEN_INTERFACE_VERSION__=__XEN_LATEST_INTERFACE_VERSION__",
  `-I${XEN_INCLUDE}`,
  "-Wl,--global-base=262144",
];

/** The upstream sources: npm package, version, and the directory in its tarball. */
const UPSTREAM = {
  zopfli: { pkg: "node-zopfli", version: "2.1.4" },
  sqlite: {
    pkg: "sqlite3",
    version: "6.0.1",
    inner: "package/deps/sqlite-autoconf-3520000.tar.gz",
  },
} as const;

const WASI_SYSROOT_HEADER = "/usr/include/wasm32-wasi/stdio.h";
const CLANG_RT = "/usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a";

/** Whether this machine can build WASI programs; the missing parts if not. */
export function wasiToolchainMissing(): string[] {
  const missing: string[] = [];
  try {
    execFileSync("clang", ["--version"], { stdio: "ignore" });
  } catch {
    missing.push("clang");
  }
  if (!existsSync("/usr/bin/wasm-ld") && !existsSync("/usr/bin/wasm-ld-14")) missing.push("lld");
  if (!existsSync(WASI_SYSROOT_HEADER)) missing.push("wasi-libc");
  if (!existsSync(CLANG_RT)) missing.push("libclang-rt-14-dev-wasm32");
  return missing;
}

function newer(out: string, inputs: string[]): boolean {
  if (!existsSync(out)) return false;
  const t = statSync(out).mtimeMs;
  return inputs.every((i) => statSync(i).mtimeMs <= t);
}

function clang(
  out: string,
  sources: string[],
  flags: string[] = [],
  libs: string[] = [],
  deps: string[] = [],
): void {
  if (newer(out, [...sources, ...deps])) return;
  const tmp = `${out}.tmp`;
  execFileSync(
    "clang",
    [
      "--target=wasm32-wasi",
      "-O2",
      "-Wall",
      "-Wno-unused",
      ...flags,
      "-o",
      tmp,
      ...sources,
      ...libs,
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  renameSync(tmp, out);
}

/** Fetches and unpacks an npm package's tarball into the cache; its directory. */
function fetchPackage(pkg: string, version: string): string {
  const dir = join(CACHE, `${pkg}-${version}`);
  if (existsSync(join(dir, "package"))) return dir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const out = execFileSync(
    "npm",
    ["pack", `${pkg}@${version}`, "--silent", "--pack-destination", dir],
    {
      encoding: "utf8",
    },
  );
  const tgz = join(dir, out.trim().split("\n").pop()!);
  execFileSync("tar", ["xzf", tgz, "-C", dir]);
  rmSync(tgz);
  return dir;
}

function buildZopfli(): void {
  const out = join(HVM_DIR, "zopfli.wasm");
  if (existsSync(out)) return;
  const dir = fetchPackage(UPSTREAM.zopfli.pkg, UPSTREAM.zopfli.version);
  const src = join(dir, "package", "zopfli", "src", "zopfli");
  const files = readdirSync(src)
    .filter((f) => f.endsWith(".c"))
    .map((f) => join(src, f));
  clang(out, files, ["-w"]);
}

function buildSqlite(): void {
  const out = join(HVM_DIR, "sqlite3.wasm");
  if (existsSync(out)) return;
  const dir = fetchPackage(UPSTREAM.sqlite.pkg, UPSTREAM.sqlite.version);
  const amalgamation = join(dir, "sqlite-autoconf-3520000");
  if (!existsSync(amalgamation))
    execFileSync("tar", ["xzf", join(dir, UPSTREAM.sqlite.inner), "-C", dir]);
  clang(
    out,
    [
      join(amalgamation, "shell.c"),
      join(amalgamation, "sqlite3.c"),
      join(SRC, "compat", "wasi-compat.c"),
    ],
    [
      "-w",
      // wasi-libc's emulations of signals, process clocks, getpid and mmap.
      "-D_WASI_EMULATED_SIGNAL",
      "-D_WASI_EMULATED_PROCESS_CLOCKS",
      "-D_WASI_EMULATED_GETPID",
      "-D_WASI_EMULATED_MMAN",
      // One thread, no loadable extensions, no WAL (it needs shared memory between processes).
      "-DSQLITE_THREADSAFE=0",
      "-DSQLITE_OMIT_LOAD_EXTENSION",
      "-DSQLITE_OMIT_WAL",
    ],
    [
      "-lwasi-emulated-signal",
      "-lwasi-emulated-process-clocks",
      "-lwasi-emulated-getpid",
      "-lwasi-emulated-mman",
    ],
  );
}

/**
 * Copies Xen's public headers into XEN_INCLUDE/xen with tsxen's
 * arch-wasm32.h, and adds wasm32 to the architecture switches of xen.h and
 * hvm/save.h.
 */
export function prepareXenHeaders(): void {
  const dir = join(XEN_INCLUDE, "xen");
  const stamp = join(dir, "arch-wasm32.h");
  if (newer(stamp, [ARCH_HEADER, join(XEN_HEADERS, "xen.h")])) return;
  rmSync(dir, { recursive: true, force: true });
  cpSync(XEN_HEADERS, dir, { recursive: true });
  const xenH = join(dir, "xen.h");
  const text = readFileSync(xenH, "utf8");
  const unsupported = '#else\n#error "Unsupported architecture"';
  if (!text.includes(unsupported))
    throw new Error(`${XEN_HEADERS}/xen.h: its architecture switch is not the one expected`);
  writeFileSync(
    xenH,
    text.replace(
      unsupported,
      `#elif defined(__wasm32__)\n#include "arch-wasm32.h"\n${unsupported}`,
    ),
  );
  // hvm/save.h's architecture switch too (domctl.h includes it): wasm32
  // has no HVM save records of its own.
  const saveH = join(dir, "hvm", "save.h");
  const save = readFileSync(saveH, "utf8");
  const unsupportedSave = '#else\n#error "unsupported architecture"';
  if (!save.includes(unsupportedSave))
    throw new Error(`${XEN_HEADERS}/hvm/save.h: its architecture switch is not the one expected`);
  writeFileSync(
    saveH,
    save.replace(
      unsupportedSave,
      `#elif defined(__wasm32__)\n/* wasm32: no HVM save records of its own */\n${unsupportedSave}`,
    ),
  );
  cpSync(ARCH_HEADER, stamp);
}

/** Builds the programs with PV drivers; false (having said why) without libxen-dev. */
function buildPvGuests(): boolean {
  if (!existsSync(join(XEN_HEADERS, "xen.h"))) {
    console.log(
      "hvm: not building the programs with PV drivers: install Debian's libxen-dev (apt-get install -y libxen-dev)",
    );
    return false;
  }
  prepareXenHeaders();
  const lib = [join(PV_SRC, "xenpv.c")];
  const deps = [join(PV_SRC, "xenpv.h"), ARCH_HEADER, ...lib];
  for (const f of readdirSync(PV_SRC).filter((f) => f.endsWith(".c") && f !== "xenpv.c")) {
    clang(
      join(HVM_DIR, f.replace(/\.c$/, ".wasm")),
      [join(PV_SRC, f), ...lib],
      PV_CFLAGS,
      [],
      deps,
    );
  }
  return true;
}

/** Builds every HVM guest; returns false (having said why) when the toolchain is missing. */
export function buildHvmGuests(): boolean {
  const missing = wasiToolchainMissing();
  if (missing.length > 0) {
    console.log(
      `hvm: not building the WASI guests: install Debian's ${missing.join(", ")} (apt-get install -y ${missing.join(" ")})`,
    );
    return false;
  }
  mkdirSync(HVM_DIR, { recursive: true });
  for (const f of readdirSync(SRC).filter((f) => f.endsWith(".c"))) {
    clang(join(HVM_DIR, f.replace(/\.c$/, ".wasm")), [join(SRC, f)]);
  }
  buildZopfli();
  buildSqlite();
  return buildPvGuests();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const ok = buildHvmGuests();
  if (ok) console.log(`hvm: built the WASI guests into ${HVM_DIR.replace(ROOT + "/", "")}/`);
  if (!ok && process.argv.includes("--require")) process.exit(1);
}
