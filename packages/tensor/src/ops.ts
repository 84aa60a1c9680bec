/**
 * The public tensor API. Ops validate their inputs, apply NumPy-style promotion and
 * broadcasting, and `bind` primitives; composites (softmax, var, pooling, ...) are
 * built from primitives and need no derivative rules of their own.
 *
 * Each op that can make temporaries (a number lifted to a tensor, a cast, a composite's
 * intermediate steps) runs in its own `tidy` scope, as TensorFlow.js's ops do: called outside
 * any scope, it leaves behind only its result.
 */
import type { Backend, BackendName } from './backend.js';
import { getBackend, getBackendInstance } from './backends/index.js';
import { arrayFor, castArray, isFloat, promote, type DType, type TypedArray } from './dtype.js';
import { TensorError } from './errors.js';
import { bind } from './primitive.js';
import { broadcastShapes, checkShape, normAxes, normAxis, shapesEqual, sizeOf, type Shape } from './shape.js';
import { Storage, Tensor, tidy, type NestedArray } from './tensor.js';
import { unaryPrimitives } from './primitives/unary.js';
import { binaryPrimitives, cast as castPrim, where as wherePrim } from './primitives/binary.js';
import { argmax as argmaxPrim, max as maxPrim, sum as sumPrim, reducedShape } from './primitives/reduce.js';
import * as mv from './primitives/movement.js';
import { scatterAdd as scatterAddPrim, take as takePrim } from './primitives/gather.js';
import { matmul as matmulPrim } from './primitives/matmul.js';
import * as conv from './primitives/conv.js';
import type { ConvParams } from './primitives/conv.js';
import { fused as fusedPrim, fusedSum as fusedSumPrim, inputsRead, subprogram, trace as traceProgram, type Expr, type Instr } from './primitives/fused.js';

export type TensorLike = Tensor | number;

export interface CreateOptions {
  dtype?: DType;
  backend?: BackendName | Backend;
}

function resolveBackend(b?: BackendName | Backend): Backend {
  if (!b) return getBackend();
  return typeof b === 'string' ? getBackendInstance(b) : b;
}

/** A tensor from host values (zero-copy is not possible across the kernel engine). */
export function fromArray(values: ArrayLike<number>, shape: Shape, opts: CreateOptions = {}): Tensor {
  checkShape('tensor', shape);
  const dtype = opts.dtype ?? (values instanceof Int32Array ? 'int32' : values instanceof Uint8Array ? 'bool' : 'float32');
  if (values.length !== sizeOf(shape)) throw new TensorError('tensor', `${values.length} values do not fill shape [${shape.join(', ')}]`, [shape]);
  const backend = resolveBackend(opts.backend);
  if (dtype === 'float64' && !backend.supportsFloat64) throw new TensorError('tensor', `float64 is supported on the reference backend only (this is ${backend.name})`, [shape]);
  const aval = { shape, dtype };
  return new Tensor(shape, dtype, new Storage(backend, backend.fromHost(castArray(values, dtype), aval)));
}

function inferShape(v: NestedArray | readonly NestedArray[]): number[] {
  const shape: number[] = [];
  let cur: unknown = v;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0];
  }
  return shape;
}

/** A tensor from a number, nested arrays, or a typed array (1-D unless `shape` is given). */
export function tensor(values: NestedArray | TypedArray | readonly NestedArray[], opts: CreateOptions & { shape?: Shape } = {}): Tensor {
  if (ArrayBuffer.isView(values)) return fromArray(values as TypedArray, opts.shape ?? [(values as TypedArray).length], opts);
  const shape = inferShape(values as NestedArray);
  const flat = (values as NestedArray[]).flat ? (Array.isArray(values) ? (values as NestedArray[]).flat(Infinity as 1) : [values]) : [values];
  if (flat.length !== sizeOf(shape)) throw new TensorError('tensor', 'nested arrays are ragged', [shape]);
  const nums = (flat as (number | boolean)[]).map((x) => Number(x));
  const dtype = opts.dtype ?? (typeof flat[0] === 'boolean' ? 'bool' : 'float32');
  return fromArray(nums, opts.shape ?? shape, { ...opts, dtype });
}

export function full(shape: Shape, value: number, opts: CreateOptions = {}): Tensor {
  checkShape('full', shape);
  return fromArray(arrayFor(opts.dtype ?? 'float64', sizeOf(shape)).fill(value), shape, { dtype: 'float32', ...opts });
}
export const zeros = (shape: Shape, opts: CreateOptions = {}) => full(shape, 0, opts);
export const ones = (shape: Shape, opts: CreateOptions = {}) => full(shape, 1, opts);

