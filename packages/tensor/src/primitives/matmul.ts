/**
 * Batched matrix multiply: [...A, M, K] @ [...B, K, N] -> [...broadcast(A, B), M, N].
 * Bilinear: JVP = ta @ b + a @ tb; VJP = (ct @ b^T, a^T @ ct), summed over broadcast batch dims.
 */
import { broadcastIndex, coordLines, kernelFn } from '../codegen.js';
import { isFloat } from '../dtype.js';
import { TensorError } from '../errors.js';
import type { Primitive } from '../primitive.js';
import { broadcastMap, broadcastShapes, sizeOf } from '../shape.js';
import * as ops from '../ops.js';

export const matmul: Primitive<Record<string, never>> = {
  name: 'matmul',
  abstract([a, b]) {
    if (a.shape.length < 2 || b.shape.length < 2) throw new TensorError('matmul', 'the primitive takes inputs of rank >= 2', [a.shape, b.shape]);
    if (a.dtype !== b.dtype || !isFloat(a.dtype)) throw new TensorError('matmul', `expected float inputs of one dtype, got ${a.dtype} and ${b.dtype}`, [a.shape, b.shape]);
    const [m, k] = a.shape.slice(-2);
    const [k2, n] = b.shape.slice(-2);
    if (k !== k2) throw new TensorError('matmul', `inner dimensions differ (${k} vs ${k2}): expected [..., M, K] @ [..., K, N]`, [a.shape, b.shape]);
    const batch = broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2));
    return { shape: [...batch, m, n], dtype: a.dtype };
  },
  reference([a, b], [sa, sb], _p, out) {
    const [m, k] = sa.shape.slice(-2);
    const n = sb.shape[sb.shape.length - 1];
    const batch = out.shape.slice(0, -2);
    const ma = broadcastMap(batch, sa.shape.slice(0, -2));
    const mb = broadcastMap(batch, sb.shape.slice(0, -2));
    const res = new Float64Array(sizeOf(out.shape));
    for (let bi = 0; bi < ma.length; bi++) {
      const ao = ma[bi] * m * k, bo = mb[bi] * k * n, oo = bi * m * n;
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) s += a[ao + i * k + p] * b[bo + p * n + j];
          res[oo + i * n + j] = s;
        }
    }
    return res;
  },
  kernel([sa, sb], _p, out) {
    const [m, k] = sa.shape.slice(-2);
    const n = sb.shape[sb.shape.length - 1];
    const batch = out.shape.slice(0, -2);
    const r = batch.length;
    const aBatch = sa.shape.slice(0, -2), bBatch = sb.shape.slice(0, -2);
    const lines = [
      coordLines(out.shape),
      `const ab = ${sizeOf(aBatch) <= 1 ? '0' : broadcastIndex(batch, aBatch)};`,
      `const bb = ${sizeOf(bBatch) <= 1 ? '0' : broadcastIndex(batch, bBatch)};`,
      `const ao = ab * ${m * k} + c${r} * ${k};`,
      `const bo = bb * ${k * n} + c${r + 1};`,
      'let s = 0.0;',
      `for (let p = 0; p < ${k}; p++) { s += x0[ao + p] * x1[bo + p * ${n}]; }`,
      'return s;',
    ];
    return kernelFn(2, lines.join('\n'));
  },
  jvp([a, b], [ta, tb]) {
    const left = ta && ops.matmul(ta, b);
    const right = tb && ops.matmul(a, tb);
    return left && right ? ops.add(left, right) : left ?? right;
  },
  vjp(ct, [a, b], _p, _y, needs) {
    return [
      needs[0] ? ops.unbroadcast(ops.matmul(ct, ops.mT(b)), a.shape) : null,
      needs[1] ? ops.unbroadcast(ops.matmul(ops.mT(a), ct), b.shape) : null,
    ];
  },
};
