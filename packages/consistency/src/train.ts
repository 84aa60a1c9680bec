/**
 * The training run: a loop over steps that never loses work. Each step's randomness is
 * a pure function of (seed, step) and the data loader's batches are a pure function of
 * the step, so a run resumed from its last checkpoint continues exactly as it would have.
 * Checkpoints are atomic (write, fsync, rename) and written every `checkpointEvery` steps,
 * every `checkpointMinutes`, at the end, and on SIGINT/SIGTERM; with `keepEvery`, the one of
 * every N-th step is also kept as checkpoint-STEP.safetensors.
 *
 * A run directory holds: config.json, metrics.jsonl (one JSON object per line: training
 * records and evaluation records), checkpoint.safetensors, samples/ and report.html.
 */
import { mkdir, writeFile, appendFile, access, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { Tensor, random, tidy, dispose, memory, type random as R } from '@scm/tensor';
import { jit } from '@scm/autodiff';
import { adam, radam, emaHalflife, clipByGlobalNorm, saveCheckpoint, loadCheckpoint, readCheckpointMetadata, type Optimizer, type OptState, type EmaState, type Params } from '@scm/nn';
import { buildData, buildModel, defaultConfig, useBackend, type Model, type RunConfig } from './setup.js';
import { WeightingHead, type WeightingParams } from './weighting.js';
import { diffusionStep, onePassGradients, onePassTrainStep, replayedScmStep, scmStep, type StepResult } from './step.js';
import { ProgressBar } from './progress.js';
import { warmupFactor, type ScmOptions } from './scm.js';
import { evaluateAndSample, type EvalRecord } from './evaluate.js';
import { writeReport } from './runreport.js';
import type { NetFn } from './trigflow.js';

export const CHECKPOINT = 'checkpoint.safetensors';

/** The name of the checkpoint kept at `step` with `keepEvery` (the latest is always CHECKPOINT). */
export function keptCheckpoint(step: number): string {
  return `checkpoint-${step}.safetensors`;
}

export interface TrainState {
  step: number;
  params: Params;
  phi: WeightingParams;
  opt: OptState;
  ema: EmaState<Params>;
}

export interface Trainable {
  net: Params;
  head: WeightingParams;
}

export interface Teacher {
  net: NetFn<Params>;
  params: Params;
  config: RunConfig;
}

export function scmOptionsOf(cfg: RunConfig): ScmOptions {
  return {
    method: cfg.method === 'scd' ? 'scd' : 'sct',
    sigmaD: cfg.sigmaD,
    pMean: cfg.pMean,
    pStd: cfg.pStd,
    warmupIters: cfg.warmupIters,
    normalization: cfg.normalization,
    normC: cfg.normC,
    adaptiveWeighting: cfg.adaptiveWeighting,
    extraInvSigmaWeight: cfg.extraInvSigmaWeight,
    tangent: cfg.tangent,
    fdSteps: cfg.fdSteps,
  };
}

export function makeOptimizer(cfg: RunConfig): Optimizer {
  const o = { lr: cfg.lr, b1: cfg.beta1, b2: cfg.beta2, eps: cfg.eps };
  return cfg.optimizer === 'radam' ? radam(o) : adam(o);
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(() => true, () => false);
}

/** The run configuration stored in a checkpoint's metadata. */
export async function readRunConfig(path: string): Promise<RunConfig> {
  const meta = await readCheckpointMetadata(path);
  if (!meta['scm.config']) throw new Error(`${path} has no run configuration (scm.config) in its metadata: not a checkpoint written by scm train`);
  const saved = JSON.parse(meta['scm.config']) as RunConfig;
  // Fields added after a checkpoint was written take their defaults.
  return { ...defaultConfig(saved.method), ...saved };
}

/** A trained network from a run checkpoint: its EMA parameters (or raw ones) and the network function. */
export async function loadTrained(path: string, which: 'ema' | 'params' = 'ema', backend?: RunConfig['backend']): Promise<Teacher & { model: Model; step: number }> {
  const config = await readRunConfig(path);
  if (backend) config.backend = backend;
  await useBackend(config.backend);
  const tree = await loadCheckpoint(path, { backend: backend ?? config.backend, floatDtype: 'float32' });
  const data = await buildData(config);
  const model = buildModel(config, data.sampleShape);
  const params = (which === 'ema' ? tree.ema.params : tree.params) as Params;
  // Free the parts we do not use.
  dispose(which === 'ema' ? [tree.params, tree.phi, tree.opt] : [tree.ema, tree.phi, tree.opt]);
  return { net: model.net, params, config, model, step: tree.step as number };
}

function copyTree<T>(tree: T): T {
  return tidy(() => treeCopy(tree));
}
function treeCopy(tree: any): any {
  if (tree instanceof Tensor) return tree.mul(1);
  if (Array.isArray(tree)) return tree.map(treeCopy);
  if (tree && typeof tree === 'object') return Object.fromEntries(Object.entries(tree).map(([k, v]) => [k, treeCopy(v)]));
  return tree;
}

export interface RunIO {
  out: NodeJS.WriteStream | { write(s: string): boolean; isTTY?: boolean };
  /** A line describing how the run was started (shown in the report). */
  command?: string;
}

export interface RunResult {
  step: number;
  stoppedEarly: boolean;
  /** The signal (SIGINT, SIGTERM) that stopped the run, if one did. */
  signal: string | null;
  evals: EvalRecord[];
  /** With --replay: what ran the last step's replayed part (GPU.js's pipeline executor, or `eager` on its traced first call). */
  replayExecutor?: string | null;
  /** With --replay: what was replayed, the whole step (gradient, optimizer, EMA) or, with gradient clipping, the gradient alone. */
  replayScope?: 'step' | 'gradient' | null;
}

/**
 * Train (or continue training) a run in `dir`. With `resume`, the checkpoint in `dir` is
 * loaded and `cfg` is ignored except for `steps`, `minutes`, the bookkeeping intervals and how
 * the steps execute (`backend`, `replay`: both give the same run), so that a run started on
 * one machine can continue on another.
 */
export async function train(dir: string, cfgIn: RunConfig, io: RunIO, resume = false, warmStart?: string): Promise<RunResult> {
  await mkdir(join(dir, 'samples'), { recursive: true });
  const ckptPath = join(dir, CHECKPOINT);
  let cfg = cfgIn;
  if (resume) {
    if (!(await exists(ckptPath))) throw new Error(`--resume: no checkpoint at ${ckptPath}`);
    const saved = await readRunConfig(ckptPath);
    cfg = { ...saved, steps: cfgIn.steps, minutes: cfgIn.minutes, logEvery: cfgIn.logEvery, sampleEvery: cfgIn.sampleEvery, checkpointEvery: cfgIn.checkpointEvery, checkpointMinutes: cfgIn.checkpointMinutes, keepEvery: cfgIn.keepEvery, backend: cfgIn.backend, replay: cfgIn.replay };
  }
  await useBackend(cfg.backend);
  const bar = new ProgressBar(io.out);
  const data = await buildData(cfg);
  const model = buildModel(cfg, data.sampleShape);
  const head = new WeightingHead();
  const optimizer = makeOptimizer(cfg);
  const ema = emaHalflife({ halflifeKimg: cfg.emaHalflifeKimg, rampupRatio: cfg.emaRampup, batchSize: cfg.batch });
  const runKey = random.key(cfg.seed);

  // Teacher (sCD) and initialization (sCD always, sCT with --init): the teacher's EMA weights.
  let teacher: Teacher | null = null;
  if (cfg.method === 'scd') {
    if (!cfg.teacher) throw new Error('sCD needs --teacher PATH (a diffusion run checkpoint)');
    teacher = await loadTrained(cfg.teacher, 'ema', cfg.backend);
  }

  let state: TrainState;
  if (resume) {
    const tree = await loadCheckpoint(ckptPath, { backend: cfg.backend, floatDtype: 'float32' });
    state = { step: tree.step, params: tree.params, phi: tree.phi, opt: tree.opt, ema: tree.ema };
    bar.log(`resumed ${dir} at step ${state.step}`);
  } else if (warmStart) {
    // An exported model (see exportModel): its EMA weights, weighting head and step; fresh
    // optimizer moments (they are not shipped) and an EMA that starts from the weights.
    const tree = await loadCheckpoint(warmStart, { backend: cfg.backend, floatDtype: 'float32' });
    const params = tree.ema.params as Params;
    state = { step: tree.step, params, phi: tree.phi, opt: optimizer.init({ net: params, head: tree.phi }), ema: ema.init(params) };
    state.ema.nimg = tree.ema.nimg;
    bar.log(`continuing from ${relative(process.cwd(), warmStart)} (step ${state.step})`);
  } else {
    const initFrom = cfg.method === 'scd' ? cfg.teacher : cfg.init;
    let params: Params;
    if (initFrom) {
      const src = initFrom === cfg.teacher && teacher ? teacher : await loadTrained(initFrom, 'ema', cfg.backend);
      const shape = (c: RunConfig) => JSON.stringify([c.model, c.data, c.model === 'toy' || c.model === 'mlp' ? [c.hidden, c.depth] : []]);
      if (shape(src.config) !== shape(cfg)) {
        throw new Error(`cannot initialize a ${cfg.model} model on ${cfg.data} from ${initFrom} (a ${src.config.model} model on ${src.config.data})`);
      }
      params = src === teacher ? copyTree(src.params) : src.params;
      bar.log(`initialized from the EMA weights of ${initFrom} (step ${(src as { step?: number }).step ?? '?'})`);
    } else {
      params = model.module.init(random.foldIn(runKey, 0x1417));
    }
    const phi = head.init();
    state = { step: 0, params, phi, opt: optimizer.init({ net: params, head: phi }), ema: ema.init(params) };
    await writeFile(join(dir, 'metrics.jsonl'), '');
  }
  await writeFile(join(dir, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');

  const keepEvery = cfg.keepEvery ?? 0;
  const keepsStep = (step: number) => keepEvery > 0 && step > 0 && step % keepEvery === 0;
  const save = async () => {
    const tree = { step: state.step, params: state.params, phi: state.phi, opt: state.opt, ema: state.ema };
    const opts = { metadata: { 'scm.config': JSON.stringify(cfg) } };
    await saveCheckpoint(ckptPath, tree, opts);
    // A stage kept for later: written the same atomic way, under its own name.
    if (keepsStep(state.step)) await saveCheckpoint(join(dir, keptCheckpoint(state.step)), tree, opts);
  };

  // The first signal stops after the current step with a checkpoint; another one more than a
  // second later stops at once (a repeat within the second is the same request, delivered twice).
  let stopRequested: string | null = null;
  let stopRequestedAt = 0;
  const onSignal = (sig: string) => () => {
    if (stopRequested && Date.now() - stopRequestedAt > 1000) process.exit(130);
    if (!stopRequested) stopRequestedAt = Date.now();
    stopRequested ??= sig;
  };
  const handlers = { SIGINT: onSignal('SIGINT'), SIGTERM: onSignal('SIGTERM') };
  process.on('SIGINT', handlers.SIGINT);
  process.on('SIGTERM', handlers.SIGTERM);

  const evals: EvalRecord[] = [];
  const doEval = async () => {
    const rec = await evaluateAndSample({ dir, cfg, data, net: model.net, params: state.ema.params, teacher, step: state.step });
    evals.push(rec);
    await appendFile(join(dir, 'metrics.jsonl'), JSON.stringify(rec) + '\n');
    bar.log(`eval @ ${state.step}: ${Object.entries(rec.metrics).map(([k, v]) => `${k} ${v.toPrecision(4)}`).join(', ') || 'samples written'}`);
  };

  const scmOpts = scmOptionsOf(cfg);
  // After the warmup (r = 1) and without dropout, a step's gradient is the same function of
  // (θ, φ, x0, z, t) every iteration: jit replays it.
  if (cfg.replay && (cfg.method === 'diffusion' || scmOpts.tangent !== 'jvp' || scmOpts.onePass === false || cfg.dropout > 0)) {
    throw new Error('--replay needs sCT or sCD with the JVP tangent (one pass) and no dropout');
  }
  // The whole iteration (gradient, optimizer, EMA) is replayed as one plan; with gradient
  // clipping (whose norm is read back and logged) only the gradient is.
  let replayExecutor: string | null = null;
  const replayedStep = cfg.replay && cfg.gradClip === null ? jit(onePassTrainStep(model.net, head, scmOpts, optimizer, { train: false }, teacher ?? undefined)) : null;
  const replayed = cfg.replay && !replayedStep ? jit(onePassGradients(model.net, head, scmOpts, 1, { train: false }, teacher ?? undefined)) : null;
  const t0 = Date.now();
  let lastCkpt = Date.now();
  let smoothed = 0;
  let stoppedEarly = false;
  const startStep = state.step;
  const baseline = memory();
  try {
    while (state.step < cfg.steps) {
      if (stopRequested) {
        bar.log(`${stopRequested}: saving the checkpoint at step ${state.step}`);
        stoppedEarly = true;
        break;
      }
      if (cfg.minutes !== null && Date.now() - t0 > cfg.minutes * 60_000) {
        bar.log(`time budget of ${cfg.minutes} min reached at step ${state.step}`);
        stoppedEarly = true;
        break;
      }
      const stepStart = Date.now();
      const key: R.Key = random.foldIn(runKey, state.step);
      const x0 = data.batch(state.step);
      const inputs = { net: model.net, params: state.params, head, phi: state.phi, x0, key, iter: state.step, train: cfg.dropout > 0 };
      const lossError = (loss: number) => new Error(`the loss is ${loss} at step ${state.step}; stopping (the last checkpoint is intact)`);
      let res: { loss: number; t?: Float32Array | Float64Array; gRms?: Float32Array | Float64Array };
      let gradNorm: number | undefined;
      if (replayedStep && warmupFactor(state.step, cfg.warmupIters) === 1) {
        const r = await replayedScmStep(replayedStep, { state: { params: state.params, phi: state.phi, opt: state.opt, emaParams: state.ema.params }, x0, key, optimizer, emaBeta: ema.beta(state.ema.nimg) }, scmOpts);
        x0.dispose();
        if (!Number.isFinite(r.loss)) {
          dispose(r.state);
          throw lossError(r.loss);
        }
        dispose([state.params, state.phi, state.opt, state.ema.params]);
        state = { step: state.step + 1, params: r.state.params, phi: r.state.phi, opt: r.state.opt, ema: { nimg: state.ema.nimg + ema.batchSize, params: r.state.emaParams } };
        res = r;
      } else {
        const step: StepResult<Params> = cfg.method === 'diffusion'
          ? await diffusionStep(inputs, { sigmaD: cfg.sigmaD, pMean: cfg.pMean, pStd: cfg.pStd, adaptiveWeighting: cfg.adaptiveWeighting })
          : await scmStep({ ...inputs, teacher: teacher ?? undefined, replayed: replayed && warmupFactor(state.step, cfg.warmupIters) === 1 ? replayed : undefined }, scmOpts);
        x0.dispose();
        if (!Number.isFinite(step.loss)) {
          dispose([step.gradParams, step.gradPhi]);
          throw lossError(step.loss);
        }
        let grads: Trainable = { net: step.gradParams, head: step.gradPhi };
        if (cfg.gradClip !== null) {
          const c = clipByGlobalNorm(grads, cfg.gradClip);
          gradNorm = (await c.norm.data())[0];
          dispose([grads, c.norm]);
          grads = c.grads;
        }
        const upd = optimizer.step<Trainable>(grads, state.opt, { net: state.params, head: state.phi });
        dispose(grads);
        const newEma = ema.step(state.ema, upd.params.net);
        state = { step: state.step + 1, params: upd.params.net, phi: upd.params.head, opt: upd.state, ema: newEma };
        res = step;
      }

      const dt = (Date.now() - stepStart) / 1000;
      const ips = cfg.batch / dt;
      smoothed = smoothed === 0 ? ips : 0.9 * smoothed + 0.1 * ips;
      const elapsed = (Date.now() - t0) / 1000;
      const perStep = elapsed / (state.step - startStep);
      let eta = (cfg.steps - state.step) * perStep;
      // With a time budget, the expected last step is what the budget allows.
      let total = cfg.steps;
      if (cfg.minutes !== null) {
        eta = Math.min(eta, Math.max(0, cfg.minutes * 60 - elapsed));
        total = Math.min(cfg.steps, state.step + Math.ceil(eta / perStep));
      }
      const extra = res.gRms ? `‖g‖rms ${mean(res.gRms).toPrecision(3)}` : undefined;
      bar.update({ step: state.step, total, imagesPerSec: smoothed, loss: res.loss, extra }, eta, state.step === cfg.steps);
      if (state.step % cfg.logEvery === 0 || state.step === cfg.steps) {
        const rec: Record<string, unknown> = { kind: 'train', step: state.step, time: +elapsed.toFixed(2), imagesPerSec: +ips.toFixed(3), loss: res.loss };
        if (gradNorm !== undefined) rec.gradNorm = gradNorm;
        if (res.gRms && res.t) Object.assign(rec, tangentBuckets(res.t, res.gRms));
        const mem = memory();
        rec.liveTensors = mem.tensors - baseline.tensors;
        await appendFile(join(dir, 'metrics.jsonl'), JSON.stringify(rec) + '\n');
      }
      if (state.step % cfg.sampleEvery === 0 && state.step < cfg.steps) await doEval();
      if (state.step % cfg.checkpointEvery === 0 || keepsStep(state.step) || Date.now() - lastCkpt > cfg.checkpointMinutes * 60_000) {
        await save();
        lastCkpt = Date.now();
      }
    }
    bar.done();
    await save();
    if (!stopRequested) await doEval();
    await writeReport(dir, io.command);
  } finally {
    process.off('SIGINT', handlers.SIGINT);
    process.off('SIGTERM', handlers.SIGTERM);
    replayExecutor = (replayedStep ?? replayed)?.last?.executor ?? null;
    replayedStep?.dispose();
    replayed?.dispose();
    // What the run held (its last state is in the checkpoint): the caller gets none of it.
    dispose([state.params, state.phi, state.opt, state.ema, teacher?.params]);
  }
  return { step: state.step, stoppedEarly, signal: stopRequested, evals, replayExecutor, replayScope: replayedStep ? 'step' : replayed ? 'gradient' : null };
}

/**
 * A small file to continue training from (what `npm start` ships): the EMA weights, the
 * weighting head and the step, with the run configuration; optimizer moments and raw
 * weights are left out. The run's metrics go next to it, every `metricsEvery`-th record.
 */
export async function exportModel(runDir: string, outPath: string, metricsEvery = 10): Promise<void> {
  const ckpt = join(runDir, CHECKPOINT);
  const cfg = await readRunConfig(ckpt);
  const tree = await loadCheckpoint(ckpt, { floatDtype: 'float32', backend: 'reference' });
  await saveCheckpoint(outPath, { step: tree.step, phi: tree.phi, ema: tree.ema }, { metadata: { 'scm.config': JSON.stringify(cfg), 'scm.exportedFrom': ckpt } });
  dispose(tree);
  const text = await readFile(join(runDir, 'metrics.jsonl'), 'utf8');
  const lines = text.split('\n').filter((l) => l.trim());
  const kept = lines.filter((l) => { const r = JSON.parse(l); return r.kind !== 'train' || r.step % metricsEvery === 0; });
  await writeFile(outPath.replace(/\.safetensors$/, '.metrics.jsonl'), kept.join('\n') + '\n');
}

function mean(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s / a.length;
}

/** Mean raw tangent RMS in t buckets (spec §8.10: monitor ‖g‖ per t-bucket). */
export function tangentBuckets(t: ArrayLike<number>, g: ArrayLike<number>): Record<string, number> {
  const edges = [0, 0.2, 0.6, 1.0, 1.4, Math.PI / 2 + 1e-9];
  const out: Record<string, number> = {};
  for (let b = 0; b + 1 < edges.length; b++) {
    let s = 0, n = 0;
    for (let i = 0; i < t.length; i++) if (t[i] >= edges[b] && t[i] < edges[b + 1]) [s, n] = [s + g[i], n + 1];
    if (n) out[`gRms_t${edges[b].toFixed(1)}`] = s / n;
  }
  out.gRms = mean(g);
  return out;
}
