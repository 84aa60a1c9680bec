#!/usr/bin/env node
/**
 * The whole sCT training step (JVP + forward + backward + optimizer update + EMA) of the
 * "nano", "tiny" and "small" UNets at 32x32x3: ours against PyTorch and jax-js on the same
 * machine, in one table.
 *
 *   npm run build && node bench/sct-step.js [--json FILE]                 CPU: ours:webasm, torch:cpu, jax-js:wasm
 *   node bench/sct-step.js --backend webgpu --torch-device cuda           GPU (see bench/gpu.sh)
 *   node bench/sct-step.js --matmul 4096 --backend webgpu                 one matmul, ours vs jax-js
 *
 * Options (defaults in brackets):
 *   --presets nano,tiny,small  --batches 32,128            what to run, for every implementation
 *   --ours-presets/--ours-batches, --torch-presets/--torch-batches, --jax-presets [all but small]/--jax-batches
 *                                                          per-implementation overrides
 *   --impls ours,torch,jax-js  --backend webasm|cpu|webgpu  --torch-device cpu|cuda
 *   --torch-threads [2,1]  --torch-1t-batches [the first batch, when 2 threads run too]  --python PATH
 *   --jax-device wasm|webgpu  --jax-max-batch N (where jax-js runs out of memory, the batch is halved anyway)
 *   --warmup [1]  --reps [3]  --config-budget-s [60]  --deadline-s (skip what would start later)
 *   --memory-steps N --memory-config [nano:32]             N steps in a row: live tensors, buffers, host
 *                                                          RSS and GPU memory (nvidia-smi) stay flat?
 *   --replay                                               our whole step (gradient, RAdam, EMA) replayed
 *                                                          as a GPU.js plan (`jit`, as `scm train
 *                                                          --replay`; impl ours:BACKEND:replay); only
 *                                                          the step is timed
 *   --two-pass                                             our step as Algorithm 1 is written, as the peers
 *                                                          run it (impl ours:BACKEND:2pass); by default the
 *                                                          network's forward runs once (consistency README)
 *   --profile [--no-split-sums]                            our step only (first preset and batch): time and
 *                                                          calls per primitive (PROFILE_PROGRAMS=1 in the
 *                                                          environment: fused kernels by the ops they hold;
 *                                                          PROFILE_SHAPES=1: by input shapes too)
 *   --image-size [32] (smaller only to check the scripts end to end on a slow device)  --json FILE
 *
 * What is timed, for every implementation alike (wall clock, and this process's CPU time):
 *  - step: one real training iteration. Ours is what `scm train` runs: scmStep (draw, then
 *    valueAndGrad of the sCT loss with the JVP tangent inside it, the network's forward run
 *    once; --two-pass: the JVP, then the loss's forward) then RAdam (lr 1e-4, betas 0.9/0.99)
 *    and the EMA, reading the new EMA parameters back (all at once). PyTorch: torch_sct.py (torch.func/
 *    functorch jvp, then the loss's forward; torch.optim.RAdam). jax-js: jaxjs-sct.js (one
 *    jit'ed function, the same two passes).
 *  - forward: the network alone on the batch; jvp: the tangent pass alone (scmTangent);
 *    grad+update = step - jvp (the loss's forward and backward, the optimizer and the EMA).
 * Each repetition times step, forward and jvp back to back; medians after warm-up.
 *
 * All three run the same weights: ours are initialized, exported (manifest.json +
 * params.bin) and loaded by the other two, which first check their forward pass and JVP
 * against ours on two images (max error relative to the largest output).
 *
 * Time: each (implementation, preset, batch) gets --config-budget-s seconds. A step cost
 * model (seconds per GFLOP·image, from that implementation's first measurement) decides
 * whether warm-up plus one timed repetition fits; if not, the step is measured at a
 * smaller batch and its images/s carried over, marked "~x@bN" in the table and with
 * `measuredBatch` and `note` in the JSON ({ case, impl, unit, value, measuredBatch?, note? }).
 * images/s usually grows with the batch, so such an estimate is on the low side. On this
 * 2-core machine the default run takes about 10 minutes (18 at --config-budget-s 90).
 */
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as T from '@scm/tensor';
import * as AD from '@scm/autodiff';
import * as NN from '@scm/nn';
import * as CM from '@scm/consistency';

// On glibc, run as a child with the allocator settings training uses (see @scm/tensor's allocator.ts).
if (T.relaunchWithAllocatorSettings()) await new Promise(() => {});

const argv = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const list = (s) => s.split(',').filter(Boolean);
const log = (line) => process.stderr.write(`${line}\n`);

