/**
 * The adaptive weighting head w_φ(t) (paper §4.2, App. D; "following
 * EDM2"): a positional embedding of t followed by one linear layer to a scalar, as in the
 * EDM-codebase re-implementation (PositionalEmbedding(128) + Linear(128, 1)); the embedding is
 * EDM's (freqs_k = (1/10000)^(k/(N/2 − 1)), [cos, sin]) fed with raw t. The loss
 * e^{w_φ(t)}/D·‖·‖² − w_φ(t) lets w_φ learn the per-t normalizer of the loss.
 */
import { Tensor, reshape, matmul, add, zeros, full } from '@scm/tensor';
import { positionalEmbedding } from '@scm/nn';

export interface WeightingParams {
  weight: Tensor; // [N, 1]
  bias: Tensor; // [1]
}

export interface WeightingHeadOptions {
  channels?: number;
  /** Initial value of w (the bias); 0 gives e^w = 1 at the start. */
  init?: number;
}

/** w_φ(t) = Linear(posemb(t, N) → 1). */
export class WeightingHead {
  readonly channels: number;
  constructor(readonly opts: WeightingHeadOptions = {}) {
    this.channels = opts.channels ?? 128;
  }

  /** Zero weights: w_φ starts constant (= init) and learns its t-dependence from the loss. */
  init(dtype: 'float32' | 'float64' = 'float32'): WeightingParams {
    return { weight: zeros([this.channels, 1], { dtype }), bias: full([1], this.opts.init ?? 0, { dtype }) };
  }

  /** w [B] for times t [B]. */
  apply(params: WeightingParams, t: Tensor): Tensor {
    const emb = positionalEmbedding(t, this.channels);
    return reshape(add(matmul(emb, params.weight), params.bias), [t.shape[0]]);
  }
}
