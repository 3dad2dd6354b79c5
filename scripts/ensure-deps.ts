/**
 * Installs the Debian packages the test suite needs when they are missing:
 * libxen-dev (Xen's public headers, which the ABI test checks every constant
 * against), xenstore-utils (Xen's C xenstore clients) and xen-utils-4.17
 * (Xen's own test-xenstore), which the xenstored tests run against our
 * daemon, and qemu-utils (qemu-img), which checks and reads the qcow2
 * images blkback writes, and the WASI toolchain (clang, lld, wasi-libc,
 * clang's wasm32 runtime) with sqlite3 for the HVM guests, and chromium
 * for the web console's browser tests. As root with apt-get it installs them; otherwise it says what to
 * install and fails, rather than letting those tests be skipped.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";

const NEEDED: Array<{ pkg: string; file: string }> = [
  { pkg: "libxen-dev", file: "/usr/include/xen/xen.h" },
  { pkg: "xenstore-utils", file: "/usr/bin/xenstore-ls" },
  { pkg: "xen-utils-4.17", file: "/usr/lib/xen-4.17/bin/test-xenstore" },
  { pkg: "xen-utils-common", file: "/usr/bin/xenalyze" },
  { pkg: "qemu-utils", file: "/usr/bin/qemu-img" },
  // The HVM guests: C to WASI (extras/hvm/build.ts), and sqlite3 to read
  // back what SQLite's shell wrote as a guest.
  { pkg: "clang", file: "/usr/bin/clang" },
  { pkg: "lld", file: "/usr/bin/wasm-ld" },
  { pkg: "wasi-libc", file: "/usr/include/wasm32-wasi/stdio.h" },
  {
    pkg: "libclang-rt-14-dev-wasm32",
    file: "/usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a",
  },
  { pkg: "sqlite3", file: "/usr/bin/sqlite3" },
  // The web console's tests and benchmark drive it headless (test/browser.ts).
  { pkg: "chromium", file: "/usr/bin/chromium" },
];

const missing = NEEDED.filter((n) => !existsSync(n.file));
if (missing.length > 0) {
  const pkgs = missing.map((m) => m.pkg);
  const isRoot = process.getuid?.() === 0;
  if (!isRoot || !existsSync("/usr/bin/apt-get")) {
    console.error(
      `tsxen: the tests need Debian packages ${pkgs.join(", ")}: run 'sudo apt-get install -y ${pkgs.join(" ")}'`,
    );
    process.exit(1);
  }
  console.log(`tsxen: installing ${pkgs.join(", ")} for the tests`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
  execFileSync("apt-get", ["install", "-y", "-qq", ...pkgs], { stdio: "inherit", env });
}
