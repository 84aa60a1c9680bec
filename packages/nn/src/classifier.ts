/**
 * A small CNN image classifier (CIFAR-10 by default) and its training loop. Besides
 * classifying, it provides penultimate-layer features, the embedding a Fréchet distance
 * between generated and real images is computed in.
 *
 * Architecture: for each width c in `channels`, conv 3×3 (padding 1) → ReLU → 2×2 max
 * pool; then flatten → Linear(hidden) → ReLU (the features) → Linear(numClasses).
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  Tensor, TensorError, argmax, dispose, equal, logSoftmax, max, mean, mul, neg, oneHot, relu, reshape, sum, tidy, random, type BackendName,
} from '@scm/tensor';
import { valueAndGrad } from '@scm/autodiff';
import { Module, getChild, type Ctx, type Params, type SpecTree } from './module.js';
import { Conv2d } from './layers/conv.js';
import { Linear } from './layers/linear.js';
import { adam, type Optimizer, type OptState } from './optim/optimizers.js';
import { warmupCosine } from './optim/schedules.js';
import { clipByGlobalNorm } from './optim/clip.js';
import { loadCheckpoint, readCheckpointMetadata, saveCheckpoint } from './checkpoint.js';
import { imagesToTensor, labelsToTensor, type ImageDataset } from './data/dataset.js';
import { ImageLoader } from './data/loader.js';

export interface ClassifierConfig {
  inChannels: number;
  imageSize: number;
  numClasses: number;
  /** Conv widths, one 3×3 conv + 2×2 max pool per entry. */
  channels: number[];
  /** Width of the penultimate (feature) layer. */
  hidden: number;
}

export const DEFAULT_CLASSIFIER: ClassifierConfig = { inChannels: 3, imageSize: 32, numClasses: 10, channels: [16, 32, 64], hidden: 128 };

/** 2×2 max pooling with stride 2 (H and W must be even). */
export function maxPool2x2(x: Tensor): Tensor {
  return tidy(() => {
    const [N, C, H, W] = x.shape;
    if (x.ndim !== 4 || H % 2 || W % 2) throw new TensorError('maxPool2x2', 'expected an NCHW input with even H and W', [x.shape]);
    return max(reshape(x, [N, C, H / 2, 2, W / 2, 2]), [3, 5]);
  });
}

export class Classifier extends Module {
  readonly convs: Conv2d[];
  readonly fc: Linear;
  readonly head: Linear;

  constructor(readonly config: ClassifierConfig = DEFAULT_CLASSIFIER) {
    super();
    const { inChannels, imageSize, channels, hidden, numClasses } = config;
    if (!channels.length || imageSize % 2 ** channels.length !== 0) {
      throw new TensorError('Classifier', `imageSize ${imageSize} must be divisible by 2^${channels.length} (one 2×2 pool per conv)`);
    }
    this.convs = channels.map((c, i) => new Conv2d(i === 0 ? inChannels : channels[i - 1], c, 3, { padding: 1 }));
    const side = imageSize / 2 ** channels.length;
    this.fc = new Linear(channels[channels.length - 1] * side * side, hidden);
    this.head = new Linear(hidden, numClasses);
  }

  spec(): SpecTree {
    return { convs: this.convs.map((c) => c.spec()), fc: this.fc.spec(), head: this.head.spec() };
  }

  /** Penultimate-layer features [N, hidden] of images [N, C, H, W] in [-1, 1]. */
  features(params: Params, x: Tensor, _ctx?: Ctx): Tensor {
    const { inChannels: C, imageSize: S } = this.config;
    if (x.ndim !== 4 || x.shape[1] !== C || x.shape[2] !== S || x.shape[3] !== S) throw new TensorError('Classifier', `expected images [N, ${C}, ${S}, ${S}]`, [x.shape]);
    const convParams = params.convs as Params[];
    let h = x;
    this.convs.forEach((conv, i) => (h = maxPool2x2(relu(conv.apply(convParams[i], h)))));
    return relu(this.fc.apply(getChild(params, 'fc', 'Classifier'), reshape(h, [h.shape[0], -1])));
  }

  /** Class logits [N, numClasses]. */
  apply(params: Params, x: Tensor, ctx?: Ctx): Tensor {
    return this.head.apply(getChild(params, 'head', 'Classifier'), this.features(params, x, ctx));
  }
}

/** Mean cross-entropy of logits [N, K] against int32 labels [N]. */
export function crossEntropy(logits: Tensor, labels: Tensor): Tensor {
  return tidy(() => {
    if (logits.ndim !== 2 || labels.ndim !== 1 || labels.shape[0] !== logits.shape[0]) throw new TensorError('crossEntropy', 'expected logits [N, K] and labels [N]', [logits.shape, labels.shape]);
    return neg(mean(sum(mul(logSoftmax(logits, -1), oneHot(labels, logits.shape[1], logits.dtype)), -1)));
  });
}

