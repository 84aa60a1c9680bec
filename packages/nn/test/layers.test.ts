import { describe, expect, test } from 'vitest';
import { checkGrads, flatten, jvp } from '@scm/autodiff';
import { Tensor, dispose, memory, ones, random, tidy, toBackend, type BackendName } from '@scm/tensor';
import {
  Activation, Conv2d, Downsample, Dropout, FourierEmbedding, GroupNorm, LayerNorm, Linear, PixelNorm, PositionalEmbedding, Upsample,
  activations, defaultGroups, dropout, groupNorm, layerNorm, pixelNorm, positionalEmbedding, positionalFrequencies,
  type Ctx, type Module, type Params,
} from '@scm/nn';
import { type Opts, f64, f32, tight, randn, maxAbs, maxAbsDiff, randomParams } from './helpers.js';

/** checkGrads (float64, reference) of m with respect to its inputs and all its parameters together. */
async function checkModule(m: Module<any>, inputs: Tensor[], { seed = 1, order = 1, ctx }: { seed?: number; order?: number; ctx?: Ctx } = {}): Promise<void> {
  const params = randomParams(m, seed);
  const flat = flatten(params);
  const n = inputs.length;
  const f = (...args: Tensor[]) => (m.apply as (...a: unknown[]) => Tensor)(flat.unflatten(args.slice(n)), ...args.slice(0, n), ctx);
  try {
    await checkGrads(f, [...inputs, ...flat.leaves], { ...tight, order });
  } finally {
    dispose(params);
  }
}

/** The module in float32 on webasm against the float64 reference, same parameters and inputs. */
async function checkParity(m: Module<any>, inputs: Tensor[], { seed = 2, rtol = 2e-5, ctx }: { seed?: number; rtol?: number; ctx?: Ctx } = {}): Promise<void> {
  const params = randomParams(m, seed, f32);
  const flat = flatten(params);
  const refLeaves = await Promise.all(flat.leaves.map((t) => toBackend(t, 'reference', 'float64')));
  const refInputs = await Promise.all(inputs.map((t) => toBackend(t, 'reference', 'float64')));
  const apply = m.apply as (...a: unknown[]) => Tensor;
  const y = apply.call(m, params, ...inputs, ctx);
  const yr = apply.call(m, flat.unflatten(refLeaves), ...refInputs, ctx);
  const want = await yr.data();
  expect(y.dtype).toBe('float32');
  expect(maxAbsDiff(await y.data(), want)).toBeLessThanOrEqual(rtol * Math.max(1, maxAbs(want)));
  dispose([params, refLeaves, refInputs, y, yr, inputs]);
}

describe('Linear', () => {
  const layer = new Linear(3, 4);
  test('shapes, parameters and batch dimensions', async () => {
    const params = layer.init(random.key(0), f64);
    expect(Object.keys(params)).toEqual(['weight', 'bias']);
    expect((params.weight as Tensor).shape).toEqual([4, 3]);
    expect(layer.apply(params, randn(1, [5, 3])).shape).toEqual([5, 4]);
    expect(layer.apply(params, randn(1, [2, 5, 3])).shape).toEqual([2, 5, 4]);
    // y = x Wᵀ + b, checked by hand for one row.
    const x = randn(2, [1, 3]);
    const y = await layer.apply(params, x).data();
    const [w, b, xv] = [await (params.weight as Tensor).data(), await (params.bias as Tensor).data(), await x.data()];
    for (let o = 0; o < 4; o++) expect(y[o]).toBeCloseTo(b[o] + w[o * 3] * xv[0] + w[o * 3 + 1] * xv[1] + w[o * 3 + 2] * xv[2], 12);
    expect(new Linear(3, 4, { bias: false }).parameterCount()).toBe(12);
  });
  test('errors name the layer and the shapes', () => {
    const params = layer.init(random.key(0), f64);
    expect(() => layer.apply(params, randn(1, [5, 2]))).toThrow(/Linear: expected input \[\.\.\., 3\].*\[5, 2\]/);
    expect(() => layer.apply({ weight: params.weight }, randn(1, [5, 3]))).toThrow(/Linear: missing parameter "bias"/);
    expect(() => layer.apply({ ...params, weight: randn(1, [3, 4]) }, randn(1, [5, 3]))).toThrow(/parameter "weight" has the wrong shape: expected \[4, 3\]/);
    expect(() => new Linear(0, 2)).toThrow(/Linear: inFeatures must be a positive integer/);
  });
  test('checkGrads float64, orders 1 and 2', async () => {
    await checkModule(layer, [randn(3, [2, 3])], { order: 2 });
  });
  test('float32 webasm vs reference', async () => {
    await checkParity(new Linear(37, 11), [randn(4, [5, 37], f32)]);
  });
});

