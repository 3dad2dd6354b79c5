/**
 * Loop unrolling for instrumented kernels: a preemption check costs five or
 * six instructions, as much as a tight loop's own body, so the innermost
 * small loops are unrolled UNROLL_FACTOR times before the checks go in, and
 * their loop-head check then runs once every UNROLL_FACTOR iterations.
 *
 * Only one shape is unrolled, the one AssemblyScript (and Binaryen's own
 * output) gives `for` and `while` loops:
 *
 *     (loop $L (if C (then S1 ... Sn (br $L))))
 *
 * where the final `br $L` is the only way back to the loop head (no
 * `continue`), and C and the S are small (MAX_UNROLL_NODES in all) and
 * made only of expressions this walker knows. It becomes
 *
 *     (loop $L (block $exit
 *       (br_if $exit (i32.eqz C)) S1 ... Sn      ; UNROLL_FACTOR copies
 *       ...
 *       (br $L)))
 *
 * which evaluates C and the S in the same order, and leaves the loop where
 * the original did; labels defined inside C and the S (inner loops and
 * blocks) are renamed in each copy. Inner loops keep their own checks, so
 * the work between two checks stays bounded (UNROLL_FACTOR ×
 * MAX_UNROLL_NODES expressions, plus calls, which have their own entry
 * checks), and a hostile kernel is still descheduled on time.
 */
import binaryen from "binaryen";
import { childrenOf, expressionsOf, info, renameLabels, setLoopBody } from "./wasm_ir.js";

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
  let count = 0;
  for (const part of parts) {
    const all = expressionsOf(part);
    if (all === undefined) return false;
    count += all.length;
    if (count > MAX_UNROLL_NODES) return false;
    for (const x of all) {
      const id = binaryen.getExpressionId(x);
      if (id === binaryen.BreakId && info<binaryen.BreakInfo>(x).name === name) return false;
      if (id === binaryen.SwitchId) {
        const sw = info<binaryen.SwitchInfo>(x);
        if (sw.defaultName === name || sw.names.includes(name)) return false;
      }
    }
  }
  return true;
}

/** The parts of a loop of the unrollable shape, or undefined. */
function unrollable(
  loop: binaryen.ExpressionRef,
):
  | { name: string; exit: string; cond: binaryen.ExpressionRef; stmts: binaryen.ExpressionRef[] }
  | undefined {
  const { name, body } = info<binaryen.LoopInfo>(loop);
  if (!name || binaryen.getExpressionId(body) !== binaryen.IfId) return undefined;
  const branch = info<binaryen.IfInfo>(body);
  if (branch.ifFalse || binaryen.getExpressionId(branch.ifTrue) !== binaryen.BlockId) {
    return undefined;
  }
  const { children, name: exit } = info<binaryen.BlockInfo>(branch.ifTrue);
  const last = children[children.length - 1];
  if (last === undefined || binaryen.getExpressionId(last) !== binaryen.BreakId) return undefined;
  const br = info<binaryen.BreakInfo>(last);
  if (br.name !== name || br.condition || br.value) return undefined;
  const stmts = children.slice(0, -1);
  if (!copyable([branch.condition, ...stmts], name)) return undefined;
  return { name, exit, cond: branch.condition, stmts };
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
      // A branch to the `then` block's label leaves the loop, as one to the
      // exit block does: the exit block takes that label when there is one.
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
        parts.push(m.br(exit, m.i32.eqz(copy(loop.cond))));
        for (const s of loop.stmts) parts.push(copy(s));
      }
      parts.push(m.br(loop.name));
      setLoopBody(x, m.block(exit, parts, binaryen.none));
      unrolled++;
    }
  }
  return unrolled;
}
