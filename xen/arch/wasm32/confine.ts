/**
 * Confinement of a guest kernel: the wasm instructions that would let a guest
 * hold the host thread or reach memory it was not given are refused or
 * rewritten before the preemption checks go in (instrument.ts). Every
 * instruction left does a bounded amount of work between two checks.
 *
 * - `memory.atomic.wait32/64` would block the host's only thread (Node's main
 *   thread may wait on a shared memory). It becomes a call to a helper that
 *   answers "not-equal" (1) when the value differs and otherwise yields the
 *   vCPU (SCHEDOP_yield through the kernel's own hypercall import) and answers
 *   "ok" (0): a spurious wake-up, which every futex user must already accept.
 * - `memory.fill` and `memory.copy` of more than BULK_CHUNK bytes become calls
 *   to helpers that check the bounds first (so a fault still writes nothing,
 *   as the instruction's would), then work in BULK_CHUNK pieces with a
 *   preemption check between pieces: a copy of 4 GiB is preemptible like a
 *   loop. Smaller ones run as the instruction, inside the helper.
 * - `memory.grow` becomes a call to the hypervisor's `xen.grow`, which
 *   populates the new pages from the domain's reservation (or answers -1), so
 *   that linear memory never holds a page the domain was not given.
 * - A `start` function would run inside instantiation, outside any slice,
 *   where nothing can preempt it (a loop there hung the host). It is taken
 *   out of the start section and called instead, once per instance, at the
 *   head of the entry points (`_start`, `_start_vcpu`), so it runs in the
 *   vCPU's first slice like any guest code.
 * - A table larger than MAX_TABLE_ENTRIES is refused (table.copy and
 *   table.init over it would be one long instruction).
 *
 * Features beyond instrument.ts's FEATURES (exceptions, tail calls, GC,
 * multiple memories, memory64...) are refused when the module is read, with
 * the feature named (see `refusedFeature`). docs/arch-wasm32.md lists all of it.
 */
import binaryen from "binaryen";
import { childSlotsOf, info, type Ref } from "./wasm_ir.js";
import {
  EXPORT_ENTRY,
  EXPORT_SECONDARY_ENTRY,
  IMPORT_GROW,
  IMPORT_HYPERCALL,
  IMPORT_MODULE,
} from "./config.js";
import { SCHEDOP_yield } from "../../include/public/sched.js";
import { HYPERVISOR } from "../../include/public/xen.js";

/** Bytes a bulk memory instruction moves between two preemption checks. */
export const BULK_CHUNK = 65536;
/** Largest table a kernel may declare, in entries. */
export const MAX_TABLE_ENTRIES = 1 << 20;

const COPY_FN = "tsxen_memory_copy";
const FILL_FN = "tsxen_memory_fill";
const WAIT32_FN = "tsxen_wait32";
const WAIT64_FN = "tsxen_wait64";
const GROW_FN = "tsxen_grow";
/** A per-instance flag: the module's start function has run. */
const STARTED = "tsxen_started";
/** The exports through which a vCPU's code is first entered. */
const ENTRY_EXPORTS: readonly string[] = [EXPORT_ENTRY, EXPORT_SECONDARY_ENTRY];

const { i32, i64, none } = binaryen;

/** Features a kernel may not use, with the names a reader knows them by. */
const OPTIONAL_FEATURES: ReadonlyArray<readonly [number, string]> = [
  [binaryen.Features.ExceptionHandling, "exception handling"],
  [binaryen.Features.TailCall, "tail calls"],
  [binaryen.Features.ReferenceTypes, "reference types"],
  [binaryen.Features.GC, "garbage-collected types"],
  [binaryen.Features.Memory64, "64-bit memory"],
  [binaryen.Features.MultiMemory, "multiple memories"],
  [binaryen.Features.RelaxedSIMD, "relaxed SIMD"],
  [binaryen.Features.ExtendedConst, "extended constant expressions"],
  [binaryen.Features.Strings, "strings"],
  [binaryen.Features.StackSwitching, "stack switching"],
  [binaryen.Features.SharedEverything, "shared-everything threads"],
  [binaryen.Features.FP16, "half-precision floats"],
];

