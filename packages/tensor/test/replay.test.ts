/**
 * `replay`: a function traced once and replayed as GPU.js pipelines (with the packed host
 * plans between them) gives what running it eagerly gives, on new argument values too; it
 * freezes what is not an argument, refuses reads, retraces on a new signature, and leaves
 * no tensors behind.
 */
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { jvp, valueAndGrad } from '@scm/autodiff';
import { assertClose } from '@scm/autodiff/testing';
import { presentBackends } from '../../../test/harness.js';

const gpujsBackends = (await presentBackends()).filter((b) => b !== 'reference');
/** What runs a plan: GPU.js's fused executors (webasm: one WebAssembly memory; webgpu: one command encoder), or its generic one (cpu mode). */
const executors: Record<string, RegExp> = { webasm: /^fused-(sync|threaded)$/, webgpu: /^fused-encoder$/, cpu: /^generic$/ };

const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

function randomTensor(seed: number, shape: number[], backend: T.BackendName, scale = 1): T.Tensor {
  let s = seed * 7919 + 17;
  const n = shape.reduce((a, b) => a * b, 1);
  const values = Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648 - 0.5) * 2 * scale;
  });
  return T.fromArray(values, shape, { backend });
}

/** A small conv net: two 3×3 convolutions (packed host plans on cpu and webasm) and elementwise ops between them. */
function net(x: T.Tensor, w1: T.Tensor, w2: T.Tensor, b: T.Tensor): T.Tensor {
  const h = T.tanh(T.add(T.conv2d(x, w1, { padding: 1 }), T.reshape(b, [1, -1, 1, 1])));
  return T.mul(T.conv2d(h, w2, { padding: 1 }), 0.5);
}

/** Forward plus JVP with respect to the input. */
const forwardJvp = (x: T.Tensor, u: T.Tensor, w1: T.Tensor, w2: T.Tensor, b: T.Tensor) => jvp((xx: T.Tensor) => net(xx, w1, w2, b), [x], [u]) as [T.Tensor, T.Tensor];

/** One SGD step on a squared error: the loss and the new weights. */
function trainStep(x: T.Tensor, target: T.Tensor, w1: T.Tensor, w2: T.Tensor, b: T.Tensor): { loss: T.Tensor; w1: T.Tensor; w2: T.Tensor; b: T.Tensor } {
  const [loss, [g1, g2, gb]] = valueAndGrad((a: T.Tensor, c: T.Tensor, d: T.Tensor) => T.mean(T.square(T.sub(net(x, a, c, d), target))), { argnums: [0, 1, 2] })(w1, w2, b) as [T.Tensor, T.Tensor[]];
  const lr = 0.1;
  return { loss, w1: T.sub(w1, T.mul(g1, lr)), w2: T.sub(w2, T.mul(g2, lr)), b: T.sub(b, T.mul(gb, lr)) };
}

async function expectSame(actual: unknown, expected: unknown): Promise<void> {
  const a = [...T.collectTensors(actual)], e = [...T.collectTensors(expected)];
  expect(a.length).toBe(e.length);
  for (let i = 0; i < a.length; i++) {
    expect(a[i].shape).toEqual(e[i].shape);
    assertClose(await a[i].data(), await e[i].data(), { atol: 1e-6, rtol: 1e-5 });
  }
}

