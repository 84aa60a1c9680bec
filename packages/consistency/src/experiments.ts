/**
 * The experiments behind RESULTS.md, each one command (`scm experiment NAME`):
 *
 *  - `toy`: on a 2-D toy, a TrigFlow diffusion teacher, then sCT from scratch, sCT
 *    initialized from the teacher (the paper's setting, §3.4) and sCD from the teacher;
 *    sliced W2 of 1- and 2-step samples against data, next to the teacher sampled with
 *    Heun (many steps) and with 1 and 2 DDIM steps.
 *  - `ablations`: sCT from scratch on a toy with Algorithm 1 and with each stabilizer
 *    removed or replaced (spec §9.3), over several seeds.
 *
 * Every run lives in its own directory under --out and is skipped when already finished,
 * so an interrupted experiment continues where it stopped (runs resume from checkpoints).
 */
import { createWriteStream } from 'node:fs';
import { access, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { random, dispose } from '@scm/tensor';
import { defaultConfig, buildData, useBackend, type RunConfig } from './setup.js';
import { train, loadTrained, readRunConfig, exportModel, CHECKPOINT } from './train.js';
import { generate, toPointSet, type SampleSpec } from './evaluate.js';
import { slicedWasserstein2, meanNearestDistance } from './metrics.js';
import { consistencyTimes } from './samplers.js';
import { readMetrics } from './runreport.js';
import { T_MAX, T_MID } from './trigflow.js';
import { gaussianScd, exactConsistencyCoefficient as gaussianCoefficient } from './analytic.js';
import type { ScmOptions } from './scm.js';
import { loadDigitJudge, evaluateDigitsRun, realDigits, scoreDigits, defaultJudgePath, type DigitJudge } from './digits.js';

export interface ExperimentOptions {
  out: string;
  data: string;
  steps: number;
  teacherSteps: number;
  batch: number;
  hidden: number;
  seeds: number;
  evalSamples: number;
  backend: RunConfig['backend'];
  log: (line: string) => void;
  /** network (default 'toy', the ToyMLP on 2-D points; 'mlp' for MNIST ablations) */
  model?: string;
  /** learning rate (default 1e-3) */
  lr?: number;
  /** MNIST ablations: the digit classifier that judges samples */
  classifier?: string;
}

/** A run stopped by SIGINT/SIGTERM: the experiment stops too (and continues when started again). */
export class Interrupted extends Error {}

async function exists(p: string): Promise<boolean> {
  return access(p).then(() => true, () => false);
}

/** Train a run unless its checkpoint already reached cfg.steps; resume it if it stopped earlier. */
export async function ensureRun(dir: string, cfg: RunConfig, log: (l: string) => void): Promise<string> {
  const ckpt = join(dir, CHECKPOINT);
  let resume = false;
  if (await exists(ckpt)) {
    const done = (await readMetrics(dir)).filter((r) => r.kind === 'train').at(-1)?.step ?? 0;
    if (done >= cfg.steps) return ckpt;
    resume = true;
  }
  await mkdir(dir, { recursive: true });
  const stream = createWriteStream(join(dir, 'train.log'), { flags: 'a' });
  const t0 = Date.now();
  log(`training ${dir} (${cfg.method}, ${cfg.steps} steps)${resume ? ' [resuming]' : ''}`);
  try {
    const res = await train(dir, cfg, { out: stream, command: `scm experiment (${dir})` }, resume);
    if (res.signal) throw new Interrupted(`${res.signal}: stopped in ${dir} at step ${res.step} (run the same command to continue)`);
  } finally {
    await new Promise((r) => stream.end(r));
  }
  log(`  done in ${((Date.now() - t0) / 60000).toFixed(1)} min`);
  return ckpt;
}

/** SW2 to fresh data for each sampler, from a run's EMA weights. */
export async function evaluateRun(ckpt: string, specs: SampleSpec[], n: number, seed: number): Promise<Record<string, number>> {
  const trained = await loadTrained(ckpt, 'ema');
  const data = await buildData(trained.config);
  const ref = data.reference(n, seed);
  const refPts = await toPointSet(ref);
  const out: Record<string, number> = {};
  for (const spec of specs) {
    const x = generate(trained.net, trained.params, data.sampleShape, n, spec.sampler, random.key(seed + 0x5a3), trained.config.sigmaD);
    const pts = await toPointSet(x);
    out[spec.name] = slicedWasserstein2(pts, refPts);
    out[`${spec.name}_nn`] = meanNearestDistance(pts, refPts);
    out[`${spec.name}_cover`] = meanNearestDistance(refPts, pts);
    x.dispose();
  }
  dispose([ref, trained.params]);
  return out;
}

const CM: SampleSpec[] = [
  { name: '1step', caption: '1 step', sampler: { kind: 'cm', times: consistencyTimes(1) } },
  { name: '2step', caption: '2 steps', sampler: { kind: 'cm', times: consistencyTimes(2) } },
];

function teacherSpecs(heunSteps: number): SampleSpec[] {
  return [
    { name: 'ddim1', caption: 'DDIM 1 step', sampler: { kind: 'ddim', times: [T_MAX, 0] } },
    { name: 'ddim2', caption: 'DDIM 2 steps', sampler: { kind: 'ddim', times: [T_MAX, T_MID, 0] } },
    { name: `heun${heunSteps}`, caption: `Heun ${heunSteps}`, sampler: { kind: 'heun', steps: heunSteps } },
  ];
}

function base(o: ExperimentOptions, method: RunConfig['method'], seed: number): RunConfig {
  const d = defaultConfig(method);
  return {
    ...d,
    data: o.data,
    model: o.model ?? 'toy',
    backend: o.backend,
    batch: o.batch,
    hidden: o.hidden,
    seed,
    steps: method === 'diffusion' ? o.teacherSteps : o.steps,
    // Toy runs are short: a larger learning rate (Adam family) and a warmup of a quarter of the run.
    lr: o.lr ?? 1e-3,
    warmupIters: Math.round(o.steps / 4),
    logEvery: 25,
    sampleEvery: Math.max(1, Math.round((method === 'diffusion' ? o.teacherSteps : o.steps) / 4)),
    checkpointEvery: 500,
    evalSamples: 2000,
  };
}

const fmt = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? 'diverged' : v.toFixed(3));
const meanOf = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
function summary(values: number[]): string {
  if (values.some((v) => !Number.isFinite(v))) return `${values.filter((v) => !Number.isFinite(v)).length}/${values.length} diverged`;
  if (values.length === 1) return values[0].toFixed(3);
  return `${meanOf(values).toFixed(3)} (${Math.min(...values).toFixed(3)}–${Math.max(...values).toFixed(3)})`;
}

