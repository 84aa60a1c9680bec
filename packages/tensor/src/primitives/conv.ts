/**
 * 2-D convolution (NCHW, OIHW weights; stride, padding, dilation, groups) and the two
 * transposed convolutions its gradients need. The three are bilinear and close under
 * differentiation: each one's VJP is written with the other two, so every order works.
 *   conv2d(x, w)            y[n,o,p,q]  = sum_{c,i,j} x[n, g*Cg+c, p*s - pad + i*d, ...] w[o,c,i,j]
 *   conv2dInputGrad(g, w)   = the adjoint of x -> conv2d(x, w), applied to g
 *   conv2dWeightGrad(x, g)  = the adjoint of w -> conv2d(x, w), applied to g
 * Each has a one-cell `kernel` (webgpu, small or depthwise convolutions) and, on cpu and
 * webasm, a `plan` that runs it as packed matrix products (backends/plans.ts): im2col of
 * the zero-padded input for conv2d and the weight gradient, the stride-dilated cotangent
 * with the flipped kernel for the input gradient.
 */
import type { Aval } from '../backend.js';
import { gemm, gemmInPlace, gemmReadsInPlace, packedProductFits, scratch, strided, type HostPlan, type KernelRunner, type MatrixView } from '../backends/plans.js';
import { closeLoop, coordLines, kernelFn, openLoop, partLines, type PartSplit } from '../codegen.js';
import { isFloat } from '../dtype.js';
import { TensorError } from '../errors.js';
import type { Primitive } from '../primitive.js';
import { sizeOf } from '../shape.js';
import * as ops from '../ops.js';

export interface ConvParams {
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  groups: number;
}

export function convOutSize(n: number, k: number, s: number, p: number, d: number): number {
  return Math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1;
}

function check(name: string, a: Aval, b: Aval): void {
  if (a.shape.length !== 4 || b.shape.length !== 4) throw new TensorError(name, 'expected 4-D inputs (NCHW and OIHW)', [a.shape, b.shape]);
  if (a.dtype !== b.dtype || !isFloat(a.dtype)) throw new TensorError(name, `expected float inputs of one dtype, got ${a.dtype} and ${b.dtype}`, [a.shape, b.shape]);
}

/** Iterate the (output position, input position, weight position) triples of a convolution. */
function forEachTap(xs: readonly number[], ws: readonly number[], p: ConvParams, fn: (yi: number, xi: number, wi: number) => void): void {
  const [N, C, H, W] = xs;
  const [O, Cg, KH, KW] = ws;
  const OH = convOutSize(H, KH, p.stride[0], p.padding[0], p.dilation[0]);
  const OW = convOutSize(W, KW, p.stride[1], p.padding[1], p.dilation[1]);
  const Og = O / p.groups;
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++) {
      const g = Math.floor(o / Og);
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++)
          for (let c = 0; c < Cg; c++)
            for (let i = 0; i < KH; i++) {
              const ih = oh * p.stride[0] - p.padding[0] + i * p.dilation[0];
              if (ih < 0 || ih >= H) continue;
              for (let j = 0; j < KW; j++) {
                const iw = ow * p.stride[1] - p.padding[1] + j * p.dilation[1];
                if (iw < 0 || iw >= W) continue;
                fn(((n * O + o) * OH + oh) * OW + ow, ((n * C + g * Cg + c) * H + ih) * W + iw, ((o * Cg + c) * KH + i) * KW + j);
              }
            }
    }
  void C;
}

function outShape(xs: readonly number[], ws: readonly number[], p: ConvParams): number[] {
  return [xs[0], ws[0], convOutSize(xs[2], ws[2], p.stride[0], p.padding[0], p.dilation[0]), convOutSize(xs[3], ws[3], p.stride[1], p.padding[1], p.dilation[1])];
}

