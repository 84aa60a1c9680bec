/**
 * Indexing: take (gather along one axis by int32 indices) and its transpose,
 * scatterAdd (sum cotangents back to the positions they were taken from).
 */
import { coordLines, dot, kernelFn } from '../codegen.js';
import { TensorError } from '../errors.js';
import type { Primitive } from '../primitive.js';
import { sizeOf, stridesOf } from '../shape.js';
import * as ops from '../ops.js';

export const take: Primitive<{ axis: number }> = {
  name: 'take',
  abstract([x, idx], { axis }) {
    if (idx.dtype !== 'int32') throw new TensorError('take', `indices must be int32, got ${idx.dtype}`, [x.shape, idx.shape]);
    if (axis < 0 || axis >= x.shape.length) throw new TensorError('take', `axis ${axis} out of range`, [x.shape, idx.shape]);
    return { shape: [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)], dtype: x.dtype };
  },
  reference([x, idx], [a, ia], { axis }) {
    const outer = sizeOf(a.shape.slice(0, axis));
    const inner = sizeOf(a.shape.slice(axis + 1));
    const m = sizeOf(ia.shape);
    const out = new Float64Array(outer * m * inner);
    for (let o = 0; o < outer; o++)
      for (let p = 0; p < m; p++)
        for (let r = 0; r < inner; r++) out[(o * m + p) * inner + r] = x[(o * a.shape[axis] + idx[p]) * inner + r];
    return out;
  },
  kernel([a, ia], { axis }) {
    const inner = sizeOf(a.shape.slice(axis + 1));
    const m = sizeOf(ia.shape);
    const body = [
      coordLines([sizeOf(a.shape.slice(0, axis)), m, inner]),
      `const j = x1[c1];`,
      `return x0[(c0 * ${a.shape[axis]} + j) * ${inner} + c2];`,
    ];
    return kernelFn(2, body.join('\n'));
  },
  jvp: ([, idx], [t], { axis }) => t && ops.take(t, idx, axis),
  vjp: (ct, [x, idx], { axis }) => [ops.scatterAdd(ct, idx, axis, x.shape[axis]), null],
};

/** out[..., j, ...] = sum of ct[..., p, ...] over index positions p with idx[p] = j. */
export const scatterAdd: Primitive<{ axis: number; size: number }> = {
  name: 'scatterAdd',
  abstract([ct, idx], { axis, size }) {
    if (idx.dtype !== 'int32') throw new TensorError('scatterAdd', `indices must be int32, got ${idx.dtype}`, [ct.shape, idx.shape]);
    const r = idx.shape.length;
    const shape = [...ct.shape.slice(0, axis), size, ...ct.shape.slice(axis + r)];
    return { shape, dtype: ct.dtype };
  },
  reference([ct, idx], [, ia], { axis, size }, out) {
    const outer = sizeOf(out.shape.slice(0, axis));
    const inner = sizeOf(out.shape.slice(axis + 1));
    const m = sizeOf(ia.shape);
    const res = new Float64Array(sizeOf(out.shape));
    for (let o = 0; o < outer; o++)
      for (let p = 0; p < m; p++)
        for (let r = 0; r < inner; r++) res[(o * size + idx[p]) * inner + r] += ct[(o * m + p) * inner + r];
    return res;
  },
  kernel([, ia], { axis, size }, out) {
    const inner = sizeOf(out.shape.slice(axis + 1));
    const m = sizeOf(ia.shape);
    const body = [
      coordLines([sizeOf(out.shape.slice(0, axis)), size, inner]),
      'let acc = 0.0;',
      `for (let p = 0; p < ${m}; p++) { if (x1[p] == c1) { acc += x0[(c0 * ${m} + p) * ${inner} + c2]; } }`,
      'return acc;',
    ];
    return kernelFn(2, body.join('\n'));
  },
  // Linear in the values: the tangent is scattered like them.
  jvp: ([, idx], [t], { axis, size }) => t && ops.scatterAdd(t, idx, axis, size),
  vjp: (ct, [, idx], { axis }) => [ops.take(ct, idx, axis), null],
};
void stridesOf; void dot;
