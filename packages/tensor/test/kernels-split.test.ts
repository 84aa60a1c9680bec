/**
 * Split sums on webgpu (Primitive.split): a sum with few output cells and long loops runs
 * as a kernel of partial sums, one thread per (chunk of the outermost summed loop, cell),
 * and a second kernel that adds the parts. Checked against the float64 reference for sum,
 * fusedSum and the convolution's weight gradient, with chunks that do not divide the loop;
 * the choice of the parts is checked everywhere.
 */
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { splitParts } from '../src/backends/gpujs.js';
import { gridValues } from '../../../test/harness.js';
import { assertClose, float32Tolerance } from '@scm/autodiff/testing';

const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

test('splitParts: only few cells with long sums are cut, into equal non-empty chunks', () => {
  expect(splitParts(1 << 16, 128, 1 << 17)).toBe(1); // enough cells already
  expect(splitParts(64, 128, 1024)).toBe(1); // short sums
  expect(splitParts(1, 393216, 393216)).toBe(1536); // a whole tensor: 256 terms a thread
  expect(splitParts(64, 128, 131072)).toBe(128); // a bias gradient: one part per image
  for (const [cells, extent, terms] of [[100, 7, 7000], [1, 1001, 1001 * 3], [36864, 128, 131072], [5, 97, 97 * 40]]) {
    const parts = splitParts(cells, extent, terms);
    const chunk = Math.ceil(extent / parts);
    expect(parts).toBeLessThanOrEqual(extent);
    expect((parts - 1) * chunk, `the last of ${parts} parts of ${extent} is not empty`).toBeLessThan(extent);
  }
});

const webgpu = await T.initWebGPU();
describe.runIf(webgpu)('split sums on webgpu', () => {
  const backend = T.getBackendInstance('webgpu') as unknown as { planRuns: Map<string, number>; intermediates: number };
  const splits = (name: string) => backend.planRuns.get(`${name}:split`) ?? 0;

  /** `fn` on webgpu and on the reference, from the same grid values; the split ran once. */
  async function check(name: string, shapes: number[][], fn: (...xs: T.Tensor[]) => T.Tensor, terms: number, bound = 1): Promise<void> {
    const values = shapes.map((s, k) => gridValues(s.reduce((a, b) => a * b, 1), 40 + k));
    const want = T.tidy(() => fn(...values.map((v, k) => T.fromArray(v, shapes[k], { backend: 'reference' }))));
    const before = splits(name);
    const got = T.tidy(() => fn(...values.map((v, k) => T.fromArray(v, shapes[k], { backend: 'webgpu' }))));
    expect(splits(name), `${name} was split`).toBe(before + 1);
    expect(got.shape).toEqual(want.shape);
    assertClose(await got.data(), want.dataSync(), { ...float32Tolerance({ terms, termBound: bound }), what: `${name} on webgpu` });
    T.dispose([want, got]);
    // The partial sums' device buffer is deleted once the second kernel has read it.
    for (let i = 0; i < 50 && backend.intermediates > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(backend.intermediates, 'split-sum intermediates still live').toBe(0);
  }

  test('sum: over everything, over leading and inner axes, chunks that do not divide the loop', async () => {
    await check('sum', [[3001, 7]], (x) => T.sum(x), 21007);
    await check('sum', [[37, 5, 11, 13]], (x) => T.sum(x, [0, 2, 3]), 37 * 143);
    await check('sum', [[6, 3001]], (x) => T.sum(x, 1, true), 3001);
  });

  test('fusedSum: a product with a broadcast input, summed over the batch and the image', async () => {
    await check('fusedSum', [[29, 4, 9, 9], [4, 1, 1]], (x, s) => T.fuseSum((a, b) => a.mul(b).add(1), [x, s], [0, 2, 3], true), 29 * 81, 2);
  });

  test('conv2d weight gradient: the sum over the batch cut into chunks, with stride and padding', async () => {
    const p = { ...T.convParams({ stride: 2, padding: 1 }), kernelSize: [3, 3] as [number, number] };
    await check('conv2dWeightGrad', [[33, 2, 16, 16], [33, 3, 8, 8]], (x, g) => T.conv2dWeightGrad(x, g, p), 33 * 64);
  });
});
