/**
 * Using models trained in other formulations as TrigFlow networks (paper App. B.2,
 * Eq. 29-30). A process x'_{t'} = α_{t'}·x0 + σ_{t'}·ε, ε ~ N(0, I), matches TrigFlow at
 *   tan(t) = σ_{t'} / (σ_d·α_{t'}),   x'_{t'} = x_t·sqrt(α_{t'}² + σ_{t'}²/σ_d²).
 * From the other model's clean-data estimate x̂0 the TrigFlow output is
 *   F = (cos(t)·x_t − x̂0) / (σ_d·sin(t)),
 * so σ_d·F = (cos t·x_t − x̂0)/sin t is the TrigFlow PF-ODE velocity.
 *
 * The wrapped function is an ordinary NetFn: it can be JVP'd (tangents of t chain through
 * the conversion, as FastGen does), used as an sCD teacher, or sampled. Note (paper §4.1):
 * a converted EDM network keeps its own time input (c_noise = ln(σ)/4), the unstable
 * transform the paper replaces; this conversion does not change that.
 */
import { Tensor, cos, sin, tan, mul, sub, div, sqrt, add, square, clip } from '@scm/tensor';
import { perSample, SIGMA_D, type NetContext, type NetFn } from './trigflow.js';

/** x̂0 = D(x_σ, σ) with x_σ = x0 + σ·ε (EDM, Karras et al. 2022); σ has shape [B]. */
export type EdmDenoiser<P> = (params: P, xSigma: Tensor, sigma: Tensor, ctx?: NetContext) => Tensor;

/**
 * Rectified-flow / flow-matching velocity v̂(x_s, s) ≈ ε − x0 for x_s = (1−s)·x0 + s·ε,
 * ε ~ N(0, I), s ∈ [0, 1]; s has shape [B].
 */
export type FlowVelocity<P> = (params: P, xs: Tensor, s: Tensor, ctx?: NetContext) => Tensor;

// Keep t inside (0, π/2) so σ = σ_d tan t and 1/sin t stay finite.
const EPS_T = 1e-7;

function outputFromX0(xt: Tensor, t: Tensor, x0hat: Tensor, sigmaD: number): Tensor {
  const tb = perSample(t, xt.ndim);
  return div(sub(mul(cos(tb), xt), x0hat), mul(sin(tb), sigmaD));
}

/**
 * EDM → TrigFlow (α = 1, σ_{t'} = σ): t = arctan(σ/σ_d), x_t = cos(t)·x_σ.
 * The EDM denoiser is evaluated at x_σ = x_t / cos(t), σ = σ_d·tan(t).
 */
export function edmToTrigFlow<P>(denoiser: EdmDenoiser<P>, sigmaD = SIGMA_D): NetFn<P> {
  return (params, y, t, ctx) => {
    const tc = clip(t, EPS_T, Math.PI / 2 - EPS_T);
    const xt = mul(y, sigmaD);
    const tb = perSample(tc, xt.ndim);
    const sigma = mul(tan(tc), sigmaD);
    const x0hat = denoiser(params, div(xt, cos(tb)), sigma, ctx);
    return outputFromX0(xt, tc, x0hat, sigmaD);
  };
}

/**
 * Flow matching → TrigFlow (α = 1−s, σ_{t'} = s): tan(t) = s/(σ_d(1−s)), so
 * s = σ_d tan t / (1 + σ_d tan t); x_s = x_t·sqrt((1−s)² + s²/σ_d²); x̂0 = x_s − s·v̂.
 */
export function flowMatchingToTrigFlow<P>(velocity: FlowVelocity<P>, sigmaD = SIGMA_D): NetFn<P> {
  return (params, y, t, ctx) => {
    const tc = clip(t, EPS_T, Math.PI / 2 - EPS_T);
    const xt = mul(y, sigmaD);
    const st = mul(tan(tc), sigmaD);
    const s = div(st, add(st, 1));
    const sb = perSample(s, xt.ndim);
    const scale = sqrt(add(square(sub(1, sb)), div(square(sb), sigmaD * sigmaD)));
    const xs = mul(xt, scale);
    const x0hat = sub(xs, mul(sb, velocity(params, xs, s, ctx)));
    return outputFromX0(xt, tc, x0hat, sigmaD);
  };
}