export const conv2d: Primitive<ConvParams> = {
  name: 'conv2d',
  abstract([x, w], p) {
    check('conv2d', x, w);
    const [, C] = x.shape;
    const [O, Cg] = w.shape;
    if (C !== Cg * p.groups || O % p.groups !== 0) {
      throw new TensorError('conv2d', `channels do not match: input has ${C}, weight expects ${Cg} x groups ${p.groups}, and ${O} outputs must divide into groups`, [x.shape, w.shape]);
    }
    const shape = outShape(x.shape, w.shape, p);
    if (shape[2] <= 0 || shape[3] <= 0) throw new TensorError('conv2d', 'the kernel (dilated) is larger than the padded input', [x.shape, w.shape]);
    return { shape, dtype: x.dtype };
  },
  reference([x, w], [a, b], p, out) {
    const y = new Float64Array(sizeOf(out.shape));
    forEachTap(a.shape, b.shape, p, (yi, xi, wi) => (y[yi] += x[xi] * w[wi]));
    return y;
  },
  kernel([a, b], p, out) {
    const [, C, H, W] = a.shape;
    const [O, Cg, KH, KW] = b.shape;
    const Og = O / p.groups;
    const lines = [
      coordLines(out.shape),
      `const g = Math.floor(c1 / ${Og});`,
      'let s = 0.0;',
      `for (let c = 0; c < ${Cg}; c++) {`,
      `  for (let ki = 0; ki < ${KH}; ki++) {`,
      `    const ih = c2 * ${p.stride[0]} - ${p.padding[0]} + ki * ${p.dilation[0]};`,
      `    if (ih >= 0 && ih < ${H}) {`,
      `      for (let kj = 0; kj < ${KW}; kj++) {`,
      `        const iw = c3 * ${p.stride[1]} - ${p.padding[1]} + kj * ${p.dilation[1]};`,
      `        if (iw >= 0 && iw < ${W}) {`,
      `          s += x0[((c0 * ${C} + g * ${Cg} + c) * ${H} + ih) * ${W} + iw] * x1[((c1 * ${Cg} + c) * ${KH} + ki) * ${KW} + kj];`,
      '        }',
      '      }',
      '    }',
      '  }',
      '}',
      'return s;',
    ];
    return kernelFn(2, lines.join('\n'));
  },
  plan([a, b], p, out) {
    const [N, C, H, W] = a.shape;
    const [O, Cg, KH, KW] = b.shape;
    const [, , OH, OW] = out.shape;
    const G = p.groups, Og = O / G, K = Cg * KH * KW, P = N * OH * OW;
    if (!usePlan(Og, N * O * OH * OW * K, K, G)) return null;
    // Per group: y[o, (n,oh,ow)] = sum over (c,ki,kj) of w[o, (c,ki,kj)] * im2col(x)[(c,ki,kj), (n,oh,ow)].
    return {
      variant: 'im2col-gemm',
      run([x, w], runner) {
        const { data: xp, hp, wp } = padded(x, N, C, H, W, p.padding);
        const taps = tapOffsets(Cg, KH, KW, hp * wp, p.dilation[0] * wp, p.dilation[1]);
        const positions = gridOffsets(N, OH, OW, C * hp * wp, p.stride[0] * wp, p.stride[1]);
        const outCols = gridOffsets(N, OH, OW, O * OH * OW, OW, 1);
        const y = new Float32Array(N * O * OH * OW);
        for (let g = 0; g < G; g++) {
          const wv = { data: w, offset: g * Og * K, rows: strided(Og, K), cols: strided(K, 1) };
          const col = { data: xp, offset: g * Cg * hp * wp, rows: taps, cols: positions };
          const yv = { data: y, offset: g * Og * OH * OW, rows: strided(Og, OH * OW), cols: outCols };
          product(runner, wv, col, yv, Og, K, P);
        }
        return y;
      },
    };
  },
  jvp([x, w], [tx, tw], p) {
    const a = tx && ops.conv2dPrim(tx, w, p);
    const b = tw && ops.conv2dPrim(x, tw, p);
    return a && b ? ops.add(a, b) : a ?? b;
  },
  vjp(ct, [x, w], p, _y, needs) {
    return [
      needs[0] ? ops.conv2dInputGrad(ct, w, { ...p, inputShape: [...x.shape] }) : null,
      needs[1] ? ops.conv2dWeightGrad(x, ct, { ...p, kernelSize: [w.shape[2], w.shape[3]] }) : null,
    ];
  },
};

