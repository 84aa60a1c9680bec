/**
 * Forward values of every op-database entry:
 *  1. the float64 reference backend against an independent oracle (test/oracle.ts), where the
 *     entry has one, to 1e-10 relative: the reference is the oracle of everything else;
 *  2. every GPU.js backend present (cpu, webasm; webgpu when an adapter answers) in float32
 *     against the float64 reference on the same inputs (all exact in float32);
 *  3. elementwise ops on edge values (0, -0, ±inf, NaN, huge, tiny) on the GPU.js backends.
 *
 * Float32 tolerances (see float32Tolerance): rtol 1e-5 for elementwise work, plus an absolute
 * allowance that grows with the reduction length k behind each output: a float32 sum of k
 * terms is off by at most (k + 1)·u·Σ|term| (u = 2^-24). The cpu backend accumulates in float64
 * (JS numbers) and webasm/webgpu in float32, so only the float32 bound holds for all three.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { assertClose, broadcastShapesArb, edgeTensorArb, float32Tolerance, readback, shapeArb, type HostTensor, type Tolerance } from '@scm/autodiff/testing';
import { opdb, runOracle, type OpCase, type OpInfo } from '../../../test/opdb.js';
import { entriesFor, float32Outputs, onFloat32, presentBackends, referenceOutputs, runs } from '../../../test/harness.js';

const gpuBackends = (await presentBackends()).filter((b) => b !== 'reference');

/**
 * WGSL only promises these accuracies (WebGPU Shading Language, "Floating Point Accuracy"):
 * sin and cos to 2^-11 absolute on [-π, π], tan and tanh inherited from them, atan and atan2
 * to 4096 ulp, exp to 3 + 2|x| ulp, log and pow (= exp2(y·log2 x)) to 2^-21 absolute near 1.
 * Elementwise results on webgpu are checked against those bounds, not float32 rounding.
 */
const WGSL: Record<string, Tolerance> = {
  default: { atol: 1e-6, rtol: 4e-6 },
  sin: { atol: 2 ** -11, rtol: 0 },
  cos: { atol: 2 ** -11, rtol: 0 },
  tan: { atol: 2 ** -9, rtol: 2 ** -11 },
  tanh: { atol: 2 ** -11, rtol: 0 },
  atan: { atol: 0, rtol: 4096 * 2 ** -23 },
  atan2: { atol: 0, rtol: 4096 * 2 ** -23 },
  // pow(a, b) = exp2(b·log2 a): the log2 error (2^-21) times |b|·ln 2, relative to the result.
  pow: { atol: 0, rtol: 2 * 2 ** -21 + 1e-5 },
};

function tolerance(op: OpInfo, c: OpCase, backend: T.BackendName): Tolerance {
  const base = float32Tolerance({ terms: op.terms?.(c) ?? 1, termBound: op.termBound ?? 4 });
  const extra = [op.float32, backend === 'webgpu' ? (WGSL[op.name] ?? WGSL.default) : undefined];
  return extra.reduce<Tolerance>((t, o) => (o ? { atol: t.atol + (o.atol ?? 0), rtol: t.rtol + (o.rtol ?? 0) } : t), base);
}

async function compareToReference(op: OpInfo, c: OpCase, backend: T.BackendName): Promise<void> {
  const want = await referenceOutputs(op, c);
  const got = await float32Outputs(op, c, backend);
  expect(got.length).toBe(want.length);
  got.forEach((g, k) => {
    expect(g.shape, `${op.name} output ${k} shape`).toEqual(want[k].shape);
    expect(g.dtype, `${op.name} output ${k} dtype`).toBe(onFloat32(want[k].dtype));
    assertClose(g.values, want[k].values, { ...tolerance(op, c, backend), what: `${op.name} on ${backend}, output ${k}` });
  });
}

const baseline = T.memory();
afterAll(() => {
  // Every property disposes what it made: nothing may be left on any backend.
  expect(T.memory()).toEqual(baseline);
});

describe('reference backend against independent oracles (float64)', () => {
  test.each(opdb.filter((e) => e.oracle).map((e) => [e.name, e] as const))('%s', async (_name, op) => {
    await fc.assert(
      fc.asyncProperty(op.cases, async (c) => {
        const got = await referenceOutputs(op, c);
        const want = runOracle(op, c);
        expect(got.length).toBe(want.length);
        got.forEach((g, k) => {
          expect(g.shape, `${op.name} output ${k} shape`).toEqual(want[k].shape);
          // Both sides are float64; they differ only in the order of roundings.
          assertClose(g.values, want[k].values, { atol: 1e-12, rtol: 1e-10, what: `${op.name} output ${k}` });
        });
      }),
      runs(20),
    );
  });
});

for (const backend of gpuBackends) {
  // The software WebGPU driver is slow: a few runs per op there.
  const numRuns = backend === 'webgpu' ? 3 : 10;
  describe(`${backend} (float32) against the float64 reference`, () => {
    test.each(entriesFor(opdb, backend).map((e) => [e.name, e] as const))('%s', async (_name, op) => {
      await fc.assert(fc.asyncProperty(op.cases, (c) => compareToReference(op, c, backend)), runs(numRuns));
    });
  });
}

