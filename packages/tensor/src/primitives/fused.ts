/**
 * Fused elementwise expressions: a chain of elementwise ops over broadcast inputs, run as
 * one generated kernel instead of one kernel (and one full-size intermediate) per op.
 *
 * The expression is a small program in SSA form (`Instr[]`, the last instruction is the
 * result), built by tracing a function over `Expr` handles: `fuse((x, m, r) =>
 * x.sub(m).mul(r), [x, mean, rstd])`. Its derivatives are programs too, obtained by
 * differentiating the program symbolically in forward mode:
 *   JVP: one fused kernel over (inputs, tangents) computing Σ_k ∂f/∂x_k · t_k;
 *   VJP: for each input k that needs one, a fused kernel ct · ∂f/∂x_k, summed back over
 *        the dimensions input k was broadcast along.
 * Both are applications of these same primitives, so derivatives of any order fuse as well.
 *
 * `fusedSum` is the same expression summed over some axes of its broadcast grid in the same
 * kernel (a variance: Σ (x − m)²), so no full-size intermediate is written. The VJP of an
 * expression uses it too: a broadcast input's cotangent is summed as it is computed.
 * Partial derivatives recompute the primal subexpressions they need instead of saving
 * them: on these backends moving a full-size tensor costs more than a few multiply-adds.
 * An exponential is not a few: a program with one and many inputs pays for it once per
 * input's VJP kernel, so nn's groupNorm keeps its SiLU a separate fused op (measured).
 */
