/**
 * `replay` against eager execution on the synchronous GPU.js backends (webasm by default):
 * the same function called op by op, and replayed as GPU.js pipelines (with the packed
 * matrix products and convolutions running between them as host plans), GPU.js running
 * each pipeline on the calling thread (`fused-sync`) and across its worker pool
 * (`fused-threaded`). Each figure is the median wall-clock time of several calls after
 * two warm-up calls (the first call of a replayed function traces it, the second compiles
 * its pipelines); every call reads its result back.
 *
 *   npm run bench:replay                 # all cases
 *   node bench/replay.js --only unet     # cases whose name contains "unet"
 *   node bench/replay.js --backend cpu
 *   node bench/replay.js --backend webgpu --only unet --unet tiny --batch 128
 *
 * Cases: a chain of 20 elementwise steps (62 kernels) on 1,000 and 100,000 elements; the
 * forward pass plus JVP of the ToyMLP of the 2-D experiments (batch 256, width 128) and of
 * the nano UNet (32×32, batch 8); one SGD step of the ToyMLP on a squared error (batch 256);
 * the nano UNet's sCT gradient as one scmStep computes it (batch 8).
 */
import * as T from '@scm/tensor';
import * as AD from '@scm/autodiff';
import * as NN from '@scm/nn';
import * as CM from '@scm/consistency';
import { median } from './harness.js';

// On glibc, run as a child with the allocator settings training uses (see @scm/tensor's allocator.ts).
if (T.relaunchWithAllocatorSettings()) await new Promise(() => {});

const argv = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
const backend = flag('backend', 'webasm');
const only = flag('only', '');
const reps = Number(flag('reps', 9));
const unetPreset = flag('unet', 'nano');
const unetBatch = Number(flag('batch', 8));
if (backend === 'webgpu' && !(await T.initWebGPU())) throw new Error('bench/replay.js: no WebGPU adapter found');
T.setBackend(backend);

/** A function of a flat list of tensors, with the params pytree among them. */
function withParams(params, fn) {
  const flat = AD.flatten(params);
  return { leaves: flat.leaves, fn: (...args) => fn(flat.unflatten(args.slice(0, flat.leaves.length)), ...args.slice(flat.leaves.length)) };
}

const cases = {
  'elementwise chain, 1,000 elements': () => chain(1000),
  'elementwise chain, 100,000 elements': () => chain(100000),
  'ToyMLP forward + JVP (batch 256, width 128)': () => {
    const net = new NN.ToyMLP({ dim: 2, hidden: 128, depth: 3 });
    const { leaves, fn } = withParams(net.init(T.random.key(0)), (p, y, vy, t, vt) => AD.jvp((a, b) => net.apply(p, a, b), [y, t], [vy, vt]));
    const [k1, k2] = T.random.split(T.random.key(1), 2);
    return { fn, args: [...leaves, T.random.normal(k1, [256, 2]), T.random.normal(k2, [256, 2]), T.full([256], 0.8), T.full([256], 0.3)] };
  },
  'ToyMLP SGD step on a squared error (batch 256, width 128)': () => {
    const net = new NN.ToyMLP({ dim: 2, hidden: 128, depth: 3 });
    const params = net.init(T.random.key(0));
    const flat = AD.flatten(params);
    const n = flat.leaves.length;
    const fn = (...args) => {
      const [x, t, target] = args.slice(n);
      const [loss, grads] = AD.valueAndGrad((p) => T.mean(T.square(T.sub(net.apply(p, x, t), target))))(flat.unflatten(args.slice(0, n)));
      return [loss, ...AD.flatten(grads).leaves.map((g, i) => T.sub(args[i], T.mul(g, 0.01)))];
    };
    const [k1, k2] = T.random.split(T.random.key(1), 2);
    return { fn, args: [...flat.leaves, T.random.normal(k1, [256, 2]), T.full([256], 0.8), T.random.normal(k2, [256, 2])] };
  },
  [`${unetPreset} UNet forward + JVP (32×32, batch ${unetBatch})`]: () => {
    const unet = new NN.UNet({ ...NN.unetPresets[unetPreset], dropout: 0 });
    const { leaves, fn } = withParams(unet.init(T.random.key(0)), (p, y, vy, t, vt) => AD.jvp((a, b) => unet.apply(p, a, b), [y, t], [vy, vt]));
    const [k1, k2] = T.random.split(T.random.key(1), 2);
    const b = unetBatch;
    return { fn, args: [...leaves, T.random.normal(k1, [b, 3, 32, 32]), T.random.normal(k2, [b, 3, 32, 32]), T.full([b], 0.8), T.full([b], 0.3)] };
  },
  [`${unetPreset} UNet sCT gradient, one pass (32×32, batch ${unetBatch})`]: () => scmGradient(unetBatch),
};

