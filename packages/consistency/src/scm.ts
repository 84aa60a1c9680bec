/**
 * Continuous-time consistency training and distillation (sCT / sCD), Algorithm 1 of
 * Lu & Song (2025, App. A), literally:
 *
 *   x0 ~ data, z ~ N(0, σ_d² I), τ ~ N(P_mean, P_std²), t = arctan(e^τ/σ_d), x_t = cos t x0 + sin t z
 *   dx_t/dt = cos t z − sin t x0                      (sCT)
 *           = σ_d F_pretrain(x_t/σ_d, t)              (sCD)
 *   r = min(1, iter/H)                                 tangent warmup
 *   g = −cos²t (σ_d F⁻ − dx_t/dt) − r (cos t sin t x_t + σ_d J)
 *       where (F⁻, J) = jvp(F_θ⁻, (x_t/σ_d, t), (cos t sin t dx_t/dt / σ_d, cos t sin t)),
 *       θ frozen (no parameter tangents), so J = cos t sin t dF⁻/dt
 *   g = g / (‖g‖ + c)                                  tangent normalization
 *   L = e^{w_φ(t)}/D ‖F_θ(x_t/σ_d, t) − F_θ⁻(x_t/σ_d, t) − g‖² − w_φ(t)
 *
 * The tangent uses the scaled-input convention ("Option A" of the spec, §2.6): the network
 * input is y = x_t/σ_d, so its tangent is cos t sin t·(dx_t/dt)/σ_d and the output tangent is
 * J = cos t sin t·dF/dt; g then needs the factor σ_d in front of J.
 *
 * Everything in g is a constant for the gradient: it is computed outside any gradient
 * transform, and the loss's second F is stopGradient(F_θ) of the same forward pass.
 */
import {
  Tensor, atan, exp, clip, cos, sin, mul, sub, add, div, square, sum, mean, sqrt, neg, tidy, tan, random,
} from '@scm/tensor';
import { jvp, stopGradient } from '@scm/autodiff';
import { consistencyFromOutput, perSample, SIGMA_D, type NetContext, type NetFn } from './trigflow.js';
import { WeightingHead, type WeightingParams } from './weighting.js';

export type TangentNormalization = 'l2' | 'rms' | 'clip' | 'none';

export interface ScmOptions {
  method: 'sct' | 'scd';
  sigmaD: number;
  /** Log-normal proposal on σ = σ_d tan t: log σ ~ N(pMean, pStd²). */
  pMean: number;
  pStd: number;
  /** Tangent warmup length H in iterations (r = min(1, iter/H)); 0 disables warmup (r = 1). */
  warmupIters: number;
  /** 'l2': g/(‖g‖ + c) (paper); 'rms': g/(‖g‖/√D + c); 'clip': clip(g, −1, 1); 'none': raw g. */
  normalization: TangentNormalization;
  normC: number;
  /** Learn w_φ(t); off: the loss is the plain ‖F − F⁻ − g‖²/D. */
  adaptiveWeighting: boolean;
  /**
   * Multiply the squared error by 1/σ = 1/(σ_d tan t) as several re-implementations do
   * (FastGen, Sana). Off by default: Algorithm 1's cos(t) already is the paper's prior
   * weighting, the extra factor counts it twice (spec §2.4).
   */
  extraInvSigmaWeight: boolean;
  /** 'jvp' (continuous time) or 'fd': the discrete-time finite difference of §2.11. */
  tangent: 'jvp' | 'fd';
  /** Number of discretization steps N for 'fd': Δt = (π/2)/N. */
  fdSteps: number;
  /**
   * With the JVP tangent: run the JVP inside the gradient and take the loss's F_θ from its
   * primal output (one forward pass; the default), or as Algorithm 1 is written, the JVP
   * then the loss's own forward pass (false; the same loss and gradients).
   */
  onePass?: boolean;
}

export const defaultScmOptions: ScmOptions = {
  method: 'sct',
  sigmaD: SIGMA_D,
  pMean: -1.0,
  pStd: 1.4,
  warmupIters: 10_000,
  normalization: 'l2',
  normC: 0.1,
  adaptiveWeighting: true,
  extraInvSigmaWeight: false,
  tangent: 'jvp',
  fdSteps: 1024,
};

const T_CLAMP = 1e-4;

