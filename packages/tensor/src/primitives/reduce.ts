/**
 * Reductions over any set of axes, with keepdims. Kernels loop over the reduced axes
 * with literal bounds, one output cell per thread.
 */
import type { Aval } from '../backend.js';
import { closeLoop, coordLines, dot, f, kernelFn, openLoop, partLines, type PartSplit } from '../codegen.js';
import { isFloat } from '../dtype.js';
import { TensorError } from '../errors.js';
import type { Primitive } from '../primitive.js';
import { sizeOf, stridesOf, type Shape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import * as ops from '../ops.js';

export interface ReduceParams {
  axes: number[];
  keepdims: boolean;
}

export function reducedShape(shape: Shape, axes: number[], keepdims: boolean): number[] {
  return keepdims ? shape.map((d, k) => (axes.includes(k) ? 1 : d)) : shape.filter((_, k) => !axes.includes(k));
}

/**
 * Kernel body that folds the reduced axes of x0 for one output cell; with `split`, the
 * part's chunk of the outermost reduced axis (see Primitive.split).
 */
function reduceKernel(x: Shape, axes: number[], init: string, step: (acc: string, v: string, k: string) => string, finish = (acc: string) => acc, split?: PartSplit): string {
  const kept = x.map((_, k) => k).filter((k) => !axes.includes(k));
  const strides = stridesOf(x);
  const outShape = kept.map((k) => x[k]);
  const base = dot(kept.map((_, j) => `c${j}`), kept.map((k) => strides[k]));
  const lines = [split ? partLines(split) : '', coordLines(outShape, split ? 'cell' : 'i'), `const base = ${base};`, `let acc = ${init};`, 'let arg = 0.0;'];
  let open = '';
  let close = '';
  axes.forEach((a, j) => {
    open += `${openLoop(`r${j}`, x[a], j === 0 ? split : undefined)}\n`;
    close += `${closeLoop(j === 0 ? split : undefined)}\n`;
  });
  const offset = dot(axes.map((_, j) => `r${j}`), axes.map((a) => strides[a]));
  const flatK = axes.length ? axes.map((a, j) => `r${j}`).join('') : '0';
  lines.push(`${open}const v = x0[base + ${offset}];\n${step('acc', 'v', axes.length === 1 ? flatK : '0')}\n${close}`);
  lines.push(`return ${finish('acc')};`);
  return kernelFn(1, lines.join('\n'));
}

function referenceReduce(x: ArrayLike<number>, shape: Shape, axes: number[], fold: (acc: number, v: number, k: number) => number, init: number, finish = (acc: number, _arg: number) => acc): Float64Array {
  const kept = shape.map((_, k) => k).filter((k) => !axes.includes(k));
  const strides = stridesOf(shape);
  const outShape = kept.map((k) => shape[k]);
  const outStrides = stridesOf(outShape);
  const nOut = outShape.reduce((a, b) => a * b, 1);
  const nRed = axes.reduce((a, k) => a * shape[k], 1);
  const redShape = axes.map((k) => shape[k]);
  const redStrides = stridesOf(redShape);
  const out = new Float64Array(nOut);
  for (let o = 0; o < nOut; o++) {
    let base = 0;
    for (let j = 0; j < kept.length; j++) base += (Math.floor(o / outStrides[j]) % outShape[j]) * strides[kept[j]];
    let acc = init;
    for (let r = 0; r < nRed; r++) {
      let off = 0;
      for (let j = 0; j < axes.length; j++) off += (Math.floor(r / redStrides[j]) % redShape[j]) * strides[axes[j]];
      acc = fold(acc, x[base + off], r);
    }
    out[o] = finish(acc, 0);
  }
  return out;
}

function checkAxes(name: string, x: Aval, axes: number[]): void {
  for (const a of axes) if (a < 0 || a >= x.shape.length) throw new TensorError(name, `axis ${a} out of range for rank ${x.shape.length}`, [x.shape]);
}

/** Broadcast a reduced value (or cotangent) back to the input's shape. */
function expandBack(y: Tensor, x: Tensor, { axes, keepdims }: ReduceParams): Tensor {
  return ops.broadcastTo(keepdims ? y : ops.reshape(y, reducedShape(x.shape, axes, true)), x.shape);
}

export const sum: Primitive<ReduceParams> = {
  name: 'sum',
  abstract([x], { axes, keepdims }) {
    checkAxes('sum', x, axes);
    if (x.dtype === 'bool') throw new TensorError('sum', 'cannot sum bool: cast to int32 or float first', [x.shape]);
    return { shape: reducedShape(x.shape, axes, keepdims), dtype: x.dtype };
  },
  reference([x], [a], { axes }) {
    return referenceReduce(x, a.shape, axes, (acc, v) => acc + v, 0);
  },
  kernel([a], { axes }) {
    return reduceKernel(a.shape, axes, '0.0', (acc, v) => `${acc} += ${v};`);
  },
  split([a], { axes }, out) {
    if (axes.length === 0) return null;
    const sumOf = (parts: number) => reduceKernel(a.shape, axes, '0.0', (acc, v) => `${acc} += ${v};`, undefined, { parts, cells: sizeOf(out.shape) });
    return { extent: a.shape[axes[0]], terms: axes.reduce((n, k) => n * a.shape[k], 1), kernel: sumOf };
  },
  jvp(_x, [t], params) {
    return t && ops.sum(t, params.axes, params.keepdims);
  },
  vjp(ct, [x], params) {
    return [expandBack(ct, x, params)];
  },
};

export const max: Primitive<ReduceParams> = {
  name: 'max',
  abstract([x], { axes, keepdims }) {
    checkAxes('max', x, axes);
    if (x.dtype === 'bool') throw new TensorError('max', 'expected a numeric tensor, got bool', [x.shape]);
    if (axes.some((a) => x.shape[a] === 0)) throw new TensorError('max', 'cannot take the max over an empty axis', [x.shape]);
    return { shape: reducedShape(x.shape, axes, keepdims), dtype: x.dtype };
  },
  reference([x], [a], { axes }) {
    return referenceReduce(x, a.shape, axes, (acc, v) => (v > acc || Number.isNaN(v) ? v : acc), -Infinity);
  },
  kernel([a], { axes }) {
    return reduceKernel(a.shape, axes, f(-Infinity), (acc, v) => `${acc} = Math.max(${acc}, ${v});`);
  },
  // The derivative flows to the maxima, shared equally among ties.
  jvp([x], [t], params, y) {
    if (!t) return null;
    const mask = ops.cast(ops.equal(x, expandBack(y, x, params)), x.dtype);
    return ops.div(ops.sum(ops.mul(t, mask), params.axes, params.keepdims), ops.sum(mask, params.axes, params.keepdims));
  },
  vjp(ct, [x], params, y) {
    const mask = ops.cast(ops.equal(x, expandBack(y, x, params)), x.dtype);
    const count = ops.sum(mask, params.axes, true);
    return [ops.mul(ops.div(mask, count), expandBack(ct, x, params))];
  },
};

export const argmax: Primitive<{ axis: number; keepdims: boolean }> = {
  name: 'argmax',
  abstract([x], { axis, keepdims }) {
    checkAxes('argmax', x, [axis]);
    if (x.shape[axis] === 0) throw new TensorError('argmax', 'cannot take the argmax over an empty axis', [x.shape]);
    return { shape: reducedShape(x.shape, [axis], keepdims), dtype: 'int32' };
  },
  reference([x], [a], { axis }) {
    let best = 0;
    return referenceReduce(x, a.shape, [axis], (acc, v, k) => {
      if (k === 0 || v > acc) { best = k; return v; }
      return acc;
    }, -Infinity, () => best);
  },
  kernel([a], { axis }) {
    // first index of the maximum, as NumPy
    return reduceKernel(a.shape, [axis], f(-Infinity), (acc, v, k) => `if (${v} > ${acc} || ${k} == 0) { ${acc} = ${v}; arg = ${k}; }`, () => 'arg');
  },
  jvp: () => null,
  vjp: () => [null],
};

export const reducePrimitives = { sum, max, argmax };
void isFloat;
