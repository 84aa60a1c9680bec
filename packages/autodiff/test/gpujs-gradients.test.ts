/**
 * Derivatives on the float32 GPU.js backends (cpu, webasm) against the float64 reference,
 * computed by the same algorithm (JVP and VJP of every differentiable op-database entry, and
 * gradients of random programs) on the same inputs and directions, all exact in float32.
 * Finite differences are useless in float32 (≈1e-5 relative at best), so float32 derivatives
 * are checked against float64 ones, never against FD.
 *
 * Tolerances: float32Tolerance with the length of the longest sum behind one element: 2k for
 * a JVP (the tangent of a bilinear op is two products of length k), and for a VJP the forward
 * length times the broadcast factor (cotangents of broadcast inputs are summed), or the op's
 * own `vjpTerms` (matmul, convolutions, take). Terms are bounded by 16 (derivatives of the op
 * domains, e.g. 1/x² at x ≥ 1/4, times cotangents in [-1, 1]); rtol 2e-5 for the few float32
 * roundings of a rule (f'(x) computed, then multiplied).
 */
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import * as AD from '@scm/autodiff';
import { assertClose, float32Tolerance, type Tolerance } from '@scm/autodiff/testing';
import { opdb, type OpCase, type OpInfo } from '../../../test/opdb.js';
import { runs } from '../../../test/harness.js';
import { evaluate, programArb } from '../../../test/programs.js';
import { differentiable, directions, FLOAT64, flat, prepare, read, seedArb } from '../../../test/derivatives.js';

const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

const backends = ['cpu', 'webasm'] as const;

/** JVP tangents and VJP cotangents of an entry on a case, in a dtype on a backend. */
function derivatives(op: OpInfo, c: OpCase, seed: number, opts: { dtype: 'float32' | 'float64'; backend: T.BackendName }) {
  return T.tidy(() => {
    const { primals, f } = prepare(op, c, opts);
    const u = directions(primals, seed);
    const [outs, tangents] = AD.jvp(f, primals, u) as [T.Tensor[], T.Tensor[]];
    const v = directions(outs, seed + 1);
    const cts = AD.vjp(f, ...primals)[1](v) as T.Tensor[];
    return { tangents: read(tangents), cotangents: read(cts), outSize: outs.reduce((n, o) => Math.max(n, o.size), 1), inSizes: primals.map((p) => Math.max(1, p.size)) };
  });
}

function plus(t: Tolerance, extra?: { atol?: number; rtol?: number }): Tolerance {
  return extra ? { atol: t.atol + (extra.atol ?? 0), rtol: t.rtol + (extra.rtol ?? 0) } : t;
}

describe.each(backends)('%s (float32) against the float64 reference', (backend) => {
  test.each(differentiable(opdb, backend).map((e) => [e.name, e] as const))('%s: JVP and VJP', async (_name, op) => {
    await fc.assert(
      fc.asyncProperty(op.cases, seedArb, async (c, seed) => {
        const want = derivatives(op, c, seed, { dtype: 'float64', backend: 'reference' });
        const got = derivatives(op, c, seed, { dtype: 'float32', backend });
        const terms = op.terms?.(c) ?? 1;
        const jvpTol = plus(float32Tolerance({ terms: 2 * terms, termBound: 16, rtol: 2e-5 }), op.float32);
        assertClose(flat(got.tangents), flat(want.tangents), { ...jvpTol, what: `${op.name} JVP on ${backend}` });
        const broadcastFactor = Math.max(...want.inSizes.map((n) => want.outSize / n));
        const vjpTerms = op.vjpTerms?.(c) ?? terms * Math.max(1, broadcastFactor);
        const vjpTol = plus(float32Tolerance({ terms: vjpTerms, termBound: 16, rtol: 2e-5 }), op.float32);
        got.cotangents.forEach((ct, k) => assertClose(ct, want.cotangents[k], { ...vjpTol, what: `${op.name} VJP of input ${k} on ${backend}` }));
      }),
      runs(6),
    );
  });

  /**
   * Random programs chain up to six ops, so float32 errors compound through the chain's
   * condition number; the check is normwise: ‖g32 − g64‖∞ ≤ 1e-3·‖g64‖∞ (about 2·10⁴
   * roundoffs), which a wrong rule or a wrong kernel (errors of the order of the gradient)
   * exceeds by far.
   */
  test('gradients of random programs', async () => {
    await fc.assert(
      fc.asyncProperty(programArb, seedArb, async ({ program, leaves }, seed) => {
        const grads = (opts: { dtype: 'float32' | 'float64'; backend: T.BackendName }) =>
          T.tidy(() => {
            const xs = leaves.map((h) => T.fromArray(h.values, h.shape, opts));
            const f = (...a: T.Tensor[]) => evaluate(program, a);
            const [w] = directions([f(...xs)], seed);
            return flat(read(AD.grad((...a: T.Tensor[]) => T.sum(T.mul(f(...a), w)), { argnums: xs.map((_, i) => i) })(...xs) as T.Tensor[]));
          });
        const want = grads(FLOAT64 as { dtype: 'float64'; backend: 'reference' });
        const got = grads({ dtype: 'float32', backend });
        const norm = Math.max(0, ...want.map(Math.abs));
        const err = Math.max(0, ...got.map((g, i) => Math.abs(g - want[i])));
        expect(err, `program ${program.text}`).toBeLessThanOrEqual(1e-3 * norm + 1e-6);
      }),
      runs(25),
    );
  });
});