export const conv2dInputGrad: Primitive<ConvParams & { inputShape: number[] }> = {
  name: 'conv2dInputGrad',
  abstract([g, w], p) {
    check('conv2dInputGrad', g, w);
    const expected = outShape(p.inputShape, w.shape, p);
    if (g.shape.some((d, k) => d !== expected[k])) throw new TensorError('conv2dInputGrad', `cotangent must have the conv output shape [${expected}]`, [g.shape, w.shape]);
    return { shape: p.inputShape, dtype: g.dtype };
  },
  reference([g, w], [, b], p, out) {
    const x = new Float64Array(sizeOf(out.shape));
    forEachTap(out.shape, b.shape, p, (yi, xi, wi) => (x[xi] += g[yi] * w[wi]));
    return x;
  },
  kernel([a, b], p, out) {
    const [, O, OH, OW] = a.shape;
    const [, Cg, KH, KW] = b.shape;
    const Og = O / p.groups;
    const [sh, sw] = p.stride;
    // x[n,c,ih,iw] = sum over o in c's group, taps (ki,kj) with oh = (ih + pad - ki*d) / s integral.
    const lines = [
      coordLines(out.shape),
      `const g = Math.floor(c1 / ${Cg});`,
      `const cl = c1 - g * ${Cg};`,
      'let s = 0.0;',
      `for (let ol = 0; ol < ${Og}; ol++) {`,
      `  const o = g * ${Og} + ol;`,
      `  for (let ki = 0; ki < ${KH}; ki++) {`,
      `    const th = c2 + ${p.padding[0]} - ki * ${p.dilation[0]};`,
      `    const oh = Math.floor(th / ${sh});`,
      `    if (th >= 0 && oh * ${sh} == th && oh < ${OH}) {`,
      `      for (let kj = 0; kj < ${KW}; kj++) {`,
      `        const tw = c3 + ${p.padding[1]} - kj * ${p.dilation[1]};`,
      `        const ow = Math.floor(tw / ${sw});`,
      `        if (tw >= 0 && ow * ${sw} == tw && ow < ${OW}) {`,
      `          s += x0[((c0 * ${O} + o) * ${OH} + oh) * ${OW} + ow] * x1[((o * ${Cg} + cl) * ${KH} + ki) * ${KW} + kj];`,
      '        }',
      '      }',
      '    }',
      '  }',
      '}',
      'return s;',
    ];
    return kernelFn(2, lines.join('\n'));
  },
  plan([a, b], p, out) {
    const [N, C, H, W] = out.shape;
    const [, O, OH, OW] = a.shape;
    const [, Cg, KH, KW] = b.shape;
    const G = p.groups, Og = O / G, K = Og * KH * KW;
    if (!usePlan(Cg, N * O * OH * OW * Cg * KH * KW, K, G)) return null;
    const [sh, sw] = p.stride, [dh, dw] = p.dilation;
    if (sh > 1 || sw > 1) return phasePlan(N, C, H, W, O, OH, OW, Cg, KH, KW, p);
    // dx is a stride-1 convolution, with the flipped kernel, of g dilated by the stride and
    // padded so that dx[ih] = sum over kf of gd[ih + kf*d] * w[KH-1-kf] (zeros elsewhere).
    const hd = H + (KH - 1) * dh, wd = W + (KW - 1) * dw;
    const ph = (KH - 1) * dh - p.padding[0], pw = (KW - 1) * dw - p.padding[1];
    return {
      variant: 'dilate-gemm',
      run([gy, w], runner) {
        const gd = scratch(SOURCE_SLOT, N * O * hd * wd);
        for (let no = 0; no < N * O; no++) {
          for (let oh = 0; oh < OH; oh++) {
            const r = oh * sh + ph;
            if (r < 0 || r >= hd) continue;
            for (let ow = 0; ow < OW; ow++) {
              const q = ow * sw + pw;
              if (q >= 0 && q < wd) gd[(no * hd + r) * wd + q] = gy[(no * OH + oh) * OW + ow];
            }
          }
        }
        // Rows: input channels of the group; reduction over (o, kf, lf); columns: (n, ih, iw).
        const wCols = new Int32Array(K), taps = new Int32Array(K);
        for (let o = 0, q = 0; o < Og; o++) {
          for (let kf = 0; kf < KH; kf++) {
            for (let lf = 0; lf < KW; lf++, q++) {
              wCols[q] = o * Cg * KH * KW + (KH - 1 - kf) * KW + (KW - 1 - lf);
              taps[q] = (o * hd + kf * dh) * wd + lf * dw;
            }
          }
        }
        const positions = gridOffsets(N, H, W, O * hd * wd, wd, 1);
        const outCols = gridOffsets(N, H, W, C * H * W, W, 1);
        const dx = new Float32Array(N * C * H * W);
        for (let g = 0; g < G; g++) {
          const wv = { data: w, offset: g * Og * Cg * KH * KW, rows: strided(Cg, KH * KW), cols: wCols };
          const col = { data: gd, offset: g * Og * hd * wd, rows: taps, cols: positions };
          const xv = { data: dx, offset: g * Cg * H * W, rows: strided(Cg, H * W), cols: outCols };
          product(runner, wv, col, xv, Cg, K, N * H * W);
        }
        return dx;
      },
    };
  },
  jvp([g, w], [tg, tw], p) {
    const a = tg && ops.conv2dInputGrad(tg, w, p);
    const b = tw && ops.conv2dInputGrad(g, tw, p);
    return a && b ? ops.add(a, b) : a ?? b;
  },
  vjp(ct, [g, w], p, _y, needs) {
    const { inputShape: _s, ...cp } = p;
    return [
      needs[0] ? ops.conv2dPrim(ct, w, cp) : null,
      needs[1] ? ops.conv2dWeightGrad(ct, g, { ...cp, kernelSize: [w.shape[2], w.shape[3]] }) : null,
    ];
  },
};

