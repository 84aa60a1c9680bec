import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { grad } from '@scm/autodiff';
import {
  adam, adamw, clipByGlobalNorm, emaFixed, emaHalflife, emaPower, gammaToSigmaRel, globalNorm, halflifeBeta, powerBeta, radam, schedules, sgd, sigmaRelToGamma, lerpTree,
  type Optimizer,
} from '../src/optim/index.js';

// Every optimizer is checked against a plain float64 transcription of its update rule,
// written here independently of the library, on the float64 reference backend.

const SHAPES = { w: [3, 4], b: [4], blocks: [[2], [1, 2]] } as const;
type HostTree = { w: Float64Array; b: Float64Array; blocks: Float64Array[] };

function hostRandom(seed: number, n: number): Float64Array {
  // A small LCG: the reference never touches the library's RNG.
  let s = seed >>> 0;
  return Float64Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32) * 2 - 1;
  });
}

function hostTree(seed: number): HostTree {
  return { w: hostRandom(seed, 12), b: hostRandom(seed + 1, 4), blocks: [hostRandom(seed + 2, 2), hostRandom(seed + 3, 2)] };
}
const hostLeaves = (h: HostTree) => [h.w, h.b, ...h.blocks];
const f64 = (a: Float64Array, shape: readonly number[]) => T.fromArray(a, shape, { dtype: 'float64', backend: 'reference' });
function toTensors(h: HostTree) {
  return { w: f64(h.w, SHAPES.w), b: f64(h.b, SHAPES.b), blocks: [{ x: f64(h.blocks[0], SHAPES.blocks[0]) }, { x: f64(h.blocks[1], SHAPES.blocks[1]) }] };
}
type Params = ReturnType<typeof toTensors>;
const treeLeaves = (p: Params) => [p.w, p.b, p.blocks[0].x, p.blocks[1].x];

/** One reference update of one leaf: new parameters, given the slots kept in `s`. */
type RefRule = (p: number[], g: number[], s: Record<string, number[]>, t: number, lr: number) => number[];

function runReference(rule: RefRule, slots: string[], p0: HostTree, grads: HostTree[], lr: (t: number) => number): number[][] {
  return hostLeaves(p0).map((leaf, k) => {
    let p = Array.from(leaf);
    const s: Record<string, number[]> = Object.fromEntries(slots.map((n) => [n, p.map(() => 0)]));
    grads.forEach((g, i) => (p = rule(p, Array.from(hostLeaves(g)[k]), s, i + 1, lr(i))));
    return p;
  });
}

const refSgd = (momentum: number, nesterov: boolean, wd: number): RefRule => (p, g, s, _t, lr) =>
  p.map((pi, i) => {
    let gi = g[i] + wd * pi;
    if (momentum > 0) {
      s.buf[i] = momentum * s.buf[i] + gi;
      gi = nesterov ? gi + momentum * s.buf[i] : s.buf[i];
    }
    return pi - lr * gi;
  });

const refAdam = (b1: number, b2: number, eps: number, wd: number, decoupled: boolean): RefRule => (p, g, s, t, lr) =>
  p.map((pi0, i) => {
    const pi = decoupled ? pi0 * (1 - lr * wd) : pi0;
    const gi = decoupled ? g[i] : g[i] + wd * pi0;
    s.m[i] = b1 * s.m[i] + (1 - b1) * gi;
    s.v[i] = b2 * s.v[i] + (1 - b2) * gi * gi;
    const mHat = s.m[i] / (1 - b1 ** t);
    const vHat = s.v[i] / (1 - b2 ** t);
    return pi - (lr * mHat) / (Math.sqrt(vHat) + eps);
  });