const backend = flag('--backend', 'webasm');
const gpu = backend === 'webgpu';
const opts = {
  presets: list(flag('--presets', 'nano,tiny,small')),
  batches: list(flag('--batches', '32,128')).map(Number),
  impls: list(flag('--impls', 'ours,torch,jax-js')),
  torchDevice: flag('--torch-device', gpu ? 'cuda' : 'cpu'),
  torchThreads: list(flag('--torch-threads', '2,1')).map(Number),
  jaxDevice: flag('--jax-device', gpu ? 'webgpu' : 'wasm'),
  // jax-js: nano and tiny by default (small is out of reach of its wasm device).
  jaxPresets: flag('--jax-presets'),
  jaxBatches: flag('--jax-batches'),
  oursPresets: flag('--ours-presets'),
  oursBatches: flag('--ours-batches'),
  torchPresets: flag('--torch-presets'),
  torchBatches: flag('--torch-batches'),
  // PyTorch with one thread: the first batch only unless given (the reference the CPU targets use).
  torch1tBatches: flag('--torch-1t-batches'),
  deadlineS: Number(flag('--deadline-s', 'Infinity')),
  memorySteps: Number(flag('--memory-steps', '0')),
  memoryConfig: flag('--memory-config', 'nano:32'),
  jaxMaxBatch: Number(flag('--jax-max-batch', 'Infinity')),
  warmup: Number(flag('--warmup', '1')),
  reps: Number(flag('--reps', '3')),
  budgetS: Number(flag('--config-budget-s', '60')),
  json: flag('--json'),
  // Smaller images (e.g. 8) only to check the scripts end to end on a slow device.
  imageSize: Number(flag('--image-size', '32')),
  peerTimeoutS: Number(flag('--peer-timeout-s', '900')),
};
/** The case name of one configuration (the peers build the same). */
const presetName = (preset) => `sct ${preset}${opts.imageSize !== 32 ? ` ${opts.imageSize}px` : ''}`;
const caseBase = (preset, batch) => `${presetName(preset)} b${batch}`;
const here = fileURLToPath(new URL('.', import.meta.url));
// --two-pass: our step as Algorithm 1 is written (the JVP, then the loss's own forward pass), as
// the PyTorch and jax-js mirrors run it; by default ours runs the forward once (onePass).
const twoPass = argv.includes('--two-pass');
// --replay: our whole step (the one-pass sCT gradient, RAdam and the EMA) runs as a replayed
// plan (`jit`), as `scm train --replay` runs it after the tangent warmup.
const replayStep = argv.includes('--replay');
if (replayStep && twoPass) throw new Error('--replay replays the one-pass gradient: leave out --two-pass');
const ourImpl = `ours:${backend}${twoPass ? ':2pass' : ''}${replayStep ? ':replay' : ''}`;
const torchImpl = (threads) => (opts.torchDevice !== 'cpu' || threads === 2 ? `torch:${opts.torchDevice}` : `torch:${opts.torchDevice}:${threads}t`);
const jaxImpl = `jax-js:${opts.jaxDevice}`;

// ----------------------------------------------------------------------------- model facts

/** Forward FLOPs per image of a UNet (convolutions, linear maps inside blocks, attention matmuls). */
function gflopPerImage(unet) {
  let flops = 0;
  const conv = (cin, cout, k, res) => (flops += 2 * cin * cout * k * k * res * res);
  const resOf = (name) => Number(name.split('x')[0]);
  const block = (b, res) => {
    conv(b.inChannels, b.outChannels, 3, res);
    conv(b.outChannels, b.outChannels, 3, res);
    if (b.skip) conv(b.inChannels, b.outChannels, 1, res);
    if (b.attn) {
      const c = b.outChannels, L = res * res;
      conv(c, 3 * c, 1, res);
      conv(c, c, 1, res);
      flops += 4 * L * L * c;
    }
  };
  for (const { name, block: b } of unet.enc) {
    if (b instanceof NN.Conv2d) conv(b.inChannels, b.outChannels, 3, resOf(name));
    else block(b, resOf(name));
  }
  for (const { name, block: b } of unet.dec) block(b, resOf(name));
  conv(unet.outConv.inChannels, unet.outConv.outChannels, 3, unet.config.imageSize);
  return flops / 1e9;
}

const makeUnet = (preset) => new NN.UNet({ ...NN.unetPresets[preset], imageSize: opts.imageSize, dropout: 0, timeEmbedding: 'positional' });

// ----------------------------------------------------------------------------- export for the peers

/**
 * Write our initial parameters (float32, in namedParameters order) and, for the check, a
 * forward pass and a JVP on two images, to DIR/manifest.json + DIR/params.bin.
 */
async function exportModel(preset, params, dir) {
  const unet = makeUnet(preset);
  const chunks = [];
  let offset = 0;
  const entry = async (t) => {
    const data = Float32Array.from(await t.data());
    chunks.push(data);
    const e = { shape: [...t.shape], offset };
    offset += data.length;
    return e;
  };
  const S = opts.imageSize;
  const manifest = { preset, imageSize: S, parameterCount: NN.parameterCount(params), params: [] };
  for (const [name, t] of NN.namedParameters(params)) manifest.params.push({ name, ...(await entry(t)) });
  const k = T.random.split(T.random.key(77), 2);
  const y = T.random.normal(k[0], [2, 3, S, S]), vy = T.random.normal(k[1], [2, 3, S, S]);
  const t = T.fromArray([0.3, 1.2], [2]), vt = T.fromArray([0.7, -0.4], [2]);
  const [F, J] = AD.jvp((yy, tt) => unet.apply(params, yy, tt), [y, t], [vy, vt]);
  for (const [key, v] of Object.entries({ y, t, vy, vt, F, J })) manifest[key] = await entry(v);
  T.dispose([y, vy, t, vt, F, J]);
  const bin = new Float32Array(offset);
  let at = 0;
  for (const c of chunks) bin.set(c, (at += c.length) - c.length);
  writeFileSync(join(dir, 'params.bin'), bin);
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
  return manifest;
}

// ----------------------------------------------------------------------------- ours

function leaves(tree) {
  return [...T.collectTensors(tree)];
}

/**
 * Our training state for one preset and batch, and the three timed functions: a training
 * iteration as `scm train` runs it, the forward pass, the tangent pass.
 */