describe('Conv2d', () => {
  test('output shapes for stride, padding, dilation and groups', () => {
    const x = randn(1, [2, 4, 7, 6]);
    const cases: [Conv2d, number[]][] = [
      [new Conv2d(4, 6, 3), [2, 6, 5, 4]],
      [new Conv2d(4, 6, 3, { padding: 'same' }), [2, 6, 7, 6]],
      [new Conv2d(4, 6, 3, { stride: 2, padding: 1 }), [2, 6, 4, 3]],
      [new Conv2d(4, 6, [3, 1], { dilation: [2, 1] }), [2, 6, 3, 6]],
      [new Conv2d(4, 6, 1, { groups: 2 }), [2, 6, 7, 6]],
    ];
    for (const [conv, shape] of cases) expect(conv.apply(conv.init(random.key(0), f64), x).shape).toEqual(shape);
    expect(new Conv2d(4, 6, 3, { groups: 2 }).weightShape).toEqual([6, 2, 3, 3]);
  });
  test('errors', () => {
    expect(() => new Conv2d(4, 6, 3, { groups: 4 })).toThrow(/divisible by groups/);
    expect(() => new Conv2d(4, 6, 2, { padding: 'same' })).toThrow(/odd kernel sizes/);
    const conv = new Conv2d(4, 6, 3);
    expect(() => conv.apply(conv.init(random.key(0), f64), randn(1, [2, 3, 5, 5]))).toThrow(/Conv2d: expected input \[N, 4, H, W\]/);
  });
  test('checkGrads float64 (strided, grouped)', async () => {
    await checkModule(new Conv2d(4, 6, 3, { stride: 2, padding: 1, groups: 2 }), [randn(5, [2, 4, 5, 4])]);
  });
  test('float32 webasm vs reference', async () => {
    await checkParity(new Conv2d(8, 5, 3, { padding: 1 }), [randn(6, [2, 8, 6, 6], f32)]);
  });
});

describe('normalization', () => {
  test('groupNorm matches its definition; defaultGroups follows EDM (min(32, C/4))', async () => {
    const x = randn(1, [2, 6, 2, 2]);
    const y = await groupNorm(x, 3, undefined, undefined, 0).data();
    const xv = await x.data();
    // Group 1 of sample 1: channels 2..3, 8 values.
    const idx = Array.from({ length: 8 }, (_, i) => 24 + 8 + i);
    const mu = idx.reduce((s, i) => s + xv[i], 0) / 8;
    const sd = Math.sqrt(idx.reduce((s, i) => s + (xv[i] - mu) ** 2, 0) / 8);
    for (const i of idx) expect(y[i]).toBeCloseTo((xv[i] - mu) / sd, 12);
    expect([4, 8, 16, 24, 128, 256].map((c) => defaultGroups(c))).toEqual([1, 2, 4, 6, 32, 32]);
    expect(defaultGroups(3)).toBe(1);
  });
  test('layerNorm and pixelNorm match their definitions', async () => {
    const x = randn(2, [3, 4]);
    const xv = await x.data();
    const ln = await layerNorm(x, [4], undefined, undefined, 0).data();
    const pn = await pixelNorm(x, 1, 0).data();
    for (let r = 0; r < 3; r++) {
      const row = Array.from(xv.slice(4 * r, 4 * r + 4));
      const mu = row.reduce((a, b) => a + b) / 4;
      const sd = Math.sqrt(row.reduce((a, b) => a + (b - mu) ** 2, 0) / 4);
      const rms = Math.sqrt(row.reduce((a, b) => a + b * b, 0) / 4);
      row.forEach((v, c) => {
        expect(ln[4 * r + c]).toBeCloseTo((v - mu) / sd, 12);
        expect(pn[4 * r + c]).toBeCloseTo(v / rms, 12);
      });
    }
  });
  test('errors', () => {
    expect(() => new GroupNorm(3, 8)).toThrow(/GroupNorm: 8 channels do not split into 3 groups/);
    const gn = new GroupNorm(2, 8);
    expect(() => gn.apply(gn.init(random.key(0), f64), randn(1, [2, 6, 3, 3]))).toThrow(/GroupNorm: expected input \[N, 8, \.\.\.\]/);
    expect(() => layerNorm(randn(1, [2, 3]), [4])).toThrow(/layerNorm: expected an input \[\.\.\., 4\]/);
    expect(() => pixelNorm(randn(1, [2, 3]), 2)).toThrow(/pixelNorm: axis 2 is out of range/);
  });
  test('checkGrads float64: GroupNorm and PixelNorm to order 2, LayerNorm order 1', async () => {
    await checkModule(new GroupNorm(2, 4, { eps: 1e-3 }), [randn(3, [2, 4, 2, 2])], { order: 2 });
    await checkModule(new PixelNorm(1, 1e-3), [randn(4, [2, 3, 2, 2])], { order: 2 });
    await checkModule(new LayerNorm([3, 2]), [randn(5, [2, 3, 2])]);
    await checkModule(new GroupNorm(2, 4, { affine: false }), [randn(6, [2, 4, 3])]);
  });
  test('float32 webasm vs reference', async () => {
    await checkParity(new GroupNorm(4, 16, { eps: 1e-6 }), [randn(7, [2, 16, 8, 8], f32)]);
    await checkParity(new LayerNorm(32), [randn(8, [5, 32], f32)]);
    await checkParity(new PixelNorm(), [randn(9, [4, 16], f32)]);
  });
});

