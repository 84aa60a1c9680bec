import type { Aval } from './backend.js';
import type { HostPlan } from './backends/plans.js';
import type { TypedArray } from './dtype.js';
import { TensorError } from './errors.js';
import { sizeOf } from './shape.js';
import { Storage, Tensor, type Trace } from './tensor.js';
import { arrayFor } from './dtype.js';

/**
 * A primitive is declared once, in one file: its shape rule, its float64 reference
 * implementation, its GPU.js kernel source, its JVP rule and its VJP rule. Rules are
 * written with public tensor ops, so they are themselves differentiable.
 */
export interface Primitive<P = Record<string, never>> {
  readonly name: string;
  /** Validate the inputs and return the output's shape and dtype. */
  abstract(inputs: readonly Aval[], params: P): Aval;
  /** Plain-TypeScript implementation in float64: the test oracle. */
  reference(inputs: readonly TypedArray[], avals: readonly Aval[], params: P, out: Aval): ArrayLike<number>;
  /** GPU.js kernel source text: `function (x0, x1, ...) { ... }` computing output cell this.thread.x. */
  kernel(avals: readonly Aval[], params: P, out: Aval): string;
  /**
   * Optional fast path on the synchronous GPU.js backends (cpu, webasm): GPU.js kernels
   * over packed layouts (see backends/plans.ts). Null or absent: `kernel` runs.
   */
  plan?(avals: readonly Aval[], params: P, out: Aval): HostPlan | null;
  /**
   * Optional, for sums (webgpu): a kernel computes each output cell on one thread, so a sum
   * with few cells and many terms (a loss, a bias gradient) runs on a handful of threads of
   * a GPU. `extent` is the length of the kernel's outermost summed loop, `terms` the terms
   * per cell; `kernel(parts)` is the same sum cut into `parts` chunks of that loop, one
   * thread per (part, cell), laid out [parts, ...out]. The backend then sums the parts.
   */
  split?(avals: readonly Aval[], params: P, out: Aval): ReductionSplit | null;
  /**
   * Forward mode: the output tangent, given the primals, their tangents (null = symbolic
   * zero) and the primal output. Null means the output tangent is zero.
   */
  jvp(primals: Tensor[], tangents: (Tensor | null)[], params: P, out: Tensor): Tensor | null;
  /**
   * Reverse mode: cotangents of the inputs for the output cotangent. `needs[i]` says
   * whether input i needs one; return null where it does not (or where it is zero).
   */
  vjp(cotangent: Tensor, primals: Tensor[], params: P, out: Tensor, needs: boolean[]): (Tensor | null)[];
  /** The output shares its input's buffer (reshape): no kernel runs. */
  readonly aliases?: boolean;
}

export interface ReductionSplit {
  readonly extent: number;
  readonly terms: number;
  kernel(parts: number): string;
}

// The trace at the highest level among the arguments wins (autodidax's dynamic dispatch).
function topTrace(args: readonly Tensor[]): Trace | null {
  let top: Trace | null = null;
  for (const a of args) if (a.trace && (!top || a.trace.level > top.level)) top = a.trace;
  return top;
}

/** Apply a primitive: to a trace if any argument is traced, else evaluate it on the backend. */
export function bind<P>(prim: Primitive<P>, args: Tensor[], params: P): Tensor {
  const trace = topTrace(args);
  if (trace) return trace.process(prim, args.map((a) => trace.lift(a)), params);
  return evaluate(prim, args, params);
}

function evaluate<P>(prim: Primitive<P>, args: Tensor[], params: P): Tensor {
  const concrete = args.map((a) => a.concrete(prim.name));
  const avals = concrete.map((a) => ({ shape: a.shape, dtype: a.dtype }));
  const out = prim.abstract(avals, params);
  const backend = concrete.length ? concrete[0].storage.backend : null;
  for (const a of concrete) {
    if (a.storage.backend !== backend) {
      throw new TensorError(prim.name, `all inputs must live on one backend (got ${concrete.map((c) => c.storage.backend.name).join(', ')})`, concrete.map((c) => c.shape));
    }
  }
  if (!backend) throw new TensorError(prim.name, 'a primitive needs at least one input');
  if (out.dtype === 'float64' && !backend.supportsFloat64) {
    throw new TensorError(prim.name, `float64 is supported on the reference backend only (this is ${backend.name})`);
  }
  if (prim.aliases) return new Tensor(out.shape, out.dtype, concrete[0].storage.retain());
  const buffer = sizeOf(out.shape) === 0
    ? backend.fromHost(arrayFor(out.dtype, 0), out)
    : backend.run(prim, concrete.map((c) => c.storage.buffer), avals, params, out);
  return new Tensor(out.shape, out.dtype, new Storage(backend, buffer));
}
