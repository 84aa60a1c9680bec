import { describe, expect, test } from 'vitest';
import { checkGrads, flatten, jvp, valueAndGrad, vjp } from '@scm/autodiff';
import { Tensor, add, concat, getBackendInstance, memory, random, reshape, slice, tidy, toBackend, transpose, dispose, type BackendName } from '@scm/tensor';
import { Module, SelfAttention2d, attention, attentionComposite, namedParameters, type Params } from '@scm/nn';

const f64 = { dtype: 'float64', backend: 'reference' } as const;

function randn(seed: number, shape: number[], opts: { dtype?: 'float32' | 'float64'; backend?: BackendName } = f64): Tensor {
  return random.normal(random.key(seed), shape, opts);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/**
 * Peak number of live float elements held by reference-backend buffers while fn runs,
 * above what was live when it started (every buffer is counted at its full size from
 * allocation to release).
 */
function peakElements(fn: () => void): number {
  const backend = getBackendInstance('reference') as unknown as {
    run: (...a: unknown[]) => ArrayLike<number>;
    fromHost: (...a: unknown[]) => ArrayLike<number>;
    free: (b: ArrayLike<number>) => void;
  };
  const { run, fromHost, free } = backend;
  let live = 0, peak = 0;
  const alloc = (r: ArrayLike<number>) => {
    live += r.length;
    peak = Math.max(peak, live);
    return r;
  };
  backend.run = (...a) => alloc(run.apply(backend, a));
  backend.fromHost = (...a) => alloc(fromHost.apply(backend, a));
  backend.free = (b) => {
    live -= b.length;
    free.call(backend, b);
  };
  try {
    fn();
  } finally {
    // The patches are own properties shadowing the class's methods.
    delete (backend as { run?: unknown }).run;
    delete (backend as { fromHost?: unknown }).fromHost;
    delete (backend as { free?: unknown }).free;
  }
  return peak;
}

/** Module parameters replaced by N(0, 0.5²) draws, so near-zero-initialized paths carry signal too. */
function randomParamsOf(m: Module<any>, seed: number, opts: { dtype: 'float32' | 'float64'; backend: BackendName } = f64): Params {
  const p = m.init(random.key(seed), opts);
  const flat = flatten(p);
  return flat.unflatten(flat.leaves.map((t, i) => {
    const r = random.normal(random.key(seed * 100 + i), t.shape, { ...opts, std: 0.5 });
    t.dispose();
    return r;
  }));
}

describe('attention (lean JVP)', () => {
  test('forward equals the composite softmax(q kᵀ/√d) v', async () => {
    const [q, k, v] = [randn(1, [2, 5, 3]), randn(2, [2, 7, 3]), randn(3, [2, 7, 4])];
    const a = attention(q, k, v), b = attentionComposite(q, k, v);
    expect(a.shape).toEqual([2, 5, 4]);
    expect(maxAbsDiff(await a.data(), await b.data())).toBeLessThan(1e-14);
    dispose([q, k, v, a, b]);
  });

  test('JVP equals autodiff through the composite to float64 precision, for every block size', async () => {
    const L = 9;
    const primals = [randn(4, [2, L, 3]), randn(5, [2, L, 3]), randn(6, [2, L, 2])];
    const tangents = [randn(7, [2, L, 3]), randn(8, [2, L, 3]), randn(9, [2, L, 2])];
    const [wantO, wantT] = jvp((q: Tensor, k: Tensor, v: Tensor) => attentionComposite(q, k, v), primals, tangents);
    const scale = maxAbs(await wantT.data());
    for (const blockRows of [1, 2, 4, 5, 9, 100, undefined]) {
      const [o, t] = jvp((q: Tensor, k: Tensor, v: Tensor) => attention(q, k, v, { blockRows }), primals, tangents);
      expect(maxAbsDiff(await o.data(), await wantO.data())).toBeLessThan(1e-14);
      expect(maxAbsDiff(await t.data(), await wantT.data()) / scale).toBeLessThan(1e-13);
      dispose([o, t]);
    }
    dispose([primals, tangents, wantO, wantT]);
  });

  test('JVP with a tangent on only some inputs (symbolic zeros elsewhere)', async () => {
    const [q, k, v] = [randn(10, [3, 4]), randn(11, [6, 4]), randn(12, [6, 2])];
    const tq = randn(13, [3, 4]);
    const f = (a: Tensor) => attention(a, k, v);
    const g = (a: Tensor) => attentionComposite(a, k, v);
    const [, t1] = jvp(f, [q], [tq]);
    const [, t2] = jvp(g, [q], [tq]);
    expect(maxAbsDiff(await t1.data(), await t2.data())).toBeLessThan(1e-13);
    dispose([q, k, v, tq, t1, t2]);
  });

  test('checkGrads: JVP (orders 1 and 2) against finite differences; VJP by the inner-product identity', async () => {
    const args = [randn(14, [2, 6, 3]), randn(15, [2, 6, 3]), randn(16, [2, 6, 2])];
    const f = (q: Tensor, k: Tensor, v: Tensor) => attention(q, k, v, { blockRows: 4 });
    await checkGrads(f, args, { order: 2, modes: ['fwd'], eps: 1e-5, atol: 1e-8, rtol: 1e-6 });
    await checkGrads(f, args, { order: 1, modes: ['rev'], eps: 1e-5, atol: 1e-8, rtol: 1e-6 });
    dispose(args);
  });

  test('reverse mode through the JVP rule (grad of a function of the tangent) matches the composite', async () => {
    const args = [randn(17, [4, 3]), randn(18, [5, 3]), randn(19, [5, 2])];
    const tangents = [randn(20, [4, 3]), randn(21, [5, 3]), randn(22, [5, 2])];
    const loss = (att: typeof attention) => (q: Tensor, k: Tensor, v: Tensor) => jvp((a: Tensor, b: Tensor, c: Tensor) => att(a, b, c), [q, k, v], tangents)[1].square().sum();
    const [v1, g1] = valueAndGrad(loss(attention), { argnums: [0, 1, 2] })(...args);
    const [v2, g2] = valueAndGrad(loss(attentionComposite), { argnums: [0, 1, 2] })(...args);
    expect(Math.abs((await v1.item()) - (await v2.item()))).toBeLessThan(1e-12);
    for (let i = 0; i < 3; i++) expect(maxAbsDiff(await g1[i].data(), await g2[i].data())).toBeLessThan(1e-11);
    dispose([args, tangents, v1, v2, g1, g2]);
  });

  test('the JVP needs no more memory than the forward; differentiating the composite needs much more', () => {
    const B = 2, L = 64, d = 2;
    const primals = [randn(23, [B, L, d]), randn(24, [B, L, d]), randn(25, [B, L, d])];
    const tangents = [randn(26, [B, L, d]), randn(27, [B, L, d]), randn(28, [B, L, d])];
    const f = (q: Tensor, k: Tensor, v: Tensor) => attention(q, k, v);
    const g = (q: Tensor, k: Tensor, v: Tensor) => attentionComposite(q, k, v);
    const forward = peakElements(() => tidy(() => void f(...(primals as [Tensor, Tensor, Tensor]))));
    const leanJvp = peakElements(() => dispose(jvp(f, primals, tangents)));
    const compositeJvp = peakElements(() => dispose(jvp(g, primals, tangents)));
    const scores = B * L * L;
    // The forward holds at most two score-sized tensors at once (exp and its normalization).
    expect(forward).toBeLessThanOrEqual(2 * scores + 8 * B * L * d);
    expect(leanJvp).toBeLessThanOrEqual(forward);
    expect(compositeJvp).toBeGreaterThan(3 * leanJvp);
    dispose([primals, tangents]);
  });

  test('no tensors or buffers outlive forward, JVP and gradient', () => {
    const before = memory();
    const args = [randn(29, [2, 8, 4]), randn(30, [2, 8, 4]), randn(31, [2, 8, 4])];
    dispose(tidy(() => attention(args[0], args[1], args[2], { blockRows: 3 })));
    dispose(jvp((q: Tensor, k: Tensor, v: Tensor) => attention(q, k, v, { blockRows: 3 }), args, args));
    dispose(valueAndGrad((q: Tensor, k: Tensor, v: Tensor) => attention(q, k, v).sum(), { argnums: [0, 1, 2] })(...args));
    dispose(args);
    expect(memory()).toEqual(before);
  });

  test('bad shapes and dtypes are named errors', () => {
    const q = randn(32, [2, 4, 3]);
    expect(() => attention(q, randn(33, [2, 4, 2]), randn(34, [2, 4, 3]))).toThrow(/attention: expected q \[\.\.\., Lq, d\]/);
    expect(() => attention(q, randn(35, [3, 4, 3]), randn(36, [3, 4, 3]))).toThrow(/equal batch dims/);
    expect(() => attention(q, q, randn(37, [2, 5, 3]))).toThrow(/attention/);
    expect(() => attention(q, q, random.normal(random.key(1), [2, 4, 3], { backend: 'reference' }))).toThrow(/share a dtype/);
  });
});

describe('SelfAttention2d', () => {
  const layer = new SelfAttention2d(8, { numHeads: 2, skipScale: Math.SQRT1_2 });

  function randomParams(seed: number, opts: { dtype: 'float32' | 'float64'; backend: BackendName } = f64): Params {
    return randomParamsOf(layer, seed, opts);
  }

  test('shapes, parameter names and a residual at init', async () => {
    const params = layer.init(random.key(1), f64);
    expect(namedParameters(params).map(([n, t]) => [n, t.shape])).toEqual([
      ['norm.weight', [8]], ['norm.bias', [8]], ['qkv.weight', [24, 8, 1, 1]], ['qkv.bias', [24]], ['proj.weight', [8, 8, 1, 1]], ['proj.bias', [8]],
    ]);
    const x = randn(2, [2, 8, 3, 3]);
    const y = layer.apply(params, x);
    expect(y.shape).toEqual([2, 8, 3, 3]);
    // The output projection starts near zero: y ≈ x · sqrt(1/2).
    const [xs, ys] = [await x.data(), await y.data()];
    expect(maxAbsDiff(ys, Array.from(xs, (v) => v * Math.SQRT1_2))).toBeLessThan(1e-3);
    dispose([params, x, y]);
  });

  test('two heads: each head is attention over its own slice of the q, k, v channels', async () => {
    const two = new SelfAttention2d(4, { numHeads: 2 });
    const params = randomParamsOf(two, 3);
    const x = randn(4, [2, 4, 2, 3]);
    const y = two.apply(params, x);
    // Recompute by hand: GN -> 1x1 qkv -> per-head attention over the 6 positions -> 1x1 proj -> residual.
    const P = params as Record<string, Params>;
    const h = two.norm.apply(P.norm, x);
    const qkv = two.qkv.apply(P.qkv, h); // [2, 12, 2, 3]
    const tokens = (c0: number) => transpose(reshape(slice(qkv, [null, { start: c0, stop: c0 + 2 }]), [2, 2, 6]), [0, 2, 1]); // [N, L, d]
    const heads = [0, 1].map((hd) => attentionComposite(tokens(2 * hd), tokens(4 + 2 * hd), tokens(8 + 2 * hd)));
    const a = reshape(transpose(concat(heads, 2), [0, 2, 1]), [2, 4, 2, 3]);
    const want = add(x, two.proj.apply(P.proj, a));
    expect(maxAbsDiff(await y.data(), await want.data())).toBeLessThan(1e-13);
    dispose([params, x, y, h, qkv, heads, a, want]);
  });

  test('checkGrads in float64: JVP and VJP with respect to the input and every parameter', async () => {
    const params = randomParams(5);
    const flat = flatten(params);
    const x = randn(6, [2, 8, 3, 2]);
    const f = (xx: Tensor, ...leaves: Tensor[]) => layer.apply(flat.unflatten(leaves), xx);
    await checkGrads(f, [x, ...flat.leaves], { eps: 1e-5, atol: 1e-8, rtol: 1e-6 });
    dispose([params, x]);
  });

  test('float32 on webasm matches the float64 reference', async () => {
    const params = randomParams(7, { dtype: 'float32', backend: 'webasm' });
    const x = randn(8, [2, 8, 4, 4], { dtype: 'float32', backend: 'webasm' });
    const flat = flatten(params);
    const refLeaves = await Promise.all(flat.leaves.map((t) => toBackend(t, 'reference', 'float64')));
    const xr = await toBackend(x, 'reference', 'float64');
    const [y, yr] = [layer.apply(params, x), layer.apply(flat.unflatten(refLeaves), xr)];
    const want = await yr.data();
    expect(maxAbsDiff(await y.data(), want)).toBeLessThan(1e-4 * Math.max(1, maxAbs(want)));
    dispose([params, x, refLeaves, xr, y, yr]);
  });

  test('vjp through the module frees everything it made', () => {
    const params = layer.init(random.key(9), f64);
    const x = randn(10, [1, 8, 2, 2]);
    const before = memory();
    tidy(() => {
      const [out, back] = vjp((xx: Tensor) => layer.apply(params, xx), x);
      back(out);
    });
    expect(memory()).toEqual(before);
    dispose([params, x]);
  });
});