/**
 * t = arctan(e^τ/σ_d), τ ~ N(P_mean, P_std²), clamped to [1e-4, π/2 − 1e-4] (as FastGen; the
 * spec, §2.10, asks for a clamp to [ε, π/2 − ε]). Returns [n].
 */
export function sampleTime(key: random.Key, n: number, pMean: number, pStd: number, sigmaD = SIGMA_D, dtype: 'float32' | 'float64' = 'float32'): Tensor {
  return tidy(() => {
    const tau = random.normal(key, [n], { mean: pMean, std: pStd, dtype });
    return clip(atan(div(exp(tau), sigmaD)), T_CLAMP, Math.PI / 2 - T_CLAMP);
  });
}

/** Sum of squares over all non-batch axes: [B, ...] → [B]. */
export function sumSquaresPerSample(x: Tensor): Tensor {
  return sum(square(x), [...Array(x.ndim).keys()].slice(1));
}

/** Per-sample tangent normalization (spec §2.7). */
export function normalizeTangent(g: Tensor, kind: TangentNormalization, c: number): Tensor {
  if (kind === 'none') return g;
  if (kind === 'clip') return clip(g, -1, 1);
  const d = g.size / g.shape[0];
  let norm = sqrt(sumSquaresPerSample(g));
  if (kind === 'rms') norm = div(norm, Math.sqrt(d));
  return div(g, perSample(add(norm, c), g.ndim));
}

/** Tangent warmup coefficient r = min(1, iter/H) (H = 0: no warmup). */
export function warmupFactor(iter: number, warmupIters: number): number {
  return warmupIters > 0 ? Math.min(1, iter / warmupIters) : 1;
}

export interface TangentInputs<P> {
  net: NetFn<P>;
  params: P;
  xt: Tensor;
  t: Tensor;
  /** dx_t/dt: cos t z − sin t x0 (sCT) or σ_d F_teacher (sCD). */
  dxdt: Tensor;
  /** Warmup coefficient r. */
  r: number;
  sigmaD?: number;
  ctx?: NetContext;
}

export interface TangentOutputs {
  /** F_θ⁻(x_t/σ_d, t) (the primal of the JVP). */
  F: Tensor;
  /** J = cos t sin t·dF_θ⁻/dt. */
  J: Tensor;
  /** g before normalization. */
  g: Tensor;
}

/**
 * The raw tangent g of Algorithm 1 from one forward-mode pass through the network with
 * respect to its inputs (y, t) only. Parameters are closed over, so they carry no tangent
 * (a symbolic zero costs nothing). F is the JVP's primal output: called with parameters a
 * gradient traces, F is F_θ itself (differentiable in θ) while g is computed from
 * stopGradient(F) and stopGradient(J), i.e. from θ⁻.
 */
export function scmTangent<P>({ net, params, xt, t, dxdt, r, sigmaD = SIGMA_D, ctx }: TangentInputs<P>): TangentOutputs {
  return tidy(() => {
    const tb = perSample(t, xt.ndim);
    const cs = mul(cos(t), sin(t)); // [B]
    const csb = perSample(cs, xt.ndim);
    const y = div(xt, sigmaD);
    const vy = div(mul(csb, dxdt), sigmaD);
    const [F, J] = jvp((yy: Tensor, tt: Tensor) => net(params, yy, tt, ctx), [y, t], [vy, cs]) as unknown as [Tensor, Tensor];
    // θ⁻: when params are traced by a gradient (the one-pass step), g is still a constant.
    const g = gFromJvp(xt, tb, stopGradient(F), stopGradient(J), dxdt, r, sigmaD);
    return { F, J, g };
  });
}

/** g = −cos²t (σ_d F − dx/dt) − r (cos t sin t x_t + σ_d J), with tb broadcastable to x_t. */
export function gFromJvp(xt: Tensor, tb: Tensor, F: Tensor, J: Tensor, dxdt: Tensor, r: number, sigmaD = SIGMA_D): Tensor {
  const c = cos(tb), s = sin(tb);
  const first = mul(neg(square(c)), sub(mul(F, sigmaD), dxdt));
  const second = add(mul(mul(c, s), xt), mul(J, sigmaD));
  return r === 1 ? sub(first, second) : sub(first, mul(second, r));
}

