/**
 * gemmInPlace (backends/plans.ts), the product the convolutions use: B read through its
 * view inside the kernel instead of packed. It must give the same bits as the packed gemm
 * on any view (reduction lengths that are not multiples of the unroll, widths that are
 * not multiples of the tile, rows that are not multiples of 4, Inf and NaN in B), on one
 * thread and split over several.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { gemm, gemmInPlace, type KernelRunner, type MatrixView } from '../src/backends/plans.js';

const threadsBefore = T.getThreads();
afterAll(() => T.setThreads(threadsBefore));

const runner = (T.getBackendInstance('webasm') as unknown as { runner: KernelRunner }).runner;

/** A view of B as a convolution has it: rows and columns are offsets into a larger array. */
function view(k: number, n: number, seed: number, special: boolean): MatrixView {
  const rowStride = n + 3, size = k * rowStride + 5;
  const data = new Float32Array(size);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    data[i] = ((s >>> 8) % 2001 - 1000) / 997;
  }
  if (special) {
    data[(s >>> 3) % size] = Infinity;
    data[(s >>> 5) % size] = NaN;
  }
  const rows = new Int32Array(k), cols = new Int32Array(n);
  for (let p = 0; p < k; p++) rows[p] = p * rowStride + 2;
  for (let j = 0; j < n; j++) cols[j] = (j * 7) % n; // a permutation when gcd(7, n) = 1, else repeats: both are views
  return { data, offset: 1, rows, cols };
}

function product(f: typeof gemm, m: number, k: number, n: number, a: Float32Array, b: MatrixView): Float32Array {
  const out = new Float32Array(m * n).fill(-7);
  const av = { data: a, offset: 0, rows: Int32Array.from({ length: m }, (_, r) => r * k), cols: Int32Array.from({ length: k }, (_, p) => p) };
  const ov = { data: out, offset: 0, rows: Int32Array.from({ length: m }, (_, r) => r * n), cols: Int32Array.from({ length: n }, (_, j) => j) };
  f(runner, av, b, ov, m, k, n);
  return out;
}

describe('gemmInPlace', () => {
  test('the same bits as the packed gemm, on one thread and on three', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 150 }), fc.integer({ min: 1, max: 90 }), fc.nat(), fc.boolean(), fc.constantFrom(1, 3), (m, k, n, seed, special, threads) => {
        T.setThreads(threads);
        const a = new Float32Array(m * k).map((_, i) => (((i * 37 + seed) % 61) - 30) / 16);
        const b = view(k, n, seed, special);
        const packed = product(gemm, m, k, n, a, b), inPlace = product(gemmInPlace, m, k, n, a, b);
        const diff = packed.findIndex((v, i) => !Object.is(v, inPlace[i]));
        expect(diff, `m ${m}, k ${k}, n ${n}: first differing element`).toBe(-1);
      }),
      { numRuns: 40 },
    );
  });

  test('a product large enough to be split over threads', () => {
    T.setThreads(2);
    const before = T.helperThreads().partsRun;
    const [m, k, n] = [36, 203, 700];
    const a = new Float32Array(m * k).map((_, i) => ((i % 13) - 6) / 8);
    const b = view(k, n, 5, false);
    const packed = product(gemm, m, k, n, a, b), inPlace = product(gemmInPlace, m, k, n, a, b);
    expect(T.helperThreads().partsRun).toBeGreaterThan(before);
    expect(packed.findIndex((v, i) => !Object.is(v, inPlace[i]))).toBe(-1);
  });
});
