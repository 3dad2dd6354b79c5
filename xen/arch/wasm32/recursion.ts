/**
 * Self-recursion, one level inlined: a function that calls itself pays its
 * entry check and Asyncify's bookkeeping on every call, which on a small
 * recursive function (fib) is as much as its own work. For each small,
 * directly self-recursive function f this pass adds a copy f' and points f's
 * calls to itself at f'; Binaryen's inlining then folds f' into f, so that f
 * calls itself two levels down and makes half as many calls for the same
 * work. The work between two entry checks is still bounded (two copies of a
 * body of at most MAX_RECURSIVE_NODES expressions, loops checked as ever).
 *
 * Run it before the checks go in, followed by Binaryen's `inlining` pass.
 */
import binaryen from "binaryen";
import { childrenOf, info, setCallTarget } from "./wasm_ir.js";

/**
 * The largest recursive function copied, in expressions: at most what
 * instrument.ts lets Binaryen always inline, so that the copy is inlined.
 */
export const MAX_RECURSIVE_NODES = 40;

/** The calls `f` makes to itself, or undefined when it is too large or holds an unknown kind. */
function selfCalls(
  name: string,
  body: binaryen.ExpressionRef,
): binaryen.ExpressionRef[] | undefined {
  const stack = [body];
  const calls: binaryen.ExpressionRef[] = [];
  let count = 0;
  while (stack.length > 0) {
    const x = stack.pop()!;
    if (++count > MAX_RECURSIVE_NODES) return undefined;
    const kids = childrenOf(x);
    if (kids === null) return undefined;
    if (binaryen.getExpressionId(x) === binaryen.CallId) {
      const call = info<binaryen.CallInfo>(x);
      // A tail call to itself is a loop already; leave it.
      if (call.target === name && !call.isReturn) calls.push(x);
    }
    stack.push(...kids);
  }
  return calls;
}

/** Copies each small self-recursive function of `m` and retargets its self-calls; returns how many. */
export function splitSelfRecursion(m: binaryen.Module): number {
  const fns = Array.from({ length: m.getNumFunctions() }, (_, i) =>
    binaryen.getFunctionInfo(m.getFunctionByIndex(i)),
  );
  let split = 0;
  for (const f of fns) {
    if (f.module) continue; // an import has no body
    const calls = selfCalls(f.name, f.body);
    if (!calls || calls.length === 0) continue;
    const copy = `${f.name}$tsxen_recursion`;
    m.addFunction(copy, f.params, f.results, f.vars, m.copyExpression(f.body));
    for (const c of calls) setCallTarget(c, copy);
    split++;
  }
  return split;
}