function oursTrainer(preset, batch, params0) {
  const unet = makeUnet(preset);
  const net = (p, y, t, ctx) => unet.apply(p, y, t, ctx);
  const head = new CM.WeightingHead();
  const scm = { ...CM.defaultScmOptions, method: 'sct', onePass: !twoPass };
  const optimizer = NN.radam({ lr: 1e-4, b1: 0.9, b2: 0.99, eps: 1e-8 });
  const ema = NN.emaHalflife({ halflifeKimg: 500, rampupRatio: 0.05, batchSize: batch });
  const runKey = T.random.key(0);
  let params = T.tidy(() => NN.namedParameters(params0).reduce((acc, [name, v]) => setPath(acc, name, T.mul(v, 1)), {}));
  let phi = head.init();
  let opt = optimizer.init({ net: params, head: phi });
  let emaState = ema.init(params);
  // Pixels in [-1, 1], as the CIFAR-10 loader gives.
  const shape = [batch, 3, opts.imageSize, opts.imageSize];
  const x0 = T.tidy(() => T.sub(T.mul(T.random.uniform(T.random.key(5), shape), 2), 1));
  let iter = 0;
  // Traced on the first step (r = 1: the warmup only scales a scalar, so the kernels are the same).
  const replayed = replayStep ? AD.jit(CM.onePassTrainStep(net, head, scm, optimizer, { train: false })) : undefined;

  const step = async () => {
    const key = T.random.foldIn(runKey, iter);
    if (replayed) {
      const r = await CM.replayedScmStep(replayed, { state: { params, phi, opt, emaParams: emaState.params }, x0, key, optimizer, emaBeta: ema.beta(emaState.nimg) }, scm);
      T.dispose([params, phi, opt, emaState.params]);
      [params, phi, opt, emaState, iter] = [r.state.params, r.state.phi, r.state.opt, { nimg: emaState.nimg + batch, params: r.state.emaParams }, iter + 1];
    } else {
      const res = await CM.scmStep({ net, params, head, phi, x0, key, iter, train: false }, scm);
      const upd = optimizer.step({ net: res.gradParams, head: res.gradPhi }, opt, { net: params, head: phi });
      T.dispose([res.gradParams, res.gradPhi]);
      emaState = ema.step(emaState, upd.params.net);
      [params, phi, opt, iter] = [upd.params.net, upd.params.head, upd.state, iter + 1];
    }
    // Wait for the step's last kernels (the EMA), all read back at once.
    await Promise.all(leaves(emaState.params).map((leaf) => leaf.data()));
  };
  // The tangent pass alone, on one fixed draw (as scmStep makes it).
  const [kz, kt] = T.random.split(T.random.key(9), 2);
  const fixed = T.tidy(() => {
    const z = T.random.normal(kz, shape, { std: scm.sigmaD });
    const t = CM.sampleTime(kt, batch, scm.pMean, scm.pStd, scm.sigmaD);
    return { t, xt: CM.addNoise(x0, z, t), dxdt: CM.velocityTarget(x0, z, t), y: T.div(x0, scm.sigmaD), tForward: T.full([batch], 0.8) };
  });
  const jvp = async () => {
    const out = CM.scmTangent({ net, params, xt: fixed.xt, t: fixed.t, dxdt: fixed.dxdt, r: CM.warmupFactor(iter, scm.warmupIters), sigmaD: scm.sigmaD, ctx: { train: false } });
    await out.g.data();
    T.dispose([out.F, out.J, out.g]);
  };
  const forward = async () => {
    const out = T.tidy(() => unet.apply(params, fixed.y, fixed.tForward));
    await out.data();
    out.dispose();
  };
  const dispose = () => {
    replayed?.dispose();
    T.dispose([params, phi, opt, emaState.params, x0, fixed]);
  };
  // Replayed, only the step is timed: the forward and the tangent pass alone stay eager.
  return { fns: replayStep ? { step } : { step, forward, jvp }, dispose, executor: () => replayed?.last?.executor ?? null };
}

/** Time our step, forward and JVP on one preset and batch; returns per-run { step, forward, jvp: [wall, cpu] ms }. */
async function measureOurs(preset, batch, params0) {
  const baseline = T.memory();
  const trainer = oursTrainer(preset, batch, params0);
  const runs = await timeRounds(trainer.fns, { ...opts, warmAll: false });
  if (replayStep) log(`  ${ourImpl} ${preset} b${batch}: the step ran as ${trainer.executor()}`);
  trainer.dispose();
  const after = T.memory();
  if (after.tensors !== baseline.tensors || after.buffers !== baseline.buffers) {
    throw new Error(`${ourImpl} ${preset} b${batch}: the training step leaked (${JSON.stringify(baseline)} -> ${JSON.stringify(after)})`);
  }
  return runs;
}

/** GPU memory in use (MiB, all processes), where nvidia-smi answers. */
function gpuMemoryMiB() {
  const r = spawnSync('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits'], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim().split('\n')[0]) : undefined;
}

/**
 * Many training steps in a row: live tensors and buffers (ours), host RSS and GPU memory
 * (nvidia-smi) after the first tenth of the steps and at the end; all should stay flat.
 */