export const conv2dWeightGrad: Primitive<ConvParams & { kernelSize: [number, number] }> = {
  name: 'conv2dWeightGrad',
  abstract([x, g], p) {
    check('conv2dWeightGrad', x, g);
    const [N, C] = x.shape;
    const O = g.shape[1];
    if (g.shape[0] !== N || C % p.groups !== 0 || O % p.groups !== 0) throw new TensorError('conv2dWeightGrad', 'batch or channel counts do not match', [x.shape, g.shape]);
    return { shape: [O, C / p.groups, ...p.kernelSize], dtype: x.dtype };
  },
  reference([x, g], [a], p, out) {
    const w = new Float64Array(sizeOf(out.shape));
    forEachTap(a.shape, out.shape, p, (yi, xi, wi) => (w[wi] += g[yi] * x[xi]));
    return w;
  },
  kernel([a, b], p, out) {
    return weightGradKernel(a, b, p, out);
  },
  // The sum over the batch is the long one (N x OH x OW terms for a few thousand cells).
  split([a, b], p, out) {
    return { extent: a.shape[0], terms: a.shape[0] * b.shape[2] * b.shape[3], kernel: (parts) => weightGradKernel(a, b, p, out, { parts, cells: sizeOf(out.shape) }) };
  },
  plan([a, b], p, out) {
    const [N, C, H, W] = a.shape;
    const [, O, OH, OW] = b.shape;
    const [, Cg, KH, KW] = out.shape;
    const G = p.groups, Og = O / G, K = Cg * KH * KW, P = N * OH * OW;
    // The cotangent must have the convolution's output size (else leave it to the kernel).
    if (OH !== convOutSize(H, KH, p.stride[0], p.padding[0], p.dilation[0]) || OW !== convOutSize(W, KW, p.stride[1], p.padding[1], p.dilation[1])) return null;
    if (!usePlan(Og, N * O * OH * OW * K, P, G)) return null;
    // Per group: dw[o, (c,ki,kj)] = sum over (n,oh,ow) of g[o, (n,oh,ow)] * im2col(x)[(c,ki,kj), (n,oh,ow)].
    return {
      variant: 'im2col-gemm',
      run([x, gy], runner) {
        const { data: xp, hp, wp } = padded(x, N, C, H, W, p.padding);
        const gCols = gridOffsets(N, OH, OW, O * OH * OW, OW, 1);
        const positions = gridOffsets(N, OH, OW, C * hp * wp, p.stride[0] * wp, p.stride[1]);
        const taps = tapOffsets(Cg, KH, KW, hp * wp, p.dilation[0] * wp, p.dilation[1]);
        const dw = new Float32Array(O * K);
        for (let g = 0; g < G; g++) {
          const gv = { data: gy, offset: g * Og * OH * OW, rows: strided(Og, OH * OW), cols: gCols };
          const col: MatrixView = { data: xp, offset: g * Cg * hp * wp, rows: positions, cols: taps };
          const wv = { data: dw, offset: g * Og * K, rows: strided(Og, K), cols: strided(K, 1) };
          product(runner, gv, col, wv, Og, P, K);
        }
        return dw;
      },
    };
  },
  jvp([x, g], [tx, tg], p) {
    const a = tx && ops.conv2dWeightGrad(tx, g, p);
    const b = tg && ops.conv2dWeightGrad(x, tg, p);
    return a && b ? ops.add(a, b) : a ?? b;
  },
  vjp(ct, [x, g], p, _y, needs) {
    const { kernelSize: _k, ...cp } = p;
    return [
      needs[0] ? ops.conv2dInputGrad(g, ct, { ...cp, inputShape: [...x.shape] }) : null,
      needs[1] ? ops.conv2dPrim(x, ct, cp) : null,
    ];
  },
};

