/**
 * Transforms own their intermediates: after each one returns and its results are disposed,
 * the live tensor and buffer counts are back at their baseline, including after 1,000
 * training steps, with residuals freed during the backward pass.
 */
import { describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import * as AD from '@scm/autodiff';
import { expectNoLeaks } from '@scm/autodiff/testing';

describe.each(['reference', 'webasm'] as const)('on %s', (backend) => {
  const dtype = backend === 'reference' ? 'float64' : 'float32';
  const make = (v: T.NestedArray) => T.tensor(v, { dtype, backend });

  test('1,000 gradient steps of a small regression return to the baseline', async () => {
    await expectNoLeaks(async () => {
      const x = make([[0.5, -1], [1.5, 2], [-0.5, 0.25]]);
      const y = make([1, -2, 0.5]);
      let w = make([0, 0]);
      let b = make(0);
      const loss = (wi: T.Tensor, bi: T.Tensor) => T.mean(T.square(T.sub(T.add(T.matmul(x, wi), bi), y)));
      const first = T.tidy(() => loss(w, b).dataSync()[0]);
      const live = T.memory();
      for (let step = 0; step < 1000; step++) {
        const [gw, gb] = AD.grad(loss, { argnums: [0, 1] })(w, b) as T.Tensor[];
        const [nw, nb] = T.tidy(() => [T.sub(w, T.mul(gw, 0.05)), T.sub(b, T.mul(gb, 0.05))]);
        T.dispose([w, b, gw, gb]);
        [w, b] = [nw, nb];
        // Nothing accumulates from step to step.
        if (step % 100 === 0) expect(T.memory()).toEqual(live);
      }
      const last = T.tidy(() => loss(w, b).dataSync()[0]);
      expect(last).toBeLessThan(first);
      T.dispose([x, y, w, b]);
    });
  });

  test('jvp, vjp, valueAndGrad, hvp, jacfwd, jacrev, hessian and linearize leave only their results', async () => {
    const x = make([0.3, -0.6, 0.9]);
    const u = make([1, -1, 2]);
    const v = make([0.5, 0.5, -1]);
    const f = (a: T.Tensor) => T.sum(T.mul(T.tanh(a), T.exp(T.mul(a, 0.5))));
    const g = (a: T.Tensor) => T.mul(T.sin(a), T.sum(a));
    const calls: [string, () => unknown][] = [
      ['jvp', () => AD.jvp(g, [x], [u])],
      // vjp keeps its residuals for the pullback, which may run many times, until the
      // enclosing tidy ends: that scope is part of its contract.
      ['vjp in tidy', () =>
        T.tidy(() => {
          const [out, fn] = AD.vjp(g, x);
          return [out, fn(v), fn(v)];
        })],
      ['valueAndGrad', () => AD.valueAndGrad(f)(x)],
      ['grad of grad', () => AD.grad((a: T.Tensor) => T.sum(AD.grad(f)(a)))(x)],
      ['hvp', () => AD.hvp(f, [x], [u])],
      ['jacfwd', () => AD.jacfwd(g)(x)],
      ['jacrev', () => AD.jacrev(g)(x)],
      ['hessian', () => AD.hessian(f)(x)],
      ['linearize', () => {
        const [out, lin] = AD.linearize(g, x);
        return [out, lin(u), lin(v)];
      }],
    ];
    for (const [name, call] of calls) {
      const before = T.memory();
      const result = call();
      T.dispose(result);
      expect(T.memory(), name).toEqual(before);
    }
    T.dispose([x, u, v]);
  });

  test('a transform that throws frees what it made', () => {
    const x = make([1, 2]);
    const u = make([1, 1]);
    const before = T.memory();
    expect(() => AD.grad((a: T.Tensor) => T.exp(a))(x)).toThrow(T.TensorError);
    expect(() => AD.jvp((a: T.Tensor) => T.add(T.exp(a), T.ones([3], { dtype, backend })), [x], [u])).toThrow(T.TensorError);
    expect(() => AD.grad((a: T.Tensor) => T.sum(T.matmul(T.exp(a), T.ones([3, 3], { dtype, backend }))))(x)).toThrow(T.TensorError);
    expect(T.memory()).toEqual(before);
    T.dispose([x, u]);
  });
});