const refRadam = (b1: number, b2: number, eps: number): RefRule => (p, g, s, t, lr) =>
  p.map((pi, i) => {
    s.m[i] = b1 * s.m[i] + (1 - b1) * g[i];
    s.v[i] = b2 * s.v[i] + (1 - b2) * g[i] * g[i];
    const mHat = s.m[i] / (1 - b1 ** t);
    const rhoInf = 2 / (1 - b2) - 1;
    const rhoT = rhoInf - (2 * t * b2 ** t) / (1 - b2 ** t);
    if (rhoT <= 5) return pi - lr * mHat;
    const r = Math.sqrt(((rhoT - 4) * (rhoT - 2) * rhoInf) / ((rhoInf - 4) * (rhoInf - 2) * rhoT));
    const lAdaptive = Math.sqrt(1 - b2 ** t) / (Math.sqrt(s.v[i]) + eps);
    return pi - lr * mHat * r * lAdaptive;
  });

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const tol = rtol * Math.max(1, Math.abs(expected[i]));
    if (!(Math.abs(actual[i] - expected[i]) <= tol)) throw new Error(`element ${i}: ${actual[i]} vs reference ${expected[i]} (tolerance ${tol})`);
  }
}

beforeAll(() => T.setBackend('reference'));
afterAll(() => T.setBackend((process.env.TENSOR_BACKEND as T.BackendName) ?? 'webasm'));

