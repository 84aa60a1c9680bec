#!/usr/bin/env node
/**
 * The `scm` command line: train, sample, evaluate and report TrigFlow diffusion models and
 * continuous-time consistency models (sCT, sCD). `scm help` lists everything.
 */
import { parseArgs } from 'node:util';
import { mkdir, access, writeFile, readFile } from 'node:fs/promises';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor, random, tidy, dispose, clip, div, concat, relaunchWithAllocatorSettings, type BackendName } from '@scm/tensor';
import { saveImageGrid } from '@scm/nn';
import { defaultConfig, buildData, useBackend, TOY_NAMES, MODEL_NAMES, type Method, type RunConfig } from './setup.js';
import { train, loadTrained, readRunConfig, exportModel, CHECKPOINT } from './train.js';
import { writeReport } from './runreport.js';
import { consistencyTimes, karrasTimes, initialNoise, sampleConsistency, sampleDDIM, sampleHeun } from './samplers.js';
import { sampleSpecs, toPointSet, saveScatterPng, displayImages, generate, type SampleSpec } from './evaluate.js';
import { loadDigitJudge, scoreDigits, trainDigitClassifier, realDigits, evaluateDigitsRun, defaultJudgePath } from './digits.js';
import { slicedWasserstein2, meanNearestDistance, pairedSummary } from './metrics.js';
import { cifarExperiment, loadCifarJudge, judgeCifarRun, judgeCifarDenoising } from './cifar.js';
import { toyExperiment, ablationExperiment, gaussianExperiment, mnistExperiment, evaluateRun, type ExperimentOptions } from './experiments.js';

const HELP = `scm — TrigFlow diffusion and continuous-time consistency models (sCT, sCD)

usage:
  scm train  [options]            train a model (diffusion teacher, sCT or sCD)
  scm sample --run DIR [options]  draw samples from a run's EMA weights (PNG grid or scatter plot)
  scm eval   --run DIR [options]  sample quality: 2-D data (sliced W2, nearest-neighbour distances),
                                  MNIST (a digit classifier's confidence, class spread, feature FD) or
                                  CIFAR-10 (Fréchet distance in a CIFAR-10 classifier's features)
  scm report --run DIR            rebuild DIR/report.html from its metrics
  scm experiment toy|ablations|gaussian|mnist|digits|cifar [--data toy:NAME] [--steps N] [--teacher-train-steps N]
                 [--seeds N] [--only a,b] [--out DIR] [--keep-every N]
                                  (cifar: also --model NAME, --dropout X for sCT: the paper's 0.2,
                                  --teacher FILE: a trained teacher instead of training <out>/teacher)
                                  the RESULTS.md tables (runs are resumable; finished ones are skipped)
  scm export --run DIR --out FILE  a small model file to continue from (EMA weights, no optimizer state)
  scm start  [--from-scratch] [--minutes M] [--model NAME]
                                  the main job (npm start): sCT on MNIST, continuing the committed
                                  model for M minutes (default 3), then 1- and 2-step samples and
                                  the report; --from-scratch trains from nothing

train options:
  --method diffusion|sct|scd      (default sct)
  --data mnist|mnist:14|toy:NAME|cifar10:PATH|cifar10@16:PATH
                                  (mnist:14, cifar10@16: images averaged down over 2×2 blocks)
                                  toy names: ${TOY_NAMES.join(', ')} (default toy:moons)
  --model ${MODEL_NAMES.join('|')}   UNet presets for images, toy MLP for 2-D, mlp = MLP on pixels
  --steps N --batch N --lr X --optimizer adam|radam --beta2 X --seed N
  --backend reference|cpu|webasm|webgpu (default $TENSOR_BACKEND or webasm)
  --out DIR                       run directory (default runs/<method>-<data>-<model>)
  --resume                        continue the run in --out from its checkpoint
  --minutes M                     stop (with a checkpoint) after M minutes
  --teacher PATH                  sCD: a diffusion run's checkpoint.safetensors (its EMA weights
                                  are the teacher and the student's initialization)
  --init PATH                     sCT: initialize from a diffusion run's EMA weights (paper §3.4)
  --dropout X --ema-halflife-kimg X --ema-rampup X|none --grad-clip X
  --p-mean X --p-std X            time proposal log(σ_d tan t) ~ N(P_mean, P_std²)
  --hidden N --depth N            toy/mlp network size (default 256, 3)
  --log-every N --sample-every N --checkpoint-every N --eval-samples N
  --keep-every N                  also keep every N-th step's checkpoint as checkpoint-STEP.safetensors
  --heun-steps N                  sampler steps when evaluating a diffusion model (default 32)
  --replay                        sCT/sCD: after the tangent warmup, run each step (gradient,
                                  optimizer, EMA; the gradient alone with --grad-clip) as GPU.js
                                  pipelines traced once (replay/jit; no dropout)
 ablation switches (defaults follow Algorithm 1 of the paper):
  --norm l2|rms|clip|none         tangent normalization (default l2: g/(‖g‖ + c))
  --norm-c X                      c (default 0.1)
  --warmup N                      tangent warmup iterations H (default 10000; 0 = none)
  --no-adaptive-weighting         drop w_φ(t)
  --extra-inv-sigma               multiply the loss by 1/(σ_d tan t) as some re-implementations do
  --tangent jvp|fd                JVP (default) or the discrete-time finite difference (§2.11)
  --fd-steps N                    N for --tangent fd (Δt = (π/2)/N, default 1024)
  --time-transform identity|edm   c_noise(t) = t (default) or EDM's log(σ_d tan t)/4
  --time-embedding positional|fourier

sample options:
  --steps N                       consistency steps (1, 2 or more), default 1
  --times a,b,...                 explicit consistency times (overrides --steps)
  --clip-denoised C               clip each intermediate estimate of x0 to [−C, C] before re-noising
  --denoise-real t1,t2,...        CIFAR-10: also judge f applied once to real images noised to each t
  --sampler cm|heun|ddim          (default cm; heun/ddim for diffusion runs, --steps = solver steps)
  --n N --seed N --out FILE       (default 64 images or 2000 points, DIR/samples/sample-<sampler>-<steps>.png)

eval options:
  --samples N                     (default 4000 points, 1000 digits)
  --seed N | --seed a,b,...       the samplers' noises; CIFAR-10 runs take a list (one JSON line per seed,
                                  then a summary: means and each sampler minus the first, paired by seed)
  --steps N | --times a,b,...     CIFAR-10 and MNIST runs: one consistency sampler instead of 1 and 2 steps
  --classifier PATH               MNIST runs: the digit classifier (default runs/mnist<size>-judge/,
                                  trained by scm experiment digits [--data mnist:14], or for 14×14 the
                                  committed one in assets/); CIFAR-10 runs:
                                  the CIFAR-10 classifier (default: the committed one in assets/)
`;

