/**
 * Training smoke tests: a few steps of each method on toy data with the ToyMLP. The loss
 * stays finite, the parameters change, live tensors stay flat, and a run directory can be
 * killed and resumed to the same result.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import { mkdtemp, mkdir, readFile, readdir, rm, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '@scm/tensor';
import { ToyMLP, adam, emaHalflife, loadCheckpoint, type Params } from '@scm/nn';
import { flatten } from '@scm/autodiff';
import { diffusionStep, scmStep } from '../src/step.js';
import { WeightingHead } from '../src/weighting.js';
import { defaultScmOptions, type ScmOptions } from '../src/scm.js';
import { toySource, defaultConfig, type RunConfig } from '../src/setup.js';
import { train, exportModel, keptCheckpoint, CHECKPOINT } from '../src/train.js';
import type { NetFn } from '../src/trigflow.js';

beforeAll(() => T.setBackend('cpu'));

const quiet = { write: () => true, isTTY: false };

async function setupToy(dropout = 0) {
  const mlp = new ToyMLP({ hidden: 32, depth: 2, embChannels: 16, dropout });
  const net: NetFn<Params> = (p, y, t, ctx) => mlp.apply(p, y, t, ctx);
  const params = mlp.init(T.random.key(1));
  const head = new WeightingHead({ channels: 16 });
  const phi = head.init();
  const data = await toySource('moons', 64, 0, 0.5);
  return { net, params, head, phi, data };
}

async function runSteps(kind: 'diffusion' | 'sct' | 'scd', n: number, opts: Partial<ScmOptions> = {}, dropout = 0) {
  const s = await setupToy(dropout);
  const opt = adam({ lr: 1e-3 });
  const ema = emaHalflife({ halflifeKimg: 1, batchSize: 64 });
  let tr = { net: s.params, head: s.phi };
  let state = opt.init(tr);
  let emaState = ema.init(tr.net);
  const teacher = { net: s.net, params: T.tidy(() => flatten(s.params).unflatten(flatten(s.params).leaves.map((l) => l.mul(1)))) };
  const initial = flatten(s.params).leaves.map((l) => Array.from(l.dataSync()));
  const losses: number[] = [];
  const mem: number[] = [];
  for (let i = 0; i < n; i++) {
    const x0 = s.data.batch(i);
    const inputs = { net: s.net, params: tr.net, head: s.head, phi: tr.head, x0, key: T.random.key(100 + i), iter: i, train: dropout > 0 };
    const res = kind === 'diffusion'
      ? await diffusionStep(inputs, { sigmaD: 0.5, pMean: -1.2, pStd: 1.2, adaptiveWeighting: false })
      : await scmStep({ ...inputs, teacher: kind === 'scd' ? teacher : undefined }, { ...defaultScmOptions, method: kind, warmupIters: 2, ...opts });
    x0.dispose();
    losses.push(res.loss);
    const upd = opt.step({ net: res.gradParams, head: res.gradPhi }, state, tr);
    T.dispose([res.gradParams, res.gradPhi]);
    tr = upd.params;
    state = upd.state;
    emaState = ema.step(emaState, tr.net);
    mem.push(T.memory().tensors);
  }
  const changed = flatten(tr.net).leaves.some((l, k) => Array.from(l.dataSync()).some((v, j) => v !== initial[k][j]));
  T.dispose([tr, state, emaState, teacher.params]);
  return { losses, mem, changed };
}

describe('the one-pass sCM step', () => {
  // scmStep runs the JVP inside the gradient and takes F_θ from its primal output; with
  // onePass: false it runs Algorithm 1 as written, the JVP (θ⁻), then the loss's own forward
  // pass (θ). Same draws, same dropout mask: the same loss and gradients.
  for (const method of ['sct', 'scd'] as const) {
    test(`${method}: the same loss and gradients as the two-pass Algorithm 1 (dropout on)`, async () => {
      const s = await setupToy(0.2);
      const x0 = s.data.batch(0);
      const key = T.random.key(7);
      const teacher = { net: s.net, params: s.params };
      const opts: ScmOptions = { ...defaultScmOptions, method, warmupIters: 4 };
      const one = await scmStep({ net: s.net, params: s.params, head: s.head, phi: s.phi, x0, key, iter: 1, train: true, teacher }, opts);
      const two = await scmStep({ net: s.net, params: s.params, head: s.head, phi: s.phi, x0, key, iter: 1, train: true, teacher }, { ...opts, onePass: false });
      expect(one.loss).toBeCloseTo(two.loss, 5);
      const a = flatten({ p: one.gradParams, h: one.gradPhi }).leaves, b = flatten({ p: two.gradParams, h: two.gradPhi }).leaves;
      expect(a.length).toBe(b.length);
      a.forEach((leaf, k) => {
        const [u, v] = [leaf.dataSync(), b[k].dataSync()];
        const scale = Math.max(1e-6, ...Array.from(v, Math.abs));
        for (let i = 0; i < u.length; i++) expect(Math.abs(u[i] - v[i]) / scale).toBeLessThan(1e-5);
      });
      T.dispose([one.gradParams, one.gradPhi, two.gradParams, two.gradPhi, x0, s.params, s.phi]);
    });
  }
});

describe('a few training steps', () => {
  for (const kind of ['diffusion', 'sct', 'scd'] as const) {
    test(`${kind}: finite loss, parameters change, live tensors flat`, async () => {
      const { losses, mem, changed } = await runSteps(kind, 5);
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(changed).toBe(true);
      expect(mem[4]).toBe(mem[1]);
    });
  }
  test('sCT with dropout, RMS normalization, no weighting, the extra 1/σ and the finite-difference tangent', async () => {
    const a = await runSteps('sct', 3, { normalization: 'rms', adaptiveWeighting: false, extraInvSigmaWeight: true }, 0.2);
    const b = await runSteps('sct', 3, { tangent: 'fd', fdSteps: 256, normalization: 'clip' });
    const c = await runSteps('scd', 3, { tangent: 'fd', normalization: 'none' });
    for (const r of [a, b, c]) {
      expect(r.losses.every(Number.isFinite)).toBe(true);
      expect(r.changed).toBe(true);
      expect(r.mem[2]).toBe(r.mem[1]);
    }
  });
});

describe('run directory', () => {
  test('keepEvery keeps every N-th step checkpoint, also across a resume, and nothing half-written', async () => {
    const root = await mkdtemp(join(tmpdir(), 'scm-keep-'));
    try {
      const cfg: RunConfig = { ...defaultConfig('diffusion'), backend: 'cpu', data: 'toy:moons', hidden: 16, depth: 2, batch: 32, steps: 3, logEvery: 1, sampleEvery: 100, checkpointEvery: 100, keepEvery: 2, evalSamples: 64 };
      await train(root, cfg, { out: quiet });
      await train(root, { ...cfg, steps: 5 }, { out: quiet }, true);
      const files = (await readdir(root)).filter((f) => f.includes('checkpoint')).sort();
      expect(files).toEqual([CHECKPOINT, keptCheckpoint(2), keptCheckpoint(4)].sort());
      const [kept2, kept4, latest] = await Promise.all([keptCheckpoint(2), keptCheckpoint(4), CHECKPOINT].map((f) => loadCheckpoint(join(root, f))));
      expect([kept2.step, kept4.step, latest.step]).toEqual([2, 4, 5]);
      // the kept step-4 file holds that step's weights, not the latest ones
      expect(Array.from(flatten(kept4.params).leaves[0].dataSync())).not.toEqual(Array.from(flatten(latest.params).leaves[0].dataSync()));
      T.dispose([kept2, kept4, latest]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test('train writes checkpoints, metrics, samples and a report; a resumed run matches an uninterrupted one', async () => {
    const root = await mkdtemp(join(tmpdir(), 'scm-run-'));
    try {
      const cfg: RunConfig = { ...defaultConfig('sct'), backend: 'cpu', data: 'toy:8gaussians', hidden: 32, depth: 2, batch: 64, steps: 6, logEvery: 1, sampleEvery: 4, checkpointEvery: 2, evalSamples: 256, warmupIters: 4 };
      const whole = join(root, 'whole'), split = join(root, 'split');
      await train(whole, cfg, { out: quiet });
      await train(split, { ...cfg, steps: 3 }, { out: quiet });
      await train(split, cfg, { out: quiet }, true);
      const a = await loadCheckpoint(join(whole, CHECKPOINT));
      const b = await loadCheckpoint(join(split, CHECKPOINT));
      expect(a.step).toBe(6);
      expect(b.step).toBe(6);
      const la = flatten(a.params).leaves, lb = flatten(b.params).leaves;
      la.forEach((t, k) => expect(Array.from(lb[k].dataSync())).toEqual(Array.from(t.dataSync())));
      const metrics = (await readFile(join(whole, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
      expect(metrics.filter((m) => m.kind === 'train').length).toBe(6);
      const evals = metrics.filter((m) => m.kind === 'eval');
      expect(evals.map((e) => e.step)).toEqual([4, 6]);
      expect(Number.isFinite(evals[1].metrics.sw2_1step)).toBe(true);
      await access(join(whole, evals[1].samples[0].file));
      const html = await readFile(join(whole, 'report.html'), 'utf8');
      expect(html).toContain('<svg');
      expect(html).toContain('sw2_2step');
      T.dispose([a, b]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test.each(['sct', 'scd'] as const)('%s with --replay: after the warmup each step (gradient, RAdam, EMA) runs as replayed pipelines, with the same state as eager', async (method) => {
    const root = await mkdtemp(join(tmpdir(), 'scm-replay-'));
    try {
      // webasm: GPU.js fuses the pipelines there (the cpu mode walks them one by one).
      const teacherCfg: RunConfig = { ...defaultConfig('diffusion'), backend: 'webasm', data: 'toy:moons', hidden: 32, depth: 2, batch: 64, steps: 3, logEvery: 1, sampleEvery: 100, checkpointEvery: 100, evalSamples: 64 };
      const teacherDir = join(root, 'teacher');
      if (method === 'scd') await train(teacherDir, teacherCfg, { out: quiet });
      // 9 steps: RAdam (b2 = 0.99) takes momentum steps up to step 5 and rectified ones from
      // step 6, a new trace; the last steps replay the rectified one.
      const cfg: RunConfig = { ...teacherCfg, ...defaultConfig(method), backend: 'webasm', data: 'toy:moons', hidden: 32, depth: 2, batch: 64, steps: 9, logEvery: 1, sampleEvery: 100, checkpointEvery: 100, evalSamples: 64, warmupIters: 2, teacher: method === 'scd' ? join(teacherDir, CHECKPOINT) : null };
      const eager = join(root, 'eager'), replayed = join(root, 'replayed');
      const before = T.memory();
      await train(eager, cfg, { out: quiet });
      const run = await train(replayed, { ...cfg, replay: true }, { out: quiet });
      expect(run.replayExecutor).toBe('fused-sync');
      expect(run.replayScope).toBe('step');
      expect(T.memory()).toEqual(before);
      const [a, b] = [await loadCheckpoint(join(eager, CHECKPOINT)), await loadCheckpoint(join(replayed, CHECKPOINT))];
      // Parameters, head, optimizer moments and EMA, bit for bit.
      expect(b.step).toBe(9);
      expect(b.opt.step).toBe(a.opt.step);
      expect(b.ema.nimg).toBe(a.ema.nimg);
      const la = flatten([a.params, a.phi, a.opt, a.ema.params]).leaves, lb = flatten([b.params, b.phi, b.opt, b.ema.params]).leaves;
      expect(lb.length).toBe(la.length);
      la.forEach((t, k) => expect(Array.from(lb[k].dataSync())).toEqual(Array.from(t.dataSync())));
      // An eager run stopped at step 5 and resumed with --replay (as a run moved from a CPU to
      // a GPU machine): the same state again.
      const moved = join(root, 'moved');
      await train(moved, { ...cfg, steps: 5 }, { out: quiet });
      const resumed = await train(moved, { ...cfg, replay: true }, { out: quiet }, true);
      expect(resumed.replayScope).toBe('step');
      const m = await loadCheckpoint(join(moved, CHECKPOINT));
      expect(m.step).toBe(9);
      flatten([m.params, m.phi, m.opt, m.ema.params]).leaves.forEach((t, k) => expect(Array.from(t.dataSync())).toEqual(Array.from(la[k].dataSync())));
      T.dispose([a, b, m]);
      // With gradient clipping only the gradient is replayed (the norm is read back); still eager's weights.
      const clipped = { ...cfg, gradClip: 1 };
      await train(join(root, 'eager-clip'), clipped, { out: quiet });
      const clipRun = await train(join(root, 'replayed-clip'), { ...clipped, replay: true }, { out: quiet });
      expect([clipRun.replayExecutor, clipRun.replayScope]).toEqual(['fused-sync', 'gradient']);
      const [c, d] = [await loadCheckpoint(join(root, 'eager-clip', CHECKPOINT)), await loadCheckpoint(join(root, 'replayed-clip', CHECKPOINT))];
      const lc = flatten(c.params).leaves, ld = flatten(d.params).leaves;
      lc.forEach((t, k) => expect(Array.from(ld[k].dataSync())).toEqual(Array.from(t.dataSync())));
      T.dispose([c, d]);
      expect(T.memory()).toEqual(before);
      await expect(train(join(root, 'dropout'), { ...cfg, replay: true, dropout: 0.1 }, { out: quiet })).rejects.toThrow(/--replay needs .* no dropout/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test('an exported model (EMA weights, head, step) continues training with fresh optimizer state', async () => {
    const root = await mkdtemp(join(tmpdir(), 'scm-export-'));
    try {
      const cfg: RunConfig = { ...defaultConfig('sct'), backend: 'cpu', data: 'toy:moons', hidden: 16, depth: 2, batch: 32, steps: 3, logEvery: 1, sampleEvery: 100, checkpointEvery: 100, evalSamples: 64 };
      const run = join(root, 'run'), asset = join(root, 'asset', 'model.safetensors'), cont = join(root, 'cont');
      await train(run, cfg, { out: quiet });
      await mkdir(join(root, 'asset'));
      await exportModel(run, asset, 2);
      const shipped = await loadCheckpoint(asset);
      expect(Object.keys(shipped).sort()).toEqual(['ema', 'phi', 'step']);
      expect((await readFile(asset.replace('.safetensors', '.metrics.jsonl'), 'utf8')).trim().split('\n').filter((l) => JSON.parse(l).kind === 'train').map((l) => JSON.parse(l).step)).toEqual([2]);
      const res = await train(cont, { ...cfg, steps: 5 }, { out: quiet }, false, asset);
      expect(res.step).toBe(5);
      const metrics = (await readFile(join(cont, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.kind === 'train');
      expect(metrics.map((m) => m.step)).toEqual([4, 5]);
      T.dispose(shipped);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
