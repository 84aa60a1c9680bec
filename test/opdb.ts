/**
 * The op database (in the spirit of PyTorch's OpInfo): one entry per primitive of the
 * registry and per important composite. Each entry says how to call the op through the
 * public API, how to generate its inputs (shapes, parameters, value domains), with respect
 * to which inputs it is differentiable, and where it needs a tolerance other than the
 * default (with the reason). The forward suite (packages/tensor/test) and the derivative
 * suites (packages/autodiff/test) iterate it; `opdb.test.ts` fails when a registry
 * primitive has no entry.
 */
import fc from 'fast-check';
import * as T from '@scm/tensor';
import type { Tensor } from '@scm/tensor';
import {
  boolTensorArb, broadcastShapesArb, distinctTensorsArb, indexTensorArb, shapeArb, tensorArb,
  type Domain, type HostTensor,
} from '@scm/autodiff/testing';
import * as O from './oracle.js';

export interface OpCase<P = any> {
  inputs: HostTensor[];
  params: P;
}

export interface ToleranceOverride {
  atol?: number;
  rtol?: number;
  /** Why this op needs it (one line). */
  reason: string;
}

export type Category = 'unary' | 'binary' | 'comparison' | 'reduction' | 'movement' | 'indexing' | 'linalg' | 'conv' | 'composite' | 'dtype';

export interface OpInfo<P = any> {
  name: string;
  /** Registry primitives this entry exercises (checked by running it). */
  covers: readonly string[];
  category: Category;
  cases: fc.Arbitrary<OpCase<P>>;
  /** The op through the public API. Outputs may be a tensor or a list of tensors. */
  call(inputs: Tensor[], params: P): Tensor | Tensor[];
  /**
   * Inputs the output is differentiable in, at every point the case generator produces
   * (indices past the number of inputs are ignored: concat and stack take 1 to 3).
   */
  diff: readonly number[];
  /** Longest sum (number of terms) behind one output element, for float32 tolerances. */
  terms?(c: OpCase<P>): number;
  /** Bound on the magnitude of those terms (default 4: products of values in [-2, 2]). */
  termBound?: number;
  /**
   * Longest sum behind one cotangent element of the VJP, where it exceeds the forward one
   * times the broadcast factor (matmul, convolutions, gathers with repeated indices).
   */
  vjpTerms?(c: OpCase<P>): number;
  /** Float32 backends vs the float64 reference, when the default is not enough. */
  float32?: ToleranceOverride;
  /** Derivative checks in float64, when the default is not enough. */
  derivative?: ToleranceOverride;
  /** Finite-difference step for this op (default 1e-3 with the 4-point stencil). */
  fdStep?: { h: number; reason: string };
  /** An independent float64 implementation of the op (see oracle.ts). */
  oracle?(c: OpCase<P>): O.Host | O.Host[];
  /** Backends the op runs on (default all: float64-only entries say ['reference']). */
  backends?: readonly T.BackendName[];
}

type NoParams = Record<string, never>;
const none = {} as NoParams;

// ------------------------------ generators ----------------------------------

const int = (min: number, max: number) => fc.integer({ min, max });

function unaryCases(domain: Domain, shape = shapeArb()): fc.Arbitrary<OpCase<NoParams>> {
  return tensorArb(shape, { domain }).map((x) => ({ inputs: [x], params: none }));
}

function binaryCases(a: Domain, b: Domain): fc.Arbitrary<OpCase<NoParams>> {
  return broadcastShapesArb(2)
    .chain(([sa, sb]) => fc.tuple(tensorArb(sa, { domain: a }), tensorArb(sb, { domain: b })))
    .map((inputs) => ({ inputs, params: none }));
}

/** Inputs without ties anywhere (max, min, argmax, maximum, minimum). */
function distinctCases(count: number, opts = {}): fc.Arbitrary<OpCase<NoParams>> {
  return broadcastShapesArb(count, opts).chain((shapes) => distinctTensorsArb(shapes)).map((inputs) => ({ inputs, params: none }));
}

/** Small integers as floats, so that comparisons see equal values often. */
function coarseTensorArb(shape: number[]): fc.Arbitrary<HostTensor> {
  return fc.array(int(-2, 2), { minLength: O.sizeOf(shape), maxLength: O.sizeOf(shape) }).map((values) => ({ shape, values }));
}

function comparisonCases(): fc.Arbitrary<OpCase<NoParams>> {
  return broadcastShapesArb(2).chain(([sa, sb]) => fc.tuple(coarseTensorArb(sa), coarseTensorArb(sb))).map((inputs) => ({ inputs, params: none }));
}

type Axes = number | number[] | undefined;

/** undefined (all axes), one axis, or a subset, with negative spellings mixed in. */
function axesArb(rank: number): fc.Arbitrary<Axes> {
  if (rank === 0) return fc.constantFrom<Axes>(undefined, []);
  const subset = fc
    .subarray([...Array(rank).keys()])
    .chain((sub) => fc.array(fc.boolean(), { minLength: sub.length, maxLength: sub.length }).map((neg) => sub.map((a, k) => (neg[k] ? a - rank : a))));
  return fc.oneof(fc.constant<Axes>(undefined), int(-rank, rank - 1), subset);
}

const reducedCount = (shape: number[], axes: Axes) => O.normAxes(axes, shape.length).reduce((n, a) => n * shape[a], 1);

interface ReduceParams {
  axes: Axes;
  keepdims: boolean;
}

function reduceCases(values: (shape: number[]) => fc.Arbitrary<HostTensor>, opts: { minRank?: number } = {}): fc.Arbitrary<OpCase<ReduceParams>> {
  return shapeArb({ minRank: opts.minRank ?? 0 }).chain((shape) =>
    fc.record({ x: values(shape), axes: axesArb(shape.length), keepdims: fc.boolean() }).map(({ x, axes, keepdims }) => ({ inputs: [x], params: { axes, keepdims } })),
  );
}

const distinctOne = (shape: number[]) => distinctTensorsArb([shape]).map((xs) => xs[0]);

interface AxisParams {
  axis: number;
  keepdims: boolean;
}

/** A shape of rank >= 1 with one of its axes (given either way round). */
function shapeAndAxis(opts = {}): fc.Arbitrary<{ shape: number[]; axis: number }> {
  return shapeArb({ minRank: 1, ...opts }).chain((shape) => int(-shape.length, shape.length - 1).map((axis) => ({ shape, axis })));
}