/**
 * The sCT step's gradient as scmStep computes it in one pass (JVP inside the gradient), with
 * the draws (noise, times) as arguments and the warmup over (r = 1), no dropout: the whole
 * step but the optimizer update.
 */
function scmGradient(batch) {
  const unet = new NN.UNet({ ...NN.unetPresets[unetPreset], dropout: 0 });
  const net = (p, y, t, ctx) => unet.apply(p, y, t, ctx);
  const head = new CM.WeightingHead();
  const opts = { ...CM.defaultScmOptions, method: 'sct' };
  const state = { net: unet.init(T.random.key(0)), head: head.init() };
  const flat = AD.flatten(state);
  const n = flat.leaves.length;
  const fn = (...args) => {
    const { net: params, head: phi } = flat.unflatten(args.slice(0, n));
    const [x0, z, t] = args.slice(n);
    const xt = CM.addNoise(x0, z, t);
    const dxdt = CM.velocityTarget(x0, z, t);
    const lossFn = (p, ph) => {
      const { F, g: raw } = CM.scmTangent({ net, params: p, xt, t, dxdt, r: 1, sigmaD: opts.sigmaD, ctx: { train: false } });
      return [CM.scmLossOfOutput(F, { phi: ph, head, t, g: CM.normalizeTangent(raw, opts.normalization, opts.normC), opts }), raw];
    };
    const [[loss], grads] = AD.valueAndGrad(lossFn, { argnums: [0, 1], hasAux: true })(params, phi);
    return [loss, ...AD.flatten(grads).leaves];
  };
  const [k1, k2, k3] = T.random.split(T.random.key(1), 3);
  const shape = [batch, 3, 32, 32];
  const x0 = T.sub(T.mul(T.random.uniform(k1, shape), 2), 1);
  return { fn, args: [...flat.leaves, x0, T.random.normal(k2, shape, { std: opts.sigmaD }), CM.sampleTime(k3, batch, opts.pMean, opts.pStd, opts.sigmaD)] };
}

function chain(n) {
  const [k1, k2, k3] = T.random.split(T.random.key(1), 3);
  const fn = (x, w, b) => {
    let y = x;
    for (let i = 0; i < 20; i++) y = T.tanh(T.add(T.mul(y, w), b));
    return T.sum(T.mul(y, y));
  };
  return { fn, args: [T.random.normal(k1, [n]), T.random.normal(k2, [n]), T.random.normal(k3, [n])] };
}

/** Read every output back (at once: on webgpu, eager outputs are read in one wait, as a plan's are). */
async function readAll(out) {
  await Promise.all([...T.collectTensors(out)].map((t) => t.data()));
  T.dispose(out);
}

async function timed(call) {
  for (let i = 0; i < 2; i++) await call();
  const times = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await call();
    times.push(performance.now() - t0);
  }
  return median(times);
}

console.log(`replay against eager on ${backend}: median wall-clock ms of ${reps} calls`);
console.log('');
console.log('| case | eager | replay | replay, GPU.js threads | kernels in pipelines / pipelines / host plans | eager / best replay |');
console.log('|---|--:|--:|--:|--:|--:|');
for (const [name, make] of Object.entries(cases)) {
  if (only && !name.toLowerCase().includes(only.toLowerCase())) continue;
  const { fn, args } = make();
  const eager = await timed(() => readAll(T.tidy(() => fn(...args))));
  const sync = T.replay(fn);
  const tSync = await timed(async () => readAll(await sync(...args)));
  // GPU.js's worker pool exists on webasm only.
  const threaded = backend === 'webasm' ? T.replay(fn, { threads: true }) : null;
  const tThreaded = threaded ? await timed(async () => readAll(await threaded(...args))) : Infinity;
  const shape = `${sync.kernels} / ${sync.pipelines} / ${sync.hostPlans}`;
  const threadedCell = threaded ? `${tThreaded.toFixed(2)} (${threaded.executor})` : '';
  console.log(`| ${name} | ${eager.toFixed(2)} | ${tSync.toFixed(2)} (${sync.executor}) | ${threadedCell} | ${shape} | ${(eager / Math.min(tSync, tThreaded)).toFixed(2)}× |`);
  sync.dispose();
  threaded?.dispose();
  T.dispose(args);
}
process.exit(0);
