/**
 * Evaluation during and after training: samples from the EMA weights (1 and 2 consistency
 * steps for sCT/sCD; the second-order Heun sampler for a diffusion model), written as a
 * PNG grid (images) or an SVG scatter plot (2-D points), and for 2-D data the sliced
 * Wasserstein-2 distance to fresh data samples.
 */
import { join } from 'node:path';
import { Tensor, random, tidy, clip, div, fromArray, upsampleNearest, concat, dispose } from '@scm/tensor';
import { saveImageGrid, type Params } from '@scm/nn';
import { consistencyTimes, initialNoise, karrasTimes, sampleConsistency, sampleDDIM, sampleHeun } from './samplers.js';
import { slicedWasserstein2, type PointSet } from './metrics.js';
import type { DataSource, RunConfig } from './setup.js';
import type { NetFn } from './trigflow.js';

export interface EvalRecord {
  kind: 'eval';
  step: number;
  metrics: Record<string, number>;
  samples: { caption: string; file: string }[];
}

export interface SampleSpec {
  name: string;
  caption: string;
  /**
   * 'cm': consistency sampling at these times; 'heun': EDM's Heun sampler with this many
   * steps; 'ddim': deterministic DDIM through these times (ending at 0).
   */
  sampler: { kind: 'cm'; times: number[]; clipDenoised?: number } | { kind: 'heun'; steps: number } | { kind: 'ddim'; times: number[] };
}

/** Which samplers a method is evaluated with. */
export function sampleSpecs(cfg: RunConfig): SampleSpec[] {
  if (cfg.method === 'diffusion') return [{ name: `heun${cfg.heunSteps}`, caption: `Heun, ${cfg.heunSteps} steps (NFE ${2 * cfg.heunSteps - 1})`, sampler: { kind: 'heun', steps: cfg.heunSteps } }];
  return [
    { name: '1step', caption: '1 step (T = arctan(160))', sampler: { kind: 'cm', times: consistencyTimes(1) } },
    { name: '2step', caption: '2 steps (t_mid = 1.1)', sampler: { kind: 'cm', times: consistencyTimes(2) } },
  ];
}

/** Draw n samples with a sampler; the noise comes from `key`. */
export function generate(net: NetFn<Params>, params: Params, shape: number[], n: number, spec: SampleSpec['sampler'], key: random.Key, sigmaD: number): Tensor {
  const [kz, kr] = random.split(key);
  const z = initialNoise(kz, [n, ...shape], sigmaD);
  const out = spec.kind === 'cm' ? sampleConsistency(net, params, z, spec.times, kr, sigmaD, spec.clipDenoised)
    : spec.kind === 'ddim' ? sampleDDIM(net, params, z, spec.times, sigmaD)
      : sampleHeun(net, params, z, karrasTimes(spec.steps, sigmaD), sigmaD);
  z.dispose();
  return out;
}

/**
 * n samples drawn `chunk` at a time (bounded memory); chunk k's noise comes from
 * foldIn(key(seed), its first index), so a sample depends on the seed and the chunk size only.
 */
export function generateMany(net: NetFn<Params>, params: Params, shape: number[], n: number, spec: SampleSpec['sampler'], seed: number, sigmaD: number, chunk: number): Tensor {
  const parts: Tensor[] = [];
  for (let i = 0; i < n; i += chunk) parts.push(generate(net, params, shape, Math.min(chunk, n - i), spec, random.foldIn(random.key(seed), i), sigmaD));
  if (parts.length === 1) return parts[0];
  const all = concat(parts, 0);
  dispose(parts);
  return all;
}

/** Images for display: back to [−1, 1], clipped, small ones enlarged (nearest) to at least 28 pixels. */
export function displayImages(x: Tensor, range: number): Tensor {
  const factor = Math.max(1, Math.ceil(28 / x.shape[3]));
  const y = clip(div(x, range), -1, 1);
  return factor > 1 ? upsampleNearest(y, factor) : y;
}

export async function toPointSet(x: Tensor): Promise<PointSet> {
  return { data: await x.data(), n: x.shape[0], d: x.size / x.shape[0] };
}

export interface EvalInputs {
  dir: string;
  cfg: RunConfig;
  data: DataSource;
  net: NetFn<Params>;
  params: Params;
  teacher?: { net: NetFn<Params>; params: Params } | null;
  step: number;
}

const pad = (n: number) => String(n).padStart(7, '0');

/** Sample with every sampler of the method, save the pictures, measure SW2 on 2-D data. */
export async function evaluateAndSample({ dir, cfg, data, net, params, step }: EvalInputs): Promise<EvalRecord> {
  const rec: EvalRecord = { kind: 'eval', step, metrics: {}, samples: [] };
  const key = random.key(cfg.seed + 0x5a3);
  const n = data.kind === 'points' ? cfg.evalSamples : 64;
  const reference = data.kind === 'points' ? data.reference(cfg.evalSamples, cfg.seed + 1) : null;
  const refPoints = reference ? await toPointSet(reference) : null;
  for (const spec of sampleSpecs(cfg)) {
    const x = generate(net, params, data.sampleShape, n, spec.sampler, key, cfg.sigmaD);
    const file = `samples/step-${pad(step)}-${spec.name}.png`;
    if (refPoints) {
      const pts = await toPointSet(x);
      rec.metrics[`sw2_${spec.name}`] = slicedWasserstein2(pts, refPoints);
      await saveScatterPng(join(dir, file), pts, refPoints);
    } else {
      const clipped = tidy(() => displayImages(x, data.range));
      await saveImageGrid(join(dir, file), clipped, { nrow: 8, padding: 1, padValue: -0.5 });
      clipped.dispose();
    }
    rec.samples.push({ caption: `${spec.caption}, step ${step}`, file });
    x.dispose();
  }
  reference?.dispose();
  return rec;
}

/**
 * A scatter plot of 2-D points as an RGB image [1, 3, S, S] in [-1, 1]: white background,
 * reference points grey, samples blue, the window [-extent, extent]² (σ_d-scaled data
 * lies within about ±1.5).
 */
export function scatterImage(points: PointSet, reference: PointSet | null, size = 256, extent = 2): Tensor {
  const img = new Float32Array(3 * size * size).fill(1);
  const put = (p: PointSet, rgb: [number, number, number]) => {
    for (let i = 0; i < p.n; i++) {
      const px = Math.floor(((p.data[i * p.d] + extent) / (2 * extent)) * size);
      const py = Math.floor(((extent - p.data[i * p.d + 1]) / (2 * extent)) * size);
      if (px < 0 || px >= size || py < 0 || py >= size) continue;
      for (let c = 0; c < 3; c++) img[(c * size + py) * size + px] = rgb[c];
    }
  };
  if (reference) put(reference, [0.5, 0.5, 0.5]);
  put(points, [-0.8, -0.4, 0.6]);
  return fromArray(img, [1, 3, size, size]);
}

export async function saveScatterPng(path: string, points: PointSet, reference: PointSet | null): Promise<void> {
  const img = scatterImage(points, reference);
  await saveImageGrid(path, img, { nrow: 1, padding: 0 });
  img.dispose();
}