/** A target shape with the same number of elements (dims from the prime factors), maybe with a -1. */
function reshapeTargetArb(size: number): fc.Arbitrary<number[]> {
  const primes: number[] = [];
  for (let n = size, p = 2; n > 1; ) {
    if (n % p === 0) {
      primes.push(p);
      n /= p;
    } else p++;
  }
  return int(Math.min(primes.length, 1), 4).chain((rank) =>
    fc.tuple(fc.array(int(0, Math.max(rank - 1, 0)), { minLength: primes.length, maxLength: primes.length }), fc.integer({ min: -1, max: rank - 1 })).map(([slot, infer]) => {
      const dims = new Array<number>(rank).fill(1);
      primes.forEach((p, k) => (dims[slot[k]] *= p));
      if (infer >= 0) dims[infer] = -1;
      return dims;
    }),
  );
}

/** Per-axis Python slice specs: null, an index, or start/stop/step with negative values. */
function sliceSpecsArb(shape: number[]): fc.Arbitrary<O.SliceSpec[]> {
  const spec = (n: number): fc.Arbitrary<O.SliceSpec> =>
    fc.oneof(
      { weight: 1, arbitrary: fc.constant(null) },
      { weight: 1, arbitrary: int(-n, n - 1) },
      {
        weight: 4,
        arbitrary: fc.record(
          { start: int(-n - 2, n + 2), stop: int(-n - 2, n + 2), step: fc.constantFrom(1, 2, 3, -1, -2, -3) },
          { requiredKeys: [] },
        ),
      },
    );
  return int(0, shape.length).chain((count) => fc.tuple(...shape.slice(0, count).map(spec)));
}

// ------------------------------ conv cases ----------------------------------

interface ConvParams {
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  groups: number;
}

interface ConvGeometry extends ConvParams {
  n: number;
  cg: number;
  og: number;
  h: number;
  w: number;
  kh: number;
  kw: number;
}

const pairArb = (lo: number, hi: number) => fc.tuple(int(lo, hi), int(lo, hi));
const convOut = (n: number, k: number, s: number, p: number, d: number) => Math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1;

const convGeometryArb: fc.Arbitrary<ConvGeometry> = fc
  .record({
    n: int(1, 2), groups: int(1, 2), cg: int(1, 2), og: int(1, 2), h: int(1, 5), w: int(1, 5), kh: int(1, 3), kw: int(1, 3),
    stride: pairArb(1, 2), padding: pairArb(0, 2), dilation: pairArb(1, 2),
  })
  .filter((g) => convOut(g.h, g.kh, g.stride[0], g.padding[0], g.dilation[0]) > 0 && convOut(g.w, g.kw, g.stride[1], g.padding[1], g.dilation[1]) > 0);

const convParamsOf = (g: ConvGeometry): ConvParams => ({ stride: g.stride, padding: g.padding, dilation: g.dilation, groups: g.groups });
const convOutShape = (g: ConvGeometry) => [g.n, g.og * g.groups, convOut(g.h, g.kh, g.stride[0], g.padding[0], g.dilation[0]), convOut(g.w, g.kw, g.stride[1], g.padding[1], g.dilation[1])];

function convCases(inputs: (g: ConvGeometry) => number[][]): fc.Arbitrary<OpCase<ConvGeometry>> {
  return convGeometryArb.chain((g) => fc.tuple(...inputs(g).map((s) => tensorArb(s))).map((ts) => ({ inputs: ts, params: g })));
}

// ------------------------------ entries -------------------------------------

const entries: OpInfo[] = [];
const add = <P>(e: OpInfo<P>) => entries.push(e as OpInfo);
const host = (h: HostTensor): O.Host => ({ shape: h.shape, values: h.values });
const mapHost = (h: HostTensor, fn: (v: number) => number): O.Host => ({ shape: h.shape, values: h.values.map(fn) });

// Unary primitives: [name, domain, op, math function].
const unary: [string, Domain, (x: Tensor) => Tensor, (v: number) => number, Partial<OpInfo>?][] = [
  ['neg', 'any', T.neg, (v) => -v],
  ['abs', 'awayFromKinks', T.abs, Math.abs],
  ['sign', 'awayFromKinks', T.sign, Math.sign],
  ['exp', 'any', T.exp, Math.exp],
  ['log', 'positive', T.log, Math.log],
  ['log1p', { min: -0.5, max: 2 }, T.log1p, Math.log1p],
  ['expm1', 'any', T.expm1, Math.expm1],
  ['sqrt', 'positive', T.sqrt, Math.sqrt],
  ['rsqrt', 'positive', T.rsqrt, (v) => 1 / Math.sqrt(v)],
  ['reciprocal', 'nonzero', T.reciprocal, (v) => 1 / v],
  ['sin', 'any', T.sin, Math.sin],
  ['cos', 'any', T.cos, Math.cos],
  // tan stays clear of its poles at ±π/2.
  ['tan', { min: -1.2, max: 1.2 }, T.tan, Math.tan],
  ['atan', 'any', T.atan, Math.atan],
  ['tanh', 'any', T.tanh, Math.tanh],
  ['sigmoid', 'any', T.sigmoid, (v) => 1 / (1 + Math.exp(-v))],
  ['erf', 'any', T.erf, O.erf, { float32: { atol: 3e-7, reason: 'float32 kernels use Abramowitz-Stegun 7.1.26, |error| < 1.5e-7' } }],
  ['floor', 'awayFromIntegers', T.floor, Math.floor],
  // round: half-way cases go up, on every backend.
  ['round', 'awayFromIntegers', T.round, (v) => Math.floor(v + 0.5)],
];
for (const [name, domain, op, fn, extra] of unary) {
  add<NoParams>({
    name, covers: [name], category: 'unary', cases: unaryCases(domain),
    call: ([x]) => op(x), diff: [0], oracle: (c) => mapHost(c.inputs[0], fn), ...extra,
  });
}

// Integer versions of the ops that accept int32 (no derivative).
for (const [name, op, fn] of [['neg', T.neg, (v: number) => -v], ['abs', T.abs, Math.abs], ['sign', T.sign, Math.sign]] as const) {
  add<NoParams>({
    name: `${name}.int32`, covers: [name], category: 'dtype',
    cases: shapeArb().chain((s) => coarseTensorArb(s)).map((x) => ({ inputs: [{ ...x, dtype: 'int32' as const }], params: none })),
    call: ([x]) => op(x), diff: [], oracle: (c) => mapHost(c.inputs[0], (v) => fn(v) + 0),
  });
}