describe.each(gpujsBackends)('replay on %s', (backend) => {
  const shapes = { x: [2, 8, 16, 16], w1: [16, 8, 3, 3], w2: [8, 16, 3, 3], b: [16] };
  const make = (seed: number) => ({
    x: randomTensor(seed, shapes.x, backend),
    u: randomTensor(seed + 1, shapes.x, backend),
    target: randomTensor(seed + 2, shapes.x, backend),
    w1: randomTensor(seed + 3, shapes.w1, backend, 0.2),
    w2: randomTensor(seed + 4, shapes.w2, backend, 0.2),
    b: randomTensor(seed + 5, shapes.b, backend, 0.1),
  });

  test('a forward-plus-JVP replays as pipelines and host plans, equal to eager, on new values too', async () => {
    const replayed = T.replay(forwardJvp, { threads: true });
    for (const seed of [1, 2, 3]) {
      const v = make(seed);
      const eager = T.tidy(() => forwardJvp(v.x, v.u, v.w1, v.w2, v.b));
      const out = await replayed(v.x, v.u, v.w1, v.w2, v.b);
      await expectSame(out, eager);
      T.dispose([eager, out, v]);
    }
    expect(replayed.traces).toBe(1);
    expect(replayed.executor).toMatch(executors[backend]);
    if (backend !== 'cpu') expect(replayed.fallbackReason).toBeNull();
    if (backend === 'webgpu') {
      // No host plans on webgpu: the whole call is one pipeline, one command encoder.
      expect([replayed.pipelines, replayed.hostPlans]).toEqual([1, 0]);
    } else {
      // The convolutions (forward, and the tangent's) ran as host plans, the rest in pipelines.
      expect(replayed.hostPlans).toBe(4);
      expect(replayed.pipelines).toBeGreaterThan(0);
    }
    expect(replayed.kernels).toBeGreaterThan(0);
    replayed.dispose();
  });

  test('a training step (gradient and update) replays, and its outputs feed the next call', async () => {
    const replayed = T.replay(trainStep);
    const v = make(10);
    let eager = { w1: v.w1, w2: v.w2, b: v.b };
    let replay = { w1: v.w1, w2: v.w2, b: v.b };
    for (let i = 0; i < 3; i++) {
      const e = T.tidy(() => trainStep(v.x, v.target, eager.w1, eager.w2, eager.b));
      const r = await replayed(v.x, v.target, replay.w1, replay.w2, replay.b);
      await expectSame(r, e);
      if (i > 0) T.dispose([eager, replay]);
      T.dispose([e.loss, r.loss]);
      eager = { w1: e.w1, w2: e.w2, b: e.b };
      replay = { w1: r.w1, w2: r.w2, b: r.b };
    }
    expect(replayed.executor).toMatch(backend === 'webasm' ? /^fused-sync$/ : executors[backend]);
    expect(replayed.traces).toBe(1);
    T.dispose([eager, replay, v]);
    replayed.dispose();
  });

  test('a new signature is traced anew; outputs of each structure come back', async () => {
    const f = T.replay((a: T.Tensor, b: T.Tensor) => ({ sum: T.add(a, b), product: T.mul(a, b) }));
    for (const n of [5, 5, 7]) {
      const a = randomTensor(n, [n], backend), b = randomTensor(n + 1, [n], backend);
      const out = await f(a, b);
      expect(Object.keys(out)).toEqual(['sum', 'product']);
      const [av, bv] = [await a.data(), await b.data()];
      assertClose(await out.sum.data(), Array.from(av, (x, i) => x + bv[i]), { atol: 1e-6 });
      assertClose(await out.product.data(), Array.from(av, (x, i) => x * bv[i]), { atol: 1e-6 });
      T.dispose([a, b, out]);
    }
    expect(f.traces).toBe(2);
    f.dispose();
  });

  test('returning an argument gives a tensor the caller owns', async () => {
    const f = T.replay((a: T.Tensor, b: T.Tensor) => [a, T.exp(b)] as const);
    const a = T.fromArray([1, 2, 3], [3], { backend }), b = T.fromArray([0, 1, 2], [3], { backend });
    for (let i = 0; i < 2; i++) {
      const [same, e] = await f(a, b);
      expect(same).not.toBe(a);
      same.dispose();
      expect(Array.from(await a.data())).toEqual([1, 2, 3]);
      assertClose(await e.data(), [1, Math.E, Math.exp(2)], { rtol: 1e-6 });
      e.dispose();
    }
    T.dispose([a, b]);
    f.dispose();
  });

  test('what is not an argument is frozen at the first call (as jax.jit)', async () => {
    let offset = T.fromArray([10, 20], [2], { backend });
    const f = T.replay((a: T.Tensor) => T.add(a, offset));
    const a = T.fromArray([1, 2], [2], { backend });
    const first = await f(a);
    offset.dispose();
    offset = T.fromArray([100, 200], [2], { backend });
    const second = await f(a);
    expect(Array.from(await first.data())).toEqual([11, 22]);
    expect(Array.from(await second.data())).toEqual([11, 22]);
    T.dispose([a, first, second, offset]);
    f.dispose();
  });

  test('a function that reads a value back is refused, and eager ops work afterwards', async () => {
    const f = T.replay((a: T.Tensor) => T.mul(a, a.dataSync()[0]));
    const a = T.fromArray([2, 3], [2], { backend });
    await expect(f(a)).rejects.toThrow(/replay: .*reads a value back/);
    const b = T.mul(a, 2);
    expect(Array.from(await b.data())).toEqual([4, 6]);
    T.dispose([a, b]);
  });
});

describe('replay: other backends and bad input', () => {
  test('on the reference backend it runs eagerly, with the same results', async () => {
    const f = T.replay((a: T.Tensor) => T.tanh(T.mul(a, 2)));
    const a = T.fromArray([0.1, -0.2], [2], { backend: 'reference' });
    const out = await f(a);
    expect(f.executor).toBe('eager');
    assertClose(await out.data(), [Math.tanh(0.2), Math.tanh(-0.4)], { atol: 1e-12 });
    T.dispose([a, out]);
  });

  test('arguments must be concrete tensors on one backend; outputs tensors', async () => {
    const a = T.fromArray([1], [1], { backend: 'webasm' }), r = T.fromArray([1], [1], { backend: 'reference' });
    const f = T.replay((x: T.Tensor, y?: T.Tensor) => (y ? T.add(x, y) : T.exp(x)));
    await expect((f as unknown as (...v: unknown[]) => Promise<unknown>)(a, 3)).rejects.toThrow(/replay: argument 1 is not a Tensor/);
    await expect(f(a, r)).rejects.toThrow(/replay: all arguments must live on one backend/);
    await expect((f as unknown as () => Promise<unknown>)()).rejects.toThrow(/replay: .*at least one tensor argument/);
    const g = T.replay((x: T.Tensor) => 3 as unknown as T.Tensor);
    await expect(g(a)).rejects.toThrow(/replay: the function must return a Tensor/);
    const h = T.replay((x: T.Tensor) => [x, 'no'] as unknown as T.Tensor[]);
    await expect(h(a)).rejects.toThrow(/replay: output 1 is not a Tensor/);
    T.dispose([a, r]);
  });
});