/** The three numbers of one sampler: SW2 / mean NN distance samples→data / data→samples. */
function cell(m: Record<string, number>, name: string): string {
  return [m[name], m[`${name}_nn`], m[`${name}_cover`]].map(fmt).join(' / ');
}

/** The data's own floor: the metrics between two independent data sets of n points. */
async function dataFloor(o: ExperimentOptions): Promise<string> {
  const data = await buildData({ data: o.data, batch: o.batch, seed: 0, sigmaD: 0.5 });
  const a = data.reference(o.evalSamples, 1), b = data.reference(o.evalSamples, 1001);
  const [pa, pb] = [await toPointSet(a), await toPointSet(b)];
  const v = [slicedWasserstein2(pb, pa), meanNearestDistance(pb, pa), meanNearestDistance(pa, pb)];
  dispose([a, b]);
  return v.map(fmt).join(' / ');
}

const METRICS_NOTE = (n: number, floor: string) =>
  `Each cell: sliced W2 to ${n} fresh data points / mean distance from a sample to its nearest data point / from a data point to its nearest sample (all lower is better; two independent data sets of this size give ${floor}). SW2 alone barely separates a Gaussian blob of the right covariance from the data; the nearest-neighbour distances show whether samples lie on the data and cover it.`;

export async function toyExperiment(o: ExperimentOptions): Promise<string> {
  await useBackend(o.backend);
  const rows: string[][] = [];
  const heun = 32;
  const teacherCkpt = await ensureRun(join(o.out, 'teacher'), base(o, 'diffusion', 0), o.log);
  const t = await evaluateRun(teacherCkpt, teacherSpecs(heun), o.evalSamples, 1);
  rows.push(['diffusion teacher: DDIM 1, DDIM 2, Heun 32 steps (NFE 63)', cell(t, 'ddim1'), cell(t, 'ddim2'), cell(t, `heun${heun}`)]);
  const cmRuns: [string, string, RunConfig][] = [
    ['sCT from scratch', 'sct-scratch', base(o, 'sct', 0)],
    ['sCT initialized from the teacher', 'sct-init', { ...base(o, 'sct', 0), init: teacherCkpt }],
    ['sCD from the teacher', 'scd', { ...base(o, 'scd', 0), teacher: teacherCkpt }],
  ];
  for (const [label, name, cfg] of cmRuns) {
    const ckpt = await ensureRun(join(o.out, name), cfg, o.log);
    const m = await evaluateRun(ckpt, CM, o.evalSamples, 1);
    rows.push([label, cell(m, '1step'), cell(m, '2step'), '']);
  }
  const floor = await dataFloor(o);
  const cfgT = await readRunConfig(teacherCkpt);
  const lines = [
    `Data ${o.data} (scaled to std σ_d = 0.5), ToyMLP ${cfgT.depth}×${cfgT.hidden}, batch ${o.batch}; teacher ${o.teacherSteps} steps, each consistency model ${o.steps} steps (lr 1e-3, warmup ${Math.round(o.steps / 4)}).`,
    METRICS_NOTE(o.evalSamples, floor),
    '',
    '| model | 1 step | 2 steps | many steps |',
    '|---|---:|---:|---:|',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ];
  const table = lines.join('\n');
  await writeFile(join(o.out, 'table.md'), table + '\n');
  return table;
}