const string = { type: 'string' as const };
const bool = { type: 'boolean' as const, default: false };

const OPTIONS = {
  method: string, data: string, model: string, steps: string, batch: string, lr: string, optimizer: string, beta2: string, seed: string,
  backend: string, out: string, resume: bool, minutes: string, teacher: string, init: string, dropout: string,
  'ema-halflife-kimg': string, 'ema-rampup': string, 'grad-clip': string, 'p-mean': string, 'p-std': string, hidden: string, depth: string,
  'log-every': string, 'sample-every': string, 'checkpoint-every': string, 'keep-every': string, 'eval-samples': string, 'heun-steps': string,
  norm: string, 'norm-c': string, warmup: string, 'no-adaptive-weighting': bool, 'extra-inv-sigma': bool, tangent: string, 'fd-steps': string,
  'time-transform': string, 'time-embedding': string, replay: bool,
  run: string, times: string, 'clip-denoised': string, 'denoise-real': string, sampler: string, n: string, samples: string, 'from-scratch': bool, help: bool,
  'teacher-train-steps': string, seeds: string, only: string, classifier: string,
};

type Values = Record<string, string | boolean | undefined>;

function num(v: Values, name: string, fallback: number, integer = false): number {
  const s = v[name];
  if (s === undefined) return fallback;
  const x = Number(s);
  if (!Number.isFinite(x) || (integer && !Number.isInteger(x))) throw new Error(`--${name} expects ${integer ? 'an integer' : 'a number'}, got "${s}"`);
  return x;
}

function choice<T extends string>(v: Values, name: string, allowed: readonly T[], fallback: T): T {
  const s = v[name];
  if (s === undefined) return fallback;
  if (!allowed.includes(s as T)) throw new Error(`--${name} must be one of ${allowed.join(', ')}, got "${s}"`);
  return s as T;
}

