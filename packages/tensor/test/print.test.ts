/** Printing: a header naming shape, dtype and backend, then the values in NumPy's style. */
import { afterAll, expect, test } from 'vitest';
import * as T from '@scm/tensor';

T.setBackend('reference');
const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

function printed(make: () => T.Tensor): string {
  return T.tidy(() => String(make()));
}

test('matrices print row by row, floats with a trailing dot when whole', () => {
  expect(printed(() => T.tensor([[1, 2, 3], [4, 5, 6]]))).toBe('Tensor(shape=[2, 3], dtype=float32, backend=reference)\n[[1., 2., 3.],\n [4., 5., 6.]]');
  expect(printed(() => T.tensor(3.5))).toBe('Tensor(shape=[], dtype=float32, backend=reference)\n3.5');
  expect(printed(() => T.reshape(T.arange(8), [2, 2, 2]))).toBe('Tensor(shape=[2, 2, 2], dtype=int32, backend=reference)\n[[[0, 1],\n  [2, 3]],\n [[4, 5],\n  [6, 7]]]');
});

test('five significant digits, without trailing zeros, and never losing the integer part', () => {
  const text = printed(() => T.tensor([0.5, 1 / 3, 10000.4, 123456.7, 1.25e-7, -2.5]));
  expect(text.split('\n')[1]).toBe('[0.5, 0.33333, 10000, 1.2346e+5, 1.25e-7, -2.5]');
});

test('special values, bools and int32', () => {
  expect(printed(() => T.tensor([NaN, Infinity, -Infinity])).split('\n')[1]).toBe('[NaN, Infinity, -Infinity]');
  expect(printed(() => T.tensor([true, false]))).toBe('Tensor(shape=[2], dtype=bool, backend=reference)\n[true, false]');
  expect(printed(() => T.tensor([-3, 4], { dtype: 'int32' })).split('\n')[1]).toBe('[-3, 4]');
});

test('long dimensions are elided to three items at each end', () => {
  expect(printed(() => T.arange(10)).split('\n')[1]).toBe('[0, 1, 2, ..., 7, 8, 9]');
  expect(printed(() => T.arange(7)).split('\n')[1]).toBe('[0, 1, 2, 3, 4, 5, 6]');
  const lines = printed(() => T.reshape(T.arange(80), [8, 10])).split('\n');
  expect(lines).toHaveLength(1 + 7);
  expect(lines[1]).toBe('[[0, 1, 2, ..., 7, 8, 9],');
  expect(lines[4]).toBe(' ...,');
  expect(lines[7]).toBe(' [70, 71, 72, ..., 77, 78, 79]]');
});

test('empty tensors, disposed tensors, other backends', () => {
  expect(printed(() => T.zeros([2, 0]))).toBe('Tensor(shape=[2, 0], dtype=float32, backend=reference)\n[[],\n []]');
  const x = T.tensor([1, 2]);
  x.dispose();
  expect(String(x)).toBe('Tensor(shape=[2], dtype=float32, disposed)');
  expect(printed(() => T.tensor([1.5], { backend: 'webasm' }))).toBe('Tensor(shape=[1], dtype=float32, backend=webasm)\n[1.5]');
});
