/**
 * Checks that catch sign and factor errors without training (float64, reference backend):
 * the analytic Gaussian oracle of spec §9.1, the JVP tangent against finite differences in
 * t, the manual-gradient identity of §2.5, the discrete-time tangent, and the conversions.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { grad, vjp, valueAndGrad } from '@scm/autodiff';
import {
  addNoise, velocityTarget, consistencyFunction, denoise, networkVelocity, withTimeTransform, SIGMA_D, type NetFn,
} from '../src/trigflow.js';
import {
  scmTangent, scmTangentFiniteDifference, normalizeTangent, scmLoss, sampleTime, ddimStepBack, warmupFactor, sumSquaresPerSample,
} from '../src/scm.js';
import { WeightingHead } from '../src/weighting.js';
import { edmToTrigFlow, flowMatchingToTrigFlow } from '../src/convert.js';
import { exactConsistencyNet, exactDiffusionNet, f64, gaussVar, maxAbs, maxAbsDiff, randomMlp } from './helpers.js';

beforeAll(() => T.setBackend('reference'));

const s = 1.0; // data std, different from σ_d so the answer is not trivial
const sd = SIGMA_D;
const times = [0.02, 0.3, 0.7, 1.0, 1.3, 1.5, 1.56];

function tvec(values: number[]): T.Tensor {
  return T.fromArray(values, [values.length], f64);
}

describe('TrigFlow identities', () => {
  test('cos t·x_t − sin t·v_t = x0 and x_t has the right endpoints', () => {
    T.tidy(() => {
      const k = T.random.split(T.random.key(1), 3);
      const x0 = T.random.normal(k[0], [7, 3], f64);
      const z = T.random.normal(k[1], [7, 3], { std: sd, ...f64 });
      const t = tvec(times);
      const xt = addNoise(x0, z, t);
      const v = velocityTarget(x0, z, t);
      const tb = T.reshape(t, [7, 1]);
      expect(maxAbsDiff(T.sub(T.mul(T.cos(tb), xt), T.mul(T.sin(tb), v)), x0)).toBeLessThan(1e-12);
      expect(maxAbsDiff(addNoise(x0, z, T.zeros([7], f64)), x0)).toBe(0);
      expect(maxAbsDiff(addNoise(x0, z, T.full([7], Math.PI / 2, f64)), z)).toBeLessThan(1e-15);
    });
  });

  test('the boundary condition f(x, 0) = x holds for any network', () => {
    T.tidy(() => {
      const { net, params } = randomMlp(2, 8, 3);
      const x = T.random.normal(T.random.key(4), [5, 2], f64);
      expect(maxAbsDiff(consistencyFunction(net, params, x, T.zeros([5], f64)), x)).toBe(0);
    });
  });

  test('the exact consistency function is constant along the exact PF-ODE (df*/dt = 0)', () => {
    T.tidy(() => {
      const Fdm = exactDiffusionNet(s, sd), Fstar = exactConsistencyNet(s, sd);
      const x = T.random.normal(T.random.key(5), [times.length, 1], f64);
      const t = tvec(times);
      const h = 1e-5;
      const v = networkVelocity(Fdm, null, x, t);
      const fPlus = consistencyFunction(Fstar, null, T.add(x, T.mul(v, h)), T.add(t, h));
      const fMinus = consistencyFunction(Fstar, null, T.sub(x, T.mul(v, h)), T.sub(t, h));
      expect(maxAbs(T.div(T.sub(fPlus, fMinus), 2 * h))).toBeLessThan(1e-7);
    });
  });
});