/** Constants shaped like x, on x's backend; for a tracer, a constant without tangent. */
export function fullLike(x: Tensor, value: number, dtype: DType = x.dtype): Tensor {
  return full(x.shape, value, { dtype, backend: x.backend });
}
export const zerosLike = (x: Tensor, dtype?: DType) => fullLike(x, 0, dtype);
export const onesLike = (x: Tensor, dtype?: DType) => fullLike(x, 1, dtype);

export function arange(start: number, stop?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new TensorError('arange', 'step must not be 0');
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const dtype = opts.dtype ?? ([start, stop, step].every(Number.isInteger) ? 'int32' : 'float32');
  return fromArray(Array.from({ length: n }, (_, i) => start + i * step), [n], { ...opts, dtype });
}

export function linspace(start: number, stop: number, num: number, opts: CreateOptions = {}): Tensor {
  if (!Number.isInteger(num) || num < 0) throw new TensorError('linspace', `num must be a non-negative integer, got ${num}`);
  const vals = Array.from({ length: num }, (_, i) => (num === 1 ? start : start + ((stop - start) * i) / (num - 1)));
  return fromArray(vals, [num], opts);
}

export function eye(n: number, m = n, opts: CreateOptions = {}): Tensor {
  const vals = new Float64Array(n * m);
  for (let i = 0; i < Math.min(n, m); i++) vals[i * m + i] = 1;
  return fromArray(vals, [n, m], opts);
}

/** Move a tensor to another backend (through the host). */
export async function toBackend(x: Tensor, backend: BackendName, dtype: DType = x.dtype): Promise<Tensor> {
  return fromArray(await x.data(), x.shape, { backend, dtype });
}

// ------------------------------ lifting -------------------------------------

function asTensor(x: TensorLike, like: Tensor, op: string): Tensor {
  if (x instanceof Tensor) return x;
  if (typeof x !== 'number') throw new TensorError(op, `expected a Tensor or a number, got ${typeof x}`);
  const dtype = !Number.isInteger(x) && !isFloat(like.dtype) ? 'float32' : like.dtype === 'bool' ? 'float32' : like.dtype;
  // like.concrete(op): a disposed operand is reported by this op, not by a property read.
  return full([], x, { dtype, backend: like.concrete(op).storage.backend });
}

/** Bring two operands to one dtype (numbers adopt the tensor's dtype, as JAX's weak types). */
function operands(op: string, a: TensorLike, b: TensorLike): [Tensor, Tensor] {
  if (!(a instanceof Tensor) && !(b instanceof Tensor)) throw new TensorError(op, 'at least one operand must be a Tensor');
  const ta = a instanceof Tensor ? a : asTensor(a, b as Tensor, op);
  const tb = b instanceof Tensor ? b : asTensor(b, ta, op);
  const dtype = promote(ta.dtype, tb.dtype);
  return [cast(ta, dtype), cast(tb, dtype)];
}

export function cast(x: Tensor, dtype: DType): Tensor {
  return x.dtype === dtype ? x : bind(castPrim, [x], { dtype });
}

/** Float version of x: int32 and bool become float32. */
function toFloat(x: Tensor): Tensor {
  return isFloat(x.dtype) ? x : cast(x, 'float32');
}

// ------------------------------ elementwise ---------------------------------

const un = (name: keyof typeof unaryPrimitives, float = true) => (x: Tensor): Tensor => {
  if (!(x instanceof Tensor)) throw new TensorError(name, `expected a Tensor, got ${typeof x}`);
  return tidy(() => bind(unaryPrimitives[name], [float ? toFloat(x) : x], {}));
};
export const neg = un('neg', false);
export const abs = un('abs', false);
export const sign = un('sign', false);
export const exp = un('exp');
export const log = un('log');
export const log1p = un('log1p');
export const expm1 = un('expm1');
export const sqrt = un('sqrt');
export const rsqrt = un('rsqrt');
export const reciprocal = un('reciprocal');
export const sin = un('sin');
export const cos = un('cos');
export const tan = un('tan');
export const atan = un('atan');
export const tanh = un('tanh');
export const sigmoid = un('sigmoid');
export const erf = un('erf');
export const floor = un('floor');
export const round = un('round');

const bin = (name: keyof typeof binaryPrimitives, float = false) => (a: TensorLike, b: TensorLike): Tensor =>
  tidy(() => {
    let [x, y] = operands(name, a, b);
    if (float) [x, y] = [toFloat(x), toFloat(y)];
    return bind(binaryPrimitives[name], [x, y], {});
  });
