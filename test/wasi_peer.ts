/**
 * The peers HVM guests are checked and measured against: the same WASI
 * binary under Node's own `node:wasi`, and yosys from the npm package
 * @yowasp/yosys (yosys.core.wasm, a 30 MB plain preview1 command, with its
 * data files unpacked from the package's resource bundle into a directory a
 * share can serve as /share).
 */
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const YOSYS_GEN = join(ROOT, "node_modules", "@yowasp", "yosys", "gen");
/** yosys as a plain WASI preview1 command module. */
export const YOSYS_WASM = join(YOSYS_GEN, "yosys.core.wasm");

type Tree = { [name: string]: string | URL | Uint8Array | Tree };

function unpack(dir: string, tree: Tree): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, v] of Object.entries(tree)) {
    const p = join(dir, name);
    if (typeof v === "string" || v instanceof Uint8Array) writeFileSync(p, v);
    else if (v instanceof URL) copyFileSync(v, p);
    else unpack(p, v);
  }
}

/** yosys's data directory (techmap.v, cell libraries...), unpacked once into build/; its path. */
export async function yosysShare(): Promise<string> {
  const dir = join(ROOT, "build", "yosys-share");
  if (existsSync(join(dir, "share", "techmap.v"))) return join(dir, "share");
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  const res = (await import(pathToFileURL(join(YOSYS_GEN, "resources-yosys.js")).href)) as {
    filesystem: Tree;
  };
  unpack(tmp, res.filesystem);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return join(dir, "share");
}

/**
 * Runs `wasm` under node:wasi with `args` (argv[0] first) and `preopens`
 * (guest path → host directory), its stdout and stderr into `outFile`;
 * returns its exit code and how long compiling and running took (ms).
 */
export async function runNodeWasi(
  wasm: string,
  args: string[],
  preopens: Record<string, string>,
  outFile: string,
): Promise<{ code: number; compileMs: number; runMs: number }> {
  // Imported when first used: node:wasi prints an experimental-feature
  // warning as it loads, which would reach every command that imports this.
  const { WASI } = await import("node:wasi");
  const out = openSync(outFile, "w");
  try {
    const wasi = new WASI({
      version: "preview1",
      args,
      env: {},
      preopens,
      stdout: out,
      stderr: out,
      returnOnExit: true,
    });
    const t0 = performance.now();
    const module = await WebAssembly.compile(readFileSync(wasm));
    const t1 = performance.now();
    const instance = await WebAssembly.instantiate(module, {
      wasi_snapshot_preview1: wasi.wasiImport,
    });
    const code = wasi.start(instance);
    return { code, compileMs: t1 - t0, runMs: performance.now() - t1 };
  } finally {
    try {
      closeSync(out);
    } catch {
      // node:wasi closed it with the program's descriptors.
    }
  }
}

/** yosys's output without the lines that measure time (they differ from run to run). */
export function yosysComparable(out: string): string {
  return out
    .split("\n")
    .filter((l) => !/CPU: user|Time spent|^Yosys \d/.test(l))
    .join("\n");
}