describe('the sCM tangent g', () => {
  test('analytic Gaussian: exact F* and exact teacher velocity give g ≈ 0 for all t (r = 1)', () => {
    T.tidy(() => {
      const Fdm = exactDiffusionNet(s, sd), Fstar = exactConsistencyNet(s, sd);
      const t = tvec(times);
      const xt = T.mul(T.random.normal(T.random.key(6), [times.length, 3], f64), T.reshape(T.sqrt(gaussVar(t, s, sd)), [-1, 1]));
      const dxdt = networkVelocity(Fdm, null, xt, t);
      const { g, J } = scmTangent({ net: Fstar, params: null, xt, t, dxdt, r: 1 });
      expect(maxAbs(J)).toBeGreaterThan(1e-3); // the tangent itself is not trivial
      expect(maxAbs(g)).toBeLessThan(1e-12);
    });
  });

  test('analytic Gaussian: a wrong factor (σ_d in the x-tangent, sin for cos) makes g visibly non-zero', () => {
    T.tidy(() => {
      const Fdm = exactDiffusionNet(s, sd), Fstar = exactConsistencyNet(s, sd);
      const t = tvec(times);
      const xt = T.random.normal(T.random.key(6), [times.length, 3], f64);
      const dxdt = networkVelocity(Fdm, null, xt, t);
      // Feeding the unscaled velocity as if it were dx_t/dt/σ_d is the pitfall of spec §8.3.
      const { g } = scmTangent({ net: Fstar, params: null, xt, t, dxdt: T.mul(dxdt, 1 / sd), r: 1 });
      expect(maxAbs(g)).toBeGreaterThan(1e-2);
    });
  });

  test('analytic Gaussian, sCT estimator: E[g | x_t] = 0 when (x0, z) are drawn from the posterior', () => {
    T.tidy(() => {
      const Fstar = exactConsistencyNet(s, sd);
      const n = 20000;
      for (const tv of [0.3, 0.9, 1.4]) {
        const xtVal = 0.7;
        const V = s * s * Math.cos(tv) ** 2 + sd * sd * Math.sin(tv) ** 2;
        const mu = (Math.cos(tv) * s * s * xtVal) / V;
        const sdPost = Math.sqrt((s * s * sd * sd * Math.sin(tv) ** 2) / V);
        const x0 = T.add(T.mul(T.random.normal(T.random.key(7), [n, 1], f64), sdPost), mu);
        const xt = T.full([n, 1], xtVal, f64);
        const t = T.full([n], tv, f64);
        const z = T.div(T.sub(xt, T.mul(x0, Math.cos(tv))), Math.sin(tv));
        const dxdt = velocityTarget(x0, z, t);
        const { g } = scmTangent({ net: Fstar, params: null, xt, t, dxdt, r: 1 });
        const m = T.mean(g).dataSync()[0];
        const spread = Math.sqrt(T.mean(T.square(g)).dataSync()[0]);
        expect(spread).toBeGreaterThan(1e-3);
        expect(Math.abs(m)).toBeLessThan((5 * spread) / Math.sqrt(n));
      }
    });
  });

  test('g from the JVP equals cos t·df/dt from central finite differences in t (random MLP)', () => {
    T.tidy(() => {
      const { net, params } = randomMlp(3, 16, 11);
      const k = T.random.split(T.random.key(12), 2);
      const t = tvec(times);
      const xt = T.random.normal(k[0], [times.length, 3], { std: sd, ...f64 });
      const dxdt = T.random.normal(k[1], [times.length, 3], f64);
      const { g } = scmTangent({ net, params, xt, t, dxdt, r: 1 });
      const h = 1e-5;
      const fPlus = consistencyFunction(net, params, T.add(xt, T.mul(dxdt, h)), T.add(t, h));
      const fMinus = consistencyFunction(net, params, T.sub(xt, T.mul(dxdt, h)), T.sub(t, h));
      const dfdt = T.div(T.sub(fPlus, fMinus), 2 * h);
      const expected = T.mul(T.reshape(T.cos(t), [-1, 1]), dfdt);
      expect(maxAbs(g)).toBeGreaterThan(1e-2);
      expect(maxAbsDiff(g, expected)).toBeLessThan(1e-8);
    });
  });

  test('the same holds through a time transform inside the network (EDM c_noise)', () => {
    T.tidy(() => {
      const { net, params } = randomMlp(2, 8, 13);
      const wrapped = withTimeTransform(net, 'edm');
      const t = tvec([0.2, 0.8, 1.3]);
      const xt = T.random.normal(T.random.key(14), [3, 2], f64);
      const dxdt = T.random.normal(T.random.key(15), [3, 2], f64);
      const { g } = scmTangent({ net: wrapped, params, xt, t, dxdt, r: 1 });
      const h = 1e-6;
      const dfdt = T.div(T.sub(consistencyFunction(wrapped, params, T.add(xt, T.mul(dxdt, h)), T.add(t, h)), consistencyFunction(wrapped, params, T.sub(xt, T.mul(dxdt, h)), T.sub(t, h))), 2 * h);
      expect(maxAbsDiff(g, T.mul(T.reshape(T.cos(t), [-1, 1]), dfdt))).toBeLessThan(1e-7);
    });
  });

  test('warmup: with r = 0, g = cos²t·(dx/dt − σ_d F) (a flow-matching target); r interpolates linearly', () => {
    T.tidy(() => {
      const { net, params } = randomMlp(2, 8, 16);
      const t = tvec([0.3, 1.2]);
      const xt = T.random.normal(T.random.key(17), [2, 2], f64);
      const dxdt = T.random.normal(T.random.key(18), [2, 2], f64);
      const g0 = scmTangent({ net, params, xt, t, dxdt, r: 0 }).g;
      const F = net(params, T.div(xt, sd), t);
      const c2 = T.reshape(T.square(T.cos(t)), [-1, 1]);
      expect(maxAbsDiff(g0, T.mul(c2, T.sub(dxdt, T.mul(F, sd))))).toBeLessThan(1e-14);
      const g1 = scmTangent({ net, params, xt, t, dxdt, r: 1 }).g;
      const gh = scmTangent({ net, params, xt, t, dxdt, r: 0.25 }).g;
      expect(maxAbsDiff(gh, T.add(T.mul(g0, 0.75), T.mul(g1, 0.25)))).toBeLessThan(1e-13);
      expect(warmupFactor(0, 100)).toBe(0);
      expect(warmupFactor(50, 100)).toBe(0.5);
      expect(warmupFactor(500, 100)).toBe(1);
      expect(warmupFactor(0, 0)).toBe(1);
    });
  });

  test('the discrete-time tangent (§2.11) converges to the JVP tangent as the step shrinks', () => {
    T.tidy(() => {
      const { net, params } = randomMlp(2, 16, 19);
      const t = tvec([0.4, 0.9, 1.4]);
      const xt = T.random.normal(T.random.key(20), [3, 2], { std: sd, ...f64 });
      const dxdt = T.random.normal(T.random.key(21), [3, 2], f64);
      const gJvp = scmTangent({ net, params, xt, t, dxdt, r: 1 }).g;
      const errs = [1e-2, 1e-3, 1e-4].map((h) => {
        const tPrev = T.sub(t, h);
        const xPrev = ddimStepBack(xt, t, tPrev, dxdt);
        const { g } = scmTangentFiniteDifference({ net, params, xt, t, xPrev, tPrev });
        return maxAbsDiff(g, gJvp);
      });
      // first-order accuracy: the error falls about 10× per 10× smaller step
      expect(errs[2]).toBeLessThan(1e-3);
      expect(errs[1] / errs[2]).toBeGreaterThan(5);
      expect(errs[0] / errs[1]).toBeGreaterThan(5);
    });
  });
});

