/**
 * Conditioning a feature map on an embedding (the noise level's), three ways:
 *  - 'double' (adaptive double normalization, sCM paper §4.1):
 *      y = GN(x) ⊙ pnorm(s) + pnorm(b),  [s, b] = Linear(emb → 2C),
 *    where pnorm is pixel norm over channels: the scale and shift always have unit RMS,
 *    however large the embedding's derivative grows. This is what keeps the network's
 *    dF/dt bounded in continuous-time CM training.
 *  - 'additive' (DDPM++ / EDM SongUNet): y = GN(x + Linear(emb → C)).
 *  - 'scaleShift' (AdaGN, EDM's adaptive_scale): y = GN(x) ⊙ (1 + s) + b. The paper
 *    reports it diverges in CM training; kept for ablations.
 */
import { TensorError, add, reshape, split, type Tensor } from '@scm/tensor';
import type { Initializer } from '../init.js';
import { Module, getChild, type Ctx, type Params, type SpecTree } from '../module.js';
import { Linear } from './linear.js';
import { GroupNorm, defaultGroups, pixelNorm } from './norm.js';

export type ConditioningMode = 'double' | 'additive' | 'scaleShift';

export interface AdaptiveNormOptions {
  mode?: ConditioningMode;
  groups?: number;
  eps?: number;
  /** Initializer of the embedding projection's weight. */
  init?: Initializer;
  /** Pixel-norm epsilon (default 1e-8). */
  pnormEps?: number;
}

export class AdaptiveNorm extends Module<[Tensor, Tensor]> {
  readonly mode: ConditioningMode;
  readonly norm: GroupNorm;
  readonly affine: Linear;
  readonly pnormEps: number;

  constructor(readonly channels: number, readonly embChannels: number, opts: AdaptiveNormOptions = {}) {
    super();
    this.mode = opts.mode ?? 'double';
    if (!['double', 'additive', 'scaleShift'].includes(this.mode)) {
      throw new TensorError('AdaptiveNorm', `mode must be 'double', 'additive' or 'scaleShift', got "${this.mode as string}"`);
    }
    this.norm = new GroupNorm(opts.groups ?? defaultGroups(channels), channels, { eps: opts.eps ?? 1e-5 });
    this.affine = new Linear(embChannels, this.mode === 'additive' ? channels : 2 * channels, { init: opts.init });
    this.pnormEps = opts.pnormEps ?? 1e-8;
  }

  spec(): SpecTree {
    return { affine: this.affine.spec(), norm: this.norm.spec() };
  }

  /** x: [N, C, H, W], emb: [N, embChannels] -> [N, C, H, W]. */
  apply(params: Params, x: Tensor, emb: Tensor, _ctx?: Ctx): Tensor {
    return this.applyWith(params, x, emb, false);
  }

  /** apply, with SiLU after it when `silu` (as groupNorm's epilogue). */
  applyWith(params: Params, x: Tensor, emb: Tensor, silu: boolean): Tensor {
    const [N, C] = x.shape;
    if (x.ndim !== 4 || C !== this.channels) throw new TensorError('AdaptiveNorm', `expected input [N, ${this.channels}, H, W]`, [x.shape, emb.shape]);
    if (emb.ndim !== 2 || emb.shape[0] !== N || emb.shape[1] !== this.embChannels) {
      throw new TensorError('AdaptiveNorm', `expected an embedding [${N}, ${this.embChannels}] for input [${x.shape}]`, [x.shape, emb.shape]);
    }
    const a = this.affine.apply(getChild(params, 'affine', 'AdaptiveNorm'), emb);
    const normP = getChild(params, 'norm', 'AdaptiveNorm');
    if (this.mode === 'additive') return this.norm.applyWith(normP, add(x, reshape(a, [N, C, 1, 1])), { silu });
    const [scale, shift] = split(a, 2, 1);
    if (this.mode === 'scaleShift') return this.norm.applyWith(normP, x, { scale: add(scale, 1), shift, silu });
    return this.norm.applyWith(normP, x, { scale: pixelNorm(scale, 1, this.pnormEps), shift: pixelNorm(shift, 1, this.pnormEps), silu });
  }
}