export const add = bin('add');
export const sub = bin('sub');
export const mul = bin('mul');
export const div = bin('div', true);
export const pow = bin('pow', true);
export const maximum = bin('maximum');
export const minimum = bin('minimum');
export const atan2 = bin('atan2', true);
export const less = bin('less');
export const lessEqual = bin('lessEqual');
export const greater = bin('greater');
export const greaterEqual = bin('greaterEqual');
export const equal = bin('equal');
export const notEqual = bin('notEqual');

export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  return tidy(() => {
    const [x, y] = operands('where', a, b);
    return bind(wherePrim, [cond, x, y], {});
  });
}

export const square = (x: Tensor) => mul(x, x);
/** relu with relu'(0) = 0, as PyTorch and JAX (maximum(x, 0) would split the tie). */
export const relu = (x: Tensor) => tidy(() => where(greater(x, 0), x, 0));
/** silu(x) = x · sigmoid(x), one fused kernel (its derivatives too). */
export const silu = (x: Tensor) => fuse((v) => v.mul(v.sigmoid()), [x]);
/** GELU, exact (erf) form as PyTorch's default. */
export const gelu = (x: Tensor) => tidy(() => mul(mul(x, 0.5), add(erf(mul(x, Math.SQRT1_2)), 1)));
/** softplus(x) = log(1 + e^x), computed stably as max(x, 0) + log1p(e^-|x|). */
export const softplus = (x: Tensor) => tidy(() => add(relu(x), log1p(exp(neg(abs(x))))));
export const clip = (x: Tensor, lo: number, hi: number) => tidy(() => minimum(maximum(x, lo), hi));

// ------------------------------ fused elementwise ---------------------------

/**
 * One kernel for an elementwise expression over broadcast inputs: `fn` gets one `Expr` per
 * input and builds the result with its methods (add, sub, mul, div, square, neg, exp, log,
 * log1p, expm1, sqrt, rsqrt, reciprocal, sin, cos, tanh, sigmoid; numbers are constants).
 * The value is the op-by-op chain's, without its full-size intermediates; derivatives are
 * fused kernels too (see primitives/fused.ts).
 *
 *   const y = fuse((x, m, r) => x.sub(m).mul(r), [x, mean, rstd]);
 */
export function fuse(fn: (...xs: Expr[]) => Expr | number, inputs: readonly Tensor[]): Tensor {
  return tidy(() => {
    if (typeof fn !== 'function') throw new TensorError('fuse', `expected a function building the expression, got ${typeof fn}`);
    checkFuseInputs(inputs);
    return fuseProgram(traceProgram(fn, inputs.length), inputs);
  });
}

function checkFuseInputs(inputs: readonly Tensor[]): void {
  if (!Array.isArray(inputs) || inputs.length === 0 || !inputs.every((x) => x instanceof Tensor)) {
    throw new TensorError('fuse', 'expected a non-empty list of Tensors as inputs');
  }
}

/**
 * At most this many inputs per fused kernel: WebGPU guarantees 8 storage buffers per
 * shader stage, one of them the output. Wider programs (a JVP over many inputs) are split.
 */
const MAX_FUSED_INPUTS = 7;

/** Apply a traced program (see fuse) to tensors; inputs the program does not read are not passed to the kernel. */
export function fuseProgram(code: readonly Instr[], inputs: readonly Tensor[]): Tensor {
  return tidy(() => {
    checkFuseInputs(inputs);
    const shape = broadcastShapes('fuse', ...inputs.map((x) => x.shape));
    const y = applyProgram(code, floatArgs(inputs));
    return shapesEqual(y.shape, shape) ? y : broadcastTo(y, shape);
  });
}

/** The inputs in their common float dtype (int32 and bool become float32). */
function floatArgs(inputs: readonly Tensor[]): Tensor[] {
  const dtype = inputs.map((x) => x.dtype).reduce(promote);
  return inputs.map((x) => cast(x, isFloat(dtype) ? dtype : 'float32'));
}

function applyProgram(code: readonly Instr[], args: readonly Tensor[]): Tensor {
  // Without dead instructions (derivative programs re-emit primal ones they may not use),
  // a program reads only the inputs it needs, and a wide one ends in an op.
  code = subprogram(code, code.length - 1);
  const read = inputsRead(code);
  if (read.length > MAX_FUSED_INPUTS) {
    // Too wide for one kernel: the operands of the last instruction first, then it.
    const last = code[code.length - 1];
    const operands = last.slice(1).map((id) => applyProgram(subprogram(code, id as number), args));
    return bind(fusedPrim, operands, { code: operands.length === 1 ? [['in', 0], [last[0], 0]] : [['in', 0], ['in', 1], [last[0], 0, 1]] } as { code: Instr[] });
  }
  return bind(fusedPrim, ...onlyInputsRead(code, read, args));
}

