/** The public transforms, in JAX's vocabulary, built on jvp (forward) and the tape (reverse). */
import {
  Tensor, TensorError, fromArray, transformDepth, isFloat, onesLike, reshape, stack, transformScope, zerosLike, setStopGradient,
} from '@scm/tensor';
import { jvp } from './jvp.js';
import { pullback, traceVJP, vjp } from './vjp.js';
import { flatten } from './pytree.js';

export interface GradOptions {
  /** Which positional arguments to differentiate (default 0). A list returns a list of gradients. */
  argnums?: number | readonly number[];
  /** f returns [value, aux]; aux is returned alongside, undifferentiated. */
  hasAux?: boolean;
}

function valueAndGradImpl(f: (...args: any[]) => any, opts: GradOptions, args: unknown[], wantValue: boolean): any {
  const argnums = opts.argnums ?? 0;
  const nums = typeof argnums === 'number' ? [argnums] : [...argnums];
  for (const n of nums) if (!Number.isInteger(n) || n < 0 || n >= args.length) throw new TensorError('grad', `argnums ${n} is out of range for ${args.length} arguments`);
  const diffArgs = nums.map((n) => args[n]);
  const g = (...d: unknown[]) => {
    const full = [...args];
    nums.forEach((n, k) => (full[n] = d[k]));
    const out = f(...full);
    return opts.hasAux ? out : [out, null];
  };
  return transformScope(() =>
    traceVJP(g, diffArgs, (r) => {
      const [value, aux] = r.out as [Tensor, unknown];
      if (!(value instanceof Tensor) || value.size !== 1 || !isFloat(value.dtype)) {
        throw new TensorError('grad', `the function must return a float scalar (one element), got ${value instanceof Tensor ? `a ${value.dtype} tensor` : typeof value}`, value instanceof Tensor ? [value.shape] : []);
      }
      const seeds = r.outTracers.map((_, i) => (i === 0 ? onesLike(value) : (null as unknown as Tensor)));
      // Free residuals during the walk only when no outer transform may still need them.
      const grads = pullback(r, seeds, transformDepth() === 1).map((c, i) => c ?? zerosLike(r.inputs[i].primal));
      const tree = r.unflattenInputs(grads) as unknown[];
      const gradOut = typeof argnums === 'number' ? tree[0] : tree;
      const result = wantValue ? [value, gradOut] : gradOut;
      return opts.hasAux ? (wantValue ? [[value, aux], gradOut] : [gradOut, aux]) : result;
    }),
  );
}

/** grad(f)(...args): the gradient of a scalar function with respect to args[argnums]. */
export function grad(f: (...args: any[]) => any, opts: GradOptions = {}): (...args: any[]) => any {
  return (...args) => valueAndGradImpl(f, opts, args, false);
}

/** valueAndGrad(f)(...args) -> [f(...args), grad]; with hasAux -> [[value, aux], grad]. */
export function valueAndGrad(f: (...args: any[]) => any, opts: GradOptions = {}): (...args: any[]) => any {
  return (...args) => valueAndGradImpl(f, opts, args, true);
}

/**
 * linearize(f, ...primals) -> [f(...primals), fJvp], where fJvp(...tangents) is the JVP at
 * the primals. (It re-evaluates the primal alongside each tangent; the result is the same.)
 */
export function linearize<T = any>(f: (...args: any[]) => T, ...primals: unknown[]): [T, (...tangents: unknown[]) => T] {
  // Scoped like every transform: f's intermediates, and each call's primal recomputation, are freed.
  const out = transformScope(() => f(...primals));
  return [out, (...tangents: unknown[]) => transformScope(() => jvp(f, primals, tangents)[1])];
}

function basis(x: Tensor, i: number): Tensor {
  const v = new Float64Array(x.size);
  v[i] = 1;
  return fromArray(v, x.shape, { dtype: x.dtype, backend: x.backend });
}

function singleTensorArg(op: string, x: unknown): Tensor {
  if (!(x instanceof Tensor)) throw new TensorError(op, 'expects its argument to be a single tensor');
  if (!isFloat(x.dtype)) throw new TensorError(op, `expects a float tensor, got ${x.dtype}`, [x.shape]);
  return x;
}

/** Jacobian by forward mode (one JVP per input element): shape out.shape + x.shape. */
export function jacfwd(f: (x: Tensor) => Tensor): (x: Tensor) => Tensor {
  return (x) =>
    transformScope(() => {
      singleTensorArg('jacfwd', x);
      const cols = Array.from({ length: x.size }, (_, i) => jvp(f, [x], [basis(x, i)])[1]);
      const outShape = cols.length ? cols[0].shape : f(x).shape;
      const jac = cols.length ? stack(cols, -1) : zerosLike(f(x));
      return reshape(jac, [...outShape, ...x.shape]);
    });
}

/** Jacobian by reverse mode (one VJP per output element): shape out.shape + x.shape. */
export function jacrev(f: (x: Tensor) => Tensor): (x: Tensor) => Tensor {
  return (x) =>
    transformScope(() => {
      singleTensorArg('jacrev', x);
      const [out, vjpFn] = vjp(f, x);
      const rows = Array.from({ length: out.size }, (_, j) => vjpFn(basis(out, j))[0] as Tensor);
      return reshape(stack(rows, 0), [...out.shape, ...x.shape]);
    });
}

/** Hessian as the forward-mode Jacobian of the reverse-mode gradient. */
export function hessian(f: (x: Tensor) => Tensor): (x: Tensor) => Tensor {
  return jacfwd(grad(f));
}

/**
 * Hessian-vector product, forward-over-reverse: the JVP of grad f at primals along
 * tangents (all arguments differentiated; returns a list like the arguments).
 */
export function hvp(f: (...args: any[]) => Tensor, primals: readonly unknown[], tangents: readonly unknown[]): any[] {
  const argnums = primals.map((_, i) => i);
  // The scope frees the gradient that jvp computes alongside (its primal output).
  return transformScope(() => jvp(grad(f, { argnums }), primals, tangents)[1] as any[]);
}

/** The value of x with zero derivative under every active transform. */
export function stopGradient<T>(x: T): T {
  const f = flatten(x);
  return f.unflatten(f.leaves.map((t) => t.concrete('stopGradient')));
}

setStopGradient((x) => x.concrete('stopGradient'));
