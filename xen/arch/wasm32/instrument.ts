/**
 * Instruments a guest kernel so that its vCPUs can be preempted and can block.
 *
 * First the module is checked (V8's validator, then the features tsxen
 * allows) and confined (confine.ts): what could hold the host or reach
 * memory not given is rewritten or refused.
 *
 * 0. Small loops are unrolled (unroll.ts), so that their checks come once
 *    every few iterations, and small self-recursive functions get
 *    one level of themselves inlined (recursion.ts), so that they make half
 *    the calls; Binaryen's inlining pass then runs once before the checks.
 * 1. Binaryen's `log-execution` pass puts a call at every function entry and
 *    loop head. Its import is replaced by a function of our own that counts
 *    down a non-exported mutable global (one per instance, so per vCPU, and out
 *    of the guest's reach: no guest instruction can name it) and, every
 *    PREEMPT_CHECK_INTERVAL counts, calls the host import `xen.preempt`, which
 *    reads a host-owned word that says whether the slice is over. Innermost
 *    loops without calls get a budget in a local instead, their check moved
 *    to a wrapper loop that runs once every LOOP_BUDGET iterations
 *    (loop_budget.ts), so that Asyncify leaves the loop itself alone.
 * 2. That function is inlined at every site.
 * 3. Binaryen's Asyncify, limited to `xen.hypercall` and `xen.preempt`, lets the
 *    host unwind a vCPU's wasm stack inside either import and rewind it later.
 *    Each function then reads Asyncify's state from a local rather than its
 *    global (state_local.ts).
 *
 * This module is pure (bytes in, bytes out); kernel.ts runs it off the main
 * thread and caches the result.
 */
import { createRequire } from "node:module";
import binaryen from "binaryen";
import { stripKernel, type DataSegment } from "./binary.js";
import { UNROLL_FACTOR, unrollLoops } from "./unroll.js";
import { MAX_RECURSIVE_NODES, splitSelfRecursion } from "./recursion.js";
import { LOOP_BUDGET, budgetLoops } from "./loop_budget.js";
import { MAX_UNSWITCH_NODES, stateInLocals } from "./state_local.js";
import { confineKernel, refusedFeature } from "./confine.js";
import {
  IMPORT_GROW,
  IMPORT_HYPERCALL,
  IMPORT_MODULE,
  IMPORT_PREEMPT,
  PREEMPT_CHECK_INTERVAL,
  COUNTDOWN_EXPORT,
  GLOBAL_COUNT_EXPORT,
  GLOBAL_EXPORT_PREFIX,
} from "./config.js";

/** Features a wasm32 kernel may use: what Node 20's V8 accepts. */
export const FEATURES =
  binaryen.Features.MVP |
  binaryen.Features.Atomics |
  binaryen.Features.MutableGlobals |
  binaryen.Features.BulkMemory |
  binaryen.Features.BulkMemoryOpt |
  binaryen.Features.SignExt |
  binaryen.Features.NontrappingFPToInt |
  binaryen.Features.SIMD128 |
  binaryen.Features.Multivalue;

/** Options that change the instrumented output (and so the cache key). */
export interface InstrumentOptions {
  /** Binaryen optimize level after Asyncify: 0 is fast to build, 1–3 faster to run. */
  readonly optimizeLevel: number;
}

export const DEFAULT_INSTRUMENT_OPTIONS: InstrumentOptions = { optimizeLevel: 1 };

/** The output of instrumentation: the module to compile and the data to load. */
export interface InstrumentedKernel {
  readonly bytes: Uint8Array;
  readonly segments: DataSegment[];
  readonly minPages: number;
}

const COUNTER = "tsxen_preempt_countdown";
const CHECK_FN = "log_execution";
const PREEMPT_FN = "tsxen_preempt";
/** The global in which Asyncify keeps whether it is unwinding or rewinding. */
const ASYNCIFY_STATE = "__asyncify_state";
/** A function, exported while the passes run, whose use of memory keeps the memory import. */
const KEEP_MEMORY = "tsxen_keep_memory";

/**
 * Runs `fn` with this thread's stderr silenced: Binaryen's validator prints
 * every reason a module fails to it, and the reasons a hostile module fails
 * are many and not the log's business (the Error thrown names the cause).
 */
export function quietly<T>(fn: () => T): T {
  const write = process.stderr.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    return fn();
  } finally {
    process.stderr.write = write;
  }
}

/** Validates `m` without Binaryen printing the reasons to stderr. */
function validates(m: binaryen.Module): boolean {
  return quietly(() => m.validate() !== 0);
}

