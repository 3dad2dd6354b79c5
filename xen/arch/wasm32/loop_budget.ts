/**
 * Loop budgets: the preemption check at an innermost loop's head is the
 * loop's only possible unwind point, so Asyncify guards every chunk of the
 * loop body, reading its state global on each iteration. This pass moves the
 * check out of the loop into a wrapper loop and counts iterations in a local
 * instead:
 *
 *     (loop $L (block CHECK S1 ... Sn))
 *
 * becomes
 *
 *     (loop $L$tsxen_check (block
 *       CHECK
 *       (local.set $budget (i32.const LOOP_BUDGET))
 *       (loop $L (block
 *         (br_if $L$tsxen_check (i32.eqz (local.get $budget)))
 *         (local.set $budget (i32.sub (local.get $budget) (i32.const 1)))
 *         S1 ... Sn))))
 *
 * The inner loop then holds no call at all, so Asyncify leaves it alone, and
 * a register decrement replaces the check on all but one iteration in
 * LOOP_BUDGET. Only loops whose body holds no call and no loop (innermost,
 * after inlining) and at most MAX_BUDGET_NODES expressions are taken, so the
 * work between two checks stays bounded. Run it after `log-execution` has
 * put the checks in (CHECK is its call), before they are made countdowns.
 */
import binaryen from "binaryen";
import { expressionsOf, info, setLoopBody, setLoopName, smallAndClean } from "./wasm_ir.js";

/** Iterations of a budgeted loop between two checks. */
export const LOOP_BUDGET = 16;
/** The largest loop body, in expressions, that gets a budget. */
export const MAX_BUDGET_NODES = 1024;

/** binaryen.js's BinaryenFunctionAddVar, which its typings leave out: a new local's index. */
const addVar = (
  binaryen as unknown as {
    _BinaryenFunctionAddVar(fn: binaryen.FunctionRef, type: binaryen.Type): number;
  }
)._BinaryenFunctionAddVar;

/** Whether the statements `stmts` may run LOOP_BUDGET times between checks. */
function budgetable(stmts: binaryen.ExpressionRef[]): boolean {
  return (
    stmts.length > 0 &&
    smallAndClean(
      stmts,
      MAX_BUDGET_NODES,
      (_, id) => id === binaryen.CallId || id === binaryen.CallIndirectId || id === binaryen.LoopId,
    )
  );
}

/**
 * Gives every loop of `m` that `log-execution` checked through `checkFn`
 * and that qualifies (above) a budget, in place; returns how many.
 */
export function budgetLoops(m: binaryen.Module, checkFn: string): number {
  let budgeted = 0;
  for (let f = 0; f < m.getNumFunctions(); f++) {
    const fnRef = m.getFunctionByIndex(f);
    const fn = binaryen.getFunctionInfo(fnRef);
    if (fn.module) continue; // an import has no body
    const all = expressionsOf(fn.body);
    if (all === undefined) continue;
    // Loops that qualify hold no loop, so none is inside another: one local serves them all.
    let budget = -1;
    for (const x of all) {
      if (binaryen.getExpressionId(x) !== binaryen.LoopId) continue;
      const loop = info<binaryen.LoopInfo>(x);
      if (!loop.name || binaryen.getExpressionId(loop.body) !== binaryen.BlockId) continue;
      const block = info<binaryen.BlockInfo>(loop.body);
      const [check, ...stmts] = block.children;
      if (check === undefined || binaryen.getExpressionId(check) !== binaryen.CallId) continue;
      if (info<binaryen.CallInfo>(check).target !== checkFn || !budgetable(stmts)) continue;
      if (budget < 0) budget = addVar(fnRef, binaryen.i32);
      const outer = `${loop.name}$tsxen_check`;
      const type = binaryen.getExpressionType(loop.body);
      // LOOP_BUDGET passes, then back through the check.
      const spent = m.br(outer, m.i32.eqz(m.local.get(budget, binaryen.i32)));
      const spend = m.local.set(
        budget,
        m.i32.sub(m.local.get(budget, binaryen.i32), m.i32.const(1)),
      );
      // The inner loop keeps the label, so the body's branches to it stay back edges.
      const inner = m.loop(loop.name, m.block(block.name || null, [spent, spend, ...stmts], type));
      setLoopName(x, outer);
      setLoopBody(
        x,
        m.block(null, [check, m.local.set(budget, m.i32.const(LOOP_BUDGET)), inner], type),
      );
      budgeted++;
    }
  }
  return budgeted;
}