/**
 * The program and arguments without the inputs it does not read. A program that reads
 * none is a constant: it keeps one input, for the kernel's shape.
 */
function onlyInputsRead<P extends object>(code: readonly Instr[], read: number[], args: readonly Tensor[], params?: P): [Tensor[], P & { code: readonly Instr[] }] {
  if (read.length === args.length) return [[...args], { ...params, code } as P & { code: readonly Instr[] }];
  const keep = read.length ? read : [0];
  const at = new Map(keep.map((k, j) => [k, j]));
  const renumbered = code.map((c) => (c[0] === 'in' ? (['in', at.get(c[1]) ?? 0] as const) : c));
  return [keep.map((k) => args[k]), { ...params, code: renumbered } as P & { code: readonly Instr[] }];
}

/**
 * `fuse`, summed over `axes` of the inputs' broadcast shape in the same kernel (no full-size
 * intermediate): `fuseSum((x, m) => x.sub(m).square(), [x, mean], -1, true)`.
 */
export function fuseSum(fn: (...xs: Expr[]) => Expr | number, inputs: readonly Tensor[], axes?: Axes, keepdims = false): Tensor {
  return tidy(() => {
    if (typeof fn !== 'function') throw new TensorError('fuseSum', `expected a function building the expression, got ${typeof fn}`);
    checkFuseInputs(inputs);
    const grid = broadcastShapes('fuseSum', ...inputs.map((x) => x.shape));
    const ax = normAxes('fuseSum', axes, grid.length, grid);
    const y = fuseSumProgram(traceProgram(fn, inputs.length), inputs, grid, ax);
    return keepdims ? y : reshape(y, reducedShape(grid, ax, false));
  });
}

/** A traced program evaluated on `grid` and summed over `axes` (kept as size 1). */
export function fuseSumProgram(code: readonly Instr[], inputs: readonly Tensor[], grid: readonly number[], axes: readonly number[]): Tensor {
  return tidy(() => {
    checkFuseInputs(inputs);
    const sorted = [...axes].sort((a, b) => a - b);
    if (sorted.length === 0) return broadcastTo(fuseProgram(code, inputs), grid);
    const args = floatArgs(inputs);
    code = subprogram(code, code.length - 1);
    const read = inputsRead(code);
    if (read.length > MAX_FUSED_INPUTS) return sum(broadcastTo(applyProgram(code, args), grid), sorted, true);
    return bind(fusedSumPrim, ...onlyInputsRead(code, read, args, { grid: [...grid], axes: sorted }));
  });
}

// ------------------------------ reductions ----------------------------------

export type Axes = number | readonly number[] | undefined;

export function sum(x: Tensor, axes?: Axes, keepdims = false): Tensor {
  return tidy(() => {
    const ax = normAxes('sum', axes, x.ndim, x.shape);
    const y = x.dtype === 'bool' ? cast(x, 'int32') : x;
    return bind(sumPrim, [y], { axes: ax, keepdims });
  });
}

export function mean(x: Tensor, axes?: Axes, keepdims = false): Tensor {
  return tidy(() => {
    const ax = normAxes('mean', axes, x.ndim, x.shape);
    const n = ax.reduce((a, k) => a * x.shape[k], 1);
    return div(sum(toFloat(x), ax, keepdims), n);
  });
}

export function max(x: Tensor, axes?: Axes, keepdims = false): Tensor {
  return tidy(() => {
    return bind(maxPrim, [x], { axes: normAxes('max', axes, x.ndim, x.shape), keepdims });
  });
}

export function min(x: Tensor, axes?: Axes, keepdims = false): Tensor {
  return tidy(() => {
    return neg(max(neg(x), axes, keepdims));
  });
}

export function argmax(x: Tensor, axis: number, keepdims = false): Tensor {
  return tidy(() => {
    return bind(argmaxPrim, [x], { axis: normAxis('argmax', axis, x.ndim, x.shape), keepdims });
  });
}

export function argmin(x: Tensor, axis: number, keepdims = false): Tensor {
  return tidy(() => {
    return argmax(neg(x), axis, keepdims);
  });
}

/** log(sum(exp(x))) with the max subtracted first; the max carries no gradient. */
export function logsumexp(x: Tensor, axes?: Axes, keepdims = false): Tensor {
  return tidy(() => {
    const ax = normAxes('logsumexp', axes, x.ndim, x.shape);
    const m = stopGradientValue(max(x, ax, true));
    const s = log(sum(exp(sub(x, m)), ax, true));
    const out = add(s, m);
    return keepdims ? out : reshape(out, reducedShape(x.shape, ax, false));
  });
}

