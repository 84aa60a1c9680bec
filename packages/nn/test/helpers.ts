/** Shared by the layer and UNet tests: dtypes/backends, random draws, comparisons. */
import { expect } from 'vitest';
import { flatten } from '@scm/autodiff';
import { random, type BackendName } from '@scm/tensor';
import type { Module, Params } from '@scm/nn';

export type Opts = { dtype: 'float32' | 'float64'; backend: BackendName };
export const f64: Opts = { dtype: 'float64', backend: 'reference' };
export const f32: Opts = { dtype: 'float32', backend: 'webasm' };
/** checkGrads tolerances for float64 on the reference backend. */
export const tight = { eps: 1e-5, atol: 1e-8, rtol: 1e-6 };

export const randn = (seed: number, shape: number[], opts: Opts = f64, std = 1) => random.normal(random.key(seed), shape, { ...opts, std });

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Module parameters replaced by N(0, 0.5²) draws, so every path carries signal. */
export function randomParams(m: Module<any>, seed: number, opts: Opts = f64): Params {
  const flat = flatten(m.init(random.key(seed), opts));
  return flat.unflatten(flat.leaves.map((t, i) => {
    const r = randn(seed * 100 + i, [...t.shape], opts, 0.5);
    t.dispose();
    return r;
  }));
}
