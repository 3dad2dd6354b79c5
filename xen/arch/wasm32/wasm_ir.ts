/**
 * A few tools over Binaryen's IR for the instrumentation passes of this
 * directory: a walker that knows the expression kinds a wasm32 kernel may
 * hold (and says when it meets one it does not), label renaming for copied
 * trees, and the setters binaryen.js has but its typings leave out.
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

/**
 * Calls `fn` for each child of `e` in evaluation order, with its field and,
 * for a list field, its index; false for a kind this walker does not know.
 */
function eachChild(
  e: binaryen.ExpressionRef,
  fn: (field: string, child: binaryen.ExpressionRef, index: number) => void,
): boolean {
  const fields = CHILD_FIELDS.get(binaryen.getExpressionId(e));
  if (fields === undefined) return false;
  if (fields.length === 0) return true;
  const i = info<binaryen.ExpressionInfo>(e) as unknown as Record<string, unknown>;
  for (const field of fields) {
    const v = i[field];
    if (Array.isArray(v)) (v as binaryen.ExpressionRef[]).forEach((c, k) => fn(field, c, k));
    else if (typeof v === "number" && v !== 0) fn(field, v, -1);
  }
  return true;
}

/** The child expressions of `e`, or null for a kind this walker does not know. */
export function childrenOf(e: binaryen.ExpressionRef): binaryen.ExpressionRef[] | null {
  const out: binaryen.ExpressionRef[] = [];
  return eachChild(e, (_, c) => out.push(c)) ? out : null;
}

export type Ref = binaryen.ExpressionRef;

/** binaryen.js's class name for each expression kind the walker knows, where it has setters. */
const KIND_NAMES = new Map<number, string>([
  [binaryen.BlockId, "Block"],
  [binaryen.IfId, "If"],
  [binaryen.LoopId, "Loop"],
  [binaryen.BreakId, "Break"],
  [binaryen.SwitchId, "Switch"],
  [binaryen.CallId, "Call"],
  [binaryen.CallIndirectId, "CallIndirect"],
  [binaryen.LocalSetId, "LocalSet"],
  [binaryen.GlobalSetId, "GlobalSet"],
  [binaryen.UnaryId, "Unary"],
  [binaryen.DropId, "Drop"],
  [binaryen.ReturnId, "Return"],
  [binaryen.LoadId, "Load"],
  [binaryen.StoreId, "Store"],
  [binaryen.AtomicRMWId, "AtomicRMW"],
  [binaryen.BinaryId, "Binary"],
  [binaryen.SelectId, "Select"],
  [binaryen.MemoryGrowId, "MemoryGrow"],
  [binaryen.AtomicCmpxchgId, "AtomicCmpxchg"],
  [binaryen.AtomicWaitId, "AtomicWait"],
  [binaryen.AtomicNotifyId, "AtomicNotify"],
  [binaryen.MemoryCopyId, "MemoryCopy"],
  [binaryen.MemoryFillId, "MemoryFill"],
  [binaryen.MemoryInitId, "MemoryInit"],
]);

/** A child of an expression, the field that holds it, and how to put another in its place. */
export interface ChildSlot {
  readonly field: string;
  readonly child: Ref;
  readonly replace: (by: Ref) => void;
}

type Setter = (parent: Ref, ...args: Array<Ref | number>) => void;

/** The children of `e` with their slots, or null for a kind this walker does not know. */
export function childSlotsOf(e: Ref): ChildSlot[] | null {
  const kind = (binaryen as unknown as Record<string, Record<string, Setter | undefined>>)[
    KIND_NAMES.get(binaryen.getExpressionId(e)) ?? ""
  ];
  const out: ChildSlot[] = [];
  const known = eachChild(e, (field, child, k) => {
    const name =
      k >= 0
        ? field === "children"
          ? "setChildAt"
          : "setOperandAt"
        : `set${field[0]!.toUpperCase()}${field.slice(1)}`;
    const set = kind?.[name];
    if (set === undefined) throw new Error(`binaryen.js has no ${name} for ${field}`);
    out.push({ field, child, replace: k >= 0 ? (by) => set(e, k, by) : (by) => set(e, by) });
  });
  return known ? out : null;
}

