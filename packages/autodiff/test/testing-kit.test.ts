/**
 * @scm/autodiff/testing itself: its arbitraries generate what they promise, its comparisons
 * and finite differences are right, its memory checks see leaks; and the worked example of
 * TESTING.md runs as written.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import * as AD from '@scm/autodiff';
import {
  EDGE_VALUES, GRID, assertClose, boolTensorArb, broadcastShapesArb, checkGrads, distinctTensorsArb, edgeTensorArb, expectClose, expectNoLeaks,
  findMismatch, float32Tolerance, indexTensorArb, innerProduct, numericalJvp, readback, shapeArb, tensorArb, toTensor, valueArb, withTensors,
  type Domain,
} from '@scm/autodiff/testing';

T.setBackend('reference');
const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

const sample = <V>(arb: fc.Arbitrary<V>, n = 300) => fc.sample(arb, { numRuns: n, seed: 1 });

describe('arbitraries', () => {
  test('shapes respect rank, dims and size, and include size-1 dims and scalars', () => {
    const shapes = sample(shapeArb({ maxRank: 4, maxDim: 4, maxSize: 64 }));
    expect(shapes.every((s) => s.length <= 4 && s.every((d) => d >= 1 && d <= 4) && s.reduce((a, b) => a * b, 1) <= 64)).toBe(true);
    expect(shapes.some((s) => s.length === 0)).toBe(true);
    expect(shapes.some((s) => s.length === 4)).toBe(true);
    expect(shapes.some((s) => s.includes(1) && s.length > 1)).toBe(true);
    expect(sample(shapeArb({ minDim: 0 })).some((s) => s.includes(0))).toBe(true);
  });

  test('broadcast shapes broadcast, and exercise size-1 and missing dims', () => {
    const pairs = sample(broadcastShapesArb(3));
    for (const shapes of pairs) expect(() => T.broadcastShapes('test', ...shapes)).not.toThrow();
    expect(pairs.some(([a, b]) => a.length !== b.length)).toBe(true);
    expect(pairs.some(([a, b]) => a.some((d, k) => d === 1 && b[b.length - a.length + k] > 1))).toBe(true);
  });

  test.each<[Domain, (v: number) => boolean]>([
    ['any', (v) => v >= -2 && v <= 2],
    ['positive', (v) => v >= 0.25 && v <= 2],
    ['nonzero', (v) => Math.abs(v) >= 0.25 && Math.abs(v) <= 2],
    ['unit', (v) => v > 0 && v < 1],
    ['awayFromKinks', (v) => Math.abs(v) >= 1 / 16],
    ['awayFromIntegers', (v) => Math.abs(v - Math.round(v)) >= 1 / 8 && Math.abs(v - Math.floor(v) - 0.5) >= 1 / 8],
    [{ min: -1.2, max: 1.2 }, (v) => Math.abs(v) <= 1.2],
  ])('domain %j: values inside it, on the grid, exact in float32', (domain, inside) => {
    const vals = sample(valueArb(domain), 500);
    expect(vals.every(inside)).toBe(true);
    expect(vals.every((v) => Number.isInteger(v / GRID) && Math.fround(v) === v)).toBe(true);
    expect(new Set(vals).size).toBeGreaterThan(50);
  });

  test('tensors, distinct tensors, indices, bools and edge tensors', () => {
    for (const h of sample(tensorArb(shapeArb()), 50)) expect(h.values.length).toBe(h.shape.reduce((a, b) => a * b, 1));
    for (const hs of sample(broadcastShapesArb(2).chain((s) => distinctTensorsArb(s)), 50)) {
      const all = hs.flatMap((h) => h.values).sort((a, b) => a - b);
      for (let i = 1; i < all.length; i++) expect(all[i] - all[i - 1]).toBeGreaterThanOrEqual(1 / 64);
    }
    for (const h of sample(indexTensorArb(3, shapeArb({ maxRank: 2 })), 50)) {
      expect(h.dtype).toBe('int32');
      expect(h.values.every((v) => Number.isInteger(v) && v >= 0 && v < 3)).toBe(true);
    }
    expect(sample(boolTensorArb([4]), 50).every((h) => h.dtype === 'bool' && h.values.every((v) => v === 0 || v === 1))).toBe(true);
    const edges = sample(edgeTensorArb([8]), 100).flatMap((h) => h.values);
    for (const e of EDGE_VALUES) expect(edges.some((v) => Object.is(v, e)), `edge value ${e}`).toBe(true);
  });
});

describe('comparisons', () => {
  test('findMismatch: atol + rtol·|want|, NaN only matches NaN, infinities only themselves', () => {
    const tol = { atol: 1e-3, rtol: 1e-2 };
    expect(findMismatch([1.01, 0.0009, NaN, Infinity], [1, 0, NaN, Infinity], tol)).toBeNull();
    expect(findMismatch([1.02], [1], tol)).toMatchObject({ index: 0, count: 1 });
    expect(findMismatch([0, 5], [NaN, 5], tol)).toMatchObject({ index: 0 });
    expect(findMismatch([Infinity], [-Infinity], tol)).toMatchObject({ index: 0 });
    expect(findMismatch([1e30], [Infinity], tol)).toMatchObject({ index: 0 });
    expect(findMismatch([1, 2], [1, 2, 3], tol)).toMatchObject({ index: -1 });
    expect(() => assertClose([1, 2.5, 3], [1, 2, 3], { ...tol, what: 'demo' })).toThrow(/demo: 1 of 3 elements out of tolerance .* element 1: got 2.5, expected 2/);
  });

  test('expectClose checks shapes of tensors', async () => {
    const a = T.zeros([2, 3]), b = T.zeros([3, 2]);
    await expect(expectClose(a, b)).rejects.toThrow(/shape \[2, 3\], expected \[3, 2\]/);
    await expectClose(a, [0, 0, 0, 0, 0, 0]);
    T.dispose([a, b]);
  });

  test('float32Tolerance grows with the reduction length', () => {
    const t = [1, 10, 100, 1000].map((terms) => float32Tolerance({ terms }).atol);
    for (let i = 1; i < t.length; i++) expect(t[i]).toBeGreaterThan(t[i - 1]);
    expect(float32Tolerance({ terms: 1000, termBound: 1 }).atol).toBeCloseTo(1e-6 + 1001 * 1000 * 2 ** -24, 12);
  });
});

describe('numerical helpers', () => {
  test('numericalJvp: the 4-point stencil is accurate to ~1e-10 relative on smooth functions in float64', () => {
    T.tidy(() => {
      const x = T.tensor([0.3, -1.1, 2], { dtype: 'float64' }), u = T.tensor([1, 0.5, -2], { dtype: 'float64' });
      const [d4] = numericalJvp((a: T.Tensor) => T.exp(T.sin(a)), [x], [u]);
      const want = [0.3, -1.1, 2].map((v, i) => Math.exp(Math.sin(v)) * Math.cos(v) * [1, 0.5, -2][i]);
      assertClose(Array.from(d4.dataSync()), want, { atol: 1e-12, rtol: 1e-10 });
      const [d2] = numericalJvp((a: T.Tensor) => T.exp(T.sin(a)), [x], [u], { stencil: 2 });
      assertClose(Array.from(d2.dataSync()), want, { atol: 1e-8, rtol: 1e-8 });
      // A null tangent holds that argument fixed.
      const [dy] = numericalJvp((a: T.Tensor, b: T.Tensor) => T.mul(a, b), [x, u], [null, T.onesLike(u)]);
      assertClose(Array.from(dy.dataSync()), [0.3, -1.1, 2], { atol: 1e-12, rtol: 0 });
      expect(Array.from(innerProduct([x, u], [u, u]).dataSync())).toEqual([0.3 - 0.55 - 4 + 1 + 0.25 + 4]);
    });
  });

  test('readback reads any result tree and disposes only what fn made', async () => {
    const x = T.tensor([1, 2]);
    const values = await readback(() => ({ a: [T.exp(x), x], b: T.reshape(x, [2, 1]) }));
    expect(values.map((v) => v.shape)).toEqual([[2], [2], [2, 1]]);
    expect(x.isDisposed).toBe(false);
    expect(values[1].values).toEqual([1, 2]);
    x.dispose();
  });

  test('expectNoLeaks sees a leaked tensor', async () => {
    let leaked: T.Tensor | null = null;
    await expect(expectNoLeaks(() => void (leaked = T.ones([1])))).rejects.toThrow(/leak: 1 tensors/);
    leaked!.dispose();
    await expectNoLeaks(() => T.tidy(() => void T.ones([3])));
  });

  test('withTensors disposes its tensors even when fn throws', async () => {
    const before = T.memory();
    await expect(withTensors([{ shape: [2], values: [1, 2] }], {}, () => Promise.reject(new Error('no')))).rejects.toThrow('no');
    expect(T.memory()).toEqual(before);
    const t = toTensor({ shape: [2], values: [3, 4], dtype: 'int32' }, { dtype: 'float64' });
    expect(t.dtype).toBe('int32');
    t.dispose();
  });
});

// ------------------------ the worked example of TESTING.md ------------------------

/** RMS normalisation with a learned gain: x / sqrt(mean(x², last axis) + 1e-6) · gain. */
function rmsNorm(x: T.Tensor, gain: T.Tensor): T.Tensor {
  const ms = T.mean(T.square(x), -1, true);
  return T.mul(T.div(x, T.sqrt(T.add(ms, 1e-6))), gain);
}