/**
 * sCD on the analytic Gaussian (spec §9.1, test 3) under several settings: the learned
 * a_φ(t) against the exact a*(t). Seconds per setting, so it runs every variant.
 */
export async function gaussianExperiment(o: Pick<ExperimentOptions, 'out' | 'backend' | 'steps' | 'log'>): Promise<string> {
  await useBackend(o.backend);
  const times = [0.2, 0.5, 0.8, 1.1, 1.4];
  const settings: [string, Partial<ScmOptions>][] = [
    ['Algorithm 1, P = (−1.0, 1.4) (paper)', { pMean: -1.0, pStd: 1.4 }],
    ['P_mean = −0.5', { pMean: -0.5, pStd: 1.4 }],
    ['P_mean = 0', { pMean: 0, pStd: 1.4 }],
    ['P_mean = +0.5', { pMean: 0.5, pStd: 1.4 }],
    ['no tangent normalization', { pMean: -1.0, pStd: 1.4, normalization: 'none' }],
    ['no adaptive weighting', { pMean: -1.0, pStd: 1.4, adaptiveWeighting: false }],
    ['no warmup', { pMean: -1.0, pStd: 1.4, warmupIters: 0 }],
    ['discrete-time tangent, N = 1024', { pMean: -1.0, pStd: 1.4, tangent: 'fd', fdSteps: 1024 }],
  ];
  const exact = times.map((t) => gaussianCoefficient(t, 1));
  const rows: string[] = [`| exact a*(t) | ${exact.map((v) => v.toFixed(3)).join(' | ')} | |`];
  for (const [label, scm] of settings) {
    const r = await gaussianScd(times, { steps: o.steps, scm });
    const err = Math.max(...r.learned.map((a, i) => Math.abs(a - r.exact[i])));
    o.log(`${label}: max |a − a*| = ${err.toFixed(3)}`);
    rows.push(`| ${label} | ${r.learned.map((v) => (Number.isFinite(v) ? v.toFixed(3) : 'NaN')).join(' | ')} | ${Number.isFinite(err) ? err.toFixed(3) : 'diverged'} |`);
  }
  const table = [
    `sCD on x0 ~ N(0, 1) (σ_d = 0.5) with the exact teacher; student F(y, t) = a_φ(t)·y, a_φ = Linear(posemb(t, 16)); Adam lr 1e-2, batch 256, ${o.steps} steps, warmup ${Math.round(o.steps / 6)}.`,
    '',
    `| setting | ${times.map((t) => `a(${t})`).join(' | ')} | max error |`,
    `|---|${times.map(() => '---:').join('|')}|---:|`,
    ...rows,
  ].join('\n');
  await mkdir(o.out, { recursive: true });
  await writeFile(join(o.out, 'table.md'), table + '\n');
  return table;
}