/** The setters binaryen.js has and its typings leave out. */
const setters = binaryen as unknown as {
  Loop: { setBody(loop: Ref, body: Ref): void; setName(loop: Ref, name: string): void };
  Block: { setName(block: Ref, name: string): void };
  Break: { setName(br: Ref, name: string): void };
  Switch: {
    setNameAt(sw: Ref, index: number, name: string): void;
    setDefaultName(sw: Ref, name: string): void;
  };
  Call: { setTarget(call: Ref, target: string): void };
};

/** Replaces `loop`'s body (binaryen.js's Loop.setBody). */
export const setLoopBody = (loop: Ref, body: Ref): void => setters.Loop.setBody(loop, body);

/** Renames `loop` (binaryen.js's Loop.setName); branches to it must follow. */
export const setLoopName = (loop: Ref, name: string): void => setters.Loop.setName(loop, name);

/** Points `call` at function `target` (binaryen.js's Call.setTarget). */
export const setCallTarget = (call: Ref, target: string): void =>
  setters.Call.setTarget(call, target);

/** Every expression of the tree at `root`; undefined if it holds a kind the walker does not know. */
export function expressionsOf(root: Ref): Ref[] | undefined {
  const all: Ref[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const x = stack.pop()!;
    const kids = childrenOf(x);
    if (kids === null) return undefined;
    all.push(x);
    stack.push(...kids);
  }
  return all;
}

/**
 * Whether the trees `parts` are fully known, hold at most `max` expressions
 * in all, and hold none that `refuse` refuses.
 */
export function smallAndClean(
  parts: readonly Ref[],
  max: number,
  refuse: (e: Ref, id: number) => boolean,
): boolean {
  let count = 0;
  for (const part of parts) {
    const all = expressionsOf(part);
    if (all === undefined) return false;
    count += all.length;
    if (count > max) return false;
    if (all.some((x) => refuse(x, binaryen.getExpressionId(x)))) return false;
  }
  return true;
}

/**
 * Gives every label defined inside the tree at `root` (blocks and loops) a
 * new name ending in `suffix`, and points the branches inside at the new
 * names; branches to labels outside are left alone. A copy of a tree needs
 * this to sit next to the original. The tree must be fully known
 * (expressionsOf is not undefined).
 */
export function renameLabels(root: Ref, suffix: string): void {
  const all = expressionsOf(root)!;
  const renamed = new Map<string, string>();
  for (const x of all) {
    const id = binaryen.getExpressionId(x);
    if (id !== binaryen.BlockId && id !== binaryen.LoopId) continue;
    const name = info<binaryen.BlockInfo | binaryen.LoopInfo>(x).name;
    if (!name) continue;
    renamed.set(name, `${name}${suffix}`);
    if (id === binaryen.BlockId) setters.Block.setName(x, `${name}${suffix}`);
    else setters.Loop.setName(x, `${name}${suffix}`);
  }
  for (const x of all) {
    const id = binaryen.getExpressionId(x);
    if (id === binaryen.BreakId) {
      const to = renamed.get(info<binaryen.BreakInfo>(x).name);
      if (to) setters.Break.setName(x, to);
    } else if (id === binaryen.SwitchId) {
      const sw = info<binaryen.SwitchInfo>(x);
      sw.names.forEach((n, i) => {
        const to = renamed.get(n);
        if (to) setters.Switch.setNameAt(x, i, to);
      });
      const to = sw.defaultName === null ? undefined : renamed.get(sw.defaultName);
      if (to) setters.Switch.setDefaultName(x, to);
    }
  }
}
