/** Fully connected layer: y = x Wᵀ + b, with W of shape [out, in] (PyTorch's layout). */
import { TensorError, add, matmul, mT, type Tensor } from '@scm/tensor';
import { kaimingUniform, zeros, type Initializer } from '../init.js';
import { Module, getParam, param, type Ctx, type Params, type SpecTree } from '../module.js';

export interface LinearOptions {
  bias?: boolean;
  /** Weight initializer; default: U(±1/sqrt(in)), PyTorch's default for Linear. */
  init?: Initializer;
  /** Bias initializer; default zeros. */
  biasInit?: Initializer;
}

export class Linear extends Module {
  readonly bias: boolean;
  constructor(readonly inFeatures: number, readonly outFeatures: number, private readonly opts: LinearOptions = {}) {
    super();
    for (const [n, v] of [['inFeatures', inFeatures], ['outFeatures', outFeatures]] as const) {
      if (!Number.isInteger(v) || v <= 0) throw new TensorError('Linear', `${n} must be a positive integer, got ${v}`);
    }
    this.bias = opts.bias ?? true;
  }

  spec(): SpecTree {
    const s: SpecTree = { weight: param([this.outFeatures, this.inFeatures], this.opts.init ?? kaimingUniform({ gain: 1 / Math.sqrt(3) })) };
    if (this.bias) s.bias = param([this.outFeatures], this.opts.biasInit ?? zeros());
    return s;
  }

  /** x: [..., inFeatures] -> [..., outFeatures]. */
  apply(params: Params, x: Tensor, _ctx?: Ctx): Tensor {
    if (x.ndim < 1 || x.shape[x.ndim - 1] !== this.inFeatures) {
      throw new TensorError('Linear', `expected input [..., ${this.inFeatures}]`, [x.shape]);
    }
    const w = getParam(params, 'weight', 'Linear', [this.outFeatures, this.inFeatures]);
    const y = matmul(x, mT(w));
    return this.bias ? add(y, getParam(params, 'bias', 'Linear', [this.outFeatures])) : y;
  }
}
