/** Misuse of the transforms fails with a TensorError naming the transform and the shapes. */
import { afterAll, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import * as AD from '@scm/autodiff';
import { checkGrads } from '@scm/autodiff/testing';

T.setBackend('reference');
const f64 = (shape: number[]) => T.ones(shape, { dtype: 'float64' });

function thrown(fn: () => unknown): T.TensorError {
  let err: unknown;
  T.tidy(() => {
    try {
      fn();
    } catch (e) {
      err = e;
    }
  });
  expect(err).toBeInstanceOf(T.TensorError);
  return err as T.TensorError;
}

function expectError(err: T.TensorError, op: string, shapes: number[][] = [], detail?: RegExp) {
  expect(err.op).toBe(op);
  expect(err.message.startsWith(`${op}: `), err.message).toBe(true);
  for (const s of shapes) expect(err.message).toContain(`[${s.join(', ')}]`);
  if (detail) expect(err.message).toMatch(detail);
}

test('grad of a function that does not return a float scalar', () => {
  expectError(thrown(() => AD.grad((x: T.Tensor) => T.exp(x))(f64([2, 3]))), 'grad', [[2, 3]], /scalar/);
  expectError(thrown(() => AD.grad((x: T.Tensor) => T.argmax(x, 0))(f64([3]))), 'grad', [[]], /float/);
  expectError(thrown(() => AD.grad(() => 3)(f64([3]))), 'grad', [], /number/);
});

test('grad with argnums out of range', () => {
  expectError(thrown(() => AD.grad((x: T.Tensor) => T.sum(x), { argnums: 2 })(f64([2]))), 'grad', [], /argnums 2/);
});

test('jvp with a tangent of the wrong shape or dtype, or a missing one', () => {
  expectError(thrown(() => AD.jvp(T.exp, [f64([2, 3])], [f64([3, 2])])), 'jvp', [[2, 3], [3, 2]]);
  expectError(thrown(() => AD.jvp(T.exp, [f64([2])], [T.ones([2], { dtype: 'float32', backend: 'reference' })])), 'jvp', [[2]], /float32/);
  expectError(thrown(() => AD.jvp(T.add, [f64([2]), f64([2])], [f64([2])])), 'jvp', [], /2 primals and 1 tangents/);
});

test('vjp with a cotangent of the wrong shape or count', () => {
  expectError(thrown(() => AD.vjp(T.exp, f64([2, 2]))[1](f64([4]))), 'vjp', [[2, 2], [4]]);
  expectError(thrown(() => AD.vjp((x: T.Tensor) => [x, x], f64([2]))[1]([f64([2])])), 'vjp', [], /2 output cotangents, got 1/);
});

test('jacobians of something other than one float tensor', () => {
  expectError(thrown(() => AD.jacfwd(T.exp)(T.ones([2], { dtype: 'int32' }))), 'jacfwd', [[2]], /float/);
  expectError(thrown(() => AD.jacrev(T.exp)([f64([2])] as unknown as T.Tensor)), 'jacrev', [], /single tensor/);
});

test('custom rules that break their contract', () => {
  const bad = AD.customVjp((x: T.Tensor) => T.exp(x), (x: T.Tensor) => [T.exp(x), x] as [T.Tensor, T.Tensor], () => [null, null]);
  expectError(thrown(() => AD.grad((x: T.Tensor) => T.sum(bad(x)))(f64([2]))), 'customVjp', [], /2 cotangents for 1 arguments/);
  const wrongShape = AD.customVjp((x: T.Tensor) => T.exp(x), (x: T.Tensor) => [T.exp(x), x] as [T.Tensor, T.Tensor], (x) => [T.sum(x)]);
  expect(() => T.tidy(() => AD.grad((x: T.Tensor) => T.sum(wrongShape(x)))(f64([2])))).toThrow(/wrong shape/);
});

test('checkGrads with an order below 1', async () => {
  const x = f64([2]);
  await expect(checkGrads(T.exp, [x], { order: 0 })).rejects.toThrow(/order must be a positive integer/);
  x.dispose();
});

afterAll(() => expect(T.memory()).toEqual({ tensors: 0, buffers: 0 }));