async function memoryRun(preset, batch, params0, steps) {
  const trainer = oursTrainer(preset, batch, params0);
  const name = `${caseBase(preset, batch)} ${steps} steps`;
  const probe = () => ({ ...T.memory(), rss: process.memoryUsage().rss / 2 ** 20, gpu: gpuMemoryMiB() });
  const started = performance.now();
  let early;
  for (let i = 1; i <= steps; i++) {
    await trainer.fns.step();
    if (i === Math.max(1, Math.floor(steps / 10))) early = probe();
  }
  const late = probe();
  if (replayStep) log(`  ${ourImpl} ${name}: the step ran as ${trainer.executor()}`);
  trainer.dispose();
  add(name, ourImpl, 'live tensors change', late.tensors - early.tensors);
  add(name, ourImpl, 'buffers change', late.buffers - early.buffers);
  add(name, ourImpl, 'host RSS MiB change', late.rss - early.rss);
  if (late.gpu !== undefined && early.gpu !== undefined) add(name, ourImpl, 'GPU MiB change', late.gpu - early.gpu);
  log(`  ${ourImpl} ${name} (${((performance.now() - started) / 1000).toFixed(0)} s): from step ${Math.max(1, Math.floor(steps / 10))} to ${steps}: `
    + `tensors ${early.tensors} -> ${late.tensors}, buffers ${early.buffers} -> ${late.buffers}, RSS ${early.rss.toFixed(0)} -> ${late.rss.toFixed(0)} MiB`
    + (late.gpu !== undefined ? `, GPU ${early.gpu} -> ${late.gpu} MiB` : ''));
}

function setPath(tree, dotted, value) {
  const path = dotted.split('.');
  let node = tree;
  for (const k of path.slice(0, -1)) node = node[k] ??= {};
  node[path.at(-1)] = value;
  return tree;
}

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** Warm-up, then rounds of (step, forward, jvp) until `reps` rounds, or until another would end past the budget (at least one). */
async function timeRounds(fns, { warmup, reps, budgetS, warmAll }) {
  for (let i = 0; i < warmup; i++) {
    await fns.step();
    if (warmAll) {
      await fns.forward();
      await fns.jvp();
    }
  }
  const runs = [];
  const start = performance.now();
  let last = 0;
  while (runs.length < reps && (runs.length === 0 || performance.now() - start + last < budgetS * 1000)) {
    const round = performance.now();
    const run = {};
    for (const [name, fn] of Object.entries(fns)) {
      const w = performance.now(), c = cpuMs();
      await fn();
      run[name] = [performance.now() - w, cpuMs() - c];
    }
    runs.push(run);
    last = performance.now() - round;
  }
  return runs;
}

// ----------------------------------------------------------------------------- results

const records = [];
function add(caseName, impl, unit, value, note) {
  const r = { case: caseName, impl, unit, value: Number(value.toPrecision(4)) };
  if (note) Object.assign(r, note);
  records.push(r);
  // Written as they come, so a run stopped at a time limit keeps what it measured.
  if (opts.json) writeFileSync(opts.json, JSON.stringify(records, null, 2) + '\n');
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Records of one measurement (per-run timings), under the case name of `batch` (scaled from `measuredBatch` if different). */
function addMeasurement(impl, preset, batch, measuredBatch, runs, note) {
  const name = caseBase(preset, batch);
  const scale = batch / measuredBatch;
  const med = (f) => median(runs.map(f));
  const stepMs = med((r) => r.step[0]);
  add(`${name} step`, impl, 'img/s', (measuredBatch / stepMs) * 1000, note);
  // CPU time means nothing where the work runs on a GPU (driver threads).
  if (!gpu) add(`${name} step`, impl, 'img/s cpu-time', (measuredBatch / med((r) => r.step[1])) * 1000, note);
  if (runs[0].forward) add(`${name} forward`, impl, 'ms', med((r) => r.forward[0]) * scale, note);
  if (runs[0].jvp) {
    add(`${name} jvp`, impl, 'ms', med((r) => r.jvp[0]) * scale, note);
    add(`${name} grad+update`, impl, 'ms', med((r) => r.step[0] - r.jvp[0]) * scale, note);
  }
  add(`${name} step`, impl, 'ms', stepMs * scale, note);
}

/** Peer records (already in our format) for `measuredBatch`, renamed and scaled to `batch`. */
function addPeerRecords(recs, preset, batch, measuredBatch, note) {
  const scale = batch / measuredBatch;
  for (const r of recs) {
    if (r.unit === 'runs') continue;
    const c = r.case.replace(`${caseBase(preset, measuredBatch)} `, `${caseBase(preset, batch)} `);
    add(c, r.impl, r.unit, r.unit === 'ms' ? r.value * scale : r.value, note);
  }
}

// ----------------------------------------------------------------------------- planning

/** Seconds per (GFLOP·image) of one step, per implementation: the cost model, from its first measurement. */
const secPerGflopImage = new Map();
const measuredAt = new Map(); // `${impl}|${preset}` -> [{ batch, runs | recs }]

/**
 * The batch to measure (preset, target batch) at: the target when warm-up plus one round
 * (step + forward + jvp ≈ 1.6 steps) fits the budget, else the largest smaller batch that fits.
 * Returns { batch, reuse } where reuse is an earlier measurement of the same preset to carry over.
 */
function plan(impl, preset, batch, gflop, maxBatch = Infinity) {
  const model = secPerGflopImage.get(impl);
  const cost = (b) => (model === undefined ? 0 : model * gflop * b * (opts.warmup + 1.6));
  const fits = (b) => b <= maxBatch && cost(b) <= opts.budgetS;
  if (fits(batch)) return { batch };
  const earlier = (measuredAt.get(`${impl}|${preset}`) ?? []).filter((m) => m.batch < batch).sort((a, b) => b.batch - a.batch)[0];
  if (earlier) return { batch: earlier.batch, reuse: earlier };
  for (const b of [64, 32, 16, 8, 4, 2, 1]) if (b < batch && fits(b)) return { batch: b };
  return { batch: 1 };
}

function remember(impl, preset, batch, gflop, stepMs, data) {
  if (!secPerGflopImage.has(impl)) secPerGflopImage.set(impl, stepMs / 1000 / (gflop * batch));
  const key = `${impl}|${preset}`;
  measuredAt.set(key, [...(measuredAt.get(key) ?? []), { batch, ...data }]);
}

/** The mark of an estimate: the batch it was measured at, and why. */
const estimateNote = (measured, why = 'the row\'s batch was over the time budget') => ({ measuredBatch: measured, note: why });

// ----------------------------------------------------------------------------- peers

function findPython() {
  const candidates = [flag('--python'), process.env.PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean);
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return { py, version: r.stdout.trim() };
  }
  return null;
}

