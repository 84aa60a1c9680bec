/** 2-D convolution layer over NCHW inputs with an OIHW weight [out, in/groups, kH, kW]. */
import { TensorError, add, conv2d, reshape, type Tensor } from '@scm/tensor';
import { kaimingUniform, zeros, type Initializer } from '../init.js';
import { Module, getParam, param, type Ctx, type Params, type SpecTree } from '../module.js';

export interface Conv2dLayerOptions {
  stride?: number | [number, number];
  /** Zero padding per side; 'same' pads odd kernels by kernel // 2 (stride 1 keeps H, W). */
  padding?: number | [number, number] | 'same';
  dilation?: number | [number, number];
  groups?: number;
  bias?: boolean;
  /** Weight initializer; default: U(±1/sqrt(fanIn)), PyTorch's default for Conv2d. */
  init?: Initializer;
  /** Bias initializer; default zeros. */
  biasInit?: Initializer;
}

const pair = (v: number | [number, number]): [number, number] => (typeof v === 'number' ? [v, v] : v);

export class Conv2d extends Module {
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly dilation: [number, number];
  readonly groups: number;
  readonly bias: boolean;

  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: number | [number, number], private readonly opts: Conv2dLayerOptions = {}) {
    super();
    this.kernelSize = pair(kernelSize);
    this.stride = pair(opts.stride ?? 1);
    this.dilation = pair(opts.dilation ?? 1);
    this.groups = opts.groups ?? 1;
    this.bias = opts.bias ?? true;
    const ints = [inChannels, outChannels, ...this.kernelSize, ...this.stride, ...this.dilation, this.groups];
    if (!ints.every((v) => Number.isInteger(v) && v > 0)) {
      throw new TensorError('Conv2d', `channels, kernel size, stride, dilation and groups must be positive integers (got in ${inChannels}, out ${outChannels}, kernel [${this.kernelSize}], stride [${this.stride}], dilation [${this.dilation}], groups ${this.groups})`);
    }
    if (inChannels % this.groups !== 0 || outChannels % this.groups !== 0) {
      throw new TensorError('Conv2d', `in (${inChannels}) and out (${outChannels}) channels must both be divisible by groups (${this.groups})`);
    }
    if (opts.padding === 'same') {
      if (this.kernelSize.some((k) => k % 2 === 0)) throw new TensorError('Conv2d', `padding 'same' needs odd kernel sizes, got [${this.kernelSize}]`);
      this.padding = [((this.kernelSize[0] - 1) / 2) * this.dilation[0], ((this.kernelSize[1] - 1) / 2) * this.dilation[1]];
    } else {
      this.padding = pair(opts.padding ?? 0);
      if (!this.padding.every((p) => Number.isInteger(p) && p >= 0)) throw new TensorError('Conv2d', `padding must be non-negative integers, got [${this.padding}]`);
    }
  }

  get weightShape(): number[] {
    return [this.outChannels, this.inChannels / this.groups, ...this.kernelSize];
  }

  spec(): SpecTree {
    const s: SpecTree = { weight: param(this.weightShape, this.opts.init ?? kaimingUniform({ gain: 1 / Math.sqrt(3) })) };
    if (this.bias) s.bias = param([this.outChannels], this.opts.biasInit ?? zeros());
    return s;
  }

  /** x: [N, inChannels, H, W] -> [N, outChannels, H', W']. */
  apply(params: Params, x: Tensor, _ctx?: Ctx): Tensor {
    if (x.ndim !== 4 || x.shape[1] !== this.inChannels) {
      throw new TensorError('Conv2d', `expected input [N, ${this.inChannels}, H, W]`, [x.shape]);
    }
    const w = getParam(params, 'weight', 'Conv2d', this.weightShape);
    const y = conv2d(x, w, { stride: this.stride, padding: this.padding, dilation: this.dilation, groups: this.groups });
    return this.bias ? add(y, reshape(getParam(params, 'bias', 'Conv2d', [this.outChannels]), [1, this.outChannels, 1, 1])) : y;
  }
}
