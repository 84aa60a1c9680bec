/**
 * Elementwise unary primitives, declared as one table: each entry gives the kernel
 * expression (GPU.js, in terms of `v`, or lines declaring the result), the float64
 * reference, and the derivative f'(x) written with tensor ops. One derivative serves both modes (PyTorch's
 * auto_element_wise): JVP = t · f'(x), VJP = ct · f'(x).
 */
import type { Aval } from '../backend.js';
import { expLines, f, kernelFn } from '../codegen.js';
import { isFloat } from '../dtype.js';
import { TensorError } from '../errors.js';
import type { Primitive } from '../primitive.js';
import type { Tensor } from '../tensor.js';
import * as ops from '../ops.js';

interface UnarySpec {
  /** GPU.js expression of `v` (or `lines`). */
  expr?: string;
  ref: (x: number) => number;
  /** f'(x) given x and y = f(x); absent for piecewise-constant functions (zero derivative). */
  deriv?: (x: Tensor, y: Tensor) => Tensor;
  /** Accepts int32 inputs and keeps their dtype (neg, abs, sign). */
  integer?: boolean;
  /**
   * Kernel lines that declare `out` as f(v), for functions that take more than one
   * expression (v and out are names; helper locals take out as a prefix).
   */
  lines?: (v: string, out: string) => string;
}

