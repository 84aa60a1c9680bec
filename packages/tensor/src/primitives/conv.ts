/**
 * 2-D convolution (NCHW, OIHW weights; stride, padding, dilation, groups) and the two
 * transposed convolutions its gradients need. The three are bilinear and close under
 * differentiation: each one's VJP is written with the other two, so every order works.
 *   conv2d(x, w)            y[n,o,p,q]  = sum_{c,i,j} x[n, g*Cg+c, p*s - pad + i*d, ...] w[o,c,i,j]
 *   conv2dInputGrad(g, w)   = the adjoint of x -> conv2d(x, w), applied to g
 *   conv2dWeightGrad(x, g)  = the adjoint of w -> conv2d(x, w), applied to g
 */
import type { Aval } from '../backend.js';
import { coordLines, kernelFn } from '../codegen.js';
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
    const [N, C, H, W] = a.shape;
    const [, O, OH, OW] = b.shape;
    const Cg = out.shape[1];
    const Og = O / p.groups;
    const lines = [
      coordLines(out.shape),
      `const g = Math.floor(c0 / ${Og});`,
      'let s = 0.0;',
      `for (let n = 0; n < ${N}; n++) {`,
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
      '}',
      'return s;',
    ];
    return kernelFn(2, lines.join('\n'));
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
