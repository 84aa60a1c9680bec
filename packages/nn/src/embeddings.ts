/**
 * Embeddings of a scalar noise level (one per sample) into a feature vector.
 *
 * Positional (DDPM++/EDM, the sCM default): freqs_k = (1/maxPositions)^(k / (n/2 − 1)),
 * k = 0..n/2−1 (endpoint form), emb = [cos(s·t·freqs), sin(s·t·freqs)].
 * The sCM paper feeds c_noise(t) = t ∈ [0, π/2] directly (scale s = 1): its derivative
 * s·freqs·cos(...) stays O(1), which keeps the JVP dF/dt tame. Scaling t by 1000 (as
 * DDPM codes do) would reintroduce large derivatives. In Fourier terms this embedding
 * "amounts to s ≈ 0.02" (paper §4.1).
 *
 * Fourier (NCSN++): emb = [cos(2π·f·t), sin(2π·f·t)] with fixed random frequencies
 * f ~ N(0, scale²) (default scale 16: large, oscillating derivatives; the paper found
 * it unstable for continuous-time CMs). The frequencies are a function of the
 * embedding's seed, not trainable parameters.
 */
import { TensorError, concat, cos, fromArray, mul, random, reshape, sin, type Tensor, tidy } from '@scm/tensor';
import { Module, type Ctx, type Params, type SpecTree } from './module.js';

export interface PositionalEmbeddingOptions {
  maxPositions?: number;
  /** EDM's endpoint=True: the lowest frequency is exactly 1/maxPositions (default true). */
  endpoint?: boolean;
  /** Multiplies the noise level before embedding (default 1: c_noise = t as in sCM). */
  scale?: number;
  /** Output [sin, cos] instead of [cos, sin] (EDM's DDPM++ swaps the halves). */
  sinFirst?: boolean;
}

function checkNoise(op: string, t: Tensor): void {
  if (t.ndim !== 1) throw new TensorError(op, 'expected noise levels of shape [N]', [t.shape]);
  if (t.dtype !== 'float32' && t.dtype !== 'float64') throw new TensorError(op, `expected float noise levels, got ${t.dtype}`, [t.shape]);
}

function harmonics(t: Tensor, freqs: ArrayLike<number>, sinFirst: boolean): Tensor {
  const f = fromArray(freqs, [1, freqs.length], { dtype: t.dtype, backend: t.backend });
  const arg = mul(reshape(t, [t.shape[0], 1]), f);
  const c = cos(arg), s = sin(arg);
  return concat(sinFirst ? [s, c] : [c, s], 1);
}

/** Frequencies of the positional embedding (times its scale). */
export function positionalFrequencies(numChannels: number, opts: PositionalEmbeddingOptions = {}): Float64Array {
  const { maxPositions = 10000, endpoint = true, scale = 1 } = opts;
  const half = numChannels / 2;
  if (!Number.isInteger(half) || half < (endpoint ? 2 : 1)) {
    throw new TensorError('PositionalEmbedding', `numChannels must be even and at least ${endpoint ? 4 : 2}, got ${numChannels}`);
  }
  if (!(maxPositions > 0) || !Number.isFinite(scale)) throw new TensorError('PositionalEmbedding', `maxPositions must be positive and scale finite (got ${maxPositions}, ${scale})`);
  const denom = half - (endpoint ? 1 : 0);
  return Float64Array.from({ length: half }, (_, k) => scale * Math.pow(1 / maxPositions, k / denom));
}

/** t: [N] -> [N, numChannels]. */
export function positionalEmbedding(t: Tensor, numChannels: number, opts: PositionalEmbeddingOptions = {}): Tensor {
  return tidy(() => {
    checkNoise('positionalEmbedding', t);
    return harmonics(t, positionalFrequencies(numChannels, opts), opts.sinFirst ?? false);
  });
}

export class PositionalEmbedding extends Module {
  readonly freqs: Float64Array;
  constructor(readonly numChannels: number, readonly opts: PositionalEmbeddingOptions = {}) {
    super();
    this.freqs = positionalFrequencies(numChannels, opts);
  }
  spec(): SpecTree {
    return {};
  }
  apply(_params: Params, t: Tensor, _ctx?: Ctx): Tensor {
    checkNoise('PositionalEmbedding', t);
    return harmonics(t, this.freqs, this.opts.sinFirst ?? false);
  }
}

export interface FourierEmbeddingOptions {
  /** Standard deviation of the random frequencies (NCSN++ default 16). */
  scale?: number;
  /** Seed of the fixed frequencies. */
  seed?: number;
  sinFirst?: boolean;
}

export class FourierEmbedding extends Module {
  /** 2π·f for each of the numChannels/2 frequencies. */
  readonly freqs: Float64Array;
  constructor(readonly numChannels: number, readonly opts: FourierEmbeddingOptions = {}) {
    super();
    const half = numChannels / 2;
    if (!Number.isInteger(half) || half < 1) throw new TensorError('FourierEmbedding', `numChannels must be even and positive, got ${numChannels}`);
    const scale = opts.scale ?? 16;
    const draws = random.normal(random.key(opts.seed ?? 0), [half], { dtype: 'float64', backend: 'reference' });
    this.freqs = Float64Array.from(draws.dataSync(), (v) => 2 * Math.PI * scale * v);
    draws.dispose();
  }
  spec(): SpecTree {
    return {};
  }
  apply(_params: Params, t: Tensor, _ctx?: Ctx): Tensor {
    checkNoise('FourierEmbedding', t);
    return harmonics(t, this.freqs, this.opts.sinFirst ?? false);
  }
}

export type TimeEmbeddingKind = 'positional' | 'fourier';

/** The embedding module for a config choice. */
export function timeEmbedding(kind: TimeEmbeddingKind, numChannels: number, opts: { scale?: number; sinFirst?: boolean } = {}): PositionalEmbedding | FourierEmbedding {
  if (kind === 'positional') return new PositionalEmbedding(numChannels, { endpoint: true, scale: opts.scale ?? 1, sinFirst: opts.sinFirst });
  if (kind === 'fourier') return new FourierEmbedding(numChannels, { scale: opts.scale ?? 16, sinFirst: opts.sinFirst });
  throw new TensorError('timeEmbedding', `unknown embedding "${kind as string}" (expected 'positional' or 'fourier')`);
}
