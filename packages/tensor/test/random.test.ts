/**
 * Random numbers: Threefry-2x32 against its published answers, determinism (one key gives the
 * same numbers on every backend), independence of split and foldIn streams, and rough checks
 * of each distribution (means and spreads within 5 standard errors).
 */
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { readback } from '@scm/autodiff/testing';
import { presentBackends } from '../../../test/harness.js';

const { random } = T;
const backends = await presentBackends();

const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

async function values(fn: () => T.Tensor): Promise<number[]> {
  return (await readback(fn))[0].values;
}

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
const variance = (v: number[]) => {
  const m = mean(v);
  return mean(v.map((x) => (x - m) ** 2));
};

test('threefry2x32 matches the Random123 known-answer vectors (20 rounds)', () => {
  const hex = (w: [number, number]) => w.map((v) => v.toString(16).padStart(8, '0'));
  expect(hex(random.threefry2x32(0, 0, 0, 0))).toEqual(['6b200159', '99ba4efe']);
  expect(hex(random.threefry2x32(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff))).toEqual(['1cb996fc', 'bb002be7']);
  expect(hex(random.threefry2x32(0x13198a2e, 0x03707344, 0x243f6a88, 0x85a308d3))).toEqual(['c4923a9c', '483df7a0']);
});

test('keys are pure functions of their seed; split and foldIn derive distinct keys deterministically', () => {
  const k = random.key(42);
  expect(random.key(42)).toEqual(k);
  expect(random.key(43)).not.toEqual(k);
  expect(random.key(2 ** 40 + 5)).toEqual(new random.Key(2 ** 8, 5));
  const parts = random.split(k, 4);
  expect(random.split(k, 4)).toEqual(parts);
  const all = [k, ...parts].map(String);
  expect(new Set(all).size).toBe(5);
  const folded = [0, 1, 2, 1000].map((d) => String(random.foldIn(k, d)));
  expect(new Set([...folded, ...all]).size).toBe(9);
  expect(random.foldIn(k, 7)).toEqual(random.foldIn(k, 7));
});

describe('the same key gives the same numbers on every backend', () => {
  const k = random.key(7);
  const draws: [string, (b: T.BackendName) => T.Tensor][] = [
    ['uniform', (backend) => random.uniform(k, [3, 5], { backend, low: -1, high: 2 })],
    ['normal', (backend) => random.normal(k, [17], { backend, mean: 1, std: 0.5 })],
    ['bernoulli', (backend) => random.bernoulli(k, 0.3, [4, 4], { backend })],
    ['permutation', (backend) => random.permutation(k, 11, { backend })],
  ];
  test.each(draws)('%s', async (_name, draw) => {
    const reference = await values(() => draw('reference'));
    for (const backend of backends) expect(await values(() => draw(backend))).toEqual(reference);
    // Twice on one backend: the same again.
    expect(await values(() => draw('webasm'))).toEqual(reference);
  });

  test('float64 draws on the reference backend round to the float32 draws', async () => {
    const f64 = await values(() => random.normal(k, [9], { dtype: 'float64', backend: 'reference' }));
    const f32 = await values(() => random.normal(k, [9], { backend: 'webasm' }));
    expect(f64.map(Math.fround)).toEqual(f32);
    expect(f64.some((v) => v !== Math.fround(v))).toBe(true);
  });
});

test('different keys, split keys and folded keys give different streams', async () => {
  const k = random.key(1);
  const [a, b] = random.split(k);
  const streams = await Promise.all([k, a, b, random.foldIn(k, 1), random.key(2)].map((key) => values(() => random.uniform(key, [64], { backend: 'reference' }))));
  for (let i = 0; i < streams.length; i++)
    for (let j = i + 1; j < streams.length; j++) {
      const same = streams[i].filter((v, n) => v === streams[j][n]).length;
      expect(same, `streams ${i} and ${j} share ${same} of 64 values`).toBeLessThan(3);
    }
});