describe('tangent normalization', () => {
  test('l2: g/(‖g‖ + c) per sample; rms: g/(‖g‖/√D + c); clip; none', () => {
    T.tidy(() => {
      const g = T.tensor([[3, 4, 0, 0], [0, 0, 0.03, 0.04]], f64);
      const n2 = normalizeTangent(g, 'l2', 0.1).toArraySync() as number[][];
      expect(n2[0][0]).toBeCloseTo(3 / 5.1, 14);
      expect(n2[1][3]).toBeCloseTo(0.04 / 0.15, 14);
      const nr = normalizeTangent(g, 'rms', 0.1).toArraySync() as number[][];
      expect(nr[0][1]).toBeCloseTo(4 / (5 / 2 + 0.1), 14);
      const nc = normalizeTangent(T.tensor([[3, -0.5]], f64), 'clip', 0.1).toArraySync() as number[][];
      expect(nc[0]).toEqual([1, -0.5]);
      expect(normalizeTangent(g, 'none', 0.1)).toBe(g);
    });
  });
});

describe('the loss and its gradient', () => {
  test('manual-gradient identity (§2.5): ∇θL = VJP of F with cotangent −2e^w g/(D·B); ∂L/∂w = (e^w‖g‖²/D − 1)/B', () => {
    T.tidy(() => {
      const { net, params } = randomMlp(3, 8, 22);
      const head = new WeightingHead({ channels: 8 });
      const phi0 = head.init('float64');
      const phi = { weight: T.random.normal(T.random.key(23), [8, 1], { std: 0.3, ...f64 }), bias: T.tensor([0.2], f64) };
      void phi0;
      const B = 4, D = 3;
      const t = tvec([0.1, 0.5, 1.0, 1.5]);
      const xt = T.random.normal(T.random.key(24), [B, D], f64);
      const dxdt = T.random.normal(T.random.key(25), [B, D], f64);
      const { g: raw } = scmTangent({ net, params, xt, t, dxdt, r: 0.7 });
      const g = normalizeTangent(raw, 'l2', 0.1);
      const opts = { sigmaD: sd, adaptiveWeighting: true, extraInvSigmaWeight: false };
      const [loss, [gTheta, gPhi]] = valueAndGrad((p: typeof params, ph: typeof phi) => scmLoss({ net, params: p, phi: ph, head, xt, t, g, opts }), { argnums: [0, 1] })(params, phi);
      // loss value: mean(e^w ‖g‖²/D − w)
      const w = head.apply(phi, t);
      const g2 = sumSquaresPerSample(g);
      const expectedLoss = T.mean(T.sub(T.div(T.mul(T.exp(w), g2), D), w));
      expect(maxAbsDiff(loss, expectedLoss)).toBeLessThan(1e-14);
      // θ: backpropagate the cotangent −2 e^w g/(D B) through F
      const ct = T.mul(T.reshape(T.exp(w), [B, 1]), T.mul(g, -2 / (D * B)));
      const [, pull] = vjp((p: typeof params) => net(p, T.div(xt, sd), t), params);
      const [manual] = pull(ct);
      for (const k of Object.keys(params) as (keyof typeof params)[]) expect(maxAbsDiff(gTheta[k], manual[k])).toBeLessThan(1e-13);
      // φ: backpropagate (e^w ‖g‖²/D − 1)/B through the head
      const ctW = T.div(T.sub(T.div(T.mul(T.exp(w), g2), D), 1), B);
      const [, pullW] = vjp((ph: typeof phi) => head.apply(ph, t), phi);
      const [manualPhi] = pullW(ctW);
      expect(maxAbsDiff(gPhi.weight, manualPhi.weight)).toBeLessThan(1e-13);
      expect(maxAbsDiff(gPhi.bias, manualPhi.bias)).toBeLessThan(1e-13);
    });
  });

  test('a descent step moves F along +g (sign check of §2.5)', () => {
    T.tidy(() => {
      const { net, params } = randomMlp(2, 8, 26);
      const head = new WeightingHead({ channels: 8 });
      const phi = head.init('float64');
      const t = tvec([0.3, 0.8, 1.2]);
      const xt = T.random.normal(T.random.key(27), [3, 2], f64);
      const dxdt = T.random.normal(T.random.key(28), [3, 2], f64);
      const g = normalizeTangent(scmTangent({ net, params, xt, t, dxdt, r: 1 }).g, 'l2', 0.1);
      const opts = { sigmaD: sd, adaptiveWeighting: false, extraInvSigmaWeight: false };
      const gTheta = grad((p: typeof params) => scmLoss({ net, params: p, phi, head, xt, t, g, opts }))(params);
      const lr = 1e-3;
      const stepped = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, T.sub(v, T.mul(gTheta[k as keyof typeof params], lr))])) as unknown as typeof params;
      const dF = T.sub(net(stepped, T.div(xt, sd), t), net(params, T.div(xt, sd), t));
      expect(T.sum(T.mul(dF, g)).dataSync()[0]).toBeGreaterThan(0);
    });
  });

  test('the extra 1/σ weighting multiplies the squared error by 1/(σ_d tan t)', () => {
    T.tidy(() => {
      const { net, params } = randomMlp(2, 8, 29);
      const head = new WeightingHead({ channels: 8 });
      const phi = head.init('float64');
      const t = tvec([0.3, 1.2]);
      const xt = T.random.normal(T.random.key(30), [2, 2], f64);
      const g = T.random.normal(T.random.key(31), [2, 2], f64);
      const base = { sigmaD: sd, adaptiveWeighting: false, extraInvSigmaWeight: false };
      const l0 = scmLoss({ net, params, phi, head, xt, t, g, opts: base });
      const l1 = scmLoss({ net, params, phi, head, xt, t, g, opts: { ...base, extraInvSigmaWeight: true } });
      const e = sumSquaresPerSample(g).dataSync();
      expect(l0.dataSync()[0]).toBeCloseTo((e[0] + e[1]) / 4, 13);
      expect(l1.dataSync()[0]).toBeCloseTo((e[0] / (sd * Math.tan(0.3)) + e[1] / (sd * Math.tan(1.2))) / 4, 13);
    });
  });
});

