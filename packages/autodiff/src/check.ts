/**
 * checkGrads with JAX's semantics: forward mode against central finite differences
 * along a random tangent; reverse mode through the inner-product identity
 * <v, J u> (finite differences) = <J^T v, u> (VJP); `order` > 1 recurses on the
 * JVP and VJP functions themselves. Run it in float64 on the reference backend for
 * tight tolerances.
 */
import { Tensor, TensorError, add, mul, random, sub, sum, tidy, zerosLike } from '@scm/tensor';
import { jvp } from './jvp.js';
import { vjp } from './vjp.js';
import { flatten } from './pytree.js';

export interface CheckGradsOptions {
  order?: number;
  modes?: readonly ('fwd' | 'rev')[];
  eps?: number;
  atol?: number;
  rtol?: number;
  seed?: number;
}

type Fn = (...args: Tensor[]) => unknown;

let counter = 0;
function randomLike(xs: Tensor[], seed: number): Tensor[] {
  const k = random.key(seed);
  return xs.map((x, i) => random.normal(random.foldIn(k, i + 1000 * counter++), x.shape, { dtype: x.dtype, backend: x.backend }));
}

function leaves(v: unknown): Tensor[] {
  return flatten(v).leaves;
}

async function values(ts: Tensor[]): Promise<number[][]> {
  return Promise.all(ts.map(async (t) => Array.from(await t.data())));
}

function assertClose(what: string, got: number[][], want: number[][], atol: number, rtol: number): void {
  let worst = 0, at = '';
  got.forEach((g, k) => g.forEach((v, i) => {
    const w = want[k][i];
    const err = Math.abs(v - w) - (atol + rtol * Math.abs(w));
    if (!(err <= worst) || Number.isNaN(v) !== Number.isNaN(w)) {
      worst = Number.isNaN(err) ? Infinity : err;
      at = `output ${k}, element ${i}: got ${v}, expected ${w} (atol ${atol}, rtol ${rtol})`;
    }
  }));
  if (worst > 0) throw new TensorError('checkGrads', `${what} mismatch at ${at}`);
}

function inner(a: Tensor[], b: Tensor[]): Tensor {
  return a.map((x, i) => sum(mul(x, b[i]))).reduce((s, t) => add(s, t));
}

/** Central difference of f at args along u: (f(x + eps u) - f(x - eps u)) / 2 eps. */
function numericalJvp(f: Fn, args: Tensor[], u: Tensor[], eps: number): Tensor[] {
  const plus = leaves(f(...args.map((x, i) => add(x, mul(u[i], eps)))));
  const minus = leaves(f(...args.map((x, i) => sub(x, mul(u[i], eps)))));
  return plus.map((p, i) => mul(sub(p, minus[i]), 0.5 / eps));
}

export async function checkJvp(f: Fn, args: Tensor[], opts: CheckGradsOptions = {}): Promise<void> {
  const { eps = 1e-4, atol = 1e-5, rtol = 1e-5, seed = 0 } = opts;
  const [got, want] = tidy(() => {
    const u = randomLike(args, seed);
    const [, t] = jvp(f, args, u);
    return [leaves(t), numericalJvp(f, args, u, eps)];
  });
  try {
    assertClose('JVP vs finite differences', await values(got), await values(want), atol, rtol);
  } finally {
    for (const t of [...got, ...want]) t.dispose();
  }
}

export async function checkVjp(f: Fn, args: Tensor[], opts: CheckGradsOptions = {}): Promise<void> {
  const { eps = 1e-4, atol = 1e-5, rtol = 1e-5, seed = 0 } = opts;
  const [lhs, rhs] = tidy(() => {
    const u = randomLike(args, seed);
    const [out, vjpFn] = vjp(f, ...args);
    const outs = leaves(out);
    const v = randomLike(outs, seed + 1);
    const ct = vjpFn(flatten(out).unflatten(v)) as Tensor[];
    // <v, J u> by finite differences against <J^T v, u> by the VJP.
    return [inner(v, numericalJvp(f, args, u, eps)), inner(ct.map((c, i) => c ?? zerosLike(args[i])), u)];
  });
  try {
    const [a, b] = [Array.from(await lhs.data()), Array.from(await rhs.data())];
    assertClose('VJP inner product <J^T v, u> vs <v, J u> by finite differences', [b], [a], atol, rtol);
  } finally {
    lhs.dispose();
    rhs.dispose();
  }
}

/** JAX's check_grads: modes ('fwd', 'rev') up to `order`. */
export async function checkGrads(f: Fn, args: Tensor[], opts: CheckGradsOptions = {}): Promise<void> {
  const { order = 1, modes = ['fwd', 'rev'], seed = 0 } = opts;
  if (!Number.isInteger(order) || order < 1) throw new TensorError('checkGrads', `order must be a positive integer, got ${order}`);
  for (const mode of modes) {
    if (mode === 'fwd') {
      await checkJvp(f, args, opts);
      if (order > 1) {
        const u = tidy(() => randomLike(args, seed + 7));
        try {
          await checkGrads((...a: Tensor[]) => jvp(f, a, u)[1], args, { ...opts, order: order - 1, modes: ['fwd'], seed: seed + 11 });
        } finally {
          u.forEach((t) => t.dispose());
        }
      }
    } else {
      await checkVjp(f, args, opts);
      if (order > 1) {
        const v = tidy(() => randomLike(leaves(f(...args)), seed + 13));
        try {
          await checkGrads((...a: Tensor[]) => {
            const [out, vjpFn] = vjp(f, ...a);
            return vjpFn(flatten(out).unflatten(v));
          }, args, { ...opts, order: order - 1, modes: ['rev'], seed: seed + 17 });
        } finally {
          v.forEach((t) => t.dispose());
        }
      }
    }
  }
}
