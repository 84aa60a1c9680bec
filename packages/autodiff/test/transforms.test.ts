/**
 * The transforms, case by case, against values worked out by hand (float64, reference
 * backend): nesting (grad of grad, jvp of grad, grad of jvp), Jacobians and Hessians,
 * linearize, valueAndGrad with argnums, pytrees and aux, stopGradient, custom rules,
 * symbolic zeros, and outputs without tangents.
 */
import { afterAll, afterEach, describe, expect, test, vi } from 'vitest';
import * as T from '@scm/tensor';
import * as AD from '@scm/autodiff';
import { assertClose, checkGrads, numericalJvp } from '@scm/autodiff/testing';

T.setBackend('reference');
const f64 = (v: T.NestedArray) => T.tensor(v, { dtype: 'float64' });
const values = (t: T.Tensor) => Array.from(t.dataSync());
const close = (got: T.Tensor, want: number[], tol = 1e-12) => assertClose(values(got), want, { atol: tol, rtol: tol });

const baseline = T.memory();
afterEach(() => vi.restoreAllMocks());
afterAll(() => expect(T.memory()).toEqual(baseline));

const xs = [0.5, -1.25, 2];
const cube = (x: T.Tensor) => T.sum(T.mul(T.mul(x, x), x));

describe('nesting', () => {
  test('grad of grad: d²/dx² Σx³ = 6x', () => {
    T.tidy(() => {
      const x = f64(xs);
      close(AD.grad(cube)(x), xs.map((v) => 3 * v * v));
      close(AD.grad((y: T.Tensor) => T.sum(AD.grad(cube)(y)))(x), xs.map((v) => 6 * v));
      // Third order: d/dx Σ 6x = 6.
      close(AD.grad((y: T.Tensor) => T.sum(AD.grad((z: T.Tensor) => T.sum(AD.grad(cube)(z)))(y)))(x), [6, 6, 6]);
    });
  });

  test('jvp of grad and grad of jvp give H·u = 6x·u', () => {
    T.tidy(() => {
      const x = f64(xs), u = f64([1, 2, -1]);
      const want = xs.map((v, i) => 6 * v * [1, 2, -1][i]);
      close(AD.jvp(AD.grad(cube), [x], [u])[1], want);
      close(AD.grad((y: T.Tensor) => AD.jvp(cube, [y], [u])[1])(x), want);
      close(AD.hvp(cube, [x], [u])[0], want);
    });
  });

  test('jvp of jvp: the second directional derivative', () => {
    T.tidy(() => {
      const x = f64([0.3, 0.7]), u = f64([1, -2]);
      const f = (y: T.Tensor) => T.sum(T.sin(y));
      const d2 = AD.jvp((y: T.Tensor) => AD.jvp(f, [y], [u])[1], [x], [u])[1];
      // Σ -sin(x_i) u_i²
      close(d2, [-Math.sin(0.3) * 1 - Math.sin(0.7) * 4]);
    });
  });
});