/** The run configuration for `scm train` from its flags. */
export function configFromFlags(v: Values): RunConfig {
  const method = choice<Method>(v, 'method', ['diffusion', 'sct', 'scd'], 'sct');
  const d = defaultConfig(method);
  const data = (v.data as string | undefined) ?? d.data;
  const isImage = !data.startsWith('toy');
  const model = (v.model as string | undefined) ?? (isImage ? 'nano' : 'toy');
  return {
    ...d,
    data,
    model,
    steps: num(v, 'steps', d.steps, true),
    batch: num(v, 'batch', isImage ? 16 : d.batch, true),
    lr: num(v, 'lr', d.lr),
    optimizer: choice(v, 'optimizer', ['adam', 'radam'], d.optimizer),
    beta2: num(v, 'beta2', d.beta2),
    seed: num(v, 'seed', d.seed, true),
    backend: choice<BackendName>(v, 'backend', ['reference', 'cpu', 'webasm', 'webgpu'], (process.env.TENSOR_BACKEND as BackendName) ?? d.backend),
    minutes: v.minutes === undefined ? null : num(v, 'minutes', 0),
    teacher: (v.teacher as string | undefined) ?? null,
    init: (v.init as string | undefined) ?? null,
    dropout: num(v, 'dropout', d.dropout),
    emaHalflifeKimg: num(v, 'ema-halflife-kimg', d.emaHalflifeKimg),
    emaRampup: v['ema-rampup'] === 'none' ? null : num(v, 'ema-rampup', d.emaRampup ?? 0.05),
    gradClip: v['grad-clip'] === undefined ? null : num(v, 'grad-clip', 0),
    pMean: num(v, 'p-mean', d.pMean),
    pStd: num(v, 'p-std', d.pStd),
    hidden: num(v, 'hidden', d.hidden, true),
    depth: num(v, 'depth', d.depth, true),
    logEvery: num(v, 'log-every', isImage ? 1 : d.logEvery, true),
    sampleEvery: num(v, 'sample-every', d.sampleEvery, true),
    checkpointEvery: num(v, 'checkpoint-every', isImage ? 50 : d.checkpointEvery, true),
    keepEvery: keepEvery(v),
    evalSamples: num(v, 'eval-samples', d.evalSamples, true),
    heunSteps: num(v, 'heun-steps', d.heunSteps, true),
    normalization: choice(v, 'norm', ['l2', 'rms', 'clip', 'none'], d.normalization),
    normC: num(v, 'norm-c', d.normC),
    warmupIters: num(v, 'warmup', d.warmupIters, true),
    adaptiveWeighting: v['no-adaptive-weighting'] ? false : d.adaptiveWeighting,
    extraInvSigmaWeight: Boolean(v['extra-inv-sigma']),
    tangent: choice(v, 'tangent', ['jvp', 'fd'], d.tangent),
    fdSteps: num(v, 'fd-steps', d.fdSteps, true),
    timeTransform: choice(v, 'time-transform', ['identity', 'edm'], d.timeTransform),
    timeEmbedding: choice(v, 'time-embedding', ['positional', 'fourier'], d.timeEmbedding),
    replay: Boolean(v.replay),
  };
}

function defaultRunDir(cfg: RunConfig): string {
  return join('runs', `${cfg.method}-${cfg.data.replace(/[^a-z0-9]+/gi, '-')}-${cfg.model}`);
}

async function cmdTrain(v: Values, argv: string[]): Promise<void> {
  const cfg = configFromFlags(v);
  const dir = (v.out as string | undefined) ?? defaultRunDir(cfg);
  const res = await train(dir, cfg, { out: process.stdout, command: `scm ${argv.join(' ')}` }, Boolean(v.resume));
  console.log(`${res.stoppedEarly ? 'stopped' : 'finished'} at step ${res.step}; report: ${join(dir, 'report.html')}`);
}

function runCheckpoint(v: Values): string {
  const run = v.run as string | undefined;
  if (!run) throw new Error('this command needs --run DIR (a run directory) or --run PATH.safetensors');
  return run.endsWith('.safetensors') ? run : join(run, CHECKPOINT);
}

