/**
 * Numbers for "are the generated digits recognizable?" (spec §9.4 suggests an MNIST-
 * classifier feature FID): a small CNN trained on the MNIST training split judges samples.
 *  - confident: the fraction of samples the classifier assigns to one class with
 *    probability ≥ 0.9 (real held-out digits set the reference);
 *  - classes: how the samples spread over the ten digits (the smallest class share);
 *  - FD: the Fréchet distance between classifier features of samples and of held-out
 *    digits, |μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2(Σ₁^½ Σ₂ Σ₁^½)^½).
 */
import { Tensor, tidy, softmax, max, argmax, dispose, clip, div } from '@scm/tensor';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTrained } from './train.js';
import { buildData } from './setup.js';
import { generateMany, type SampleSpec } from './evaluate.js';
import { Classifier, loadClassifier, trainClassifier, loadMnist, imagesToTensor, type ImageDataset, type Params } from '@scm/nn';

/** MNIST at 28×28 or averaged over 2×2 blocks to 14×14, as uint8 pixels. */
export function mnistDataset(split: 'train' | 'test', size: 28 | 14): ImageDataset {
  const ds = loadMnist({ split });
  if (size === 28) return ds;
  const pixels = new Uint8Array(ds.count * 14 * 14);
  for (let n = 0; n < ds.count; n++)
    for (let y = 0; y < 14; y++)
      for (let x = 0; x < 14; x++) {
        const at = (yy: number, xx: number) => ds.pixels[n * 784 + yy * 28 + xx];
        pixels[n * 196 + y * 14 + x] = Math.round((at(2 * y, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x) + at(2 * y + 1, 2 * x + 1)) / 4);
      }
  return { ...ds, name: `${ds.name} 14×14`, height: 14, width: 14, pixels };
}

/** The committed 14×14 judge (trained by `scm experiment digits --data mnist:14`, 95.5 % test accuracy). */
export const MNIST14_JUDGE = fileURLToPath(new URL('../assets/mnist14-judge.safetensors', import.meta.url));

/** Where the judge for a size is: runs/mnist<size>-judge/ when trained here, else the committed 14×14 one. */
export function defaultJudgePath(size: 28 | 14): string {
  const trained = join('runs', `mnist${size}-judge`, 'classifier.safetensors');
  return size === 14 && !existsSync(trained) ? MNIST14_JUDGE : trained;
}

/** Train the judge: conv 3×3 (32) → ReLU → pool → Linear(64) → Linear(10), a few epochs. */
export async function trainDigitClassifier(outDir: string, size: 28 | 14, log: (l: string) => void = console.log): Promise<string> {
  const config = { inChannels: 1, imageSize: size, numClasses: 10, channels: size === 28 ? [16, 32] : [32], hidden: 64 };
  const res = await trainClassifier({ train: mnistDataset('train', size), test: mnistDataset('test', size), outDir, config, epochs: 4, batchSize: 64, lr: 2e-3, flip: false, log });
  dispose(res.params);
  return `${outDir}/classifier.safetensors`;
}

/** Eigen-decomposition of a symmetric matrix (cyclic Jacobi); returns eigenvalues and column eigenvectors. */
export function symmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const A = Float64Array.from(a);
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += A[p * n + q] ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++)
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (A[q * n + q] - A[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = A[k * n + p], akq = A[k * n + q];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k], aqk = A[q * n + k];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = V[k * n + p], vkq = V[k * n + q];
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
  }
  return { values: Float64Array.from({ length: n }, (_, i) => A[i * n + i]), vectors: V };
}

/** √M of a symmetric positive semi-definite matrix (negative eigenvalues from rounding clamp to 0). */
export function sqrtPsd(m: Float64Array, n: number): Float64Array {
  const { values, vectors } = symmetricEigen(m, n);
  const out = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const r = Math.sqrt(Math.max(0, values[k]));
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[i * n + j] += vectors[i * n + k] * r * vectors[j * n + k];
  }
  return out;
}

function meanCov(x: ArrayLike<number>, rows: number, d: number): { mu: Float64Array; cov: Float64Array } {
  const mu = new Float64Array(d), cov = new Float64Array(d * d);
  for (let r = 0; r < rows; r++) for (let i = 0; i < d; i++) mu[i] += x[r * d + i] / rows;
  for (let r = 0; r < rows; r++)
    for (let i = 0; i < d; i++) {
      const a = x[r * d + i] - mu[i];
      for (let j = i; j < d; j++) cov[i * d + j] += (a * (x[r * d + j] - mu[j])) / (rows - 1);
    }
  for (let i = 0; i < d; i++) for (let j = 0; j < i; j++) cov[i * d + j] = cov[j * d + i];
  return { mu, cov };
}