const binary: [string, Domain, Domain, (a: Tensor, b: Tensor) => Tensor, (a: number, b: number) => number][] = [
  ['add', 'any', 'any', T.add, (a, b) => a + b],
  ['sub', 'any', 'any', T.sub, (a, b) => a - b],
  ['mul', 'any', 'any', T.mul, (a, b) => a * b],
  ['div', 'any', 'nonzero', T.div, (a, b) => a / b],
  ['pow', 'positive', 'any', T.pow, Math.pow],
  // atan2 jumps across the negative real axis (a = 0, b < 0): keep a away from 0.
  ['atan2', 'nonzero', 'nonzero', T.atan2, Math.atan2],
];
const binaryOracle = (fn: (a: number, b: number) => number) => (c: OpCase) => {
  const [a, b] = c.inputs.map(host);
  return O.build(O.broadcast(a.shape, b.shape), (k) => fn(O.getBroadcast(a, k), O.getBroadcast(b, k)));
};
for (const [name, da, db, op, fn] of binary) {
  add<NoParams>({ name, covers: [name], category: 'binary', cases: binaryCases(da, db), call: ([a, b]) => op(a, b), diff: [0, 1], oracle: binaryOracle(fn) });
}
for (const [name, op, fn] of [['maximum', T.maximum, Math.max], ['minimum', T.minimum, Math.min]] as const) {
  add<NoParams>({ name, covers: [name], category: 'binary', cases: distinctCases(2), call: ([a, b]) => op(a, b), diff: [0, 1], oracle: binaryOracle(fn) });
}
for (const [name, op] of [['add', T.add], ['sub', T.sub], ['mul', T.mul], ['maximum', T.maximum], ['minimum', T.minimum]] as const) {
  add<NoParams>({
    name: `${name}.int32`, covers: [name], category: 'dtype',
    cases: comparisonCases().map((c) => ({ ...c, inputs: c.inputs.map((x) => ({ ...x, dtype: 'int32' as const })) })),
    call: ([a, b]) => op(a, b), diff: [],
  });
}

const comparisons: [string, (a: Tensor, b: Tensor) => Tensor, (a: number, b: number) => boolean][] = [
  ['less', T.less, (a, b) => a < b],
  ['lessEqual', T.lessEqual, (a, b) => a <= b],
  ['greater', T.greater, (a, b) => a > b],
  ['greaterEqual', T.greaterEqual, (a, b) => a >= b],
  ['equal', T.equal, (a, b) => a === b],
  ['notEqual', T.notEqual, (a, b) => a !== b],
];
for (const [name, op, fn] of comparisons) {
  add<NoParams>({ name, covers: [name], category: 'comparison', cases: comparisonCases(), call: ([a, b]) => op(a, b), diff: [], oracle: binaryOracle((a, b) => +fn(a, b)) });
}

add<NoParams>({
  name: 'where', covers: ['where'], category: 'binary',
  cases: broadcastShapesArb(3).chain(([sc, sa, sb]) => fc.tuple(boolTensorArb(sc), tensorArb(sa), tensorArb(sb))).map((inputs) => ({ inputs, params: none })),
  call: ([c, a, b]) => T.where(c, a, b), diff: [1, 2],
  oracle: (c) => {
    const [cond, a, b] = c.inputs.map(host);
    return O.build(O.broadcast(cond.shape, a.shape, b.shape), (k) => (O.getBroadcast(cond, k) ? O.getBroadcast(a, k) : O.getBroadcast(b, k)));
  },
});

// cast: float -> int32 truncates toward zero, -> bool tests for nonzero; int32 -> float is exact.
add<NoParams>({
  name: 'cast.toInt32', covers: ['cast'], category: 'dtype', cases: unaryCases('any'),
  call: ([x]) => T.cast(x, 'int32'), diff: [], oracle: (c) => mapHost(c.inputs[0], (v) => Math.trunc(v) + 0),
});
add<NoParams>({
  name: 'cast.toBool', covers: ['cast'], category: 'dtype',
  cases: shapeArb().chain(coarseTensorArb).map((x) => ({ inputs: [x], params: none })),
  call: ([x]) => T.cast(x, 'bool'), diff: [], oracle: (c) => mapHost(c.inputs[0], (v) => +(v !== 0)),
});
add<NoParams>({
  name: 'cast.fromInt32', covers: ['cast'], category: 'dtype',
  cases: shapeArb().chain(coarseTensorArb).map((x) => ({ inputs: [{ ...x, dtype: 'int32' as const }], params: none })),
  call: ([x]) => T.mul(T.cast(x, 'float32'), 0.5), diff: [], oracle: (c) => mapHost(c.inputs[0], (v) => v * 0.5),
});
add<NoParams>({
  name: 'cast.float64ToFloat32', covers: ['cast'], category: 'dtype', cases: unaryCases('any'), backends: ['reference'],
  call: ([x]) => T.cast(T.mul(T.cast(x, 'float32'), 3), 'float64'), diff: [0],
  oracle: (c) => mapHost(c.inputs[0], (v) => Math.fround(v) * 3),
  // Linear, so any step is exact; a large one keeps the float32 rounding of x ± h·u small against h.
  fdStep: { h: 0.25, reason: 'the perturbed inputs round to float32; a large step (exact for a linear map) shrinks that error relative to h' },
  derivative: { atol: 1e-5, rtol: 1e-5, reason: 'values, tangents and cotangents pass through float32 (u32 ≈ 6e-8 relative), and FD sees the rounding of x ± h·u (u32·|x|/h ≈ 1e-6)' },
});

// Reductions.
add<ReduceParams>({
  name: 'sum', covers: ['sum'], category: 'reduction', cases: reduceCases((s) => tensorArb(s)),
  call: ([x], p) => T.sum(x, p.axes, p.keepdims), diff: [0], terms: (c) => reducedCount(c.inputs[0].shape, c.params.axes), termBound: 2,
  oracle: (c) => O.reduce(host(c.inputs[0]), c.params.axes, c.params.keepdims, (v) => v.reduce((a, b) => a + b, 0)),
});
add<ReduceParams>({
  name: 'sum.int32', covers: ['sum'], category: 'dtype', cases: reduceCases((s) => coarseTensorArb(s).map((x) => ({ ...x, dtype: 'int32' as const }))),
  call: ([x], p) => T.sum(x, p.axes, p.keepdims), diff: [],
  oracle: (c) => O.reduce(host(c.inputs[0]), c.params.axes, c.params.keepdims, (v) => v.reduce((a, b) => a + b, 0)),
});
add<ReduceParams>({
  name: 'sum.bool', covers: ['sum', 'cast'], category: 'dtype', cases: reduceCases((s) => boolTensorArb(s)),
  call: ([x], p) => T.sum(x, p.axes, p.keepdims), diff: [],
  oracle: (c) => O.reduce(host(c.inputs[0]), c.params.axes, c.params.keepdims, (v) => v.reduce((a, b) => a + b, 0)),
});
add<ReduceParams>({
  name: 'max', covers: ['max'], category: 'reduction', cases: reduceCases(distinctOne),
  call: ([x], p) => T.max(x, p.axes, p.keepdims), diff: [0],
  oracle: (c) => O.reduce(host(c.inputs[0]), c.params.axes, c.params.keepdims, (v) => Math.max(...v)),
});
add<ReduceParams>({
  name: 'max.int32', covers: ['max'], category: 'dtype', cases: reduceCases((s) => coarseTensorArb(s).map((x) => ({ ...x, dtype: 'int32' as const }))),
  call: ([x], p) => T.max(x, p.axes, p.keepdims), diff: [],
  oracle: (c) => O.reduce(host(c.inputs[0]), c.params.axes, c.params.keepdims, (v) => Math.max(...v)),
});
add<ReduceParams>({
  name: 'min', covers: ['max', 'neg'], category: 'composite', cases: reduceCases(distinctOne),
  call: ([x], p) => T.min(x, p.axes, p.keepdims), diff: [0],
  oracle: (c) => O.reduce(host(c.inputs[0]), c.params.axes, c.params.keepdims, (v) => Math.min(...v)),
});
const argCases = shapeAndAxis().chain(({ shape, axis }) => fc.record({ x: distinctOne(shape), keepdims: fc.boolean() }).map(({ x, keepdims }) => ({ inputs: [x], params: { axis, keepdims } })));
const argOracle = (better: (a: number, b: number) => boolean) => (c: OpCase<AxisParams>) =>
  O.reduce(host(c.inputs[0]), c.params.axis, c.params.keepdims, (v) => v.reduce((best, x, k) => (better(x, v[best]) ? k : best), 0));
