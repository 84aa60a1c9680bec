/** Elementwise activations by name, as functions and as a parameter-free module. */
import { TensorError, gelu, relu, sigmoid, silu, softplus, tanh, type Tensor } from '@scm/tensor';
import { Module, type Ctx, type Params, type SpecTree } from '../module.js';

export const activations = {
  silu,
  gelu,
  relu,
  tanh,
  sigmoid,
  softplus,
  identity: (x: Tensor) => x,
} as const;
export type ActivationName = keyof typeof activations;

export function activation(name: ActivationName): (x: Tensor) => Tensor {
  const f = activations[name];
  if (!f) throw new TensorError('activation', `unknown activation "${name}" (expected one of ${Object.keys(activations).join(', ')})`);
  return f;
}

export class Activation extends Module {
  private readonly fn: (x: Tensor) => Tensor;
  constructor(readonly kind: ActivationName) {
    super();
    this.fn = activation(kind);
  }
  spec(): SpecTree {
    return {};
  }
  apply(_params: Params, x: Tensor, _ctx?: Ctx): Tensor {
    return this.fn(x);
  }
}

export const SiLU = () => new Activation('silu');
export const GELU = () => new Activation('gelu');
export const ReLU = () => new Activation('relu');
export const Tanh = () => new Activation('tanh');
