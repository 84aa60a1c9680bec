/**
 * The consistency models' image network: EDM's SongUNet in its DDPM++ configuration
 * with the three changes of the sCM paper (identity time transform, i.e. it takes the
 * noise level c_noise = t directly; positional time embedding; adaptive double
 * normalization). See scm-spec §5.1.
 *
 *   emb  = silu(L1(silu(L0(posemb(t)))))                        [N, 4·base]
 *   enc  = 3×3 conv stem, then per level: (down block,) `blocksPerLevel` ResBlocks
 *   dec  = per level from the bottom: (two middle blocks | up block), then
 *          blocksPerLevel + 1 ResBlocks, each fed the concatenation with one skip
 *   out  = 3×3 conv(silu(GN(h)))                                near-zero init
 *
 * Attention is added to the blocks at resolutions listed in `attentionResolutions`
 * (encoder blocks, the last decoder block of that level) and to the first middle block.
 */
import { TensorError, concat, silu, type Tensor } from '@scm/tensor';
import { timeEmbedding, type FourierEmbedding, type PositionalEmbedding, type TimeEmbeddingKind } from './embeddings.js';
import { edm } from './init.js';
import { Module, childCtx, getChild, type Ctx, type Params, type SpecTree } from './module.js';
import { Conv2d } from './layers/conv.js';
import { Linear } from './layers/linear.js';
import { GroupNorm, defaultGroups } from './layers/norm.js';
import { ResBlock } from './layers/resblock.js';

export interface UNetConfig {
  /** Channels of the input and output images. */
  imageChannels: number;
  /** Height = width of the images the network takes. */
  imageSize: number;
  /** Channels of the first level (EDM's model_channels). */
  baseChannels: number;
  /** Channels of level i are baseChannels · channelMult[i]; level i works at imageSize / 2^i. */
  channelMult: readonly number[];
  /** Residual blocks per level in the encoder (the decoder has one more). */
  blocksPerLevel: number;
  /** Resolutions (e.g. [16]) whose blocks get self-attention. */
  attentionResolutions: readonly number[];
  /** Dropout rate inside the residual blocks (active only with ctx.train). */
  dropout: number;
  /**
   * Noise-level embedding: 'positional' (default; sCM's choice, fed c_noise = t with
   * scale 1) or 'fourier' (NCSN++, scale 16).
   */
  timeEmbedding?: TimeEmbeddingKind;
  /** Scale applied to the noise level inside the embedding (default 1 positional, 16 fourier). */
  timeEmbeddingScale?: number;
  /** Adaptive double normalization (default true); false: DDPM++'s additive conditioning. */
  adaptiveNorm?: boolean;
  /** Attention heads (default 1, as DDPM++). */
  numHeads?: number;
  /** Attention in the first middle block (default: whenever attentionResolutions is non-empty). */
  midAttention?: boolean;
  /** Embedding width = baseChannels · embMult (default 4). */
  embMult?: number;
  /** GroupNorm epsilon (default 1e-6, as DDPM++). */
  eps?: number;
}

const cifar = { imageChannels: 3, imageSize: 32, dropout: 0 };

/**
 * Size presets (32×32×3 images by default; override imageSize / imageChannels as needed).
 * Dropout is 0 in every preset: the paper uses 0.20 for sCT, 0 for sCD, 0.13 for the
 * diffusion teacher on CIFAR-10; set it per run.
 */
export const unetPresets = {
  /** base 16, (1, 2), 1 block per level, no attention. */
  nano: { ...cifar, baseChannels: 16, channelMult: [1, 2], blocksPerLevel: 1, attentionResolutions: [] },
  /** base 32, (1, 2), 1 block per level, attention at 16×16. */
  tiny: { ...cifar, baseChannels: 32, channelMult: [1, 2], blocksPerLevel: 1, attentionResolutions: [16] },
  /** base 64, (1, 2, 2), 2 blocks per level, attention at 8×8. */
  small: { ...cifar, baseChannels: 64, channelMult: [1, 2, 2], blocksPerLevel: 2, attentionResolutions: [8] },
  /** The paper's CIFAR-10 DDPM++: base 128, (2, 2, 2), 4 blocks per level, attention at 16×16. */
  paper: { ...cifar, baseChannels: 128, channelMult: [2, 2, 2], blocksPerLevel: 4, attentionResolutions: [16] },
} as const satisfies Record<string, UNetConfig>;
export type UNetPreset = keyof typeof unetPresets;

