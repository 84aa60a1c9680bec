/**
 * The analytic Gaussian case (spec §9.1): data x0 ~ N(0, s² I), noise std σ_d, and
 * V(t) = s² cos² t + σ_d² sin² t, the variance of x_t. Everything is linear in x:
 *   PF-ODE velocity      dx/dt = sin t cos t (σ_d² − s²)/V · x_t
 *   consistency function f*(x_t, t) = x_t · s/√V
 * so the exact TrigFlow networks are F(y, t) = a(t)·y with
 *   diffusion:   a_DM(t) = sin t cos t (σ_d² − s²)/V
 *   consistency: a*(t)   = (cos t − s/√V)/sin t.
 * They make exact oracles for the tangent (g = 0), the samplers and training (sCD must
 * learn a*).
 */
import { Tensor, add, cos, div, mul, reshape, sin, sqrt, square, sub, matmul, zeros, random, tidy, dispose, fromArray } from '@scm/tensor';
import { adam, positionalEmbedding } from '@scm/nn';
import { SIGMA_D, type NetFn } from './trigflow.js';
import { scmStep } from './step.js';
import { WeightingHead } from './weighting.js';
import { defaultScmOptions, type ScmOptions } from './scm.js';

export const gaussianVariance = (t: Tensor, s: number, sigmaD = SIGMA_D): Tensor =>
  add(mul(square(cos(t)), s * s), mul(square(sin(t)), sigmaD * sigmaD));

function column(a: Tensor, rank: number): Tensor {
  return reshape(a, [a.shape[0], ...Array(rank - 1).fill(1)]);
}

/** The exact diffusion network: σ_d F_DM(y, t) is the exact PF-ODE velocity at x_t = σ_d y. */
export function exactDiffusionNet(s: number, sigmaD = SIGMA_D): NetFn<unknown> {
  return (_p, y, t) => mul(column(div(mul(mul(sin(t), cos(t)), sigmaD * sigmaD - s * s), gaussianVariance(t, s, sigmaD)), y.ndim), y);
}

/** The exact consistency network F*(y, t) = a*(t)·y. */
export function exactConsistencyNet(s: number, sigmaD = SIGMA_D): NetFn<unknown> {
  return (_p, y, t) => mul(column(div(sub(cos(t), div(s, sqrt(gaussianVariance(t, s, sigmaD)))), sin(t)), y.ndim), y);
}

/** a*(t) on the host. */
export function exactConsistencyCoefficient(t: number, s: number, sigmaD = SIGMA_D): number {
  return (Math.cos(t) - s / Math.sqrt(s * s * Math.cos(t) ** 2 + sigmaD * sigmaD * Math.sin(t) ** 2)) / Math.sin(t);
}

export interface GaussianScdOptions {
  s?: number;
  steps?: number;
  batch?: number;
  lr?: number;
  seed?: number;
  scm?: Partial<ScmOptions>;
}

interface CoefficientParams {
  w: Tensor;
  b: Tensor;
}

/** a_φ(t) = posemb(t, 16)·w + b: a smooth function of t, linear in its parameters. */
export function coefficient(p: CoefficientParams, t: Tensor): Tensor {
  return reshape(add(matmul(positionalEmbedding(t, p.w.shape[0]), p.w), p.b), [t.shape[0]]);
}

/**
 * sCD on 1-D Gaussian data with the exact teacher and the student F(y, t) = a_φ(t)·y
 * (spec §9.1, test 3). Returns the learned a_φ at `times` next to a*.
 */
export async function gaussianScd(times: number[], o: GaussianScdOptions = {}): Promise<{ learned: number[]; exact: number[]; losses: number[] }> {
  const s = o.s ?? 1, steps = o.steps ?? 600, batch = o.batch ?? 256, seed = o.seed ?? 0;
  const sd = o.scm?.sigmaD ?? SIGMA_D;
  const teacher = { net: exactDiffusionNet(s, sd), params: null };
  const student: NetFn<CoefficientParams> = (p, y, t) => mul(column(coefficient(p, t), y.ndim), y);
  let params: CoefficientParams = { w: zeros([16, 1]), b: zeros([1]) };
  const head = new WeightingHead({ channels: 16 });
  let phi = head.init();
  const opt = adam({ lr: o.lr ?? 1e-2 });
  let state = opt.init({ net: params, head: phi });
  const scm: ScmOptions = { ...defaultScmOptions, method: 'scd', warmupIters: Math.round(steps / 6), ...o.scm };
  const losses: number[] = [];
  const key = random.key(seed);
  for (let i = 0; i < steps; i++) {
    const x0 = random.normal(random.foldIn(key, 2 * i), [batch, 1], { std: s });
    const res = await scmStep({ net: student, params, head, phi, x0, key: random.foldIn(key, 2 * i + 1), iter: i, train: false, teacher }, scm);
    x0.dispose();
    losses.push(res.loss);
    const upd = opt.step({ net: res.gradParams, head: res.gradPhi }, state, { net: params, head: phi });
    dispose([res.gradParams, res.gradPhi]);
    ({ net: params, head: phi } = upd.params);
    state = upd.state;
  }
  const a = tidy(() => coefficient(params, fromArray(times, [times.length])));
  const learned = Array.from(await a.data());
  a.dispose();
  dispose([params, phi, state]);
  return { learned, exact: times.map((t) => exactConsistencyCoefficient(t, s, sd)), losses };
}
