/**
 * xl's argument syntaxes: memory sizes (xl_utils.c parse_mem_size_kb: a
 * number with an optional b/k/m/g/t suffix, MiB without one) and cpu
 * ranges (`all`, `3`, `0-3,5`, `^2` to take one out), and how xl prints a
 * cpu bitmap (`all`, or ranges).
 */

/** A memory size in KiB, or undefined if `s` is not one. */
export function parseMemKiB(s: string): number | undefined {
  const m = /^(\d+)([bkmgtBKMGT]?)$/.exec(s);
  if (!m) return undefined;
  const n = Number(m[1]);
  switch (m[2]!.toLowerCase()) {
    case "b":
      return Math.floor(n / 1024);
    case "k":
      return n;
    case "":
    case "m":
      return n * 1024;
    case "g":
      return n * 1024 ** 2;
    default:
      return n * 1024 ** 3;
  }
}

/** Bits of the pCPUs `s` names (up to 32), or undefined if `s` is not a cpu range. */
export function parseCpuRange(s: string): number | undefined {
  let bits = 0;
  for (const part of s.split(",")) {
    const neg = part.startsWith("^");
    const p = neg ? part.slice(1) : part;
    let set: number;
    if (p === "all") set = 0xffffffff;
    else {
      const m = /^(\d+)(?:-(\d+))?$/.exec(p);
      if (!m) return undefined;
      const a = Number(m[1]);
      const b = m[2] === undefined ? a : Number(m[2]);
      if (a > b || b > 31) return undefined;
      set = 0;
      for (let i = a; i <= b; i++) set |= 1 << i;
    }
    bits = neg ? bits & ~set : bits | set;
  }
  return bits >>> 0;
}

/** xl's print_bitmap over `nrCpus` pCPUs: "all", "none" or ranges such as "0-3,5". */
export function formatBitmap(bits: number, nrCpus: number): string {
  const on = (i: number): boolean => ((bits >>> i) & 1) === 1;
  let all = true;
  for (let i = 0; i < nrCpus; i++) if (!on(i)) all = false;
  if (all) return "all";
  const parts: string[] = [];
  for (let i = 0; i < nrCpus; i++) {
    if (!on(i)) continue;
    let j = i;
    while (j + 1 < nrCpus && on(j + 1)) j++;
    parts.push(i === j ? String(i) : `${i}-${j}`);
    i = j;
  }
  return parts.length > 0 ? parts.join(",") : "none";
}