describe('Jacobians and Hessians', () => {
  const f = (x: T.Tensor) => T.reshape(T.matmul(T.tanh(x), f64([[1, -2], [0.5, 3], [2, 1]])), [-1]);

  test('jacfwd equals jacrev, has shape out + in, and matches finite differences column by column', () => {
    T.tidy(() => {
      const x = f64([[0.1, -0.4, 0.9], [1.2, 0.3, -0.7]]);
      const jf = AD.jacfwd(f)(x);
      const jr = AD.jacrev(f)(x);
      expect(jf.shape).toEqual([4, 2, 3]);
      expect(jr.shape).toEqual([4, 2, 3]);
      close(jf, values(jr));
      const jac = values(jf);
      for (let j = 0; j < 6; j++) {
        const e = T.reshape(T.oneHot(T.tensor(Int32Array.from([j])), 6, 'float64'), [2, 3]);
        const [col] = numericalJvp(f, [x], [e]);
        assertClose(values(col), [0, 1, 2, 3].map((i) => jac[i * 6 + j]), { atol: 1e-9, rtol: 1e-9 });
      }
    });
  });

  test('hessian is symmetric and equals the analytic one; hvp is hessian·v', () => {
    T.tidy(() => {
      const x = f64(xs);
      // f = Σx³ + (Σx)²: H = diag(6x) + 2·11ᵀ
      const f2 = (y: T.Tensor) => T.add(cube(y), T.square(T.sum(y)));
      const h = AD.hessian(f2)(x);
      expect(h.shape).toEqual([3, 3]);
      const want = [0, 1, 2].flatMap((i) => [0, 1, 2].map((j) => (i === j ? 6 * xs[i] : 0) + 2));
      close(h, want);
      const g = (y: T.Tensor) => T.sum(T.mul(T.sin(y), T.exp(T.mul(T.sum(y), 0.3))));
      const hg = AD.hessian(g)(x);
      close(hg, values(T.transpose(hg)));
      const v = f64([0.2, -1, 0.5]);
      close(AD.hvp(g, [x], [v])[0], values(T.matmul(hg, v)));
    });
  });

  test('jacfwd and jacrev of a scalar function are its gradient', () => {
    T.tidy(() => {
      const x = f64(xs);
      close(AD.jacfwd(cube)(x), values(AD.grad(cube)(x)));
      close(AD.jacrev(cube)(x), values(AD.grad(cube)(x)));
    });
  });
});

test('linearize: the primal now, then a linear tangent map that matches jvp and can be called again', () => {
  T.tidy(() => {
    const x = f64(xs);
    const f = (y: T.Tensor) => T.mul(T.sin(y), y);
    const [out, fJvp] = AD.linearize(f, x);
    close(out, values(f(x)));
    const u1 = f64([1, 0, 2]), u2 = f64([-1, 3, 0.5]);
    close(fJvp(u1), values(AD.jvp(f, [x], [u1])[1]));
    close(fJvp(T.add(T.mul(u1, 2), u2)), values(T.add(T.mul(fJvp(u1), 2), fJvp(u2))));
  });
});

describe('valueAndGrad and grad options', () => {
  test('argnums: a number gives one gradient, a list gives a list', () => {
    T.tidy(() => {
      const a = f64([1, 2]), b = f64([3, -1]);
      const f = (p: T.Tensor, q: T.Tensor) => T.sum(T.mul(T.mul(p, p), q));
      close(AD.grad(f)(a, b), [6, -4]);
      close(AD.grad(f, { argnums: 1 })(a, b), [1, 4]);
      const [ga, gb] = AD.grad(f, { argnums: [0, 1] })(a, b) as T.Tensor[];
      close(ga, [6, -4]);
      close(gb, [1, 4]);
      const [value, [gb2]] = AD.valueAndGrad(f, { argnums: [1] })(a, b) as [T.Tensor, T.Tensor[]];
      close(value, [3 - 4]);
      close(gb2, [1, 4]);
    });
  });

  test('pytrees: nested objects and arrays in, the same structure out; other leaves pass through', () => {
    T.tidy(() => {
      const params = { layers: [{ w: f64([1, 2]), b: f64(0.5) }, { w: f64([-1, 1]), b: f64(0) }], scale: 3, name: 'mlp' };
      const x = f64([2, 3]);
      const f = (p: typeof params, input: T.Tensor) => {
        const [l0, l1] = p.layers;
        const h = T.add(T.sum(T.mul(l0.w, input)), l0.b);
        return T.mul(T.add(T.sum(T.mul(l1.w, input)), T.mul(l1.b, h)), p.scale);
      };
      const [value, [g, gx]] = AD.valueAndGrad(f, { argnums: [0, 1] })(params, x) as [T.Tensor, [typeof params, T.Tensor]];
      // h = 8.5, out = 3·(1 + 0·h) = 3
      close(value, [3]);
      expect(Object.keys(g)).toEqual(['layers', 'scale', 'name']);
      expect([g.scale, g.name]).toEqual([3, 'mlp']);
      close(g.layers[0].w, [0, 0]);
      close(g.layers[0].b, [0]);
      close(g.layers[1].w, [6, 9]);
      close(g.layers[1].b, [3 * 8.5]);
      close(gx, [-3, 3]);
    });
  });

  test('hasAux: aux comes back as it was computed, without tracers, and is not differentiated', () => {
    T.tidy(() => {
      const x = f64(xs);
      const f = (y: T.Tensor) => {
        const s = T.sum(T.square(y));
        return [s, { norm: T.sqrt(s), label: 'sq', parts: [T.mul(y, 2)] }];
      };
      const [g, aux] = AD.grad(f, { hasAux: true })(x) as [T.Tensor, { norm: T.Tensor; label: string; parts: T.Tensor[] }];
      close(g, xs.map((v) => 2 * v));
      expect(aux.label).toBe('sq');
      expect(aux.norm.trace).toBeNull();
      expect(aux.parts[0].trace).toBeNull();
      close(aux.norm, [Math.hypot(...xs)]);
      const [[value, aux2], g2] = AD.valueAndGrad(f, { hasAux: true })(x) as [[T.Tensor, { norm: T.Tensor }], T.Tensor];
      close(value, [xs.reduce((a, v) => a + v * v, 0)]);
      close(aux2.norm, [Math.hypot(...xs)]);
      close(g2, values(g));
    });
  });
});

