import { describe, expect, test } from 'vitest';
import { grad, treeMap } from '@scm/autodiff';
import { Tensor, dispose, memory, random, type Shape } from '@scm/tensor';
import {
  Conv2d, Linear, Module, childCtx, getChild, getParam, init, initSpec, namedParameters, namedSpecs, param, parameterCount, summary,
  type Ctx, type Params, type SpecTree,
} from '@scm/nn';

const f64 = { dtype: 'float64', backend: 'reference' } as const;

/** A two-layer perceptron written against the Module API, as a user would. */
class TwoLayer extends Module {
  readonly l1 = new Linear(3, 5);
  readonly l2 = new Linear(5, 2, { bias: false });
  spec(): SpecTree {
    return { layers: [this.l1.spec(), this.l2.spec()], scale: param([1], init.ones()) };
  }
  apply(params: Params, x: Tensor, _ctx?: Ctx): Tensor {
    const layers = params.layers as Params[];
    return this.l2.apply(layers[1], this.l1.apply(layers[0], x).relu()).mul(getParam(params, 'scale', 'TwoLayer', [1]));
  }
}

describe('parameters as pytrees', () => {
  test('namedParameters: dotted names in declaration order, array elements by index', () => {
    const m = new TwoLayer();
    const p = m.init(random.key(0), f64);
    expect(namedParameters(p).map(([n, t]) => [n, t.shape])).toEqual([
      ['layers.0.weight', [5, 3]], ['layers.0.bias', [5]], ['layers.1.weight', [2, 5]], ['scale', [1]],
    ]);
    expect(namedSpecs(m.spec()).map(([n]) => n)).toEqual(namedParameters(p).map(([n]) => n));
    expect(parameterCount(p)).toBe(15 + 5 + 10 + 1);
    expect(m.parameterCount()).toBe(31);
    expect(parameterCount(m)).toBe(31);
    dispose(p);
  });

  test('summary lists names, shapes, counts and the total', () => {
    const text = new TwoLayer().summary();
    expect(text).toContain('TwoLayer');
    expect(text).toMatch(/layers\.0\.weight\s+\[5, 3\]\s+15/);
    expect(text).toMatch(/total\s+4 tensors\s+31/);
    const p = new Conv2d(64, 64, 3).init(random.key(0), f64);
    expect(summary(p)).toMatch(/weight\s+\[64, 64, 3, 3\]\s+36,864/);
    dispose(p);
  });

  test('parameters go straight through grad, and the gradient has the same structure', async () => {
    const m = new TwoLayer();
    const p = m.init(random.key(1), f64);
    const x = random.normal(random.key(2), [4, 3], f64);
    const g = grad((pp: Params) => m.apply(pp, x).square().sum())(p) as Params;
    expect(namedParameters(g).map(([n, t]) => [n, t.shape])).toEqual(namedParameters(p).map(([n, t]) => [n, t.shape]));
    dispose([p, x, g]);
  });

  test('init is deterministic per key, and each parameter depends only on the key and its own name', async () => {
    const m = new TwoLayer();
    const [a, b, c] = [m.init(random.key(3), f64), m.init(random.key(3), f64), m.init(random.key(4), f64)];
    const vals = async (p: Params) => Promise.all(namedParameters(p).map(async ([, t]) => Array.from(await t.data())));
    expect(await vals(a)).toEqual(await vals(b));
    expect((await vals(a))[0]).not.toEqual((await vals(c))[0]);
    // The same layer under the same name in another model gets the same initial values.
    const alone = initSpec({ layers: [new Linear(3, 5).spec()] }, random.key(3), f64);
    expect(Array.from(await ((alone.layers as Params[])[0].weight as Tensor).data())).toEqual((await vals(a))[0]);
    dispose([a, b, c, alone]);
  });

  test('errors: missing parameters, wrong shapes, dotted names, bad dimensions', () => {
    const m = new TwoLayer();
    const p = m.init(random.key(0), f64);
    expect(() => getParam(p, 'nope', 'TwoLayer')).toThrow(/TwoLayer: missing parameter "nope" \(has: layers, scale\)/);
    expect(() => getParam(p, 'scale', 'TwoLayer', [2])).toThrow(/parameter "scale" has the wrong shape: expected \[2\]/);
    expect(() => getChild(p, 'scale', 'TwoLayer')).toThrow(/missing parameters of submodule "scale"/);
    expect(() => namedParameters({ 'a.b': p.scale })).toThrow(/must not contain a dot/);
    expect(() => namedParameters({ a: 3 as unknown as Tensor })).toThrow(/"a" is neither a parameter/);
    expect(() => param([2, 0], init.zeros())).toThrow(/positive integers/);
    dispose(p);
  });

  test('childCtx derives a distinct key per name and keeps train; no key stays no key', () => {
    const ctx = { train: true, key: random.key(5) };
    const a = childCtx(ctx, 'a')!, b = childCtx(ctx, 'b')!;
    expect(a.train).toBe(true);
    expect(a.key!.toJSON()).not.toEqual(b.key!.toJSON());
    expect(childCtx(ctx, 'a')!.key!.toJSON()).toEqual(a.key!.toJSON());
    expect(childCtx({ train: false }, 'a')).toEqual({ train: false });
    expect(childCtx(undefined, 'a')).toBeUndefined();
  });
});

