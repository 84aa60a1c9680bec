/** Metrics, progress output, the report and the command line. */
import { describe, expect, test } from 'vitest';
import { mkdtemp, readFile, rm, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { slicedWasserstein2, w2Squared1d, moments, meanNearestDistance, meanAndError, pairedSummary } from '../src/metrics.js';
import { ProgressBar, formatDuration, formatProgress } from '../src/progress.js';
import { lineChartSvg, renderReport } from '../src/report.js';
import { configFromFlags, main } from '../src/cli.js';
import { captureOutput } from './helpers.js';

describe('summaries over noise sets', () => {
  test('mean and standard error', () => {
    expect(meanAndError([3])).toEqual({ mean: 3, se: null });
    const { mean, se } = meanAndError([1, 2, 3, 6]);
    expect(mean).toBe(3);
    expect(se).toBeCloseTo(Math.sqrt(14 / 3 / 4), 12); // sample variance 14/3
  });
  test('paired differences against the first sampler', () => {
    const sets = [{ a: 10, b: 9 }, { a: 12, b: 13 }, { a: 11, b: 9 }];
    const s = pairedSummary(sets, ['a', 'b']);
    expect(s.sets).toBe(3);
    expect(s.mean).toEqual({ a: 11, b: 31 / 3 });
    const d = s.minus_a as Record<string, { mean: number; se: number; lower_in: number }>;
    expect(d.b.mean).toBeCloseTo(-2 / 3, 12); // differences -1, +1, -2
    expect(d.b.se).toBeCloseTo(Math.sqrt(7 / 3 / 3), 12);
    expect(d.b.lower_in).toBe(2);
    expect(() => pairedSummary([{ a: 1 }], ['a', 'b'])).toThrow(/no value for "b"/);
    expect(() => pairedSummary([], ['a'])).toThrow(/at least one set/);
  });
});

describe('sliced Wasserstein-2', () => {
  const pts = (xy: number[]) => ({ data: xy, n: xy.length / 2, d: 2 });
  const cloud = Array.from({ length: 400 }, (_, i) => [Math.cos(i * 2.4) * (1 + (i % 7) / 7), Math.sin(i * 1.3) * 0.5]).flat();
  test('zero for identical sets, |v|/√2 for a translation by v in 2-D', () => {
    expect(slicedWasserstein2(pts(cloud), pts(cloud))).toBe(0);
    const shifted = cloud.map((v, i) => v + (i % 2 === 0 ? 0.3 : -0.4));
    expect(slicedWasserstein2(pts(cloud), pts(shifted), 4096)).toBeCloseTo(0.5 / Math.SQRT2, 2);
  });
  test('1-D W2 between sorted samples, also for different sizes', () => {
    expect(w2Squared1d(Float64Array.of(0, 1, 2), Float64Array.of(1, 2, 3))).toBe(1);
    expect(w2Squared1d(Float64Array.of(0, 1), Float64Array.of(0, 0, 1, 1))).toBe(0);
  });
  test('mean nearest-neighbour distance: zero on the data, the offset for a far cluster', () => {
    expect(meanNearestDistance(pts(cloud), pts(cloud))).toBe(0);
    expect(meanNearestDistance(pts([0, 0, 3, 4]), pts([0, 0]))).toBeCloseTo(2.5, 12);
    expect(meanNearestDistance(pts([0, 0]), pts([0, 0, 3, 4]))).toBe(0);
  });
  test('rejects mismatched dimensions; moments', () => {
    expect(() => slicedWasserstein2({ data: [1, 2], n: 1, d: 2 }, { data: [1], n: 1, d: 1 })).toThrow(/dimensions differ/);
    const m = moments(pts([1, 2, 3, 4]));
    expect(m.mean).toEqual([2, 3]);
    expect(m.std).toEqual([1, 1]);
  });
});

describe('progress', () => {
  test('the line shows step, images/s, loss and ETA', () => {
    const line = formatProgress({ step: 50, total: 200, imagesPerSec: 12.34, loss: 0.123456 }, 125);
    expect(line).toContain('step  50/200');
    expect(line).toContain('25%');
    expect(line).toContain('12.3 img/s');
    expect(line).toContain('loss 0.1235');
    expect(line).toContain('ETA 2m05s');
    expect(formatDuration(3725)).toBe('1h02m');
  });
  test('without a terminal: one plain line per update, rate-limited, no carriage returns', () => {
    const lines: string[] = [];
    const bar = new ProgressBar({ write: (s: string) => (lines.push(s), true), isTTY: false }, 60_000);
    bar.update({ step: 1, total: 10, imagesPerSec: 1, loss: 1 }, 9);
    bar.update({ step: 2, total: 10, imagesPerSec: 1, loss: 1 }, 8);
    bar.update({ step: 10, total: 10, imagesPerSec: 1, loss: 1 }, 0, true);
    bar.log('note');
    expect(lines.length).toBe(3);
    expect(lines.join('')).not.toContain('\r');
    expect(lines.every((l) => l.endsWith('\n'))).toBe(true);
  });
  test('on a terminal: redraws in place', () => {
    const out: string[] = [];
    const bar = new ProgressBar({ write: (s: string) => (out.push(s), true), isTTY: true });
    bar.update({ step: 1, total: 2, imagesPerSec: 1, loss: 1 }, 1);
    bar.update({ step: 2, total: 2, imagesPerSec: 1, loss: 1 }, 0);
    bar.done();
    expect(out[0].startsWith('\r')).toBe(true);
    expect(out.at(-1)).toBe('\n');
  });
});

describe('report', () => {
  test('charts skip non-finite points; the page escapes text and embeds charts and images', () => {
    const svg = lineChartSvg([{ name: 'a<b', points: [[0, 1], [1, NaN], [2, 3]] }], { title: 'loss' });
    expect(svg).toContain('<path');
    expect(svg).toContain('a&lt;b');
    expect(lineChartSvg([{ name: 'x', points: [[0, -1]] }], { logY: true })).toContain('no data');
    const html = renderReport({ title: 'T', config: { a: '<x>' }, charts: [svg], samples: [{ caption: 'c', file: 'samples/a.png' }] });
    expect(html).toContain('<img src="samples/a.png"');
    expect(html).toContain('&lt;x&gt;');
  });
});

describe('command line', () => {
  test('flags map onto the run configuration; bad values are named', () => {
    const c = configFromFlags({ method: 'scd', data: 'mnist', norm: 'rms', warmup: '0', 'no-adaptive-weighting': true, 'time-transform': 'edm', 'ema-rampup': 'none', teacher: 'x.safetensors' });
    expect(c.method).toBe('scd');
    expect(c.model).toBe('nano');
    expect(c.normalization).toBe('rms');
    expect(c.warmupIters).toBe(0);
    expect(c.adaptiveWeighting).toBe(false);
    expect(c.timeTransform).toBe('edm');
    expect(c.emaRampup).toBeNull();
    expect(c.optimizer).toBe('radam');
    expect(configFromFlags({ method: 'diffusion' }).adaptiveWeighting).toBe(false);
    expect(() => configFromFlags({ norm: 'l3' })).toThrow(/--norm must be one of l2, rms, clip, none/);
    expect(() => configFromFlags({ steps: '1.5' })).toThrow(/--steps expects an integer/);
  });

  test('train, sample, eval and report on a toy run', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'scm-cli-'));
    try {
      const run = join(dir, 'run');
      const logs = await captureOutput(async () => {
        await main(['train', '--method', 'sct', '--data', 'toy:checkerboard', '--steps', '4', '--batch', '32', '--hidden', '16', '--depth', '2', '--backend', 'cpu', '--out', run, '--sample-every', '100', '--eval-samples', '128']);
        await main(['sample', '--run', run, '--steps', '2', '--n', '100']);
        await access(join(run, 'samples', 'sample-2step.png'));
        await main(['eval', '--run', run, '--samples', '200']);
        await main(['report', '--run', run]);
      });
      const evalLine = JSON.parse(logs.find((l) => l.startsWith('{"run"'))!);
      expect(Number.isFinite(evalLine['1step'])).toBe(true);
      expect(Number.isFinite(evalLine['2step_nn'])).toBe(true);
      expect(evalLine.data_vs_data.sw2).toBeLessThan(evalLine['1step']);
      expect(await readFile(join(run, 'report.html'), 'utf8')).toContain('sct on toy:checkerboard');
      await expect(main(['bogus'])).rejects.toThrow(/unknown command/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
