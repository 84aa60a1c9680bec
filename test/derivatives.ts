/**
 * Building blocks of the derivative suites: an op-database case as a function of its differentiable
 * inputs, random directions (tangents, cotangents) from a seed, and host-side inner products.
 * Everything here is synchronous (reference, cpu and webasm read back synchronously), so a
 * whole check runs inside one `tidy` and returns plain numbers.
 */
import fc from 'fast-check';
import * as T from '@scm/tensor';
import type { Tensor } from '@scm/tensor';
import * as AD from '@scm/autodiff';
import { assertClose, numericalJvp, toTensor, type ToTensorOptions } from '@scm/autodiff/testing';
import { runOp, type OpCase, type OpInfo } from './opdb.js';

export const FLOAT64: ToTensorOptions = { dtype: 'float64', backend: 'reference' };

export interface Prepared {
  /** All inputs of the case, as tensors. */
  args: Tensor[];
  /** Positions of the differentiable inputs among them. */
  diff: number[];
  /** The differentiable inputs (the primals of the checks). */
  primals: Tensor[];
  /** The op as a function of the differentiable inputs only, returning its float outputs. */
  f: (...primals: Tensor[]) => Tensor[];
}

/** Call inside tidy: the tensors it makes are the caller's. */
export function prepare(op: OpInfo, c: OpCase, opts: ToTensorOptions = FLOAT64): Prepared {
  const args = c.inputs.map((h) => toTensor(h, opts));
  const diff = op.diff.filter((i) => i < args.length && T.isFloat(args[i].dtype));
  const f = (...primals: Tensor[]) => {
    const full = [...args];
    diff.forEach((i, k) => (full[i] = primals[k]));
    return runOp(op, full, c.params).filter((o) => T.isFloat(o.dtype));
  };
  return { args, diff, primals: diff.map((i) => args[i]), f };
}

/** Entries with something to differentiate, on a backend. */
export function differentiable(db: readonly OpInfo[], backend: T.BackendName = 'reference'): OpInfo[] {
  return db.filter((e) => e.diff.length > 0 && (!e.backends || e.backends.includes(backend)));
}

/** Seeds of random directions, shrinking towards 0. */
export const seedArb = fc.integer({ min: 0, max: 2 ** 30 });

/** Directions shaped like `like`, uniform in [-1, 1] (bounded, so finite differences stay in the domain). */
export function directions(like: readonly Tensor[], seed: number): Tensor[] {
  const key = T.random.key(seed);
  return like.map((t, i) => T.random.uniform(T.random.foldIn(key, i), t.shape, { dtype: t.dtype as 'float32', backend: t.backend, low: -1, high: 1 }));
}

export const read = (ts: readonly Tensor[]): number[][] => ts.map((t) => Array.from(t.dataSync()));

/** Σ_k Σ_i a_k[i]·b_k[i] and Σ |a_k[i]·b_k[i]| (the scale a rounding error is measured against). */
export function hostDot(a: number[][], b: number[][]): { value: number; scale: number } {
  let value = 0, scale = 0;
  a.forEach((ak, k) => ak.forEach((v, i) => {
    value += v * b[k][i];
    scale += Math.abs(v * b[k][i]);
  }));
  return { value, scale };
}

export const flat = (xs: number[][]) => xs.flat();

/** |a − b| ≤ tol·scale: for identities that hold up to rounding. */
export function expectScaledClose(what: string, a: number, b: number, scale: number, tol: number): void {
  if (!(Math.abs(a - b) <= tol * scale) && !(a === b)) {
    throw new Error(`${what}: ${a} vs ${b}, |difference| ${Math.abs(a - b)} > ${tol} × scale ${scale}`);
  }
}

/** Elementwise a ≈ b relative to an elementwise scale: |a_i − b_i| ≤ tol·(scale_i + floor). */
export function expectCloseToScale(what: string, a: number[], b: number[], scale: number[], tol: number, floor = 1e-300): void {
  for (let i = 0; i < a.length; i++) {
    if (!(Math.abs(a[i] - b[i]) <= tol * (scale[i] + floor))) {
      throw new Error(`${what}: element ${i}: ${a[i]} vs ${b[i]}, |difference| ${Math.abs(a[i] - b[i])} > ${tol} × ${scale[i]}`);
    }
  }
}

// ------------------------- first-order checks of one case -------------------------
// Each runs inside tidy and throws on failure. Tolerances are explained in
// packages/autodiff/test/opdb-derivatives.test.ts.

const FD = { atol: 1e-7, rtol: 1e-6 };
const IDENTITY = 1e-11;

export const fdTolerance = (op: OpInfo) => ({ atol: Math.max(FD.atol, op.derivative?.atol ?? 0), rtol: Math.max(FD.rtol, op.derivative?.rtol ?? 0) });
const fdOptions = (op: OpInfo) => ({ eps: op.fdStep?.h ?? 1e-3 });
/** An op that rounds to float32 on the way (cast) meets its identities only to float32 rounding. */
export const identityTolerance = (op: OpInfo) => Math.max(IDENTITY, op.derivative?.rtol ?? 0);

