/** Gradient clipping by the global norm of a pytree (optax's clip_by_global_norm). */
import { Tensor, TensorError, add, maximum, mul, div, sqrt, sum, tidy } from '@scm/tensor';
import { leaves, mapLeaves } from './tree.js';

/** sqrt(Σ over every leaf of Σ x²), as a scalar tensor (no readback). */
export function globalNorm(tree: unknown): Tensor {
  const ls = leaves(tree);
  if (!ls.length) throw new TensorError('globalNorm', 'the tree has no tensors');
  return tidy(() => sqrt(ls.map((g) => sum(mul(g, g))).reduce((a, b) => add(a, b))));
}

/**
 * Scale the gradients by maxNorm / max(norm, maxNorm): unchanged (exactly) when their
 * global norm is at most maxNorm, else rescaled to norm maxNorm. Returns the new
 * gradients and the norm before clipping (the caller owns both; the inputs are untouched).
 */
export function clipByGlobalNorm<G>(grads: G, maxNorm: number): { grads: G; norm: Tensor } {
  if (!(Number.isFinite(maxNorm) && maxNorm > 0)) throw new TensorError('clipByGlobalNorm', `maxNorm must be a positive finite number, got ${maxNorm}`);
  const norm = globalNorm(grads);
  const scale = tidy(() => div(maxNorm, maximum(norm, maxNorm)));
  const [clipped] = mapLeaves('clipByGlobalNorm', ['grads'], [grads], 1, (g) => [mul(g, scale)]);
  scale.dispose();
  return { grads: clipped as G, norm };
}
