/**
 * Exponential moving averages of parameters. Each update blends the current parameters
 * into the average with a decay beta that may depend on how many images training has
 * seen:   ema ← p + beta · (ema − p)     (beta = 0 copies p exactly)
 *
 *  - `emaFixed(decay)`: the classic constant beta.
 *  - `emaHalflife({ halflifeKimg, rampupRatio, batchSize })`: EDM's rule (Karras et al.
 *    2022): the average's half-life is halflifeKimg thousand images, capped at
 *    rampupRatio times the images seen so far, so early averages forget quickly:
 *      beta = 0.5 ^ (batchSize / max(min(halflifeKimg·1000, rampupRatio·nimg), 1e-8))
 *    with nimg the images seen before the batch just trained on.
 *  - `emaPower({ sigmaRel | gamma, batchSize })`: EDM2's power-function EMA (Karras et
 *    al. 2024), whose weights fall off as t^gamma: with nimg the images seen including
 *    the batch just trained on,  beta = (1 − batchSize / nimg)^(gamma + 1).
 *    sigmaRel, the width of the averaging profile relative to training time, maps to
 *    gamma through sigmaRel² = (γ+1) / ((γ+2)²(γ+3)).
 *
 * The state is { nimg, params }: images folded in so far, and the averaged parameters
 * (their own tensors, starting as a copy of the initial parameters, as EDM's deepcopy).
 */
import { Tensor, TensorError, fuse, mul } from '@scm/tensor';
import { disposeReplaced, leaves, mapLeaves, scalar } from './tree.js';

export interface EmaState<P = unknown> {
  /** Training images seen when the average was last updated. */
  nimg: number;
  params: P;
}

export interface Ema {
  readonly name: string;
  /** Images per update (each update advances nimg by this much). */
  readonly batchSize: number;
  /** The decay the next update uses, given the images seen before it. */
  beta(nimg: number): number;
  init<P>(params: P): EmaState<P>;
  /** Pure: a new state with new tensors. */
  update<P>(state: EmaState<P>, params: P): EmaState<P>;
  /** `update`, then dispose the replaced averages. */
  step<P>(state: EmaState<P>, params: P): EmaState<P>;
}

/**
 * ema ← p + beta · (ema − p), leafwise, as new tensors: one fused kernel per leaf, beta a 0-d
 * input (it changes while the EMA ramps up). beta may be given as that 0-d tensor, as a
 * replayed (`jit`) training step passes it.
 */
export function lerpTree<P>(ema: P, params: P, beta: number | Tensor): P {
  if (typeof beta === 'number' && !(beta >= 0 && beta <= 1)) throw new TensorError('ema', `beta must be in [0, 1], got ${beta}`);
  if (beta instanceof Tensor && beta.shape.length !== 0) throw new TensorError('ema', `beta must be a number or a 0-d tensor, got shape [${beta.shape}]`, [beta.shape]);
  const first = leaves(params)[0];
  const b = typeof beta === 'number' ? (first ? scalar(first, beta) : null) : beta;
  try {
    return mapLeaves('ema.update', ['ema', 'params'], [ema, params], 1, (e, p) => [fuse((ee, pp, bb) => pp.add(ee.sub(pp).mul(bb)), [e, p, b!])])[0];
  } finally {
    if (b && b !== beta) b.dispose();
  }
}

function makeEma(name: string, batchSize: number, beta: (nimg: number) => number): Ema {
  if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new TensorError(name, `batchSize must be a positive integer, got ${batchSize}`);
  const ema: Ema = {
    name,
    batchSize,
    beta,
    init<P>(params: P) {
      return { nimg: 0, params: mapLeaves(`${name}.init`, ['params'], [params], 1, (p) => [mul(p, 1)])[0] };
    },
    update<P>(state: EmaState<P>, params: P) {
      if (!state || !(Number.isInteger(state.nimg) && state.nimg >= 0)) throw new TensorError(`${name}.update`, `state.nimg must be a non-negative integer, got ${state?.nimg}`);
      return { nimg: state.nimg + batchSize, params: lerpTree(state.params, params, beta(state.nimg)) };
    },
    step<P>(state: EmaState<P>, params: P) {
      const out = ema.update(state, params);
      disposeReplaced(state.params, out.params);
      return out;
    },
  };
  return ema;
}