/** A case: x of any shape of rank >= 1 and a gain broadcast along its last axis. */
const rmsNormCase = shapeArb({ minRank: 1 }).chain((shape) =>
  fc.tuple(tensorArb(shape, { domain: 'nonzero' }), tensorArb([shape[shape.length - 1]])),
);

describe('worked example: property-testing the derivatives of rmsNorm', () => {
  test('checkGrads, first and second order, in float64 on the reference backend', async () => {
    await expectNoLeaks(() =>
      fc.assert(
        fc.asyncProperty(rmsNormCase, ([x, gain]) =>
          withTensors([x, gain], { dtype: 'float64', backend: 'reference' }, ([xt, gt]) =>
            // Central differences with eps 1e-5: truncation ~eps²·|f'''| and rounding ~1e-16·|f|/eps both stay near 1e-10.
            checkGrads(rmsNorm, [xt, gt], { order: 2, eps: 1e-5, atol: 1e-6, rtol: 1e-6 }),
          ),
        ),
        { numRuns: 25, seed: 1 },
      ),
    );
  });

  test('the gradient on webasm (float32) matches the float64 reference', async () => {
    const gradients = (x: T.Tensor, g: T.Tensor) => AD.grad((a: T.Tensor, b: T.Tensor) => T.sum(T.square(rmsNorm(a, b))), { argnums: [0, 1] })(x, g);
    await fc.assert(
      fc.asyncProperty(rmsNormCase, async ([x, gain]) => {
        const want = await readback(() => gradients(toTensor(x, { dtype: 'float64', backend: 'reference' }), toTensor(gain, { dtype: 'float64', backend: 'reference' })));
        const got = await readback(() => gradients(toTensor(x, { backend: 'webasm' }), toTensor(gain, { backend: 'webasm' })));
        // Sums run over at most every element (the gain's gradient sums over all but the last
        // axis). The gradient cancels terms as large as |g|²·|x|/rms² ≤ 4·2/(1/16) = 128, so the
        // absolute allowance scales with 128, not with the (possibly tiny) result.
        const terms = x.values.length;
        got.forEach((g, k) => assertClose(g.values, want[k].values, float32Tolerance({ terms, termBound: 128 })));
      }),
      { numRuns: 15, seed: 1 },
    );
  });
});