// Elementwise entries whose inputs may be anything: edge values must behave as in float64
// (NaN where the reference has NaN, the same infinities, signed zeros equal to zeros).
const elementwise = opdb.filter((e) => (e.category === 'unary' || e.category === 'binary' || e.category === 'comparison') && e.name !== 'where');
const edgeCases = (arity: number): fc.Arbitrary<OpCase> =>
  broadcastShapesArb(arity, { maxSize: 16 }).chain((shapes) => fc.tuple(...shapes.map((s) => edgeTensorArb(s))).map((inputs: HostTensor[]) => ({ inputs, params: {} })));

// Not on webgpu: WGSL lets implementations assume there are no NaNs or infinities, and on the
// software driver maximum(NaN, 0) is 0, NaN != NaN is false and pow(0, -inf) is 0. Those are
// the platform's semantics, not kernel bugs; finite inputs are checked above on every backend.
for (const backend of gpuBackends.filter((b) => b !== 'webgpu')) {
  describe(`${backend}: edge values`, () => {
    test.each(elementwise.map((e) => [e.name, e] as const))('%s', async (_name, op) => {
      const arity = op.category === 'unary' ? 1 : 2;
      await fc.assert(fc.asyncProperty(edgeCases(arity), (c) => compareToReference(op, c, backend)), runs(10));
    });
  });
}

test('shapes of every rank and size-1 dims survive a round trip on every backend', async () => {
  for (const backend of ['reference', ...gpuBackends] as T.BackendName[]) {
    await fc.assert(
      fc.asyncProperty(shapeArb({ minDim: 0 }), async (shape) => {
        const values = Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i - 3);
        const t = T.fromArray(values, shape, { backend });
        try {
          expect(t.shape).toEqual(shape);
          expect(Array.from(await t.data())).toEqual(values);
        } finally {
          t.dispose();
        }
      }),
      runs(backend === 'webgpu' ? 3 : 20),
    );
  }
});

describe('empty tensors and kernel reuse on the GPU.js backends', () => {
  // Each builds its inputs on the given backend; results are compared with the reference.
  const cases: [string, (b: T.BackendName) => T.Tensor][] = [
    ['exp of an empty tensor', (b) => T.exp(T.zeros([0, 3], { backend: b }))],
    ['pad of an empty tensor', (b) => T.pad(T.zeros([0, 2], { backend: b }), [[1, 1], [0, 1]], 2.5)],
    ['concat with an empty part', (b) => T.concat([T.zeros([0, 3], { backend: b }), T.arange(0, 6, 1, { backend: b, dtype: 'float32' }).reshape([2, 3])])],
    ['sum over an empty axis', (b) => T.sum(T.zeros([0, 3], { backend: b }), 0)],
    ['max over a non-empty axis of an empty tensor', (b) => T.max(T.zeros([0, 3], { backend: b }), 1)],
    ['matmul with an empty inner dimension', (b) => T.matmul(T.zeros([2, 0], { backend: b }), T.zeros([0, 3], { backend: b }))],
    ['broadcast of an empty tensor', (b) => T.broadcastTo(T.zeros([0, 1], { backend: b }), [2, 0, 3])],
    ['take with no indices', (b) => T.take(T.ones([3, 2], { backend: b }), T.fromArray([], [0], { dtype: 'int32', backend: b }), 0)],
    ['slice to nothing, then pad back', (b) => T.pad(T.slice(T.ones([3], { backend: b }), [{ start: 3 }]), [[1, 2]], -1)],
    ['mean over an empty axis is NaN', (b) => T.mean(T.zeros([0, 2], { backend: b }), 0)],
  ];
  test.each(gpuBackends.flatMap((b) => cases.map(([name, fn]) => [b, name, fn] as const)))('%s: %s', async (backend, _name, fn) => {
    const [want] = await readback(() => fn('reference'));
    const [got] = await readback(() => fn(backend));
    expect(got.shape).toEqual(want.shape);
    assertClose(got.values, want.values, { atol: 0, rtol: 0 });
  });

  test.each(gpuBackends)('%s: one kernel source at several sizes computes each size', async (backend) => {
    // Unary kernels read x0[i] whatever the size, and a slice's source does not mention its input size.
    for (const n of [3, 7, 2, 7]) {
      const [v] = await readback(() => T.neg(T.arange(0, n, 1, { backend, dtype: 'float32' })));
      expect(v.values.map((x) => x + 0)).toEqual(Array.from({ length: n }, (_, i) => -i + 0));
    }
    for (const n of [4, 2, 5]) {
      const [v] = await readback(() => T.slice(T.arange(0, n, 1, { backend, dtype: 'float32' }), [{ start: 0, stop: 1 }]));
      expect(v.values).toEqual([0]);
    }
  });
});