/** Variance (population by default; `correction: 1` for the sample variance). */
export function variance(x: Tensor, axes?: Axes, keepdims = false, correction = 0): Tensor {
  return tidy(() => {
    const ax = normAxes('var', axes, x.ndim, x.shape);
    const n = ax.reduce((a, k) => a * x.shape[k], 1);
    const centered = sub(x, mean(x, ax, true));
    return div(sum(square(centered), ax, keepdims), n - correction);
  });
}
export { variance as var_ };

/**
 * The primal value of x without its derivative. In the tensor package this is the
 * identity on concrete tensors; @scm/autodiff installs the version that cuts tracers.
 */
export let stopGradientValue: (x: Tensor) => Tensor = (x) => x;
export function setStopGradient(fn: (x: Tensor) => Tensor): void {
  stopGradientValue = fn;
}

// ------------------------------ movement ------------------------------------

export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const n = x.size;
  const neg1 = shape.filter((d) => d === -1).length;
  if (neg1 > 1) throw new TensorError('reshape', 'at most one dimension can be -1', [x.shape]);
  let target = [...shape];
  if (neg1) {
    const known = sizeOf(shape.filter((d) => d !== -1));
    if (known === 0 || n % known !== 0) throw new TensorError('reshape', `cannot infer -1 in [${shape.join(', ')}]`, [x.shape]);
    target = shape.map((d) => (d === -1 ? n / known : d));
  }
  checkShape('reshape', target);
  if (shapesEqual(target, x.shape)) return x;
  return bind(mv.reshape, [x], { shape: target });
}

export function flatten(x: Tensor, startAxis = 0): Tensor {
  return tidy(() => {
    const a = normAxis('flatten', startAxis, Math.max(x.ndim, 1), x.shape);
    return reshape(x, [...x.shape.slice(0, a), -1]);
  });
}

export function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  return tidy(() => {
    if (shapesEqual(x.shape, shape)) return x;
    return bind(mv.broadcastTo, [x], { shape: [...shape] });
  });
}

/** Sum x down to `shape` (the adjoint of broadcasting to x's shape). */
export function unbroadcast(x: Tensor, shape: Shape): Tensor {
  return tidy(() => {
    if (shapesEqual(x.shape, shape)) return x;
    const lead = x.ndim - shape.length;
    const axes: number[] = [];
    for (let d = 0; d < x.ndim; d++) if (d < lead || (shape[d - lead] === 1 && x.shape[d] !== 1)) axes.push(d);
    return reshape(sum(x, axes, true), shape);
  });
}

export function transpose(x: Tensor, perm?: readonly number[]): Tensor {
  return tidy(() => {
    const p = perm ? perm.map((a) => normAxis('transpose', a, x.ndim, x.shape)) : [...Array(x.ndim).keys()].reverse();
    if (p.every((v, k) => v === k) && p.length === x.ndim) return x;
    return bind(mv.transpose, [x], { perm: p });
  });
}
export const permute = transpose;

/** Swap the last two axes. */
export function mT(x: Tensor): Tensor {
  return tidy(() => {
    if (x.ndim < 2) throw new TensorError('mT', 'expected rank >= 2', [x.shape]);
    const perm = [...Array(x.ndim).keys()];
    [perm[x.ndim - 2], perm[x.ndim - 1]] = [perm[x.ndim - 1], perm[x.ndim - 2]];
    return transpose(x, perm);
  });
}

export function expandDims(x: Tensor, axis: number): Tensor {
  return tidy(() => {
    const a = normAxis('expandDims', axis, x.ndim + 1, x.shape);
    return reshape(x, [...x.shape.slice(0, a), 1, ...x.shape.slice(a)]);
  });
}

export function squeeze(x: Tensor, axes?: Axes): Tensor {
  return tidy(() => {
    const ax = axes === undefined ? x.shape.flatMap((d, k) => (d === 1 ? [k] : [])) : normAxes('squeeze', axes, x.ndim, x.shape);
    for (const a of ax) if (x.shape[a] !== 1) throw new TensorError('squeeze', `axis ${a} has size ${x.shape[a]}, expected 1`, [x.shape]);
    return reshape(x, x.shape.filter((_, k) => !ax.includes(k)));
  });
}

