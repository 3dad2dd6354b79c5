/**
 * Asyncify's state in a local, and loops unswitched on it.
 *
 * Asyncify guards each chunk of code that a rewind must skip with a read of
 * its state global, `__asyncify_state`, so a loop that holds a possible
 * unwind point reads that global several times a pass, and V8 loads a
 * mutable global from the instance on every read. The state can change only
 * inside a call (the host's unwind and rewind calls are made from inside an
 * import), so within a function a local that is loaded at entry and again
 * after every call always holds the global's value. This pass, run right
 * after Asyncify, gives each function that reads the state such a local and
 * reads the local instead.
 *
 * Then each loop that holds a call gets a second copy of its body for
 * normal passes, in which the guards fold away (unswitchLoops, below): a
 * pass picks its copy by one test of the local at the loop head. Loop bodies
 * of more than MAX_UNSWITCH_NODES expressions are not copied (the loops
 * inside them still may be), which bounds the growth in code.
 *
 * A function is left as it is when it writes the state itself, or when a
 * call of it sits somewhere other than a statement (a block's child, an
 * `if` arm or a loop body, possibly under a `local.set` or `drop`), where
 * there is no place to reload the local right after the call.
 */
import binaryen from "binaryen";
import {
  childSlotsOf,
  childrenOf,
  type ChildSlot,
  expressionsOf,
  info,
  renameLabels,
  setLoopBody,
  type Ref,
} from "./wasm_ir.js";

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
    unswitchLoops(m, fn.body, local, `$tsxen_n${f}`);
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

/** The largest loop body, in expressions, that gets a copy for normal passes. */
export const MAX_UNSWITCH_NODES = 1000;

/** Asyncify's state while it rewinds. */
const REWINDING = 2;

/**
 * Unswitches every loop under `root` that holds a call on the state in
 * `local`:
 *
 *     (loop $L BODY)  becomes  (loop $L (if (i32.eqz state) FAST BODY))
 *
 * FAST is a copy of BODY for a normal pass, in which Asyncify's rewind
 * guards read the state as 0. In a normal pass the state is 0 except right
 * after a call that returns unwinding, and Asyncify tests for that first
 * thing after each call and leaves the function; those tests, and any read
 * of the state this pass does not know as a guard, keep reading the local.
 * A rewind comes back in through BODY, as before, and the next pass of the
 * loop is a normal one again. Loops inside BODY get the same treatment;
 * those inside FAST need none.
 */
function unswitchLoops(m: binaryen.Module, root: Ref, local: number, suffix: string): void {
  let n = 0;
  const visit = (tree: Ref): void => {
    for (const loop of outermostLoops(tree)) {
      const body = info<binaryen.LoopInfo>(loop).body;
      const all = expressionsOf(body);
      if (all === undefined || !all.some((x) => isCall(binaryen.getExpressionId(x)))) continue;
      // A body too large to copy may hold loops that are not.
      if (all.length > MAX_UNSWITCH_NODES) {
        visit(body);
        continue;
      }
      const fast = m.copyExpression(body);
      renameLabels(fast, `${suffix}_${n++}`);
      assumeNormal(m, fast, local);
      visit(body);
      setLoopBody(loop, m.if(m.i32.eqz(m.local.get(local, binaryen.i32)), fast, body));
    }
  };
  visit(root);
}

/** The loops under `root` (itself included) that no other loop under `root` holds. */
function outermostLoops(root: Ref): Ref[] {
  const out: Ref[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const x = stack.pop()!;
    if (binaryen.getExpressionId(x) === binaryen.LoopId) {
      out.push(x);
      continue;
    }
    stack.push(...(childrenOf(x) ?? []));
  }
  return out;
}

/**
 * Replaces by 0 the reads of the state in `tree` that are rewind guards:
 * `(i32.eqz state)`, `(i32.eq state REWINDING)` either way round, and a
 * select on the state (take the saved value when rewinding).
 */
function assumeNormal(m: binaryen.Module, tree: Ref, local: number): void {
  const isState = (x: Ref): boolean =>
    binaryen.getExpressionId(x) === binaryen.LocalGetId &&
    info<binaryen.LocalGetInfo>(x).index === local;
  const isRewinding = (x: Ref): boolean =>
    binaryen.getExpressionId(x) === binaryen.ConstId &&
    info<binaryen.ConstInfo>(x).value === REWINDING;
  const guardSlots = (x: Ref, slots: ChildSlot[]): ChildSlot[] => {
    const id = binaryen.getExpressionId(x);
    if (id === binaryen.UnaryId) {
      return info<binaryen.UnaryInfo>(x).op === binaryen.EqZInt32 ? slots : [];
    }
    if (id === binaryen.BinaryId) {
      const b = info<binaryen.BinaryInfo>(x);
      if (b.op !== binaryen.EqInt32) return [];
      return slots.filter((s) => isRewinding(s.field === "left" ? b.right : b.left));
    }
    if (id === binaryen.SelectId) return slots.filter((s) => s.field === "condition");
    return [];
  };
  const stack = [tree];
  while (stack.length > 0) {
    const x = stack.pop()!;
    const slots = childSlotsOf(x)!;
    const guards = guardSlots(x, slots);
    for (const s of slots) {
      if (isState(s.child) && guards.includes(s)) s.replace(m.i32.const(0));
      else stack.push(s.child);
    }
  }
}