/**
 * The name of the first refused feature that makes `m` validate, when `m`
 * does not validate with `allowed`; undefined when no single one does.
 */
export function refusedFeature(m: binaryen.Module, allowed: number): string | undefined {
  for (const [flag, name] of OPTIONAL_FEATURES) {
    m.setFeatures(allowed | flag);
    if (m.validate()) {
      m.setFeatures(allowed);
      return name;
    }
  }
  m.setFeatures(allowed);
  return undefined;
}

/**
 * Refuses what cannot be bounded and rewrites what can (see the module's
 * doc). `preemptFn` is the internal name of the `xen.preempt` import, which
 * the bulk helpers call between pieces. Throws an Error naming the breach.
 */
export function confineKernel(m: binaryen.Module, preemptFn: string): void {
  moveStartIntoEntries(m);
  for (let t = 0; t < m.getNumTables(); t++) {
    const table = binaryen.getTableInfo(m.getTableByIndex(t));
    if (table.initial > MAX_TABLE_ENTRIES) {
      throw new Error(
        `kernel's table ${table.name} has ${table.initial} entries; at most ${MAX_TABLE_ENTRIES} are allowed`,
      );
    }
  }
  let hypercall: string | undefined;
  const originals: binaryen.FunctionRef[] = [];
  for (let i = 0; i < m.getNumFunctions(); i++) {
    const fn = m.getFunctionByIndex(i);
    const f = binaryen.getFunctionInfo(fn);
    if (f.module === IMPORT_MODULE && f.base === IMPORT_HYPERCALL) {
      const params = binaryen.expandType(f.params);
      if (params.length !== 6 || params.some((t) => t !== i32) || f.results !== i32) {
        throw new Error(
          "kernel imports xen.hypercall with the wrong type; the contract is (i32, i32, i32, i32, i32, i32) -> i32",
        );
      }
      hypercall = f.name;
    }
    if (!f.module) originals.push(fn);
  }
  if (hypercall === undefined) throw new Error("kernel does not import xen.hypercall");

  let used = 0;
  const USE_COPY = 1;
  const USE_FILL = 2;
  const USE_WAIT32 = 4;
  const USE_WAIT64 = 8;
  const USE_GROW = 16;
  const rewrite = (e: Ref): Ref | undefined => {
    switch (binaryen.getExpressionId(e)) {
      case binaryen.MemoryCopyId: {
        const c = info<binaryen.MemoryCopyInfo>(e);
        used |= USE_COPY;
        return m.call(COPY_FN, [c.dest, c.source, c.size], none);
      }
      case binaryen.MemoryFillId: {
        const f = info<binaryen.MemoryFillInfo>(e);
        used |= USE_FILL;
        return m.call(FILL_FN, [f.dest, f.value, f.size], none);
      }
      case binaryen.AtomicWaitId: {
        const w = info<binaryen.AtomicWaitInfo>(e);
        const wide = w.expectedType === i64;
        used |= wide ? USE_WAIT64 : USE_WAIT32;
        const offset = (w as unknown as { offset: number }).offset ?? 0;
        return m.call(
          wide ? WAIT64_FN : WAIT32_FN,
          [w.ptr, m.i32.const(offset), w.expected, w.timeout],
          i32,
        );
      }
      case binaryen.MemoryGrowId: {
        used |= USE_GROW;
        return m.call(GROW_FN, [info<binaryen.MemoryGrowInfo>(e).delta], i32);
      }
      default:
        return undefined;
    }
  };
  for (const fn of originals) {
    const body = binaryen.getFunctionInfo(fn).body;
    if (!body) continue;
    const top = rewrite(body);
    if (top !== undefined) setFunctionBody(fn, top);
    const stack: Ref[] = [top ?? body];
    while (stack.length > 0) {
      const x = stack.pop()!;
      const slots = childSlotsOf(x);
      if (slots === null) {
        throw new Error(
          `kernel function ${binaryen.getFunctionInfo(fn).name} holds an instruction tsxen does not know (expression id ${binaryen.getExpressionId(x)})`,
        );
      }
      for (const s of slots) {
        const by = rewrite(s.child);
        if (by !== undefined) s.replace(by);
        stack.push(by ?? s.child);
      }
    }
  }
  if (used & USE_COPY) addCopy(m, preemptFn);
  if (used & USE_FILL) addFill(m, preemptFn);
  if (used & USE_WAIT32) addWait(m, WAIT32_FN, i32, hypercall);
  if (used & USE_WAIT64) addWait(m, WAIT64_FN, i64, hypercall);
  if (used & USE_GROW) {
    m.addFunctionImport(GROW_FN, IMPORT_MODULE, IMPORT_GROW, i32, i32);
  }
}

