/**
 * Batched matrix multiply: [...A, M, K] @ [...B, K, N] -> [...broadcast(A, B), M, N].
 * Bilinear: JVP = ta @ b + a @ tb; VJP = (ct @ b^T, a^T @ ct), summed over broadcast batch dims.
 * `kernel` is the one-cell kernel (webgpu, tiny products); on cpu and webasm `plan` runs the
 * packed product kernel of backends/plans.ts.
 */
import { gemm, gemmInPlace, gemmInPlaceBatch, gemmReadsInPlace, type BatchItem, packedProductFits, rowMajor, strided, type HostPlan, type KernelRunner, type MatrixView } from '../backends/plans.js';
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
  plan([sa, sb], _p, out) {
    const [m, k] = sa.shape.slice(-2);
    const n = sb.shape[sb.shape.length - 1];
    const batch = out.shape.slice(0, -2);
    const count = sizeOf(batch);
    if (!packedProductFits(count * m * n * k, k)) return null;
    return gemmPlan(m, k, n, count, broadcastMap(batch, sa.shape.slice(0, -2)), broadcastMap(batch, sb.shape.slice(0, -2)));
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

/**
 * B read in place when it is small (measured: about 10% faster up to 512 x 512, where
 * packing costs as much as it saves); a large row-major B is packed, so that the kernel
 * reads it tile by tile instead of one row stride (kilobytes) per step.
 */
function product(runner: KernelRunner, a: MatrixView, b: MatrixView, out: MatrixView, m: number, k: number, n: number): void {
  (k * n <= 1 << 18 && gemmReadsInPlace(b) ? gemmInPlace : gemm)(runner, a, b, out, m, k, n);
}

/**
 * Batched product through the packed kernel. aOf[i] / bOf[i] give the batch element of
 * each operand for output batch element i (broadcasting). A batch that only one operand
 * has is folded into one product: into the rows of A (B shared) or the columns of B (A
 * shared); otherwise each batch element is one product.
 */
function gemmPlan(m: number, k: number, n: number, count: number, aOf: Int32Array, bOf: Int32Array): HostPlan {
  return {
    variant: 'gemm',
    run([a, b], runner) {
      const out = new Float32Array(count * m * n);
      const bShared = bOf.every((v) => v === bOf[0]);
      const aShared = aOf.every((v) => v === aOf[0]);
      if (bShared) {
        const rows = new Int32Array(count * m);
        for (let i = 0; i < count; i++) for (let r = 0; r < m; r++) rows[i * m + r] = (aOf[i] * m + r) * k;
        const av = { data: a, offset: 0, rows, cols: strided(k, 1) };
        product(runner, av, rowMajor(b, k, n, bOf[0] * k * n), rowMajor(out, count * m, n), count * m, k, n);
      } else if (aShared) {
        const bCols = new Int32Array(count * n), outCols = new Int32Array(count * n);
        for (let i = 0; i < count; i++) {
          for (let j = 0; j < n; j++) {
            bCols[i * n + j] = bOf[i] * k * n + j;
            outCols[i * n + j] = i * m * n + j;
          }
        }
        const bv = { data: b, offset: 0, rows: strided(k, n), cols: bCols };
        const ov = { data: out, offset: 0, rows: strided(m, n), cols: outCols };
        product(runner, rowMajor(a, m, k, aOf[0] * m * k), bv, ov, m, k, count * n);
      } else {
        // Views of each element alone: a product reading B in place copies all of B's data into the kernel.
        const items: BatchItem[] = [];
        for (let i = 0; i < count; i++) {
          const ai = a.subarray(aOf[i] * m * k, (aOf[i] + 1) * m * k), bi = b.subarray(bOf[i] * k * n, (bOf[i] + 1) * k * n);
          items.push({ a: rowMajor(ai, m, k), b: rowMajor(bi, k, n), out: rowMajor(out, m, n, i * m * n) });
        }
        // Enough small products to share out between the threads: whole products per thread.
        const batched = count >= 2 * runner.threads() && runner.threads() > 1 && k * n <= 1 << 18 && gemmInPlaceBatch(runner, items, m, k, n);
        if (!batched) for (const it of items) product(runner, it.a, it.b, it.out, m, k, n);
      }
      return out;
    },
  };
}