add<AxisParams>({ name: 'argmax', covers: ['argmax'], category: 'reduction', cases: argCases, call: ([x], p) => T.argmax(x, p.axis, p.keepdims), diff: [], oracle: argOracle((a, b) => a > b) });
add<AxisParams>({ name: 'argmin', covers: ['argmax', 'neg'], category: 'composite', cases: argCases, call: ([x], p) => T.argmin(x, p.axis, p.keepdims), diff: [], oracle: argOracle((a, b) => a < b) });
add<AxisParams>({
  name: 'argmax.ties', covers: ['argmax'], category: 'reduction',
  cases: shapeAndAxis().chain(({ shape, axis }) => fc.record({ x: coarseTensorArb(shape), keepdims: fc.boolean() }).map(({ x, keepdims }) => ({ inputs: [x], params: { axis, keepdims } }))),
  // Ties resolve to the first index, as NumPy.
  call: ([x], p) => T.argmax(x, p.axis, p.keepdims), diff: [], oracle: argOracle((a, b) => a > b),
});

// Movement.
add<{ shape: number[] }>({
  name: 'reshape', covers: ['reshape'], category: 'movement',
  cases: tensorArb(shapeArb()).chain((x) => reshapeTargetArb(O.sizeOf(x.shape)).map((shape) => ({ inputs: [x], params: { shape } }))),
  call: ([x], p) => T.reshape(x, p.shape), diff: [0],
  oracle: (c) => {
    const n = O.sizeOf(c.inputs[0].shape);
    const known = O.sizeOf(c.params.shape.filter((d) => d !== -1));
    return { shape: c.params.shape.map((d) => (d === -1 ? n / known : d)), values: c.inputs[0].values };
  },
});
add<{ shape: number[] }>({
  name: 'broadcastTo', covers: ['broadcastTo'], category: 'movement',
  cases: broadcastShapesArb(1).chain(([s]) => shapeArb({ maxRank: 2, maxSize: 8 }).map((lead) => ({ s, lead }))).chain(({ s, lead }) =>
    tensorArb(s).map((x) => {
      // New leading dims, and every size-1 dim of the input stretched to 2 or 3.
      const target = [...lead, ...s.map((d, k) => (d === 1 ? (k % 2 ? 3 : 2) : d))];
      return { inputs: [x], params: { shape: target } };
    }),
  ),
  call: ([x], p) => T.broadcastTo(x, p.shape), diff: [0],
  oracle: (c) => O.build(c.params.shape, (k) => O.getBroadcast(host(c.inputs[0]), k)),
});
add<{ perm?: number[] }>({
  name: 'transpose', covers: ['transpose'], category: 'movement',
  cases: tensorArb(shapeArb({ minRank: 1 })).chain((x) =>
    fc.option(fc.shuffledSubarray([...x.shape.keys()], { minLength: x.shape.length, maxLength: x.shape.length }), { nil: undefined }).map((perm) => ({ inputs: [x], params: { perm } })),
  ),
  call: ([x], p) => T.transpose(x, p.perm), diff: [0], oracle: (c) => O.transpose(host(c.inputs[0]), c.params.perm),
});
add<{ specs: O.SliceSpec[] }>({
  name: 'slice', covers: ['slice', 'flip', 'reshape'], category: 'movement',
  cases: tensorArb(shapeArb({ minRank: 1, maxDim: 5 })).chain((x) => sliceSpecsArb(x.shape).map((specs) => ({ inputs: [x], params: { specs } }))),
  call: ([x], p) => T.slice(x, p.specs), diff: [0], oracle: (c) => O.slice(host(c.inputs[0]), c.params.specs),
});
add<{ widths: [number, number][]; value: number }>({
  name: 'pad', covers: ['pad'], category: 'movement',
  cases: tensorArb(shapeArb({ maxSize: 32 })).chain((x) =>
    fc.record({ widths: fc.tuple(...x.shape.map(() => pairArb(0, 2))), value: fc.constantFrom(0, 1.5, -2) }).map((params) => ({ inputs: [x], params })),
  ),
  call: ([x], p) => T.pad(x, p.widths, p.value), diff: [0], oracle: (c) => O.pad(host(c.inputs[0]), c.params.widths, c.params.value),
});
add<{ lo: number[]; interior: number[]; hi: number[]; value: number }>({
  name: 'pad.interior', covers: ['pad'], category: 'movement',
  cases: tensorArb(shapeArb({ maxSize: 24, maxRank: 3 })).chain((x) =>
    fc.record({
      lo: fc.tuple(...x.shape.map(() => int(0, 2))), interior: fc.tuple(...x.shape.map(() => int(0, 2))),
      hi: fc.tuple(...x.shape.map(() => int(0, 2))), value: fc.constantFrom(0, -1),
    }).map((params) => ({ inputs: [x], params })),
  ),
  call: ([x], p) => T.padPrim(x, { lo: p.lo, interior: p.interior, value: p.value, shape: x.shape.map((n, d) => p.lo[d] + n + (n - 1) * p.interior[d] + p.hi[d]) }),
  diff: [0],
  oracle: (c) => {
    const x = host(c.inputs[0]);
    const { lo, interior, hi, value } = c.params;
    return O.build(x.shape.map((n, d) => lo[d] + n + (n - 1) * interior[d] + hi[d]), (k) => {
      const src = k.map((kd, d) => (kd - lo[d]) / (interior[d] + 1));
      return src.every((s, d) => Number.isInteger(s) && s >= 0 && s < x.shape[d]) ? O.get(x, src) : value;
    });
  },
});
add<{ axes: Axes }>({
  name: 'flip', covers: ['flip'], category: 'movement',
  cases: tensorArb(shapeArb({ minRank: 1 })).chain((x) => axesArb(x.shape.length).map((axes) => ({ inputs: [x], params: { axes } }))),
  call: ([x], p) => T.flip(x, p.axes), diff: [0], oracle: (c) => O.flip(host(c.inputs[0]), c.params.axes),
});
add<{ axis: number }>({
  name: 'concat', covers: ['concat'], category: 'movement',
  cases: shapeAndAxis({ maxSize: 24 }).chain(({ shape, axis }) =>
    fc.array(int(1, 3), { minLength: 1, maxLength: 3 }).chain((lens) =>
      fc.tuple(...lens.map((n) => tensorArb(shape.map((d, k) => (k === (axis + shape.length) % shape.length ? n : d))))).map((inputs) => ({ inputs, params: { axis } })),
    ),
  ),
  call: (xs, p) => T.concat(xs, p.axis), diff: [0, 1, 2], oracle: (c) => O.concat(c.inputs.map(host), c.params.axis),
});
add<{ axis: number }>({
  name: 'stack', covers: ['concat', 'reshape'], category: 'composite',
  cases: shapeArb({ maxSize: 16, maxRank: 3 }).chain((shape) =>
    fc.tuple(int(-shape.length - 1, shape.length), int(1, 3)).chain(([axis, k]) =>
      fc.tuple(...Array.from({ length: k }, () => tensorArb(shape))).map((inputs) => ({ inputs, params: { axis } })),
    ),
  ),
  call: (xs, p) => T.stack(xs, p.axis), diff: [0, 1, 2],
  oracle: (c) => {
    const r = c.inputs[0].shape.length + 1;
    const a = c.params.axis < 0 ? c.params.axis + r : c.params.axis;
    return O.concat(c.inputs.map((x) => ({ shape: [...x.shape.slice(0, a), 1, ...x.shape.slice(a)], values: x.values })), a);
  },
});
add<{ axis: number; sections: number | number[] }>({
  name: 'split', covers: ['slice'], category: 'composite',
  cases: shapeAndAxis({ maxDim: 6 }).chain(({ shape, axis }) => {
    const n = shape[(axis + shape.length) % shape.length];
    const divisors = [...Array(n).keys()].map((k) => k + 1).filter((k) => n % k === 0);
    const sizes = fc.array(int(1, 3), { minLength: 1, maxLength: 4 }).filter((s) => s.reduce((a, b) => a + b, 0) <= n).map((s) => [...s, n - s.reduce((a, b) => a + b, 0)]);
    return fc.tuple(tensorArb(shape), fc.oneof(fc.constantFrom(...divisors), sizes)).map(([x, sections]) => ({ inputs: [x], params: { axis, sections } }));
  }),
  call: ([x], p) => T.split(x, p.sections, p.axis), diff: [0],
  oracle: (c) => {
    const x = host(c.inputs[0]);
    const a = c.params.axis < 0 ? c.params.axis + x.shape.length : c.params.axis;
    const n = x.shape[a];
    const sizes = typeof c.params.sections === 'number' ? new Array(c.params.sections).fill(n / c.params.sections) : c.params.sections;
    let at = 0;
    return sizes.map((s: number) => {
      const spec = x.shape.map((_, d) => (d === a ? { start: at, stop: at + s } : null));
      at += s;
      return O.slice(x, spec);
    });
  },
});
add<{ axis: number }>({
  name: 'expandDims.squeeze', covers: ['reshape'], category: 'composite',
  cases: tensorArb(shapeArb({ maxRank: 3 })).chain((x) => int(-x.shape.length - 1, x.shape.length).map((axis) => ({ inputs: [x], params: { axis } }))),
  call: ([x], p) => [T.expandDims(x, p.axis), T.squeeze(T.expandDims(T.exp(x), p.axis), p.axis)], diff: [0],
  oracle: (c) => {
    const x = host(c.inputs[0]);
    const a = c.params.axis < 0 ? c.params.axis + x.shape.length + 1 : c.params.axis;
    return [{ shape: [...x.shape.slice(0, a), 1, ...x.shape.slice(a)], values: x.values }, { shape: x.shape, values: x.values.map(Math.exp) }];
  },
});
add<{ shape: number[] }>({
  name: 'unbroadcast', covers: ['sum', 'reshape'], category: 'composite',
  cases: broadcastShapesArb(1).chain(([s]) => shapeArb({ maxRank: 1, maxSize: 3 }).chain((lead) => {
    const full = [...lead, ...s.map((d) => (d === 1 ? 3 : d))];
    return tensorArb(full).map((x) => ({ inputs: [x], params: { shape: s } }));
  })),
  call: ([x], p) => T.unbroadcast(x, p.shape), diff: [0], terms: (c) => O.sizeOf(c.inputs[0].shape) / Math.max(1, O.sizeOf(c.params.shape)), termBound: 2,
  oracle: (c) => {
    const x = host(c.inputs[0]);
    const out = { shape: c.params.shape, values: new Array<number>(O.sizeOf(c.params.shape)).fill(0) };
    const off = x.shape.length - out.shape.length;
    x.values.forEach((v, i) => {
      const k = O.unravel(i, x.shape).slice(off).map((kd, d) => (out.shape[d] === 1 ? 0 : kd));
      out.values[O.ravel(k, out.shape)] += v;
    });
    return out;
  },
});

