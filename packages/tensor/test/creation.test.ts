/** Creation functions, on every backend: values, shapes, dtypes and their defaults. */
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { expectClose, readback } from '@scm/autodiff/testing';
import { presentBackends } from '../../../test/harness.js';

const backends = await presentBackends();

const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

/** Shape, dtype and values of what fn returns, disposed afterwards. */
async function made(fn: () => T.Tensor) {
  const [v] = await readback(fn);
  return v;
}

describe.each(backends)('on %s', (backend) => {
  const opts = { backend };

  test('tensor: nested arrays, scalars, booleans, typed arrays', async () => {
    expect(await made(() => T.tensor([[1, 2, 3], [4, 5, 6]], opts))).toEqual({ shape: [2, 3], dtype: 'float32', values: [1, 2, 3, 4, 5, 6] });
    expect(await made(() => T.tensor(2.5, opts))).toEqual({ shape: [], dtype: 'float32', values: [2.5] });
    expect(await made(() => T.tensor([true, false, true], opts))).toEqual({ shape: [3], dtype: 'bool', values: [1, 0, 1] });
    expect(await made(() => T.tensor(Int32Array.from([7, -8]), opts))).toEqual({ shape: [2], dtype: 'int32', values: [7, -8] });
    expect(await made(() => T.tensor(Uint8Array.from([1, 0]), opts))).toEqual({ shape: [2], dtype: 'bool', values: [1, 0] });
    expect(await made(() => T.tensor(Float32Array.from([1, 2, 3, 4]), { ...opts, shape: [2, 2] }))).toEqual({ shape: [2, 2], dtype: 'float32', values: [1, 2, 3, 4] });
    expect(await made(() => T.tensor([[1, 2], [3, 4]], { ...opts, dtype: 'int32' }))).toEqual({ shape: [2, 2], dtype: 'int32', values: [1, 2, 3, 4] });
    expect(await made(() => T.tensor([], opts))).toEqual({ shape: [0], dtype: 'float32', values: [] });
  });

  test('fromArray rounds to the dtype: float32 rounding, int32 truncation, bool for nonzero', async () => {
    expect((await made(() => T.fromArray([0.1], [1], opts))).values).toEqual([Math.fround(0.1)]);
    expect((await made(() => T.fromArray([2.7, -2.7], [2], { ...opts, dtype: 'int32' }))).values).toEqual([2, -2]);
    expect((await made(() => T.fromArray([0, 3, -1], [3], { ...opts, dtype: 'bool' }))).values).toEqual([0, 1, 1]);
  });

  test('zeros, ones, full and the *Like versions keep dtype and backend', async () => {
    expect(await made(() => T.zeros([2, 1], opts))).toEqual({ shape: [2, 1], dtype: 'float32', values: [0, 0] });
    expect(await made(() => T.ones([3], { ...opts, dtype: 'int32' }))).toEqual({ shape: [3], dtype: 'int32', values: [1, 1, 1] });
    expect(await made(() => T.full([], -1.5, opts))).toEqual({ shape: [], dtype: 'float32', values: [-1.5] });
    expect(await made(() => T.full([2], 1, { ...opts, dtype: 'bool' }))).toEqual({ shape: [2], dtype: 'bool', values: [1, 1] });
    const like = await readback(() => {
      const x = T.tensor([[1, 2]], { ...opts, dtype: 'int32' });
      const z = T.zerosLike(x), o = T.onesLike(x, 'float32'), f = T.fullLike(x, 7);
      expect([z.backend.name, o.backend.name, f.backend.name]).toEqual([backend, backend, backend]);
      return [z, o, f];
    });
    expect(like).toEqual([
      { shape: [1, 2], dtype: 'int32', values: [0, 0] },
      { shape: [1, 2], dtype: 'float32', values: [1, 1] },
      { shape: [1, 2], dtype: 'int32', values: [7, 7] },
    ]);
  });

  test('arange: int32 for integer arguments, float32 otherwise, any step sign', async () => {
    expect(await made(() => T.arange(5, undefined, 1, opts))).toEqual({ shape: [5], dtype: 'int32', values: [0, 1, 2, 3, 4] });
    expect(await made(() => T.arange(2, 5, 1, opts))).toEqual({ shape: [3], dtype: 'int32', values: [2, 3, 4] });
    expect(await made(() => T.arange(5, 0, -2, opts))).toEqual({ shape: [3], dtype: 'int32', values: [5, 3, 1] });
    expect(await made(() => T.arange(0, 1, 0.25, opts))).toEqual({ shape: [4], dtype: 'float32', values: [0, 0.25, 0.5, 0.75] });
    expect(await made(() => T.arange(3, 3, 1, opts))).toEqual({ shape: [0], dtype: 'int32', values: [] });
    expect(await made(() => T.arange(0, -3, 1, opts))).toEqual({ shape: [0], dtype: 'int32', values: [] });
  });

  test('linspace includes both ends; eye puts ones on the diagonal', async () => {
    expect(await made(() => T.linspace(0, 1, 5, opts))).toEqual({ shape: [5], dtype: 'float32', values: [0, 0.25, 0.5, 0.75, 1] });
    expect(await made(() => T.linspace(3, 9, 1, opts))).toEqual({ shape: [1], dtype: 'float32', values: [3] });
    expect(await made(() => T.linspace(3, 9, 0, opts))).toEqual({ shape: [0], dtype: 'float32', values: [] });
    expect(await made(() => T.eye(3, undefined, opts))).toEqual({ shape: [3, 3], dtype: 'float32', values: [1, 0, 0, 0, 1, 0, 0, 0, 1] });
    expect(await made(() => T.eye(2, 3, opts))).toEqual({ shape: [2, 3], dtype: 'float32', values: [1, 0, 0, 0, 1, 0] });
  });

  test('the default backend is the selected one', async () => {
    const previous = T.getBackend().name;
    T.setBackend(backend);
    try {
      const x = T.ones([1]);
      expect(x.backend.name).toBe(backend);
      x.dispose();
    } finally {
      T.setBackend(previous);
    }
  });
});

test('float64 tensors live on the reference backend', async () => {
  const x = T.tensor([0.1, 1 / 3], { dtype: 'float64', backend: 'reference' });
  expect(Array.from(await x.data())).toEqual([0.1, 1 / 3]);
  x.dispose();
});

test('toBackend moves values between backends', async () => {
  for (const from of backends) {
    for (const to of backends) {
      const x = T.tensor([[1.5, -2], [3, 4]], { backend: from });
      const y = await T.toBackend(x, to);
      expect(y.backend.name).toBe(to);
      await expectClose(y, x, { atol: 0, rtol: 0 });
      x.dispose();
      y.dispose();
    }
  }
});
