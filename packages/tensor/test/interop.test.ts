/** ndarray interop: fromNdarray on contiguous data and on strided views, toNdarray, round trips. */
import fc from 'fast-check';
import ndarray, { type NdArray } from 'ndarray';
import { afterAll, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { shapeArb } from '@scm/autodiff/testing';
import { runs } from '../../../test/harness.js';

const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

/** The elements of a view in row-major order, read through its own get(). */
function viewValues(a: NdArray): number[] {
  const out: number[] = [];
  const rec = (prefix: number[]) => {
    if (prefix.length === a.dimension) out.push(a.get(...prefix) as number);
    else for (let i = 0; i < a.shape[prefix.length]; i++) rec([...prefix, i]);
  };
  rec([]);
  return out;
}

async function tensorValues(t: T.Tensor): Promise<number[]> {
  try {
    return Array.from(await t.data());
  } finally {
    t.dispose();
  }
}

test('fromNdarray: contiguous arrays keep shape and values; the dtype follows the typed array', async () => {
  const a = ndarray(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
  const t = T.fromNdarray(a, { backend: 'webasm' });
  expect([t.shape, t.dtype]).toEqual([[2, 3], 'float32']);
  expect(await tensorValues(t)).toEqual([1, 2, 3, 4, 5, 6]);
  const i = T.fromNdarray(ndarray(Int32Array.from([-1, 2]), [2]));
  expect(i.dtype).toBe('int32');
  i.dispose();
  const b = T.fromNdarray(ndarray(Uint8Array.from([1, 0, 1]), [3]));
  expect(b.dtype).toBe('bool');
  b.dispose();
  // Float64 data becomes float32 unless asked otherwise (float64 lives on the reference backend only).
  const d = T.fromNdarray(ndarray(Float64Array.from([0.1]), [1]));
  expect(d.dtype).toBe('float32');
  d.dispose();
  const e = T.fromNdarray(ndarray(Float64Array.from([0.1]), [1]), { dtype: 'float64', backend: 'reference' });
  expect(await tensorValues(e)).toEqual([0.1]);
});

test('fromNdarray reads strided views (transposes, sub-blocks, negative steps, picks) in logical order', async () => {
  type View = { kind: 'transpose' | 'hi' | 'lo' | 'step' | 'pick'; seed: number[] };
  const viewArb = fc.record({ kind: fc.constantFrom<View['kind']>('transpose', 'hi', 'lo', 'step', 'pick'), seed: fc.array(fc.nat(7), { minLength: 4, maxLength: 4 }) });
  const apply = (a: NdArray, v: View): NdArray => {
    const d = a.dimension;
    if (d === 0) return a;
    switch (v.kind) {
      case 'transpose': {
        const perm = [...Array(d).keys()].sort((x, y) => ((v.seed[x % 4] + x) % d) - ((v.seed[y % 4] + y) % d) || x - y);
        return a.transpose(...perm);
      }
      case 'hi': return a.hi(...a.shape.map((n, k) => 1 + (v.seed[k % 4] % n)));
      case 'lo': return a.lo(...a.shape.map((n, k) => v.seed[k % 4] % n));
      case 'step': return a.step(...a.shape.map((_, k) => [1, -1, 2, -2][v.seed[k % 4] % 4]));
      case 'pick': return d > 1 ? a.pick(...a.shape.map((n, k) => (k === 0 ? v.seed[0] % n : null)) as number[]) : a;
    }
  };
  await fc.assert(
    fc.asyncProperty(shapeArb({ minRank: 1, maxDim: 5, maxSize: 120 }), fc.array(viewArb, { maxLength: 3 }), async (shape, views) => {
      const size = shape.reduce((x, y) => x * y, 1);
      let a: NdArray = ndarray(Float32Array.from({ length: size }, (_, i) => i * 0.5 - 7), shape);
      for (const v of views) a = apply(a, v);
      const want = viewValues(a);
      for (const backend of ['reference', 'webasm'] as const) {
        const t = T.fromNdarray(a, { backend });
        expect(t.shape).toEqual(a.shape);
        expect(await tensorValues(t)).toEqual(want);
      }
    }),
    runs(60),
  );
});

test('toNdarray gives a row-major ndarray of the dtype, and round trips', async () => {
  await fc.assert(
    fc.asyncProperty(shapeArb({ maxSize: 48 }), fc.constantFrom<T.DType>('float32', 'int32', 'bool'), async (shape, dtype) => {
      const size = shape.reduce((x, y) => x * y, 1);
      const values = Array.from({ length: size }, (_, i) => (dtype === 'bool' ? i % 3 === 0 : (i % 7) - 3));
      const t = T.fromArray(values.map(Number), shape, { dtype, backend: 'cpu' });
      const a = await T.toNdarray(t);
      expect(a.shape).toEqual(shape);
      expect(a.data.constructor).toBe({ float32: Float32Array, int32: Int32Array, bool: Uint8Array, float64: Float64Array }[dtype]);
      if (shape.length) expect(viewValues(a)).toEqual(values.map(Number));
      const back = T.fromNdarray(a, { backend: 'cpu' });
      expect(back.dtype).toBe(dtype);
      expect(await tensorValues(back)).toEqual(Array.from(await t.data()));
      t.dispose();
    }),
    runs(30),
  );
});