// Indexing.
interface TakeParams {
  axis: number;
}
add<TakeParams>({
  name: 'take', covers: ['take'], category: 'indexing',
  cases: shapeAndAxis({ maxSize: 32 }).chain(({ shape, axis }) =>
    fc.tuple(tensorArb(shape), indexTensorArb(shape[(axis + shape.length) % shape.length], shapeArb({ maxRank: 2, maxDim: 3 }))).map(([x, idx]) => ({ inputs: [x, idx], params: { axis } })),
  ),
  call: ([x, idx], p) => T.take(x, idx, p.axis), diff: [0],
  // The VJP scatters: a position taken k times sums k cotangents.
  vjpTerms: (c) => O.sizeOf(c.inputs[1].shape),
  oracle: (c) => O.take(host(c.inputs[0]), host(c.inputs[1]), c.params.axis),
});
interface ScatterParams {
  axis: number;
  size: number;
}
add<ScatterParams>({
  name: 'scatterAdd', covers: ['scatterAdd'], category: 'indexing',
  cases: fc
    .record({ lead: shapeArb({ maxRank: 2, maxDim: 3 }), idxShape: shapeArb({ maxRank: 2, maxDim: 4 }), trail: shapeArb({ maxRank: 1, maxDim: 3 }), size: int(1, 4) })
    .chain(({ lead, idxShape, trail, size }) =>
      fc.tuple(tensorArb([...lead, ...idxShape, ...trail]), indexTensorArb(size, idxShape)).map(([v, idx]) => ({ inputs: [v, idx], params: { axis: lead.length, size } })),
    ),
  call: ([v, idx], p) => T.scatterAdd(v, idx, p.axis, p.size), diff: [0],
  terms: (c) => O.sizeOf(c.inputs[1].shape), termBound: 2,
  oracle: (c) => {
    const [v, idx] = c.inputs.map(host);
    const { axis, size } = c.params;
    const r = idx.shape.length;
    const shape = [...v.shape.slice(0, axis), size, ...v.shape.slice(axis + r)];
    const out = { shape, values: new Array<number>(O.sizeOf(shape)).fill(0) };
    v.values.forEach((val, i) => {
      const k = O.unravel(i, v.shape);
      out.values[O.ravel([...k.slice(0, axis), O.get(idx, k.slice(axis, axis + r)), ...k.slice(axis + r)], shape)] += val;
    });
    return out;
  },
});
add<{ n: number }>({
  name: 'oneHot', covers: ['equal', 'cast'], category: 'composite',
  cases: int(1, 5).chain((n) => indexTensorArb(n, shapeArb({ maxRank: 2 })).map((labels) => ({ inputs: [labels], params: { n } }))),
  call: ([labels], p) => T.oneHot(labels, p.n), diff: [],
  oracle: (c) => {
    const l = host(c.inputs[0]);
    return O.build([...l.shape, c.params.n], (k) => +(O.get(l, k.slice(0, -1)) === k[k.length - 1]));
  },
});