interface EncoderEntry {
  name: string;
  block: Conv2d | ResBlock;
}
interface DecoderEntry {
  name: string;
  block: ResBlock;
  /** Concatenate the next skip connection before this block. */
  withSkip: boolean;
}

function checkConfig(c: UNetConfig): void {
  const posInt = (v: number) => Number.isInteger(v) && v > 0;
  const bad = (what: string) => { throw new TensorError('UNet', `invalid config: ${what}`); };
  if (!posInt(c.imageChannels)) bad(`imageChannels must be a positive integer, got ${c.imageChannels}`);
  if (!posInt(c.baseChannels)) bad(`baseChannels must be a positive integer, got ${c.baseChannels}`);
  if (!Number.isInteger(c.blocksPerLevel) || c.blocksPerLevel < 0) bad(`blocksPerLevel must be a non-negative integer, got ${c.blocksPerLevel}`);
  if (!c.channelMult.length || !c.channelMult.every(posInt)) bad(`channelMult must be a non-empty list of positive integers, got [${c.channelMult}]`);
  const levels = c.channelMult.length;
  if (!posInt(c.imageSize) || c.imageSize % 2 ** (levels - 1) !== 0) bad(`imageSize ${c.imageSize} must be divisible by 2^${levels - 1} for ${levels} levels`);
  if (!(c.dropout >= 0 && c.dropout <= 1)) bad(`dropout must be in [0, 1], got ${c.dropout}`);
}

export class UNet extends Module<[Tensor, Tensor]> {
  readonly config: Required<UNetConfig>;
  readonly embedding: PositionalEmbedding | FourierEmbedding;
  readonly map0: Linear;
  readonly map1: Linear;
  readonly enc: EncoderEntry[] = [];
  readonly dec: DecoderEntry[] = [];
  readonly outNorm: GroupNorm;
  readonly outConv: Conv2d;

  constructor(config: UNetConfig | UNetPreset) {
    super();
    const given: UNetConfig = typeof config === 'string' ? unetPresets[config] : config;
    if (!given) throw new TensorError('UNet', `unknown preset "${String(config)}" (expected one of ${Object.keys(unetPresets).join(', ')})`);
    checkConfig(given);
    const c: Required<UNetConfig> = {
      timeEmbedding: 'positional',
      timeEmbeddingScale: given.timeEmbedding === 'fourier' ? 16 : 1,
      adaptiveNorm: true,
      numHeads: 1,
      midAttention: given.attentionResolutions.length > 0,
      embMult: 4,
      eps: 1e-6,
      ...(Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) as UNetConfig),
    };
    this.config = c;

    const mc = c.baseChannels;
    const embChannels = mc * c.embMult;
    const init = edm('xavier_uniform');
    const initZero = edm('xavier_uniform', 1e-5);
    const block = (cin: number, cout: number, extra: { resample?: 'up' | 'down'; attention?: boolean } = {}) =>
      new ResBlock(cin, cout, {
        embChannels, dropout: c.dropout, skipScale: Math.SQRT1_2, eps: c.eps, numHeads: c.numHeads,
        conditioning: c.adaptiveNorm ? 'double' : 'additive', init, initZero, ...extra,
      });

    this.embedding = timeEmbedding(c.timeEmbedding, mc, { scale: c.timeEmbeddingScale, sinFirst: true });
    this.map0 = new Linear(mc, embChannels, { init });
    this.map1 = new Linear(embChannels, embChannels, { init });

    // Encoder: every entry's output is a skip connection.
    let cout = c.imageChannels;
    const skipChannels: number[] = [];
    c.channelMult.forEach((mult, level) => {
      const res = c.imageSize >> level;
      if (level === 0) {
        this.enc.push({ name: `${res}x${res}_conv`, block: new Conv2d(cout, mc, 3, { padding: 1, init }) });
        cout = mc;
      } else {
        this.enc.push({ name: `${res}x${res}_down`, block: block(cout, cout, { resample: 'down' }) });
      }
      skipChannels.push(cout);
      for (let i = 0; i < c.blocksPerLevel; i++) {
        const cin = cout;
        cout = mc * mult;
        this.enc.push({ name: `${res}x${res}_block${i}`, block: block(cin, cout, { attention: c.attentionResolutions.includes(res) }) });
        skipChannels.push(cout);
      }
    });