describe('optimizers match float64 references of their update rules', () => {
  const lrSchedule = schedules.warmupCosine(0.1, 3, 12, 0.01);
  const cases: [string, Optimizer, RefRule, string[], (t: number) => number][] = [
    ['sgd', sgd({ lr: 0.1 }), refSgd(0, false, 0), [], () => 0.1],
    ['sgd + weight decay', sgd({ lr: 0.05, weightDecay: 0.1 }), refSgd(0, false, 0.1), [], () => 0.05],
    ['sgd momentum', sgd({ lr: 0.1, momentum: 0.9 }), refSgd(0.9, false, 0), ['buf'], () => 0.1],
    ['sgd nesterov + wd + schedule', sgd({ lr: lrSchedule, momentum: 0.8, nesterov: true, weightDecay: 0.01 }), refSgd(0.8, true, 0.01), ['buf'], lrSchedule],
    ['adam', adam({ lr: 0.01 }), refAdam(0.9, 0.999, 1e-8, 0, false), ['m', 'v'], () => 0.01],
    ['adam + L2 + schedule', adam({ lr: lrSchedule, b1: 0.8, b2: 0.99, eps: 1e-6, weightDecay: 0.05 }), refAdam(0.8, 0.99, 1e-6, 0.05, false), ['m', 'v'], lrSchedule],
    ['adamw', adamw({ lr: 0.01, weightDecay: 0.1 }), refAdam(0.9, 0.999, 1e-8, 0.1, true), ['m', 'v'], () => 0.01],
    ['radam', radam({ lr: 0.01 }), refRadam(0.9, 0.999, 1e-8), ['m', 'v'], () => 0.01],
  ];
  for (const [name, opt, rule, slots, lr] of cases) {
    test(name, () => {
      const steps = 10; // RAdam's rectified branch starts at step 6 with b2 = 0.999
      const p0 = hostTree(1);
      const grads = Array.from({ length: steps }, (_, i) => hostTree(100 + 7 * i));
      const expected = runReference(rule, slots, p0, grads, lr);
      let params = toTensors(p0);
      let state = opt.init(params);
      for (const g of grads) {
        const gt = toTensors(g);
        ({ params, state } = opt.step(gt, state, params));
        T.dispose(gt);
      }
      expect(state.step).toBe(steps);
      // The tree keeps its structure, names and shapes.
      expect(Object.keys(params)).toEqual(['w', 'b', 'blocks']);
      expect(params.blocks[1].x.shape).toEqual([1, 2]);
      treeLeaves(params).forEach((t, k) => expectClose(t.dataSync(), expected[k], 1e-12));
      T.dispose([params, state]);
    });
  }
  test('update with its per-step values given as 0-d tensors (as a replayed step passes them) is the plain update, bit for bit', () => {
    const opts: Optimizer[] = [sgd({ lr: lrSchedule, momentum: 0.8, weightDecay: 0.01 }), adam({ lr: lrSchedule, weightDecay: 0.05 }), adamw({ lr: 0.01 }), radam({ lr: lrSchedule })];
    for (const opt of opts) {
      let [a, b] = [toTensors(hostTree(1)), toTensors(hostTree(1))];
      let [sa, sb] = [opt.init(a), opt.init(b)];
      const branches = new Set<string>();
      for (let i = 0; i < 10; i++) {
        const g = toTensors(hostTree(100 + 7 * i));
        const { branch, values } = opt.scalars(sb.step);
        branches.add(branch);
        const k = values.map((v) => T.full([], v, { dtype: 'float64', backend: 'reference' }));
        const given = opt.update(g, sb, b, { branch, values: k });
        T.dispose(k);
        T.dispose([b, sb]);
        [b, sb] = [given.params, given.state];
        ({ params: a, state: sa } = opt.step(g, sa, a));
        T.dispose(g);
      }
      expect(sb.step).toBe(10);
      if (opt.name === 'radam') expect([...branches]).toEqual(['momentum', 'rectified']);
      treeLeaves(b).forEach((t, k) => expect(Array.from(t.dataSync())).toEqual(Array.from(treeLeaves(a)[k].dataSync())));
      T.dispose([a, b, sa, sb]);
    }
    // The given values are the ones used: SGD with a given rate of 0 leaves the parameters as they are.
    const opt = sgd({ lr: 0.1 });
    const [p, g] = [toTensors(hostTree(1)), toTensors(hostTree(2))];
    const zero = T.full([], 0, { dtype: 'float64', backend: 'reference' });
    const out = opt.update(g, opt.init(p), p, { branch: 'sgd', values: [zero] });
    treeLeaves(out.params).forEach((t, k) => expect(Array.from(t.dataSync())).toEqual(Array.from(treeLeaves(p)[k].dataSync())));
    const wrong = T.full([2], 0, { dtype: 'float64', backend: 'reference' });
    expect(() => opt.update(g, opt.init(p), p, { branch: 'sgd', values: [wrong] })).toThrow(/sgd\.update: given\.values must be 0-d tensors .*\[2\]/);
    T.dispose([p, g, zero, wrong, out.params]);
  });
  test('lerpTree takes beta as a 0-d tensor with the same result as the number, and refuses other shapes', () => {
    const [e, p] = [toTensors(hostTree(3)), toTensors(hostTree(4))];
    const beta = T.full([], 0.37, { dtype: 'float64', backend: 'reference' });
    const [x, y] = [lerpTree(e, p, 0.37), lerpTree(e, p, beta)];
    treeLeaves(y).forEach((t, k) => expect(Array.from(t.dataSync())).toEqual(Array.from(treeLeaves(x)[k].dataSync())));
    const wrong = T.full([1], 0.37, { dtype: 'float64', backend: 'reference' });
    expect(() => lerpTree(e, p, wrong)).toThrow(/ema: beta must be a number or a 0-d tensor, got shape \[1\]/);
    T.dispose([e, p, beta, x, y, wrong]);
  });
  test('the rectified and unrectified RAdam branches both occur in 10 steps', () => {
    const rhoInf = 2 / 0.001 - 1;
    const rho = (t: number) => rhoInf - (2 * t * 0.999 ** t) / (1 - 0.999 ** t);
    expect(rho(5)).toBeLessThanOrEqual(5);
    expect(rho(6)).toBeGreaterThan(5);
  });
});