describe('stopGradient', () => {
  test('cuts the derivative in both modes and at every level', () => {
    T.tidy(() => {
      const x = f64(xs);
      const f = (y: T.Tensor) => T.sum(T.mul(y, AD.stopGradient(y)));
      close(AD.grad(f)(x), xs);
      close(AD.jvp(f, [x], [T.onesLike(x)])[1], [xs.reduce((a, b) => a + b, 0)]);
      // Second order: d/dx Σ x·sg(x) = sg(x), whose derivative is 0.
      close(AD.grad((y: T.Tensor) => T.sum(AD.grad(f)(y)))(x), [0, 0, 0]);
      // Pytrees too.
      const tree = AD.stopGradient({ a: [x] });
      expect(tree.a[0]).toBe(x);
    });
  });
});

describe('custom rules', () => {
  test('customJvp: forward mode uses the rule; reverse mode differentiates f', () => {
    T.tidy(() => {
      const x = f64([-30, 0.5, 40]);
      const rule = vi.fn((primals: [T.Tensor], tangents: [T.Tensor]) => {
        const [p] = primals, [t] = tangents;
        return [T.softplus(p), T.mul(t, T.sigmoid(p))] as [T.Tensor, T.Tensor];
      });
      // The naive formula overflows at 40 in its derivative (exp(40)/(1+exp(40)) is fine, but say it were not).
      const softplus = AD.customJvp((p: T.Tensor) => T.log(T.add(T.exp(p), 1)), rule);
      const [out, tangent] = AD.jvp(softplus, [x], [f64([1, 2, 3])]);
      expect(rule).toHaveBeenCalledTimes(1);
      close(out, [-30, 0.5, 40].map((v) => Math.log1p(Math.exp(v))), 1e-10);
      close(tangent, [1, 2, 3].map((t, i) => t / (1 + Math.exp(-[-30, 0.5, 40][i]))));
      // A rule that doubles the tangent shows it is really the rule that answers.
      const doubled = AD.customJvp((p: T.Tensor) => T.sin(p), ([p], [t]) => [T.sin(p), T.mul(T.mul(t, T.cos(p)), 2)]);
      close(AD.jvp(doubled, [x], [T.onesLike(x)])[1], [-30, 0.5, 40].map((v) => 2 * Math.cos(v)));
      rule.mockClear();
      close(AD.grad((p: T.Tensor) => T.sum(softplus(p)))(f64([0.5])), [1 / (1 + Math.exp(-0.5))]);
      expect(rule).not.toHaveBeenCalled();
      // Outside any transform it is just f.
      close(softplus(f64([0])), [Math.log(2)]);
    });
  });

  test('customVjp: reverse mode uses fwd and bwd; forward mode differentiates f', () => {
    T.tidy(() => {
      const x = f64([1, -2]);
      const bwd = vi.fn((residual: T.Tensor, ct: T.Tensor) => [T.mul(T.mul(ct, residual), 10)]);
      // Gradient scaling: the value of 2x, a backward pass of 10·x·ct.
      const f = AD.customVjp((p: T.Tensor) => T.mul(p, 2), (p: T.Tensor) => [T.mul(p, 2), p] as [T.Tensor, T.Tensor], bwd);
      close(AD.grad((p: T.Tensor) => T.sum(f(p)))(x), [10, -20]);
      expect(bwd).toHaveBeenCalledTimes(1);
      close(AD.jvp(f, [x], [f64([1, 1])])[1], [2, 2]);
      close(f(x), [2, -4]);
    });
  });

  test('checkGrads accepts true rules and rejects wrong ones', async () => {
    const x = f64([0.3, -0.8, 1.1]);
    await checkGrads((y: T.Tensor) => T.sum(T.mul(T.tanh(y), y)), [x], { order: 2 });
    const wrongJvp = AD.customJvp((y: T.Tensor) => T.sin(y), ([y], [t]) => [T.sin(y), T.mul(t, T.sin(y))]);
    await expect(checkGrads(wrongJvp, [x], { modes: ['fwd'] })).rejects.toThrow(/JVP vs finite differences/);
    const wrongVjp = AD.customVjp((y: T.Tensor) => T.exp(y), (y: T.Tensor) => [T.exp(y), y] as [T.Tensor, T.Tensor], (y, ct) => [T.mul(ct, y)]);
    await expect(checkGrads(wrongVjp, [x], { modes: ['rev'] })).rejects.toThrow(/VJP inner product/);
    x.dispose();
  });
});