    // Decoder: consumes the skips in reverse.
    for (let level = c.channelMult.length - 1; level >= 0; level--) {
      const res = c.imageSize >> level;
      if (level === c.channelMult.length - 1) {
        this.dec.push({ name: `${res}x${res}_in0`, block: block(cout, cout, { attention: c.midAttention }), withSkip: false });
        this.dec.push({ name: `${res}x${res}_in1`, block: block(cout, cout), withSkip: false });
      } else {
        this.dec.push({ name: `${res}x${res}_up`, block: block(cout, cout, { resample: 'up' }), withSkip: false });
      }
      for (let i = 0; i <= c.blocksPerLevel; i++) {
        const cin = cout + skipChannels.pop()!;
        cout = mc * c.channelMult[level];
        const attention = i === c.blocksPerLevel && c.attentionResolutions.includes(res);
        this.dec.push({ name: `${res}x${res}_block${i}`, block: block(cin, cout, { attention }), withSkip: true });
      }
    }
    this.outNorm = new GroupNorm(defaultGroups(cout), cout, { eps: c.eps });
    this.outConv = new Conv2d(cout, c.imageChannels, 3, { padding: 1, init: initZero });
  }

  spec(): SpecTree {
    return {
      map: { layer0: this.map0.spec(), layer1: this.map1.spec() },
      enc: Object.fromEntries(this.enc.map((e) => [e.name, e.block.spec()])),
      dec: Object.fromEntries(this.dec.map((e) => [e.name, e.block.spec()])),
      out: { norm: this.outNorm.spec(), conv: this.outConv.spec() },
    };
  }

  /** The noise-level embedding fed to every block: [N] -> [N, 4·baseChannels]. */
  embed(params: Params, noiseLevel: Tensor): Tensor {
    const map = getChild(params, 'map', 'UNet');
    const e = this.embedding.apply({}, noiseLevel);
    return silu(this.map1.apply(getChild(map, 'layer1', 'UNet'), silu(this.map0.apply(getChild(map, 'layer0', 'UNet'), e))));
  }

  /**
   * x: [N, imageChannels, imageSize, imageSize]; noiseLevel: [N] (c_noise, = t for
   * TrigFlow/sCM). Returns [N, imageChannels, imageSize, imageSize]. ctx.train enables
   * dropout (masks from ctx.key).
   */
  apply(params: Params, x: Tensor, noiseLevel: Tensor, ctx?: Ctx): Tensor {
    const c = this.config;
    if (x.ndim !== 4 || x.shape[1] !== c.imageChannels || x.shape[2] !== c.imageSize || x.shape[3] !== c.imageSize) {
      throw new TensorError('UNet', `expected images [N, ${c.imageChannels}, ${c.imageSize}, ${c.imageSize}]`, [x.shape, noiseLevel.shape]);
    }
    if (noiseLevel.ndim !== 1 || noiseLevel.shape[0] !== x.shape[0]) {
      throw new TensorError('UNet', `expected one noise level per image: shape [${x.shape[0]}]`, [x.shape, noiseLevel.shape]);
    }
    const emb = this.embed(params, noiseLevel);
    const encP = getChild(params, 'enc', 'UNet'), decP = getChild(params, 'dec', 'UNet');
    const skips: Tensor[] = [];
    let h = x;
    for (const { name, block } of this.enc) {
      const p = getChild(encP, name, 'UNet.enc');
      h = block instanceof Conv2d ? block.apply(p, h) : block.apply(p, h, emb, childCtx(ctx, `enc.${name}`));
      skips.push(h);
    }
    for (const { name, block, withSkip } of this.dec) {
      if (withSkip) h = concat([h, skips.pop()!], 1);
      h = block.apply(getChild(decP, name, 'UNet.dec'), h, emb, childCtx(ctx, `dec.${name}`));
    }
    const out = getChild(params, 'out', 'UNet');
    return this.outConv.apply(getChild(out, 'conv', 'UNet.out'), this.outNorm.applyWith(getChild(out, 'norm', 'UNet.out'), h, { silu: true }));
  }
}
