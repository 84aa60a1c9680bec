/**
 * Comparing numbers with tolerances: |got − want| ≤ atol + rtol·|want|, elementwise (NumPy's
 * allclose). NaN matches only NaN and an infinity only the same infinity.
 */
import { Tensor, memory } from '@scm/tensor';

export interface Tolerance {
  atol: number;
  rtol: number;
}

/** Unit roundoff of float32: the largest relative error of one rounding (2^-24 ≈ 6e-8). */
export const FLOAT32_ROUNDOFF = 2 ** -24;

/**
 * Tolerance for a float32 result checked against the float64 reference.
 *  - `rtol` (default 1e-5, about 170 roundoffs) covers elementwise work: a few roundings per
 *    op and float32 transcendentals, accurate to a few ulps.
 *  - `atol` grows with the reduction length: a float32 sum of `terms` values, each at most
 *    `termBound` in magnitude, is off by at most (terms + 1)·u·Σ|term| ≤ (terms + 1)·u·terms·termBound
 *    (recursive summation to first order, Higham, "Accuracy and Stability of Numerical
 *    Algorithms", §4.2). The bound is absolute because a sum may cancel: a small result of
 *    large terms carries the error of the terms, which no relative tolerance on the result covers.
 */
export function float32Tolerance({ terms = 1, termBound = 4, rtol = 1e-5, atol = 1e-6 }: { terms?: number; termBound?: number; rtol?: number; atol?: number } = {}): Tolerance {
  return { rtol, atol: atol + (terms + 1) * FLOAT32_ROUNDOFF * terms * termBound };
}

export interface Mismatch {
  index: number;
  got: number;
  want: number;
  /** The largest difference the tolerance allows at this element. */
  allowed: number;
  /** How many elements are out of tolerance. */
  count: number;
}

function withinTolerance(g: number, w: number, { atol, rtol }: Tolerance): boolean {
  if (Number.isNaN(w) || Number.isNaN(g)) return Number.isNaN(w) && Number.isNaN(g);
  if (!Number.isFinite(w) || !Number.isFinite(g)) return g === w;
  return Math.abs(g - w) <= atol + rtol * Math.abs(w);
}

/** The worst element out of tolerance (largest excess over what it allows), or null. */
export function findMismatch(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance): Mismatch | null {
  if (got.length !== want.length) return { index: -1, got: got.length, want: want.length, allowed: 0, count: Math.max(got.length, want.length) };
  let worst: Mismatch | null = null;
  let worstExcess = -1;
  let count = 0;
  for (let i = 0; i < got.length; i++) {
    const g = got[i], w = want[i];
    if (withinTolerance(g, w, tol)) continue;
    count++;
    const allowed = tol.atol + tol.rtol * Math.abs(w);
    const excess = Number.isFinite(g - w) ? Math.abs(g - w) - allowed : Infinity;
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = { index: i, got: g, want: w, allowed, count: 0 };
    }
  }
  return worst && { ...worst, count };
}

function describe(what: string, m: Mismatch, n: number, tol: Tolerance): string {
  if (m.index < 0) return `${what}: got ${m.got} values, expected ${m.want}`;
  return `${what}: ${m.count} of ${n} elements out of tolerance (atol ${tol.atol}, rtol ${tol.rtol}); worst at element ${m.index}: got ${m.got}, expected ${m.want}, |difference| ${Math.abs(m.got - m.want)} > ${m.allowed}`;
}

type Numbers = ArrayLike<number> | number;

/** Throw unless got and want agree elementwise within the tolerance. */
export function assertClose(got: Numbers, want: Numbers, tol: Partial<Tolerance> & { what?: string } = {}): void {
  const t = { atol: tol.atol ?? 1e-6, rtol: tol.rtol ?? 1e-5 };
  const g = typeof got === 'number' ? [got] : got;
  const w = typeof want === 'number' ? [want] : want;
  const m = findMismatch(g, w, t);
  if (m) throw new Error(describe(tol.what ?? 'values differ', m, g.length, t));
}

/**
 * Await a tensor's values (or take numbers) and check them against the expected ones: same
 * shape when both are tensors, elementwise within atol + rtol·|want| (default atol 1e-6,
 * rtol 1e-5, suited to float32).
 */
export async function expectClose(got: Tensor | Numbers, want: Tensor | Numbers, tol: Partial<Tolerance> & { what?: string } = {}): Promise<void> {
  if (got instanceof Tensor && want instanceof Tensor && (got.shape.length !== want.shape.length || got.shape.some((d, i) => d !== want.shape[i]))) {
    throw new Error(`${tol.what ?? 'values differ'}: shape [${got.shape.join(', ')}], expected [${want.shape.join(', ')}]`);
  }
  const read = async (v: Tensor | Numbers) => (v instanceof Tensor ? Array.from(await v.data()) : v);
  assertClose(await read(got), await read(want), tol);
}

/** Run fn and check that the live tensor and buffer counts are back where they started. */
export async function expectNoLeaks<T>(fn: () => T | Promise<T>): Promise<T> {
  const before = memory();
  const result = await fn();
  const after = memory();
  if (after.tensors !== before.tensors || after.buffers !== before.buffers) {
    throw new Error(`leak: ${after.tensors - before.tensors} tensors and ${after.buffers - before.buffers} buffers more than before (before ${JSON.stringify(before)}, after ${JSON.stringify(after)})`);
  }
  return result;
}
