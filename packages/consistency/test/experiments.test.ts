/**
 * The RESULTS.md experiments end to end on tiny settings: the CIFAR-10 experiment (teacher,
 * sCT, sCD, Fréchet distance in a classifier's features) on a synthetic CIFAR-10 folder,
 * the Fréchet distance itself on Gaussians with a known answer, and the committed models
 * (the npm start model and the digit judge).
 */
import { describe, expect, test } from 'vitest';
import { mkdtemp, mkdir, writeFile, rm, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '@scm/tensor';
import { Classifier, saveClassifier, type Params } from '@scm/nn';
import { cifarExperiment } from '../src/cifar.js';
import { frechetDistance, loadDigitJudge, realDigits, scoreDigits, evaluateDigitsRun, MNIST14_JUDGE } from '../src/digits.js';
import { main, START_ASSET } from '../src/cli.js';
import { consistencyTimes } from '../src/samplers.js';
import { T_MAX, T_MID } from '../src/trigflow.js';
import { captureOutput } from './helpers.js';
import { exportModel } from '../src/train.js';

/** n CIFAR-10 records (label byte, then 3×32×32 pixel bytes) with smooth random images. */
function cifarRecords(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n * 3073);
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < n; i++) {
    out[i * 3073] = i % 10;
    const [a, b, c] = [rand(), rand(), rand()];
    for (let ch = 0; ch < 3; ch++)
      for (let y = 0; y < 32; y++)
        for (let x = 0; x < 32; x++) out[i * 3073 + 1 + ch * 1024 + y * 32 + x] = Math.floor(255 * (0.5 + 0.5 * Math.sin(a * x + b * y + c * ch * 3)));
  }
  return out;
}

describe('Fréchet distance', () => {
  test('0 for one set against itself; |Δμ|² + (σ₁ − σ₂)²·d for isotropic Gaussians', () => {
    const d = 3, n = 4000;
    let s = 7;
    const gauss = () => {
      const u = ((s = (s * 1103515245 + 12345) % 2 ** 31) + 1) / 2 ** 31, v = ((s = (s * 1103515245 + 12345) % 2 ** 31) + 1) / 2 ** 31;
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    };
    const x = Float64Array.from({ length: n * d }, gauss);
    expect(frechetDistance(x, n, x, n, d)).toBeCloseTo(0, 8);
    // y = 2·z + (1, 0, 0): |Δμ|² = 1, covariance term d·(2 − 1)² = 3.
    const y = Float64Array.from({ length: n * d }, (_, i) => 2 * gauss() + (i % d === 0 ? 1 : 0));
    expect(frechetDistance(x, n, y, n, d)).toBeGreaterThan(3.6);
    expect(frechetDistance(x, n, y, n, d)).toBeLessThan(4.4);
  });
});