/**
 * Whether a convolution runs as packed products (see packedProductFits), given its rows
 * per group: the kernel computes rows 4 at a time, so grouped convolutions with fewer
 * (depthwise ones, one channel per group) stay on the one-cell kernel.
 */
function usePlan(rowsPerGroup: number, work: number, reduction: number, groups: number): boolean {
  return packedProductFits(work, reduction) && (groups === 1 || rowsPerGroup >= 4);
}

/**
 * conv2dInputGrad for a strided convolution, without the zeros of a dilated g (3/4 of the
 * products at stride 2). dx[n, c, ih, iw] sums g[n, o, oh, ow] w[o, c, ki, kj] over the taps
 * with ih + pad - ki*d = oh*s. Split the positions of dx by phase (ih mod s, iw mod s): in a
 * phase, whether a tap counts no longer depends on the position, and oh = qh + e(ki) for
 * ih = phase + s*qh. So each phase is one product over its own taps, reading g (zero-padded by
 * the largest |e|, so that out-of-range rows read zeros) in place.
 */
function phasePlan(N: number, C: number, H: number, W: number, O: number, OH: number, OW: number, Cg: number, KH: number, KW: number, p: ConvParams): HostPlan {
  const G = p.groups, Og = O / G;
  const [sh, sw] = p.stride, [dh, dw] = p.dilation, [ph, pw] = p.padding;
  // e = (phase + pad - k*d) / s over every phase and tap (integral where the tap counts).
  const lowH = Math.floor((ph - (KH - 1) * dh) / sh), highH = Math.ceil((sh - 1 + ph) / sh);
  const lowW = Math.floor((pw - (KW - 1) * dw) / sw), highW = Math.ceil((sw - 1 + pw) / sw);
  const mh = Math.max(0, -lowH), mw = Math.max(0, -lowW);
  const hp = Math.max(mh + OH, mh + Math.ceil(H / sh) + highH) + 1, wp = Math.max(mw + OW, mw + Math.ceil(W / sw) + highW) + 1;
  return {
    variant: 'phase-gemm',
    run([gy, w], runner) {
      const gp = scratch(SOURCE_SLOT, N * O * hp * wp);
      for (let no = 0; no < N * O; no++) {
        for (let oh = 0; oh < OH; oh++) gp.set(gy.subarray((no * OH + oh) * OW, (no * OH + oh + 1) * OW), (no * hp + oh + mh) * wp + mw);
      }
      const dx = new Float32Array(N * C * H * W);
      for (let rh = 0; rh < sh; rh++) {
        for (let rw = 0; rw < sw; rw++) {
          const qh = Math.ceil((H - rh) / sh), qw = Math.ceil((W - rw) / sw);
          const kis = taps(KH, rh + ph, dh, sh), kjs = taps(KW, rw + pw, dw, sw);
          const K = Og * kis.length * kjs.length;
          if (qh <= 0 || qw <= 0 || K === 0) continue; // no position, or no tap: dx stays 0 there
          // Reduction over (o, ki, kj): offsets into w (row c at c*KH*KW) and into padded g.
          const wCols = new Int32Array(K), gRows = new Int32Array(K);
          let q = 0;
          for (let o = 0; o < Og; o++) {
            for (const [ki, eh] of kis) {
              for (const [kj, ew] of kjs) {
                wCols[q] = o * Cg * KH * KW + ki * KW + kj;
                gRows[q++] = (o * hp + eh + mh) * wp + ew + mw;
              }
            }
          }
          const gCols = gridOffsets(N, qh, qw, O * hp * wp, wp, 1);
          const outCols = gridOffsets(N, qh, qw, C * H * W, sh * W, sw);
          for (let g = 0; g < G; g++) {
            const wv = { data: w, offset: g * Og * Cg * KH * KW, rows: strided(Cg, KH * KW), cols: wCols };
            const gv = { data: gp, offset: g * Og * hp * wp, rows: gRows, cols: gCols };
            const xv = { data: dx, offset: g * Cg * H * W + rh * W + rw, rows: strided(Cg, H * W), cols: outCols };
            product(runner, wv, gv, xv, Cg, K, N * qh * qw);
          }
        }
      }
      return dx;
    },
  };
}

