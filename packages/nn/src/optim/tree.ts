/**
 * Leafwise helpers for optimizer code: walk several pytrees of the same structure in
 * step, computing each leaf's new tensors inside its own `tidy` so only the results
 * survive (scalar constants and temporaries are freed leaf by leaf).
 */
import { Tensor, TensorError, dispose, full, shapesEqual, tidy } from '@scm/tensor';
import { flatten } from '@scm/autodiff';

/** The tensor leaves of a pytree, in flatten order. */
export function leaves(tree: unknown): Tensor[] {
  return flatten(tree).leaves;
}

/**
 * Map `fn` over the i-th leaves of `trees` together; `fn` returns `nOut` tensors per leaf
 * and the result is `nOut` trees shaped like `trees[0]`. All trees must have the same
 * number of leaves with matching shapes.
 */
export function mapLeaves(op: string, names: readonly string[], trees: readonly unknown[], nOut: number, fn: (...xs: Tensor[]) => Tensor[]): any[] {
  const flats = trees.map(flatten);
  const n = flats[0].leaves.length;
  flats.forEach((f, k) => {
    if (f.leaves.length !== n) throw new TensorError(op, `${names[k]} has ${f.leaves.length} tensors but ${names[0]} has ${n} (the trees must have one structure)`);
    f.leaves.forEach((t, i) => {
      const ref = flats[0].leaves[i];
      if (!shapesEqual(t.shape, ref.shape)) throw new TensorError(op, `leaf ${i} of ${names[k]} has shape [${t.shape}] but in ${names[0]} it has [${ref.shape}]`, [ref.shape, t.shape]);
    });
  });
  const outs: Tensor[][] = Array.from({ length: nOut }, () => []);
  for (let i = 0; i < n; i++) {
    const r = tidy(() => fn(...flats.map((f) => f.leaves[i])));
    r.forEach((t, k) => outs[k].push(t));
  }
  return outs.map((o) => flats[0].unflatten(o));
}

/** Dispose the tensors of `old` that are not also in `kept` (a value may be carried over unchanged). */
export function disposeReplaced(old: unknown, kept: unknown): void {
  const keep = new Set(leaves(kept));
  dispose(leaves(old).filter((t) => !keep.has(t)));
}

/** A value that changes between steps, as a 0-d tensor beside `p`: a fused kernel's input, not a constant, so the kernel compiles once. */
export function scalar(p: Tensor, value: number): Tensor {
  return full([], value, { dtype: p.dtype, backend: p.backend });
}