async function cmdSample(v: Values): Promise<void> {
  const path = runCheckpoint(v);
  const backend = v.backend as BackendName | undefined;
  if (backend) await useBackend(backend);
  const trained = await loadTrained(path, 'ema', backend);
  const data = await buildData(trained.config);
  const sampler = choice(v, 'sampler', ['cm', 'heun', 'ddim'], trained.config.method === 'diffusion' ? 'heun' : 'cm');
  const steps = num(v, 'steps', sampler === 'cm' ? 1 : trained.config.heunSteps, true);
  const times = v.times ? parseTimes(String(v.times)) : consistencyTimes(steps);
  const n = num(v, 'n', data.kind === 'points' ? 2000 : 64, true);
  const key = random.key(num(v, 'seed', 0, true));
  const [kz, kr] = random.split(key);
  const z = initialNoise(kz, [n, ...data.sampleShape], trained.config.sigmaD);
  const sd = trained.config.sigmaD;
  const x = sampler === 'cm' ? sampleConsistency(trained.net, trained.params, z, times, kr, sd)
    : sampler === 'heun' ? sampleHeun(trained.net, trained.params, z, karrasTimes(steps, sd), sd)
      : sampleDDIM(trained.net, trained.params, z, karrasTimes(steps, sd), sd);
  const runDir = dirname(path);
  const label = sampler === 'cm' ? `${times.length}step` : `${sampler}${steps}`;
  const out = (v.out as string | undefined) ?? join(runDir, 'samples', `sample-${label}.png`);
  await mkdir(dirname(out), { recursive: true });
  if (data.kind === 'points') {
    const ref = data.reference(n, 1);
    await saveScatterPng(out, await toPointSet(x), await toPointSet(ref));
    ref.dispose();
  } else {
    const c = tidy(() => displayImages(x, data.range));
    await saveImageGrid(out, c, { nrow: Math.ceil(Math.sqrt(n)), padding: 1, padValue: -0.5 });
    c.dispose();
  }
  dispose([z, x]);
  console.log(`wrote ${n} samples (${sampler === 'cm' ? `consistency times ${times.map((t) => t.toFixed(4)).join(', ')}` : `${sampler}, ${steps} steps`}) to ${out}`);
}

/** Digits: a classifier trained on MNIST judges samples (see digits.ts). */
async function evalDigits(v: Values, path: string, config: RunConfig): Promise<void> {
  if (!config.data.startsWith('mnist')) throw new Error('scm eval measures 2-D data and MNIST digits; for other images use scm sample and look at the grid');
  const size = config.data === 'mnist:14' ? 14 : 28;
  const judgePath = (v.classifier as string | undefined) ?? defaultJudgePath(size);
  if (!(await access(judgePath).then(() => true, () => false))) throw new Error(`no digit classifier at ${judgePath}: train one with scm experiment digits${size === 14 ? ' --data mnist:14' : ''} (or pass --classifier PATH)`);
  const judge = await loadDigitJudge(judgePath);
  const n = num(v, 'samples', 1000, true);
  const seed = num(v, 'seed', 1, true);
  const specs = evalSpecs(v, config);
  const real = realDigits(size, n);
  const result: Record<string, unknown> = { run: path, method: config.method, samples: n, real_train_digits: await scoreDigits(judge, real) };
  real.dispose();
  Object.assign(result, await evaluateDigitsRun(judge, path, specs, n, seed));
  dispose(judge.params);
  console.log(JSON.stringify(result));
}

/** `--times a,b,...`: decreasing consistency times in (0, π/2] (any order where `decreasing` is false). */
function parseTimes(text: string, flag = '--times', decreasing = true): number[] {
  const times = text.split(',').map(Number);
  if (!times.length || times.some((t, i) => !(t > 0 && t <= Math.PI / 2) || (decreasing && i > 0 && !(t < times[i - 1])))) {
    throw new Error(`${flag} expects ${decreasing ? 'decreasing ' : ''}times in (0, π/2], got "${text}"`);
  }
  return times;
}

/** The samplers `scm eval` measures: --times, --steps N, or the method's defaults. */
function evalSpecs(v: Values, config: RunConfig): SampleSpec[] {
  const specs = v.times ? [{ name: `times:${v.times}`, caption: '', sampler: { kind: 'cm' as const, times: parseTimes(String(v.times)) } }]
    : v.steps ? [{ name: `${v.steps}step`, caption: '', sampler: { kind: 'cm' as const, times: consistencyTimes(num(v, 'steps', 1, true)) } }]
      : sampleSpecs(config);
  if (v['clip-denoised'] === undefined) return specs;
  const c = num(v, 'clip-denoised', 1);
  if (!(c > 0)) throw new Error(`--clip-denoised expects a positive number, got ${v['clip-denoised']}`);
  return specs.map((s) => (s.sampler.kind === 'cm' ? { ...s, name: `${s.name}:clip${c}`, sampler: { ...s.sampler, clipDenoised: c } } : s));
}