export function flip(x: Tensor, axes?: Axes): Tensor {
  return tidy(() => {
    const ax = normAxes('flip', axes, x.ndim, x.shape);
    if (!ax.length) return x;
    return bind(mv.flip, [x], { axes: ax });
  });
}

/** One axis of a slice: [start, stop) with step (negative steps count backwards, as Python). */
export interface SliceSpec {
  start?: number;
  stop?: number;
  step?: number;
}

/** x[start:stop:step] along each axis (missing trailing axes are taken whole). */
export function slice(x: Tensor, specs: readonly (SliceSpec | number | null)[]): Tensor {
  return tidy(() => {
    if (specs.length > x.ndim) throw new TensorError('slice', `${specs.length} slice specs for a tensor of rank ${x.ndim}`, [x.shape]);
    const starts: number[] = [], steps: number[] = [], shape: number[] = [], flipAxes: number[] = [], dropAxes: number[] = [];
    x.shape.forEach((n, d) => {
      const s = specs[d];
      if (typeof s === 'number') {
        const i = s < 0 ? s + n : s;
        if (!Number.isInteger(i) || i < 0 || i >= n) throw new TensorError('slice', `index ${s} is out of range for axis ${d} of size ${n}`, [x.shape]);
        starts.push(i); steps.push(1); shape.push(1); dropAxes.push(d);
        return;
      }
      const step = s?.step ?? 1;
      if (!Number.isInteger(step) || step === 0) throw new TensorError('slice', `step must be a non-zero integer, got ${step}`, [x.shape]);
      // Python semantics for start/stop, clamped to the axis.
      const clampIdx = (v: number | undefined, dflt: number, lo: number, hi: number) => (v === undefined ? dflt : Math.min(Math.max(v < 0 ? v + n : v, lo), hi));
      if (step > 0) {
        const start = clampIdx(s?.start, 0, 0, n), stop = clampIdx(s?.stop, n, 0, n);
        starts.push(start); steps.push(step); shape.push(Math.max(0, Math.ceil((stop - start) / step)));
      } else {
        // Take it on the flipped axis: position p in x is n-1-p there.
        const start = clampIdx(s?.start, n - 1, -1, n - 1), stop = clampIdx(s?.stop, -1, -1, n - 1);
        const count = Math.max(0, Math.ceil((start - stop) / -step));
        starts.push(n - 1 - start); steps.push(-step); shape.push(count); flipAxes.push(d);
      }
    });
    let y = flipAxes.length ? flip(x, flipAxes) : x;
    const identity = shape.every((d, k) => d === x.shape[k]) && steps.every((s) => s === 1) && starts.every((s) => s === 0);
    if (!identity) y = slicePrim(y, { starts: starts.map((s, k) => (shape[k] === 0 ? 0 : s)), steps, shape });
    return dropAxes.length ? squeeze(y, dropAxes) : y;
  });
}

export function slicePrim(x: Tensor, p: mv.SliceParams): Tensor {
  return bind(mv.slice, [x], p);
}

export function padPrim(x: Tensor, p: mv.PadParams): Tensor {
  return bind(mv.pad, [x], p);
}

/** Constant padding: `widths[d] = [before, after]` for each axis. */
export function pad(x: Tensor, widths: readonly (readonly [number, number])[], value = 0): Tensor {
  return tidy(() => {
    if (widths.length !== x.ndim) throw new TensorError('pad', `expected ${x.ndim} [before, after] pairs, got ${widths.length}`, [x.shape]);
    for (const [lo, hi] of widths) if (!(Number.isInteger(lo) && Number.isInteger(hi) && lo >= 0 && hi >= 0)) throw new TensorError('pad', 'widths must be non-negative integers', [x.shape]);
    if (widths.every(([lo, hi]) => lo === 0 && hi === 0)) return x;
    return padPrim(x, { lo: widths.map((w) => w[0]), interior: widths.map(() => 0), shape: x.shape.map((d, k) => d + widths[k][0] + widths[k][1]), value });
  });
}

export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  return tidy(() => {
    if (!xs.length) throw new TensorError('concat', 'needs at least one tensor');
    const a = normAxis('concat', axis, xs[0].ndim, xs[0].shape);
    const dtype = xs.map((x) => x.dtype).reduce(promote);
    const all = xs.map((x) => cast(x, dtype));
    // Inputs with nothing along the axis contribute nothing (shape checks still apply).
    const parts = all.filter((x) => x.ndim !== all[0].ndim || x.shape[a] > 0);
    if (parts.length === 0) return bind(mv.concat, all, { axis: a });
    if (parts.length === 1 && all.every((x) => x === parts[0] || (x.ndim === parts[0].ndim && x.shape.every((d, k) => k === a || d === parts[0].shape[k])))) return parts[0];
    return bind(mv.concat, parts, { axis: a });
  });
}