function erfRef(x: number): number {
  // erf by its Maclaurin series for |x| < 3 and the continued fraction of erfc beyond;
  // accurate to ~1e-15, enough for a float64 oracle.
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = x, sum = x;
    for (let n = 1; n < 200; n++) {
      term *= (-x * x) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = (n / 2) / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return Math.sign(x) * (1 - erfc);
}

// erf in float32 kernels: Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
const ERF_EXPR = `(Math.sign(v) * (1.0 - (((((1.061405429 * (1.0 / (1.0 + 0.3275911 * Math.abs(v))) - 1.453152027) * (1.0 / (1.0 + 0.3275911 * Math.abs(v))) + 1.421413741) * (1.0 / (1.0 + 0.3275911 * Math.abs(v))) - 0.284496736) * (1.0 / (1.0 + 0.3275911 * Math.abs(v))) + 0.254829592) * (1.0 / (1.0 + 0.3275911 * Math.abs(v)))) * Math.exp(-v * v)))`;

/**
 * Kernel lines for tanh in float32 arithmetic (Math.tanh is a call into JavaScript per
 * element on webasm, about 75 ns). Below |v| = 0.5 its Taylor polynomial to v^13 (the first
 * omitted term is under 5e-8 there), so small values keep their relative precision; above,
 * (1 - e) / (1 + e) with e = exp(-2|v|) <= 0.37, no cancellation; the sign restored.
 */
function tanhLines(v: string, out: string): string {
  const taylor = [1, -1 / 3, 2 / 15, -17 / 315, 62 / 2835, -1382 / 155925, 21844 / 6081075];
  const poly = taylor.reduceRight((acc, c, i) => (i === taylor.length - 1 ? f(c) : `${f(c)} + ${out}s * (${acc})`), '');
  return [
    `const ${out}a = Math.abs(${v});`,
    `const ${out}s = ${v} * ${v};`,
    expLines(`(-2.0 * ${out}a)`, `${out}e`),
    `const ${out}l = (1.0 - ${out}e) / (1.0 + ${out}e);`,
    `const ${out} = ${out}a < 0.5 ? ${v} * (${poly}) : (${v} < 0.0 ? -${out}l : ${out}l);`,
  ].join('\n');
}

export const unarySpecs = {
  neg: { expr: '-v', ref: (x) => -x, deriv: (x) => ops.fullLike(x, -1), integer: true },
  abs: { expr: 'Math.abs(v)', ref: Math.abs, deriv: (x) => ops.sign(x), integer: true },
  sign: { expr: 'Math.sign(v)', ref: Math.sign, integer: true },
  exp: { lines: expLines, ref: Math.exp, deriv: (_x, y) => y },
  log: { expr: 'Math.log(v)', ref: Math.log, deriv: (x) => ops.reciprocal(x) },
  log1p: { expr: 'Math.log1p(v)', ref: Math.log1p, deriv: (x) => ops.reciprocal(ops.add(x, 1)) },
  expm1: { expr: 'Math.expm1(v)', ref: Math.expm1, deriv: (_x, y) => ops.add(y, 1) },
  sqrt: { expr: 'Math.sqrt(v)', ref: Math.sqrt, deriv: (_x, y) => ops.div(0.5, y) },
  rsqrt: { expr: '1.0 / Math.sqrt(v)', ref: (x) => 1 / Math.sqrt(x), deriv: (x, y) => ops.mul(ops.div(y, x), -0.5) },
  reciprocal: { expr: '1.0 / v', ref: (x) => 1 / x, deriv: (_x, y) => ops.neg(ops.mul(y, y)) },
  sin: { expr: 'Math.sin(v)', ref: Math.sin, deriv: (x) => ops.cos(x) },
  cos: { expr: 'Math.cos(v)', ref: Math.cos, deriv: (x) => ops.neg(ops.sin(x)) },
  tan: { expr: 'Math.tan(v)', ref: Math.tan, deriv: (_x, y) => ops.add(ops.mul(y, y), 1) },
  atan: { expr: 'Math.atan(v)', ref: Math.atan, deriv: (x) => ops.reciprocal(ops.add(ops.mul(x, x), 1)) },
  tanh: { lines: tanhLines, ref: Math.tanh, deriv: (_x, y) => ops.sub(1, ops.mul(y, y)) },
  sigmoid: {
    lines: (v, out) => `${expLines(`(-${v})`, `${out}e`)}\nconst ${out} = 1.0 / (1.0 + ${out}e);`,
    ref: (x) => 1 / (1 + Math.exp(-x)), deriv: (_x, y) => ops.mul(y, ops.sub(1, y)),
  },
  erf: { expr: ERF_EXPR, ref: erfRef, deriv: (x) => ops.mul(ops.exp(ops.neg(ops.mul(x, x))), 2 / Math.sqrt(Math.PI)) },
  floor: { expr: 'Math.floor(v)', ref: Math.floor },
  // Half-way cases round up (towards +inf) on every backend.
  round: { expr: 'Math.floor(v + 0.5)', ref: (x) => Math.floor(x + 0.5) },
} satisfies Record<string, UnarySpec>;

export type UnaryName = keyof typeof unarySpecs;

/** Kernel lines declaring `out` = name(v): shared by the primitive's kernel and fused kernels. */
export function unaryLines(name: UnaryName, v: string, out: string): string {
  const spec: UnarySpec = unarySpecs[name];
  return spec.lines ? spec.lines(v, out) : `const ${out} = ${spec.expr!.replace(/\bv\b/g, v)};`;
}

function makeUnary(name: UnaryName, spec: UnarySpec): Primitive<Record<string, never>> {
  return {
    name,
    abstract([x]: readonly Aval[]): Aval {
      if (x.dtype === 'bool' || (!spec.integer && !isFloat(x.dtype))) {
        throw new TensorError(name, `expected a float tensor${spec.integer ? ' or int32' : ''}, got dtype ${x.dtype}`, [x.shape]);
      }
      return { shape: x.shape, dtype: x.dtype };
    },
    reference([x]) {
      return Float64Array.from(x, spec.ref);
    },
    kernel() {
      return kernelFn(1, `const v = x0[i];\n${unaryLines(name, 'v', 'y')}\nreturn y;`);
    },
    jvp([x], [t], _p, y) {
      if (!t || !spec.deriv) return null;
      return ops.mul(t, spec.deriv(x, y));
    },
    vjp(ct, [x], _p, y) {
      if (!spec.deriv) return [null];
      return [ops.mul(ct, spec.deriv(x, y))];
    },
  };
}

export const unaryPrimitives = Object.fromEntries(
  Object.entries(unarySpecs).map(([name, spec]) => [name, makeUnary(name as UnaryName, spec as UnarySpec)]),
) as Record<UnaryName, Primitive<Record<string, never>>>;