describe('time proposal', () => {
  test('log(σ_d tan t) ~ N(P_mean, P_std²), t inside (0, π/2)', () => {
    T.tidy(() => {
      const t = sampleTime(T.random.key(32), 20000, -1.0, 1.4, sd, 'float64');
      const tau = Array.from(t.dataSync(), (v) => Math.log(sd * Math.tan(v)));
      const m = tau.reduce((a, b) => a + b, 0) / tau.length;
      const sdev = Math.sqrt(tau.reduce((a, b) => a + (b - m) ** 2, 0) / tau.length);
      expect(m).toBeCloseTo(-1.0, 1);
      expect(sdev).toBeCloseTo(1.4, 1);
      expect(Math.min(...t.dataSync())).toBeGreaterThan(0);
      expect(Math.max(...t.dataSync())).toBeLessThan(Math.PI / 2);
    });
  });
});

describe('conversions from other formulations (App. B.2)', () => {
  const edmDenoiser = (_p: null, xSigma: T.Tensor, sigma: T.Tensor) => {
    // exact EDM denoiser for x0 ~ N(0, s²): D = s²/(s² + σ²)·x_σ
    const c = T.div(s * s, T.add(T.square(sigma), s * s));
    return T.mul(T.reshape(c, [-1, 1]), xSigma);
  };
  const flowVelocity = (_p: null, xs: T.Tensor, u: T.Tensor) => {
    // exact rectified-flow velocity E[ε − x0 | x_s] for x0 ~ N(0, s²), x_s = (1−u)x0 + uε:
    // Cov(ε − x0, x_s) = u − (1−u)s², Var(x_s) = (1−u)²s² + u²
    const cov = T.sub(u, T.mul(T.sub(1, u), s * s));
    const v = T.add(T.mul(T.square(T.sub(1, u)), s * s), T.square(u));
    return T.mul(T.reshape(T.div(cov, v), [-1, 1]), xs);
  };

  test('an exact EDM denoiser becomes the exact TrigFlow network', () => {
    T.tidy(() => {
      const t = tvec(times);
      const y = T.random.normal(T.random.key(33), [times.length, 2], f64);
      const F = edmToTrigFlow(edmDenoiser)(null, y, t);
      expect(maxAbsDiff(F, exactDiffusionNet(s, sd)(null, y, t))).toBeLessThan(1e-10);
    });
  });

  test('an exact flow-matching velocity becomes the exact TrigFlow network (data std σ_d)', () => {
    T.tidy(() => {
      // Flow matching with standard normal noise on data of std s: same Gaussian oracle.
      const t = tvec(times);
      const y = T.random.normal(T.random.key(34), [times.length, 2], f64);
      const F = flowMatchingToTrigFlow(flowVelocity)(null, y, t);
      expect(maxAbsDiff(F, exactDiffusionNet(s, sd)(null, y, t))).toBeLessThan(1e-10);
    });
  });

  test('a converted network can be JVP\'d: exact EDM teacher + F* give g ≈ 0', () => {
    T.tidy(() => {
      const t = tvec([0.2, 0.9, 1.4]);
      const xt = T.random.normal(T.random.key(35), [3, 2], f64);
      const dxdt = networkVelocity(edmToTrigFlow(edmDenoiser), null, xt, t);
      const { g } = scmTangent({ net: exactConsistencyNet(s, sd), params: null, xt, t, dxdt, r: 1 });
      expect(maxAbs(g)).toBeLessThan(1e-10);
    });
  });
});

test('denoise is the consistency function and no tensors leak from the tangent and loss', () => {
  expect(denoise).toBe(consistencyFunction);
  const { net, params } = randomMlp(2, 8, 36);
  const head = new WeightingHead({ channels: 8 });
  const phi = head.init('float64');
  const xt = T.random.normal(T.random.key(37), [3, 2], f64);
  const dxdt = T.random.normal(T.random.key(38), [3, 2], f64);
  const t = T.tensor([0.3, 0.8, 1.2], f64);
  const before = T.memory();
  for (let i = 0; i < 3; i++) {
    const out = scmTangent({ net: net as NetFn<typeof params>, params, xt, t, dxdt, r: 1 });
    const g = T.tidy(() => normalizeTangent(out.g, 'l2', 0.1));
    const [l, gr] = valueAndGrad((p: typeof params, ph: typeof phi) => scmLoss({ net, params: p, phi: ph, head, xt, t, g, opts: { sigmaD: sd, adaptiveWeighting: true, extraInvSigmaWeight: false } }), { argnums: [0, 1] })(params, phi);
    T.dispose([out, g, l, gr]);
  }
  expect(T.memory()).toEqual(before);
});