export interface EvalResult {
  accuracy: number;
  loss: number;
  count: number;
}

/** Accuracy and mean loss over a whole dataset, in order, batch by batch. */
export async function evaluateClassifier(model: Classifier, params: Params, ds: ImageDataset, { batchSize = 500, backend }: { batchSize?: number; backend?: BackendName } = {}): Promise<EvalResult> {
  let correct = 0;
  let lossSum = 0;
  for (let start = 0; start < ds.count; start += batchSize) {
    const idx = Int32Array.from({ length: Math.min(batchSize, ds.count - start) }, (_, i) => start + i);
    const [hits, loss] = tidy(() => {
      const x = imagesToTensor(ds, idx, undefined, { backend });
      const y = labelsToTensor(ds, idx, { backend });
      const logits = model.apply(params, x);
      return [sum(equal(argmax(logits, 1), y)), mul(crossEntropy(logits, y), idx.length)];
    });
    correct += (await hits.data())[0];
    lossSum += (await loss.data())[0];
    dispose([hits, loss]);
  }
  return { accuracy: correct / ds.count, loss: lossSum / ds.count, count: ds.count };
}

// ------------------------------ training ------------------------------

export interface TrainClassifierOptions {
  train: ImageDataset;
  test?: ImageDataset;
  outDir: string;
  config?: ClassifierConfig;
  epochs: number;
  batchSize: number;
  lr: number;
  warmupSteps?: number;
  /** Clip gradients to this global norm (0: no clipping). */
  clipNorm?: number;
  flip?: boolean;
  seed?: number;
  /** Save a resumable checkpoint every this many steps (and at the end). */
  checkpointEvery?: number;
  backend?: BackendName;
  /** Stop after this many steps in this call (the run stays resumable), e.g. for smoke tests. */
  maxSteps?: number;
  log?: (line: string) => void;
}

export interface ClassifierTrainState {
  params: Params;
  opt: OptState;
  key: random.Key;
  step: number;
}

export interface TrainClassifierResult {
  model: Classifier;
  params: Params;
  step: number;
  totalSteps: number;
  /** Seconds spent training in this call. */
  seconds: number;
  resumedFrom: number;
  test?: EvalResult;
}

const CHECKPOINT = 'checkpoint.safetensors';
const FINAL = 'classifier.safetensors';

/** Save trained classifier parameters with their architecture (for loadClassifier). */
export async function saveClassifier(path: string, model: Classifier, params: Params, metadata: Record<string, string> = {}): Promise<void> {
  await saveCheckpoint(path, { params }, { metadata: { ...metadata, 'classifier.config': JSON.stringify(model.config) } });
}

/** A classifier and its parameters from a file written by saveClassifier or the training loop. */
export async function loadClassifier(path: string, opts: { backend?: BackendName } = {}): Promise<{ model: Classifier; params: Params }> {
  const meta = await readCheckpointMetadata(path);
  if (!meta['classifier.config']) throw new TensorError('loadClassifier', `${path} has no classifier.config metadata (not a classifier checkpoint)`);
  const model = new Classifier(JSON.parse(meta['classifier.config']));
  const { params } = await loadCheckpoint(path, { backend: opts.backend, floatDtype: 'float32' });
  return { model, params: params as Params };
}

function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const r = Math.round(s);
  const m = Math.floor(r / 60);
  return m ? `${m}m${String(r % 60).padStart(2, '0')}s` : `${r}s`;
}

/**
 * Train with Adam (linear warmup, cosine decay), random flips and optional clipping.
 * Resumes from outDir/checkpoint.safetensors when present; every `checkpointEvery` steps
 * and at the end the full training state is saved there atomically, and at the end the
 * parameters go to outDir/classifier.safetensors and the test set is evaluated.
 */