// Linear algebra.
add<NoParams>({
  name: 'matmul', covers: ['matmul'], category: 'linalg',
  cases: fc
    .record({ m: int(1, 4), k: int(1, 5), n: int(1, 4), batch: broadcastShapesArb(2, { maxRank: 2, maxDim: 3 }), vec: fc.constantFrom('none', 'left', 'right', 'both') })
    .chain(({ m, k, n, batch: [ba, bb], vec }) => {
      const sa = vec === 'left' || vec === 'both' ? [k] : [...ba, m, k];
      const sb = vec === 'right' || vec === 'both' ? [k] : [...bb, k, n];
      return fc.tuple(tensorArb(sa), tensorArb(sb)).map((inputs) => ({ inputs, params: none }));
    }),
  call: ([a, b]) => T.matmul(a, b), diff: [0, 1], terms: (c) => c.inputs[1].shape[c.inputs[1].shape.length === 1 ? 0 : c.inputs[1].shape.length - 2],
  // dA = ct·Bᵀ sums over N, dB = Aᵀ·ct over M, each also over the batch dims it was broadcast along.
  vjpTerms: (c) => {
    const [a, b] = c.inputs.map((h) => h.shape);
    const batch = O.sizeOf(O.broadcast(a.slice(0, -2), b.slice(0, -2)));
    return Math.max(a.length > 1 ? a[a.length - 2] : 1, b.length > 1 ? b[b.length - 1] : 1) * batch;
  },
  oracle: (c) => O.matmul(host(c.inputs[0]), host(c.inputs[1])),
});