/** A constant decay: ema ← decay · ema + (1 − decay) · p. */
export function emaFixed(decay: number, batchSize = 1): Ema {
  if (!(decay >= 0 && decay < 1)) throw new TensorError('emaFixed', `decay must be in [0, 1), got ${decay}`);
  return makeEma('emaFixed', batchSize, () => decay);
}

/** EDM's half-life decay for an update after `nimg` images (see the file comment). */
export function halflifeBeta(nimg: number, batchSize: number, halflifeKimg: number, rampupRatio: number | null): number {
  let halflifeNimg = halflifeKimg * 1000;
  if (rampupRatio !== null) halflifeNimg = Math.min(halflifeNimg, nimg * rampupRatio);
  return 0.5 ** (batchSize / Math.max(halflifeNimg, 1e-8));
}

export interface HalflifeOptions {
  /** Half-life of the average in thousands of images (EDM: 500). */
  halflifeKimg: number;
  /** Cap the half-life at this fraction of the images seen (EDM: 0.05); null for none. */
  rampupRatio?: number | null;
  batchSize: number;
}

export function emaHalflife({ halflifeKimg, rampupRatio = 0.05, batchSize }: HalflifeOptions): Ema {
  if (!(Number.isFinite(halflifeKimg) && halflifeKimg >= 0)) throw new TensorError('emaHalflife', `halflifeKimg must be a non-negative number, got ${halflifeKimg}`);
  if (rampupRatio !== null && !(Number.isFinite(rampupRatio) && rampupRatio >= 0)) throw new TensorError('emaHalflife', `rampupRatio must be a non-negative number or null, got ${rampupRatio}`);
  return makeEma('emaHalflife', batchSize, (nimg) => halflifeBeta(nimg, batchSize, halflifeKimg, rampupRatio));
}

/** sigmaRel of the power-function profile with exponent gamma: sqrt((γ+1) / ((γ+2)²(γ+3))). */
export function gammaToSigmaRel(gamma: number): number {
  if (!(Number.isFinite(gamma) && gamma > -1)) throw new TensorError('gammaToSigmaRel', `gamma must be a finite number > -1, got ${gamma}`);
  return Math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)));
}

/**
 * The exponent gamma for a relative width sigmaRel: the largest real root of
 * γ³ + 7γ² + (16 − σ⁻²)γ + (12 − σ⁻²) = 0 (EDM2's std_to_exp). Newton's method from
 * γ = σ⁻², right of the root where the cubic is increasing and convex, converges to it
 * monotonically.
 */
export function sigmaRelToGamma(sigmaRel: number): number {
  if (!(Number.isFinite(sigmaRel) && sigmaRel > 0)) throw new TensorError('sigmaRelToGamma', `sigmaRel must be a positive number, got ${sigmaRel}`);
  const s = sigmaRel ** -2;
  const f = (g: number) => ((g + 7) * g + 16 - s) * g + 12 - s;
  const df = (g: number) => (3 * g + 14) * g + 16 - s;
  let g = Math.max(s, 1);
  for (let i = 0; i < 200; i++) {
    const next = g - f(g) / df(g);
    if (!(next < g)) break;
    g = next;
  }
  if (!(g > -1) || Math.abs(gammaToSigmaRel(g) - sigmaRel) > 1e-9 * sigmaRel) {
    throw new TensorError('sigmaRelToGamma', `sigmaRel ${sigmaRel} is outside the range of power-function profiles (it must be at most about 0.3003, the widest profile with gamma > -1)`);
  }
  return g;
}

/** EDM2's power_function_beta: the decay when training moves from tNext − tDelta to tNext images. */
export function powerBeta(gamma: number, tNext: number, tDelta: number): number {
  return (1 - tDelta / tNext) ** (gamma + 1);
}

export type PowerOptions = ({ sigmaRel: number; gamma?: undefined } | { gamma: number; sigmaRel?: undefined }) & { batchSize: number };

export function emaPower(opts: PowerOptions): Ema {
  const gamma = opts.gamma ?? sigmaRelToGamma(opts.sigmaRel!);
  if (!(Number.isFinite(gamma) && gamma > -1)) throw new TensorError('emaPower', `gamma must be a finite number > -1, got ${gamma}`);
  return makeEma('emaPower', opts.batchSize, (nimg) => powerBeta(gamma, nimg + opts.batchSize, opts.batchSize));
}