/** JVP: exact primal, tangents shaped like the outputs, and equal to finite differences. */
export function checkJvpAgainstFd(op: OpInfo, c: OpCase, seed: number): void {
  T.tidy(() => {
    const { primals, f } = prepare(op, c);
    const u = directions(primals, seed);
    const [outs, tangents] = AD.jvp(f, primals, u) as [Tensor[], Tensor[]];
    const direct = read(f(...primals));
    read(outs).forEach((o, k) => {
      if (o.some((v, i) => !Object.is(v, direct[k][i]))) throw new Error(`primal of jvp differs from f(x) in output ${k}`);
    });
    tangents.forEach((t, k) => {
      if (t.dtype !== outs[k].dtype || t.shape.join() !== outs[k].shape.join()) throw new Error(`tangent ${k}: ${t.dtype}[${t.shape}] for an output ${outs[k].dtype}[${outs[k].shape}]`);
    });
    const fd = numericalJvp(f, primals, u, fdOptions(op));
    assertClose(flat(read(tangents)), flat(read(fd)), { ...fdTolerance(op), what: 'JVP vs finite differences' });
  });
}

/** VJP: cotangents shaped like the inputs, and ⟨Jᵀv, u⟩ = ⟨v, FD(u)⟩. */
export function checkVjpAgainstFd(op: OpInfo, c: OpCase, seed: number): void {
  T.tidy(() => {
    const { primals, f } = prepare(op, c);
    const [outs, vjpFn] = AD.vjp(f, ...primals);
    const v = directions(outs, seed + 1);
    const cts = vjpFn(v) as Tensor[];
    cts.forEach((ct, k) => {
      if (ct.dtype !== primals[k].dtype || ct.shape.join() !== primals[k].shape.join()) throw new Error(`cotangent ${k}: ${ct.dtype}[${ct.shape}] for an input ${primals[k].dtype}[${primals[k].shape}]`);
    });
    const u = directions(primals, seed);
    const lhs = hostDot(read(cts), read(u));
    const rhs = hostDot(read(v), read(numericalJvp(f, primals, u, fdOptions(op))));
    const { atol, rtol } = fdTolerance(op);
    expectScaledClose('<Jᵀv, u> vs <v, FD(u)>', lhs.value, rhs.value, 1, atol + rtol * (lhs.scale + rhs.scale));
  });
}

/** ⟨v, J·u⟩ = ⟨Jᵀ·v, u⟩ between our jvp and vjp, without finite differences. */
export function checkTransposeIdentity(op: OpInfo, c: OpCase, seed: number): void {
  T.tidy(() => {
    const { primals, f } = prepare(op, c);
    const u = directions(primals, seed);
    const [outs, ju] = AD.jvp(f, primals, u) as [Tensor[], Tensor[]];
    const v = directions(outs, seed + 1);
    const jtv = AD.vjp(f, ...primals)[1](v) as Tensor[];
    const left = hostDot(read(v), read(ju));
    const right = hostDot(read(jtv), read(u));
    expectScaledClose('<v, J·u> vs <Jᵀ·v, u>', left.value, right.value, left.scale + right.scale, identityTolerance(op));
  });
}

/** J(a·u1 + b·u2) = a·J·u1 + b·J·u2, the same for Jᵀ, and zero or absent tangents give zero. */
export function checkLinearity(op: OpInfo, c: OpCase, seed: number, a: number, b: number): void {
  T.tidy(() => {
    const { primals, f } = prepare(op, c);
    const tol = identityTolerance(op);
    const [u1, u2] = [directions(primals, seed), directions(primals, seed + 2)];
    const mixed = u1.map((t, k) => T.add(T.mul(t, a), T.mul(u2[k], b)));
    const jvpOf = (u: (Tensor | null)[]) => flat(read(AD.jvp(f, primals, u)[1] as Tensor[]));
    const [j1, j2, jm] = [jvpOf(u1), jvpOf(u2), jvpOf(mixed)];
    expectCloseToScale('JVP linearity', jm, j1.map((x, i) => a * x + b * j2[i]), j1.map((x, i) => Math.abs(a * x) + Math.abs(b * j2[i])), tol);

    const [outs, vjpFn] = AD.vjp(f, ...primals);
    const [v1, v2] = [directions(outs, seed + 3), directions(outs, seed + 4)];
    const vjpOf = (v: Tensor[]) => flat(read(vjpFn(v) as Tensor[]));
    const [c1, c2, cm] = [vjpOf(v1), vjpOf(v2), vjpOf(v1.map((t, k) => T.add(T.mul(t, a), T.mul(v2[k], b))))];
    expectCloseToScale('VJP linearity', cm, c1.map((x, i) => a * x + b * c2[i]), c1.map((x, i) => Math.abs(a * x) + Math.abs(b * c2[i])), tol);

    if (!jvpOf(primals.map((p) => T.zerosLike(p))).every((x) => x === 0)) throw new Error('a zero tangent gave a nonzero output tangent');
    if (!jvpOf(primals.map(() => null)).every((x) => x === 0)) throw new Error('absent (null) tangents gave a nonzero output tangent');
  });
}
