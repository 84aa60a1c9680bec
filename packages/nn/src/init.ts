/**
 * Parameter initializers. An initializer is a pure function of (key, shape, options):
 * the same key gives the same values on every backend (random draws are made on the host).
 *
 * Fans follow PyTorch's convention for a weight of shape [out, in, ...receptive field]:
 * fanIn = in · prod(receptive), fanOut = out · prod(receptive); a vector has fanIn = fanOut = its length.
 */
import { TensorError, full, random, type BackendName, type DType, type Tensor } from '@scm/tensor';

export interface InitOptions {
  dtype?: DType;
  backend?: BackendName;
}

export type Initializer = (key: random.Key, shape: readonly number[], opts?: InitOptions) => Tensor;

export function fans(shape: readonly number[]): { fanIn: number; fanOut: number } {
  if (shape.length === 0) return { fanIn: 1, fanOut: 1 };
  if (shape.length === 1) return { fanIn: shape[0], fanOut: shape[0] };
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: shape[1] * receptive, fanOut: shape[0] * receptive };
}

const create = (opts: InitOptions = {}) => ({ dtype: opts.dtype ?? 'float32', backend: opts.backend });

function checkScale(op: string, v: number): void {
  if (!Number.isFinite(v) || v < 0) throw new TensorError(op, `scale/gain must be a finite non-negative number, got ${v}`);
}

/** Uniform on [-bound, bound). */
export function uniform(bound: number): Initializer {
  checkScale('init.uniform', bound);
  return (key, shape, opts) => random.uniform(key, shape, { ...create(opts), low: -bound, high: bound });
}

/** Normal with mean 0 and standard deviation std. */
export function normal(std: number): Initializer {
  checkScale('init.normal', std);
  return (key, shape, opts) => random.normal(key, shape, { ...create(opts), std });
}

export function constant(value: number): Initializer {
  return (_key, shape, opts) => full(shape, value, create(opts));
}
export const zeros = (): Initializer => constant(0);
export const ones = (): Initializer => constant(1);

export interface FanOptions {
  /** Multiplies the standard deviation (PyTorch's gain; sqrt(2) for ReLU). */
  gain?: number;
  /** Which fan sets the scale. */
  mode?: 'fanIn' | 'fanOut';
}

/** He/Kaiming uniform: U(-b, b) with b = gain · sqrt(3 / fan). Default gain sqrt(2), fan-in (PyTorch's kaiming_uniform_ for ReLU). */
export function kaimingUniform({ gain = Math.SQRT2, mode = 'fanIn' }: FanOptions = {}): Initializer {
  checkScale('init.kaimingUniform', gain);
  return (key, shape, opts) => {
    const f = fans(shape)[mode];
    return uniform(gain * Math.sqrt(3 / f))(key, shape, opts);
  };
}

/** He/Kaiming normal: N(0, (gain / sqrt(fan))²). */
export function kaimingNormal({ gain = Math.SQRT2, mode = 'fanIn' }: FanOptions = {}): Initializer {
  checkScale('init.kaimingNormal', gain);
  return (key, shape, opts) => normal(gain / Math.sqrt(fans(shape)[mode]))(key, shape, opts);
}

/** Glorot/Xavier uniform: U(-b, b) with b = gain · sqrt(6 / (fanIn + fanOut)). */
export function xavierUniform({ gain = 1 }: { gain?: number } = {}): Initializer {
  checkScale('init.xavierUniform', gain);
  return (key, shape, opts) => {
    const { fanIn, fanOut } = fans(shape);
    return uniform(gain * Math.sqrt(6 / (fanIn + fanOut)))(key, shape, opts);
  };
}

/** Glorot/Xavier normal: N(0, gain² · 2 / (fanIn + fanOut)). */
export function xavierNormal({ gain = 1 }: { gain?: number } = {}): Initializer {
  checkScale('init.xavierNormal', gain);
  return (key, shape, opts) => {
    const { fanIn, fanOut } = fans(shape);
    return normal(gain * Math.sqrt(2 / (fanIn + fanOut)))(key, shape, opts);
  };
}

export type EdmInitMode = 'xavier_uniform' | 'xavier_normal' | 'kaiming_uniform' | 'kaiming_normal';

/**
 * The EDM / DDPM++ weight initialization: one of four fan-scaled draws with unit gain,
 * times `scale` (EDM's init_weight). Note EDM's Kaiming variants have gain 1
 * (uniform bound sqrt(3 / fanIn), normal std sqrt(1 / fanIn)), unlike PyTorch's.
 * DDPM++ uses xavier_uniform with scale 1 for most layers, 1e-5 for the last conv of
 * each block and the output conv, and sqrt(0.2) for the attention qkv projection.
 */
export function edm(mode: EdmInitMode = 'xavier_uniform', scale = 1): Initializer {
  checkScale('init.edm', scale);
  return (key, shape, opts) => {
    const { fanIn, fanOut } = fans(shape);
    switch (mode) {
      case 'xavier_uniform': return uniform(scale * Math.sqrt(6 / (fanIn + fanOut)))(key, shape, opts);
      case 'xavier_normal': return normal(scale * Math.sqrt(2 / (fanIn + fanOut)))(key, shape, opts);
      case 'kaiming_uniform': return uniform(scale * Math.sqrt(3 / fanIn))(key, shape, opts);
      case 'kaiming_normal': return normal(scale * Math.sqrt(1 / fanIn))(key, shape, opts);
      default: throw new TensorError('init.edm', `unknown mode "${mode as string}" (expected xavier_uniform, xavier_normal, kaiming_uniform or kaiming_normal)`);
    }
  };
}
