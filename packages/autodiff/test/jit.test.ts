/**
 * jit: replay for functions of pytrees. A training step over a parameter tree, replayed,
 * follows the eager one step for step; a new structure or a new static value traces anew.
 */
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import * as AD from '@scm/autodiff';
import { assertClose } from '@scm/autodiff/testing';

const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

type Params = { layers: { w: T.Tensor; b: T.Tensor }[] };

function mlp(p: Params, x: T.Tensor): T.Tensor {
  let h = x;
  p.layers.forEach((l, i) => {
    h = T.add(T.matmul(h, l.w), l.b);
    if (i < p.layers.length - 1) h = T.tanh(h);
  });
  return h;
}

/** One SGD step: the loss and the new parameter tree. */
function step(p: Params, batch: { x: T.Tensor; y: T.Tensor }, lr: number): [T.Tensor, Params] {
  const [loss, g] = AD.valueAndGrad((q: Params) => T.mean(T.square(T.sub(mlp(q, batch.x), batch.y))))(p) as [T.Tensor, Params];
  return [loss, AD.treeZip([p, g], (w, gw) => T.sub(w, T.mul(gw, lr))) as Params];
}

const normal = (seed: number, shape: number[], backend: T.BackendName) => T.tidy(() => T.mul(T.random.normal(T.random.key(seed), shape, { backend }), 0.5));

describe.each(['webasm', 'reference'] as const)('jit on %s', (backend) => {
  test('a training step over a parameter tree follows the eager one for five steps', async () => {
    const init = (): Params => ({ layers: [{ w: normal(1, [4, 16], backend), b: normal(2, [16], backend) }, { w: normal(3, [16, 2], backend), b: normal(4, [2], backend) }] });
    const batch = { x: normal(5, [32, 4], backend), y: normal(6, [32, 2], backend) };
    const jitted = AD.jit(step);
    let eager = init(), replayed = init();
    for (let i = 0; i < 5; i++) {
      const [le, pe] = T.tidy(() => step(eager, batch, 0.1));
      const [lr, pr] = await jitted(replayed, batch, 0.1);
      assertClose(await lr.data(), await le.data(), { rtol: 1e-5, atol: 1e-6 });
      const [fe, fr] = [AD.flatten(pe).leaves, AD.flatten(pr).leaves];
      expect(fr.map((t) => t.shape)).toEqual(fe.map((t) => t.shape));
      for (let k = 0; k < fe.length; k++) assertClose(await fr[k].data(), await fe[k].data(), { rtol: 1e-5, atol: 1e-6 });
      T.dispose([eager, replayed, le, lr]);
      [eager, replayed] = [pe, pr];
    }
    // The reference backend runs replays eagerly (no plans).
    expect(jitted.last!.traces).toBe(backend === 'webasm' ? 1 : 0);
    expect(jitted.last!.executor).toBe(backend === 'webasm' ? 'fused-sync' : 'eager');
    // A new static value (the learning rate) is a new structure: traced anew.
    const [l2, p2] = await jitted(replayed, batch, 0.05);
    expect(jitted.last!.traces).toBe(backend === 'webasm' ? 1 : 0);
    expect(jitted.last!.executor).toBe('eager');
    T.dispose([eager, replayed, batch, l2, p2]);
    jitted.dispose();
  });
});