describe('scm experiment cifar', () => {
  test('trains teacher, sCT and sCD, then tabulates 1- and 2-step Fréchet distances; --only trains just those', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'scm-cifar-'));
    try {
      const data = join(dir, 'cifar-10-batches-bin');
      await mkdir(data);
      await writeFile(join(data, 'data_batch_1.bin'), cifarRecords(24, 1));
      await writeFile(join(data, 'test_batch.bin'), cifarRecords(16, 2));
      T.setBackend('webasm');
      const judge = new Classifier({ inChannels: 3, imageSize: 32, numClasses: 10, channels: [4], hidden: 6 });
      const params = judge.init(T.random.key(3)) as Params;
      const classifier = join(dir, 'judge.safetensors');
      await saveClassifier(classifier, judge, params);
      T.dispose(params);
      const logs: string[] = [];
      const o = {
        out: join(dir, 'exp'), data: `cifar10@16:${data}`, classifier, model: 'mlp', backend: 'webasm' as const, batch: 4,
        teacherSteps: 2, steps: 1, warmup: 1, teacherLr: 2e-4, keepEvery: 2, samples: 12, heunSteps: 2, sctDropout: 0.2, log: (l: string) => logs.push(l),
      };
      // --only sct: the teacher (needed) and sCT, no sCD, no table.
      expect(await cifarExperiment(o, ['sct'])).toMatch(/trained teacher, sct/);
      expect((await readdir(o.out)).sort()).toEqual(['sct', 'teacher']);
      // sctDropout reaches sCT's configuration (the paper: 0.20 for sCT, none for sCD or the teacher)
      expect(JSON.parse(await readFile(join(o.out, 'sct', 'config.json'), 'utf8')).dropout).toBe(0.2);
      expect(JSON.parse(await readFile(join(o.out, 'teacher', 'config.json'), 'utf8')).dropout).toBe(0);
      // --keep-every 2: the teacher's step-2 checkpoint kept beside the latest; sCT (1 step) keeps none
      expect(await readdir(join(o.out, 'teacher'))).toContain('checkpoint-2.safetensors');
      expect((await readdir(join(o.out, 'sct'))).filter((f) => f.startsWith('checkpoint-'))).toEqual([]);
      const table = await cifarExperiment(o);
      const rows = table.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| model'));
      expect(rows.length).toBe(4);
      // every cell a finite, non-negative distance; the floor (real vs real) the smallest
      const cells = rows.map((r) => r.split('|').slice(2, -1).map((c) => c.trim()).filter(Boolean).map(Number));
      expect(cells.map((c) => c.length)).toEqual([1, 3, 2, 2]);
      for (const v of cells.flat()) expect(Number.isFinite(v) && v >= 0).toBe(true);
      // Already-finished runs are not trained again.
      expect(logs.filter((l) => l.startsWith('training ')).length).toBe(3);
      // scm eval on a CIFAR-10 run: the same distances, as one JSON line.
      const printed = await captureOutput(() => main(['eval', '--run', join(o.out, 'sct'), '--classifier', classifier, '--samples', '12']));
      const line = JSON.parse(printed.find((l) => l.startsWith('{'))!);
      expect(line.samples).toBe(12);
      expect(line['1step']).toBeCloseTo(cells[2][0], 1);
      expect(line['2step']).toBeCloseTo(cells[2][1], 1);
      // --seed a,b: one line per seed on the same judge; the default seed's line is the one above.
      const seeded = (await captureOutput(() => main(['eval', '--run', join(o.out, 'sct'), '--classifier', classifier, '--samples', '12', '--seed', '8,7']))).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
      expect(seeded.map((l) => l.seed)).toEqual([8, 7, undefined]);
      expect(seeded[1]['1step']).toBeCloseTo(line['1step'], 6);
      expect(seeded[0]['1step']).not.toBeCloseTo(line['1step'], 6);
      // ... then the summary line: means over the seeds and 2 steps minus 1 step, paired by seed.
      const { summary } = seeded[2];
      expect(seeded[2].seeds).toEqual([8, 7]);
      expect(summary.mean['1step']).toBeCloseTo((seeded[0]['1step'] + seeded[1]['1step']) / 2, 9);
      const diffs = [0, 1].map((i) => seeded[i]['2step'] - seeded[i]['1step']);
      expect(summary.minus_1step['2step'].mean).toBeCloseTo((diffs[0] + diffs[1]) / 2, 9);
      expect(summary.minus_1step['2step'].lower_in).toBe(diffs.filter((d) => d < 0).length);
      await expect(main(['eval', '--run', join(o.out, 'sct'), '--seed', '7,x'])).rejects.toThrow(/--seed expects a non-negative integer/);
      // --times: the 2-step sampler written out (T, t_mid) gives the same number.
      const timed = await captureOutput(() => main(['eval', '--run', join(o.out, 'sct'), '--classifier', classifier, '--samples', '12', '--times', `${T_MAX},${T_MID}`]));
      await expect(main(['eval', '--run', join(o.out, 'sct'), '--times', '0.5,1.1'])).rejects.toThrow(/--times expects decreasing times/);
      expect(JSON.parse(timed.find((l) => l.startsWith('{'))!)[`times:${T_MAX},${T_MID}`]).toBeCloseTo(cells[2][1], 1);
      // --clip-denoised: the 2-step sampler with the intermediate estimate clipped (its own key).
      const clipped = await captureOutput(() => main(['eval', '--run', join(o.out, 'sct'), '--classifier', classifier, '--samples', '12', '--steps', '2', '--clip-denoised', '1']));
      expect(Number.isFinite(JSON.parse(clipped.find((l) => l.startsWith('{'))!)['2step:clip1'])).toBe(true);
      await expect(main(['eval', '--run', join(o.out, 'sct'), '--clip-denoised', '0'])).rejects.toThrow(/--clip-denoised expects a positive number/);
      // --denoise-real: f applied once to real images noised to t; the noisier, the harder.
      const den = JSON.parse((await captureOutput(() => main(['eval', '--run', join(o.out, 'sct'), '--classifier', classifier, '--samples', '12', '--steps', '1', '--denoise-real', '0.05,1.1']))).find((l) => l.startsWith('{'))!);
      expect(den['denoise-real:0.05']).toBeLessThan(den['denoise-real:1.1']);
      await expect(main(['eval', '--run', join(o.out, 'sct'), '--denoise-real', '2'])).rejects.toThrow(/--denoise-real expects times in/);
      // teacherFile (--teacher): an exported teacher instead of training one; sCT starts from it.
      const exported = join(dir, 'teacher.safetensors');
      await exportModel(join(o.out, 'teacher'), exported);
      const o2 = { ...o, out: join(dir, 'exp2'), teacherFile: exported };
      expect(await cifarExperiment(o2, ['sct'])).toBe(`trained sct in ${o2.out}`);
      expect(await readdir(o2.out)).toEqual(['sct']);
      expect(JSON.parse(await readFile(join(o2.out, 'sct', 'config.json'), 'utf8')).init).toBe(exported);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 300_000);
});