// Convolutions.
add<ConvGeometry>({
  name: 'conv2d', covers: ['conv2d'], category: 'conv',
  cases: convCases((g) => [[g.n, g.cg * g.groups, g.h, g.w], [g.og * g.groups, g.cg, g.kh, g.kw]]),
  call: ([x, w], g) => T.conv2d(x, w, convParamsOf(g)), diff: [0, 1], terms: (c) => c.params.cg * c.params.kh * c.params.kw,
  // dx sums over the outputs and taps of a group, dw over the batch and output positions.
  vjpTerms: (c) => Math.max(c.params.og * c.params.kh * c.params.kw, O.sizeOf(convOutShape(c.params)) / c.params.og / c.params.groups),
  oracle: (c) => O.conv2d(host(c.inputs[0]), host(c.inputs[1]), convParamsOf(c.params)),
});
add<ConvGeometry>({
  name: 'conv2dInputGrad', covers: ['conv2dInputGrad'], category: 'conv',
  cases: convCases((g) => [convOutShape(g), [g.og * g.groups, g.cg, g.kh, g.kw]]),
  call: ([gy, w], g) => T.conv2dInputGrad(gy, w, { ...convParamsOf(g), inputShape: [g.n, g.cg * g.groups, g.h, g.w] }), diff: [0, 1],
  terms: (c) => c.params.og * c.params.kh * c.params.kw,
  vjpTerms: (c) => Math.max(c.params.cg * c.params.kh * c.params.kw, c.params.n * c.params.h * c.params.w),
  // The adjoint of x -> conv2d(x, w): <conv2dInputGrad(g, w), x> = <g, conv2d(x, w)> for every x, so its
  // output is the gradient of that inner product, evaluated here by summing the products per input cell.
  oracle: (c) => {
    const g = c.params;
    const [gy, w] = c.inputs.map(host);
    const xShape = [g.n, g.cg * g.groups, g.h, g.w];
    return O.build(xShape, (k) => {
      const e = O.build(xShape, (j) => +(j.every((v, d) => v === k[d])));
      const y = O.conv2d(e, w, convParamsOf(g));
      return y.values.reduce((s, v, i) => s + v * gy.values[i], 0);
    });
  },
});
add<ConvGeometry>({
  name: 'conv2dWeightGrad', covers: ['conv2dWeightGrad'], category: 'conv',
  cases: convCases((g) => [[g.n, g.cg * g.groups, g.h, g.w], convOutShape(g)]),
  call: ([x, gy], g) => T.conv2dWeightGrad(x, gy, { ...convParamsOf(g), kernelSize: [g.kh, g.kw] }), diff: [0, 1],
  terms: (c) => c.params.n * O.sizeOf(convOutShape(c.params).slice(2)),
  vjpTerms: (c) => Math.max(c.params.og, c.params.cg) * c.params.kh * c.params.kw,
  oracle: (c) => {
    const g = c.params;
    const [x, gy] = c.inputs.map(host);
    const wShape = [g.og * g.groups, g.cg, g.kh, g.kw];
    return O.build(wShape, (k) => {
      const e = O.build(wShape, (j) => +(j.every((v, d) => v === k[d])));
      const y = O.conv2d(x, e, convParamsOf(g));
      return y.values.reduce((s, v, i) => s + v * gy.values[i], 0);
    });
  },
});
interface TransposeConv extends ConvGeometry {
  outputPadding: [number, number];
}
add<TransposeConv>({
  name: 'conv2dTranspose', covers: ['conv2dInputGrad'], category: 'conv',
  cases: convGeometryArb
    // output_padding below the stride. (PyTorch also allows it below the dilation, which conv2dTranspose does not support.)
    .chain((g) => fc.tuple(int(0, g.stride[0] - 1), int(0, g.stride[1] - 1)).map((outputPadding) => ({ ...g, outputPadding })))
    .filter((g) => [0, 1].every((d) => ([g.h, g.w][d] - 1) * g.stride[d] - 2 * g.padding[d] + g.dilation[d] * ([g.kh, g.kw][d] - 1) + 1 + g.outputPadding[d] > 0))
    .chain((g) => fc.tuple(tensorArb([g.n, g.cg * g.groups, g.h, g.w]), tensorArb([g.cg * g.groups, g.og, g.kh, g.kw])).map((inputs) => ({ inputs, params: g }))),
  call: ([x, w], g) => T.conv2dTranspose(x, w, { ...convParamsOf(g), outputPadding: g.outputPadding }), diff: [0, 1],
  terms: (c) => c.params.cg * c.params.groups * c.params.kh * c.params.kw,
  vjpTerms: (c) => Math.max(c.params.og * c.params.kh * c.params.kw, c.params.n * c.params.h * c.params.w),
  oracle: (c) => O.conv2dTranspose(host(c.inputs[0]), host(c.inputs[1]), { ...convParamsOf(c.params), outputPadding: c.params.outputPadding }),
});
interface PoolParams {
  k: [number, number];
  s: [number, number];
  p: [number, number];
}
add<PoolParams>({
  name: 'avgPool2d', covers: ['conv2d', 'sum'], category: 'conv',
  cases: fc
    .record({ n: int(1, 2), c: int(1, 3), h: int(1, 6), w: int(1, 6), k: pairArb(1, 3), s: pairArb(1, 3), p: pairArb(0, 1), exact: fc.boolean() })
    .map((r) => (r.exact ? { ...r, s: r.k, p: [0, 0] as [number, number], h: r.k[0] * Math.max(1, Math.floor(r.h / r.k[0])), w: r.k[1] * Math.max(1, Math.floor(r.w / r.k[1])) } : r))
    // PyTorch requires padding <= kernel / 2 and a window that fits.
    .filter((r) => r.p[0] * 2 <= r.k[0] && r.p[1] * 2 <= r.k[1] && r.h + 2 * r.p[0] >= r.k[0] && r.w + 2 * r.p[1] >= r.k[1])
    .chain((r) => tensorArb([r.n, r.c, r.h, r.w]).map((x) => ({ inputs: [x], params: { k: r.k, s: r.s, p: r.p } }))),
  call: ([x], p) => T.avgPool2d(x, p.k, p.s, p.p), diff: [0], terms: (c) => c.params.k[0] * c.params.k[1], termBound: 2,
  oracle: (c) => O.avgPool2d(host(c.inputs[0]), c.params.k, c.params.s, c.params.p),
});
add<{ f: [number, number] }>({
  name: 'upsampleNearest', covers: ['broadcastTo', 'reshape'], category: 'conv',
  cases: fc.record({ shape: fc.tuple(int(1, 2), int(1, 2), int(1, 3), int(1, 3)), f: pairArb(1, 3) }).chain(({ shape, f }) => tensorArb(shape).map((x) => ({ inputs: [x], params: { f } }))),
  call: ([x], p) => T.upsampleNearest(x, p.f), diff: [0], oracle: (c) => O.upsampleNearest(host(c.inputs[0]), c.params.f),
});

// Composites of the nn kind.
const axisCases = (domain: Domain = 'any') =>
  shapeAndAxis().chain(({ shape, axis }) => tensorArb(shape, { domain }).map((x) => ({ inputs: [x], params: { axis } })));
