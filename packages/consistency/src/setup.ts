/**
 * What a run is made of: its configuration, the data source, and the network, built
 * from command-line names (`--data mnist|toy:NAME|cifar10:PATH`,
 * `--model nano|tiny|small|paper|toy|mlp`).
 */
import { Tensor, random, tidy, mul, sub, fromArray, avgPool2d, setBackend, initWebGPU, type BackendName } from '@scm/tensor';
import {
  UNet, unetPresets, ToyMLP, ImageLoader, loadMnist, loadCifar10, gaussianMixture, checkerboard, twoMoons, spirals,
  type ImageDataset, type Params,
} from '@scm/nn';
import { SIGMA_D, withTimeTransform, type NetFn, type TimeTransform } from './trigflow.js';
import { defaultScmOptions, type ScmOptions } from './scm.js';

export type Method = 'diffusion' | 'sct' | 'scd';

/** A run: Algorithm 1's options (the time proposal and the sCM switches, see ScmOptions) and the rest. */
export interface RunConfig extends Omit<ScmOptions, 'method'> {
  method: Method;
  data: string;
  model: string;
  steps: number;
  batch: number;
  seed: number;
  backend: BackendName;
  // optimizer
  optimizer: 'adam' | 'radam';
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  gradClip: number | null;
  // EMA (EDM's half-life rule with ramp-up)
  emaHalflifeKimg: number;
  emaRampup: number | null;
  dropout: number;
  // network conditioning (ablation: 'edm' + 'fourier')
  timeTransform: TimeTransform;
  timeEmbedding: 'positional' | 'fourier';
  // toy / mlp network size
  hidden: number;
  depth: number;
  // initialization and teacher
  teacher: string | null;
  init: string | null;
  // bookkeeping
  logEvery: number;
  sampleEvery: number;
  checkpointEvery: number;
  checkpointMinutes: number;
  /** Also keep the checkpoint of every N-th step as checkpoint-STEP.safetensors (stages of a long run, to judge later); null: only the latest. */
  keepEvery: number | null;
  minutes: number | null;
  evalSamples: number;
  heunSteps: number;
  /** Replay the sCT/sCD gradient as GPU.js pipelines once the tangent warmup is over (`jit`; one-pass JVP, no dropout). */
  replay: boolean;
}

/** Defaults: Algorithm 1 and the paper's CIFAR-10 settings (App. G), scaled where noted. */
export function defaultConfig(method: Method): RunConfig {
  const cm = method !== 'diffusion';
  return {
    method,
    data: 'toy:moons',
    model: 'toy',
    steps: 2000,
    batch: 256,
    seed: 0,
    backend: 'webasm',
    sigmaD: SIGMA_D,
    // Paper: RAdam lr 1e-4, β = (0.9, 0.99) for sCM; EDM's Adam lr 1e-3 for the teacher.
    optimizer: cm ? 'radam' : 'adam',
    lr: cm ? 1e-4 : 1e-3,
    beta1: 0.9,
    beta2: cm ? 0.99 : 0.999,
    eps: 1e-8,
    gradClip: null,
    emaHalflifeKimg: 500,
    emaRampup: 0.05,
    // Paper: 0.20 for sCT, 0 for sCD and 0.13 for the CIFAR-10 teacher; off by default on these small runs.
    dropout: 0,
    // Paper CIFAR-10: sCM (−1.0, 1.4); EDM's teacher proposal (−1.2, 1.2).
    pMean: cm ? defaultScmOptions.pMean : -1.2,
    pStd: cm ? defaultScmOptions.pStd : 1.2,
    warmupIters: defaultScmOptions.warmupIters,
    normalization: defaultScmOptions.normalization,
    normC: defaultScmOptions.normC,
    adaptiveWeighting: cm,
    extraInvSigmaWeight: false,
    tangent: 'jvp',
    fdSteps: defaultScmOptions.fdSteps,
    timeTransform: 'identity',
    timeEmbedding: 'positional',
    hidden: 256,
    depth: 3,
    teacher: null,
    init: null,
    logEvery: 10,
    sampleEvery: 500,
    checkpointEvery: 500,
    checkpointMinutes: 5,
    keepEvery: null,
    minutes: null,
    evalSamples: 2000,
    heunSteps: 32,
    replay: false,
  };
}

