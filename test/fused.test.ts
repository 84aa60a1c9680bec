/**
 * Fused elementwise kernels (`fuse`): that they fuse (kernel calls and full-size
 * intermediates counted on the backend), that their programs stay small (shared
 * subexpressions, folded zeros and ones), that derivatives are fused too, wide programs are
 * split, memory returns to its baseline, and bad input is named. Their values and
 * derivatives are checked against the float64 reference by the op database's entries
 * (`fuse.*`, `silu`) like every other op.
 */
import { afterEach, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { grad, jvp } from '@scm/autodiff';
import { groupNorm } from '@scm/nn';
import { trace } from '../packages/tensor/src/primitives/fused.js';

/** Runs `fn` and returns the primitives the backend ran, with their output sizes. */
function kernelCalls(backend: T.BackendName, fn: () => void): { name: string; size: number }[] {
  const be = T.getBackendInstance(backend);
  const run = be.run.bind(be);
  const calls: { name: string; size: number }[] = [];
  be.run = (prim, inputs, avals, params, out) => {
    calls.push({ name: prim.name, size: T.sizeOf(out.shape) });
    return run(prim, inputs, avals, params, out);
  };
  try {
    T.tidy(() => {
      fn();
    });
  } finally {
    be.run = run;
  }
  return calls;
}

const before = T.memory();
afterEach(() => expect(T.memory()).toEqual(before));

describe.each(['reference', 'webasm'] as const)('on %s', (backend) => {
  const x = () => T.random.normal(T.random.key(1), [2, 8, 4, 4], { backend });

  test('silu is one kernel; its JVP one more; its gradient one for the cotangent', () => {
    expect(kernelCalls(backend, () => T.silu(x())).filter((c) => c.name !== 'normal' && c.size === 256).map((c) => c.name)).toEqual(['fused']);
    const input = T.keep(x());
    try {
      expect(kernelCalls(backend, () => jvp(T.silu, [input], [T.onesLike(input)])).map((c) => c.name).filter((n) => n === 'fused')).toHaveLength(2);
      const backward = kernelCalls(backend, () => grad((v: T.Tensor) => T.sum(T.silu(v)))(input));
      expect(backward.filter((c) => c.size === 256).map((c) => c.name)).toEqual(['fused', 'broadcastTo', 'fused']);
    } finally {
      input.dispose();
    }
  });

  test('groupNorm with scale, shift and SiLU: two full-size kernels forward (the normalization, SiLU)', () => {
    const input = T.keep(x());
    const [w, b, s, h] = [8, 8, 16, 16].map((n, k) => T.keep(T.random.normal(T.random.key(10 + k), n === 8 ? [8] : [2, 8], { backend })));
    try {
      const calls = kernelCalls(backend, () => groupNorm(input, 4, w, b, 1e-5, { scale: s, shift: h, silu: true }));
      expect(calls.filter((c) => c.size === input.size).map((c) => c.name)).toEqual(['fused', 'fused']);
      expect(calls.map((c) => c.name)).toContain('fusedSum');
      // The same value as the op-by-op composition.
      const fusedY = T.tidy(() => groupNorm(input, 4, w, b, 1e-5, { scale: s, shift: h, silu: true }));
      const plainY = T.tidy(() => {
        const xg = T.reshape(input, [2, 4, -1]);
        const m = T.mean(xg, 2, true);
        const c = T.sub(xg, m);
        const xhat = T.reshape(T.mul(c, T.rsqrt(T.add(T.mean(T.mul(c, c), 2, true), 1e-5))), input.shape);
        const col = (v: T.Tensor, n: number) => T.reshape(v, [n, 8, 1, 1]);
        const y = T.add(T.mul(T.add(T.mul(xhat, col(w, 1)), col(b, 1)), col(s, 2)), col(h, 2));
        return T.mul(y, T.sigmoid(y));
      });
      const [a, c] = [fusedY.dataSync(), plainY.dataSync()];
      // Float32 either way: the fused kernel rounds once where the chain rounds after each op.
      for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(c[i], 5);
      T.dispose([fusedY, plainY]);
    } finally {
      T.dispose([input, w, b, s, h]);
    }
  });

  test("a broadcast input's cotangent is summed in the kernel that computes it (fusedSum), with no full-size intermediate", () => {
    const input = T.keep(x());
    const w = T.keep(T.random.normal(T.random.key(3), [8, 1, 1], { backend }));
    try {
      const calls = kernelCalls(backend, () => grad((v: T.Tensor) => T.sum(T.fuse((a, b) => a.mul(b).tanh(), [input, v])))(w));
      expect(calls.filter((c) => c.size === input.size).map((c) => c.name)).toEqual(['fused', 'broadcastTo']);
      expect(calls.filter((c) => c.name === 'fusedSum').map((c) => c.size)).toEqual([8]);
    } finally {
      T.dispose([input, w]);
    }
  });

  test('fuseSum: one kernel, the value of the sum of the chain', () => {
    T.tidy(() => {
      const a = T.tensor([[0, 1, 2], [3, 4, 5]], { backend });
      const m = T.tensor([[1], [4]], { backend });
      const calls = kernelCalls(backend, () => T.fuseSum((p, q) => p.sub(q).square(), [a, m], 1, true));
      expect(calls.map((c) => c.name)).toEqual(['fusedSum']);
      const v = T.fuseSum((p, q) => p.sub(q).square(), [a, m], 1);
      expect(v.shape).toEqual([2]);
      expect([...v.dataSync()]).toEqual([2, 2]);
      expect([...T.fuseSum((p) => p, [a]).dataSync()]).toEqual([15]);
    });
  });

  test('a program wider than one kernel allows is split, with the same value', () => {
    const inputs = Array.from({ length: 10 }, (_, k) => T.keep(T.full([3], k + 1, { backend })));
    try {
      const calls = kernelCalls(backend, () => T.fuse((...v) => v.reduce((acc, e) => acc.add(e.square())), inputs));
      expect(calls.filter((c) => c.name === 'fused').length).toBeGreaterThan(1);
      // Its operands are intermediates, freed by tidy like those of any composite op.
      T.tidy(() => {
        const y = T.fuse((...v) => v.reduce((acc, e) => acc.add(e.square())), inputs);
        expect([...y.dataSync()]).toEqual([385, 385, 385]);
      });
    } finally {
      T.dispose(inputs);
    }
  });

  test('constants, integer inputs and broadcasting', () => {
    T.tidy(() => {
      const i = T.tensor([1, 2, 3], { dtype: 'int32', backend });
      const c = T.fuse(() => 2.5, [i]);
      expect(c.dtype).toBe('float32');
      expect([...c.dataSync()]).toEqual([2.5, 2.5, 2.5]);
      const y = T.fuse((a, b) => a.mul(b).add(1), [T.reshape(i, [3, 1]), T.tensor([10, 20], { backend })]);
      expect(y.shape).toEqual([3, 2]);
      expect([...y.dataSync()]).toEqual([11, 21, 21, 41, 31, 61]);
    });
  });
});

describe('programs', () => {
  test('repeated subexpressions are computed once; zeros and ones fold away', () => {
    expect(trace((x) => x.mul(x.sigmoid()).add(x.mul(x.sigmoid())), 1)).toEqual([['in', 0], ['sigmoid', 0], ['mul', 0, 1], ['add', 2, 2]]);
    expect(trace((x) => x.mul(1).add(0).sub(x.mul(0)), 1)).toEqual([['in', 0]]);
    expect(trace((x) => x.neg().neg(), 1)).toEqual([['in', 0]]);
    expect(trace(() => 2, 1)).toEqual([['const', 2]]);
    expect(trace((x) => x.mul(-0).add(x.mul(0)), 1)).toEqual([['const', 0]]);
    expect(trace((x) => x.add(1).div(-0).sub(x.add(1).div(0)), 1).filter((c) => c[0] === 'const')).toEqual([['const', 1], ['const', -0], ['const', 0]]);
  });

  test('the derivative of a program is a small program', () => {
    // d/dx silu: the JVP kernel of silu reads x and its tangent and nothing else.
    const input = T.tensor([0.5, -1]);
    const calls: unknown[] = [];
    const be = T.getBackendInstance('webasm');
    const run = be.run.bind(be);
    be.run = (prim, inputs, avals, params, out) => {
      if (prim.name === 'fused') calls.push((params as { code: unknown[] }).code);
      return run(prim, inputs, avals, params, out);
    };
    try {
      T.tidy(() => {
        jvp(T.silu, [input], [T.onesLike(input)]);
      });
    } finally {
      be.run = run;
      input.dispose();
    }
    const tangentProgram = calls[1] as unknown[][];
    expect(tangentProgram.filter((c) => c[0] === 'in')).toEqual([['in', 0], ['in', 1]]);
    expect(tangentProgram.length).toBeLessThanOrEqual(10);
  });

  test('bad input is named', () => {
    T.tidy(() => {
      const x = T.tensor([1, 2]);
      expect(() => T.fuse('x' as never, [x])).toThrow(/fuse: expected a function/);
      expect(() => T.fuse((a) => a, [])).toThrow(/fuse: expected a non-empty list of Tensors/);
      expect(() => T.fuse(() => 'y' as never, [x])).toThrow(/fuse: the function must return an Expr/);
      expect(() => T.fuse((a, b) => a.add(b), [x, T.zeros([3])])).toThrow(/fuse: shapes do not broadcast.*\[2\], \[3\]/);
      expect(() => T.fuseSum((a) => a, [x], 1)).toThrow(/fuseSum: axis 1 is out of range for a tensor of rank 1/);
      expect(() => T.bind(T.primitives.fusedSum, [x], { code: [['in', 0]], grid: [3], axes: [0] })).toThrow(/fusedSum: .*broadcast/);
      expect(() => T.bind(T.primitives.fused, [x], { code: [['in', 1]] })).toThrow(/fused: instruction 0 reads input 1, but there are 1 inputs/);
      expect(() => T.bind(T.primitives.fused, [x], { code: [['in', 0], ['erfc', 0]] })).toThrow(/fused: instruction 1: unknown op "erfc"/);
      expect(() => T.bind(T.primitives.fused, [x], { code: [['in', 0], ['add', 0, 1]] })).toThrow(/fused: instruction 1 \(add\) must refer to earlier instructions/);
      expect(() => T.bind(T.primitives.fused, [T.tensor([1], { dtype: 'int32' })], { code: [['in', 0]] })).toThrow(/fused: inputs must share one float dtype, got int32/);
    });
  });
});
