import { describe, expect, test } from 'vitest';
import { checkGrads, flatten, jvp, valueAndGrad } from '@scm/autodiff';
import { Tensor, dispose, memory, random, tidy, toBackend, type BackendName } from '@scm/tensor';
import { ToyMLP, UNet, init, namedParameters, namedSpecs, parameterCount, unetPresets, type Ctx, type Module, type Params, type UNetConfig } from '@scm/nn';
import { type Opts, f64, f32, randn, maxAbs, maxAbsDiff } from './helpers.js';

const times = (seed: number, n: number, opts: Opts = f64) => random.uniform(random.key(seed), [n], { ...opts, low: 0.1, high: 1.5 });

/**
 * Parameters where every path carries signal: weights Xavier-uniform (EDM initializes the
 * last conv of each block near zero, which would hide those paths from a derivative check),
 * vectors N(0, 0.3²) around 1 for norm scales and 0 otherwise.
 */
function liveParams(m: Module<any>, seed: number, opts: Opts = f64): Params {
  const specs = namedSpecs(m.spec());
  const flat = flatten(m.init(random.key(seed), opts));
  return flat.unflatten(flat.leaves.map((t, i) => {
    const key = random.key(seed * 1000 + i);
    const r = t.ndim >= 2
      ? init.xavierUniform()(key, t.shape, opts)
      : random.normal(key, t.shape, { ...opts, std: 0.3, mean: /norm\.weight$/.test(specs[i][0]) ? 1 : 0 });
    t.dispose();
    return r;
  }));
}

/** A micro configuration exercising every mechanism: two levels, attention, dropout, ADN. */
const micro: UNetConfig = { imageChannels: 2, imageSize: 8, baseChannels: 8, channelMult: [1, 2], blocksPerLevel: 1, attentionResolutions: [4], dropout: 0.2 };

describe('UNet: structure and parameter counts', () => {
  test('the paper preset has the CIFAR-10 DDPM++ size: 55.73 M with additive conditioning (EDM), 60.07 M with ADN', () => {
    // Counted from the spec: nothing is allocated.
    const before = memory();
    expect(new UNet({ ...unetPresets.paper, adaptiveNorm: false }).parameterCount()).toBe(55_732_739);
    expect(new UNet('paper').parameterCount()).toBe(60_066_563);
    expect(memory()).toEqual(before);
  });

  test('preset parameter counts', () => {
    expect(Object.fromEntries((['nano', 'tiny', 'small'] as const).map((p) => [p, new UNet(p).parameterCount()]))).toEqual({
      nano: 193_123, tiny: 815_939, small: 7_582_019,
    });
  });

  test('the spec count equals the count of the allocated parameters, name for name', () => {
    const net = new UNet({ ...unetPresets.nano, imageSize: 8 });
    const p = net.init(random.key(0));
    expect(parameterCount(p)).toBe(net.parameterCount());
    expect(namedParameters(p).map(([n, t]) => `${n}:${t.shape}`)).toEqual(namedSpecs(net.spec()).map(([n, s]) => `${n}:${s.shape}`));
    dispose(p);
  });

  test('paper layout: encoder, decoder and where attention sits', () => {
    const net = new UNet('paper');
    expect(net.enc.map((e) => e.name)).toEqual([
      '32x32_conv', '32x32_block0', '32x32_block1', '32x32_block2', '32x32_block3',
      '16x16_down', '16x16_block0', '16x16_block1', '16x16_block2', '16x16_block3',
      '8x8_down', '8x8_block0', '8x8_block1', '8x8_block2', '8x8_block3',
    ]);
    expect(net.dec.map((e) => e.name)).toEqual([
      '8x8_in0', '8x8_in1', '8x8_block0', '8x8_block1', '8x8_block2', '8x8_block3', '8x8_block4',
      '16x16_up', '16x16_block0', '16x16_block1', '16x16_block2', '16x16_block3', '16x16_block4',
      '32x32_up', '32x32_block0', '32x32_block1', '32x32_block2', '32x32_block3', '32x32_block4',
    ]);
    const withAttention = [...net.enc.map((e) => ['enc', e]), ...net.dec.map((e) => ['dec', e])]
      .filter(([, e]) => 'attn' in (e as { block: Module<any> }).block.spec())
      .map(([where, e]) => `${where}.${(e as { name: string }).name}`);
    expect(withAttention).toEqual(['enc.16x16_block0', 'enc.16x16_block1', 'enc.16x16_block2', 'enc.16x16_block3', 'dec.8x8_in0', 'dec.16x16_block4']);
    expect(net.summary()).toMatch(/total\s+\d+ tensors\s+60,066,563/);
  });

  test('every preset maps [N, C, H, W] images and [N] noise levels to [N, C, H, W] (small spatial sizes)', async () => {
    const configs: UNetConfig[] = [
      { ...unetPresets.nano, imageSize: 8 },
      { ...unetPresets.tiny, imageSize: 16 }, // attention at 16×16 is active
      { ...unetPresets.small, imageSize: 8 }, // attention at 8×8 is active
      { ...unetPresets.paper, imageSize: 16, baseChannels: 8, attentionResolutions: [8] }, // the paper's layout, narrow
      { ...unetPresets.nano, imageSize: 8, imageChannels: 1, timeEmbedding: 'fourier', adaptiveNorm: false },
    ];
    for (const config of configs) {
      const net = new UNet(config);
      const params = net.init(random.key(1));
      const x = random.normal(random.key(2), [2, config.imageChannels, config.imageSize, config.imageSize]);
      const y = tidy(() => net.apply(params, x, random.uniform(random.key(3), [2])));
      expect(y.shape).toEqual(x.shape);
      expect(Array.from(await y.data()).every(Number.isFinite)).toBe(true);
      dispose([params, x, y]);
    }
  });

  test('bad inputs and configs are named errors', () => {
    const net = new UNet(micro);
    const p = net.init(random.key(0), f64);
    expect(() => net.apply(p, randn(1, [2, 2, 4, 4]), times(1, 2))).toThrow(/UNet: expected images \[N, 2, 8, 8\]/);
    expect(() => net.apply(p, randn(1, [2, 2, 8, 8]), times(1, 3))).toThrow(/UNet: expected one noise level per image: shape \[2\]/);
    expect(() => new UNet({ ...micro, imageSize: 6, channelMult: [1, 2, 2] })).toThrow(/imageSize 6 must be divisible by 2\^2/);
    expect(() => new UNet({ ...micro, channelMult: [] })).toThrow(/channelMult must be a non-empty list/);
    expect(() => new UNet('huge' as never)).toThrow(/unknown preset "huge"/);
    expect(() => net.apply({ ...p, enc: {} }, randn(1, [2, 2, 8, 8]), times(1, 2))).toThrow(/UNet.enc: missing parameters of submodule "8x8_conv"/);
    dispose(p);
  });
});

