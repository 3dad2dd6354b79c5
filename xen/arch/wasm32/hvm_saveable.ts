/**
 * Saveable HVM programs (xl.cfg `nomigrate = 0` for `type = "hvm"`): the
 * program's wasm stack made into data, so that its vCPU can be saved where
 * it is and run on in another domain (docs/hvm.md, "Saving an HVM guest").
 *
 * An HVM vCPU runs its program as compiled on a thread of its own; while it
 * runs, its call stack is the engine's, which nothing can read. Binaryen's
 * Asyncify pass, limited to the WASI imports and the loop check's
 * call_indirect, lets the vCPU's thread unwind the stack into memory at any
 * of those calls and rewind it later, in this instance or a new one. Every
 * mutable global of number type is exported as HVM_GLOBAL_PREFIX + its
 * index (the stack pointer among them): with the memory and the unwound
 * stack, that is all of the program's state.
 *
 * It costs: the pass took 2 s for a 200 KB program and a minute for
 * SQLite's 1.7 MB, and the prepared program ran about 12% slower in the
 * measurements in docs/hvm.md. So it is asked for per domain, and refused
 * above HVM_SAVEABLE_MAX_BYTES.
 */
import binaryen from "binaryen";
import { FEATURES, quietly } from "./instrument.js";
import { WASI_MODULE } from "../../include/public/hvm/wasm32_io.js";
import { CHECK_BUDGET_EXPORT } from "./hvm_checks.js";
import { HVM_GLOBAL_COUNT, HVM_GLOBAL_PREFIX, HVM_SAVEABLE_MAX_BYTES } from "./hvm_ctl.js";

/** Optimisation after the pass: 1 costs little time and most of the speed back. */
const OPTIMIZE_LEVEL = 1;

/**
 * Makes `code` (a program as hvm_image.ts prepared it: memory imported,
 * loop checks added) saveable. Throws naming the reason when it cannot be.
 */
export function makeSaveable(code: Uint8Array, size: number): Uint8Array {
  if (size > HVM_SAVEABLE_MAX_BYTES)
    throw new Error(
      `nomigrate=0: the program is ${size} bytes; tsxen makes programs of at most ${HVM_SAVEABLE_MAX_BYTES} bytes saveable (docs/hvm.md)`,
    );
  const m = binaryen.readBinary(code);
  try {
    // The loop checks' table is a second table: reference types.
    m.setFeatures(FEATURES | binaryen.Features.ReferenceTypes);
    if (!quietly(() => m.validate()))
      throw new Error("nomigrate=0: the program uses a wasm feature Asyncify cannot take");
    const imports: string[] = [];
    for (let i = 0; i < m.getNumFunctions(); i++) {
      const f = binaryen.getFunctionInfo(m.getFunctionByIndex(i));
      if (f.module === WASI_MODULE) imports.push(`${f.module}.${f.base}`);
    }
    const numberTypes = new Set([binaryen.i32, binaryen.i64, binaryen.f32, binaryen.f64]);
    let mutable = 0;
    for (let i = 0; i < m.getNumGlobals(); i++) {
      const g = binaryen.getGlobalInfo(m.getGlobalByIndex(i));
      if (!g.mutable) continue;
      mutable++;
      if (!numberTypes.has(g.type)) continue;
      const name = `${HVM_GLOBAL_PREFIX}${i}`;
      if (m.getExport(name)) throw new Error(`the program exports ${name}, a name tsxen uses`);
      // The loop check's countdown is exported already; a second export names it for the save.
      m.addGlobalExport(g.name, name);
    }
    m.addGlobal(HVM_GLOBAL_COUNT, binaryen.i32, false, m.i32.const(mutable));
    m.addGlobalExport(HVM_GLOBAL_COUNT, HVM_GLOBAL_COUNT);
    binaryen.setPassArgument("asyncify-imports", imports.join(","));
    binaryen.setOptimizeLevel(OPTIMIZE_LEVEL);
    binaryen.setShrinkLevel(0);
    m.runPasses(["asyncify"]);
    m.optimize();
    if (!m.getExport(CHECK_BUDGET_EXPORT) && imports.length === 0)
      throw new Error("nomigrate=0: the program has no call at which it could be saved");
    return m.emitBinary();
  } finally {
    binaryen.clearPassArguments();
    m.dispose();
  }
}
