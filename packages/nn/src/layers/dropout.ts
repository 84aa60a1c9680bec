/**
 * Dropout with keyed randomness: the mask is a pure function of (ctx.key, shape), so the
 * forward pass, its JVP and its gradient see the same mask whenever they get the same key
 * (the mask is a constant: it carries no tangent and no cotangent). Eval mode
 * (ctx.train falsy) is the identity.
 */
import { TensorError, mul, random, zerosLike, type Tensor, tidy } from '@scm/tensor';
import { Module, type Ctx, type Params, type SpecTree } from '../module.js';

export function dropout(x: Tensor, p: number, ctx?: Ctx): Tensor {
  return tidy(() => {
    if (!(p >= 0 && p <= 1)) throw new TensorError('dropout', `rate must be in [0, 1], got ${p}`, [x.shape]);
    if (!ctx?.train || p === 0) return x;
    if (!ctx.key) throw new TensorError('dropout', 'training mode needs ctx.key (dropout masks come from a random key)', [x.shape]);
    if (p === 1) return mul(x, zerosLike(x));
    // Keep each element with probability 1 - p and rescale it by 1 / (1 - p).
    const keep = random.bernoulli(ctx.key, 1 - p, x.shape, { dtype: x.dtype, backend: x.backend });
    return mul(x, mul(keep, 1 / (1 - p)));
  });
}

export class Dropout extends Module {
  constructor(readonly rate: number) {
    super();
    if (!(rate >= 0 && rate <= 1)) throw new TensorError('Dropout', `rate must be in [0, 1], got ${rate}`);
  }
  spec(): SpecTree {
    return {};
  }
  apply(_params: Params, x: Tensor, ctx?: Ctx): Tensor {
    return dropout(x, this.rate, ctx);
  }
}
