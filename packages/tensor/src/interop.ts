/** ndarray is the interchange type for host data. */
import ndarray, { type NdArray } from 'ndarray';
import type { DType } from './dtype.js';
import { TensorError } from './errors.js';
import { fromArray, type CreateOptions } from './ops.js';
import { stridesOf } from './shape.js';
import type { Tensor } from './tensor.js';

function dtypeOf(data: unknown): DType {
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Uint8Array) return 'bool';
  return 'float32';
}

/** A tensor from an ndarray (any strides; contiguous row-major data is read without reordering). */
export function fromNdarray(arr: NdArray, opts: CreateOptions = {}): Tensor {
  const shape = arr.shape;
  const contiguous = arr.offset === 0 && stridesOf(shape).every((s, d) => shape[d] <= 1 || arr.stride[d] === s);
  let values: ArrayLike<number>;
  if (contiguous && (arr.data as ArrayLike<number>).length === arr.size) values = arr.data as ArrayLike<number>;
  else {
    const out = new Float64Array(arr.size);
    const strides = stridesOf(shape);
    for (let i = 0; i < arr.size; i++) {
      let off = arr.offset;
      for (let d = 0; d < shape.length; d++) off += (Math.floor(i / strides[d]) % shape[d]) * arr.stride[d];
      out[i] = (arr.data as ArrayLike<number>)[off];
    }
    values = out;
  }
  if (typeof (values as ArrayLike<number>)[0] !== 'number' && arr.size > 0) throw new TensorError('fromNdarray', 'expected numeric data', [shape]);
  return fromArray(values, shape, { dtype: opts.dtype ?? (dtypeOf(arr.data) === 'float64' ? 'float32' : dtypeOf(arr.data)), ...opts });
}

/** Read a tensor back into a row-major ndarray over a typed array of its dtype. */
export async function toNdarray(t: Tensor): Promise<NdArray> {
  const data = await t.data();
  return ndarray(data, [...t.shape]);
}