describe('Dropout', () => {
  const x = () => randn(1, [4, 64], f64);
  test('eval mode is the identity; training needs a key', () => {
    const v = x();
    expect(dropout(v, 0.3)).toBe(v);
    expect(dropout(v, 0.3, { train: false, key: random.key(1) })).toBe(v);
    expect(dropout(v, 0, { train: true })).toBe(v);
    expect(() => dropout(v, 0.3, { train: true })).toThrow(/dropout: training mode needs ctx.key/);
    expect(() => new Dropout(1.5)).toThrow(/rate must be in \[0, 1\]/);
  });
  test('masks are a function of the key: same key same mask, other key other mask; kept values are rescaled', async () => {
    const v = x();
    const xv = await v.data();
    const a = await dropout(v, 0.25, { train: true, key: random.key(7) }).data();
    const b = await dropout(v, 0.25, { train: true, key: random.key(7) }).data();
    const c = await dropout(v, 0.25, { train: true, key: random.key(8) }).data();
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(c));
    let dropped = 0;
    a.forEach((y, i) => {
      if (y === 0) dropped++;
      else expect(y).toBeCloseTo(xv[i] / 0.75, 12);
    });
    // 256 draws with p = 0.25: expect 64 ± 7; 4 sigma bounds.
    expect(dropped).toBeGreaterThan(64 - 28);
    expect(dropped).toBeLessThan(64 + 28);
    expect(maxAbs(await dropout(v, 1, { train: true, key: random.key(1) }).data())).toBe(0);
  });
  test('the JVP uses the same mask as the primal', async () => {
    const v = x(), t = randn(2, [4, 64]);
    const ctx = { train: true, key: random.key(3) };
    const [y, ty] = jvp((a: Tensor) => dropout(a, 0.5, ctx), [v], [t]);
    const [yv, tyv, xv, tv] = await Promise.all([y.data(), ty.data(), v.data(), t.data()]);
    yv.forEach((val, i) => expect(tyv[i]).toBeCloseTo(val === 0 ? 0 : tv[i] * 2, 12));
    expect(Array.from(yv)).toEqual(Array.from(await dropout(v, 0.5, ctx).data()));
    void xv;
    await checkModule(new Dropout(0.5), [v], { ctx });
  });
});

describe('activations', () => {
  test('values, and checkGrads float64 for each', async () => {
    const x = randn(1, [3, 5]);
    const xv = await x.data();
    const silu = await new Activation('silu').apply({}, x).data();
    xv.forEach((v, i) => expect(silu[i]).toBeCloseTo(v / (1 + Math.exp(-v)), 12));
    // (relu's kink at 0 is never within eps of these random inputs)
    for (const name of Object.keys(activations) as (keyof typeof activations)[]) await checkModule(new Activation(name), [x]);
    expect(() => new Activation('swish' as never)).toThrow(/unknown activation "swish"/);
  });
  test('float32 webasm vs reference', async () => {
    for (const name of ['silu', 'gelu', 'tanh'] as const) await checkParity(new Activation(name), [randn(3, [4, 9], f32)]);
  });
});

