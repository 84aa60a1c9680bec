/**
 * Samplers. Consistency models: multistep consistency sampling (Song et al. 2023, Alg. 1)
 * in TrigFlow (paper §5.2): start at T = arctan(80/σ_d) from z ~ N(0, σ_d² I), apply f_θ,
 * then for each further time t_i renoise with fresh noise and apply f_θ again.
 * Diffusion teachers: DDIM (paper Eq. 26; first order) and EDM's Heun (second order,
 * the paper's "DPM-Solver-2S with Heun intermediate steps, exactly equivalent to EDM Heun"),
 * both on EDM's Karras σ grid mapped to t = arctan(σ/σ_d).
 */
import { Tensor, add, clip, div, mul, sub, tidy, full, random, type random as R } from '@scm/tensor';
import { consistencyFunction, SIGMA_D, T_MAX, T_MID, type NetFn } from './trigflow.js';

type Key = R.Key;

/** A constant time vector [B] on x's backend. */
function timeVector(x: Tensor, t: number): Tensor {
  return full([x.shape[0]], t, { dtype: x.dtype, backend: x.backend });
}

/** Initial noise z ~ N(0, σ_d² I). */
export function initialNoise(key: Key, shape: number[], sigmaD = SIGMA_D, dtype: 'float32' | 'float64' = 'float32'): Tensor {
  return random.normal(key, shape, { std: sigmaD, dtype });
}

/** Default times for n-step consistency sampling: T, then n−1 times evenly spaced from t_mid = 1.1 down. */
export function consistencyTimes(steps: number, tMid = T_MID, tMax = T_MAX): number[] {
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`consistencyTimes: steps must be a positive integer, got ${steps}`);
  const rest = Array.from({ length: steps - 1 }, (_, k) => (tMid * (steps - 1 - k)) / (steps - 1));
  return [tMax, ...rest];
}

/**
 * Multistep consistency sampling. `times` is decreasing, times[0] the start (x = z there).
 * 1 step: [T]; 2 steps: [T, 1.1]. With `clipDenoised` = c, each intermediate estimate of x0
 * is clipped to [−c, c] (the data range) before it is noised again, as the consistency
 * models' reference sampler does (`clip_denoised`); the last one is returned as it is.
 */
export function sampleConsistency<P>(net: NetFn<P>, params: P, z: Tensor, times: readonly number[], key: Key, sigmaD = SIGMA_D, clipDenoised?: number): Tensor {
  let x0 = tidy(() => consistencyFunction(net, params, z, timeVector(z, times[0]), sigmaD));
  for (let i = 1; i < times.length; i++) {
    const t = times[i];
    const next = tidy(() => {
      const noise = random.normal(random.foldIn(key, i), [...z.shape], { std: sigmaD, dtype: z.dtype as 'float32' | 'float64', backend: z.backend });
      const x = clipDenoised === undefined ? x0 : clip(x0, -clipDenoised, clipDenoised);
      const xt = add(mul(x, Math.cos(t)), mul(noise, Math.sin(t)));
      return consistencyFunction(net, params, xt, timeVector(z, t), sigmaD);
    });
    x0.dispose();
    x0 = next;
  }
  return x0;
}

/**
 * EDM's time grid σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i < N, then 0,
 * as TrigFlow times t_i = arctan(σ_i/σ_d). Returns N + 1 times ending at 0.
 */
export function karrasTimes(steps: number, sigmaD = SIGMA_D, sigmaMin = 0.002, sigmaMax = 80, rho = 7): number[] {
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`karrasTimes: steps must be a positive integer, got ${steps}`);
  const a = Math.pow(sigmaMax, 1 / rho), b = Math.pow(sigmaMin, 1 / rho);
  const sig = Array.from({ length: steps }, (_, i) => Math.pow(steps === 1 ? a : a + (i / (steps - 1)) * (b - a), rho));
  return [...sig.map((s) => Math.atan(s / sigmaD)), 0];
}

/** DDIM from t_0 (x = z) through `times` to 0: x_t = cos(s−t)·x_s − sin(s−t)·σ_d·F(x_s/σ_d, s). NFE = steps. */
export function sampleDDIM<P>(net: NetFn<P>, params: P, z: Tensor, times: readonly number[], sigmaD = SIGMA_D): Tensor {
  let x = z;
  for (let i = 0; i + 1 < times.length; i++) {
    const s = times[i], t = times[i + 1];
    const next = tidy(() => {
      const v = mul(net(params, div(x, sigmaD), timeVector(x, s)), sigmaD);
      return sub(mul(x, Math.cos(s - t)), mul(v, Math.sin(s - t)));
    });
    if (x !== z) x.dispose();
    x = next;
  }
  return x;
}

/**
 * EDM's deterministic Heun sampler (Karras et al. 2022, Alg. 1 without churn) in TrigFlow
 * coordinates: x_σ = x_t / cos(t), σ = σ_d tan(t), dx_σ/dσ = (x_σ − D(x_σ, σ))/σ with the
 * TrigFlow denoiser D. The last step (to σ = 0) is an Euler step. NFE = 2·steps − 1.
 */
export function sampleHeun<P>(net: NetFn<P>, params: P, z: Tensor, times: readonly number[], sigmaD = SIGMA_D): Tensor {
  const sigmaOf = (t: number) => sigmaD * Math.tan(t);
  // D(x_σ, σ) through the TrigFlow denoiser at x_t = cos(t)·x_σ.
  const denoiser = (xs: Tensor, t: number) => consistencyFunction(net, params, mul(xs, Math.cos(t)), timeVector(xs, t), sigmaD);
  let xs = tidy(() => div(z, Math.cos(times[0])));
  for (let i = 0; i + 1 < times.length; i++) {
    const ti = times[i], tn = times[i + 1];
    const si = sigmaOf(ti), sn = tn === 0 ? 0 : sigmaOf(tn);
    const next = tidy(() => {
      const d = div(sub(xs, denoiser(xs, ti)), si);
      const euler = add(xs, mul(d, sn - si));
      if (sn === 0) return euler;
      const d2 = div(sub(euler, denoiser(euler, tn)), sn);
      return add(xs, mul(add(d, d2), (sn - si) / 2));
    });
    xs.dispose();
    xs = next;
  }
  return xs; // σ = 0: x_σ = x_0
}
