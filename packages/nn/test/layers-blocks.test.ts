import { describe, expect, test } from 'vitest';
import { checkGrads, flatten } from '@scm/autodiff';
import { Tensor, add, dispose, mul, random, reshape, split, toBackend, type BackendName } from '@scm/tensor';
import { AdaptiveNorm, ResBlock, groupNorm, namedParameters, pixelNorm, type Ctx, type Module, type Params } from '@scm/nn';
import { type Opts, f64, f32, tight, randn, maxAbs, maxAbsDiff, randomParams } from './helpers.js';

async function checkModule(m: Module<any>, inputs: Tensor[], ctx?: Ctx): Promise<void> {
  const params = randomParams(m, 1);
  const flat = flatten(params);
  const n = inputs.length;
  const f = (...args: Tensor[]) => (m.apply as (...a: unknown[]) => Tensor)(flat.unflatten(args.slice(n)), ...args.slice(0, n), ctx);
  try {
    await checkGrads(f, [...inputs, ...flat.leaves], tight);
  } finally {
    dispose(params);
  }
}

async function checkParity(m: Module<any>, inputs: Tensor[], ctx?: Ctx): Promise<void> {
  const params = randomParams(m, 2, f32);
  const flat = flatten(params);
  const refLeaves = await Promise.all(flat.leaves.map((t) => toBackend(t, 'reference', 'float64')));
  const refInputs = await Promise.all(inputs.map((t) => toBackend(t, 'reference', 'float64')));
  const apply = m.apply as (...a: unknown[]) => Tensor;
  const y = apply.call(m, params, ...inputs, ctx);
  const yr = apply.call(m, flat.unflatten(refLeaves), ...refInputs, ctx);
  const want = await yr.data();
  expect(maxAbsDiff(await y.data(), want)).toBeLessThanOrEqual(5e-5 * Math.max(1, maxAbs(want)));
  dispose([params, refLeaves, refInputs, y, yr, inputs]);
}

describe('AdaptiveNorm (conditioning on the noise embedding)', () => {
  test('parameter shapes per mode', () => {
    const shapes = (mode: 'double' | 'additive' | 'scaleShift') => namedParameters(new AdaptiveNorm(8, 5, { mode }).init(random.key(0), f64)).map(([n, t]) => `${n}:${t.shape}`);
    expect(shapes('double')).toEqual(['affine.weight:16,5', 'affine.bias:16', 'norm.weight:8', 'norm.bias:8']);
    expect(shapes('scaleShift')).toEqual(shapes('double'));
    expect(shapes('additive')).toEqual(['affine.weight:8,5', 'affine.bias:8', 'norm.weight:8', 'norm.bias:8']);
  });

  test('double normalization: y = GN(x) ⊙ pnorm(s) + pnorm(b), independent of the embedding scale', async () => {
    const adn = new AdaptiveNorm(4, 3, { groups: 2 });
    const params = randomParams(adn, 3);
    const x = randn(4, [2, 4, 3, 3]), emb = randn(5, [2, 3]);
    const y = adn.apply(params, x, emb);
    const P = params as Record<string, Record<string, Tensor>>;
    const [s, b] = split(adn.affine.apply(P.affine, emb), 2, 1);
    const spatial = (v: Tensor) => reshape(v, [2, 4, 1, 1]);
    const want = add(mul(groupNorm(x, 2, P.norm.weight, P.norm.bias), spatial(pixelNorm(s))), spatial(pixelNorm(b)));
    expect(maxAbsDiff(await y.data(), await want.data())).toBeLessThan(1e-13);
    // Scaling the projection (so s and b) by 1000 changes nothing but the pixel norms' eps (1e-8
    // against mean squares of order 0.1): the normalizations absorb it.
    const big = { ...params, affine: { weight: mul(P.affine.weight, 1000), bias: mul(P.affine.bias, 1000) } };
    expect(maxAbsDiff(await adn.apply(big, x, emb).data(), await y.data())).toBeLessThan(1e-6);
    // Plain scale-shift conditioning (AdaGN) has no such bound.
    const ada = new AdaptiveNorm(4, 3, { groups: 2, mode: 'scaleShift' });
    const diff = maxAbsDiff(await ada.apply(big, x, emb).data(), await ada.apply(params, x, emb).data());
    expect(diff).toBeGreaterThan(10);
  });

  test('errors name the shapes', () => {
    const adn = new AdaptiveNorm(4, 3);
    const params = adn.init(random.key(0), f64);
    expect(() => adn.apply(params, randn(1, [2, 4, 2, 2]), randn(1, [3, 3]))).toThrow(/AdaptiveNorm: expected an embedding \[2, 3\]/);
    expect(() => adn.apply(params, randn(1, [2, 5, 2, 2]), randn(1, [2, 3]))).toThrow(/AdaptiveNorm: expected input \[N, 4, H, W\]/);
    expect(() => new AdaptiveNorm(4, 3, { mode: 'film' as never })).toThrow(/mode must be/);
  });

  test('checkGrads float64 for each mode (input, embedding and parameters)', async () => {
    for (const mode of ['double', 'additive', 'scaleShift'] as const) {
      await checkModule(new AdaptiveNorm(4, 3, { mode, groups: 2 }), [randn(6, [2, 4, 2, 2]), randn(7, [2, 3])]);
    }
  });

  test('float32 webasm vs reference', async () => {
    await checkParity(new AdaptiveNorm(16, 32), [randn(8, [2, 16, 4, 4], f32), randn(9, [2, 32], f32)]);
  });
});

