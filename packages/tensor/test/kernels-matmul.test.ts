/**
 * The packed matrix-product kernel (backends/plans.ts, `gemm`) behind matmul on the cpu and
 * webasm backends, against the float64 reference: random shapes that do not divide the
 * kernel's blocks (4 rows, 4-step unrolled reduction, 16-column tiles), every batch
 * broadcasting case (batch in A only, in B only, in both, with size-1 dimensions), and
 * products large enough to be split over several kernel calls.
 *
 * Inputs are multiples of 1/64 in [-1, 1], so products are exact in float32 and only the
 * float32 accumulation differs from the reference: a sum of k terms of magnitude <= 1.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { gridValues } from '../../../test/harness.js';
import { assertClose, float32Tolerance } from '@scm/autodiff/testing';

const backends = ['webasm', 'cpu'] as const;
const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function gemmRuns(backend: T.BackendName): number {
  const b = T.getBackendInstance(backend) as unknown as { planRuns: Map<string, number> };
  return b.planRuns.get('matmul:gemm') ?? 0;
}

/** matmul on `backend` against the reference, and check that the packed kernel ran. */
function check(aShape: number[], bShape: number[], backend: T.BackendName, seed: number): void {
  const a = gridValues(size(aShape), seed), b = gridValues(size(bShape), seed + 1);
  const k = aShape[aShape.length - 1];
  T.tidy(() => {
    const want = T.matmul(T.fromArray(a, aShape, { backend: 'reference' }), T.fromArray(b, bShape, { backend: 'reference' }));
    const before = gemmRuns(backend);
    const got = T.matmul(T.fromArray(a, aShape, { backend }), T.fromArray(b, bShape, { backend }));
    expect(gemmRuns(backend), 'the packed kernel ran').toBe(before + 1);
    expect(got.shape).toEqual(want.shape);
    assertClose(got.dataSync(), want.dataSync(), { ...float32Tolerance({ terms: k, termBound: 1 }), what: `matmul [${aShape}] @ [${bShape}] on ${backend}` });
  });
}

const dim = (min: number, max: number) => fc.integer({ min, max });

describe.each(backends)('packed matmul on %s', (backend) => {
  test('random 2-D shapes, including ones that do not divide the blocks', () => {
    fc.assert(
      fc.property(dim(1, 70), dim(1, 90), dim(1, 70), fc.nat(), (m, k, n, seed) => {
        fc.pre(m * k * n >= 1 << 15);
        check([m, k], [k, n], backend, seed);
      }),
      { numRuns: 12 },
    );
  });

  test('batch broadcasting: in A only, in B only, in both, and against size-1 dimensions', () => {
    const cases: [number[], number[]][] = [
      [[3, 37, 41], [41, 29]], // B shared: the batch folds into the rows of A
      [[37, 41], [3, 41, 29]], // A shared: the batch folds into the columns of B
      [[2, 37, 41], [2, 41, 29]], // both batched: one product per batch element
      [[2, 1, 23, 45], [1, 3, 45, 31]], // both broadcast against each other
      [[1, 31, 33], [4, 33, 35]],
      [[4, 1, 31, 33], [33, 35]],
    ];
    cases.forEach(([a, b], i) => check(a, b, backend, 100 + i));
  });

  test('narrow products: a single row, a single column, a short reduction', () => {
    check([1, 300], [300, 150], backend, 7);
    check([300, 150], [150, 1], backend, 8);
    check([130, 2], [2, 130], backend, 9);
    check([5, 7], [7, 1000], backend, 10);
  });

  test('products split over several kernel calls (packed operands above 4M floats)', () => {
    // B: 257 column tiles of 1024 x 16 floats; A: 1025 row blocks of 1024 x 4 floats.
    check([6, 1024], [1024, 4100], backend, 11);
    check([4100, 1024], [1024, 6], backend, 12);
  });
});

test('tiny products stay on the one-cell kernel and agree with the reference', () => {
  const before = gemmRuns('webasm');
  const a = gridValues(12, 1), b = gridValues(20, 2);
  T.tidy(() => {
    const want = T.matmul(T.fromArray(a, [3, 4], { backend: 'reference' }), T.fromArray(b, [4, 5], { backend: 'reference' }));
    const got = T.matmul(T.fromArray(a, [3, 4], { backend: 'webasm' }), T.fromArray(b, [4, 5], { backend: 'webasm' }));
    assertClose(got.dataSync(), want.dataSync(), float32Tolerance({ terms: 4, termBound: 1 }));
  });
  expect(gemmRuns('webasm')).toBe(before);
});
