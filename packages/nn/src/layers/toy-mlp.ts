/**
 * A time-conditioned MLP for low-dimensional toy data (scm-spec §5.3, §9.2–9.3):
 *   h = [x, emb(t)] -> (Linear -> SiLU) × depth -> Linear -> [N, dim]
 * x: [N, dim] (2 for the 2-D toys), noise level t: [N] (c_noise = t).
 */
import { TensorError, concat, silu, type Tensor } from '@scm/tensor';
import { timeEmbedding, type FourierEmbedding, type PositionalEmbedding, type TimeEmbeddingKind } from '../embeddings.js';
import { edm } from '../init.js';
import { Module, childCtx, getChild, type Ctx, type Params, type SpecTree } from '../module.js';
import { dropout } from './dropout.js';
import { Linear } from './linear.js';

export interface ToyMLPConfig {
  /** Data dimension (default 2). */
  dim?: number;
  /** Hidden width (default 256). */
  hidden?: number;
  /** Number of hidden layers (default 3). */
  depth?: number;
  /** Width of the noise-level embedding (default 64). */
  embChannels?: number;
  timeEmbedding?: TimeEmbeddingKind;
  timeEmbeddingScale?: number;
  /** Dropout after each hidden activation (default 0). */
  dropout?: number;
}

export class ToyMLP extends Module<[Tensor, Tensor]> {
  readonly config: Required<ToyMLPConfig>;
  readonly embedding: PositionalEmbedding | FourierEmbedding;
  readonly hidden: Linear[];
  readonly out: Linear;

  constructor(config: ToyMLPConfig = {}) {
    super();
    const c: Required<ToyMLPConfig> = {
      dim: config.dim ?? 2,
      hidden: config.hidden ?? 256,
      depth: config.depth ?? 3,
      embChannels: config.embChannels ?? 64,
      timeEmbedding: config.timeEmbedding ?? 'positional',
      timeEmbeddingScale: config.timeEmbeddingScale ?? (config.timeEmbedding === 'fourier' ? 16 : 1),
      dropout: config.dropout ?? 0,
    };
    if (![c.dim, c.hidden, c.depth, c.embChannels].every((v) => Number.isInteger(v) && v > 0)) {
      throw new TensorError('ToyMLP', `dim, hidden, depth and embChannels must be positive integers (got ${c.dim}, ${c.hidden}, ${c.depth}, ${c.embChannels})`);
    }
    this.config = c;
    this.embedding = timeEmbedding(c.timeEmbedding, c.embChannels, { scale: c.timeEmbeddingScale });
    const init = edm('xavier_uniform');
    this.hidden = Array.from({ length: c.depth }, (_, i) => new Linear(i === 0 ? c.dim + c.embChannels : c.hidden, c.hidden, { init }));
    this.out = new Linear(c.hidden, c.dim, { init });
  }

  spec(): SpecTree {
    return { hidden: this.hidden.map((l) => l.spec()), out: this.out.spec() };
  }

  /** x: [N, dim], noiseLevel: [N] -> [N, dim]. */
  apply(params: Params, x: Tensor, noiseLevel: Tensor, ctx?: Ctx): Tensor {
    const { dim } = this.config;
    if (x.ndim !== 2 || x.shape[1] !== dim) throw new TensorError('ToyMLP', `expected points [N, ${dim}]`, [x.shape, noiseLevel.shape]);
    if (noiseLevel.ndim !== 1 || noiseLevel.shape[0] !== x.shape[0]) throw new TensorError('ToyMLP', `expected one noise level per point: shape [${x.shape[0]}]`, [x.shape, noiseLevel.shape]);
    const hp = params.hidden;
    if (!Array.isArray(hp) || hp.length !== this.hidden.length) throw new TensorError('ToyMLP', `expected params.hidden to be a list of ${this.hidden.length} layers`);
    let h = concat([x, this.embedding.apply({}, noiseLevel)], 1);
    this.hidden.forEach((layer, i) => {
      h = silu(layer.apply(hp[i], h));
      if (this.config.dropout > 0) h = dropout(h, this.config.dropout, childCtx(ctx, `hidden.${i}`));
    });
    return this.out.apply(getChild(params, 'out', 'ToyMLP'), h);
  }
}