describe('optimizer API', () => {
  test('update is pure; step frees the replaced params and state', () => {
    const opt = adam({ lr: 0.1 });
    const params = toTensors(hostTree(3));
    const g = toTensors(hostTree(4));
    const state = opt.init(params);
    const out = opt.update(g, state, params);
    expect(treeLeaves(params).every((t) => !t.isDisposed)).toBe(true);
    const before = Array.from(params.w.dataSync());
    const stepped = opt.step(g, state, params);
    expect(treeLeaves(params).every((t) => t.isDisposed)).toBe(true);
    expect((state.mu as Params).w.isDisposed).toBe(true);
    expect(treeLeaves(g).every((t) => !t.isDisposed)).toBe(true);
    expect(Array.from(stepped.params.w.dataSync())).toEqual(Array.from(out.params.w.dataSync()));
    expect(Array.from(out.params.w.dataSync())).not.toEqual(before);
    T.dispose([out, stepped, g]);
  });

  test('mismatched trees and bad hyperparameters give clear errors', () => {
    const opt = sgd({ lr: 0.1, momentum: 0.9 });
    const params = { a: T.zeros([2, 3], { dtype: 'float64' }) };
    const state = opt.init(params);
    const wrongShape = { a: T.zeros([3, 2], { dtype: 'float64' }) };
    expect(() => opt.update(wrongShape, state, params)).toThrow(/leaf 0 of grads has shape \[3,2\] but in params it has \[2,3\]/);
    const extra = { a: wrongShape.a, b: wrongShape.a };
    expect(() => opt.update(extra, state, params)).toThrow(/grads has 2 tensors but params has 1/);
    expect(() => opt.update(params, { step: 0 }, params)).toThrow(/no slot "momentum"/);
    expect(() => adam({ lr: -1 })).toThrow(/learning rate/);
    expect(() => adam({ lr: 0.1, b2: 1 })).toThrow(/b2 must be in \[0, 1\)/);
    expect(() => sgd({ lr: 0.1, nesterov: true })).toThrow(/Nesterov/);
    expect(() => sgd({ lr: () => NaN }).update(params, { step: 0 }, params)).toThrow(/schedule gave NaN/);
    T.dispose([params, state, wrongShape]);
  });

  test('live tensors and buffers stay flat over 1,000 updates (optimizer, clipping, EMA)', () => {
    const opt = adamw({ lr: schedules.warmupCosine(1e-2, 10, 1000) });
    const ema = emaHalflife({ halflifeKimg: 0.5, batchSize: 8 });
    let params = { w: T.ones([4, 4]), b: T.zeros([4]), nested: [T.ones([2])] };
    let state = opt.init(params);
    let avg = ema.init(params);
    const loss = (p: typeof params) => T.add(T.add(T.sum(T.square(p.w)), T.sum(T.square(T.sub(p.b, 1)))), T.sum(T.square(p.nested[0])));
    const baseline = T.memory();
    for (let i = 0; i < 1000; i++) {
      const g = grad(loss)(params);
      const { grads, norm } = clipByGlobalNorm(g, 1);
      T.dispose([g, norm]);
      ({ params, state } = opt.step(grads, state, params));
      T.dispose(grads);
      avg = ema.step(avg, params);
      if (i % 100 === 0) expect(T.memory()).toEqual(baseline);
    }
    expect(T.memory()).toEqual(baseline);
    expect(state.step).toBe(1000);
    expect(avg.nimg).toBe(8000);
    T.dispose([params, state, avg]);
  });
});

