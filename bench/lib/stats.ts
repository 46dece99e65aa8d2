// Small statistics for benchmark figures: percentiles of a sample and the median/min/max summary
// every repeated measurement is reported as.

export interface Stat {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** How many samples the figure is made of. */
  readonly n: number;
}

/** Percentile by linear interpolation between closest ranks (p in 0..100). NaN for no values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (b - a) * (rank - lo);
}

/** Median, min and max of the finite values; null when there are none. */
export function summarize(values: readonly (number | null | undefined)[]): Stat | null {
  const finite = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  if (finite.length === 0) return null;
  return { median: percentile(finite, 50), min: Math.min(...finite), max: Math.max(...finite), n: finite.length };
}

export function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
