/**
 * The packed convolution plans on the cpu and webasm backends, against the float64
 * reference: conv2d (im2col + packed product), its input gradient (the cotangent dilated by
 * the stride, a convolution with the flipped kernel) and its weight gradient (im2col as the
 * right operand), over random strides, paddings (also wider than the kernel), dilations,
 * groups and sizes that do not divide the kernel's blocks.
 *
 * Inputs are multiples of 1/64 in [-1, 1]: products are exact in float32, only the float32
 * accumulation differs from the reference.
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
const outSize = (n: number, k: number, s: number, p: number, d: number) => Math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1;

interface ConvCase {
  x: number[];
  w: number[];
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  groups: number;
}

function planRuns(backend: T.BackendName): Record<string, number> {
  const b = T.getBackendInstance(backend) as unknown as { planRuns: Map<string, number> };
  return Object.fromEntries(b.planRuns);
}

/** conv2d and both gradient primitives on `backend` against the reference; all three must take the plan. */
function check(c: ConvCase, backend: T.BackendName, seed: number): void {
  const { x: xs, w: ws, groups } = c;
  const p = { stride: c.stride, padding: c.padding, dilation: c.dilation, groups };
  const [N, C, H, W] = xs, [O, Cg, KH, KW] = ws;
  const OH = outSize(H, KH, p.stride[0], p.padding[0], p.dilation[0]), OW = outSize(W, KW, p.stride[1], p.padding[1], p.dilation[1]);
  const ys = [N, O, OH, OW];
  const x = gridValues(size(xs), seed), w = gridValues(size(ws), seed + 1), gy = gridValues(size(ys), seed + 2);
  const run = (b: T.BackendName) => T.tidy(() => {
    const xt = T.fromArray(x, xs, { backend: b }), wt = T.fromArray(w, ws, { backend: b }), gt = T.fromArray(gy, ys, { backend: b });
    return [
      T.conv2dPrim(xt, wt, p),
      T.conv2dInputGrad(gt, wt, { ...p, inputShape: xs }),
      T.conv2dWeightGrad(xt, gt, { ...p, kernelSize: [KH, KW] }),
    ].map((t) => ({ shape: t.shape, values: t.dataSync() }));
  });
  const before = planRuns(backend);
  const got = run(backend);
  const after = planRuns(backend);
  // A strided convolution's input gradient runs by phases (no products with the zeros of a dilated g).
  const inputGrad = c.stride[0] > 1 || c.stride[1] > 1 ? 'conv2dInputGrad:phase-gemm' : 'conv2dInputGrad:dilate-gemm';
  for (const key of ['conv2d:im2col-gemm', inputGrad, 'conv2dWeightGrad:im2col-gemm']) {
    expect(after[key] ?? 0, `${key} ran`).toBe((before[key] ?? 0) + 1);
  }
  const want = run('reference');
  const terms = [Cg * KH * KW, (O / groups) * KH * KW, N * OH * OW];
  ['conv2d', 'conv2dInputGrad', 'conv2dWeightGrad'].forEach((name, k) => {
    expect(got[k].shape).toEqual(want[k].shape);
    assertClose(got[k].values, want[k].values, { ...float32Tolerance({ terms: terms[k], termBound: 1 }), what: `${name} ${JSON.stringify(c)} on ${backend}` });
  });
}

const pair = (min: number, max: number) => fc.tuple(fc.integer({ min, max }), fc.integer({ min, max }));

const convCaseArb: fc.Arbitrary<ConvCase> = fc
  .record({
    n: fc.integer({ min: 1, max: 3 }),
    groups: fc.integer({ min: 1, max: 3 }),
    cg: fc.integer({ min: 1, max: 6 }),
    // Grouped convolutions take the plan with at least 4 rows per product (channels per group).
    og: fc.integer({ min: 4, max: 9 }),
    hw: pair(3, 12),
    k: pair(1, 4),
    stride: pair(1, 3),
    padding: pair(0, 3),
    dilation: pair(1, 2),
  })
  .map(({ n, groups, cg, og, hw, k, stride, padding, dilation }) => ({
    x: [n, cg * groups, hw[0], hw[1]],
    w: [og * groups, cg, k[0], k[1]],
    stride, padding, dilation, groups,
  }));

function feasible(c: ConvCase): boolean {
  const [N, , H, W] = c.x, [O, Cg, KH, KW] = c.w;
  const OH = outSize(H, KH, c.stride[0], c.padding[0], c.dilation[0]), OW = outSize(W, KW, c.stride[1], c.padding[1], c.dilation[1]);
  // Every gradient's input channels per group must be >= 4 too, and each product big enough to be packed.
  return OH > 0 && OW > 0 && Cg >= (c.groups > 1 ? 4 : 1) && N * O * OH * OW * Cg * KH * KW >= 1 << 15;
}

describe.each(backends)('packed convolutions on %s', (backend) => {
  test('random strides, paddings, dilations, groups and odd sizes', () => {
    fc.assert(
      fc.property(convCaseArb, fc.nat(), (c, seed) => {
        fc.pre(feasible(c));
        check(c, backend, seed);
      }),
      { numRuns: 10 },
    );
  });

  test('edge cases: padding wider than the kernel reach, stride above the kernel size, 1x1 kernels', () => {
    const base = { stride: [1, 1] as [number, number], padding: [0, 0] as [number, number], dilation: [1, 1] as [number, number], groups: 1 };
    check({ ...base, x: [2, 5, 9, 10], w: [7, 5, 2, 3], padding: [3, 4] }, backend, 1);
    check({ ...base, x: [3, 6, 29, 31], w: [8, 6, 2, 2], stride: [3, 4], padding: [1, 0] }, backend, 2);
    check({ ...base, x: [3, 16, 7, 9], w: [20, 16, 1, 1] }, backend, 3);
    check({ ...base, x: [1, 8, 12, 12], w: [8, 4, 3, 3], groups: 2, dilation: [2, 3], padding: [2, 3] }, backend, 4);
  });
});

test('depthwise convolutions stay on the one-cell kernel', () => {
  const before = planRuns('webasm');
  const c: ConvCase = { x: [2, 16, 20, 20], w: [16, 1, 3, 3], stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 16 };
  T.tidy(() => {
    const x = gridValues(size(c.x), 5), w = gridValues(size(c.w), 6);
    const got = T.conv2d(T.fromArray(x, c.x, { backend: 'webasm' }), T.fromArray(w, c.w, { backend: 'webasm' }), { padding: 1, groups: 16 });
    const want = T.conv2d(T.fromArray(x, c.x, { backend: 'reference' }), T.fromArray(w, c.w, { backend: 'reference' }), { padding: 1, groups: 16 });
    assertClose(got.dataSync(), want.dataSync(), float32Tolerance({ terms: 9, termBound: 1 }));
  });
  expect(planRuns('webasm')['conv2d:im2col-gemm'] ?? 0).toBe(before['conv2d:im2col-gemm'] ?? 0);
});