describe('UNet: derivatives (float64, reference backend, micro config)', () => {
  const net = new UNet(micro);
  const train: Ctx = { train: true, key: random.key(11) };

  test('JVP with respect to the image and the noise level, parameters fixed (the sCM tangent), against finite differences', async () => {
    const params = liveParams(net, 1);
    const x = randn(2, [2, 2, 8, 8]), t = times(3, 2);
    await checkGrads((xx: Tensor, tt: Tensor) => net.apply(params, xx, tt, train), [x, t], { modes: ['fwd'], eps: 1e-5, atol: 1e-7, rtol: 1e-6 });
    dispose([params, x, t]);
  });

  test('VJP with respect to all parameters, by the inner-product identity', async () => {
    const params = liveParams(net, 4);
    const flat = flatten(params);
    const x = randn(5, [2, 2, 8, 8]), t = times(6, 2);
    await checkGrads((...leaves: Tensor[]) => net.apply(flat.unflatten(leaves), x, t, train), flat.leaves, { modes: ['rev'], eps: 1e-5, atol: 1e-7, rtol: 1e-6 });
    dispose([params, x, t]);
  });

  test('VJP with respect to the image and noise level too (eval mode)', async () => {
    const params = liveParams(net, 7);
    await checkGrads((xx: Tensor, tt: Tensor) => net.apply(params, xx, tt), [randn(8, [1, 2, 8, 8]), times(9, 1)], { modes: ['rev'], eps: 1e-5, atol: 1e-7, rtol: 1e-6 });
    dispose(params);
  });
});