/** binaryen.js's Function.setBody, which its typings leave out. */
const setFunctionBody = (fn: binaryen.FunctionRef, body: Ref): void =>
  (
    binaryen as unknown as {
      Function: { setBody(fn: binaryen.FunctionRef, body: Ref): void };
    }
  ).Function.setBody(fn, body);

/** The start function, called once per instance from the entry points instead (see the module's doc). */
function moveStartIntoEntries(m: binaryen.Module): void {
  const start = m.getStart();
  if (!start) return;
  const startName = binaryen.getFunctionInfo(start).name;
  (m as unknown as { setStart(f: number): void }).setStart(0);
  m.addGlobal(STARTED, i32, true, m.i32.const(0));
  const entries: Array<{ external: string; internal: string }> = [];
  for (let i = 0; i < m.getNumExports(); i++) {
    const e = binaryen.getExportInfo(m.getExportByIndex(i));
    if (e.kind === binaryen.ExternalFunction && ENTRY_EXPORTS.includes(e.name))
      entries.push({ external: e.name, internal: e.value });
  }
  for (const { external, internal } of entries) {
    const f = binaryen.getFunctionInfo(m.getFunction(internal));
    const params = binaryen.expandType(f.params);
    const wrapper = `${STARTED}$${external}`;
    const args = params.map((t, i) => m.local.get(i, t));
    m.addFunction(
      wrapper,
      f.params,
      f.results,
      [],
      m.block(
        null,
        [
          m.if(
            m.i32.eqz(m.global.get(STARTED, i32)),
            m.block(null, [m.global.set(STARTED, m.i32.const(1)), m.call(startName, [], none)]),
          ),
          f.results === none
            ? m.call(internal, args, none)
            : m.return(m.call(internal, args, f.results)),
        ],
        f.results === none ? none : binaryen.unreachable,
      ),
    );
    m.removeExport(external);
    m.addFunctionExport(wrapper, external);
  }
}

const get = (m: binaryen.Module, i: number, t: number = i32): Ref => m.local.get(i, t);

/** Traps unless [addr, addr+len) lies inside linear memory (i64 arithmetic: no wrap). */
function boundsCheck(m: binaryen.Module, addr: Ref, len: Ref): Ref {
  return m.if(
    m.i64.gt_u(
      m.i64.add(m.i64.extend_u(addr), m.i64.extend_u(len)),
      m.i64.shl(m.i64.extend_u(m.memory.size()), m.i64.const(16n)),
    ),
    m.unreachable(),
  );
}