describe('symbolic zeros', () => {
  test('an argument without a tangent costs nothing: its rules never run', () => {
    T.tidy(() => {
      const x = f64([0.2, 0.4]), y = f64([1, 2]);
      const expJvp = vi.spyOn(T.primitives.exp, 'jvp');
      const sinJvp = vi.spyOn(T.primitives.sin, 'jvp');
      const f = (a: T.Tensor, b: T.Tensor) => T.add(T.sin(a), T.exp(b));
      const [, t] = AD.jvp(f, [x, y], [f64([1, -1]), null]);
      close(t, [Math.cos(0.2), -Math.cos(0.4)]);
      expect(sinJvp).toHaveBeenCalledTimes(1);
      expect(expJvp).not.toHaveBeenCalled();
      // Reverse mode: only the differentiated argument's path is taped.
      const expVjp = vi.spyOn(T.primitives.exp, 'vjp');
      close(AD.grad((a: T.Tensor, b: T.Tensor) => T.sum(f(a, b)))(x, y), [Math.cos(0.2), Math.cos(0.4)]);
      expect(expVjp).not.toHaveBeenCalled();
    });
  });

  test('a product with one tangent does one extra multiply and no addition', () => {
    T.tidy(() => {
      const x = f64([3]), y = f64([5]);
      const mulRuns = vi.spyOn(T.primitives.mul, 'abstract');
      const addRuns = vi.spyOn(T.primitives.add, 'abstract');
      const [out, t] = AD.jvp(T.mul, [x, y], [f64([1]), null]);
      close(out, [15]);
      close(t, [5]);
      // x·y for the primal and t·y for the tangent.
      expect(mulRuns).toHaveBeenCalledTimes(2);
      expect(addRuns).not.toHaveBeenCalled();
    });
  });

  test('all tangents absent: no tracer at all, zero tangents out', () => {
    T.tidy(() => {
      const x = f64([1, 2]);
      const f = (a: T.Tensor) => {
        expect(a.trace).toBeNull();
        return T.exp(a);
      };
      const [, t] = AD.jvp(f, [x], [null]);
      close(t, [0, 0]);
    });
  });
});

