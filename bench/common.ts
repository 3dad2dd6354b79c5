/** Shared pieces of the benchmarks: result rows, timing, statistics. */

/** One line of the benchmark table: a figure, its baseline from the same run, and the ratio. */
export interface Row {
  name: string;
  measured: string;
  baseline: string;
  /** measured / baseline (lower is better unless `higherIsBetter`). */
  ratio: number;
  target: string;
  /** Whether the target is met (informational: benchmarks never fail the suite). */
  met: boolean;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? NaN
    : s.length % 2
      ? s[s.length >> 1]!
      : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Best-of-`reps` wall time of `fn` in ms (best, to cut noise from the other core). */
export function bestMs(reps: number, fn: () => void): number {
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/**
 * Best-of-`reps` wall times of `a` and `b` in ms, run in turns (a, b, a,
 * b, ...) so that both see the same spells of a noisy machine.
 */
export function bestPairMs(reps: number, a: () => void, b: () => void): [number, number] {
  let bestA = Infinity;
  let bestB = Infinity;
  for (let i = 0; i < reps; i++) {
    bestA = Math.min(bestA, bestMs(1, a));
    bestB = Math.min(bestB, bestMs(1, b));
  }
  return [bestA, bestB];
}

export const fmt = (x: number, unit: string, digits = 2): string => `${x.toFixed(digits)} ${unit}`;

/** A figure reported without a ratio or a target. */
export function reportRow(name: string, measured: string, baseline = ""): Row {
  return { name, measured, baseline, ratio: NaN, target: "(report)", met: true };
}