/** The taps k of a kernel axis that reach positions `phase + pad` (mod s) at stride s, with e = (phase + pad - k*d) / s. */
function taps(size: number, phasePad: number, d: number, s: number): [number, number][] {
  const out: [number, number][] = [];
  for (let k = 0; k < size; k++) {
    const t = phasePad - k * d;
    if (((t % s) + s) % s === 0) out.push([k, t / s]);
  }
  return out;
}

/** A product whose B is a view of an image (im2col): read in place when its indices allow. */
function product(runner: KernelRunner, a: MatrixView, b: MatrixView, out: MatrixView, m: number, k: number, n: number): void {
  (gemmReadsInPlace(b) ? gemmInPlace : gemm)(runner, a, b, out, m, k, n);
}

/** Scratch slot of the padded or dilated source of a convolution's products (gemm uses 0 and 1). */
const SOURCE_SLOT = 2;

/** x [N, C, H, W] zero-padded to [N, C, H + 2 ph, W + 2 pw] (x itself when no padding). */
function padded(x: Float32Array, N: number, C: number, H: number, W: number, [ph, pw]: [number, number]): { data: Float32Array; hp: number; wp: number } {
  const hp = H + 2 * ph, wp = W + 2 * pw;
  if (ph === 0 && pw === 0) return { data: x, hp, wp };
  const data = scratch(SOURCE_SLOT, N * C * hp * wp);
  for (let nc = 0; nc < N * C; nc++) {
    for (let h = 0; h < H; h++) data.set(x.subarray((nc * H + h) * W, (nc * H + h + 1) * W), (nc * hp + h + ph) * wp + pw);
  }
  return { data, hp, wp };
}

/** Offsets of (c, ki, kj) taps, c outermost: c * channel + ki * row + kj * col. */
function tapOffsets(C: number, KH: number, KW: number, channel: number, row: number, col: number): Int32Array {
  const out = new Int32Array(C * KH * KW);
  for (let c = 0, q = 0; c < C; c++) for (let i = 0; i < KH; i++) for (let j = 0; j < KW; j++, q++) out[q] = c * channel + i * row + j * col;
  return out;
}

/** Offsets of (n, h, w) grid positions, n outermost: n * image + h * row + w * col. */
function gridOffsets(N: number, H: number, W: number, image: number, row: number, col: number): Int32Array {
  const out = new Int32Array(N * H * W);
  for (let n = 0, q = 0; n < N; n++) for (let h = 0; h < H; h++) for (let w = 0; w < W; w++, q++) out[q] = n * image + h * row + w * col;
  return out;
}

/** The weight gradient's kernel: one thread per weight cell, or per (batch chunk, cell) with `split`. */
function weightGradKernel(a: Aval, b: Aval, p: ConvParams, out: Aval, split?: PartSplit): string {
  const [N, C, H, W] = a.shape;
  const [, O, OH, OW] = b.shape;
  const Cg = out.shape[1];
  const Og = O / p.groups;
  const lines = [
    split ? partLines(split) : '',
    coordLines(out.shape, split ? 'cell' : 'i'),
    `const g = Math.floor(c0 / ${Og});`,
    'let s = 0.0;',
    openLoop('n', N, split),
    `  for (let oh = 0; oh < ${OH}; oh++) {`,
    `    const ih = oh * ${p.stride[0]} - ${p.padding[0]} + c2 * ${p.dilation[0]};`,
    `    if (ih >= 0 && ih < ${H}) {`,
    `      for (let ow = 0; ow < ${OW}; ow++) {`,
    `        const iw = ow * ${p.stride[1]} - ${p.padding[1]} + c3 * ${p.dilation[1]};`,
    `        if (iw >= 0 && iw < ${W}) {`,
    `          s += x0[((n * ${C} + g * ${Cg} + c1) * ${H} + ih) * ${W} + iw] * x1[((n * ${O} + c0) * ${OH} + oh) * ${OW} + ow];`,
    '        }',
    '      }',
    '    }',
    '  }',
    closeLoop(split),
    'return s;',
  ];
  return kernelFn(2, lines.join('\n'));
}