function matmulSq(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) { const v = a[i * n + k]; if (v) for (let j = 0; j < n; j++) out[i * n + j] += v * b[k * n + j]; }
  return out;
}

/** Fréchet distance between two feature sets (rows of dimension d). */
export function frechetDistance(x: ArrayLike<number>, nx: number, y: ArrayLike<number>, ny: number, d: number): number {
  const a = meanCov(x, nx, d), b = meanCov(y, ny, d);
  let diff = 0, trace = 0;
  for (let i = 0; i < d; i++) diff += (a.mu[i] - b.mu[i]) ** 2;
  for (let i = 0; i < d; i++) trace += a.cov[i * d + i] + b.cov[i * d + i];
  const s1 = sqrtPsd(a.cov, d);
  const inner = sqrtPsd(matmulSq(matmulSq(s1, b.cov, d), s1, d), d);
  for (let i = 0; i < d; i++) trace -= 2 * inner[i * d + i];
  return diff + trace;
}

export interface DigitJudge {
  model: Classifier;
  params: Params;
  /** Features of held-out real digits (the FD reference) and their confident fraction. */
  reference: { features: Float32Array | Float64Array; count: number; confident: number };
}

async function judgeBatch(j: Pick<DigitJudge, 'model' | 'params'>, images: Tensor): Promise<{ features: Float32Array | Float64Array; top: Float32Array | Float64Array; label: Int32Array | Float32Array }> {
  const [f, p, l] = tidy(() => {
    const feats = j.model.features(j.params, images);
    const probs = softmax(j.model.head.apply(j.params.head as Params, feats), -1);
    return [feats, max(probs, 1), argmax(probs, 1)];
  });
  const out = { features: (await f.data()) as Float32Array, top: (await p.data()) as Float32Array, label: (await l.data()) as Int32Array };
  dispose([f, p, l]);
  return out;
}

/** Load the judge and embed `n` held-out digits as the reference. */
export async function loadDigitJudge(path: string, n = 1000): Promise<DigitJudge> {
  const { model, params } = await loadClassifier(path);
  const size = model.config.imageSize as 28 | 14;
  const x = evenlySpaced(mnistDataset('test', size), n);
  const count = x.shape[0];
  const r = await judgeBatch({ model, params }, x);
  x.dispose();
  return { model, params, reference: { features: r.features, count, confident: fraction(r.top, (v) => v >= 0.9) } };
}

function fraction(a: ArrayLike<number>, pred: (v: number) => boolean): number {
  let k = 0;
  for (let i = 0; i < a.length; i++) if (pred(a[i])) k++;
  return k / a.length;
}

export interface DigitScores {
  confident: number;
  minClassShare: number;
  fd: number;
}

/** n training digits (evenly spaced over the split) as a tensor in [−1, 1]: the real-data row of a table. */
export function realDigits(size: 28 | 14, n: number): Tensor {
  return evenlySpaced(mnistDataset('train', size), n);
}

/**
 * min(n, count) images evenly spaced over a dataset (so every class of a class-grouped split
 * is represented), as a [N, C, H, W] tensor in [−1, 1].
 */
export function evenlySpaced(ds: ImageDataset, n: number): Tensor {
  const count = Math.min(n, ds.count);
  return imagesToTensor(ds, Array.from({ length: count }, (_, k) => Math.floor((k * ds.count) / count)));
}

/** Judge generated images [N, 1, S, S] with values in [−1, 1]. */
export async function scoreDigits(j: DigitJudge, images: Tensor): Promise<DigitScores> {
  const r = await judgeBatch(j, images);
  const n = images.shape[0];
  const counts = new Array(10).fill(0);
  for (let i = 0; i < n; i++) counts[r.label[i]]++;
  const d = j.model.config.hidden;
  return { confident: fraction(r.top, (v) => v >= 0.9), minClassShare: Math.min(...counts) / n, fd: frechetDistance(r.features, n, j.reference.features, j.reference.count, d) };
}

/** Score a run's EMA weights with each sampler: n samples (drawn 100 at a time) judged against held-out digits. */
export async function evaluateDigitsRun(j: DigitJudge, ckpt: string, specs: SampleSpec[], n: number, seed: number): Promise<Record<string, DigitScores>> {
  const trained = await loadTrained(ckpt, 'ema');
  const data = await buildData(trained.config);
  const out: Record<string, DigitScores> = {};
  for (const spec of specs) {
    const x = generateMany(trained.net, trained.params, data.sampleShape, n, spec.sampler, seed, trained.config.sigmaD, 100);
    const all = tidy(() => clip(div(x, data.range), -1, 1));
    x.dispose();
    out[spec.name] = await scoreDigits(j, all);
    all.dispose();
  }
  dispose(trained.params);
  return out;
}
