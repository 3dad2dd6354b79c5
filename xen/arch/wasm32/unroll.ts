/**
 * Loop unrolling for instrumented kernels: a preemption check costs five or
 * six instructions, as much as a tight loop's own body, so the innermost
 * small loops are unrolled UNROLL_FACTOR times before the checks go in, and
 * their loop-head check then runs once every UNROLL_FACTOR iterations.
 *
 * Two shapes are unrolled: the one AssemblyScript gives `for` and `while`
 * loops, and the do-while one that optimizers and C compilers give:
 *
 *     (loop $L (if C (then S1 ... Sn (br $L))))
 *     (loop $L (block S1 ... Sn (br_if $L C)))
 *
 * where the final branch is the only way back to the loop head (no
 * `continue`), and C and the S are small (MAX_UNROLL_NODES in all) and
 * made only of expressions this walker knows. They become
 *
 *     (loop $L (block $exit
 *       (br_if $exit (i32.eqz C)) S1 ... Sn      ; UNROLL_FACTOR copies
 *       ...
 *       (br $L)))
 *     (loop $L (block $exit
 *       S1 ... Sn (br_if $exit (i32.eqz C))      ; UNROLL_FACTOR - 1 copies
 *       ...
 *       S1 ... Sn (br_if $L C)))
 *
 * which evaluate C and the S in the same order, and leave the loop where
 * the original did; labels defined inside C and the S (inner loops and
 * blocks) are renamed in each copy. Inner loops keep their own checks, so
 * the work between two checks stays bounded (UNROLL_FACTOR ×
 * MAX_UNROLL_NODES expressions, plus calls, which have their own entry
 * checks), and a hostile kernel is still descheduled on time.
 */
import binaryen from "binaryen";
import { childrenOf, info, renameLabels, setLoopBody, smallAndClean } from "./wasm_ir.js";

/** Copies of a loop body between two loop-head checks. */
export const UNROLL_FACTOR = 4;
/** The largest loop body (condition and statements), in expressions, that is copied. */
export const MAX_UNROLL_NODES = 256;

/**
 * Whether the condition and statements `parts` of loop `name` may be
 * copied: known kinds only, no branch back to `name`, at most
 * MAX_UNROLL_NODES expressions in all. Loops and labels inside are fine:
 * each copy gets its own labels.
 */
function copyable(parts: binaryen.ExpressionRef[], name: string): boolean {
  return smallAndClean(parts, MAX_UNROLL_NODES, (x, id) => {
    if (id === binaryen.BreakId) return info<binaryen.BreakInfo>(x).name === name;
    if (id !== binaryen.SwitchId) return false;
    const sw = info<binaryen.SwitchInfo>(x);
    return sw.defaultName === name || sw.names.includes(name);
  });
}

/** A loop of an unrollable shape, taken apart. */
interface Unrollable {
  name: string;
  /** The body's own label (a branch to it leaves the loop), or "". */
  exit: string;
  /** `while`: C is tested before each pass; `do`: after it. */
  kind: "while" | "do";
  cond: binaryen.ExpressionRef;
  stmts: binaryen.ExpressionRef[];
}

/** Whether `e` is `br $name` (when `cond`, `br_if $name C`) with no value. */
function backEdge(e: binaryen.ExpressionRef | undefined, name: string, cond: boolean): boolean {
  if (e === undefined || binaryen.getExpressionId(e) !== binaryen.BreakId) return false;
  const br = info<binaryen.BreakInfo>(e);
  return br.name === name && !br.value && (br.condition !== 0) === cond;
}

/** The parts of a loop of an unrollable shape, or undefined. */
function unrollable(loop: binaryen.ExpressionRef): Unrollable | undefined {
  const { name, body } = info<binaryen.LoopInfo>(loop);
  if (!name || binaryen.getExpressionType(loop) !== binaryen.none) return undefined;
  let shape: Unrollable | undefined;
  const id = binaryen.getExpressionId(body);
  if (id === binaryen.IfId) {
    // while: (loop $L (if C (then S... (br $L))))
    const branch = info<binaryen.IfInfo>(body);
    if (branch.ifFalse || binaryen.getExpressionId(branch.ifTrue) !== binaryen.BlockId) {
      return undefined;
    }
    const block = info<binaryen.BlockInfo>(branch.ifTrue);
    const last = block.children[block.children.length - 1];
    if (!backEdge(last, name, false)) return undefined;
    shape = {
      name,
      exit: block.name,
      kind: "while",
      cond: branch.condition,
      stmts: block.children.slice(0, -1),
    };
  } else if (id === binaryen.BlockId) {
    // do: (loop $L (block S... (br_if $L C)))
    const block = info<binaryen.BlockInfo>(body);
    const last = block.children[block.children.length - 1];
    if (!backEdge(last, name, true)) return undefined;
    shape = {
      name,
      exit: block.name,
      kind: "do",
      cond: info<binaryen.BreakInfo>(last!).condition,
      stmts: block.children.slice(0, -1),
    };
  }
  if (!shape || !copyable([shape.cond, ...shape.stmts], name)) return undefined;
  return shape;
}

/**
 * Unrolls every loop of the shape above in `m`'s defined functions, in
 * place, inner loops first (an outer loop's copies then hold unrolled inner
 * ones, within the size limit); returns how many. Run it before the
 * preemption checks go in.
 */
export function unrollLoops(m: binaryen.Module, factor = UNROLL_FACTOR): number {
  let unrolled = 0;
  for (let f = 0; f < m.getNumFunctions(); f++) {
    const fn = binaryen.getFunctionInfo(m.getFunctionByIndex(f));
    if (fn.module) continue; // an import has no body
    // Pre-order, so that walking it backwards meets inner loops first.
    const loops: binaryen.ExpressionRef[] = [];
    const stack = [fn.body];
    while (stack.length > 0) {
      const x = stack.pop()!;
      const kids = childrenOf(x);
      if (kids) stack.push(...kids.reverse());
      if (binaryen.getExpressionId(x) === binaryen.LoopId) loops.push(x);
    }
    for (const x of loops.reverse()) {
      const loop = unrollable(x);
      if (!loop) continue;
      // A branch to the body's own label leaves the loop, as one to the exit
      // block does: the exit block takes that label when there is one.
      const exit = loop.exit || `tsxen_unrolled_${f}_${unrolled}`;
      const parts: binaryen.ExpressionRef[] = [];
      for (let k = 0; k < factor; k++) {
        // The first copy reuses the original expressions; the others get
        // labels of their own.
        const copy = (e: binaryen.ExpressionRef): binaryen.ExpressionRef => {
          if (k === 0) return e;
          const c = m.copyExpression(e);
          renameLabels(c, `$tsxen_u${f}_${unrolled}_${k}`);
          return c;
        };
        if (loop.kind === "while") parts.push(m.br(exit, m.i32.eqz(copy(loop.cond))));
        for (const s of loop.stmts) parts.push(copy(s));
        if (loop.kind === "do") {
          // The last copy's test is the back edge; the others leave when it fails.
          const c = copy(loop.cond);
          parts.push(k === factor - 1 ? m.br(loop.name, c) : m.br(exit, m.i32.eqz(c)));
        }
      }
      if (loop.kind === "while") parts.push(m.br(loop.name));
      setLoopBody(x, m.block(exit, parts, binaryen.none));
      unrolled++;
    }
  }
  return unrolled;
}
