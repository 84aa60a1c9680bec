/**
 * Elementwise binary primitives with NumPy broadcasting done inside the kernel (no
 * materialized broadcast). Inputs share one dtype (the public ops promote first).
 * Reverse rules sum the cotangent back over broadcast dimensions (`unbroadcast`).
 */
import type { Aval } from '../backend.js';
import { broadcastIndex, coordLines, kernelFn } from '../codegen.js';
import { isFloat, type DType } from '../dtype.js';
import { TensorError } from '../errors.js';
import type { Primitive } from '../primitive.js';
import { broadcastMap, broadcastShapes, shapesEqual, sizeOf, type Shape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import * as ops from '../ops.js';

type P = Record<string, never>;

/** Output-tangent helper: a tangent of an input broadcast to the output's shape. */
function bt(t: Tensor, out: Tensor): Tensor {
  return shapesEqual(t.shape, out.shape) ? t : ops.broadcastTo(t, out.shape);
}
const un = ops.unbroadcast;

interface BinarySpec {
  expr: string;
  ref: (a: number, b: number) => number;
  /** Result dtype; default: the inputs' dtype. */
  outDtype?: DType;
  floatOnly?: boolean;
  jvp?: (a: Tensor, b: Tensor, ta: Tensor | null, tb: Tensor | null, y: Tensor) => Tensor | null;
  vjp?: (ct: Tensor, a: Tensor, b: Tensor, y: Tensor, needs: boolean[]) => (Tensor | null)[];
}

function sumTangents(x: Tensor | null, y: Tensor | null, out: Tensor): Tensor | null {
  if (x && y) return ops.add(x, y);
  return x ? bt(x, out) : y ? bt(y, out) : null;
}

/** d max(a,b)/da: 1 where a wins, 1/2 on ties (as JAX). */
function winMask(a: Tensor, b: Tensor, greater: boolean): Tensor {
  const wins = ops.cast(greater ? ops.greater(a, b) : ops.less(a, b), a.dtype);
  return ops.add(wins, ops.mul(ops.cast(ops.equal(a, b), a.dtype), 0.5));
}

export const binarySpecs = {
  add: {
    expr: 'a + b', ref: (a, b) => a + b,
    jvp: (_a, _b, ta, tb, y) => sumTangents(ta, tb, y),
    vjp: (ct, a, b, _y, n) => [n[0] ? un(ct, a.shape) : null, n[1] ? un(ct, b.shape) : null],
  },
  sub: {
    expr: 'a - b', ref: (a, b) => a - b,
    jvp: (_a, _b, ta, tb, y) => sumTangents(ta, tb && ops.neg(tb), y),
    vjp: (ct, a, b, _y, n) => [n[0] ? un(ct, a.shape) : null, n[1] ? un(ops.neg(ct), b.shape) : null],
  },
  mul: {
    expr: 'a * b', ref: (a, b) => a * b,
    jvp: (a, b, ta, tb, y) => sumTangents(ta && ops.mul(ta, b), tb && ops.mul(a, tb), y),
    vjp: (ct, a, b, _y, n) => [n[0] ? un(ops.mul(ct, b), a.shape) : null, n[1] ? un(ops.mul(ct, a), b.shape) : null],
  },
  div: {
    expr: 'a / b', ref: (a, b) => a / b, floatOnly: true,
    jvp: (_a, b, ta, tb, y) => sumTangents(ta && ops.div(ta, b), tb && ops.neg(ops.mul(tb, ops.div(y, b))), y),
    vjp: (ct, a, b, y, n) => [n[0] ? un(ops.div(ct, b), a.shape) : null, n[1] ? un(ops.neg(ops.mul(ct, ops.div(y, b))), b.shape) : null],
  },
  pow: {
    expr: 'Math.pow(a, b)', ref: Math.pow, floatOnly: true,
    jvp: (a, b, ta, tb, y) =>
      sumTangents(ta && ops.mul(ta, ops.mul(b, ops.pow(a, ops.sub(b, 1)))), tb && ops.mul(tb, ops.mul(y, ops.log(a))), y),
    vjp: (ct, a, b, y, n) => [
      n[0] ? un(ops.mul(ct, ops.mul(b, ops.pow(a, ops.sub(b, 1)))), a.shape) : null,
      n[1] ? un(ops.mul(ct, ops.mul(y, ops.log(a))), b.shape) : null,
    ],
  },
  maximum: {
    expr: 'Math.max(a, b)', ref: Math.max,
    jvp: (a, b, ta, tb, y) => sumTangents(ta && ops.mul(ta, winMask(a, b, true)), tb && ops.mul(tb, winMask(b, a, true)), y),
    vjp: (ct, a, b, _y, n) => [n[0] ? un(ops.mul(ct, winMask(a, b, true)), a.shape) : null, n[1] ? un(ops.mul(ct, winMask(b, a, true)), b.shape) : null],
  },
  minimum: {
    expr: 'Math.min(a, b)', ref: Math.min,
    jvp: (a, b, ta, tb, y) => sumTangents(ta && ops.mul(ta, winMask(a, b, false)), tb && ops.mul(tb, winMask(b, a, false)), y),
    vjp: (ct, a, b, _y, n) => [n[0] ? un(ops.mul(ct, winMask(a, b, false)), a.shape) : null, n[1] ? un(ops.mul(ct, winMask(b, a, false)), b.shape) : null],
  },
  atan2: {
    expr: 'Math.atan2(a, b)', ref: Math.atan2, floatOnly: true,
    // d atan2(a,b) = (b da - a db) / (a^2 + b^2)
    jvp: (a, b, ta, tb, y) => {
      const r2 = ops.add(ops.mul(a, a), ops.mul(b, b));
      return sumTangents(ta && ops.div(ops.mul(ta, b), r2), tb && ops.neg(ops.div(ops.mul(tb, a), r2)), y);
    },
    vjp: (ct, a, b, _y, n) => {
      const r2 = ops.add(ops.mul(a, a), ops.mul(b, b));
      return [n[0] ? un(ops.div(ops.mul(ct, b), r2), a.shape) : null, n[1] ? un(ops.neg(ops.div(ops.mul(ct, a), r2)), b.shape) : null];
    },
  },
  // Comparisons: boolean results, no tangents.
  less: { expr: '(a < b ? 1.0 : 0.0)', ref: (a, b) => +(a < b), outDtype: 'bool' },
  lessEqual: { expr: '(a <= b ? 1.0 : 0.0)', ref: (a, b) => +(a <= b), outDtype: 'bool' },
  greater: { expr: '(a > b ? 1.0 : 0.0)', ref: (a, b) => +(a > b), outDtype: 'bool' },
  greaterEqual: { expr: '(a >= b ? 1.0 : 0.0)', ref: (a, b) => +(a >= b), outDtype: 'bool' },
  equal: { expr: '(a == b ? 1.0 : 0.0)', ref: (a, b) => +(a === b), outDtype: 'bool' },
  notEqual: { expr: '(a != b ? 1.0 : 0.0)', ref: (a, b) => +(a !== b), outDtype: 'bool' },
} satisfies Record<string, BinarySpec>;

export type BinaryName = keyof typeof binarySpecs;

/** The kernel expression of a binary primitive on the operands named a and b. */
export function binaryExpr(name: BinaryName, a: string, b: string): string {
  return binarySpecs[name].expr.replace(/\b[ab]\b/g, (m) => (m === 'a' ? a : b));
}

/** Kernel body lines loading broadcast inputs named by `names` from x0, x1, ... */
export function loadBroadcast(out: Shape, shapes: readonly Shape[], names: string[]): string {
  const lines: string[] = [];
  if (!shapes.every((s) => shapesEqual(s, out))) lines.push(coordLines(out));
  shapes.forEach((s, k) => {
    const idx = shapesEqual(s, out) ? 'i' : sizeOf(s) === 1 ? '0' : broadcastIndex(out, s);
    lines.push(`const ${names[k]} = x${k}[${idx}];`);
  });
  return lines.join('\n');
}

function makeBinary(name: BinaryName, spec: BinarySpec): Primitive<P> {
  return {
    name,
    abstract([a, b]) {
      if (a.dtype !== b.dtype) throw new TensorError(name, `inputs must share a dtype (got ${a.dtype} and ${b.dtype})`, [a.shape, b.shape]);
      if (spec.floatOnly && !isFloat(a.dtype)) throw new TensorError(name, `expected float inputs, got ${a.dtype}`, [a.shape, b.shape]);
      if (!spec.outDtype && a.dtype === 'bool') throw new TensorError(name, 'expected numeric inputs, got bool', [a.shape, b.shape]);
      return { shape: broadcastShapes(name, a.shape, b.shape), dtype: spec.outDtype ?? a.dtype };
    },
    reference([a, b], [sa, sb], _p, out) {
      const ma = broadcastMap(out.shape, sa.shape), mb = broadcastMap(out.shape, sb.shape);
      const r = new Float64Array(ma.length);
      for (let i = 0; i < r.length; i++) r[i] = spec.ref(a[ma[i]], b[mb[i]]);
      return r;
    },
    kernel([sa, sb], _p, out) {
      return kernelFn(2, `${loadBroadcast(out.shape, [sa.shape, sb.shape], ['a', 'b'])}\nreturn ${spec.expr};`);
    },
    jvp([a, b], [ta, tb], _p, y) {
      return spec.jvp ? spec.jvp(a, b, ta, tb, y) : null;
    },
    vjp(ct, [a, b], _p, y, needs) {
      return spec.vjp ? spec.vjp(ct, a, b, y, needs) : [null, null];
    },
  };
}

export const binaryPrimitives = Object.fromEntries(
  Object.entries(binarySpecs).map(([name, spec]) => [name, makeBinary(name as BinaryName, spec as BinarySpec)]),
) as Record<BinaryName, Primitive<P>>;

/** select(cond, a, b): a where cond is true, else b; all three broadcast. */
export const where: Primitive<P> = {
  name: 'where',
  abstract([c, a, b]) {
    if (c.dtype !== 'bool') throw new TensorError('where', `the condition must be bool, got ${c.dtype}`, [c.shape, a.shape, b.shape]);
    if (a.dtype !== b.dtype) throw new TensorError('where', `branches must share a dtype (got ${a.dtype} and ${b.dtype})`, [c.shape, a.shape, b.shape]);
    return { shape: broadcastShapes('where', c.shape, a.shape, b.shape), dtype: a.dtype };
  },
  reference([c, a, b], [sc, sa, sb], _p, out) {
    const mc = broadcastMap(out.shape, sc.shape), ma = broadcastMap(out.shape, sa.shape), mb = broadcastMap(out.shape, sb.shape);
    return Float64Array.from(mc, (ic, i) => (c[ic] ? a[ma[i]] : b[mb[i]]));
  },
  kernel([sc, sa, sb], _p, out) {
    return kernelFn(3, `${loadBroadcast(out.shape, [sc.shape, sa.shape, sb.shape], ['c', 'a', 'b'])}\nreturn (c != 0.0 ? a : b);`);
  },
  jvp([c, a, b], [, ta, tb], _p, y) {
    if (!ta && !tb) return null;
    return ops.where(c, ta ?? ops.zerosLike(y), tb ?? ops.zerosLike(y));
  },
  vjp(ct, [c, a, b], _p, _y, needs) {
    const zero = ops.zerosLike(ct);
    return [null, needs[1] ? un(ops.where(c, ct, zero), a.shape) : null, needs[2] ? un(ops.where(c, zero, ct), b.shape) : null];
  },
};

/** Change of dtype. Float-to-float casts carry tangents; casts to int32 or bool do not. */
export const cast: Primitive<{ dtype: DType }> = {
  name: 'cast',
  abstract([x], { dtype }) {
    return { shape: x.shape, dtype };
  },
  reference([x], _a, { dtype }) {
    if (dtype === 'int32') return Float64Array.from(x, Math.trunc);
    if (dtype === 'bool') return Float64Array.from(x, (v) => +(v !== 0));
    return Float64Array.from(x);
  },
  kernel(_a, { dtype }) {
    const expr = dtype === 'int32' ? 'Math.trunc(v)' : dtype === 'bool' ? '(v != 0.0 ? 1.0 : 0.0)' : 'v';
    return kernelFn(1, `const v = x0[i];\nreturn ${expr};`);
  },
  jvp([x], [t], { dtype }) {
    return t && isFloat(dtype) && isFloat(x.dtype) ? ops.cast(t, dtype) : null;
  },
  vjp(ct, [x], { dtype }) {
    return [isFloat(dtype) && isFloat(x.dtype) ? ops.cast(ct, x.dtype) : null];
  },
};
