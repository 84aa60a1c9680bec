/**
 * Normalization layers, written as composites of tensor ops (their JVP and VJP come
 * from autodiff): GroupNorm, LayerNorm and PixelNorm.
 */
import { TensorError, add, fuse, fuseSum, mean, mul, reshape, rsqrt, silu, square, sub, type Tensor, tidy } from '@scm/tensor';
import { ones, zeros } from '../init.js';
import { Module, getParam, param, type Ctx, type Params, type SpecTree } from '../module.js';

/** x̂ = (x - mean) / sqrt(var + eps) over the given axes (population variance). */
function standardize(x: Tensor, axes: number[], eps: number): Tensor {
  const centered = sub(x, mean(x, axes, true));
  return mul(centered, rsqrt(add(mean(square(centered), axes, true), eps)));
}

/** What groupNorm applies after normalizing: scale and shift in the normalization's kernel, then SiLU. */
export interface GroupNormEpilogue {
  /** Per-sample, per-channel scale [N, C] (adaptive normalization), after the affine map. */
  scale?: Tensor;
  /** Per-sample, per-channel shift [N, C], after the scale. */
  shift?: Tensor;
  /** Apply SiLU last. */
  silu?: boolean;
}

/**
 * Group normalization of x [N, C, ...]: statistics per sample over each group of
 * C / groups channels and all spatial positions; then y = x̂ · weight + bias per channel,
 * optionally · scale + shift per sample and channel, then SiLU.
 *
 * Two passes over x for the statistics (the sum, then Σ (x − mean)² in one kernel) and one
 * fused kernel for everything after (normalization, affine map, scale, shift), whatever the
 * epilogue; SiLU is one more (fused with it, each derivative kernel would recompute its
 * exponential). Their derivatives are fused the same way.
 */
export function groupNorm(x: Tensor, groups: number, weight?: Tensor, bias?: Tensor, eps = 1e-5, epilogue: GroupNormEpilogue = {}): Tensor {
  return tidy(() => {
    if (x.ndim < 2) throw new TensorError('groupNorm', 'expected an input [N, C, ...]', [x.shape]);
    const [N, C] = x.shape;
    if (!Number.isInteger(groups) || groups < 1 || C % groups !== 0) throw new TensorError('groupNorm', `${C} channels do not split into ${groups} groups`, [x.shape]);
    const { scale, shift } = epilogue;
    for (const [name, v] of [['scale', scale], ['shift', shift]] as const) {
      if (v && (v.ndim !== 2 || v.shape[0] !== N || v.shape[1] !== C)) throw new TensorError('groupNorm', `expected ${name} [${N}, ${C}] for input [${x.shape}]`, [x.shape, v.shape]);
    }
    // [N, G, C/G, rest]: statistics broadcast as [N, G, 1, 1], per-channel vectors as [1, G, C/G, 1].
    const g = C / groups;
    const xg = reshape(x, [N, groups, g, -1]);
    const m = mean(xg, [2, 3], true);
    const n = xg.shape[2] * xg.shape[3];
    const rstd = fuse((v) => v.mul(1 / n).add(eps).rsqrt(), [fuseSum((a, b) => a.sub(b).square(), [xg, m], [2, 3], true)]);
    const inputs = [xg, m, rstd];
    const at = (v: Tensor | undefined, shape: number[]) => (v ? inputs.push(reshape(v, shape)) - 1 : -1);
    const [wi, bi, si, hi] = [at(weight, [1, groups, g, 1]), at(bias, [1, groups, g, 1]), at(scale, [N, groups, g, 1]), at(shift, [N, groups, g, 1])];
    const y = fuse((...v) => {
      let h = v[0].sub(v[1]).mul(v[2]);
      if (wi >= 0) h = h.mul(v[wi]);
      if (bi >= 0) h = h.add(v[bi]);
      if (si >= 0) h = h.mul(v[si]);
      if (hi >= 0) h = h.add(v[hi]);
      return h;
    }, inputs);
    return reshape(epilogue.silu ? silu(y) : y, x.shape);
  });
}

/** Layer normalization over the trailing `normalizedShape.length` axes. */
export function layerNorm(x: Tensor, normalizedShape: readonly number[], weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  return tidy(() => {
    const k = normalizedShape.length;
    if (k === 0 || x.ndim < k || normalizedShape.some((d, i) => x.shape[x.ndim - k + i] !== d)) {
      throw new TensorError('layerNorm', `expected an input [..., ${normalizedShape.join(', ')}]`, [x.shape]);
    }
    const axes = Array.from({ length: k }, (_, i) => x.ndim - k + i);
    let y = standardize(x, axes, eps);
    if (weight) y = mul(y, weight);
    if (bias) y = add(y, bias);
    return y;
  });
}