describe('initializers', () => {
  const draw = async (ini: init.Initializer, shape: Shape) => {
    const t = ini(random.key(9), shape, f64);
    const v = Array.from(await t.data());
    t.dispose();
    return v;
  };
  const stats = (v: number[]) => {
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    return { mean, std: Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length), max: Math.max(...v.map(Math.abs)) };
  };

  test('fans follow PyTorch: [out, in, kh, kw]', () => {
    expect(init.fans([64, 32, 3, 3])).toEqual({ fanIn: 288, fanOut: 576 });
    expect(init.fans([10, 20])).toEqual({ fanIn: 20, fanOut: 10 });
    expect(init.fans([7])).toEqual({ fanIn: 7, fanOut: 7 });
  });

  test('uniform initializers stay within their bound and fill it; normal ones have the right std', async () => {
    const shape = [64, 32, 3, 3]; // fanIn 288, fanOut 576, 18432 draws
    const cases: [init.Initializer, number, 'uniform' | 'normal'][] = [
      [init.kaimingUniform(), Math.SQRT2 * Math.sqrt(3 / 288), 'uniform'],
      [init.kaimingNormal(), Math.SQRT2 / Math.sqrt(288), 'normal'],
      [init.kaimingNormal({ mode: 'fanOut', gain: 1 }), 1 / Math.sqrt(576), 'normal'],
      [init.xavierUniform(), Math.sqrt(6 / 864), 'uniform'],
      [init.xavierNormal({ gain: 2 }), 2 * Math.sqrt(2 / 864), 'normal'],
      [init.edm('xavier_uniform', 1e-5), 1e-5 * Math.sqrt(6 / 864), 'uniform'],
      [init.edm('xavier_uniform', Math.sqrt(0.2)), Math.sqrt(0.2) * Math.sqrt(6 / 864), 'uniform'],
      [init.edm('kaiming_uniform'), Math.sqrt(3 / 288), 'uniform'],
      [init.edm('kaiming_normal'), Math.sqrt(1 / 288), 'normal'],
      [init.edm('xavier_normal'), Math.sqrt(2 / 864), 'normal'],
    ];
    for (const [ini, scale, kind] of cases) {
      const s = stats(await draw(ini, shape));
      expect(Math.abs(s.mean)).toBeLessThan(0.03 * scale);
      if (kind === 'uniform') {
        expect(s.max).toBeLessThanOrEqual(scale);
        expect(s.max).toBeGreaterThan(0.99 * scale);
        expect(Math.abs(s.std / (scale / Math.sqrt(3)) - 1)).toBeLessThan(0.03);
      } else {
        expect(Math.abs(s.std / scale - 1)).toBeLessThan(0.03);
      }
    }
  });

  test('constants, dtype and backend options, errors', async () => {
    expect(await draw(init.zeros(), [3])).toEqual([0, 0, 0]);
    expect(await draw(init.constant(2.5), [2])).toEqual([2.5, 2.5]);
    const t = init.xavierUniform()(random.key(0), [2, 2], { dtype: 'float32', backend: 'webasm' });
    expect([t.dtype, t.backend.name]).toEqual(['float32', 'webasm']);
    t.dispose();
    expect(() => init.edm('lecun' as never)(random.key(0), [2, 2])).toThrow(/init.edm: unknown mode "lecun"/);
    expect(() => init.kaimingUniform({ gain: -1 })).toThrow(/must be a finite non-negative number/);
  });

  test('initializing and disposing leaves no tensors behind', () => {
    const before = memory();
    const p = new TwoLayer().init(random.key(0), f64);
    dispose(treeMap(p, (t) => t));
    expect(memory()).toEqual(before);
  });
});

describe('memory', () => {
  test('apply, called outside any scope, leaves only its result (its layers\u2019 intermediates are freed)', () => {
    const m = new TwoLayer();
    const p = m.init(random.key(1), f64);
    const x = random.normal(random.key(2), [4, 3], f64);
    const before = memory();
    const y = m.apply(p, x);
    expect(memory()).toEqual({ tensors: before.tensors + 1, buffers: before.buffers + 1 });
    dispose([y, p, x]);
  });
});
