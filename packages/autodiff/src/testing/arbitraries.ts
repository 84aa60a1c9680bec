/**
 * fast-check arbitraries for tensor code. They generate host data (`HostTensor`: shape,
 * values, dtype), not tensors: a property turns the data into tensors on the backend and
 * in the dtype it tests (`toTensor`, `withTensors`), and disposes them, so shrinking and
 * replaying a counterexample never leaks device memory.
 *
 * Every generated float lies on a dyadic grid (multiples of 2^-16 with few significant
 * bits), so it is exact in float32 and float64 alike: a float32 backend and the float64
 * reference see the same inputs, and only the computation differs.
 */
import fc from 'fast-check';
import { fromArray, sizeOf, type Backend, type BackendName, type DType, type Tensor } from '@scm/tensor';

/** Spacing of the value grid. */
export const GRID = 2 ** -16;

/**
 * Where values are drawn from:
 *  - `any`: [-2, 2];
 *  - `positive`: [0.25, 2] (log, sqrt, rsqrt, the base of pow);
 *  - `nonzero`: ±[0.25, 2] (divisors, reciprocal);
 *  - `unit`: [1/16, 15/16], inside the open unit interval;
 *  - `awayFromKinks`: ±[1/16, 2], away from the kink of relu, abs and sign at 0;
 *  - `awayFromIntegers`: fractional part in [1/8, 3/8] or [5/8, 7/8], away from the jumps
 *    of floor (integers) and round (half-integers);
 *  - `{ min, max }`: any interval (e.g. tan on [-1.2, 1.2]).
 * Domains with margins make finite differences valid: a central difference with step h
 * moves a value by at most 2h, far less than the margin.
 */
export type Domain = 'any' | 'positive' | 'nonzero' | 'unit' | 'awayFromKinks' | 'awayFromIntegers' | { min: number; max: number };

/** Host data of a tensor. `dtype` absent means a float tensor of whichever float dtype the test uses. */
export interface HostTensor {
  readonly shape: number[];
  readonly values: number[];
  readonly dtype?: 'int32' | 'bool';
}

function intervals(domain: Domain): [number, number][] {
  if (typeof domain === 'object') {
    if (!(domain.min <= domain.max)) throw new Error(`domain: min ${domain.min} > max ${domain.max}`);
    return [[domain.min, domain.max]];
  }
  switch (domain) {
    case 'any': return [[-2, 2]];
    case 'positive': return [[0.25, 2]];
    case 'nonzero': return [[-2, -0.25], [0.25, 2]];
    case 'unit': return [[1 / 16, 15 / 16]];
    case 'awayFromKinks': return [[-2, -1 / 16], [1 / 16, 2]];
    case 'awayFromIntegers': {
      const out: [number, number][] = [];
      for (let k = -2; k < 2; k++) out.push([k + 1 / 8, k + 3 / 8], [k + 5 / 8, k + 7 / 8]);
      return out;
    }
  }
}

function gridInterval([lo, hi]: [number, number]): fc.Arbitrary<number> {
  return fc.integer({ min: Math.ceil(lo / GRID), max: Math.floor(hi / GRID) }).map((k) => k * GRID);
}

/** One value of a domain. */
export function valueArb(domain: Domain = 'any'): fc.Arbitrary<number> {
  const parts = intervals(domain).map(gridInterval);
  return parts.length === 1 ? parts[0] : fc.oneof(...parts);
}

/** n values of a domain. */
export function valuesArb(n: number, domain: Domain = 'any'): fc.Arbitrary<number[]> {
  return fc.array(valueArb(domain), { minLength: n, maxLength: n });
}

/**
 * n pairwise distinct values, at least `gap` apart, in [min, max]: inputs of max, argmax,
 * maximum and sort-like ops, whose derivatives jump at ties.
 */
export function distinctValuesArb(n: number, { min = -2, max = 2, gap = 1 / 64 } = {}): fc.Arbitrary<number[]> {
  const slots = Math.floor((max - min) / gap) + 1;
  if (n > slots) throw new Error(`distinctValuesArb: ${n} values do not fit in [${min}, ${max}] with gap ${gap}`);
  return fc.uniqueArray(fc.integer({ min: 0, max: slots - 1 }), { minLength: n, maxLength: n }).map((ks) => ks.map((k) => min + k * gap));
}

export interface ShapeOptions {
  minRank?: number;
  maxRank?: number;
  /** Smallest dimension (0 allows empty tensors). */
  minDim?: number;
  maxDim?: number;
  /** Largest number of elements. */
  maxSize?: number;
}

/** Shapes of rank minRank..maxRank (default 0–4) with small dims, size-1 dims included. */
export function shapeArb({ minRank = 0, maxRank = 4, minDim = 1, maxDim = 4, maxSize = 64 }: ShapeOptions = {}): fc.Arbitrary<number[]> {
  return fc
    .integer({ min: minRank, max: maxRank })
    .chain((rank) => fc.array(fc.integer({ min: minDim, max: maxDim }), { minLength: rank, maxLength: rank }))
    .filter((s) => sizeOf(s) <= maxSize);
}