/** CIFAR-10 runs: Fréchet distance in the CIFAR-10 classifier's features (not FID), per sampler. */
async function evalCifar(v: Values, path: string, config: RunConfig): Promise<void> {
  const seeds = parseSeeds(v.seed, 7);
  const judge = await loadCifarJudge((v.classifier as string | undefined) ?? CIFAR_CLASSIFIER, config.data, num(v, 'samples', 1000, true));
  const specs = evalSpecs(v, config);
  const denoiseTimes = v['denoise-real'] === undefined ? [] : parseTimes(String(v['denoise-real']), '--denoise-real', false);
  // Several seeds (--seed 7,8,9) reuse the judge: one JSON line per seed, each sampler on that seed's noises,
  // then one line that summarizes them (means, and each sampler against the first, paired by seed).
  const perSeed: Record<string, number>[] = [];
  for (const seed of seeds) {
    const fds = await judgeCifarRun(judge, path, specs.map((s) => s.sampler), seed);
    const denoised = denoiseTimes.length ? await judgeCifarDenoising(judge, path, denoiseTimes, seed) : [];
    const scores = Object.fromEntries(specs.map((s, i) => [s.name, fds[i]]));
    perSeed.push(scores);
    console.log(JSON.stringify({
      run: path, method: config.method, samples: judge.n, seed, real_train_images: judge.floor,
      ...scores,
      ...Object.fromEntries(denoiseTimes.map((t, i) => [`denoise-real:${t}`, denoised[i]])),
    }));
  }
  if (seeds.length > 1) {
    console.log(JSON.stringify({ run: path, method: config.method, samples: judge.n, seeds, summary: pairedSummary(perSeed, specs.map((s) => s.name)) }));
  }
  dispose(judge.params);
}

/** `--keep-every N`: a positive integer, or null when not given. */
function keepEvery(v: Values): number | null {
  if (v['keep-every'] === undefined) return null;
  const n = num(v, 'keep-every', 0, true);
  if (n < 1) throw new Error(`--keep-every expects a positive integer, got "${v['keep-every']}"`);
  return n;
}

/** `--seed N` or `--seed a,b,...`: non-negative integers. */
function parseSeeds(text: unknown, dflt: number): number[] {
  if (text === undefined) return [dflt];
  const seeds = String(text).split(',').map((s) => (s.trim() === '' ? NaN : Number(s)));
  if (seeds.some((s) => !Number.isInteger(s) || s < 0)) throw new Error(`--seed expects a non-negative integer or a comma-separated list of them, got "${text}"`);
  return seeds;
}

async function cmdEval(v: Values): Promise<void> {
  const path = runCheckpoint(v);
  const backend = v.backend as BackendName | undefined;
  if (backend) await useBackend(backend);
  const config = await readRunConfig(path);
  if (config.data.startsWith('cifar10')) return evalCifar(v, path, config);
  if (!config.data.startsWith('toy')) return evalDigits(v, path, config);
  const n = num(v, 'samples', 4000, true);
  const seed = num(v, 'seed', 1, true);
  // For each sampler: sliced W2, mean nearest-neighbour distance samples→data and data→samples.
  const metrics = await evaluateRun(path, sampleSpecs(config), n, seed);
  // The data's own floor: the same numbers between two independent data sets of this size.
  const data = await buildData(config);
  const [a, b] = [data.reference(n, seed), data.reference(n, seed + 1000)];
  const [pa, pb] = [await toPointSet(a), await toPointSet(b)];
  const floor = { sw2: slicedWasserstein2(pb, pa), nn: meanNearestDistance(pb, pa), cover: meanNearestDistance(pa, pb) };
  dispose([a, b]);
  console.log(JSON.stringify({ run: path, method: config.method, samples: n, ...metrics, data_vs_data: floor }));
}

/** The CIFAR-10 classifier (trained by @scm/nn's train-classifier) whose features judge CIFAR-10 samples. */
export const CIFAR_CLASSIFIER = fileURLToPath(new URL('../assets/cifar10-classifier.safetensors', import.meta.url));

/** The committed MNIST sCT model that `npm start` continues from. */
export const START_ASSET = fileURLToPath(new URL('../assets/mnist-sct.safetensors', import.meta.url));