export interface MnistOptions {
  out: string;
  backend: RunConfig['backend'];
  teacherSteps: number;
  steps: number;
  batch: number;
  warmup: number;
  data: string;
  model: string;
  log: (line: string) => void;
}

/**
 * The MNIST model behind `npm start`, as the paper trains its consistency models (§3.4):
 * a TrigFlow diffusion teacher, then sCT initialized from the teacher's EMA weights, then
 * the exported model (EMA weights, head, step) in <out>/mnist-sct.safetensors.
 */
export async function mnistExperiment(o: MnistOptions): Promise<string> {
  await useBackend(o.backend);
  const common = { data: o.data, model: o.model, backend: o.backend, batch: o.batch, logEvery: 5, checkpointEvery: 25, sampleEvery: 250, heunSteps: 16 };
  const teacher = await ensureRun(join(o.out, 'teacher'), { ...defaultConfig('diffusion'), ...common, steps: o.teacherSteps }, o.log);
  // A short tangent warmup (the paper's H = 10k is for runs of 100k+ iterations).
  const sct = await ensureRun(join(o.out, 'sct'), { ...defaultConfig('sct'), ...common, steps: o.steps, init: teacher, warmupIters: o.warmup }, o.log);
  const asset = join(o.out, 'mnist-sct.safetensors');
  await exportModel(join(o.out, 'sct'), asset, 5);
  void sct;
  return `teacher: ${teacher}\nsCT: ${join(o.out, 'sct', CHECKPOINT)}\nexported: ${asset} (copy it and its .metrics.jsonl to packages/consistency/assets/ for npm start)`;
}

export interface Variant {
  name: string;
  label: string;
  patch: Partial<RunConfig>;
}

export const ABLATIONS: Variant[] = [
  { name: 'alg1', label: 'Algorithm 1 (c_noise = t, positional emb., L2 normalization, warmup, adaptive weighting)', patch: {} },
  { name: 'edm-fourier', label: 'EDM time transform c_noise = ln(σ_d tan t)/4 + Fourier embedding (scale 16)', patch: { timeTransform: 'edm', timeEmbedding: 'fourier' } },
  { name: 'no-norm', label: 'no tangent normalization', patch: { normalization: 'none' } },
  { name: 'clip', label: 'tangent clipping clip(g, −1, 1) instead of normalization', patch: { normalization: 'clip' } },
  { name: 'rms', label: 'RMS normalization g/(‖g‖/√D + c)', patch: { normalization: 'rms' } },
  { name: 'no-warmup', label: 'no tangent warmup', patch: { warmupIters: 0 } },
  { name: 'no-weighting', label: 'no adaptive weighting', patch: { adaptiveWeighting: false } },
  { name: 'inv-sigma', label: 'extra 1/σ weighting (as FastGen/Sana)', patch: { extraInvSigmaWeight: true } },
  { name: 'fd', label: 'discrete-time finite-difference tangent (N = 1024)', patch: { tangent: 'fd', fdSteps: 1024 } },
  { name: 'pmean0', label: 'proposal P_mean = 0 instead of −1.0', patch: { pMean: 0 } },
];

