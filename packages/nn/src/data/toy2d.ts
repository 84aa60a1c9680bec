/**
 * 2-D toy distributions for quick generative-model experiments, sampled on the host from
 * our keyed RNG (so a key gives the same points on every backend) and returned as [n, 2].
 */
import { TensorError, fromArray, random, type Tensor } from '@scm/tensor';
import type { TensorOptions } from './dataset.js';

/** n uniform draws in [0, 1) with 24 random bits each (as random.uniform). */
export function hostUniform(key: random.Key, n: number): Float64Array {
  return Float64Array.from(random.bits(key, n), (b) => (b >>> 8) / 16777216);
}

/** n standard normal draws (Box-Muller on pairs of uniforms). */
export function hostNormal(key: random.Key, n: number): Float64Array {
  const u = hostUniform(key, 2 * Math.ceil(n / 2));
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - u[i]));
    out[i] = r * Math.cos(2 * Math.PI * u[i + 1]);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u[i + 1]);
  }
  return out;
}

function checkCount(op: string, n: number): void {
  if (!(Number.isInteger(n) && n > 0)) throw new TensorError(op, `n must be a positive integer, got ${n}`);
}

function points(xy: Float64Array, n: number, opts: TensorOptions): Tensor {
  return fromArray(xy, [n, 2], { dtype: opts.dtype ?? 'float32', backend: opts.backend });
}

/** `modes` Gaussians of standard deviation `std` evenly spaced on a circle of radius `radius`. */
export function gaussianMixture(key: random.Key, n: number, { modes = 8, radius = 2, std = 0.05, ...opts }: { modes?: number; radius?: number; std?: number } & TensorOptions = {}): Tensor {
  checkCount('gaussianMixture', n);
  if (!(Number.isInteger(modes) && modes > 0)) throw new TensorError('gaussianMixture', `modes must be a positive integer, got ${modes}`);
  const [kc, kn] = random.split(key);
  const which = hostUniform(kc, n);
  const noise = hostNormal(kn, 2 * n);
  const xy = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    const angle = (2 * Math.PI * Math.floor(which[i] * modes)) / modes;
    xy[2 * i] = radius * Math.cos(angle) + std * noise[2 * i];
    xy[2 * i + 1] = radius * Math.sin(angle) + std * noise[2 * i + 1];
  }
  return points(xy, n, opts);
}

/** Uniform on the dark squares of a `cells`×`cells` checkerboard covering [-scale, scale]². */
export function checkerboard(key: random.Key, n: number, { cells = 4, scale = 2, ...opts }: { cells?: number; scale?: number } & TensorOptions = {}): Tensor {
  checkCount('checkerboard', n);
  if (!(Number.isInteger(cells) && cells >= 2)) throw new TensorError('checkerboard', `cells must be an integer >= 2, got ${cells}`);
  const u = hostUniform(key, 3 * n);
  const dark = Math.ceil((cells * cells) / 2);
  const xy = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    // The k-th dark square: row r, column c with (r + c) even.
    const k = Math.floor(u[3 * i] * dark);
    const r = Math.floor((2 * k) / cells);
    const c = ((2 * k) % cells) + (cells % 2 === 0 ? r % 2 : 0);
    const cell = (2 * scale) / cells;
    xy[2 * i] = -scale + (c + u[3 * i + 1]) * cell;
    xy[2 * i + 1] = -scale + (r + u[3 * i + 2]) * cell;
  }
  return points(xy, n, opts);
}

/** scikit-learn's two moons: two interleaved half circles, plus Gaussian noise. */
export function twoMoons(key: random.Key, n: number, { noise = 0.05, ...opts }: { noise?: number } & TensorOptions = {}): Tensor {
  checkCount('twoMoons', n);
  const [ku, kn] = random.split(key);
  const u = hostUniform(ku, 2 * n);
  const eps = hostNormal(kn, 2 * n);
  const xy = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    const t = Math.PI * u[2 * i];
    const inner = u[2 * i + 1] < 0.5;
    xy[2 * i] = (inner ? 1 - Math.cos(t) : Math.cos(t)) + noise * eps[2 * i];
    xy[2 * i + 1] = (inner ? 0.5 - Math.sin(t) : Math.sin(t)) + noise * eps[2 * i + 1];
  }
  return points(xy, n, opts);
}

/**
 * Two interleaved spiral arms (as FFJORD's "2spirals"): radius and angle grow together,
 * θ = sqrt(u) · turns · 2π, the point is θ/π · (−cos θ, sin θ) · scale, the second arm
 * mirrored through the origin; plus Gaussian noise.
 */
export function spirals(key: random.Key, n: number, { turns = 1.5, noise = 0.05, scale = 0.5, ...opts }: { turns?: number; noise?: number; scale?: number } & TensorOptions = {}): Tensor {
  checkCount('spirals', n);
  const [ku, kn] = random.split(key);
  const u = hostUniform(ku, 2 * n);
  const eps = hostNormal(kn, 2 * n);
  const xy = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    const theta = Math.sqrt(u[2 * i]) * turns * 2 * Math.PI;
    const arm = u[2 * i + 1] < 0.5 ? 1 : -1;
    const r = (theta / Math.PI) * scale;
    xy[2 * i] = arm * -Math.cos(theta) * r + noise * eps[2 * i];
    xy[2 * i + 1] = arm * Math.sin(theta) * r + noise * eps[2 * i + 1];
  }
  return points(xy, n, opts);
}