export interface FdTangentInputs<P> {
  net: NetFn<P>;
  params: P;
  xt: Tensor;
  t: Tensor;
  /**
   * x_{t'} at the earlier time t' (same data and noise for sCT: cos t' x0 + sin t' z; a
   * teacher DDIM step for sCD, see `ddimStepBack`).
   */
  xPrev: Tensor;
  tPrev: Tensor;
  sigmaD?: number;
  ctx?: NetContext;
}

/**
 * The discrete-time tangent of spec §2.11 (paper App. E):
 *   Δ = (f⁻(x_t, t) − f⁻(x_{t'}, t')) / sin(t − t'),   g = cos(t)·Δ
 * which tends to cos t·df/dt (the r = 1 tangent) as t' → t. Warmup does not apply to this
 * form (it is the r = 1 target); see RESULTS.md.
 */
export function scmTangentFiniteDifference<P>({ net, params, xt, t, xPrev, tPrev, sigmaD = SIGMA_D, ctx }: FdTangentInputs<P>): TangentOutputs {
  return tidy(() => {
    const F = net(params, div(xt, sigmaD), t, ctx);
    const f = consistencyFromOutput(xt, t, F, sigmaD);
    const Fp = net(params, div(xPrev, sigmaD), tPrev, ctx);
    const fp = consistencyFromOutput(xPrev, tPrev, Fp, sigmaD);
    const tb = perSample(t, xt.ndim);
    const dtb = perSample(sub(t, tPrev), xt.ndim);
    const g = mul(cos(tb), div(sub(f, fp), sin(dtb)));
    // J is not formed in the discrete form; report the finite-difference slope of F instead.
    const J = mul(mul(cos(tb), sin(tb)), div(sub(F, Fp), dtb));
    return { F, J, g };
  });
}

/** One DDIM step from t back to t' < t with the velocity v = σ_d F(x_t/σ_d, t): x_{t'} = cos(t − t')·x_t − sin(t − t')·v. */
export function ddimStepBack(xt: Tensor, t: Tensor, tPrev: Tensor, velocity: Tensor): Tensor {
  const d = perSample(sub(t, tPrev), xt.ndim);
  return sub(mul(cos(d), xt), mul(sin(d), velocity));
}

/** t' = max(t − (π/2)/N, 0) for the discrete-time tangent. */
export function previousTime(t: Tensor, fdSteps: number): Tensor {
  return clip(sub(t, Math.PI / 2 / fdSteps), 0, Math.PI / 2);
}

export interface ScmLossInputs<P> {
  net: NetFn<P>;
  /** Student parameters θ (traced by the gradient transform). */
  params: P;
  /** Weighting head parameters φ (traced), ignored without adaptive weighting. */
  phi: WeightingParams;
  head: WeightingHead;
  xt: Tensor;
  t: Tensor;
  /** Normalized tangent g (a constant). */
  g: Tensor;
  opts: Pick<ScmOptions, 'sigmaD' | 'adaptiveWeighting' | 'extraInvSigmaWeight'>;
  ctx?: NetContext;
}

/**
 * L(θ, φ) = mean_b [ e^{w_φ(t)}/D ‖F_θ − F_θ⁻ − g‖² − w_φ(t) ], with F_θ⁻ = stopGradient(F_θ)
 * (the same forward pass, so F_θ − F_θ⁻ = 0 and ∂L/∂F_θ = −2e^w/D·g).
 */
export function scmLoss<P>({ net, params, phi, head, xt, t, g, opts, ctx }: ScmLossInputs<P>): Tensor {
  return scmLossOfOutput(net(params, div(xt, opts.sigmaD), t, ctx), { phi, head, t, g, opts });
}

/** scmLoss given the student's output F_θ(x_t/σ_d, t) (traced in θ). */
export function scmLossOfOutput(F: Tensor, { phi, head, t, g, opts }: Pick<ScmLossInputs<unknown>, 'phi' | 'head' | 't' | 'g' | 'opts'>): Tensor {
  const sigmaD = opts.sigmaD;
  const Fminus = stopGradient(F);
  const d = F.size / F.shape[0];
  let err = div(sumSquaresPerSample(sub(sub(F, Fminus), g)), d); // ‖·‖²/D, [B]
  if (opts.extraInvSigmaWeight) err = div(err, mul(tan(t), sigmaD));
  if (!opts.adaptiveWeighting) return mean(err);
  const w = head.apply(phi, t);
  return mean(sub(mul(exp(w), err), w));
}
