/** Samplers on the analytic Gaussian case (float64): exact flow maps are linear, x0 = x_T·s/√V(T). */
import { beforeAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { consistencyTimes, karrasTimes, sampleConsistency, sampleDDIM, sampleHeun } from '../src/samplers.js';
import { SIGMA_D, T_MAX, T_MID } from '../src/trigflow.js';
import { exactConsistencyNet, exactDiffusionNet, f64, maxAbsDiff } from './helpers.js';

beforeAll(() => T.setBackend('reference'));

const s = 1.0, sd = SIGMA_D;
const flowMap = (t: number) => s / Math.sqrt(s * s * Math.cos(t) ** 2 + sd * sd * Math.sin(t) ** 2);

describe('time grids', () => {
  test('Karras grid in TrigFlow time: starts at arctan(80/σ_d), decreasing, ends at 0', () => {
    const ts = karrasTimes(18);
    expect(ts.length).toBe(19);
    expect(ts[0]).toBeCloseTo(T_MAX, 14);
    expect(ts[17]).toBeCloseTo(Math.atan(0.002 / sd), 14);
    expect(ts[18]).toBe(0);
    for (let i = 0; i + 1 < ts.length; i++) expect(ts[i + 1]).toBeLessThan(ts[i]);
  });
  test('consistency times: 1 step [T], 2 steps [T, 1.1], n steps evenly below 1.1', () => {
    expect(consistencyTimes(1)).toEqual([T_MAX]);
    expect(consistencyTimes(2)).toEqual([T_MAX, T_MID]);
    expect(consistencyTimes(3)).toEqual([T_MAX, 1.1, 0.55]);
    expect(() => consistencyTimes(0)).toThrow(/positive integer/);
  });
});

describe('teacher samplers reproduce the exact flow map of a Gaussian', () => {
  test('Heun (2nd order) is accurate with few steps, DDIM (1st order) converges', () => {
    T.tidy(() => {
      const net = exactDiffusionNet(s, sd);
      const z = T.random.normal(T.random.key(1), [6, 2], { std: sd, ...f64 });
      const exact = T.mul(z, flowMap(T_MAX));
      const heun = (n: number) => maxAbsDiff(sampleHeun(net, null, z, karrasTimes(n)), exact);
      const ddim = (n: number) => maxAbsDiff(sampleDDIM(net, null, z, karrasTimes(n)), exact);
      // second order: the error falls about 4× per doubling of the steps; first order: 2×
      const [h32, h64, d32, d64] = [heun(32), heun(64), ddim(32), ddim(64)];
      expect(h64).toBeLessThan(5e-3);
      expect(h32 / h64).toBeGreaterThan(3.5);
      expect(d32 / d64).toBeGreaterThan(1.8);
      expect(d32 / d64).toBeLessThan(2.2);
      expect(h64).toBeLessThan(d64 / 10);
    });
  });
  test('one DDIM step from T to 0 is the consistency parameterization', () => {
    T.tidy(() => {
      const net = exactConsistencyNet(s, sd);
      const z = T.random.normal(T.random.key(2), [4, 3], { std: sd, ...f64 });
      const a = sampleDDIM(net, null, z, [T_MAX, 0]);
      const b = sampleConsistency(net, null, z, [T_MAX], T.random.key(3));
      expect(maxAbsDiff(a, b)).toBeLessThan(1e-15);
    });
  });
});

describe('consistency sampling', () => {
  test('1 step with the exact consistency network gives x0 = z·s/√V(T)', () => {
    T.tidy(() => {
      const z = T.random.normal(T.random.key(4), [5, 2], { std: sd, ...f64 });
      const x = sampleConsistency(exactConsistencyNet(s, sd), null, z, [T_MAX], T.random.key(5));
      expect(maxAbsDiff(x, T.mul(z, flowMap(T_MAX)))).toBeLessThan(1e-12);
    });
  });
  test('2 steps renoise to t_mid with fresh noise and apply f again', () => {
    T.tidy(() => {
      const net = exactConsistencyNet(s, sd);
      const z = T.random.normal(T.random.key(6), [5, 2], { std: sd, ...f64 });
      const key = T.random.key(7);
      const x = sampleConsistency(net, null, z, [T_MAX, T_MID], key);
      const x0 = T.mul(z, flowMap(T_MAX));
      const noise = T.random.normal(T.random.foldIn(key, 1), [5, 2], { std: sd, ...f64 });
      const xMid = T.add(T.mul(x0, Math.cos(T_MID)), T.mul(noise, Math.sin(T_MID)));
      expect(maxAbsDiff(x, T.mul(xMid, flowMap(T_MID)))).toBeLessThan(1e-12);
    });
  });
  test('clipDenoised clips the intermediate estimate before re-noising, not the result', () => {
    T.tidy(() => {
      const net = exactConsistencyNet(s, sd);
      const z = T.random.normal(T.random.key(6), [5, 2], { std: sd, ...f64 });
      const key = T.random.key(7);
      const c = 0.1;
      const x = sampleConsistency(net, null, z, [T_MAX, T_MID], key, sd, c);
      const x0 = T.clip(T.mul(z, flowMap(T_MAX)), -c, c);
      const noise = T.random.normal(T.random.foldIn(key, 1), [5, 2], { std: sd, ...f64 });
      const xMid = T.add(T.mul(x0, Math.cos(T_MID)), T.mul(noise, Math.sin(T_MID)));
      expect(maxAbsDiff(x, T.mul(xMid, flowMap(T_MID)))).toBeLessThan(1e-12);
      expect(maxAbsDiff(x, sampleConsistency(net, null, z, [T_MAX, T_MID], key))).toBeGreaterThan(1e-3);
    });
  });
  test('no tensors leak', () => {
    const net = exactConsistencyNet(s, sd);
    const z = T.random.normal(T.random.key(8), [3, 2], { std: sd, ...f64 });
    const before = T.memory();
    T.dispose([sampleConsistency(net, null, z, consistencyTimes(4), T.random.key(9)), sampleHeun(exactDiffusionNet(s, sd), null, z, karrasTimes(5)), sampleDDIM(exactDiffusionNet(s, sd), null, z, karrasTimes(5))]);
    expect(T.memory()).toEqual(before);
  });
});