/** Instruments `module` (a guest kernel as built). Throws on a contract breach. */
export function instrumentKernel(
  module: Uint8Array,
  options: InstrumentOptions = DEFAULT_INSTRUMENT_OPTIONS,
): InstrumentedKernel {
  const stripped = stripKernel(module);
  // V8's validator before Binaryen's reader, which is not made for hostile
  // bytes (it may abort, and cannot be used again after that).
  if (!WebAssembly.validate(new Uint8Array(module))) {
    throw new Error("not a valid WebAssembly module (V8's validator rejects it)");
  }
  const m = binaryen.readBinary(stripped.bytes);
  try {
    m.setFeatures(FEATURES);
    if (!validates(m)) {
      const feature = quietly(() => refusedFeature(m, FEATURES));
      throw new Error(
        feature
          ? `kernel uses ${feature}, a wasm feature tsxen does not allow guests (docs/arch-wasm32.md)`
          : "kernel module does not validate",
      );
    }
    for (let i = 0; i < m.getNumFunctions(); i++) {
      const f = binaryen.getFunctionInfo(m.getFunctionByIndex(i));
      if (f.module === IMPORT_MODULE && (f.base === IMPORT_PREEMPT || f.base === IMPORT_GROW)) {
        throw new Error(`kernel imports xen.${f.base}, which belongs to the hypervisor`);
      }
    }
    // The memory import stays even in a kernel that never touches memory:
    // Asyncify would otherwise make a memory of its own for the save areas.
    m.addFunction(KEEP_MEMORY, binaryen.none, binaryen.i32, [], m.memory.size());
    m.addFunctionExport(KEEP_MEMORY, KEEP_MEMORY);
    m.addFunctionImport(PREEMPT_FN, IMPORT_MODULE, IMPORT_PREEMPT, binaryen.none, binaryen.none);
    confineKernel(m, PREEMPT_FN);

    unrollLoops(m);
    splitSelfRecursion(m);
    // Small functions, the recursion copies among them, are inlined before
    // the checks go in: a call that is gone needs no entry check.
    binaryen.setAlwaysInlineMaxSize(MAX_RECURSIVE_NODES);
    m.runPasses(["inlining"]);
    m.runPasses(["log-execution"]);
    budgetLoops(m, CHECK_FN);
    m.removeFunction(CHECK_FN);
    m.addGlobal(COUNTER, binaryen.i32, true, m.i32.const(PREEMPT_CHECK_INTERVAL));
    const count = m.global.get(COUNTER, binaryen.i32);
    m.addFunction(
      CHECK_FN,
      binaryen.i32,
      binaryen.none,
      [],
      m.block(null, [
        m.global.set(COUNTER, m.i32.sub(count, m.i32.const(1))),
        m.if(
          m.i32.le_s(m.global.get(COUNTER, binaryen.i32), m.i32.const(0)),
          m.block(null, [
            m.global.set(COUNTER, m.i32.const(PREEMPT_CHECK_INTERVAL)),
            m.call(PREEMPT_FN, [], binaryen.none),
          ]),
        ),
      ]),
    );
    m.runPasses(["inlining", "remove-unused-module-elements"]);
    binaryen.setPassArgument(
      "asyncify-imports",
      `${IMPORT_MODULE}.${IMPORT_HYPERCALL},${IMPORT_MODULE}.${IMPORT_PREEMPT}`,
    );
    binaryen.setOptimizeLevel(options.optimizeLevel);
    binaryen.setShrinkLevel(0);
    m.runPasses(["asyncify"]);
    stateInLocals(m, ASYNCIFY_STATE);
    if (options.optimizeLevel > 0) m.optimize();
    exportVcpuGlobals(m);
    m.removeExport(KEEP_MEMORY);
    m.removeFunction(KEEP_MEMORY);
    if (!m.validate()) throw new Error("instrumented kernel does not validate (Binaryen bug?)");
    return { bytes: m.emitBinary(), segments: stripped.segments, minPages: stripped.minPages };
  } finally {
    binaryen.clearPassArguments();
    m.dispose();
  }
}

/**
 * Exports every mutable global of number type (the kernel's own, the
 * preemption countdown, Asyncify's) as GLOBAL_EXPORT_PREFIX + its index:
 * with the linear memory and the save areas, they are all of a vCPU's
 * state, which saving a domain takes (xen/common/domain_context.ts). A v128
 * global cannot cross into JS; a kernel with one mutable is not savable,
 * which the save says.
 */
function exportVcpuGlobals(m: binaryen.Module): void {
  const numberTypes = new Set([binaryen.i32, binaryen.i64, binaryen.f32, binaryen.f64]);
  let mutable = 0;
  const n = m.getNumGlobals();
  for (let i = 0; i < n; i++) {
    const g = binaryen.getGlobalInfo(m.getGlobalByIndex(i));
    if (!g.mutable) continue;
    mutable++;
    if (!numberTypes.has(g.type)) continue;
    // The preemption countdown is the hypervisor's, not state to save: a
    // restore sets it afresh (a saved value could be any).
    const name = g.name === COUNTER ? COUNTDOWN_EXPORT : `${GLOBAL_EXPORT_PREFIX}${i}`;
    if (m.getExport(name))
      throw new Error(`kernel exports ${name}, a name that belongs to the hypervisor`);
    m.addGlobalExport(g.name, name);
  }
  // How many mutable globals there are in all: fewer exported means one
  // cannot be saved.
  m.addGlobal(GLOBAL_COUNT_EXPORT, binaryen.i32, false, m.i32.const(mutable));
  m.addGlobalExport(GLOBAL_COUNT_EXPORT, GLOBAL_COUNT_EXPORT);
}

/** Binaryen's package version, part of the cache key. */
export const BINARYEN_VERSION: string = (
  createRequire(import.meta.url)("binaryen/package.json") as { version: string }
).version;

/** A string that changes whenever instrumentation's output may change. */
export function instrumenterVersion(options: InstrumentOptions): string {
  return `binaryen-${BINARYEN_VERSION}-opt${options.optimizeLevel}-check${PREEMPT_CHECK_INTERVAL}-unroll${UNROLL_FACTOR}-rec${MAX_RECURSIVE_NODES}-budget${LOOP_BUDGET}-unswitch${MAX_UNSWITCH_NODES}-v11`;
}