/** A peer script next to this one (in a bundle, its bundled sibling), else in bench/. */
function peerScript(name) {
  const sibling = join(here, name);
  return existsSync(sibling) ? sibling : join('bench', name);
}

/** Run a peer command that prints JSON on its last stdout line. */
function runPeer(cmd, args, env = {}) {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env }, maxBuffer: 64 << 20, timeout: opts.peerTimeoutS * 1000,
  });
  const stderr = (r.stderr ?? '').split('\n').filter((l) => l && !l.startsWith('Warning: maxDynamic'));
  if (r.status !== 0) {
    const outOfMemory = stderr.some((l) => /memory32 limit|out of memory/i.test(l));
    const why = r.error?.code === 'ETIMEDOUT' ? `ran past ${opts.peerTimeoutS} s` : outOfMemory ? 'ran out of memory' : `exited with ${r.status ?? r.signal}`;
    if (!outOfMemory) stderr.slice(-8).forEach((l) => log(`    ${l}`));
    return { error: `${cmd} ${args.join(' ')} ${why}`, outOfMemory };
  }
  stderr.filter((l) => / step /.test(l)).forEach((l) => log(l));
  const last = r.stdout.trim().split('\n').at(-1);
  try {
    return { value: JSON.parse(last) };
  } catch {
    return { error: `unexpected output from ${cmd} ${args[0]}: ${last}` };
  }
}

// On a shared machine, OpenMP's spinning worker threads collapse when a core is taken
// (PyTorch 2 threads: 2 img/s instead of 15 on nano); passive waiting is PyTorch's fair case.
const torchEnv = { OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'PASSIVE' };

// ----------------------------------------------------------------------------- table

function printTable(write = (l) => console.log(l)) {
  // Ours, then PyTorch (default threads first), then jax-js.
  const rank = (i) => (i === ourImpl ? 0 : i.startsWith('torch:') ? (i.split(':').length === 2 ? 1 : 2) : 3);
  const impls = [...new Set(records.map((r) => r.impl))].sort((a, b) => rank(a) - rank(b));
  const ratios = impls.filter((i) => i !== ourImpl).map((i) => [ourImpl, i]);
  const throughput = (unit) => unit.startsWith('img/s') || unit === 'GFLOP/s';
  const speed = (unit, ours, theirs) => (ours === undefined || theirs === undefined || !(throughput(unit) || unit === 'ms') ? undefined : throughput(unit) ? ours / theirs : theirs / ours);
  const keys = [];
  for (const r of records) if (!keys.some((k) => k.case === r.case && k.unit === r.unit)) keys.push({ case: r.case, unit: r.unit });
  const find = (c, impl, unit) => records.find((r) => r.case === c && r.impl === impl && r.unit === unit);
  const notes = [];
  const cell = (r) => {
    if (!r) return '';
    const a = Math.abs(r.value);
    const v = a >= 100 ? r.value.toFixed(0) : a >= 1 || a === 0 ? r.value.toFixed(2) : a >= 0.01 ? r.value.toPrecision(3) : r.value.toExponential(1);
    if (!r.note) return v;
    if (!notes.includes(r.note)) notes.push(r.note);
    return `~${v}@b${r.measuredBatch}`;
  };
  const header = ['case', 'unit', ...impls, ...ratios.map(([, b]) => `ours/${b.replace(/^torch:cpu$/, 'torch').replace(/^jax-js:.*/, 'jax-js')}`)];
  const rows = [header];
  for (const { case: c, unit } of keys) {
    rows.push([
      c, unit,
      ...impls.map((i) => cell(find(c, i, unit))),
      ...ratios.map(([a, b]) => {
        const s = speed(unit, find(c, a, unit)?.value, find(c, b, unit)?.value);
        const est = find(c, a, unit)?.note || find(c, b, unit)?.note;
        return s === undefined ? '' : `${est ? '~' : ''}${s.toFixed(2)}x`;
      }),
    ]);
  }
  const widths = header.map((_, k) => Math.max(...rows.map((row) => row[k].length)));
  rows.forEach((row, i) => {
    write(row.map((v, k) => (k < 2 ? v.padEnd(widths[k]) : v.padStart(widths[k]))).join('  '));
    if (i === 0) write(widths.map((w) => '-'.repeat(w)).join('  '));
  });
  write('\nours/X: speed of ours relative to X (above 1: ours is faster).');
  if (records.some((r) => r.case.endsWith(' grad+update'))) write('grad+update = step - jvp. img/s cpu-time: images per second of the process\'s CPU time (all its threads).');
  if (notes.length) write(`~x@bN: estimated from a measurement at batch N (images/s carried over, times scaled by the batch ratio): ${notes.join('; ')}.`);
}

