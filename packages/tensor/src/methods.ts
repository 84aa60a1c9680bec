/** Chainable methods on Tensor (x.add(y).exp().sum()), each forwarding to the op of the same name. */
import * as ops from './ops.js';
import { Tensor } from './tensor.js';
import type { DType } from './dtype.js';

declare module './tensor.js' {
  interface Tensor {
    add(y: ops.TensorLike): Tensor;
    sub(y: ops.TensorLike): Tensor;
    mul(y: ops.TensorLike): Tensor;
    div(y: ops.TensorLike): Tensor;
    pow(y: ops.TensorLike): Tensor;
    maximum(y: ops.TensorLike): Tensor;
    minimum(y: ops.TensorLike): Tensor;
    neg(): Tensor;
    abs(): Tensor;
    exp(): Tensor;
    log(): Tensor;
    sqrt(): Tensor;
    square(): Tensor;
    tanh(): Tensor;
    sigmoid(): Tensor;
    relu(): Tensor;
    sin(): Tensor;
    cos(): Tensor;
    sum(axes?: ops.Axes, keepdims?: boolean): Tensor;
    mean(axes?: ops.Axes, keepdims?: boolean): Tensor;
    max(axes?: ops.Axes, keepdims?: boolean): Tensor;
    min(axes?: ops.Axes, keepdims?: boolean): Tensor;
    reshape(shape: readonly number[]): Tensor;
    transpose(perm?: readonly number[]): Tensor;
    matmul(y: Tensor): Tensor;
    cast(dtype: DType): Tensor;
  }
}

const binary = ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum'] as const;
for (const name of binary) {
  (Tensor.prototype as any)[name] = function (this: Tensor, y: ops.TensorLike) {
    return ops[name](this, y);
  };
}
const unary = ['neg', 'abs', 'exp', 'log', 'sqrt', 'square', 'tanh', 'sigmoid', 'relu', 'sin', 'cos'] as const;
for (const name of unary) {
  (Tensor.prototype as any)[name] = function (this: Tensor) {
    return ops[name](this);
  };
}
Tensor.prototype.sum = function (axes, keepdims) { return ops.sum(this, axes, keepdims); };
Tensor.prototype.mean = function (axes, keepdims) { return ops.mean(this, axes, keepdims); };
Tensor.prototype.max = function (axes, keepdims) { return ops.max(this, axes, keepdims); };
Tensor.prototype.min = function (axes, keepdims) { return ops.min(this, axes, keepdims); };
Tensor.prototype.reshape = function (shape) { return ops.reshape(this, shape); };
Tensor.prototype.transpose = function (perm) { return ops.transpose(this, perm); };
Tensor.prototype.matmul = function (y) { return ops.matmul(this, y); };
Tensor.prototype.cast = function (dtype) { return ops.cast(this, dtype); };