export function stack(xs: readonly Tensor[], axis = 0): Tensor {
  return tidy(() => {
    if (!xs.length) throw new TensorError('stack', 'needs at least one tensor');
    for (const x of xs) if (!shapesEqual(x.shape, xs[0].shape)) throw new TensorError('stack', 'all tensors must have the same shape', xs.map((v) => v.shape));
    const a = normAxis('stack', axis, xs[0].ndim + 1, xs[0].shape);
    return concat(xs.map((x) => expandDims(x, a)), a);
  });
}

/** Split into `sections` equal parts, or at the given sizes. */
export function split(x: Tensor, sections: number | readonly number[], axis = 0): Tensor[] {
  return tidy(() => {
    const a = normAxis('split', axis, x.ndim, x.shape);
    const n = x.shape[a];
    let sizes: number[];
    if (typeof sections === 'number') {
      if (n % sections !== 0) throw new TensorError('split', `axis ${a} of size ${n} does not split into ${sections} equal parts`, [x.shape]);
      sizes = Array(sections).fill(n / sections);
    } else sizes = [...sections];
    if (sizes.reduce((s, v) => s + v, 0) !== n) throw new TensorError('split', `sizes [${sizes}] do not add up to ${n}`, [x.shape]);
    let offset = 0;
    return sizes.map((size) => {
      const spec = x.shape.map((_, d) => (d === a ? { start: offset, stop: offset + size } : null));
      offset += size;
      return slice(x, spec);
    });
  });
}

/** Gather along `axis` by int32 indices (out shape: x[:axis] + idx + x[axis+1:]). */
export function take(x: Tensor, indices: Tensor, axis = 0): Tensor {
  return tidy(() => {
    const a = normAxis('take', axis, x.ndim, x.shape);
    if (indices.dtype !== 'int32') throw new TensorError('take', `indices must be int32, got ${indices.dtype}`, [x.shape, indices.shape]);
    checkIndices('take', indices, x.shape[a], x.shape);
    return bind(takePrim, [x, indices], { axis: a });
  });
}
export const gather = take;

export function scatterAdd(values: Tensor, indices: Tensor, axis: number, size: number): Tensor {
  return tidy(() => {
    checkIndices('scatterAdd', indices, size, values.shape);
    return bind(scatterAddPrim, [values, indices], { axis, size });
  });
}

// Indices are checked wherever they can be read synchronously (reference, cpu, webasm).
function checkIndices(op: string, indices: Tensor, n: number, shape: Shape): void {
  let vals: ArrayLike<number>;
  try {
    vals = indices.concrete(op).dataSync();
  } catch {
    return;
  }
  for (let i = 0; i < vals.length; i++) {
    if (vals[i] < 0 || vals[i] >= n) throw new TensorError(op, `index ${vals[i]} is out of range for an axis of size ${n}`, [shape, indices.shape]);
  }
}

// ------------------------------ linear algebra ------------------------------

/** Matrix product with NumPy semantics (1-D operands are promoted and the axis removed). */
export function matmul(a: Tensor, b: Tensor): Tensor {
  return tidy(() => {
    if (a.ndim === 0 || b.ndim === 0) throw new TensorError('matmul', 'operands must have at least one dimension', [a.shape, b.shape]);
    const dtype = promote(toFloat(a).dtype, toFloat(b).dtype);
    let x = cast(a, dtype), y = cast(b, dtype);
    const va = x.ndim === 1, vb = y.ndim === 1;
    if (va) x = reshape(x, [1, x.shape[0]]);
    if (vb) y = reshape(y, [y.shape[0], 1]);
    let out = bind(matmulPrim, [x, y], {});
    if (va) out = squeeze(out, out.ndim - 2);
    if (vb) out = squeeze(out, out.ndim - 1);
    return out;
  });
}

export interface Conv2dOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
}

const pair = (v: number | [number, number] | undefined, d: number): [number, number] => (v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : v);

export function convParams(opts: Conv2dOptions = {}): ConvParams {
  const p = { stride: pair(opts.stride, 1), padding: pair(opts.padding, 0), dilation: pair(opts.dilation, 1), groups: opts.groups ?? 1 };
  const ok = p.stride.every((s) => Number.isInteger(s) && s >= 1) && p.dilation.every((s) => Number.isInteger(s) && s >= 1) && p.padding.every((s) => Number.isInteger(s) && s >= 0) && Number.isInteger(p.groups) && p.groups >= 1;
  if (!ok) throw new TensorError('conv2d', `invalid options ${JSON.stringify(opts)} (strides and dilations >= 1, padding >= 0, groups >= 1)`);
  return p;
}