import type { Aval } from '../backend.js';
import { closeLoop, coordLines, f, kernelFn, openLoop, partLines, type PartSplit } from '../codegen.js';
import { isFloat } from '../dtype.js';
import { TensorError } from '../errors.js';
import type { Primitive } from '../primitive.js';
import { broadcastMap, broadcastShapes, shapesEqual, sizeOf, stridesOf, type Shape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import * as ops from '../ops.js';
import { binaryExpr, binarySpecs, loadBroadcast } from './binary.js';
import { unaryLines, unarySpecs } from './unary.js';

/** The unary and binary ops an expression may use: the differentiable float ones. */
export const FUSED_UNARY = ['neg', 'exp', 'log', 'log1p', 'expm1', 'sqrt', 'rsqrt', 'reciprocal', 'sin', 'cos', 'tanh', 'sigmoid'] as const;
export const FUSED_BINARY = ['add', 'sub', 'mul', 'div'] as const;
export type FusedUnary = (typeof FUSED_UNARY)[number];
export type FusedBinary = (typeof FUSED_BINARY)[number];

/** One instruction: read input k, a constant, or an op on earlier instructions' results. */
export type Instr = readonly ['in', number] | readonly ['const', number] | readonly [FusedUnary, number] | readonly [FusedBinary, number, number];

export interface FusedParams {
  readonly code: readonly Instr[];
}

const UNARY = new Set<string>(FUSED_UNARY);
const BINARY = new Set<string>(FUSED_BINARY);

// ------------------------------ building programs ---------------------------

/**
 * Records instructions, sharing repeated ones (common subexpressions) and folding the
 * algebra of zeros and ones that symbolic differentiation produces.
 */
export class ProgramBuilder {
  readonly code: Instr[] = [];
  private readonly seen = new Map<string, number>();

  private emit(instr: Instr): Expr {
    // (−0 kept apart from 0: their reciprocals differ.)
    const key = instr[0] === 'const' && Object.is(instr[1], -0) ? 'const -0' : instr.join(' ');
    let id = this.seen.get(key);
    if (id === undefined) {
      id = this.code.push(instr) - 1;
      this.seen.set(key, id);
    }
    return new Expr(this, id);
  }

  input(k: number): Expr {
    return this.emit(['in', k]);
  }

  constant(v: number): Expr {
    return this.emit(['const', v]);
  }

  /** The constant an instruction holds, if it is one. */
  valueOf(e: Expr): number | undefined {
    const instr = this.code[e.id];
    return instr[0] === 'const' ? instr[1] : undefined;
  }

  unary(op: FusedUnary, a: Expr): Expr {
    const va = this.valueOf(a);
    if (va !== undefined) return this.constant(unarySpecs[op].ref(va));
    if (op === 'neg' && this.code[a.id][0] === 'neg') return new Expr(this, this.code[a.id][1] as number);
    return this.emit([op, a.id]);
  }

  binary(op: FusedBinary, a: Expr, b: Expr): Expr {
    const va = this.valueOf(a), vb = this.valueOf(b);
    if (va !== undefined && vb !== undefined) return this.constant(binarySpecs[op].ref(va, vb));
    switch (op) {
      case 'add':
        if (va === 0) return b;
        if (vb === 0) return a;
        break;
      case 'sub':
        if (vb === 0) return a;
        if (va === 0) return this.unary('neg', b);
        break;
      case 'mul':
        // x·0 folds to 0 (as JAX's symbolic zeros do): an infinite x would give NaN.
        if (va === 0 || vb === 0) return this.constant(0);
        if (va === 1) return b;
        if (vb === 1) return a;
        if (va === -1) return this.unary('neg', b);
        if (vb === -1) return this.unary('neg', a);
        break;
      case 'div':
        if (vb === 1) return a;
        if (va === 0) return this.constant(0);
        break;
    }
    return this.emit([op, a.id, b.id]);
  }

  /** The program computing `e`: the instructions it needs, `e` last. */
  finish(e: Expr): Instr[] {
    return subprogram(this.code, e.id);
  }
}

/** A value inside a fused expression, with the tensor methods the expression may use. */
export class Expr {
  constructor(readonly builder: ProgramBuilder, readonly id: number) {}
  private lift(o: Expr | number): Expr {
    return typeof o === 'number' ? this.builder.constant(o) : o;
  }
  add(o: Expr | number): Expr { return this.builder.binary('add', this, this.lift(o)); }
  sub(o: Expr | number): Expr { return this.builder.binary('sub', this, this.lift(o)); }
  mul(o: Expr | number): Expr { return this.builder.binary('mul', this, this.lift(o)); }
  div(o: Expr | number): Expr { return this.builder.binary('div', this, this.lift(o)); }
  square(): Expr { return this.mul(this); }
  neg(): Expr { return this.builder.unary('neg', this); }
  exp(): Expr { return this.builder.unary('exp', this); }
  log(): Expr { return this.builder.unary('log', this); }
  log1p(): Expr { return this.builder.unary('log1p', this); }
  expm1(): Expr { return this.builder.unary('expm1', this); }
  sqrt(): Expr { return this.builder.unary('sqrt', this); }
  rsqrt(): Expr { return this.builder.unary('rsqrt', this); }
  reciprocal(): Expr { return this.builder.unary('reciprocal', this); }
  sin(): Expr { return this.builder.unary('sin', this); }
  cos(): Expr { return this.builder.unary('cos', this); }
  tanh(): Expr { return this.builder.unary('tanh', this); }
  sigmoid(): Expr { return this.builder.unary('sigmoid', this); }
}

/** The program of `fn` traced over `n` inputs. */
export function trace(fn: (...xs: Expr[]) => Expr | number, n: number): readonly Instr[] {
  const b = new ProgramBuilder();
  const xs = Array.from({ length: n }, (_, k) => b.input(k));
  const out = fn(...xs);
  if (!(out instanceof Expr || typeof out === 'number')) throw new TensorError('fuse', `the function must return an Expr (or a number), got ${typeof out}`);
  return b.finish(typeof out === 'number' ? b.constant(out) : out);
}

/**
 * The program computing instruction `id` of `code`, without the instructions it does not
 * need (dead-code elimination), renumbered.
 */
export function subprogram(code: readonly Instr[], id: number): Instr[] {
  const live = new Array<boolean>(id + 1).fill(false);
  live[id] = true;
  for (let i = id; i >= 0; i--) {
    if (!live[i]) continue;
    const [op, a, b] = code[i];
    if (op === 'in' || op === 'const') continue;
    live[a as number] = true;
    if (b !== undefined) live[b] = true;
  }
  const at = new Map<number, number>();
  const out: Instr[] = [];
  for (let i = 0; i <= id; i++) {
    if (!live[i]) continue;
    const c = code[i];
    at.set(i, out.length);
    if (c[0] === 'in' || c[0] === 'const') out.push(c);
    else if (c.length === 2) out.push([c[0], at.get(c[1])!]);
    else out.push([c[0], at.get(c[1])!, at.get(c[2])!]);
  }
  return out;
}

/** The inputs a program reads, in increasing order. */
export function inputsRead(code: readonly Instr[]): number[] {
  return [...new Set(code.filter((c) => c[0] === 'in').map((c) => c[1]))].sort((a, b) => a - b);
}

// ------------------------------ differentiating programs --------------------

/**
 * Forward-mode differentiation of a program, symbolically: re-emits the program into `b`
 * (its inputs mapped by `inputs`) and returns the tangent of its result, given the tangent
 * of each input (null: zero). Null result: the tangent is zero.
 */
export function tangentOf(code: readonly Instr[], b: ProgramBuilder, inputs: readonly Expr[], tangents: readonly (Expr | null)[]): Expr | null {
  const value: Expr[] = [];
  const tangent: (Expr | null)[] = [];
  const plus = (x: Expr | null, y: Expr | null) => (x && y ? x.add(y) : x ?? y);
  const times = (t: Expr | null, d: Expr) => (t ? t.mul(d) : null);
  for (const instr of code) {
    const [op] = instr;
    if (op === 'in') {
      value.push(inputs[instr[1]]);
      tangent.push(tangents[instr[1]]);
      continue;
    }
    if (op === 'const') {
      value.push(b.constant(instr[1]));
      tangent.push(null);
      continue;
    }
    const x = value[instr[1]], tx = tangent[instr[1]];
    if (UNARY.has(op)) {
      const y = b.unary(op as FusedUnary, x);
      value.push(y);
      tangent.push(times(tx, unaryDerivative(op as FusedUnary, x, y)));
      continue;
    }
    const z = value[instr[2]!], tz = tangent[instr[2]!];
    const y = b.binary(op as FusedBinary, x, z);
    value.push(y);
    switch (op) {
      case 'add': tangent.push(plus(tx, tz)); break;
      case 'sub': tangent.push(plus(tx, tz && tz.neg())); break;
      case 'mul': tangent.push(plus(times(tx, z), times(tz, x))); break;
      // d(x/z) = dx/z - dz·y/z
      case 'div': tangent.push(plus(tx && tx.div(z), tz && tz.mul(y).div(z).neg())); break;
      default: throw new Error(`internal: no derivative for ${op}`);
    }
  }
  return tangent[tangent.length - 1];
}

/** f'(x) for a unary op, given x and y = f(x). */
function unaryDerivative(op: FusedUnary, x: Expr, y: Expr): Expr {
  switch (op) {
    case 'neg': return x.builder.constant(-1);
    case 'exp': return y;
    case 'log': return x.reciprocal();
    case 'log1p': return x.add(1).reciprocal();
    case 'expm1': return y.add(1);
    case 'sqrt': return y.reciprocal().mul(0.5);
    case 'rsqrt': return y.div(x).mul(-0.5);
    case 'reciprocal': return y.mul(y).neg();
    case 'sin': return x.cos();
    case 'cos': return x.sin().neg();
    case 'tanh': return x.builder.constant(1).sub(y.mul(y));
    case 'sigmoid': return y.mul(x.builder.constant(1).sub(y));
  }
}

// ------------------------------ the primitive -------------------------------

function checkProgram(name: string, code: readonly Instr[], n: number, shapes: readonly (readonly number[])[]): void {
  const bad = (why: string) => new TensorError(name, why, shapes);
  if (!Array.isArray(code) || code.length === 0) throw bad('the expression is empty');
  code.forEach((instr, i) => {
    const [op, a, b] = instr;
    if (op === 'in') {
      if (!Number.isInteger(a) || a < 0 || a >= n) throw bad(`instruction ${i} reads input ${a}, but there are ${n} inputs`);
    } else if (op === 'const') {
      if (typeof a !== 'number') throw bad(`instruction ${i}: a constant must be a number`);
    } else if (UNARY.has(op) || BINARY.has(op)) {
      const args = UNARY.has(op) ? [a] : [a, b];
      if (!args.every((k) => Number.isInteger(k) && (k as number) >= 0 && (k as number) < i)) throw bad(`instruction ${i} (${op}) must refer to earlier instructions, got ${args.join(', ')}`);
    } else {
      throw bad(`instruction ${i}: unknown op "${op}" (expected in, const, ${[...UNARY, ...BINARY].join(', ')})`);
    }
  });
}

/** Evaluates a program on one element, in float64. */
function evalProgram(code: readonly Instr[], x: (k: number) => number, scratch: Float64Array): number {
  for (let i = 0; i < code.length; i++) {
    const instr = code[i];
    const op = instr[0];
    scratch[i] = op === 'in' ? x(instr[1])
      : op === 'const' ? instr[1]
      : UNARY.has(op) ? unarySpecs[op as FusedUnary].ref(scratch[instr[1]])
      : binarySpecs[op as FusedBinary].ref(scratch[instr[1]], scratch[(instr as readonly [FusedBinary, number, number])[2]]);
  }
  return scratch[code.length - 1];
}

/** Kernel lines computing the program; input k is the local `a{k}`, the result `v{last}`. */
function programLines(code: readonly Instr[]): string {
  const name = (i: number) => (code[i][0] === 'in' ? `a${code[i][1]}` : `v${i}`);
  const lines: string[] = [];
  code.forEach((instr, i) => {
    const op = instr[0];
    if (op === 'in') {
      if (i === code.length - 1) lines.push(`const v${i} = a${instr[1]};`);
    } else if (op === 'const') {
      lines.push(`const v${i} = (${f(instr[1])});`);
    } else if (UNARY.has(op)) {
      lines.push(unaryLines(op as FusedUnary, name(instr[1]), `v${i}`));
    } else {
      lines.push(`const v${i} = ${binaryExpr(op as FusedBinary, name(instr[1]), name((instr as readonly [FusedBinary, number, number])[2]))};`);
    }
  });
  return lines.join('\n');
}

export const fused: Primitive<FusedParams> = {
  name: 'fused',
  abstract(inputs: readonly Aval[], { code }): Aval {
    checkInputs('fused', inputs, code);
    return { shape: broadcastShapes('fused', ...inputs.map((a) => a.shape)), dtype: inputs[0].dtype };
  },
  reference(inputs, avals, { code }, out) {
    const maps = avals.map((a) => broadcastMap(out.shape, a.shape));
    const r = new Float64Array(maps.length ? maps[0].length : 0);
    const scratch = new Float64Array(code.length);
    for (let i = 0; i < r.length; i++) r[i] = evalProgram(code, (k) => inputs[k][maps[k][i]], scratch);
    return r;
  },
  kernel(avals, { code }, out) {
    const names = avals.map((_, k) => `a${k}`);
    return kernelFn(avals.length, `${loadBroadcast(out.shape, avals.map((a) => a.shape), names)}\n${programLines(code)}\nreturn v${code.length - 1};`);
  },
  jvp(primals, tangents, { code }) {
    const jvp = tangentProgram(code, primals, tangents);
    return jvp && ops.fuseProgram(jvp.code, jvp.inputs);
  },
  vjp(cotangent, primals, { code }, out, needs) {
    return cotangentsOf(code, primals, cotangent, out.shape, needs);
  },
};

/**
 * The JVP of a program as a program over the primals and the tangents present (tangent k
 * becomes the input after the primals at its position among them); null if it is zero.
 */
function tangentProgram(code: readonly Instr[], primals: Tensor[], tangents: (Tensor | null)[]): { code: Instr[]; inputs: Tensor[] } | null {
  const b = new ProgramBuilder();
  const inputs = primals.map((_, k) => b.input(k));
  const present: Tensor[] = [];
  const ts = tangents.map((t) => (t ? b.input(primals.length + present.push(t) - 1) : null));
  const t = tangentOf(code, b, inputs, ts);
  return t && { code: b.finish(t), inputs: [...primals, ...present] };
}

/** The shape rule both primitives share: inputs of one float dtype, a valid program. */
function checkInputs(name: string, inputs: readonly Aval[], code: readonly Instr[]): void {
  const shapes = inputs.map((a) => a.shape);
  if (inputs.length === 0) throw new TensorError(name, 'expected at least one input tensor');
  if (!isFloat(inputs[0].dtype) || inputs.some((a) => a.dtype !== inputs[0].dtype)) {
    throw new TensorError(name, `inputs must share one float dtype, got ${inputs.map((a) => a.dtype).join(', ')}`, shapes);
  }
  checkProgram(name, code, inputs.length, shapes);
}

/** The grid axes along which an input of `shape` is broadcast (absent or 1 where the grid is wider). */
function broadcastAxes(grid: Shape, shape: Shape): number[] {
  const lead = grid.length - shape.length;
  return grid.map((_, d) => d).filter((d) => d < lead || (shape[d - lead] === 1 && grid[d] !== 1));
}

/**
 * Cotangents of the inputs of `code` evaluated on `grid` (and perhaps summed over some of
 * its axes), given the output cotangent `ct` (broadcastable to the grid): for input k,
 * Σ ct · ∂f/∂x_k over the grid positions that read each of its elements, one fusedSum each.
 */
function cotangentsOf(code: readonly Instr[], primals: Tensor[], ct: Tensor, grid: Shape, needs: boolean[]): (Tensor | null)[] {
  const n = primals.length;
  return primals.map((x, k) => {
    if (!needs[k]) return null;
    const b = new ProgramBuilder();
    const inputs = primals.map((_, j) => b.input(j));
    const d = tangentOf(code, b, inputs, inputs.map((_, j) => (j === k ? b.constant(1) : null)));
    if (!d) return null;
    const summed = ops.fuseSumProgram(b.finish(b.input(n).mul(d)), [...primals, ct], grid, broadcastAxes(grid, x.shape));
    return ops.reshape(summed, x.shape);
  });
}

/**
 * Lines reading input k of `shapes` at grid coordinates: kept axes c*, summed axes r*; with
 * `split`, the part's chunk of the outermost summed axis (see Primitive.split).
 */
function sumLoopLines(grid: Shape, axes: readonly number[], shapes: readonly Shape[], body: string, split?: PartSplit): string {
  const kept = (d: number) => !axes.includes(d);
  const lines: string[] = [];
  const reads: string[] = [];
  shapes.forEach((shape, k) => {
    const lead = grid.length - shape.length;
    const strides = stridesOf(shape);
    const stride = (d: number) => (d < lead || shape[d - lead] === 1 ? 0 : strides[d - lead]);
    const base = grid.map((_, d) => d).filter((d) => kept(d) && stride(d)).map((d) => `c${d} * ${stride(d)}`);
    const inner = axes.map((a, j) => [stride(a), j] as const).filter(([st]) => st).map(([st, j]) => `r${j} * ${st}`);
    lines.push(`const b${k} = ${base.length ? base.join(' + ') : '0'};`);
    reads.push(`const a${k} = x${k}[b${k}${inner.length ? ` + ${inner.join(' + ')}` : ''}];`);
  });
  lines.push('let s = 0.0;');
  axes.forEach((a, j) => lines.push(openLoop(`r${j}`, grid[a], j === 0 ? split : undefined)));
  lines.push(...reads, body, 's += result;');
  axes.forEach((_, j) => lines.push(closeLoop(j === 0 ? split : undefined)));
  lines.push('return s;');
  return lines.join('\n');
}

export interface FusedSumParams extends FusedParams {
  /** The broadcast grid the expression is evaluated on (its inputs broadcast to it). */
  readonly grid: readonly number[];
  /** Grid axes summed over (kept as size 1 in the output). */
  readonly axes: readonly number[];
}

export const fusedSum: Primitive<FusedSumParams> = {
  name: 'fusedSum',
  abstract(inputs, { code, grid, axes }): Aval {
    checkInputs('fusedSum', inputs, code);
    const shapes = inputs.map((a) => a.shape);
    if (!shapesEqual(broadcastShapes('fusedSum', grid, ...shapes), grid)) throw new TensorError('fusedSum', `inputs must broadcast to the grid [${grid.join(', ')}]`, shapes);
    if (!axes.every((a, j) => Number.isInteger(a) && a >= 0 && a < grid.length && (j === 0 || a > axes[j - 1]))) {
      throw new TensorError('fusedSum', `axes must be increasing axes of the grid [${grid.join(', ')}], got [${axes.join(', ')}]`, shapes);
    }
    return { shape: grid.map((d, k) => (axes.includes(k) ? 1 : d)), dtype: inputs[0].dtype };
  },
  reference(inputs, avals, { code, grid }, out) {
    const maps = avals.map((a) => broadcastMap(grid, a.shape));
    const into = broadcastMap(grid, out.shape);
    const r = new Float64Array(sizeOf(out.shape));
    const scratch = new Float64Array(code.length);
    for (let g = 0; g < into.length; g++) r[into[g]] += evalProgram(code, (k) => inputs[k][maps[k][g]], scratch);
    return r;
  },
  kernel(avals, { code, grid, axes }, out) {
    const body = `${programLines(code)}\nconst result = v${code.length - 1};`;
    return kernelFn(avals.length, `${coordLines(out.shape)}\n${sumLoopLines(grid, axes, avals.map((a) => a.shape), body)}`);
  },
  split(avals, { code, grid, axes }, out) {
    if (axes.length === 0) return null;
    const body = `${programLines(code)}\nconst result = v${code.length - 1};`;
    const kernel = (parts: number) => {
      const split = { parts, cells: sizeOf(out.shape) };
      return kernelFn(avals.length, `${partLines(split)}\n${coordLines(out.shape, 'cell')}\n${sumLoopLines(grid, axes, avals.map((a) => a.shape), body, split)}`);
    };
    return { extent: grid[axes[0]], terms: axes.reduce((n, k) => n * grid[k], 1), kernel };
  },
  jvp(primals, tangents, { code, grid, axes }) {
    // The sum is linear: the tangent of the sum is the sum of the tangent.
    const jvp = tangentProgram(code, primals, tangents);
    return jvp && ops.fuseSumProgram(jvp.code, jvp.inputs, grid, axes);
  },
  vjp(cotangent, primals, { code, grid }, _out, needs) {
    return cotangentsOf(code, primals, cotangent, grid, needs);
  },
};
