/**
 * Elementwise kernels on the cpu and webasm backends, against the float64 reference:
 *  - exp, computed in float32 arithmetic (codegen.ts, expLines) instead of calling Math.exp
 *    per element: within 4 ulp over the whole float32 range, exact at the edges (±inf,
 *    NaN, overflow to inf, underflow to 0);
 *  - flat indexing past 2^24 elements, where a float index would no longer be exact;
 *  - the backend's kernel cache, which finds compiled kernels by a signature of the
 *    application (shapes and params) rather than by their source.
 */
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { assertClose } from '@scm/autodiff/testing';

const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

/** 4 ulp of float32, relative. */
const EXP_RTOL = 4 * 2 ** -23;

describe.each(['webasm', 'cpu'] as const)('exp on %s', (backend) => {
  test('a dense sweep of [-90, 90] and random values, within 4 ulp', () => {
    const n = 200_003;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = -90 + (180 * i) / (n - 1);
    let s = 12345;
    for (let i = 0; i < 2000; i++) {
      s = (s * 1664525 + 1013904223) >>> 0;
      x[i * 97] = ((s / 2 ** 32) - 0.5) * 2 ** ((s >>> 8) % 14 - 6);
    }
    T.tidy(() => {
      const got = T.exp(T.fromArray(x, [n], { backend })).dataSync();
      const want = T.exp(T.fromArray(x, [n], { backend: 'reference' })).dataSync();
      // Results below the smallest normal float32 (2^-126) may flush to zero.
      assertClose(got, want, { rtol: EXP_RTOL, atol: 2 ** -126, what: `exp on ${backend}` });
    });
  });

  test('edge values', () => {
    const x = Float32Array.from([0, -0, 1, -1, 88.72283, 88.72284, 89, 1000, -87.3, -88, -104, -1000, Infinity, -Infinity, NaN, 1e-30, -1e-30]);
    T.tidy(() => {
      const got = Array.from(T.exp(T.fromArray(x, [x.length], { backend })).dataSync());
      const want = Array.from(T.exp(T.fromArray(x, [x.length], { backend: 'reference' })).dataSync());
      assertClose(got, want, { rtol: EXP_RTOL, atol: 2 ** -126, what: `exp edge values on ${backend}` });
      expect(got.slice(6, 8)).toEqual([Infinity, Infinity]);
      expect(got.slice(10, 14)).toEqual([0, 0, Infinity, 0]);
      expect(Number.isNaN(got[14])).toBe(true);
    });
  });
});

test('flat indexing stays exact past 2^24 elements (webasm)', () => {
  const n = 2 ** 24 + 8;
  const x = new Float32Array(n);
  for (let i = n - 64; i < n; i++) x[i] = i - (n - 64) + 1;
  T.tidy(() => {
    const y = T.neg(T.fromArray(x, [n], { backend: 'webasm' })).dataSync();
    const tail = Array.from(y.subarray(n - 64));
    expect(tail).toEqual(Array.from({ length: 64 }, (_, k) => -(k + 1)));
  });
});

test('kernels are cached per application: params that JSON would print alike get their own kernels', () => {
  for (const backend of ['webasm', 'cpu'] as const) {
    T.tidy(() => {
      const x = T.fromArray([1, 2, 3], [3], { backend });
      // JSON.stringify writes NaN, Infinity and -Infinity all as null.
      const nan = T.pad(x, [[1, 0]], NaN).dataSync();
      const big = T.pad(x, [[1, 0]], Infinity).dataSync();
      const neg = T.pad(x, [[1, 0]], -Infinity).dataSync();
      expect(Number.isNaN(nan[0])).toBe(true);
      expect(big[0]).toBeGreaterThan(3e38);
      expect(neg[0]).toBeLessThan(-3e38);
      expect(Array.from(big.subarray(1))).toEqual([1, 2, 3]);
      // Same source, different sizes: each size gets its kernel.
      expect(Array.from(T.neg(T.fromArray([1, 2], [2], { backend })).dataSync())).toEqual([-1, -2]);
      expect(Array.from(T.neg(T.fromArray([1, 2, 3, 4, 5], [5], { backend })).dataSync())).toEqual([-1, -2, -3, -4, -5]);
    });
  }
});