describe('resampling', () => {
  test('average-pool down and nearest up: shapes and values', async () => {
    const x = randn(1, [1, 2, 4, 4]);
    const xv = await x.data();
    const down = new Downsample(2);
    const d = await down.apply({}, x).data();
    expect(d[0]).toBeCloseTo((xv[0] + xv[1] + xv[4] + xv[5]) / 4, 12);
    const up = new Upsample(2, { conv: false });
    const u = up.apply({}, x);
    expect(u.shape).toEqual([1, 2, 8, 8]);
    const uv = await u.data();
    expect([uv[0], uv[1], uv[8], uv[9]]).toEqual([xv[0], xv[0], xv[0], xv[0]]);
    expect(down.parameterCount()).toBe(0);
    expect(new Downsample(2, { mode: 'conv', outChannels: 3 }).apply(new Downsample(2, { mode: 'conv', outChannels: 3 }).init(random.key(0), f64), x).shape).toEqual([1, 3, 2, 2]);
  });
  test('errors', () => {
    expect(() => new Downsample(2).apply({}, randn(1, [1, 2, 3, 4]))).toThrow(/downsample2x: expected an NCHW input with even H and W/);
    expect(() => new Downsample(2, { outChannels: 4 })).toThrow(/average pooling keeps the channel count/);
    expect(() => new Upsample(2).apply(new Upsample(2).init(random.key(0), f64), randn(1, [1, 3, 2, 2]))).toThrow(/Upsample: expected input \[N, 2, H, W\]/);
  });
  test('checkGrads float64', async () => {
    await checkModule(new Downsample(3, { mode: 'conv' }), [randn(2, [2, 3, 4, 4])]);
    await checkModule(new Upsample(3), [randn(3, [2, 3, 2, 2])]);
  });
  test('float32 webasm vs reference', async () => {
    await checkParity(new Downsample(4, { mode: 'conv' }), [randn(4, [2, 4, 8, 8], f32)]);
    await checkParity(new Upsample(4), [randn(5, [2, 4, 4, 4], f32)]);
  });
});

describe('time embeddings', () => {
  test('positional: EDM formula (endpoint), [cos, sin] or [sin, cos]', async () => {
    const t = random.uniform(random.key(1), [3], { ...f64, high: Math.PI / 2 });
    const tv = await t.data();
    const freqs = Array.from({ length: 4 }, (_, k) => Math.pow(1e-4, k / 3));
    expect(Array.from(positionalFrequencies(8))).toEqual(freqs.map((f) => expect.closeTo(f, 15)));
    const e = await positionalEmbedding(t, 8).data();
    const s = await new PositionalEmbedding(8, { sinFirst: true }).apply({}, t).data();
    for (let n = 0; n < 3; n++)
      for (let k = 0; k < 4; k++) {
        expect(e[n * 8 + k]).toBeCloseTo(Math.cos(tv[n] * freqs[k]), 14);
        expect(e[n * 8 + 4 + k]).toBeCloseTo(Math.sin(tv[n] * freqs[k]), 14);
        expect(s[n * 8 + k]).toBeCloseTo(Math.sin(tv[n] * freqs[k]), 14);
      }
  });
  test('positional derivative in t stays O(scale) (the reason sCM uses it); Fourier(16) is ~100× larger', async () => {
    const t = random.uniform(random.key(2), [64], { ...f64, high: Math.PI / 2 });
    const one = ones([64], f64);
    const [, dp] = jvp((a: Tensor) => new PositionalEmbedding(64).apply({}, a), [t], [one]);
    const [, df] = jvp((a: Tensor) => new FourierEmbedding(64).apply({}, a), [t], [one]);
    expect(maxAbs(await dp.data())).toBeLessThanOrEqual(1 + 1e-12);
    expect(maxAbs(await df.data())).toBeGreaterThan(100);
  });
  test('Fourier frequencies are fixed by the seed, not parameters', () => {
    const a = new FourierEmbedding(16, { seed: 1 }), b = new FourierEmbedding(16, { seed: 1 }), c = new FourierEmbedding(16, { seed: 2 });
    expect(Array.from(a.freqs)).toEqual(Array.from(b.freqs));
    expect(Array.from(a.freqs)).not.toEqual(Array.from(c.freqs));
    expect(a.parameterCount()).toBe(0);
  });
  test('errors', () => {
    expect(() => new PositionalEmbedding(7)).toThrow(/numChannels must be even/);
    expect(() => new PositionalEmbedding(8).apply({}, randn(1, [2, 1]))).toThrow(/expected noise levels of shape \[N\]/);
  });
  test('checkGrads float64 to order 2', async () => {
    await checkModule(new PositionalEmbedding(8, { scale: 2 }), [randn(4, [3])], { order: 2 });
    await checkModule(new FourierEmbedding(4, { scale: 0.5 }), [randn(5, [3])], { order: 2 });
  });
  test('float32 webasm vs reference', async () => {
    await checkParity(new PositionalEmbedding(32), [random.uniform(random.key(6), [5], { ...f32, high: Math.PI / 2 })]);
  });
});

describe('memory', () => {
  test('layers leave nothing behind after forward and JVP', () => {
    const params = new Conv2d(2, 3, 3).init(random.key(0), f64);
    const x = randn(1, [1, 2, 4, 4]);
    const before = memory();
    const conv = new Conv2d(2, 3, 3);
    dispose(tidy(() => groupNorm(conv.apply(params, x), 3)));
    dispose(jvp((a: Tensor) => pixelNorm(conv.apply(params, a)), [x], [x]));
    expect(memory()).toEqual(before);
    dispose([params, x]);
  });
});