describe('the committed models', () => {
  test('the npm start model draws digits the committed judge recognizes (1 and 2 steps)', async () => {
    T.setBackend('webasm');
    const judge = await loadDigitJudge(MNIST14_JUDGE, 300);
    const real = realDigits(14, 200);
    const floor = await scoreDigits(judge, real);
    real.dispose();
    const scores = await evaluateDigitsRun(judge, START_ASSET, [
      { name: '1step', caption: '', sampler: { kind: 'cm', times: consistencyTimes(1) } },
      { name: '2step', caption: '', sampler: { kind: 'cm', times: consistencyTimes(2) } },
    ], 200, 1);
    T.dispose(judge.params);
    expect(floor.confident).toBeGreaterThan(0.8);
    // Measured with 1,000 samples: confident 0.33 / 0.32, FD 19.6 / 18.1 (real digits: 0.87, 1.5).
    // Pure noise or a broken sampler gives no confident digit and FD in the hundreds.
    for (const s of [scores['1step'], scores['2step']]) {
      expect(s.confident).toBeGreaterThan(0.2);
      expect(s.fd).toBeLessThan(40);
      expect(s.minClassShare).toBeGreaterThan(0.01);
    }
  }, 120_000);

  test('scm start continues the committed model', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'scm-start-'));
    try {
      const printed = await captureOutput(() => main(['start', '--steps', '1501', '--out', dir]));
      expect(printed.join('\n')).toMatch(/continuing the committed sct model \(nano on mnist:14/);
      const steps = (await readFile(join(dir, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.kind === 'train').map((r) => r.step);
      expect(Math.max(...steps)).toBeGreaterThan(1500);
      await readFile(join(dir, 'report.html'), 'utf8');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