describe('convergence on a quadratic', () => {
  // f(x) = ½ Σ a_i (x_i − c_i)², an ill-conditioned bowl with minimum at c.
  const a = [1, 4, 10, 0.5];
  const c = [1, -2, 0.5, 3];
  const opts: [string, Optimizer, number][] = [
    ['sgd', sgd({ lr: 0.09 }), 400],
    ['sgd momentum', sgd({ lr: 0.02, momentum: 0.9 }), 400],
    ['sgd nesterov', sgd({ lr: 0.02, momentum: 0.9, nesterov: true }), 400],
    ['adam', adam({ lr: schedules.cosineDecay(0.1, 1500) }), 1500],
    ['adamw', adamw({ lr: schedules.cosineDecay(0.1, 1500), weightDecay: 0 }), 1500],
    ['radam', radam({ lr: schedules.cosineDecay(0.1, 1500) }), 1500],
  ];
  for (const [name, opt, steps] of opts) {
    test(name, () => {
      const A = T.tensor(a, { dtype: 'float64' });
      const C = T.tensor(c, { dtype: 'float64' });
      const f = (p: { x: T.Tensor }) => T.mul(T.sum(T.mul(A, T.square(T.sub(p.x, C)))), 0.5);
      let params = { x: T.zeros([4], { dtype: 'float64' }) };
      let state = opt.init(params);
      for (let i = 0; i < steps; i++) {
        const g = grad(f)(params);
        ({ params, state } = opt.step(g, state, params));
        T.dispose(g);
      }
      expectClose(params.x.dataSync(), c, 1e-3);
      T.dispose([params, state, A, C]);
    });
  }
});

describe('clipping by global norm', () => {
  test('norm value, no-op below the threshold, rescaling above it', () => {
    const g = { a: T.tensor([3, 0], { dtype: 'float64' }), b: [T.tensor([[4]], { dtype: 'float64' })] };
    expect(globalNorm(g).dataSync()[0]).toBe(5);
    const below = clipByGlobalNorm(g, 5);
    expect(below.norm.dataSync()[0]).toBe(5);
    expect(Array.from(below.grads.a.dataSync())).toEqual([3, 0]);
    expect(Array.from(below.grads.b[0].dataSync())).toEqual([4]);
    const above = clipByGlobalNorm(g, 2);
    expectClose(above.grads.a.dataSync(), [1.2, 0], 1e-15);
    expectClose(above.grads.b[0].dataSync(), [1.6], 1e-15);
    expectClose(globalNorm(above.grads).dataSync(), [2], 1e-15);
    expect(above.grads.b[0].shape).toEqual([1, 1]);
    expect(g.a.isDisposed).toBe(false);
    expect(() => clipByGlobalNorm(g, 0)).toThrow(/maxNorm must be a positive/);
    expect(() => globalNorm({})).toThrow(/no tensors/);
  });
});

describe('schedules', () => {
  test('values', () => {
    expect(schedules.constant(0.3)(1234)).toBe(0.3);
    const w = schedules.linearWarmup(1, 4);
    expect([0, 1, 2, 4, 10].map(w)).toEqual([0, 0.25, 0.5, 1, 1]);
    const cd = schedules.cosineDecay(1, 10, 0.1);
    expect(cd(0)).toBe(1);
    expect(cd(5)).toBeCloseTo(0.55, 15);
    expect(cd(10)).toBeCloseTo(0.1, 15);
    expect(cd(20)).toBeCloseTo(0.1, 15);
    const is = schedules.inverseSqrt(1, 100);
    expect(is(50)).toBe(1);
    expect(is(400)).toBe(0.5);
    const wc = schedules.warmupCosine(2, 10, 110);
    expect(wc(5)).toBe(1);
    expect(wc(10)).toBe(2);
    expect(wc(60)).toBeCloseTo(1, 12);
    expect(wc(110)).toBeCloseTo(0, 12);
    const j = schedules.join([schedules.constant(1), schedules.linear(2, 0, 4), schedules.constant(7)], [3, 7]);
    expect([0, 2, 3, 5, 7, 100].map(j)).toEqual([1, 1, 2, 1, 7, 7]);
    const wis = schedules.warmupInverseSqrt(1, 10, 100);
    expect([0, 5, 10, 100, 400].map(wis)).toEqual([0, 0.5, 1, 1, 0.5]);
    expect(() => schedules.join([schedules.constant(1)], [3])).toThrow(/one more schedule/);
    expect(() => schedules.cosineDecay(1, 0)).toThrow(/steps must be a positive integer/);
  });
});