/**
 * `count` shapes that broadcast together (NumPy rules): each is a suffix of a common shape
 * with some dims set to 1, e.g. [3, 1] and [1, 4], [] and [2, 3], [2, 1, 5] and [4, 1].
 */
export function broadcastShapesArb(count = 2, opts: ShapeOptions = {}): fc.Arbitrary<number[][]> {
  return shapeArb(opts).chain((out) => {
    const one = fc
      .tuple(fc.integer({ min: 0, max: out.length }), fc.array(fc.integer({ min: 0, max: 2 }), { minLength: out.length, maxLength: out.length }))
      .map(([drop, coin]) => out.slice(drop).map((d, k) => (coin[k + drop] === 0 ? 1 : d)));
    return fc.tuple(...Array.from({ length: count }, () => one));
  });
}

const asShapeArb = (shape: readonly number[] | fc.Arbitrary<number[]>): fc.Arbitrary<number[]> =>
  shape instanceof fc.Arbitrary ? shape : fc.constant([...shape]);

/** A float tensor of a shape (or of shapes from an arbitrary) with values from a domain. */
export function tensorArb(shape: readonly number[] | fc.Arbitrary<number[]>, { domain = 'any' }: { domain?: Domain } = {}): fc.Arbitrary<HostTensor> {
  return asShapeArb(shape).chain((s) => valuesArb(sizeOf(s), domain).map((values) => ({ shape: s, values })));
}

/** Float tensors whose values are all pairwise distinct, across all of them (ties are kinks). */
export function distinctTensorsArb(shapes: readonly (readonly number[])[], opts: { min?: number; max?: number; gap?: number } = {}): fc.Arbitrary<HostTensor[]> {
  const sizes = shapes.map((s) => sizeOf(s));
  const total = sizes.reduce((a, b) => a + b, 0);
  const min = opts.min ?? -2, gap = opts.gap ?? 1 / 64;
  // Widen the default range when there are more values than slots in [-2, 2].
  const max = opts.max ?? Math.max(2, min + 2 * total * gap);
  return distinctValuesArb(total, { min, max, gap }).map((vals) => {
    let at = 0;
    return shapes.map((s, k) => {
      const values = vals.slice(at, at + sizes[k]);
      at += sizes[k];
      return { shape: [...s], values };
    });
  });
}

/** An int32 tensor of indices in [0, size). */
export function indexTensorArb(size: number, shape: readonly number[] | fc.Arbitrary<number[]>): fc.Arbitrary<HostTensor> {
  if (!(size >= 1)) throw new Error(`indexTensorArb: an axis of size ${size} has no valid index`);
  return asShapeArb(shape).chain((s) =>
    fc.array(fc.integer({ min: 0, max: size - 1 }), { minLength: sizeOf(s), maxLength: sizeOf(s) }).map((values) => ({ shape: s, values, dtype: 'int32' as const })),
  );
}

/** A bool tensor. */
export function boolTensorArb(shape: readonly number[] | fc.Arbitrary<number[]>): fc.Arbitrary<HostTensor> {
  return asShapeArb(shape).chain((s) =>
    fc.array(fc.boolean(), { minLength: sizeOf(s), maxLength: sizeOf(s) }).map((bs) => ({ shape: s, values: bs.map(Number), dtype: 'bool' as const })),
  );
}

/** Values at the edges of float arithmetic, all exact in float32 (1e30 rounds once, on both sides alike). */
export const EDGE_VALUES: readonly number[] = [0, -0, 1, -1, 0.5, -0.5, 2 ** -20, -(2 ** -20), 65504, -65504, Math.fround(1e30), Math.fround(-1e30), Infinity, -Infinity, NaN];

export function edgeValueArb(): fc.Arbitrary<number> {
  return fc.constantFrom(...EDGE_VALUES);
}

/** A float tensor mixing edge values (0, -0, ±inf, NaN, huge, tiny) with ordinary ones. */
export function edgeTensorArb(shape: readonly number[] | fc.Arbitrary<number[]>): fc.Arbitrary<HostTensor> {
  const value = fc.oneof(edgeValueArb(), valueArb('any'));
  return asShapeArb(shape).chain((s) => fc.array(value, { minLength: sizeOf(s), maxLength: sizeOf(s) }).map((values) => ({ shape: s, values })));
}

export interface ToTensorOptions {
  /** dtype of float host tensors (int32 and bool ones keep theirs). Default float32. */
  dtype?: 'float32' | 'float64';
  backend?: BackendName | Backend;
}

export function toTensor(h: HostTensor, { dtype = 'float32', backend }: ToTensorOptions = {}): Tensor {
  const dt: DType = h.dtype ?? dtype;
  return fromArray(h.values, h.shape, { dtype: dt, backend });
}

/** Make tensors from host data, run fn on them, and dispose them however fn ends. */
export async function withTensors<R>(hosts: readonly HostTensor[], opts: ToTensorOptions, fn: (tensors: Tensor[]) => R | Promise<R>): Promise<R> {
  const tensors: Tensor[] = [];
  try {
    for (const h of hosts) tensors.push(toTensor(h, opts));
    return await fn(tensors);
  } finally {
    for (const t of tensors) t.dispose();
  }
}