// ----------------------------------------------------------------------------- matmul mode

async function matmulMode(n) {
  const { timeIt, randomArray } = await import('./harness.js');
  const flops = 2 * n ** 3;
  // On the device before timing (a webgpu tensor made from host data stays on the host until
  // a kernel reads it, and would be uploaded by every product), as jax-js's arrays are.
  const operand = (seed) => T.tidy(() => {
    const x = T.fromArray(randomArray(n * n, seed), [n, n]);
    return gpu ? T.mul(x, 1) : x;
  });
  const a = operand(1), b = operand(2);
  const ours = await timeIt(async () => {
    const c = T.matmul(a, b);
    await c.data();
    c.dispose();
  }, { warmup: 1, reps: 5, minReps: 2, budgetMs: 20000 });
  add(`matmul ${n}^3`, ourImpl, 'ms', ours);
  add(`matmul ${n}^3`, ourImpl, 'GFLOP/s', flops / ours / 1e6);
  T.dispose([a, b]);
  if (opts.impls.includes('jax-js')) {
    const jax = await import('@jax-js/jax');
    await jax.init(opts.jaxDevice);
    jax.defaultDevice(opts.jaxDevice);
    const np = jax.numpy;
    const ja = np.array(randomArray(n * n, 1)).reshape([n, n]), jb = np.array(randomArray(n * n, 2)).reshape([n, n]);
    const ms = await timeIt(async () => {
      await np.matmul(ja.ref, jb.ref).data();
    }, { warmup: 1, reps: 5, minReps: 2, budgetMs: 20000 });
    add(`matmul ${n}^3`, jaxImpl, 'ms', ms);
    add(`matmul ${n}^3`, jaxImpl, 'GFLOP/s', flops / ms / 1e6);
    ja.dispose();
    jb.dispose();
  }
}

// ----------------------------------------------------------------------------- main

