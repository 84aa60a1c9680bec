/**
 * The residual block of DDPM++ (EDM's UNetBlock), conditioned on a noise-level embedding:
 *
 *   h = conv0(resample(silu(GN0(x))))                 3×3, in -> out
 *   h = silu(cond(h, emb))                            AdaptiveNorm: 'double' (ADN), 'additive', 'scaleShift'
 *   h = conv1(dropout(h))                             3×3, out -> out, near-zero init
 *   y = (h + skip(resample(x))) · skipScale           skip: 1×1 conv when channels or resolution change
 *   y = attention(y)                                  optional SelfAttention2d (same skipScale)
 *
 * resample is 2× nearest upsampling ('up'), 2×2 average pooling ('down') or nothing.
 */
import { TensorError, add, fuse, type Tensor } from '@scm/tensor';
import { edm, type Initializer } from '../init.js';
import { Module, childCtx, getChild, type Ctx, type Params, type SpecTree } from '../module.js';
import { SelfAttention2d } from '../attention.js';
import { AdaptiveNorm, type ConditioningMode } from './adn.js';
import { Conv2d } from './conv.js';
import { dropout } from './dropout.js';
import { GroupNorm, defaultGroups } from './norm.js';
import { downsample2x, upsample2x } from './resample.js';

export interface ResBlockOptions {
  embChannels: number;
  resample?: 'none' | 'up' | 'down';
  attention?: boolean;
  numHeads?: number;
  dropout?: number;
  skipScale?: number;
  eps?: number;
  conditioning?: ConditioningMode;
  /** Initializer for conv0, skip and the embedding projection (default EDM xavier_uniform). */
  init?: Initializer;
  /** Initializer for conv1 and the attention output projection (default EDM xavier_uniform · 1e-5). */
  initZero?: Initializer;
  /** Initializer for the attention qkv projection (default EDM xavier_uniform · sqrt(0.2)). */
  initAttn?: Initializer;
}

export class ResBlock extends Module<[Tensor, Tensor]> {
  readonly resample: 'none' | 'up' | 'down';
  readonly dropout: number;
  readonly skipScale: number;
  readonly norm0: GroupNorm;
  readonly conv0: Conv2d;
  readonly cond: AdaptiveNorm;
  readonly conv1: Conv2d;
  readonly skip: Conv2d | null;
  readonly attn: SelfAttention2d | null;

  constructor(readonly inChannels: number, readonly outChannels: number, readonly opts: ResBlockOptions) {
    super();
    this.resample = opts.resample ?? 'none';
    if (!['none', 'up', 'down'].includes(this.resample)) throw new TensorError('ResBlock', `resample must be 'none', 'up' or 'down', got "${this.resample as string}"`);
    this.dropout = opts.dropout ?? 0;
    if (!(this.dropout >= 0 && this.dropout <= 1)) throw new TensorError('ResBlock', `dropout must be in [0, 1], got ${this.dropout}`);
    this.skipScale = opts.skipScale ?? 1;
    const eps = opts.eps ?? 1e-5;
    const init = opts.init ?? edm('xavier_uniform');
    const initZero = opts.initZero ?? edm('xavier_uniform', 1e-5);
    this.norm0 = new GroupNorm(defaultGroups(inChannels), inChannels, { eps });
    this.conv0 = new Conv2d(inChannels, outChannels, 3, { padding: 1, init });
    this.cond = new AdaptiveNorm(outChannels, opts.embChannels, { mode: opts.conditioning ?? 'double', eps, init });
    this.conv1 = new Conv2d(outChannels, outChannels, 3, { padding: 1, init: initZero });
    this.skip = inChannels !== outChannels || this.resample !== 'none' ? new Conv2d(inChannels, outChannels, 1, { init }) : null;
    this.attn = opts.attention
      ? new SelfAttention2d(outChannels, { numHeads: opts.numHeads ?? 1, eps, skipScale: this.skipScale, qkvInit: opts.initAttn ?? edm('xavier_uniform', Math.sqrt(0.2)), projInit: initZero })
      : null;
  }

  spec(): SpecTree {
    const s: SpecTree = { norm0: this.norm0.spec(), conv0: this.conv0.spec(), cond: this.cond.spec(), conv1: this.conv1.spec() };
    if (this.skip) s.skip = this.skip.spec();
    if (this.attn) s.attn = this.attn.spec();
    return s;
  }

  private resampled(x: Tensor): Tensor {
    return this.resample === 'up' ? upsample2x(x) : this.resample === 'down' ? downsample2x(x) : x;
  }

  /** x: [N, in, H, W], emb: [N, embChannels] -> [N, out, H', W'] (H' = 2H up, H/2 down). */
  apply(params: Params, x: Tensor, emb: Tensor, ctx?: Ctx): Tensor {
    if (x.ndim !== 4 || x.shape[1] !== this.inChannels) throw new TensorError('ResBlock', `expected input [N, ${this.inChannels}, H, W]`, [x.shape]);
    const child = (name: string) => getChild(params, name, 'ResBlock');
    let h = this.conv0.apply(child('conv0'), this.resampled(this.norm0.applyWith(child('norm0'), x, { silu: true })));
    h = this.cond.applyWith(child('cond'), h, emb, true);
    h = this.conv1.apply(child('conv1'), dropout(h, this.dropout, childCtx(ctx, 'dropout')));
    const skip = this.skip ? this.skip.apply(child('skip'), this.resampled(x)) : x;
    // (h + skip) · skipScale in one kernel.
    const scale = this.skipScale;
    h = scale === 1 ? add(h, skip) : fuse((a, b) => a.add(b).mul(scale), [h, skip]);
    return this.attn ? this.attn.apply(child('attn'), h) : h;
  }
}
