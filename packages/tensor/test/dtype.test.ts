/**
 * Dtype promotion (bool < int32 < float32 < float64, numbers adopt the tensor's dtype as
 * JAX's weak types) and cast semantics, on the reference backend and on a GPU.js backend.
 */
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { readback } from '@scm/autodiff/testing';

const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

test('promote is the join of bool < int32 < float32 < float64', () => {
  const order: T.DType[] = ['bool', 'int32', 'float32', 'float64'];
  for (const a of order) for (const b of order) expect(T.promote(a, b)).toBe(order[Math.max(order.indexOf(a), order.indexOf(b))]);
});

describe.each(['reference', 'webasm'] as const)('on %s', (backend) => {
  const t = (v: T.NestedArray, dtype: T.DType) => T.tensor(v, { dtype, backend });
  const run = async (fn: () => T.Tensor) => (await readback(fn))[0];

  test('binary ops promote their operands', async () => {
    expect(await run(() => T.add(t([1, 2], 'int32'), t([0.5, 0.5], 'float32')))).toMatchObject({ dtype: 'float32', values: [1.5, 2.5] });
    expect(await run(() => T.add(t([true, false], 'bool'), t([3, 4], 'int32')))).toMatchObject({ dtype: 'int32', values: [4, 4] });
    expect(await run(() => T.mul(t([1, 2], 'int32'), t([true, false], 'bool')))).toMatchObject({ dtype: 'int32', values: [1, 0] });
    expect(await run(() => T.maximum(t([1, 5], 'int32'), t([2.5, 2.5], 'float32')))).toMatchObject({ dtype: 'float32', values: [2.5, 5] });
  });

  test('numbers are weakly typed: they take the tensor dtype unless they do not fit it', async () => {
    expect(await run(() => T.add(t([1, 2], 'int32'), 2))).toMatchObject({ dtype: 'int32', values: [3, 4] });
    expect(await run(() => T.add(t([1, 2], 'int32'), 0.5))).toMatchObject({ dtype: 'float32', values: [1.5, 2.5] });
    expect(await run(() => T.sub(3, t([1, 2], 'int32')))).toMatchObject({ dtype: 'int32', values: [2, 1] });
    expect(await run(() => T.add(t([true, false], 'bool'), 1))).toMatchObject({ dtype: 'float32', values: [2, 1] });
    expect(await run(() => T.mul(t([1.5], 'float32'), 2))).toMatchObject({ dtype: 'float32', values: [3] });
  });

  test('float-only ops turn integers and bools into float32', async () => {
    expect(await run(() => T.div(t([7, -7], 'int32'), t([2, 2], 'int32')))).toMatchObject({ dtype: 'float32', values: [3.5, -3.5] });
    expect(await run(() => T.exp(t([0], 'int32')))).toMatchObject({ dtype: 'float32', values: [1] });
    expect(await run(() => T.sqrt(t([true], 'bool')))).toMatchObject({ dtype: 'float32', values: [1] });
    expect(await run(() => T.mean(t([1, 2], 'int32')))).toMatchObject({ dtype: 'float32', values: [1.5] });
    expect(await run(() => T.matmul(t([[1, 2]], 'int32'), t([[3], [4]], 'int32')))).toMatchObject({ dtype: 'float32', values: [11] });
    expect(await run(() => T.pow(t([2], 'int32'), t([3], 'int32')))).toMatchObject({ dtype: 'float32', values: [8] });
  });

  test('integer ops keep int32; sums of bools count; comparisons give bool; argmax gives int32', async () => {
    expect(await run(() => T.neg(t([3, -4], 'int32')))).toMatchObject({ dtype: 'int32', values: [-3, 4] });
    expect(await run(() => T.abs(t([3, -4], 'int32')))).toMatchObject({ dtype: 'int32', values: [3, 4] });
    expect(await run(() => T.sum(t([[1, 2], [3, 4]], 'int32'), 0))).toMatchObject({ dtype: 'int32', values: [4, 6] });
    expect(await run(() => T.sum(t([true, true, false], 'bool')))).toMatchObject({ dtype: 'int32', values: [2] });
    expect(await run(() => T.less(t([1, 2], 'int32'), t([1.5, 1.5], 'float32')))).toMatchObject({ dtype: 'bool', values: [1, 0] });
    expect(await run(() => T.equal(t([true, false], 'bool'), t([true, true], 'bool')))).toMatchObject({ dtype: 'bool', values: [1, 0] });
    expect(await run(() => T.argmax(t([[1, 3, 2]], 'float32'), 1))).toMatchObject({ dtype: 'int32', values: [1] });
  });

  test('where and concat promote their branches', async () => {
    expect(await run(() => T.where(t([true, false], 'bool'), t([1, 2], 'int32'), t([0.5, 0.5], 'float32')))).toMatchObject({ dtype: 'float32', values: [1, 0.5] });
    expect(await run(() => T.where(t([true, false], 'bool'), 1, t([5, 6], 'int32')))).toMatchObject({ dtype: 'int32', values: [1, 6] });
    expect(await run(() => T.concat([t([1], 'int32'), t([true], 'bool'), t([0.5], 'float32')]))).toMatchObject({ dtype: 'float32', values: [1, 1, 0.5] });
  });

  test('cast: floats truncate toward zero to int32, nonzero is true, bools are 0 and 1', async () => {
    expect(await run(() => T.cast(t([-1.7, -0.2, 0.2, 1.7, 2], 'float32'), 'int32'))).toMatchObject({ dtype: 'int32', values: [-1, 0, 0, 1, 2] });
    expect(await run(() => T.cast(t([-1, 0, 0.5], 'float32'), 'bool'))).toMatchObject({ dtype: 'bool', values: [1, 0, 1] });
    expect(await run(() => T.cast(t([true, false], 'bool'), 'float32'))).toMatchObject({ dtype: 'float32', values: [1, 0] });
    expect(await run(() => T.cast(t([5, 0], 'int32'), 'bool'))).toMatchObject({ dtype: 'bool', values: [1, 0] });
  });
});

test('float64 arithmetic on the reference backend keeps float64 precision', async () => {
  const [v] = await readback(() => T.add(T.tensor([0.1], { dtype: 'float64', backend: 'reference' }), T.tensor([0.2], { dtype: 'float64', backend: 'reference' })));
  expect(v).toEqual({ shape: [1], dtype: 'float64', values: [0.1 + 0.2] });
  const [w] = await readback(() => T.add(T.tensor([0.1], { dtype: 'float64', backend: 'reference' }), 1));
  expect(w.dtype).toBe('float64');
});

test('int32 values are exact on GPU.js backends up to 2^24 (they are stored as float32)', async () => {
  for (const backend of ['cpu', 'webasm'] as const) {
    const [v] = await readback(() => T.add(T.tensor([2 ** 24 - 1, -(2 ** 24 - 1)], { dtype: 'int32', backend }), 1));
    expect(v.values).toEqual([2 ** 24, -(2 ** 24) + 2]);
  }
});
