/**
 * Sample-quality metrics computed on the host (they are evaluated, never differentiated).
 *
 * Sliced Wasserstein-2 (Rabin et al. 2011): the mean over random unit directions θ of the
 * squared 1-D Wasserstein-2 distance between the projected point sets, then the square root:
 *   SW2(X, Y) = sqrt( E_θ W2²(θᵀX, θᵀY) )
 * In 1-D, W2 between empirical distributions is the L2 distance between sorted samples
 * (quantile functions); sets of different sizes are compared at common quantile levels.
 */
import { random } from '@scm/tensor';

/** Points as rows of a flat array: n points of dimension d. */
export interface PointSet {
  data: ArrayLike<number>;
  n: number;
  d: number;
}

function project(p: PointSet, dir: Float64Array): Float64Array {
  const out = new Float64Array(p.n);
  for (let i = 0; i < p.n; i++) {
    let s = 0;
    for (let j = 0; j < p.d; j++) s += p.data[i * p.d + j] * dir[j];
    out[i] = s;
  }
  return out.sort();
}

/** The empirical quantile of sorted values at level q ∈ (0, 1) (step function). */
function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Squared 1-D W2 between two sorted samples. */
export function w2Squared1d(a: Float64Array, b: Float64Array): number {
  if (a.length === b.length) {
    let s = 0;
    for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
    return s / a.length;
  }
  const m = Math.max(a.length, b.length);
  let s = 0;
  for (let i = 0; i < m; i++) {
    const q = (i + 0.5) / m;
    s += (quantile(a, q) - quantile(b, q)) ** 2;
  }
  return s / m;
}

/** Unit directions drawn from a fixed key (Gaussian draws normalized). */
export function randomDirections(d: number, count: number, seed = 0): Float64Array[] {
  const bits = random.bits(random.key(seed), 2 * d * count + 2);
  const dirs: Float64Array[] = [];
  for (let k = 0; k < count; k++) {
    const v = new Float64Array(d);
    for (let j = 0; j < d; j++) {
      // Box-Muller on two 32-bit words
      const u1 = (bits[2 * (k * d + j)] + 1) / 4294967297, u2 = bits[2 * (k * d + j) + 1] / 4294967296;
      v[j] = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    }
    const norm = Math.hypot(...v);
    dirs.push(v.map((x) => x / norm));
  }
  return dirs;
}

/** SW2 between two point sets of the same dimension. */
export function slicedWasserstein2(x: PointSet, y: PointSet, directions = 256, seed = 0): number {
  if (x.d !== y.d) throw new Error(`slicedWasserstein2: dimensions differ (${x.d} vs ${y.d})`);
  if (x.n === 0 || y.n === 0) throw new Error('slicedWasserstein2: empty point set');
  const dirs = x.d === 1 ? [Float64Array.of(1)] : randomDirections(x.d, directions, seed);
  let total = 0;
  for (const dir of dirs) total += w2Squared1d(project(x, dir), project(y, dir));
  return Math.sqrt(total / dirs.length);
}

/** Mean and standard deviation of each coordinate (a cheap summary for reports). */
export function moments(p: PointSet): { mean: number[]; std: number[] } {
  const mean = new Array(p.d).fill(0), sq = new Array(p.d).fill(0);
  for (let i = 0; i < p.n; i++) for (let j = 0; j < p.d; j++) {
    const v = p.data[i * p.d + j];
    mean[j] += v;
    sq[j] += v * v;
  }
  return { mean: mean.map((m) => m / p.n), std: sq.map((s, j) => Math.sqrt(Math.max(0, s / p.n - (mean[j] / p.n) ** 2))) };
}

/**
 * Mean distance from each point of `from` to its nearest neighbour in `to` (brute force).
 * From samples to data it measures how far samples fall off the data (precision-like);
 * from data to samples, how much of the data the samples cover (recall-like). Unlike SW2,
 * it separates a sharp distribution from a Gaussian blob of the same covariance.
 */
export function meanNearestDistance(from: PointSet, to: PointSet): number {
  if (from.d !== to.d) throw new Error(`meanNearestDistance: dimensions differ (${from.d} vs ${to.d})`);
  let total = 0;
  for (let i = 0; i < from.n; i++) {
    let best = Infinity;
    for (let j = 0; j < to.n; j++) {
      let s = 0;
      for (let k = 0; k < from.d; k++) s += (from.data[i * from.d + k] - to.data[j * to.d + k]) ** 2;
      if (s < best) best = s;
    }
    total += Math.sqrt(best);
  }
  return total / from.n;
}

/** Mean and standard error (sample standard deviation / √n; null for one value) of a list. */
export function meanAndError(values: number[]): { mean: number; se: number | null } {
  const n = values.length;
  const mean = values.reduce((s, v) => s + v, 0) / n;
  if (n < 2) return { mean, se: null };
  const variance = values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1);
  return { mean, se: Math.sqrt(variance / n) };
}

/**
 * Several noise sets of one checkpoint, summarized: each sampler's mean and standard error
 * over the sets, and each later sampler against the first, paired by set (both start from
 * the same noises, so their difference varies much less than either figure): the mean
 * difference, its standard error and in how many sets the later sampler scored lower
 * (distances: lower is better).
 */
export function pairedSummary(perSet: Record<string, number>[], names: string[]) {
  if (!perSet.length || !names.length) throw new Error('pairedSummary: expected at least one set and one sampler');
  const columns = names.map((name) => perSet.map((row) => {
    if (typeof row[name] !== 'number') throw new Error(`pairedSummary: a set has no value for "${name}"`);
    return row[name];
  }));
  const stats = columns.map(meanAndError);
  return {
    sets: perSet.length,
    mean: Object.fromEntries(names.map((name, j) => [name, stats[j].mean])),
    se: Object.fromEntries(names.map((name, j) => [name, stats[j].se])),
    [`minus_${names[0]}`]: Object.fromEntries(names.slice(1).map((name, j) => {
      const diff = columns[j + 1].map((v, i) => v - columns[0][i]);
      return [name, { ...meanAndError(diff), lower_in: diff.filter((d) => d < 0).length }];
    })),
  };
}
