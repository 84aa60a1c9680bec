/**
 * Bad input fails loudly: every case below throws a TensorError whose message starts with the
 * op's name and lists the shapes it was given (where there are any), never a NaN or a crash.
 */
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';

T.setBackend('reference');

/** Run fn inside tidy and return what it threw. */
function thrown(fn: () => unknown): unknown {
  try {
    T.tidy(() => {
      fn();
    });
  } catch (e) {
    return e;
  }
  return undefined;
}

function expectTensorError(err: unknown, op: string, shapes: number[][] = [], detail?: RegExp): void {
  expect(err, `expected a TensorError from ${op}`).toBeInstanceOf(T.TensorError);
  const e = err as T.TensorError;
  expect(e.op).toBe(op);
  expect(e.message.startsWith(`${op}: `), e.message).toBe(true);
  for (const s of shapes) expect(e.message, e.message).toContain(`[${s.join(', ')}]`);
  if (detail) expect(e.message).toMatch(detail);
}

const x23 = () => T.ones([2, 3]);
const f = (shape: number[], dtype: T.DType = 'float32') => T.ones(shape, { dtype });
const idx = (values: number[]) => T.tensor(Int32Array.from(values));

type Case = [string, () => unknown, string, number[][], RegExp?];

const cases: Case[] = [
  // impossible shapes
  ['reshape to a different size', () => T.reshape(x23(), [4]), 'reshape', [[2, 3]], /\[4\]/],
  ['reshape with two -1', () => T.reshape(x23(), [-1, -1]), 'reshape', [[2, 3]]],
  ['reshape with an -1 that cannot be inferred', () => T.reshape(x23(), [4, -1]), 'reshape', [[2, 3]]],
  ['negative dimensions', () => T.zeros([2, -1]), 'full', [[2, -1]]],
  ['too few values', () => T.fromArray([1, 2, 3], [2, 2]), 'tensor', [[2, 2]]],
  ['ragged nested arrays', () => T.tensor([[1, 2], [3]]), 'tensor', []],
  ['squeeze of a dim that is not 1', () => T.squeeze(x23(), 0), 'squeeze', [[2, 3]]],
  ['concat of mismatched shapes', () => T.concat([f([2, 3]), f([3, 2])], 0), 'concat', [[2, 3], [3, 2]]],
  ['concat of nothing', () => T.concat([]), 'concat', []],
  ['stack of mismatched shapes', () => T.stack([f([2]), f([3])]), 'stack', [[2], [3]]],
  ['split into unequal parts', () => T.split(f([5]), 2), 'split', [[5]]],
  ['split sizes that do not add up', () => T.split(f([5]), [2, 2]), 'split', [[5]]],
  ['matmul inner dimensions', () => T.matmul(f([2, 3]), f([4, 5])), 'matmul', [[2, 3], [4, 5]], /inner/],
  ['matmul of a scalar', () => T.matmul(f([]), f([2])), 'matmul', [[], [2]]],
  ['conv2d channels', () => T.conv2d(f([1, 3, 5, 5]), f([4, 2, 3, 3])), 'conv2d', [[1, 3, 5, 5], [4, 2, 3, 3]]],
  ['conv2d of a 3-D input', () => T.conv2d(f([3, 5, 5]), f([4, 3, 3, 3])), 'conv2d', [[3, 5, 5], [4, 3, 3, 3]]],
  ['conv2d kernel larger than the input', () => T.conv2d(f([1, 1, 2, 2]), f([1, 1, 3, 3])), 'conv2d', [[1, 1, 2, 2], [1, 1, 3, 3]]],
  ['conv2d with stride 0', () => T.conv2d(f([1, 1, 4, 4]), f([1, 1, 3, 3]), { stride: 0 }), 'conv2d', []],
  ['avgPool2d of a matrix', () => T.avgPool2d(x23(), 2), 'avgPool2d', [[2, 3]]],
  ['upsampleNearest of a matrix', () => T.upsampleNearest(x23(), 2), 'upsampleNearest', [[2, 3]]],
  ['pad with the wrong number of pairs', () => T.pad(x23(), [[1, 1]]), 'pad', [[2, 3]]],
  ['pad with negative widths', () => T.pad(x23(), [[0, 0], [-1, 0]]), 'pad', [[2, 3]]],
  ['slice with step 0', () => T.slice(x23(), [{ step: 0 }]), 'slice', [[2, 3]]],
  ['slice index out of range', () => T.slice(x23(), [2]), 'slice', [[2, 3]]],
  ['slice with more specs than axes', () => T.slice(x23(), [null, null, null]), 'slice', [[2, 3]]],
  // bad axes
  ['sum over an axis past the rank', () => T.sum(x23(), 2), 'sum', [[2, 3]], /axis 2/],
  ['sum over a repeated axis', () => T.sum(x23(), [1, -1]), 'sum', [[2, 3]], /repeated/],
  ['max over an empty axis', () => T.max(f([0, 2]), 0), 'max', [[0, 2]]],
  ['argmax over a negative axis past the rank', () => T.argmax(x23(), -3), 'argmax', [[2, 3]]],
  ['transpose with a wrong permutation', () => T.transpose(x23(), [0, 0]), 'transpose', [[2, 3]]],
  ['transpose with too few axes', () => T.transpose(x23(), [1]), 'transpose', [[2, 3]]],
  ['flip of an axis past the rank', () => T.flip(x23(), 5), 'flip', [[2, 3]]],
  ['softmax of an axis past the rank', () => T.softmax(x23(), 2), 'softmax', [[2, 3]]],
  ['expandDims past the rank', () => T.expandDims(x23(), 4), 'expandDims', [[2, 3]]],
  // shapes that do not broadcast
  ['add of [2, 3] and [4]', () => T.add(x23(), f([4])), 'add', [[2, 3], [4]], /broadcast/],
  ['where with a condition that does not broadcast', () => T.where(T.ones([5], { dtype: 'bool' }), x23(), 0), 'where', [[5], [2, 3]]],
  ['broadcastTo a smaller shape', () => T.broadcastTo(x23(), [3]), 'broadcastTo', [[2, 3]]],
  ['broadcastTo a mismatched dim', () => T.broadcastTo(f([2, 3]), [4, 3, 3]), 'broadcastTo', [[2, 3]]],
  // wrong dtypes
  ['where with a float condition', () => T.where(f([2]), f([2]), f([2])), 'where', [[2]], /bool/],
  ['take with float indices', () => T.take(f([3]), f([2])), 'take', [[3], [2]], /int32/],
  ['add of bools', () => T.add(f([2], 'bool'), f([2], 'bool')), 'add', [[2], [2]], /bool/],
  ['neg of a bool', () => T.neg(f([2], 'bool')), 'neg', [[2]], /bool/],
  ['max of a bool', () => T.max(f([2], 'bool')), 'max', [[2]], /bool/],
  ['scatterAdd with float indices', () => T.scatterAdd(f([2]), f([2]), 0, 3), 'scatterAdd', [[2], [2]], /int32/],
  // indices out of range
  ['take past the end', () => T.take(f([3]), idx([0, 3])), 'take', [[3], [2]], /index 3/],
  ['take with a negative index', () => T.take(x23(), idx([-1]), 1), 'take', [[2, 3], [1]], /index -1/],
  ['scatterAdd past the end', () => T.scatterAdd(f([2]), idx([0, 4]), 0, 3), 'scatterAdd', [[2], [2]], /index 4/],
  // float64 where it cannot live
  ['float64 on cpu', () => T.zeros([2], { dtype: 'float64', backend: 'cpu' }), 'tensor', [[2]], /float64/],
  ['float64 on webasm', () => T.fromArray([1], [1], { dtype: 'float64', backend: 'webasm' }), 'tensor', [[1]], /float64/],
  ['cast to float64 on webasm', () => T.cast(T.ones([2], { backend: 'webasm' }), 'float64'), 'cast', [], /float64/],
  // other misuse
  ['ops across backends', () => T.add(T.ones([2], { backend: 'reference' }), T.ones([2], { backend: 'cpu' })), 'add', [[2], [2]], /one backend/],
  ['arange with step 0', () => T.arange(0, 3, 0), 'arange', []],
  ['linspace with a negative count', () => T.linspace(0, 1, -1), 'linspace', []],
  ['bernoulli with p > 1', () => T.random.bernoulli(T.random.key(0), 1.5, [2]), 'bernoulli', []],
  ['a key from a fractional seed', () => T.random.key(0.5), 'key', []],
  ['an unknown backend', () => T.setBackend('tpu' as T.BackendName), 'backend', [], /tpu/],
];