describe('UNet: dropout, backends and memory', () => {
  const net = new UNet(micro);

  test('dropout masks are a function of ctx.key; eval mode disables dropout', async () => {
    const params = liveParams(net, 1);
    const x = randn(2, [2, 2, 8, 8]), t = times(3, 2);
    const run = async (ctx?: Ctx) => { const y = net.apply(params, x, t, ctx); const v = await y.data(); y.dispose(); return v; };
    const a = await run({ train: true, key: random.key(1) });
    const b = await run({ train: true, key: random.key(1) });
    const c = await run({ train: true, key: random.key(2) });
    const evalA = await run({ train: false, key: random.key(1) });
    const evalB = await run();
    const noDropout = new UNet({ ...micro, dropout: 0 });
    const same = await (async () => { const y = noDropout.apply(params, x, t, { train: true, key: random.key(1) }); const v = await y.data(); y.dispose(); return v; })();
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(maxAbsDiff(a, c)).toBeGreaterThan(1e-3);
    expect(Array.from(evalA)).toEqual(Array.from(evalB));
    expect(maxAbsDiff(a, evalA)).toBeGreaterThan(1e-3);
    // Eval mode equals the same network without dropout.
    expect(maxAbsDiff(evalA, same)).toBe(0);
    expect(() => net.apply(params, x, t, { train: true })).toThrow(/dropout: training mode needs ctx.key/);
    dispose([params, x, t]);
  });

  test('the JVP pass and the plain forward see the same dropout masks (same key)', async () => {
    const params = liveParams(net, 4);
    const x = randn(5, [2, 2, 8, 8]), t = times(6, 2);
    const ctx: Ctx = { train: true, key: random.key(9) };
    const [primal, tangent] = jvp((xx: Tensor, tt: Tensor) => net.apply(params, xx, tt, ctx), [x, t], [x, t]);
    const plain = net.apply(params, x, t, ctx);
    expect(Array.from(await primal.data())).toEqual(Array.from(await plain.data()));
    expect(maxAbs(await tangent.data())).toBeGreaterThan(0);
    dispose([params, x, t, primal, tangent, plain]);
  });

  test('float32 on webasm matches the float64 reference', async () => {
    const params = liveParams(net, 7, f32);
    const x = randn(8, [2, 2, 8, 8], f32), t = times(9, 2, f32);
    const flat = flatten(params);
    const refParams = flat.unflatten(await Promise.all(flat.leaves.map((l) => toBackend(l, 'reference', 'float64'))));
    const [xr, tr] = await Promise.all([toBackend(x, 'reference', 'float64'), toBackend(t, 'reference', 'float64')]);
    const ctx: Ctx = { train: true, key: random.key(3) };
    const y = net.apply(params, x, t, ctx), yr = net.apply(refParams, xr, tr, ctx);
    const want = await yr.data();
    expect(maxAbsDiff(await y.data(), want)).toBeLessThan(1e-4 * Math.max(1, maxAbs(want)));
    dispose([params, refParams, x, t, xr, tr, y, yr]);
  });

  test('live tensors and buffers return to baseline after forward, JVP and gradient', async () => {
    const params = net.init(random.key(10));
    const x = random.normal(random.key(11), [2, 2, 8, 8]), t = random.uniform(random.key(12), [2]);
    const ctx: Ctx = { train: true, key: random.key(13) };
    const before = memory();
    dispose(tidy(() => net.apply(params, x, t, ctx)));
    dispose(jvp((xx: Tensor, tt: Tensor) => net.apply(params, xx, tt, ctx), [x, t], [x, t]));
    const [loss, grads] = valueAndGrad((p: Params) => net.apply(p, x, t, ctx).square().mean())(params);
    expect(Number.isFinite(await loss.item())).toBe(true);
    expect(namedParameters(grads).length).toBe(namedParameters(params).length);
    dispose([loss, grads]);
    expect(memory()).toEqual(before);
    dispose([params, x, t]);
  });
});

describe('ToyMLP (2-D toy data)', () => {
  test('UNet and ToyMLP share one interface: Module<[data, noise level]>', async () => {
    const nets: Module<[Tensor, Tensor]>[] = [new ToyMLP({ hidden: 8, embChannels: 4 }), new UNet({ ...micro, attentionResolutions: [] })];
    const inputs = [randn(1, [3, 2]), randn(2, [3, 2, 8, 8])];
    for (const [i, net] of nets.entries()) {
      const p = net.init(random.key(i), f64);
      const y = net.apply(p, inputs[i], times(3, 3), { train: false });
      expect(y.shape).toEqual(inputs[i].shape);
      dispose([p, y]);
    }
    dispose(inputs);
  });

  test('shapes, parameters and errors', () => {
    const mlp = new ToyMLP();
    expect(mlp.parameterCount()).toBe((2 + 64) * 256 + 256 + 2 * (256 * 256 + 256) + 256 * 2 + 2);
    expect(namedSpecs(mlp.spec()).map(([n]) => n)).toEqual([
      'hidden.0.weight', 'hidden.0.bias', 'hidden.1.weight', 'hidden.1.bias', 'hidden.2.weight', 'hidden.2.bias', 'out.weight', 'out.bias',
    ]);
    const small = new ToyMLP({ hidden: 16, embChannels: 8 });
    const p = small.init(random.key(0), f64);
    expect(small.apply(p, randn(1, [5, 2]), times(2, 5)).shape).toEqual([5, 2]);
    expect(() => small.apply(p, randn(1, [5, 3]), times(2, 5))).toThrow(/ToyMLP: expected points \[N, 2\]/);
    expect(() => small.apply(p, randn(1, [5, 2]), times(2, 4))).toThrow(/ToyMLP: expected one noise level per point/);
    expect(() => new ToyMLP({ depth: 0 })).toThrow(/positive integers/);
    dispose(p);
  });

  test('checkGrads float64: JVP and VJP in the point, the noise level and the parameters (with dropout)', async () => {
    const mlp = new ToyMLP({ hidden: 12, depth: 2, embChannels: 8, dropout: 0.1 });
    const params = liveParams(mlp, 3);
    const flat = flatten(params);
    const ctx: Ctx = { train: true, key: random.key(4) };
    const f = (x: Tensor, t: Tensor, ...leaves: Tensor[]) => mlp.apply(flat.unflatten(leaves), x, t, ctx);
    await checkGrads(f, [randn(5, [4, 2]), times(6, 4), ...flat.leaves], { eps: 1e-5, atol: 1e-8, rtol: 1e-6 });
    dispose(params);
  });
});