/** Select the backend; webgpu first needs an adapter (a GPU or a software Vulkan driver). */
export async function useBackend(name: BackendName): Promise<void> {
  if (name === 'webgpu' && !(await initWebGPU())) throw new Error('--backend webgpu: no WebGPU adapter answered (no GPU and no software Vulkan driver?)');
  setBackend(name);
}

// ------------------------------ data ----------------------------------------

export interface DataSource {
  readonly name: string;
  readonly kind: 'image' | 'points';
  /** Shape of one sample, e.g. [1, 28, 28] or [2]. */
  readonly sampleShape: number[];
  /** Images: pixel value range [−range, range] of the training data (1 for [−1, 1]). */
  readonly range: number;
  /** Batch number `step` (a pure function of the step: resumed runs see the same batches). */
  batch(step: number): Tensor;
  /** n fresh data samples for evaluation (points only). */
  reference(n: number, seed: number): Tensor;
}

const TOYS: Record<string, (key: random.Key, n: number) => Tensor> = {
  moons: (k, n) => twoMoons(k, n),
  '8gaussians': (k, n) => gaussianMixture(k, n, { modes: 8, radius: 2, std: 0.05 }),
  checkerboard: (k, n) => checkerboard(k, n),
  spirals: (k, n) => spirals(k, n),
};

export const TOY_NAMES = Object.keys(TOYS);

/**
 * A 2-D toy, centred and scaled by one factor so that its per-coordinate standard
 * deviation (averaged over the two axes) is σ_d (spec §9.3), estimated once from 20,000 points.
 */
export async function toySource(name: string, batch: number, seed: number, sigmaD: number): Promise<DataSource> {
  const gen = TOYS[name];
  if (!gen) throw new Error(`unknown toy data "${name}" (expected one of ${TOY_NAMES.join(', ')})`);
  const probe = gen(random.key(0x5eed), 20000);
  const v = await probe.data();
  let mx = 0, my = 0;
  for (let i = 0; i < 20000; i++) [mx, my] = [mx + v[2 * i], my + v[2 * i + 1]];
  [mx, my] = [mx / 20000, my / 20000];
  let ss = 0;
  for (let i = 0; i < 20000; i++) ss += (v[2 * i] - mx) ** 2 + (v[2 * i + 1] - my) ** 2;
  probe.dispose();
  const scale = sigmaD / Math.sqrt(ss / 40000);
  const normalize = (x: Tensor) => tidy(() => mul(sub(x, fromArray([mx, my], [1, 2], { dtype: x.dtype, backend: x.backend })), scale));
  const key = random.key(seed);
  return {
    name: `toy:${name}`,
    kind: 'points',
    sampleShape: [2],
    range: 1,
    batch: (step) => {
      const raw = gen(random.foldIn(key, step), batch);
      const out = normalize(raw);
      raw.dispose();
      return out;
    },
    reference: (n, s) => {
      const raw = gen(random.foldIn(random.key(s), 0x7e57), n);
      const out = normalize(raw);
      raw.dispose();
      return out;
    },
  };
}

/** Images from [−1, 1] scaled to [−range, range], optionally shrunk by `pool`×`pool` averaging. */
function imageSource(ds: ImageDataset, batch: number, seed: number, range = 1, pool = 1): DataSource {
  const loader = new ImageLoader(ds, { batchSize: batch, key: random.key(seed) });
  if (ds.height % pool !== 0 || ds.width % pool !== 0) throw new Error(`${ds.name}: ${ds.height}×${ds.width} images do not shrink by ${pool}`);
  return {
    name: pool === 1 ? ds.name : `${ds.name} ${ds.height / pool}×${ds.width / pool}`,
    kind: 'image',
    sampleShape: [ds.channels, ds.height / pool, ds.width / pool],
    range,
    batch: (step) => {
      const b = loader.batch(step);
      b.y.dispose();
      if (range === 1 && pool === 1) return b.x;
      const x = tidy(() => mul(pool === 1 ? b.x : avgPool2d(b.x, pool), range));
      b.x.dispose();
      return x;
    },
    reference: () => {
      throw new Error('reference samples are only drawn for 2-D data');
    },
  };
}