describe('outputs without tangents', () => {
  test('int32 and bool outputs have zero tangents of their own dtype and leave the tape', () => {
    T.tidy(() => {
      const x = f64([[0.1, 0.9, -0.3], [2, -1, 0.5]]);
      const [idx, tIdx] = AD.jvp((y: T.Tensor) => T.argmax(y, 1), [x], [T.onesLike(x)]);
      expect([idx.dtype, tIdx.dtype]).toEqual(['int32', 'int32']);
      expect(values(tIdx)).toEqual([0, 0]);
      const [, tMask] = AD.jvp((y: T.Tensor) => T.greater(y, 0), [x], [T.onesLike(x)]);
      expect(tMask.dtype).toBe('bool');
      expect(values(tMask)).toEqual([0, 0, 0, 0, 0, 0]);
      // In reverse mode the mask is a constant: d/dx Σ x·[x > 0] = [x > 0].
      const g = AD.grad((y: T.Tensor) => {
        const mask = T.greater(y, 0);
        expect(mask.trace).toBeNull();
        return T.sum(T.mul(y, T.cast(mask, 'float64')));
      })(x);
      close(g, [1, 1, 0, 1, 0, 1]);
      // Through a cast to int32 and back, nothing flows.
      close(AD.grad((y: T.Tensor) => T.sum(T.cast(T.cast(T.mul(y, 10), 'int32'), 'float64')))(x), [0, 0, 0, 0, 0, 0]);
    });
  });

  test('int32 inputs take no tangent', () => {
    T.tidy(() => {
      const i = T.tensor(Int32Array.from([1, 2]));
      const [, t] = AD.jvp((a: T.Tensor) => T.mul(a, 2), [i], [T.ones([2], { dtype: 'int32' })]);
      expect(values(t)).toEqual([0, 0]);
    });
  });
});

test('a tracer prints its shape, dtype and level', () => {
  T.tidy(() => {
    AD.jvp((y: T.Tensor) => {
      const s = String(T.exp(y));
      expect(s).toMatch(/^Tensor\(shape=\[2\], dtype=float64, traced at level \d+\)$/);
      return y;
    }, [f64([1, 2])], [f64([1, 1])]);
  });
});

describe('conventions at kinks (finite differences cannot see them, so they are pinned here)', () => {
  test('abs has derivative sign(x), 0 at 0; maximum and minimum split ties equally; relu′(0) = 0 as PyTorch and JAX', () => {
    T.tidy(() => {
      const x = f64([-1, 0, 2]);
      close(AD.grad((y: T.Tensor) => T.sum(T.abs(y)))(x), [-1, 0, 1]);
      close(AD.grad((y: T.Tensor) => T.sum(T.relu(y)))(x), [0, 0, 1]);
      close(AD.jvp((y: T.Tensor) => T.relu(y), [x], [f64([1, 1, 1])])[1], [0, 0, 1]);
      const [ga, gb] = AD.grad((a: T.Tensor, b: T.Tensor) => T.sum(T.maximum(a, b)), { argnums: [0, 1] })(f64([1, 2]), f64([1, 3])) as T.Tensor[];
      close(ga, [0.5, 0]);
      close(gb, [0.5, 1]);
      close(AD.jvp((a: T.Tensor) => T.minimum(a, f64([1, 1])), [f64([1, 0])], [f64([1, 1])])[1], [0.5, 1]);
    });
  });

  test('a max reduction shares the derivative among tied maxima', () => {
    T.tidy(() => {
      const x = f64([[3, 1, 3], [0, 2, 1]]);
      close(AD.grad((y: T.Tensor) => T.sum(T.max(y, 1)))(x), [0.5, 0, 0.5, 0, 1, 0]);
      close(AD.jvp((y: T.Tensor) => T.max(y, 1), [x], [f64([[1, 5, 3], [1, 1, 1]])])[1], [2, 1]);
    });
  });
});