async function cmdStart(v: Values, argv: string[]): Promise<void> {
  const fromScratch = Boolean(v['from-scratch']);
  const minutes = num(v, 'minutes', 3);
  const dir = (v.out as string | undefined) ?? join('runs', 'start');
  const hasAsset = await access(START_ASSET).then(() => true, () => false);
  // The committed model's configuration is the default; flags override it.
  const shipped = hasAsset ? await readRunConfig(START_ASSET) : null;
  const base: RunConfig = shipped && !v.model ? { ...shipped, ...pickGiven(configFromFlags({ method: 'sct', data: 'mnist:14', ...v }), v) } : configFromFlags({ method: 'sct', data: 'mnist:14', model: 'nano', ...v });
  const cfg: RunConfig = { ...base, minutes, steps: num(v, 'steps', 1_000_000, true), sampleEvery: num(v, 'sample-every', 1_000_000, true), backend: configFromFlags(v).backend };
  let warm: string | undefined;
  await mkdir(dir, { recursive: true });
  if (!fromScratch && shipped) {
    warm = START_ASSET;
    await writeFile(join(dir, 'metrics.jsonl'), await readFile(START_ASSET.replace(/\.safetensors$/, '.metrics.jsonl'), 'utf8').catch(() => ''));
    console.log(`continuing the committed ${shipped.method} model (${shipped.model} on ${shipped.data}, ${relative(process.cwd(), START_ASSET)}) for ${minutes} min; npm start -- --from-scratch trains from nothing`);
  } else {
    console.log(`training ${cfg.method} (${cfg.model} on ${cfg.data}) from scratch for ${minutes} min${hasAsset ? '' : ' (no committed model found)'}`);
  }
  const res = await train(dir, cfg, { out: process.stdout, command: `npm start${argv.length > 1 ? ` -- ${argv.slice(1).join(' ')}` : ''}` }, false, warm);
  const samples = res.evals.at(-1)?.samples.map((s) => join(dir, s.file)) ?? [];
  console.log(`step ${res.step}. samples: ${samples.join(', ')}\nreport: ${join(dir, 'report.html')}`);
}

/** The fields of a configuration that were given as flags (so they override the shipped ones). */
function pickGiven(cfg: RunConfig, v: Values): Partial<RunConfig> {
  const map: Record<string, keyof RunConfig> = { batch: 'batch', lr: 'lr', seed: 'seed', 'p-mean': 'pMean', 'p-std': 'pStd', dropout: 'dropout', norm: 'normalization', warmup: 'warmupIters' };
  const out: Partial<RunConfig> = {};
  for (const [flag, key] of Object.entries(map)) if (v[flag] !== undefined) (out as Record<string, unknown>)[key] = cfg[key];
  return out;
}

async function cmdExport(v: Values): Promise<void> {
  const run = v.run as string | undefined;
  const out = v.out as string | undefined;
  if (!run || !out) throw new Error('scm export needs --run DIR and --out FILE.safetensors');
  await mkdir(dirname(out), { recursive: true });
  await exportModel(run, out, num(v, 'log-every', 10, true));
  console.log(`wrote ${out} and ${out.replace(/\.safetensors$/, '.metrics.jsonl')}`);
}