/** tsxen_memory_copy(dest, src, n): memory.copy in preemptible pieces. */
function addCopy(m: binaryen.Module, preemptFn: string): void {
  const [D, S, N] = [0, 1, 2];
  const C = (): Ref => m.i32.const(BULK_CHUNK);
  const step = (to: Ref, from: Ref): Ref => m.memory.copy(to, from, m.i32.const(BULK_CHUNK));
  m.addFunction(
    COPY_FN,
    binaryen.createType([i32, i32, i32]),
    none,
    [],
    m.block(null, [
      m.if(
        m.i32.le_u(get(m, N), C()),
        m.block(null, [m.memory.copy(get(m, D), get(m, S), get(m, N)), m.return()]),
      ),
      boundsCheck(m, get(m, D), get(m, N)),
      boundsCheck(m, get(m, S), get(m, N)),
      m.if(
        m.i32.le_u(get(m, D), get(m, S)),
        // Lower destination: pieces from the front, so no piece reads what an
        // earlier one wrote.
        m.loop(
          "fwd",
          m.block(null, [
            step(get(m, D), get(m, S)),
            m.local.set(D, m.i32.add(get(m, D), C())),
            m.local.set(S, m.i32.add(get(m, S), C())),
            m.local.set(N, m.i32.sub(get(m, N), C())),
            m.call(preemptFn, [], none),
            m.br("fwd", m.i32.gt_u(get(m, N), C())),
            m.memory.copy(get(m, D), get(m, S), get(m, N)),
          ]),
        ),
        // Higher destination: pieces from the back.
        m.loop(
          "back",
          m.block(null, [
            m.local.set(N, m.i32.sub(get(m, N), C())),
            step(m.i32.add(get(m, D), get(m, N)), m.i32.add(get(m, S), get(m, N))),
            m.call(preemptFn, [], none),
            m.br("back", m.i32.gt_u(get(m, N), C())),
            m.memory.copy(get(m, D), get(m, S), get(m, N)),
          ]),
        ),
      ),
    ]),
  );
}

/** tsxen_memory_fill(dest, value, n): memory.fill in preemptible pieces. */
function addFill(m: binaryen.Module, preemptFn: string): void {
  const [D, V, N] = [0, 1, 2];
  const C = (): Ref => m.i32.const(BULK_CHUNK);
  m.addFunction(
    FILL_FN,
    binaryen.createType([i32, i32, i32]),
    none,
    [],
    m.block(null, [
      m.if(
        m.i32.le_u(get(m, N), C()),
        m.block(null, [m.memory.fill(get(m, D), get(m, V), get(m, N)), m.return()]),
      ),
      boundsCheck(m, get(m, D), get(m, N)),
      m.loop(
        "fill",
        m.block(null, [
          m.memory.fill(get(m, D), get(m, V), C()),
          m.local.set(D, m.i32.add(get(m, D), C())),
          m.local.set(N, m.i32.sub(get(m, N), C())),
          m.call(preemptFn, [], none),
          m.br("fill", m.i32.gt_u(get(m, N), C())),
          m.memory.fill(get(m, D), get(m, V), get(m, N)),
        ]),
      ),
    ]),
  );
}

/**
 * tsxen_waitNN(ptr, offset, expected, timeout): 1 ("not-equal") when the
 * value at ptr+offset is not `expected`, else a yield and 0 ("ok"). Traps as
 * the instruction would on an address outside memory or misaligned.
 */
function addWait(m: binaryen.Module, name: string, type: number, hypercall: string): void {
  const [P, O, E] = [0, 1, 2];
  const ea = (): Ref => m.i64.add(m.i64.extend_u(get(m, P)), m.i64.extend_u(get(m, O)));
  const addr = m.i32.wrap(ea());
  const current = type === i64 ? m.i64.atomic.load(0, addr) : m.i32.atomic.load(0, addr);
  const differs =
    type === i64 ? m.i64.ne(current, get(m, E, i64)) : m.i32.ne(current, get(m, E, i32));
  const zero = m.i32.const(0);
  m.addFunction(
    name,
    binaryen.createType([i32, i32, type, i64]),
    i32,
    [],
    m.block(
      null,
      [
        m.if(m.i64.ge_u(ea(), m.i64.const(1n << 32n)), m.unreachable()),
        m.if(differs, m.return(m.i32.const(1))),
        m.drop(
          m.call(
            hypercall,
            [
              m.i32.const(HYPERVISOR.__HYPERVISOR_sched_op),
              m.i32.const(SCHEDOP_yield),
              zero,
              zero,
              zero,
              zero,
            ],
            i32,
          ),
        ),
        m.i32.const(0),
      ],
      i32,
    ),
  );
}