describe('distributions (n = 20000, bounds of 5 standard errors)', () => {
  const n = 20000;
  const k = random.key(2024);

  test('bits: every bit position is set half of the time', () => {
    const words = random.bits(k, n);
    for (let bit = 0; bit < 32; bit++) {
      let ones = 0;
      for (const w of words) ones += (w >>> bit) & 1;
      expect(Math.abs(ones / n - 0.5), `bit ${bit}`).toBeLessThan(5 * Math.sqrt(0.25 / n));
    }
  });

  test('uniform: in [low, high), mean and variance of U(low, high)', async () => {
    const v = await values(() => random.uniform(k, [n], { backend: 'reference', dtype: 'float64' }));
    expect(Math.min(...v)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...v)).toBeLessThan(1);
    expect(Math.abs(mean(v) - 0.5)).toBeLessThan(5 * Math.sqrt(1 / 12 / n));
    // Var of the sample variance of U(0,1): (1/80 - 1/144)/n.
    expect(Math.abs(variance(v) - 1 / 12)).toBeLessThan(5 * Math.sqrt((1 / 80 - 1 / 144) / n));
    // Each tenth of the interval gets a tenth of the draws.
    for (let d = 0; d < 10; d++) {
      const share = v.filter((x) => x >= d / 10 && x < (d + 1) / 10).length / n;
      expect(Math.abs(share - 0.1)).toBeLessThan(5 * Math.sqrt(0.09 / n));
    }
    const w = await values(() => random.uniform(k, [1000], { backend: 'reference', low: -3, high: -1 }));
    expect(Math.min(...w)).toBeGreaterThanOrEqual(-3);
    expect(Math.max(...w)).toBeLessThan(-1);
  });

  test('normal: mean, standard deviation and the 68-95 rule', async () => {
    const v = await values(() => random.normal(k, [n], { backend: 'reference', dtype: 'float64' }));
    expect(v.every(Number.isFinite)).toBe(true);
    expect(Math.abs(mean(v))).toBeLessThan(5 / Math.sqrt(n));
    expect(Math.abs(variance(v) - 1)).toBeLessThan(5 * Math.sqrt(2 / n));
    const within1 = v.filter((x) => Math.abs(x) < 1).length / n;
    const within2 = v.filter((x) => Math.abs(x) < 2).length / n;
    expect(Math.abs(within1 - 0.682689)).toBeLessThan(5 * Math.sqrt(0.682689 * 0.317311 / n));
    expect(Math.abs(within2 - 0.954500)).toBeLessThan(5 * Math.sqrt(0.9545 * 0.0455 / n));
    // Odd-length draws use half a Box-Muller pair: still normal, and a prefix of the even draw.
    const odd = await values(() => random.normal(k, [5], { backend: 'reference', dtype: 'float64' }));
    expect(odd).toEqual(v.slice(0, 5));
    const shifted = await values(() => random.normal(k, [n], { backend: 'reference', dtype: 'float64', mean: 3, std: 2 }));
    expect(Math.abs(mean(shifted) - 3)).toBeLessThan(5 * 2 / Math.sqrt(n));
  });

  test('bernoulli: frequency p, and the ends p = 0 and p = 1', async () => {
    const v = await values(() => random.bernoulli(k, 0.3, [n], { backend: 'reference' }));
    expect(Math.abs(mean(v) - 0.3)).toBeLessThan(5 * Math.sqrt(0.21 / n));
    expect(await values(() => random.bernoulli(k, 0, [100], { backend: 'reference' }))).toEqual(new Array(100).fill(0));
    expect(await values(() => random.bernoulli(k, 1, [100], { backend: 'reference' }))).toEqual(new Array(100).fill(1));
  });

  test('permutation: a permutation of 0..n-1, and each value lands anywhere', async () => {
    const p = await values(() => random.permutation(k, 50, { backend: 'reference' }));
    expect([...p].sort((a, b) => a - b)).toEqual([...Array(50).keys()]);
    // Over many keys, element 0 lands in each half equally often.
    let firstHalf = 0;
    const trials = 400;
    for (let i = 0; i < trials; i++) if (random.permutationArray(random.foldIn(k, i), 10).indexOf(0) < 5) firstHalf++;
    expect(Math.abs(firstHalf / trials - 0.5)).toBeLessThan(5 * Math.sqrt(0.25 / trials));
  });
});
