/**
 * TrigFlow (Lu & Song 2025, §3 and App. B): the diffusion process, the network
 * parameterization F_θ, the consistency function f_θ, and the diffusion (velocity) loss.
 *
 *   x_t = cos(t)·x0 + sin(t)·z,   z ~ N(0, σ_d² I),   t ∈ [0, π/2]
 *   PF-ODE:      dx_t/dt = σ_d·F_θ(x_t/σ_d, c_noise(t))
 *   denoiser:    D_θ(x_t, t) = cos(t)·x_t − sin(t)·σ_d·F_θ(x_t/σ_d, c_noise(t))
 *   consistency: f_θ(x_t, t) = D_θ(x_t, t)   (the one-step DDIM solution from t to 0)
 *
 * Networks are plain functions `F(params, y, t, ctx)` of the *scaled* input y = x_t/σ_d and
 * the per-sample time t ([B]); any time transform c_noise(t) lives inside F (see
 * `withTimeTransform`), so forward-mode tangents of t flow through it.
 */
import { Tensor, cos, sin, mul, sub, add, div, reshape, square, mean, tan, log, clip, type TensorLike } from '@scm/tensor';

/** Data standard deviation: pixels in [-1, 1] (and the toy data) are scaled to std 0.5. */
export const SIGMA_D = 0.5;
/** Sampling start time: T = arctan(σ_max/σ_d) with σ_max = 80 (paper §5.2): arctan(160). */
export const T_MAX = Math.atan(80 / SIGMA_D);
/** Intermediate time of two-step sampling (paper App. G.2). */
export const T_MID = 1.1;

/** Context a network call may need: dropout key and whether dropout is on. */
export interface NetContext {
  /** Dropout randomness; the same key gives the same masks (JVP pass and gradient pass share it). */
  key?: import('@scm/tensor').random.Key;
  /** Training mode (dropout active). */
  train?: boolean;
}

/** A TrigFlow network: F(params, x_t/σ_d, t) with t of shape [B]. */
export type NetFn<P = unknown> = (params: P, y: Tensor, t: Tensor, ctx?: NetContext) => Tensor;

/** t of shape [B] reshaped to [B, 1, ..., 1] so it broadcasts against x of rank `rank`. */
export function perSample(t: Tensor, rank: number): Tensor {
  return rank <= 1 ? t : reshape(t, [t.shape[0], ...Array(rank - 1).fill(1)]);
}

/** x_t = cos(t)·x0 + sin(t)·z. */
export function addNoise(x0: Tensor, z: Tensor, t: Tensor): Tensor {
  const tb = perSample(t, x0.ndim);
  return add(mul(cos(tb), x0), mul(sin(tb), z));
}

/** The conditional velocity v_t = dx_t/dt given (x0, z): cos(t)·z − sin(t)·x0. */
export function velocityTarget(x0: Tensor, z: Tensor, t: Tensor): Tensor {
  const tb = perSample(t, x0.ndim);
  return sub(mul(cos(tb), z), mul(sin(tb), x0));
}

/** σ_d·F(x_t/σ_d, t): the PF-ODE velocity given by a network. */
export function networkVelocity<P>(net: NetFn<P>, params: P, x: Tensor, t: Tensor, sigmaD = SIGMA_D, ctx?: NetContext): Tensor {
  return mul(net(params, div(x, sigmaD), t, ctx), sigmaD);
}

/** f(x_t, t) = cos(t)·x_t − sin(t)·σ_d·F given the network output F (already evaluated). */
export function consistencyFromOutput(x: Tensor, t: Tensor, F: Tensor, sigmaD = SIGMA_D): Tensor {
  const tb = perSample(t, x.ndim);
  return sub(mul(cos(tb), x), mul(mul(sin(tb), F), sigmaD));
}

/** The consistency function f_θ(x_t, t) = cos(t)·x_t − sin(t)·σ_d·F_θ(x_t/σ_d, t) (paper Eq. 5). */
export function consistencyFunction<P>(net: NetFn<P>, params: P, x: Tensor, t: Tensor, sigmaD = SIGMA_D, ctx?: NetContext): Tensor {
  return consistencyFromOutput(x, t, net(params, div(x, sigmaD), t, ctx), sigmaD);
}
/** The denoiser (x0 prediction) is the same expression. */
export const denoise = consistencyFunction;

/**
 * The diffusion (teacher) loss: E‖σ_d F_θ(x_t/σ_d, t) − v_t‖² with the uniform weight
 * 1/σ_d² (EDM's λ(σ) written in TrigFlow), i.e. the mean over elements of (F − v_t/σ_d)².
 * Returns per-sample losses [B].
 */
export function diffusionLossPerSample(F: Tensor, v: Tensor, sigmaD = SIGMA_D): Tensor {
  const axes = [...Array(F.ndim).keys()].slice(1);
  return mean(square(sub(F, div(v, sigmaD))), axes);
}

/**
 * Time transforms c_noise(t) fed to the network. The paper's choice is the identity
 * (§4.1); 'edm' is EDM's c_noise = ln(σ)/4 with σ = σ_d·tan(t), kept for the ablation
 * (its sin(t)·∂c_noise/∂t = 1/(4 cos t) blows up as t → π/2).
 */
export type TimeTransform = 'identity' | 'edm';

export function cNoise(t: Tensor, kind: TimeTransform, sigmaD = SIGMA_D): Tensor {
  if (kind === 'identity') return t;
  // Clamp away from t = 0 so log stays finite; the sampler never asks for t = 0.
  return div(log(mul(tan(clip(t, 1e-6, Math.PI / 2 - 1e-6)), sigmaD)), 4);
}

/** Wrap a network so it sees c_noise(t) instead of t (inside any transform, so tangents chain). */
export function withTimeTransform<P>(net: NetFn<P>, kind: TimeTransform, sigmaD = SIGMA_D): NetFn<P> {
  if (kind === 'identity') return net;
  return (params, y, t, ctx) => net(params, y, cNoise(t, kind, sigmaD), ctx);
}

/** Scalar helpers on host numbers. */
export const sigmaOfTime = (t: number, sigmaD = SIGMA_D): number => sigmaD * Math.tan(t);
export const timeOfSigma = (sigma: number, sigmaD = SIGMA_D): number => Math.atan(sigma / sigmaD);

export type { TensorLike };
