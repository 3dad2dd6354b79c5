/**
 * Struct layouts for the wasm32 guest ABI.
 *
 * Every structure that crosses the guest boundary is described once, here or in
 * the module of the header it belongs to, as a table of field offsets and sizes
 * in little-endian guest memory. Hypervisor code reads and writes guest structs
 * only through these tables, so one test of the table checks the whole ABI.
 */

/** One field of a guest-visible structure: byte offset and size. */
export interface Field {
  readonly offset: number;
  readonly size: number;
}

/** A guest-visible structure: its total size and its fields by C name. */
export interface Layout<F extends string> {
  readonly name: string;
  readonly size: number;
  readonly fields: { readonly [K in F]: Field };
}

/**
 * Builds a layout from fields listed in C declaration order, applying C's
 * natural alignment (each scalar aligned to its own size; arrays of bytes are
 * 1-aligned). `align` gives a field's alignment when it differs from its size
 * (arrays and nested structs).
 */
export function struct<F extends string>(
  name: string,
  decl: ReadonlyArray<readonly [F, number, number?]>,
): Layout<F> {
  let off = 0;
  let maxAlign = 1;
  const fields = {} as Record<F, Field>;
  for (const [field, size, alignArg] of decl) {
    const align = alignArg ?? (size >= 8 ? 8 : size);
    maxAlign = Math.max(maxAlign, align);
    off = Math.ceil(off / align) * align;
    fields[field] = { offset: off, size };
    off += size;
  }
  return { name, size: Math.ceil(off / maxAlign) * maxAlign, fields };
}