/**
 * Pixel normalization: x / sqrt(mean(x², axis) + eps), by default over the channel
 * axis (1). Used by adaptive double normalization on the scale and shift vectors.
 */
export function pixelNorm(x: Tensor, axis = 1, eps = 1e-8): Tensor {
  return tidy(() => {
    if (x.ndim < 1) throw new TensorError('pixelNorm', 'expected a tensor of rank >= 1', [x.shape]);
    const a = axis < 0 ? axis + x.ndim : axis;
    if (!Number.isInteger(a) || a < 0 || a >= x.ndim) throw new TensorError('pixelNorm', `axis ${axis} is out of range for rank ${x.ndim}`, [x.shape]);
    return mul(x, rsqrt(add(mean(square(x), a, true), eps)));
  });
}

/** The number of groups EDM's GroupNorm uses: min(32, C / 4) channels-per-group >= 4, at least 1. */
export function defaultGroups(channels: number, maxGroups = 32, minChannelsPerGroup = 4): number {
  let g = Math.max(1, Math.min(maxGroups, Math.floor(channels / minChannelsPerGroup)));
  while (channels % g !== 0) g--;
  return g;
}

export interface NormOptions {
  eps?: number;
  /** Learnable per-channel weight (init 1) and bias (init 0). Default true. */
  affine?: boolean;
}

export class GroupNorm extends Module {
  readonly eps: number;
  readonly affine: boolean;
  constructor(readonly groups: number, readonly channels: number, opts: NormOptions = {}) {
    super();
    if (!Number.isInteger(groups) || !Number.isInteger(channels) || groups < 1 || channels % groups !== 0) {
      throw new TensorError('GroupNorm', `${channels} channels do not split into ${groups} groups`);
    }
    this.eps = opts.eps ?? 1e-5;
    this.affine = opts.affine ?? true;
  }

  spec(): SpecTree {
    return this.affine ? { weight: param([this.channels], ones()), bias: param([this.channels], zeros()) } : {};
  }

  /** x: [N, channels, ...] -> same shape. */
  apply(params: Params, x: Tensor, _ctx?: Ctx): Tensor {
    return this.applyWith(params, x, {});
  }

  /** apply, then the epilogue (see GroupNormEpilogue). */
  applyWith(params: Params, x: Tensor, epilogue: GroupNormEpilogue): Tensor {
    if (x.ndim < 2 || x.shape[1] !== this.channels) throw new TensorError('GroupNorm', `expected input [N, ${this.channels}, ...]`, [x.shape]);
    if (!this.affine) return groupNorm(x, this.groups, undefined, undefined, this.eps, epilogue);
    const w = getParam(params, 'weight', 'GroupNorm', [this.channels]);
    const b = getParam(params, 'bias', 'GroupNorm', [this.channels]);
    return groupNorm(x, this.groups, w, b, this.eps, epilogue);
  }
}

export class LayerNorm extends Module {
  readonly normalizedShape: readonly number[];
  readonly eps: number;
  readonly affine: boolean;
  constructor(normalizedShape: number | readonly number[], opts: NormOptions = {}) {
    super();
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
    if (!this.normalizedShape.length || !this.normalizedShape.every((d) => Number.isInteger(d) && d > 0)) {
      throw new TensorError('LayerNorm', `normalizedShape must be positive integers, got [${this.normalizedShape}]`);
    }
    this.eps = opts.eps ?? 1e-5;
    this.affine = opts.affine ?? true;
  }

  spec(): SpecTree {
    return this.affine ? { weight: param(this.normalizedShape, ones()), bias: param(this.normalizedShape, zeros()) } : {};
  }

  apply(params: Params, x: Tensor, _ctx?: Ctx): Tensor {
    if (!this.affine) return layerNorm(x, this.normalizedShape, undefined, undefined, this.eps);
    const w = getParam(params, 'weight', 'LayerNorm', this.normalizedShape);
    const b = getParam(params, 'bias', 'LayerNorm', this.normalizedShape);
    return layerNorm(x, this.normalizedShape, w, b, this.eps);
  }
}

export class PixelNorm extends Module {
  constructor(readonly axis = 1, readonly eps = 1e-8) {
    super();
  }
  spec(): SpecTree {
    return {};
  }
  apply(_params: Params, x: Tensor, _ctx?: Ctx): Tensor {
    return pixelNorm(x, this.axis, this.eps);
  }
}