/** 2-D convolution, NCHW input and OIHW weight (cross-correlation, as PyTorch). */
export function conv2d(x: Tensor, w: Tensor, opts: Conv2dOptions = {}): Tensor {
  return tidy(() => {
    return conv2dPrim(x, w, convParams(opts));
  });
}
export function conv2dPrim(x: Tensor, w: Tensor, p: ConvParams): Tensor {
  return bind(conv.conv2d, [x, w], p);
}
export function conv2dInputGrad(g: Tensor, w: Tensor, p: ConvParams & { inputShape: number[] }): Tensor {
  return bind(conv.conv2dInputGrad, [g, w], p);
}
export function conv2dWeightGrad(x: Tensor, g: Tensor, p: ConvParams & { kernelSize: [number, number] }): Tensor {
  return bind(conv.conv2dWeightGrad, [x, g], p);
}

/**
 * Transposed convolution (the adjoint of conv2d), with PyTorch's IOHW weight layout
 * [C_in, C_out/groups, kH, kW] and output_padding to choose among output sizes.
 */
export function conv2dTranspose(x: Tensor, w: Tensor, opts: Conv2dOptions & { outputPadding?: number | [number, number] } = {}): Tensor {
  return tidy(() => {
    const p = convParams(opts);
    const op = pair(opts.outputPadding, 0);
    if (x.ndim !== 4 || w.ndim !== 4) throw new TensorError('conv2dTranspose', 'expected 4-D inputs', [x.shape, w.shape]);
    const [N, C, H, W] = x.shape;
    const [, Og, KH, KW] = w.shape;
    const size = (n: number, k: number, d: number) => (n - 1) * p.stride[d] - 2 * p.padding[d] + p.dilation[d] * (k - 1) + 1 + op[d];
    return conv2dInputGrad(x, w, { ...p, inputShape: [N, Og * p.groups, size(H, KH, 0), size(W, KW, 1)] });
    void C;
  });
}

/** Average pooling (count includes zero padding, as PyTorch's default). */
export function avgPool2d(x: Tensor, kernelSize: number | [number, number], stride?: number | [number, number], padding: number | [number, number] = 0): Tensor {
  return tidy(() => {
    if (x.ndim !== 4) throw new TensorError('avgPool2d', 'expected an NCHW input', [x.shape]);
    const k = pair(kernelSize, 1);
    const s = pair(stride ?? k, 1);
    const pd = pair(padding, 0);
    const C = x.shape[1];
    if (s[0] === k[0] && s[1] === k[1] && pd[0] === 0 && pd[1] === 0 && x.shape[2] % k[0] === 0 && x.shape[3] % k[1] === 0) {
      const [N, , H, W] = x.shape;
      return mean(reshape(x, [N, C, H / k[0], k[0], W / k[1], k[1]]), [3, 5]);
    }
    const w = full([C, 1, k[0], k[1]], 1 / (k[0] * k[1]), { dtype: x.dtype, backend: x.backend });
    return conv2dPrim(x, w, { stride: s, padding: pd, dilation: [1, 1], groups: C });
  });
}

/** Nearest-neighbour upsampling of NCHW by an integer factor. */
export function upsampleNearest(x: Tensor, factor: number | [number, number] = 2): Tensor {
  return tidy(() => {
    if (x.ndim !== 4) throw new TensorError('upsampleNearest', 'expected an NCHW input', [x.shape]);
    const [fh, fw] = pair(factor, 1);
    const [N, C, H, W] = x.shape;
    const y = broadcastTo(reshape(x, [N, C, H, 1, W, 1]), [N, C, H, fh, W, fw]);
    return reshape(y, [N, C, H * fh, W * fw]);
  });
}

export function softmax(x: Tensor, axis = -1): Tensor {
  return tidy(() => {
    const a = normAxis('softmax', axis, x.ndim, x.shape);
    const e = exp(sub(x, stopGradientValue(max(x, a, true))));
    return div(e, sum(e, a, true));
  });
}

export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return tidy(() => {
    const a = normAxis('logSoftmax', axis, x.ndim, x.shape);
    return sub(x, logsumexp(x, a, true));
  });
}

export function oneHot(labels: Tensor, n: number, dtype: DType = 'float32'): Tensor {
  return tidy(() => {
    const classes = arange(0, n, 1, { backend: labels.backend });
    return cast(equal(expandDims(labels, -1), classes), dtype);
  });
}

export { broadcastShapes };