/**
 * The data source named by `--data` (mnist, mnist:14, toy:NAME, cifar10:PATH, cifar10@16:PATH), with σ_d = 0.5 in mind: CIFAR-10 pixels in [−1, 1]
 * (std ≈ 0.5, as the paper), MNIST pixels in [−0.5, 0.5] (as spec §9.4 and sCM-mnist: in
 * [−1, 1] MNIST has RMS ≈ 0.97, twice σ_d, because of its black background).
 */
export async function buildData(cfg: Pick<RunConfig, 'data' | 'batch' | 'seed' | 'sigmaD'>): Promise<DataSource> {
  const [kind, arg] = splitOnce(cfg.data);
  if (kind === 'mnist') {
    // mnist:14 averages 2×2 blocks (14×14 digits: a quarter of the compute per image).
    const size = arg ? Number(arg) : 28;
    if (size !== 28 && size !== 14) throw new Error(`--data mnist:${arg}: the size must be 28 or 14`);
    return imageSource(loadMnist({ split: 'train' }), cfg.batch, cfg.seed, 0.5, 28 / size);
  }
  if (kind === 'cifar10' || kind === 'cifar10@16') {
    // cifar10@16:PATH averages 2×2 blocks (16×16 images: a quarter of the compute per image).
    if (!arg) throw new Error(`--data ${kind}:PATH needs the path of the CIFAR-10 binary folder or .tar.gz`);
    return imageSource(await loadCifar10(arg, 'train'), cfg.batch, cfg.seed, 1, kind === 'cifar10' ? 1 : 2);
  }
  if (kind === 'toy') return toySource(arg || 'moons', cfg.batch, cfg.seed, cfg.sigmaD);
  throw new Error(`unknown --data "${cfg.data}" (expected mnist, mnist:14, toy:NAME, cifar10:PATH or cifar10@16:PATH)`);
}

function splitOnce(s: string): [string, string] {
  const i = s.indexOf(':');
  return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)];
}

// ------------------------------ model ---------------------------------------

export interface Model {
  module: UNet | ToyMLP;
  /** F(params, x_t/σ_d, t): the module behind the configured time transform. */
  net: NetFn<Params>;
}

export const MODEL_NAMES = ['nano', 'tiny', 'small', 'paper', 'toy', 'mlp'];

/**
 * The network for `--model`: a UNet preset (images), ToyMLP (2-D points), or 'mlp' (the
 * ToyMLP on flattened images; a cheap image model for CPU experiments).
 */
export function buildModel(cfg: Pick<RunConfig, 'model' | 'dropout' | 'timeEmbedding' | 'timeTransform' | 'hidden' | 'depth' | 'sigmaD'>, sampleShape: number[]): Model {
  const dim = sampleShape.reduce((a, b) => a * b, 1);
  let module: UNet | ToyMLP;
  let apply: NetFn<Params>;
  if (cfg.model === 'toy' || cfg.model === 'mlp') {
    const mlp = new ToyMLP({ dim, hidden: cfg.hidden, depth: cfg.depth, embChannels: cfg.model === 'mlp' ? 128 : 64, timeEmbedding: cfg.timeEmbedding, dropout: cfg.dropout });
    module = mlp;
    apply = sampleShape.length === 1
      ? (p, y, t, ctx) => mlp.apply(p, y, t, ctx)
      : (p, y, t, ctx) => mlp.apply(p, y.reshape([y.shape[0], dim]), t, ctx).reshape(y.shape);
  } else if (cfg.model in unetPresets) {
    if (sampleShape.length !== 3 || sampleShape[1] !== sampleShape[2]) throw new Error(`--model ${cfg.model} needs square images, got samples of shape [${sampleShape}]`);
    const preset = unetPresets[cfg.model as keyof typeof unetPresets];
    const unet = new UNet({ ...preset, imageChannels: sampleShape[0], imageSize: sampleShape[1], dropout: cfg.dropout, timeEmbedding: cfg.timeEmbedding });
    module = unet;
    apply = (p, y, t, ctx) => unet.apply(p, y, t, ctx);
  } else {
    throw new Error(`unknown --model "${cfg.model}" (expected one of ${MODEL_NAMES.join(', ')})`);
  }
  return { module, net: withTimeTransform(apply, cfg.timeTransform, cfg.sigmaD) };
}
