/**
 * Resolution changes by a factor of 2 for NCHW feature maps.
 *  - Downsample: 2×2 average pooling (EDM/DDPM++'s [1,1] FIR filter) or a learned
 *    strided 3×3 convolution.
 *  - Upsample: nearest-neighbour ×2 (EDM/DDPM++'s transposed [1,1] filter), optionally
 *    followed by a 3×3 convolution.
 */
import { TensorError, avgPool2d, upsampleNearest, type Tensor, tidy } from '@scm/tensor';
import type { Initializer } from '../init.js';
import { Module, getChild, type Ctx, type Params, type SpecTree } from '../module.js';
import { Conv2d } from './conv.js';

/** 2×2 average pooling (H and W must be even). */
export function downsample2x(x: Tensor): Tensor {
  return tidy(() => {
    if (x.ndim !== 4 || x.shape[2] % 2 !== 0 || x.shape[3] % 2 !== 0) throw new TensorError('downsample2x', 'expected an NCHW input with even H and W', [x.shape]);
    return avgPool2d(x, 2);
  });
}

/** Nearest-neighbour upsampling by 2. */
export function upsample2x(x: Tensor): Tensor {
  return tidy(() => {
    if (x.ndim !== 4) throw new TensorError('upsample2x', 'expected an NCHW input', [x.shape]);
    return upsampleNearest(x, 2);
  });
}

export interface DownsampleOptions {
  mode?: 'avgpool' | 'conv';
  /** Output channels (mode 'conv' only; default: the input channels). */
  outChannels?: number;
  init?: Initializer;
}

export class Downsample extends Module {
  readonly mode: 'avgpool' | 'conv';
  readonly conv: Conv2d | null;
  constructor(readonly channels: number, opts: DownsampleOptions = {}) {
    super();
    this.mode = opts.mode ?? 'avgpool';
    if (this.mode !== 'avgpool' && this.mode !== 'conv') throw new TensorError('Downsample', `mode must be 'avgpool' or 'conv', got "${this.mode as string}"`);
    if (this.mode === 'avgpool' && opts.outChannels !== undefined && opts.outChannels !== channels) {
      throw new TensorError('Downsample', 'average pooling keeps the channel count (use mode "conv" to change it)');
    }
    this.conv = this.mode === 'conv' ? new Conv2d(channels, opts.outChannels ?? channels, 3, { stride: 2, padding: 1, init: opts.init }) : null;
  }
  spec(): SpecTree {
    return this.conv ? { conv: this.conv.spec() } : {};
  }
  apply(params: Params, x: Tensor, _ctx?: Ctx): Tensor {
    if (x.ndim !== 4 || x.shape[1] !== this.channels) throw new TensorError('Downsample', `expected input [N, ${this.channels}, H, W]`, [x.shape]);
    if (this.conv) return this.conv.apply(getChild(params, 'conv', 'Downsample'), x);
    return downsample2x(x);
  }
}

export interface UpsampleOptions {
  /** Follow the nearest upsampling by a 3×3 convolution (default true). */
  conv?: boolean;
  outChannels?: number;
  init?: Initializer;
}

export class Upsample extends Module {
  readonly conv: Conv2d | null;
  constructor(readonly channels: number, opts: UpsampleOptions = {}) {
    super();
    const withConv = opts.conv ?? true;
    if (!withConv && opts.outChannels !== undefined && opts.outChannels !== channels) {
      throw new TensorError('Upsample', 'nearest upsampling without a convolution keeps the channel count');
    }
    this.conv = withConv ? new Conv2d(channels, opts.outChannels ?? channels, 3, { padding: 1, init: opts.init }) : null;
  }
  spec(): SpecTree {
    return this.conv ? { conv: this.conv.spec() } : {};
  }
  apply(params: Params, x: Tensor, _ctx?: Ctx): Tensor {
    if (x.ndim !== 4 || x.shape[1] !== this.channels) throw new TensorError('Upsample', `expected input [N, ${this.channels}, H, W]`, [x.shape]);
    const y = upsample2x(x);
    return this.conv ? this.conv.apply(getChild(params, 'conv', 'Upsample'), y) : y;
  }
}