describe('ResBlock', () => {
  const emb = 6;
  test('shapes and parameters: skip only when channels or resolution change, attention on request', () => {
    const names = (b: ResBlock) => Object.keys(b.spec());
    const x = randn(1, [2, 4, 4, 4]), e = randn(2, [2, emb]);
    const cases: [ResBlock, number[], string[]][] = [
      [new ResBlock(4, 4, { embChannels: emb }), [2, 4, 4, 4], ['norm0', 'conv0', 'cond', 'conv1']],
      [new ResBlock(4, 8, { embChannels: emb }), [2, 8, 4, 4], ['norm0', 'conv0', 'cond', 'conv1', 'skip']],
      [new ResBlock(4, 4, { embChannels: emb, resample: 'down' }), [2, 4, 2, 2], ['norm0', 'conv0', 'cond', 'conv1', 'skip']],
      [new ResBlock(4, 8, { embChannels: emb, resample: 'up', attention: true }), [2, 8, 8, 8], ['norm0', 'conv0', 'cond', 'conv1', 'skip', 'attn']],
    ];
    for (const [block, shape, keys] of cases) {
      expect(block.apply(block.init(random.key(0), f64), x, e).shape).toEqual(shape);
      expect(names(block)).toEqual(keys);
    }
    expect(() => new ResBlock(4, 4, { embChannels: emb, resample: 'sideways' as never })).toThrow(/resample must be/);
    const b = new ResBlock(4, 4, { embChannels: emb });
    expect(() => b.apply(b.init(random.key(0), f64), randn(1, [2, 3, 4, 4]), e)).toThrow(/ResBlock: expected input \[N, 4, H, W\]/);
  });

  test('dropout: masks follow ctx.key; eval mode is deterministic and differs from training', async () => {
    const block = new ResBlock(4, 4, { embChannels: emb, dropout: 0.5 });
    const params = randomParams(block, 3);
    const x = randn(4, [2, 4, 4, 4]), e = randn(5, [2, emb]);
    const run = async (ctx?: Ctx) => block.apply(params, x, e, ctx).data();
    const [a, b, c, ev1, ev2] = await Promise.all([
      run({ train: true, key: random.key(1) }), run({ train: true, key: random.key(1) }), run({ train: true, key: random.key(2) }),
      run({ train: false, key: random.key(1) }), run(),
    ]);
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(maxAbsDiff(a, c)).toBeGreaterThan(1e-3);
    expect(Array.from(ev1)).toEqual(Array.from(ev2));
    expect(maxAbsDiff(a, ev1)).toBeGreaterThan(1e-3);
    expect(() => block.apply(params, x, e, { train: true })).toThrow(/dropout: training mode needs ctx.key/);
  });

  test('checkGrads float64: plain block; downsampling block with attention and dropout in training mode', async () => {
    await checkModule(new ResBlock(4, 4, { embChannels: emb, skipScale: Math.SQRT1_2 }), [randn(6, [2, 4, 3, 3]), randn(7, [2, emb])]);
    const block = new ResBlock(4, 8, { embChannels: emb, resample: 'down', attention: true, numHeads: 2, dropout: 0.3 });
    await checkModule(block, [randn(8, [2, 4, 4, 4]), randn(9, [2, emb])], { train: true, key: random.key(5) });
  });

  test('float32 webasm vs reference (upsampling block with attention and additive conditioning)', async () => {
    const block = new ResBlock(8, 8, { embChannels: 16, resample: 'up', attention: true, conditioning: 'additive' });
    await checkParity(block, [randn(10, [2, 8, 4, 4], f32), randn(11, [2, 16], f32)]);
  });
});