export async function ablationExperiment(o: ExperimentOptions, only?: string[]): Promise<string> {
  await useBackend(o.backend);
  const images = o.data.startsWith('mnist');
  // 2-D data: SW2 and nearest-neighbour distances; MNIST: a digit classifier's judgement.
  const keys = images ? ['1step', '1step_conf', '2step', '2step_conf'] : ['1step', '1step_nn', '1step_cover', '2step', '2step_nn', '2step_cover'];
  let judge: DigitJudge | null = null;
  if (images) {
    const size = o.data === 'mnist:14' ? 14 : 28;
    judge = await loadDigitJudge(o.classifier ?? defaultJudgePath(size));
  }
  const evaluate = async (ckpt: string): Promise<Record<string, number>> => {
    if (!judge) return evaluateRun(ckpt, CM, o.evalSamples, 1);
    const r = await evaluateDigitsRun(judge, ckpt, CM, o.evalSamples, 1);
    return { '1step': r['1step'].fd, '1step_conf': r['1step'].confident, '2step': r['2step'].fd, '2step_conf': r['2step'].confident };
  };
  const rows: string[] = [];
  for (const v of ABLATIONS.filter((a) => !only || only.includes(a.name))) {
    const per: Record<string, number[]> = Object.fromEntries(keys.map((k) => [k, []]));
    const spikes: number[] = [];
    for (let seed = 0; seed < o.seeds; seed++) {
      const dir = join(o.out, `${v.name}-s${seed}`);
      const cfg = { ...base(o, 'sct', seed), ...v.patch };
      let m: Record<string, number> = Object.fromEntries(keys.map((k) => [k, NaN]));
      try {
        m = await evaluate(await ensureRun(dir, cfg, o.log));
      } catch (e) {
        if (e instanceof Interrupted) throw e;
        o.log(`  ${dir}: ${(e as Error).message}`);
      }
      for (const k of keys) per[k].push(m[k]);
      const g = (await readMetrics(dir)).filter((r) => r.kind === 'train' && Number.isFinite(r.gRms)).map((r) => r.gRms as number);
      spikes.push(g.length ? Math.max(...g) / (g.slice().sort((a, b) => a - b)[Math.floor(g.length / 2)] || 1) : NaN);
    }
    const cellOf = (step: string) => (images ? [step, `${step}_conf`] : [step, `${step}_nn`, `${step}_cover`]).map((k) => summary(per[k])).join(' / ');
    rows.push(`| ${v.label} | ${cellOf('1step')} | ${cellOf('2step')} | ${summary(spikes)} |`);
  }
  let note: string;
  if (judge) {
    const size = o.data === 'mnist:14' ? 14 : 28;
    const real = realDigits(size, o.evalSamples);
    const floor = await scoreDigits(judge, real);
    real.dispose();
    dispose(judge.params);
    note = `Each cell: Fréchet distance between ${o.evalSamples} samples and held-out test digits in the features of a small MNIST classifier (not FID) / the fraction of samples it assigns to one digit with probability ≥ 0.9 (lower / higher is better; ${o.evalSamples} real training digits give ${floor.fd.toFixed(3)} / ${floor.confident.toFixed(3)}).`;
  } else note = METRICS_NOTE(o.evalSamples, await dataFloor(o));
  const net = (o.model ?? 'toy') === 'toy' ? `ToyMLP 3×${o.hidden}` : `${o.model} (hidden ${o.hidden})`;
  const table = [
    `sCT from scratch on ${o.data}, ${net}, batch ${o.batch}, ${o.steps} steps (lr ${o.lr ?? 1e-3}, warmup ${Math.round(o.steps / 4)} unless removed), ${o.seeds} seed(s)${o.seeds > 1 ? ' (mean, with min–max over seeds)' : ''}.`,
    note,
    '"‖g‖ spike" = max / median of the logged raw tangent RMS ‖g‖/√D over training.',
    '',
    '| variant | 1 step | 2 steps | ‖g‖ spike |',
    '|---|---:|---:|---:|',
    ...rows,
  ].join('\n');
  await writeFile(join(o.out, 'table.md'), table + '\n');
  return table;
}