describe('TensorError names the op and the shapes', () => {
  test.each(cases)('%s', (_name, fn, op, shapes, detail) => expectTensorError(thrown(fn), op, shapes, detail));
});

describe('disposed tensors', () => {
  test('every use of a disposed tensor throws, naming the op and the shape', async () => {
    const x = T.ones([2, 2]);
    x.dispose();
    expectTensorError(thrown(() => T.exp(x)), 'exp', [[2, 2]], /disposed/);
    expectTensorError(thrown(() => T.add(x, T.ones([2, 2]))), 'add', [[2, 2]], /disposed/);
    expectTensorError(thrown(() => T.add(x, 1)), 'add', [[2, 2]], /disposed/);
    expectTensorError(thrown(() => T.sum(x)), 'sum', [[2, 2]], /disposed/);
    expectTensorError(thrown(() => x.dataSync()), 'dataSync', [[2, 2]], /disposed/);
    expectTensorError(await x.data().then(() => undefined, (e) => e), 'data', [[2, 2]], /disposed/);
  });
});

test('item of a tensor with more than one element', async () => {
  const x = T.ones([2]);
  expectTensorError(await x.item().then(() => undefined, (e) => e), 'item', [[2]]);
  x.dispose();
});

test('tidy refuses an async function', () => {
  expectTensorError(thrown(() => T.tidy(async () => T.ones([1]))), 'tidy');
});

test('webgpu reads back asynchronously only', async () => {
  if (!(await T.initWebGPU())) {
    console.log('webgpu: no adapter here, so its dataSync error is not checked');
    return;
  }
  const x = T.ones([2], { backend: 'webgpu' });
  expectTensorError(thrown(() => x.dataSync()), 'dataSync', [], /await/);
  x.dispose();
});

afterAll(() => expect(T.memory()).toEqual({ tensors: 0, buffers: 0 }));
