/** Finite differences, inner products and readback: the numerical side of derivative tests. */
import { add, isFloat, mul, ownedByCurrentScope, sub, sum, tidy, type DType, type Tensor } from '@scm/tensor';
import { flatten } from '../pytree.js';

export interface NumericalJvpOptions {
  /** Step h (default 1e-3 with the 4-point stencil, 1e-5 with the 2-point one). */
  eps?: number;
  /** 2: (f(x+hu) − f(x−hu)) / 2h, error O(h²). 4 (default): the fourth-order stencil. */
  stencil?: 2 | 4;
}

/**
 * The directional derivative of f at `primals` along `tangents` (null: that argument is held
 * fixed) by central differences, one tensor per output leaf of f. The 4-point stencil
 *   (8[f(x + hu) − f(x − hu)] − [f(x + 2hu) − f(x − 2hu)]) / 12h
 * has truncation error h⁴·|u|⁵·|f⁽⁵⁾|/30 and rounding error about ε·|f|/h (ε the unit roundoff):
 * in float64 (ε ≈ 1.1e-16) with h = 1e-3 and directions |u| ≤ 1 that is about 1e-10 relative or
 * better for functions of moderate size, so derivative rules can be checked to 1e-6 with a wide
 * margin.
 * Call it inside `tidy`: it allocates the perturbed inputs.
 */
export function numericalJvp(f: (...args: Tensor[]) => unknown, primals: readonly Tensor[], tangents: readonly (Tensor | null)[], { stencil = 4, eps }: NumericalJvpOptions = {}): Tensor[] {
  const h = eps ?? (stencil === 4 ? 1e-3 : 1e-5);
  const at = (s: number) => flatten(f(...primals.map((x, i) => (tangents[i] ? add(x, mul(tangents[i]!, s * h)) : x)))).leaves;
  const [p1, m1] = [at(1), at(-1)];
  if (stencil === 2) return p1.map((p, k) => mul(sub(p, m1[k]), 0.5 / h));
  const [p2, m2] = [at(2), at(-2)];
  return p1.map((p, k) => mul(sub(mul(sub(p, m1[k]), 8), sub(p2[k], m2[k])), 1 / (12 * h)));
}

/** Σ_k ⟨a_k, b_k⟩ over lists of same-shaped float tensors: a scalar tensor. */
export function innerProduct(a: readonly Tensor[], b: readonly Tensor[]): Tensor {
  if (a.length !== b.length) throw new Error(`innerProduct: ${a.length} tensors against ${b.length}`);
  let total: Tensor | null = null;
  a.forEach((x, k) => {
    if (!isFloat(x.dtype)) return;
    const term = sum(mul(x, b[k]));
    total = total ? add(total, term) : term;
  });
  if (!total) throw new Error('innerProduct: no float tensors');
  return total;
}

export interface HostValue {
  shape: number[];
  dtype: DType;
  values: number[];
}

/**
 * Run fn in a tidy scope, read back every tensor leaf of its result (in flatten order, so
 * nested arrays and objects work), then dispose the ones fn created. Works on every backend,
 * webgpu included (readback is asynchronous there).
 */
export async function readback(fn: () => unknown): Promise<HostValue[]> {
  const leaves = tidy(() => flatten(fn()).leaves.map((t) => ({ t, owned: ownedByCurrentScope(t) })));
  try {
    return await Promise.all(leaves.map(async ({ t }) => ({ shape: [...t.shape], dtype: t.dtype, values: Array.from(await t.data()) })));
  } finally {
    for (const { t, owned } of leaves) if (owned) t.dispose();
  }
}
