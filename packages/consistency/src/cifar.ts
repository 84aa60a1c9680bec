/**
 * `scm experiment cifar`: a TrigFlow diffusion teacher, sCT initialized from it and sCD
 * distilled from it on the CIFAR-10 data in ../shared/data (or any CIFAR-10 binary source),
 * judged by the Fréchet distance between features of the CIFAR-10 classifier that
 * `@scm/nn` trains (its 128-wide penultimate layer). It is a Fréchet distance in a small
 * classifier's features, not FID (FID uses Inception-v3 features); the numbers compare
 * models with one another, not with the paper's FIDs.
 *
 * At `cifar10@16` the models see 2×2-averaged 16×16 images; samples are enlarged 2×
 * (nearest) for the classifier, and the real reference images go through the same
 * averaging and enlargement, so the distance measures the generator, not the resolution.
 */
import { writeFile, mkdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { Tensor, tidy, dispose, clip, slice, upsampleNearest, avgPool2d, add, mul, full, random } from '@scm/tensor';
import { loadCifar10, loadClassifier, type Classifier, type Params } from '@scm/nn';
import { defaultConfig, useBackend, type RunConfig } from './setup.js';
import { loadTrained } from './train.js';
import { generateMany, type SampleSpec } from './evaluate.js';
import { consistencyTimes } from './samplers.js';
import { T_MAX, T_MID, consistencyFunction } from './trigflow.js';
import { frechetDistance, evenlySpaced } from './digits.js';
import { ensureRun } from './experiments.js';

export interface CifarOptions {
  out: string;
  /** cifar10:PATH or cifar10@16:PATH */
  data: string;
  classifier: string;
  model: string;
  backend: RunConfig['backend'];
  batch: number;
  teacherSteps: number;
  steps: number;
  warmup: number;
  teacherLr: number;
  /** keep every N-th step's checkpoint of each run (checkpoint-STEP.safetensors), to judge the stages later */
  keepEvery: number | null;
  /** samples per row of the table (and real images in the reference) */
  samples: number;
  heunSteps: number;
  /** sCT's dropout rate (the paper's CIFAR-10 recipe: 0.20; sCD has none); default 0, as in the tables made before it was an option */
  sctDropout?: number;
  /** A trained teacher (a run's checkpoint or an exported model) used instead of training one in <out>/teacher */
  teacherFile?: string;
  log: (line: string) => void;
}

/** Features of the classifier for images [N, 3, S, S] in [−1, 1], enlarged to its input size; in chunks. */
async function features(model: Classifier, params: Params, images: Tensor, chunk = 250): Promise<Float32Array> {
  const n = images.shape[0];
  const size = model.config.imageSize;
  const out = new Float32Array(n * model.config.hidden);
  for (let i = 0; i < n; i += chunk) {
    const f = tidy(() => {
      const x = clip(slice(images, [{ start: i, stop: Math.min(n, i + chunk) }]), -1, 1);
      const factor = size / x.shape[3];
      return model.features(params, factor > 1 ? upsampleNearest(x, factor) : x);
    });
    out.set((await f.data()) as Float32Array, i * model.config.hidden);
    f.dispose();
  }
  return out;
}

/** n real images of a split (evenly spaced over it), averaged down by `pool`, in [−1, 1]. */
async function realImages(source: string, split: 'train' | 'test', n: number, pool: number): Promise<Tensor> {
  const x = evenlySpaced(await loadCifar10(source, split), n);
  if (pool === 1) return x;
  const y = avgPool2d(x, pool);
  x.dispose();
  return y;
}

const CM: SampleSpec['sampler'][] = [{ kind: 'cm', times: consistencyTimes(1) }, { kind: 'cm', times: consistencyTimes(2) }];

/** The judge of CIFAR-10 samples: the classifier, and the features of n real test images. */
export interface CifarJudge {
  model: Classifier;
  params: Params;
  /** n: samples per distance (and real images in the reference) */
  n: number;
  /** the shape of one image the generators make, e.g. [3, 16, 16] */
  shape: number[];
  reference: Float32Array;
  /** the distance between n real training images and the reference: the floor at this n */
  floor: number;
}

/** Split `cifar10:PATH` / `cifar10@16:PATH` into the source and the pooling factor. */
export function cifarData(data: string): { source: string; pool: number } {
  const at = data.indexOf(':');
  const kind = data.slice(0, at);
  if (at < 0 || (kind !== 'cifar10' && kind !== 'cifar10@16')) throw new Error(`expected CIFAR-10 data as cifar10:PATH or cifar10@16:PATH, got "${data}"`);
  return { source: data.slice(at + 1), pool: kind === 'cifar10' ? 1 : 2 };
}

export async function loadCifarJudge(classifier: string, data: string, n: number): Promise<CifarJudge> {
  const { source, pool } = cifarData(data);
  const { model, params } = await loadClassifier(classifier);
  const ref = await realImages(source, 'test', n, pool);
  const real = await realImages(source, 'train', n, pool);
  const reference = await features(model, params, ref);
  const floor = frechetDistance(await features(model, params, real), real.shape[0], reference, ref.shape[0], model.config.hidden);
  const judge = { model, params, n: Math.min(ref.shape[0], real.shape[0]), shape: ref.shape.slice(1), reference, floor };
  dispose([ref, real]);
  return judge;
}

/** Fréchet distance of n samples of a run's EMA weights to the reference, for each sampler. */
export async function judgeCifarRun(j: CifarJudge, ckpt: string, samplers: SampleSpec['sampler'][], seed = 7, log?: (l: string) => void): Promise<number[]> {
  const trained = await loadTrained(ckpt, 'ema');
  const out: number[] = [];
  for (const s of samplers) {
    const t0 = Date.now();
    const x = generateMany(trained.net, trained.params, j.shape, j.n, s, seed, trained.config.sigmaD, 250);
    const f = await features(j.model, j.params, x);
    x.dispose();
    out.push(frechetDistance(f, j.n, j.reference, j.n, j.model.config.hidden));
    log?.(`  ${ckpt} ${s.kind} ${s.kind === 'heun' ? s.steps : s.times.length - (s.kind === 'ddim' ? 1 : 0)} steps: ${out.at(-1)!.toFixed(2)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
  dispose(trained.params);
  return out;
}

/**
 * How well a run's f(·, t) denoises real images: n training images (evenly spaced, averaged
 * like the run's data) noised to each time t (fresh noise from `seed`), mapped by the
 * consistency function f once, then judged like samples. A perfect consistency model
 * returns images as real as the data at every t; a posterior-mean denoiser returns blurred
 * ones, further from the data the larger t. The gap explains 2-step samples: their second
 * step is this map applied to a re-noised 1-step sample.
 */
export async function judgeCifarDenoising(j: CifarJudge, ckpt: string, times: readonly number[], seed = 7): Promise<number[]> {
  const trained = await loadTrained(ckpt, 'ema');
  const { source, pool } = cifarData(trained.config.data);
  const real = await realImages(source, 'train', j.n, pool);
  const out: number[] = [];
  for (const [k, t] of times.entries()) {
    const y = tidy(() => {
      const z = random.normal(random.foldIn(random.key(seed), k), [...real.shape], { std: trained.config.sigmaD });
      const xt = add(mul(real, Math.cos(t)), mul(z, Math.sin(t)));
      return consistencyFunction(trained.net, trained.params, xt, full([real.shape[0]], t), trained.config.sigmaD);
    });
    const f = await features(j.model, j.params, y);
    y.dispose();
    out.push(frechetDistance(f, j.n, j.reference, j.n, j.model.config.hidden));
  }
  dispose([real, trained.params]);
  return out;
}

/**
 * Train what is missing (teacher, then sCT and sCD), then the table. With `only`, train just
 * those runs (after the teacher) and stop: two processes can train sCT and sCD side by side.
 */
export async function cifarExperiment(o: CifarOptions, only?: string[]): Promise<string> {
  await useBackend(o.backend);
  const { source, pool } = cifarData(o.data);
  const common: Partial<RunConfig> = { data: o.data, model: o.model, backend: o.backend, batch: o.batch, logEvery: 5, checkpointEvery: 25, sampleEvery: 100, heunSteps: o.heunSteps, evalSamples: 64, keepEvery: o.keepEvery };
  const teacher = o.teacherFile ?? await ensureRun(join(o.out, 'teacher'), { ...defaultConfig('diffusion'), ...common, lr: o.teacherLr, steps: o.teacherSteps }, o.log);
  // The consistency models start from the teacher's EMA weights (paper §3.4); a short tangent warmup.
  const runs = {
    sct: () => ensureRun(join(o.out, 'sct'), { ...defaultConfig('sct'), ...common, steps: o.steps, init: teacher, warmupIters: o.warmup, dropout: o.sctDropout ?? 0 }, o.log),
    scd: () => ensureRun(join(o.out, 'scd'), { ...defaultConfig('scd'), ...common, steps: o.steps, teacher, warmupIters: o.warmup }, o.log),
  };
  if (only) {
    for (const name of only) if (name in runs) await runs[name as keyof typeof runs]();
    return `trained ${[...(o.teacherFile ? [] : ['teacher']), ...only].join(', ')} in ${o.out}`;
  }
  const sct = await runs.sct();
  const scd = await runs.scd();

  o.log(`embedding ${o.samples} real test images`);
  const judge = await loadCifarJudge(o.classifier, o.data, o.samples);
  const row = (label: string, v: number[]) => `| ${label} | ${[0, 1, 2].map((i) => (v[i] === undefined ? '' : v[i].toFixed(2))).join(' | ')} |`;
  const rows = [row('real training images (the floor at this sample size)', [judge.floor])];
  const teacherSamplers: SampleSpec['sampler'][] = [{ kind: 'ddim', times: [T_MAX, 0] }, { kind: 'ddim', times: [T_MAX, T_MID, 0] }, { kind: 'heun', steps: o.heunSteps }];
  rows.push(row(`diffusion teacher: DDIM 1 step, DDIM 2 steps, Heun ${o.heunSteps} steps (NFE ${2 * o.heunSteps - 1})`, await judgeCifarRun(judge, teacher, teacherSamplers, 7, o.log)));
  rows.push(row('sCT (initialized from the teacher)', await judgeCifarRun(judge, sct, CM, 7, o.log)));
  rows.push(row('sCD (from the teacher)', await judgeCifarRun(judge, scd, CM, 7, o.log)));
  dispose(judge.params);

  const res = pool === 1 ? '32×32' : '16×16 (2×2-averaged; enlarged 2× for the classifier, real images too)';
  const table = [
    `CIFAR-10 (${source}), ${res}, UNet "${o.model}", batch ${o.batch}: teacher ${o.teacherFile ? relative(process.cwd(), o.teacherFile) : `${o.teacherSteps} steps (Adam lr ${o.teacherLr})`}, sCT and sCD ${o.steps} steps each (lr 1e-4, tangent warmup ${o.warmup}${o.sctDropout ? `, sCT dropout ${o.sctDropout}` : ''}), EMA weights.`,
    `Each cell: Fréchet distance between ${judge.n} samples and ${judge.n} real test images in the features of the CIFAR-10 classifier (${relative(process.cwd(), o.classifier)}; 128-wide penultimate layer). Not FID (no Inception network); lower is better.`,
    '',
    '| model | 1 step | 2 steps | many steps |',
    '|---|---:|---:|---:|',
    ...rows,
  ].join('\n');
  await mkdir(o.out, { recursive: true });
  await writeFile(join(o.out, 'table.md'), table + '\n');
  return table;
}