describe('EMA', () => {
  const scalar = (v: number) => ({ p: T.tensor([v], { dtype: 'float64' }) });

  test('fixed decay: ema = decay·ema + (1 − decay)·p', () => {
    const ema = emaFixed(0.9);
    let s = ema.init(scalar(0));
    const ps = [1, 2, 3, 4];
    let ref = 0;
    for (const v of ps) {
      const p = scalar(v);
      s = ema.step(s, p);
      ref = 0.9 * ref + 0.1 * v;
      T.dispose(p);
    }
    expectClose(s.params.p.dataSync(), [ref], 1e-14);
    expect(s.nimg).toBe(4);
    T.dispose(s);
  });

  test('EDM half-life: beta formula, ramp-up, and the half-life meaning', () => {
    // First update (nimg = 0): the ramp-up cap makes the half-life 0, so ema = p.
    expect(halflifeBeta(0, 64, 500, 0.05)).toBe(0);
    // Ramp-up: half-life = min(500k, 0.05·nimg) images.
    expect(halflifeBeta(100_000, 64, 500, 0.05)).toBeCloseTo(0.5 ** (64 / 5000), 15);
    expect(halflifeBeta(20_000_000, 64, 500, 0.05)).toBeCloseTo(0.5 ** (64 / 500_000), 15);
    // Without ramp-up, after one half-life worth of images the old average weighs one half.
    const ema = emaHalflife({ halflifeKimg: 0.032, rampupRatio: null, batchSize: 8 }); // 32 images = 4 updates
    let s = ema.init(scalar(0));
    const one = scalar(1);
    for (let i = 0; i < 4; i++) s = ema.step(s, one);
    expectClose(s.params.p.dataSync(), [0.5], 1e-14);
    // With the default ramp-up the first update copies the parameters exactly.
    const ramp = emaHalflife({ halflifeKimg: 500, batchSize: 8 });
    const r0 = ramp.init(scalar(0));
    const r1 = ramp.update(r0, scalar(0.123456789));
    expect(r1.params.p.dataSync()[0]).toBe(0.123456789);
    T.dispose([s, one, r0, r1]);
  });

  test('power-function EMA: sigma_rel ↔ gamma and the t^gamma weighting', () => {
    // EDM2: sigma_rel 0.05 and 0.10 correspond to gamma ≈ 16.97 and 6.94.
    expect(sigmaRelToGamma(0.05)).toBeCloseTo(16.97, 2);
    expect(sigmaRelToGamma(0.1)).toBeCloseTo(6.94, 2);
    for (const g of [-0.2, 0, 1, 6.94, 16.97, 100]) expect(sigmaRelToGamma(gammaToSigmaRel(g))).toBeCloseTo(g, 9);
    expect(() => sigmaRelToGamma(0.35)).toThrow(/outside the range/);
    expect(powerBeta(7, 64, 64)).toBe(0);
    // With one image per update the average after T updates weighs p_t by
    // (t^(γ+1) − (t−1)^(γ+1)) / T^(γ+1): the power profile integrated over each step.
    const gamma = 3;
    const ema = emaPower({ gamma, batchSize: 1 });
    const values = [0.3, -1.2, 2.5, 0.7, 1.1, -0.4, 0.9];
    let s = ema.init(scalar(100)); // the initial value gets weight 0
    for (const v of values) {
      const p = scalar(v);
      s = ema.step(s, p);
      T.dispose(p);
    }
    const Tn = values.length;
    const ref = values.reduce((acc, v, i) => acc + v * (((i + 1) ** (gamma + 1) - i ** (gamma + 1)) / Tn ** (gamma + 1)), 0);
    expectClose(s.params.p.dataSync(), [ref], 1e-13);
    const bySigma = emaPower({ sigmaRel: 0.1, batchSize: 4 });
    expect(bySigma.beta(4)).toBeCloseTo(0.5 ** (sigmaRelToGamma(0.1) + 1), 15);
    T.dispose(s);
  });
});