export async function trainClassifier(o: TrainClassifierOptions): Promise<TrainClassifierResult> {
  const log = o.log ?? ((l: string) => console.log(l));
  const config = o.config ?? DEFAULT_CLASSIFIER;
  const model = new Classifier(config);
  const seed = o.seed ?? 0;
  const loader = new ImageLoader(o.train, { batchSize: o.batchSize, key: random.foldIn(random.key(seed), 1), flip: o.flip ?? true, backend: o.backend });
  const totalSteps = o.epochs * loader.stepsPerEpoch;
  const warmup = Math.min(o.warmupSteps ?? Math.round(totalSteps * 0.03), totalSteps - 1);
  const opt: Optimizer = adam({ lr: warmupCosine(o.lr, warmup, totalSteps, 0) });
  const runInfo = JSON.stringify({ config, epochs: o.epochs, batchSize: o.batchSize, lr: o.lr, warmup, clipNorm: o.clipNorm ?? 0, flip: o.flip ?? true, seed, train: o.train.count });
  await mkdir(o.outDir, { recursive: true });
  const ckptPath = join(o.outDir, CHECKPOINT);

  let state: ClassifierTrainState;
  let resumedFrom = 0;
  if (existsSync(ckptPath)) {
    const meta = await readCheckpointMetadata(ckptPath);
    if (meta['classifier.run'] !== runInfo) {
      throw new TensorError('trainClassifier', `${ckptPath} was written by a run with other settings (${meta['classifier.run']}); use another --out or the same settings (${runInfo})`);
    }
    state = (await loadCheckpoint(ckptPath, { backend: o.backend })) as unknown as ClassifierTrainState;
    resumedFrom = state.step;
    log(`resuming from step ${state.step} of ${totalSteps}`);
  } else {
    const params = model.init(random.foldIn(random.key(seed), 0), { backend: o.backend });
    // Batches and flips are a function of (seed, step), so resuming needs only the step;
    // the key is carried for stochastic layers (e.g. dropout) and saved with the state.
    state = { params, opt: opt.init(params), key: random.foldIn(random.key(seed), 2), step: 0 };
    log(`${model.parameterCount().toLocaleString('en-US')} parameters, ${totalSteps} steps (${o.epochs} epochs of ${loader.stepsPerEpoch} batches of ${o.batchSize})`);
  }
  const save = async () => {
    await saveCheckpoint(ckptPath, state as unknown as Record<string, unknown>, { metadata: { 'classifier.run': runInfo, 'classifier.config': JSON.stringify(config) } });
  };

  const lossOf = (params: Params, x: Tensor, y: Tensor) => crossEntropy(model.apply(params, x), y);
  const t0 = performance.now();
  const endStep = Math.min(totalSteps, o.maxSteps !== undefined ? state.step + o.maxSteps : totalSteps);
  let lossAvg = NaN;
  let lastLog = t0;
  while (state.step < endStep) {
    const { x, y } = loader.batch(state.step);
    const [loss, g] = valueAndGrad(lossOf)(state.params, x, y);
    let grads = g;
    if (o.clipNorm) {
      const c = clipByGlobalNorm(g, o.clipNorm);
      dispose([g, c.norm]);
      grads = c.grads;
    }
    const lossValue = (await loss.data())[0];
    if (!Number.isFinite(lossValue)) throw new TensorError('trainClassifier', `the loss became ${lossValue} at step ${state.step} (lower the learning rate or enable clipping)`);
    const next = opt.step(grads, state.opt, state.params);
    dispose([x, y, loss, grads]);
    state = { ...state, params: next.params, opt: next.state, step: state.step + 1 };
    lossAvg = Number.isNaN(lossAvg) ? lossValue : 0.95 * lossAvg + 0.05 * lossValue;
    const now = performance.now();
    const done = state.step - resumedFrom;
    if (now - lastLog > 10_000 || state.step === endStep) {
      const rate = done / ((now - t0) / 1000);
      log(`step ${state.step}/${totalSteps}  epoch ${(state.step / loader.stepsPerEpoch).toFixed(2)}  ${(rate * o.batchSize).toFixed(1)} img/s  loss ${lossAvg.toFixed(4)}  lr ${opt.learningRate(state.step).toExponential(2)}  ETA ${formatDuration((totalSteps - state.step) / rate)}`);
      lastLog = now;
    }
    if (o.checkpointEvery && state.step % o.checkpointEvery === 0 && state.step < endStep) await save();
  }
  const seconds = (performance.now() - t0) / 1000;
  await save();
  const result: TrainClassifierResult = { model, params: state.params, step: state.step, totalSteps, seconds, resumedFrom };
  if (state.step === totalSteps) {
    await saveClassifier(join(o.outDir, FINAL), model, state.params, { step: String(state.step) });
    if (o.test) {
      const t1 = performance.now();
      result.test = await evaluateClassifier(model, state.params, o.test, { backend: o.backend });
      log(`test accuracy ${(100 * result.test.accuracy).toFixed(2)}%  loss ${result.test.loss.toFixed(4)}  (${result.test.count} images, ${((performance.now() - t1) / 1000).toFixed(0)}s)`);
    }
  }
  dispose(state.opt);
  return result;
}
