/**
 * The memory model: memory() counts live tensors and buffers, and returns to its baseline
 * after tidy, dispose and keep are used as documented, on every backend.
 */
import { describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { presentBackends } from '../../../test/harness.js';

const backends = await presentBackends();

describe.each(backends)('on %s', (backend) => {
  // The software WebGPU driver is slow; the model is the same.
  const steps = backend === 'webgpu' ? 100 : 1000;

  test(`${steps} ops inside tidy leave only the result`, async () => {
    const before = T.memory();
    const result = T.tidy(() => {
      let x = T.ones([4, 3], { backend });
      for (let i = 0; i < steps; i++) x = T.add(T.mul(T.sin(x), 0.5), T.mul(T.mean(x, 1, true), 0.25));
      return T.mean(x);
    });
    expect(T.memory()).toEqual({ tensors: before.tensors + 1, buffers: before.buffers + 1 });
    expect(Number.isFinite((await result.data())[0])).toBe(true);
    result.dispose();
    expect(T.memory()).toEqual(before);
  });

  test(`${steps} ops disposed one by one return to the baseline`, () => {
    const before = T.memory();
    let x = T.ones([5], { backend });
    for (let i = 0; i < steps; i++) {
      const negated = T.neg(x);
      const y = T.exp(negated);
      negated.dispose();
      x.dispose();
      x = y;
    }
    expect(T.memory()).toEqual({ tensors: before.tensors + 1, buffers: before.buffers + 1 });
    x.dispose();
    expect(T.memory()).toEqual(before);
  });

  test('an op called outside any scope leaves only its result (lifted numbers, casts, composites)', () => {
    const x = T.fromArray([0.5, -1, 2, 3, 0.1, -0.2], [2, 3], { backend });
    const i = T.fromArray([1, 2, 3, 4, 5, 6], [2, 3], { backend, dtype: 'int32' });
    const mask = T.greater(x, 0);
    const v = T.fromArray([1, 2, 3], [3], { backend });
    const before = T.memory();
    const calls: Record<string, () => T.Tensor | T.Tensor[]> = {
      'add(x, 2)': () => T.add(x, 2), 'mul(int, 0.5)': () => T.mul(i, 0.5), 'div(int, 2)': () => T.div(i, 2), 'exp(int)': () => T.exp(i),
      relu: () => T.relu(x), gelu: () => T.gelu(x), softplus: () => T.softplus(x), clip: () => T.clip(x, -0.5, 0.5),
      where: () => T.where(mask, x, 0), 'sum(bool)': () => T.sum(mask), 'mean(int)': () => T.mean(i), variance: () => T.variance(x, 1),
      softmax: () => T.softmax(x), logSoftmax: () => T.logSoftmax(x), logsumexp: () => T.logsumexp(x, 1), split: () => T.split(x, 3, 1),
      matmul: () => T.matmul(x, v),
    };
    for (const [name, call] of Object.entries(calls)) {
      T.dispose(call());
      expect(T.memory(), name).toEqual(before);
    }
    T.dispose([x, i, mask, v]);
  });

  test('reshape shares the buffer; it is freed with its last tensor', async () => {
    const before = T.memory();
    const x = T.tensor([[1, 2], [3, 4]], { backend });
    const y = T.reshape(x, [4]);
    expect(T.memory()).toEqual({ tensors: before.tensors + 2, buffers: before.buffers + 1 });
    x.dispose();
    expect(T.memory()).toEqual({ tensors: before.tensors + 1, buffers: before.buffers + 1 });
    expect(Array.from(await y.data())).toEqual([1, 2, 3, 4]);
    y.dispose();
    expect(T.memory()).toEqual(before);
  });
});

test('tidy keeps tensors returned in nested arrays and objects, and keep() ones', () => {
  T.setBackend('reference');
  const before = T.memory();
  let kept!: T.Tensor;
  const out = T.tidy(() => {
    const a = T.ones([2]);
    kept = T.keep(T.add(a, 1));
    T.add(a, 2);
    return { list: [T.mul(a, 3)], nested: { b: T.exp(a) }, n: 3 };
  });
  expect(T.memory().tensors - before.tensors).toBe(3);
  expect(Array.from(kept.dataSync())).toEqual([2, 2]);
  T.dispose(out);
  kept.dispose();
  expect(T.memory()).toEqual(before);
});

test('nested tidy hands its result to the enclosing scope, which disposes it', () => {
  const before = T.memory();
  T.tidy(() => {
    const inner = T.tidy(() => T.add(T.ones([3]), 1));
    expect(inner.isDisposed).toBe(false);
    return undefined;
  });
  expect(T.memory()).toEqual(before);
});

test('a throwing tidy disposes what it made', () => {
  const before = T.memory();
  expect(() =>
    T.tidy(() => {
      T.ones([2]);
      throw new Error('boom');
    }),
  ).toThrow('boom');
  expect(T.memory()).toEqual(before);
});

test('dispose is idempotent and disposes whole trees', () => {
  const before = T.memory();
  const x = T.ones([1]);
  x.dispose();
  x.dispose();
  expect(x.isDisposed).toBe(true);
  T.dispose({ a: [T.ones([1]), T.zeros([2])], b: T.ones([3]) });
  expect(T.memory()).toEqual(before);
});