async function cmdExperiment(v: Values, positionals: string[]): Promise<void> {
  const name = positionals[0];
  if (!['toy', 'ablations', 'gaussian', 'mnist', 'digits', 'cifar'].includes(name)) throw new Error('scm experiment needs a name: toy, ablations, gaussian, mnist, digits or cifar');
  if (name === 'cifar') {
    const data = (v.data as string | undefined) ?? 'cifar10@16:../shared/data/cifar-10-binary-subset.tar.gz';
    console.log(await cifarExperiment({
      out: (v.out as string | undefined) ?? join('runs', 'experiment-cifar'), data,
      classifier: (v.classifier as string | undefined) ?? CIFAR_CLASSIFIER,
      model: (v.model as string | undefined) ?? 'nano',
      backend: choice<BackendName>(v, 'backend', ['reference', 'cpu', 'webasm', 'webgpu'], (process.env.TENSOR_BACKEND as BackendName) ?? 'webasm'),
      batch: num(v, 'batch', 32, true), teacherSteps: num(v, 'teacher-train-steps', 800, true), steps: num(v, 'steps', 300, true),
      warmup: num(v, 'warmup', 100, true), teacherLr: num(v, 'lr', 2e-4), keepEvery: keepEvery(v), samples: num(v, 'samples', 1000, true), heunSteps: num(v, 'heun-steps', 16, true),
      sctDropout: num(v, 'dropout', 0), teacherFile: v.teacher as string | undefined,
      log: (l) => console.log(l),
    }, v.only ? String(v.only).split(',') : undefined));
    return;
  }
  if (name === 'digits') {
    const size = v.data === 'mnist' ? 28 : 14;
    const out = (v.out as string | undefined) ?? join('runs', `mnist${size}-judge`);
    console.log(`wrote ${await trainDigitClassifier(out, size)}`);
    return;
  }
  if (name === 'mnist') {
    const out = (v.out as string | undefined) ?? join('runs', 'experiment-mnist');
    const backend = choice<BackendName>(v, 'backend', ['reference', 'cpu', 'webasm', 'webgpu'], (process.env.TENSOR_BACKEND as BackendName) ?? 'webasm');
    console.log(await mnistExperiment({
      out, backend, data: (v.data as string | undefined) ?? 'mnist:14', model: (v.model as string | undefined) ?? 'nano',
      teacherSteps: num(v, 'teacher-train-steps', 1090, true), steps: num(v, 'steps', 1000, true), batch: num(v, 'batch', 32, true),
      warmup: num(v, 'warmup', 300, true), log: (l) => console.log(l),
    }));
    return;
  }
  const data = (v.data as string | undefined) ?? 'toy:moons';
  const o: ExperimentOptions = {
    out: (v.out as string | undefined) ?? join('runs', name === 'gaussian' ? 'experiment-gaussian' : `experiment-${name}-${data.replace(/^toy:/, '').replace(/[^a-z0-9]+/gi, '-')}`),
    data,
    steps: num(v, 'steps', name === 'gaussian' ? 600 : 2000, true),
    teacherSteps: num(v, 'teacher-train-steps', 4000, true),
    batch: num(v, 'batch', 256, true),
    hidden: num(v, 'hidden', 128, true),
    seeds: num(v, 'seeds', name === 'ablations' ? 2 : 1, true),
    evalSamples: num(v, 'samples', 4000, true),
    backend: choice<BackendName>(v, 'backend', ['reference', 'cpu', 'webasm', 'webgpu'], (process.env.TENSOR_BACKEND as BackendName) ?? 'webasm'),
    log: (l) => console.log(l),
    model: v.model as string | undefined,
    lr: v.lr === undefined ? undefined : num(v, 'lr', 1e-3),
    classifier: v.classifier as string | undefined,
  };
  const only = v.only ? String(v.only).split(',') : undefined;
  const table = name === 'toy' ? await toyExperiment(o) : name === 'gaussian' ? await gaussianExperiment(o) : await ablationExperiment(o, only);
  console.log(`\n${table}\n\n(written to ${join(o.out, 'table.md')})`);
}

export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({ args: rest, options: OPTIONS, allowPositionals: true, strict: true });
  if (positionals.length && command !== 'experiment') throw new Error(`unexpected argument "${positionals[0]}" (options start with --)`);
  if (!command || command === 'help' || values.help) {
    console.log(HELP);
    return;
  }
  switch (command) {
    case 'train': return cmdTrain(values, argv);
    case 'sample': return cmdSample(values);
    case 'eval': return cmdEval(values);
    case 'report': {
      const dir = values.run as string | undefined;
      if (!dir) throw new Error('scm report needs --run DIR');
      console.log(`wrote ${await writeReport(dir)}`);
      return;
    }
    case 'start': return cmdStart(values, argv);
    case 'experiment': return cmdExperiment(values, positionals);
    case 'export': return cmdExport(values);
    default: throw new Error(`unknown command "${command}" (expected train, sample, eval, report, start; see scm help)`);
  }
}

const invokedDirectly = process.argv[1] && fileURLToPath(import.meta.url) === (await import('node:fs')).realpathSync(process.argv[1]);
// On glibc the CLI runs as a child with the allocator settings of @scm/tensor's allocator.ts.
if (invokedDirectly && !relaunchWithAllocatorSettings()) {
  main(process.argv.slice(2)).then(
    // An initialized WebGPU device keeps Node's event loop alive: a finished command exits.
    () => process.exit(0),
    (e: Error) => {
      console.error(`scm: ${e.message}`);
      process.exit(1);
    },
  );
}