async function main() {
  const started = performance.now();
  if (gpu && !(await T.initWebGPU())) throw new Error('--backend webgpu: no WebGPU adapter answered');
  T.setBackend(backend);
  const adapter = gpu ? await adapterName() : '';
  log(`${cpus()[0]?.model ?? 'CPU'}, ${cpus().length} cores, node ${process.version}, backend ${backend}${adapter ? ` (${adapter})` : ''}; load average ${loadavg().map((v) => v.toFixed(1)).join(', ')}`);

  const matmul = flag('--matmul');
  if (matmul) {
    await matmulMode(Number(matmul));
  } else if (argv.includes('--profile')) {
    await profileMode();
    return;
  } else {
    await sctMode();
  }
  console.log(`\nload average at the end: ${loadavg().map((v) => v.toFixed(1)).join(', ')}; total ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
  printTable();
  if (opts.json) writeFileSync(opts.json, JSON.stringify(records, null, 2) + '\n');
}

/**
 * --profile: where our step's time goes, by primitive. One warm-up step, then --reps steps
 * with every kernel call timed (the backend's run, synchronous on webasm and cpu: the
 * copies in and out of GPU.js included); the rest of the step is our op path in JS.
 */
async function profileMode() {
  const preset = opts.presets[0], batch = opts.batches[0];
  const params0 = T.tidy(() => makeUnet(preset).init(T.random.key(0)));
  const be = T.getBackendInstance(backend);
  // --no-split-sums: webgpu runs every sum on one thread per output cell (see Primitive.split).
  if (argv.includes('--no-split-sums')) be.splitSums = false;
  const trainer = oursTrainer(preset, batch, params0);
  await trainer.fns.step();
  const run = be.run.bind(be);
  const byPrim = new Map();
  be.run = (prim, inputs, avals, params, out) => {
    const t0 = performance.now();
    const r = run(prim, inputs, avals, params, out);
    let name = process.env.PROFILE_PROGRAMS && params && params.code ? `${prim.name}[${[...new Set(params.code.map((c) => c[0]))].filter((op) => op !== 'in' && op !== 'const').join(',')}]` : prim.name;
    if (process.env.PROFILE_SHAPES) name += ` ${avals.map((a) => `[${a.shape}]`).join(' ')}`;
    const e = byPrim.get(name) ?? { calls: 0, ms: 0, cells: 0 };
    e.calls++;
    e.ms += performance.now() - t0;
    e.cells += out.shape.reduce((a, b) => a * b, 1);
    byPrim.set(name, e);
    return r;
  };
  const splitsBefore = new Map(be.planRuns);
  const t0 = performance.now();
  for (let i = 0; i < opts.reps; i++) await trainer.fns.step();
  const stepMs = (performance.now() - t0) / opts.reps;
  const splits = [...be.planRuns].filter(([k]) => k.endsWith(':split')).map(([k, v]) => `${k.replace(':split', '')} ${((v - (splitsBefore.get(k) ?? 0)) / opts.reps).toFixed(0)}`);
  const helpers = T.helperThreads();
  be.run = run;
  trainer.dispose();
  T.dispose(params0);
  const rows = [...byPrim.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const kernelMs = rows.reduce((a, [, e]) => a + e.ms, 0) / opts.reps;
  const calls = rows.reduce((a, [, e]) => a + e.calls, 0) / opts.reps;
  console.log(`\n${ourImpl} ${caseBase(preset, batch)}: ${stepMs.toFixed(0)} ms per step, ${(batch / stepMs * 1000).toFixed(2)} images/s; ${calls.toFixed(0)} kernel calls taking ${kernelMs.toFixed(0)} ms (${(100 * kernelMs / stepMs).toFixed(0)} %)${gpu ? ' to enqueue, the rest waiting for the device' : ', the rest in JS'}${be.splitSums === false ? ' (sums not split)' : ''}; threads ${T.getThreads()} (helpers live ${helpers.live}, parts run on them ${helpers.partsRun})\n`);
  if (splits.length) console.log(`split sums per step (two kernels each): ${splits.join(', ')}\n`);
  console.log(`${'primitive'.padEnd(20)}${'calls/step'.padStart(12)}${'ms/step'.padStart(10)}${'share'.padStart(8)}${'Mcells/step'.padStart(13)}`);
  for (const [name, e] of rows) {
    console.log(`${name.padEnd(20)}${(e.calls / opts.reps).toFixed(0).padStart(12)}${(e.ms / opts.reps).toFixed(1).padStart(10)}${`${(100 * e.ms / opts.reps / stepMs).toFixed(1)}%`.padStart(8)}${(e.cells / opts.reps / 1e6).toFixed(2).padStart(13)}`);
  }
}

/** The presets and batches an implementation runs (its own lists, else the common ones). */
function selection(impl) {
  const own = { ours: [opts.oursPresets, opts.oursBatches], torch: [opts.torchPresets, opts.torchBatches], 'jax-js': [opts.jaxPresets, opts.jaxBatches] }[impl];
  const presets = own[0] ? list(own[0]) : impl === 'jax-js' ? opts.presets.filter((p) => p !== 'small') : opts.presets;
  return { presets, batches: own[1] ? list(own[1]).map(Number) : opts.batches };
}

async function sctMode() {
  const started = performance.now();
  const pastDeadline = () => (performance.now() - started) / 1000 > opts.deadlineS;
  const skipped = [];
  const wanted = (impl, preset, batch) => opts.impls.includes(impl) && selection(impl).presets.includes(preset) && selection(impl).batches.includes(batch);
  const python = opts.impls.includes('torch') ? findPython() : null;
  if (opts.impls.includes('torch') && !python) log('PyTorch: no python3 with torch found (--python PATH): left out');
  if (python) log(`PyTorch ${python.version} (${python.py}), device ${opts.torchDevice}${opts.torchDevice === 'cpu' ? `, threads ${opts.torchThreads.join(' and ')}, OMP_WAIT_POLICY=${torchEnv.OMP_WAIT_POLICY}` : ''}`);
  const presets = [...new Set(['ours', 'torch', 'jax-js'].filter((i) => opts.impls.includes(i)).flatMap((i) => selection(i).presets))];
  const batches = [...new Set(['ours', 'torch', 'jax-js'].filter((i) => opts.impls.includes(i)).flatMap((i) => selection(i).batches))].sort((a, b) => a - b);
  const [memPreset, memBatch] = opts.memoryConfig.split(':');
  const jaxBatchLimit = new Map(); // preset -> largest batch that did not run out of memory
  const work = mkdtempSync(join(tmpdir(), 'sct-step-'));
  try {
    for (const preset of presets) {
      const unet = makeUnet(preset);
      const gflop = gflopPerImage(unet);
      const dir = join(work, preset);
      mkdirSync(dir);
      const params = unet.init(T.random.key(0));
      const manifest = await exportModel(preset, params, dir);
      log(`\n${preset}: ${manifest.parameterCount.toLocaleString('en-US')} parameters, ${gflop.toFixed(3)} GFLOP forward per image`);
      add(`${presetName(preset)} forward`, ourImpl, 'GFLOP/image', gflop);
      const torchHere = python && selection('torch').presets.includes(preset);
      const jaxHere = opts.impls.includes('jax-js') && selection('jax-js').presets.includes(preset);

      // The peers' networks against ours, same weights.
      if (torchHere) {
        const c = runPeer(python.py, [peerScript('torch_sct.py'), '--check', dir], torchEnv);
        if (c.error) log(`  torch check failed: ${c.error}`);
        else {
          log(`  torch: ${c.value.params_torch.toLocaleString('en-US')} parameters (ours ${c.value.params_ours.toLocaleString('en-US')}); forward rel. error ${c.value.forward_rel_err.toExponential(1)}, JVP ${c.value.jvp_rel_err.toExponential(1)}`);
          if (c.value.params_torch !== c.value.params_ours) throw new Error(`torch_sct.py's ${preset} has ${c.value.params_torch} parameters, ours ${c.value.params_ours}`);
          add(`${presetName(preset)} forward vs ours`, torchImpl(opts.torchThreads[0]), 'max rel err', c.value.forward_rel_err);
          add(`${presetName(preset)} jvp vs ours`, torchImpl(opts.torchThreads[0]), 'max rel err', c.value.jvp_rel_err);
        }
      }
      if (jaxHere) {
        const c = runPeer(process.execPath, [peerScript('jaxjs-sct.js'), '--params', dir, '--check', '--device', opts.jaxDevice]);
        if (c.error) log(`  jax-js check failed: ${c.error}`);
        else {
          log(`  jax-js: forward rel. error ${c.value.forward_rel_err.toExponential(1)}, JVP ${c.value.jvp_rel_err.toExponential(1)}`);
          add(`${presetName(preset)} forward vs ours`, jaxImpl, 'max rel err', c.value.forward_rel_err);
          add(`${presetName(preset)} jvp vs ours`, jaxImpl, 'max rel err', c.value.jvp_rel_err);
        }
      }

      for (const batch of batches) {
        const skip = (impl) => {
          skipped.push(`${impl} ${preset} b${batch}`);
          return true;
        };
        if (wanted('ours', preset, batch) && !(pastDeadline() && skip(ourImpl))) {
          const p = plan(ourImpl, preset, batch, gflop);
          if (p.reuse) {
            addMeasurement(ourImpl, preset, batch, p.batch, p.reuse.runs, estimateNote(p.batch));
          } else {
            const runs = await measureOurs(preset, p.batch, params);
            const stepMs = median(runs.map((r) => r.step[0]));
            log(`  ${ourImpl} ${preset} b${p.batch}: step ${stepMs.toFixed(0)} ms (${((p.batch / stepMs) * 1000).toFixed(2)} img/s), median of ${runs.length}`);
            remember(ourImpl, preset, p.batch, gflop, stepMs, { runs });
            addMeasurement(ourImpl, preset, batch, p.batch, runs, p.batch !== batch ? estimateNote(p.batch) : undefined);
          }
        }
        if (torchHere && selection('torch').batches.includes(batch)) {
          for (const threads of opts.torchDevice === 'cpu' ? opts.torchThreads : [0]) {
            const impl = torchImpl(threads);
            const oneThreadBatches = opts.torch1tBatches ? list(opts.torch1tBatches).map(Number) : opts.torchThreads.length > 1 ? [selection('torch').batches[0]] : selection('torch').batches;
            if (threads === 1 && !oneThreadBatches.includes(batch)) continue;
            if (pastDeadline() && skip(impl)) continue;
            const p = plan(impl, preset, batch, gflop);
            if (p.reuse) {
              addPeerRecords(p.reuse.recs, preset, batch, p.batch, estimateNote(p.batch));
              continue;
            }
            const r = runPeer(python.py, [
              peerScript('torch_sct.py'), '--preset', preset, '--batch', String(p.batch), '--device', opts.torchDevice,
              ...(threads ? ['--threads', String(threads)] : []),
              '--warmup', String(opts.warmup), '--reps', String(opts.reps), '--budget-s', String(opts.budgetS / 2), '--params', dir, '--json', '-',
            ], torchEnv);
            if (r.error) {
              log(`  ${impl} ${preset} b${p.batch}: ${r.error}`);
              continue;
            }
            const recs = r.value.map((x) => ({ ...x, impl }));
            const stepMs = recs.find((x) => x.unit === 'ms' && x.case.endsWith(' step')).value;
            remember(impl, preset, p.batch, gflop, stepMs, { recs });
            addPeerRecords(recs, preset, batch, p.batch, p.batch !== batch ? estimateNote(p.batch) : undefined);
          }
        }
        if (jaxHere && wanted('jax-js', preset, batch) && !(pastDeadline() && skip(jaxImpl))) {
          let p = plan(jaxImpl, preset, batch, gflop, jaxBatchLimit.get(preset) ?? opts.jaxMaxBatch);
          if (p.reuse) {
            addPeerRecords(p.reuse.recs, preset, batch, p.batch, estimateNote(p.batch));
          } else {
            for (;;) {
              const r = runPeer(process.execPath, [
                peerScript('jaxjs-sct.js'), '--params', dir, '--batch', String(p.batch), '--device', opts.jaxDevice,
                '--warmup', String(opts.warmup), '--reps', String(opts.reps), '--budget-s', String(opts.budgetS / 2), '--json', '-',
              ]);
              if (r.outOfMemory && p.batch > 1) {
                // jax-js's wasm device has 4 GiB (memory32): try half the batch.
                log(`  ${jaxImpl} ${preset} b${p.batch}: out of memory; trying batch ${p.batch / 2}`);
                jaxBatchLimit.set(preset, p.batch / 2);
                p = { batch: p.batch / 2 };
                continue;
              }
              if (r.error) log(`  ${jaxImpl} ${preset} b${p.batch}: ${r.error}`);
              else {
                const stepMs = r.value.find((x) => x.unit === 'ms' && x.case.endsWith(' step')).value;
                remember(jaxImpl, preset, p.batch, gflop, stepMs, { recs: r.value });
                const note = estimateNote(p.batch, jaxBatchLimit.get(preset) === p.batch ? `jax-js ran out of memory at batch ${p.batch * 2}` : undefined);
                addPeerRecords(r.value, preset, batch, p.batch, p.batch !== batch ? note : undefined);
              }
              break;
            }
          }
        }
      }
      T.dispose(params);
    }
    if (opts.memorySteps > 0) {
      if (pastDeadline()) skipped.push(`${ourImpl} ${memPreset} b${memBatch} ${opts.memorySteps} steps`);
      else {
        const params = makeUnet(memPreset).init(T.random.key(0));
        await memoryRun(memPreset, Number(memBatch), params, opts.memorySteps);
        T.dispose(params);
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  if (skipped.length) log(`\npast the ${opts.deadlineS} s deadline, not run: ${skipped.join(', ')}`);
}

async function adapterName() {
  const a = await globalThis.navigator.gpu.requestAdapter();
  const info = a?.info ?? {};
  return [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown';
}

main().then(() => process.exit(0), (err) => {
  console.error(err?.stack ?? String(err));
  process.exit(1);
});
