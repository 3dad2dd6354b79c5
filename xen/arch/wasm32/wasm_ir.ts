/**
 * A few tools over Binaryen's IR for the instrumentation passes of this
 * directory: a walker that knows the expression kinds a wasm32 kernel may
 * hold (and says when it meets one it does not), and the two setters
 * binaryen.js has but its typings leave out.
 */
import binaryen from "binaryen";

/** Each expression kind the walker knows, with its child fields in evaluation order. */
const CHILD_FIELDS = new Map<number, readonly string[]>([
  [binaryen.LocalGetId, []],
  [binaryen.GlobalGetId, []],
  [binaryen.ConstId, []],
  [binaryen.NopId, []],
  [binaryen.UnreachableId, []],
  [binaryen.MemorySizeId, []],
  [binaryen.AtomicFenceId, []],
  [binaryen.DataDropId, []],
  [binaryen.BlockId, ["children"]],
  [binaryen.IfId, ["condition", "ifTrue", "ifFalse"]],
  [binaryen.LoopId, ["body"]],
  [binaryen.BreakId, ["condition", "value"]],
  [binaryen.SwitchId, ["condition", "value"]],
  [binaryen.CallId, ["operands"]],
  [binaryen.CallIndirectId, ["operands", "target"]],
  [binaryen.LocalSetId, ["value"]],
  [binaryen.GlobalSetId, ["value"]],
  [binaryen.UnaryId, ["value"]],
  [binaryen.DropId, ["value"]],
  [binaryen.ReturnId, ["value"]],
  [binaryen.LoadId, ["ptr"]],
  [binaryen.StoreId, ["ptr", "value"]],
  [binaryen.AtomicRMWId, ["ptr", "value"]],
  [binaryen.BinaryId, ["left", "right"]],
  [binaryen.SelectId, ["ifTrue", "ifFalse", "condition"]],
  [binaryen.MemoryGrowId, ["delta"]],
  [binaryen.AtomicCmpxchgId, ["ptr", "expected", "replacement"]],
  [binaryen.AtomicWaitId, ["ptr", "expected", "timeout"]],
  [binaryen.AtomicNotifyId, ["ptr", "notifyCount"]],
  [binaryen.MemoryCopyId, ["dest", "source", "size"]],
  [binaryen.MemoryFillId, ["dest", "value", "size"]],
  [binaryen.MemoryInitId, ["dest", "offset", "size"]],
]);

/** `e`'s expression info, typed as the caller knows it to be. */
export const info = <T extends binaryen.ExpressionInfo>(e: binaryen.ExpressionRef): T =>
  binaryen.getExpressionInfo(e) as T;

/** The child expressions of `e`, or null for a kind this walker does not know. */
export function childrenOf(e: binaryen.ExpressionRef): binaryen.ExpressionRef[] | null {
  const fields = CHILD_FIELDS.get(binaryen.getExpressionId(e));
  if (fields === undefined) return null;
  if (fields.length === 0) return [];
  const i = info<binaryen.ExpressionInfo>(e) as unknown as Record<string, unknown>;
  const out: binaryen.ExpressionRef[] = [];
  for (const f of fields) {
    const v = i[f];
    if (Array.isArray(v)) out.push(...(v as binaryen.ExpressionRef[]));
    else if (typeof v === "number" && v !== 0) out.push(v);
  }
  return out;
}

/** Replaces `loop`'s body (binaryen.js's Loop.setBody). */
export const setLoopBody: (loop: binaryen.ExpressionRef, body: binaryen.ExpressionRef) => void = (
  binaryen as unknown as {
    Loop: { setBody(loop: binaryen.ExpressionRef, body: binaryen.ExpressionRef): void };
  }
).Loop.setBody;

/** Points `call` at function `target` (binaryen.js's Call.setTarget). */
export const setCallTarget: (call: binaryen.ExpressionRef, target: string) => void = (
  binaryen as unknown as {
    Call: { setTarget(call: binaryen.ExpressionRef, target: string): void };
  }
).Call.setTarget;
