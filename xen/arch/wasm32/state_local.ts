/**
 * Asyncify's state in a local: Asyncify guards each chunk of code that a
 * rewind must skip with a read of its state global, `__asyncify_state`, so a
 * loop that holds a possible unwind point reads that global several times a
 * pass, and V8 loads a mutable global from the instance on every read. The
 * state can change only inside a call (the host's unwind and rewind calls
 * are made from inside an import), so within a function a local that is
 * loaded at entry and again after every call always holds the global's
 * value. This pass, run right after Asyncify, gives each function that reads
 * the state such a local and reads the local instead; the optimizer then
 * keeps it in a register.
 *
 * A function is left as it is when it writes the state itself, or when a
 * call of it sits somewhere other than a statement (a block's child, an
 * `if` arm or a loop body, possibly under a `local.set` or `drop`), where
 * there is no place to reload the local right after the call.
 */
import binaryen from "binaryen";
import { childSlotsOf, info, type Ref } from "./wasm_ir.js";

/** binaryen.js's BinaryenFunctionAddVar, which its typings leave out: a new local's index. */
const addVar = (
  binaryen as unknown as {
    _BinaryenFunctionAddVar(fn: binaryen.FunctionRef, type: binaryen.Type): number;
  }
)._BinaryenFunctionAddVar;

const setBody = (
  binaryen as unknown as { Function: { setBody(fn: binaryen.FunctionRef, body: Ref): void } }
).Function.setBody;

const isCall = (id: number): boolean => id === binaryen.CallId || id === binaryen.CallIndirectId;

/** Moves every function's reads of global `state` to a local, where safe (above); returns how many functions. */
export function stateInLocals(m: binaryen.Module, state: string): number {
  let moved = 0;
  for (let f = 0; f < m.getNumFunctions(); f++) {
    const fnRef = m.getFunctionByIndex(f);
    const fn = binaryen.getFunctionInfo(fnRef);
    if (fn.module) continue;
    const plan = planFor(fn.body, state);
    if (plan === null || plan.reads.length === 0) continue;
    const local = addVar(fnRef, binaryen.i32);
    const reload = (): Ref => m.local.set(local, m.global.get(state, binaryen.i32));
    for (const r of plan.reads) r.replace(m.local.get(local, binaryen.i32));
    for (const s of plan.afterCalls) s.replace(m.block(null, [s.expr, reload()], binaryen.none));
    setBody(fnRef, m.block(null, [reload(), fn.body], binaryen.getExpressionType(fn.body)));
    moved++;
  }
  return moved;
}

interface Slot {
  readonly expr: Ref;
  readonly replace: (by: Ref) => void;
}

/**
 * The reads of `state` in the tree at `body`, and the statements holding a
 * call; null when the function must be left alone.
 */
function planFor(body: Ref, state: string): { reads: Slot[]; afterCalls: Slot[] } | null {
  const reads: Slot[] = [];
  const afterCalls: Slot[] = [];
  // Each entry: an expression, how to replace it, and whether it stands as a statement.
  const stack: Array<{ e: Ref; replace: (by: Ref) => void; statement: boolean; under?: Slot }> = [
    { e: body, replace: () => undefined, statement: true },
  ];
  while (stack.length > 0) {
    const { e, replace, statement, under } = stack.pop()!;
    const id = binaryen.getExpressionId(e);
    if (id === binaryen.GlobalGetId && info<binaryen.GlobalGetInfo>(e).name === state) {
      reads.push({ expr: e, replace });
    } else if (id === binaryen.GlobalSetId && info<binaryen.GlobalSetInfo>(e).name === state) {
      return null;
    } else if (isCall(id)) {
      const stmt = statement ? { expr: e, replace } : under;
      // A value-typed statement cannot take a block of type none in its place.
      if (stmt === undefined || binaryen.getExpressionType(stmt.expr) !== binaryen.none) {
        return null;
      }
      afterCalls.push(stmt);
    }
    const slots = childSlotsOf(e);
    if (slots === null) return null;
    const isStatementHolder =
      id === binaryen.BlockId || id === binaryen.IfId || id === binaryen.LoopId;
    const passesStatement = statement && (id === binaryen.LocalSetId || id === binaryen.DropId);
    for (const s of slots) {
      const childIsStatement =
        isStatementHolder && !(id === binaryen.IfId && s.field === "condition");
      stack.push({
        e: s.child,
        replace: s.replace,
        statement: childIsStatement,
        under: passesStatement ? { expr: e, replace } : undefined,
      });
    }
  }
  return { reads, afterCalls };
}