add<{ axis: number }>({
  name: 'softmax', covers: ['exp', 'max', 'sum', 'div'], category: 'composite', cases: axisCases(),
  call: ([x], p) => T.softmax(x, p.axis), diff: [0], terms: (c) => c.inputs[0].shape.at(c.params.axis)!, termBound: 8,
  oracle: (c) => O.alongAxis(host(c.inputs[0]), c.params.axis, O.softmaxLane),
});
add<{ axis: number }>({
  name: 'logSoftmax', covers: ['exp', 'log', 'max', 'sum'], category: 'composite', cases: axisCases(),
  call: ([x], p) => T.logSoftmax(x, p.axis), diff: [0], terms: (c) => c.inputs[0].shape.at(c.params.axis)!, termBound: 8,
  oracle: (c) => O.alongAxis(host(c.inputs[0]), c.params.axis, (v) => v.map((x) => x - O.logsumexp(v))),
});
add<ReduceParams>({
  name: 'logsumexp', covers: ['exp', 'log', 'max', 'sum'], category: 'composite', cases: reduceCases((s) => tensorArb(s)),
  call: ([x], p) => T.logsumexp(x, p.axes, p.keepdims), diff: [0], terms: (c) => reducedCount(c.inputs[0].shape, c.params.axes), termBound: 8,
  oracle: (c) => O.reduce(host(c.inputs[0]), c.params.axes, c.params.keepdims, O.logsumexp),
});
add<ReduceParams & { correction: number }>({
  name: 'variance', covers: ['sum', 'sub', 'mul', 'div'], category: 'composite',
  cases: reduceCases((s) => tensorArb(s), { minRank: 1 }).chain((c) => fc.constantFrom(0, 1).map((correction) => ({ ...c, params: { ...c.params, correction } })))
    .filter((c) => reducedCount(c.inputs[0].shape, c.params.axes) > c.params.correction),
  call: ([x], p) => T.variance(x, p.axes, p.keepdims, p.correction), diff: [0], terms: (c) => reducedCount(c.inputs[0].shape, c.params.axes), termBound: 16,
  oracle: (c) => O.reduce(host(c.inputs[0]), c.params.axes, c.params.keepdims, (v) => O.variance(v, c.params.correction)),
});
add<ReduceParams>({
  name: 'mean', covers: ['sum', 'div'], category: 'composite', cases: reduceCases((s) => tensorArb(s)),
  call: ([x], p) => T.mean(x, p.axes, p.keepdims), diff: [0], terms: (c) => reducedCount(c.inputs[0].shape, c.params.axes), termBound: 2,
  oracle: (c) => O.reduce(host(c.inputs[0]), c.params.axes, c.params.keepdims, (v) => v.reduce((a, b) => a + b, 0) / v.length),
});
const gelu = (v: number) => 0.5 * v * (1 + O.erf(v / Math.SQRT2));
const softplus = (v: number) => Math.log(1 + Math.exp(v));
const composites: [string, string[], Domain, (x: Tensor) => Tensor, (v: number) => number, Partial<OpInfo>?][] = [
  ['gelu', ['erf', 'mul', 'add'], 'any', T.gelu, gelu, { float32: { atol: 3e-7, reason: 'float32 erf is Abramowitz-Stegun 7.1.26, |error| < 1.5e-7' } }],
  ['silu', ['fused'], 'any', T.silu, (v) => v / (1 + Math.exp(-v))],
  ['softplus', ['greater', 'where', 'abs', 'exp', 'log1p'], 'awayFromKinks', T.softplus, softplus],
  ['relu', ['greater', 'where'], 'awayFromKinks', T.relu, (v) => Math.max(v, 0)],
  ['square', ['mul'], 'any', T.square, (v) => v * v],
  // clip's kinks at -1 and 1 are integers: awayFromIntegers keeps clear of them.
  ['clip', ['maximum', 'minimum'], 'awayFromIntegers', (x) => T.clip(x, -1, 1), (v) => Math.min(Math.max(v, -1), 1)],
];
for (const [name, covers, domain, op, fn, extra] of composites) {
  add<NoParams>({ name, covers, category: 'composite', cases: unaryCases(domain), call: ([x]) => op(x), diff: [0], oracle: (c) => mapHost(c.inputs[0], fn), ...extra });
}
// Fused elementwise expressions (one kernel; derivatives are fused programs too). Between
// them the programs use every op an expression may contain, over broadcast inputs.
const fusedPrograms: [string, Domain[], (...x: T.Expr[]) => T.Expr, (...x: number[]) => number][] = [
  // groupNorm's epilogue: seven inputs, so every VJP program (eight) is split in two kernels.
  ['fuse.normalizeAffine', Array(7).fill('any'), (x, m, r, w, b, s, h) => x.sub(m).mul(r).mul(w).add(b).mul(s).add(h), (x, m, r, w, b, s, h) => ((x - m) * r * w + b) * s + h],
  ['fuse.transcendental', ['any', 'any'],
    (a, b) => a.exp().add(b.square()).log().mul(b.tanh()).add(a.sin().div(b.cos().add(2))).neg(),
    (a, b) => -(Math.log(Math.exp(a) + b * b) * Math.tanh(b) + Math.sin(a) / (Math.cos(b) + 2))],
  ['fuse.positive', ['any', 'positive'],
    (a, c) => c.sqrt().mul(a.sigmoid()).sub(c.rsqrt().mul(a.expm1())).add(c.log1p().div(c.reciprocal().add(1))),
    (a, c) => Math.sqrt(c) / (1 + Math.exp(-a)) - Math.expm1(a) / Math.sqrt(c) + Math.log1p(c) / (1 / c + 1)],
  // Nine inputs (and eighteen in its JVP): wider than one kernel may be, so it is split.
  ['fuse.wide', Array(9).fill('any'),
    (...x) => x.slice(1).reduce((acc, v, k) => acc.mul(v.mul(0.5).tanh().add(k)), x[0]),
    (...x) => x.slice(1).reduce((acc, v, k) => acc * (Math.tanh(v * 0.5) + k), x[0])],
];
for (const [name, domains, program, fn] of fusedPrograms) {
  add<NoParams>({
    name, covers: ['fused'], category: 'composite',
    cases: broadcastShapesArb(domains.length).chain((shapes) => fc.tuple(...shapes.map((s, k) => tensorArb(s, { domain: domains[k] })))).map((inputs) => ({ inputs, params: none })),
    call: (xs) => T.fuse(program, xs), diff: domains.map((_, k) => k),
    oracle: (c) => {
      const xs = c.inputs.map(host);
      return O.build(O.broadcast(...xs.map((x) => x.shape)), (k) => fn(...xs.map((x) => O.getBroadcast(x, k))));
    },
  });
}

// The same expressions summed over axes of their broadcast grid in one kernel.
const fusedSums: [string, Domain[], (...x: T.Expr[]) => T.Expr, (...x: number[]) => number][] = [
  ['fuseSum.variance', ['any', 'any'], (x, m) => x.sub(m).square(), (x, m) => (x - m) ** 2],
  ['fuseSum.mixed', ['any', 'any', 'positive'], (a, b, c) => a.mul(b).sigmoid().mul(c.sqrt()).sub(b), (a, b, c) => Math.sqrt(c) / (1 + Math.exp(-a * b)) - b],
];
for (const [name, domains, program, fn] of fusedSums) {
  add<ReduceParams>({
    name, covers: ['fusedSum'], category: 'reduction',
    cases: broadcastShapesArb(domains.length).chain((shapes) => {
      const grid = O.broadcast(...shapes);
      return fc.record({ inputs: fc.tuple(...shapes.map((s, k) => tensorArb(s, { domain: domains[k] }))), axes: axesArb(grid.length), keepdims: fc.boolean() })
        .map(({ inputs, axes, keepdims }) => ({ inputs, params: { axes, keepdims } }));
    }),
    call: (xs, p) => T.fuseSum(program, xs, p.axes, p.keepdims), diff: domains.map((_, k) => k),
    terms: (c) => reducedCount(O.broadcast(...c.inputs.map((x) => x.shape)), c.params.axes),
    oracle: (c) => {
      const xs = c.inputs.map(host);
      const grid = O.build(O.broadcast(...xs.map((x) => x.shape)), (k) => fn(...xs.map((x) => O.getBroadcast(x, k))));
      return O.reduce(grid, c.params.axes, c.params.keepdims, (v) => v.reduce((a, b) => a + b, 0));
    },
  });
}

add<NoParams>({
  name: 'mT.flatten', covers: ['transpose', 'reshape'], category: 'composite', cases: unaryCases('any', shapeArb({ minRank: 2 })),
  call: ([x]) => [T.mT(x), T.flatten(x, 1)], diff: [0],
  oracle: (c) => {
    const x = host(c.inputs[0]);
    const r = x.shape.length;
    return [O.transpose(x, [...Array(r - 2).keys(), r - 1, r - 2]), { shape: [x.shape[0], O.sizeOf(x.shape.slice(1))], values: x.values }];
  },
});

export const opdb: readonly OpInfo[] = entries;

export function opInfo(name: string): OpInfo {
  const e = entries.find((x) => x.name === name);
  if (!e) throw new Error(`no opdb entry named ${name}`);
  return e;
}

/** Run an entry on tensors and return its outputs as a list. */
export function runOp(op: OpInfo, inputs: Tensor[], params: unknown): Tensor[] {
  const out = op.call(inputs, params);
  return Array.isArray(out) ? out : [out];
}

/** The oracle's outputs as a list. */
export function runOracle(op: OpInfo, c: OpCase): O.Host[] {
  const out = op.oracle!(c);
  return Array.isArray(out) ? out : [out];
}
