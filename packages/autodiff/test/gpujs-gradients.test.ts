/**
 * Derivatives on the float32 GPU.js backends (cpu, webasm; webgpu when an adapter answers)
 * against the float64 reference,
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
 * roundings of a rule (f'(x) computed, then multiplied). On webgpu, WGSL's built-in functions
 * are only as exact as its spec demands (sin/cos to 2^-11 absolute, atan to 4096 ulp, exp2 and
 * log2 to 3 ulp and 2^-21; see the forward tests), and the rules use them (d sin = cos, d atan =
 * 1/(1+x²), d pow = pow·log): their derivatives get that slack on top (WGSL_RULES), still far
 * below the O(1) error a wrong sign, factor or kernel makes.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import * as AD from '@scm/autodiff';
import { assertClose, float32Tolerance, type Tolerance } from '@scm/autodiff/testing';
import { opdb, type OpCase, type OpInfo } from '../../../test/opdb.js';
import { runs } from '../../../test/harness.js';
import { evaluate, programArb } from '../../../test/programs.js';
import { differentiable, directions, FLOAT64, flat, prepare, seedArb } from '../../../test/derivatives.js';

const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

const webgpu = await T.initWebGPU();
const backends: T.BackendName[] = ['cpu', 'webasm', ...(webgpu ? (['webgpu'] as const) : [])];
if (!webgpu) console.log('webgpu: no adapter here, so its derivatives are not checked');
const WGSL_RULES = { atol: 2 ** -9, rtol: 4096 * 2 ** -23 };

/** Read tensors back on any backend (webgpu reads back asynchronously only), then free them. */
async function readAll(ts: readonly T.Tensor[]): Promise<number[][]> {
  const out = await Promise.all(ts.map(async (t) => Array.from(await t.data())));
  T.dispose([...ts]);
  return out;
}

/** JVP tangents and VJP cotangents of an entry on a case, in a dtype on a backend. */
async function derivatives(op: OpInfo, c: OpCase, seed: number, opts: { dtype: 'float32' | 'float64'; backend: T.BackendName }) {
  const r = T.tidy(() => {
    const { primals, f } = prepare(op, c, opts);
    const u = directions(primals, seed);
    const [outs, tangents] = AD.jvp(f, primals, u) as [T.Tensor[], T.Tensor[]];
    const v = directions(outs, seed + 1);
    const cts = AD.vjp(f, ...primals)[1](v) as T.Tensor[];
    return { tangents, cts, outSize: outs.reduce((n, o) => Math.max(n, o.size), 1), inSizes: primals.map((p) => Math.max(1, p.size)) };
  });
  return { tangents: await readAll(r.tangents), cotangents: await readAll(r.cts), outSize: r.outSize, inSizes: r.inSizes };
}

function plus(t: Tolerance, extra?: { atol?: number; rtol?: number }): Tolerance {
  return extra ? { atol: t.atol + (extra.atol ?? 0), rtol: t.rtol + (extra.rtol ?? 0) } : t;
}

describe.each(backends)('%s (float32) against the float64 reference', (backend) => {
  test.each(differentiable(opdb, backend).map((e) => [e.name, e] as const))('%s: JVP and VJP', async (_name, op) => {
    await fc.assert(
      fc.asyncProperty(op.cases, seedArb, async (c, seed) => {
        const want = await derivatives(op, c, seed, { dtype: 'float64', backend: 'reference' });
        const got = await derivatives(op, c, seed, { dtype: 'float32', backend });
        const terms = op.terms?.(c) ?? 1;
        const slack = backend === 'webgpu' ? WGSL_RULES : undefined;
        const jvpTol = plus(plus(float32Tolerance({ terms: 2 * terms, termBound: 16, rtol: 2e-5 }), op.float32), slack);
        assertClose(flat(got.tangents), flat(want.tangents), { ...jvpTol, what: `${op.name} JVP on ${backend}` });
        const broadcastFactor = Math.max(...want.inSizes.map((n) => want.outSize / n));
        const vjpTerms = op.vjpTerms?.(c) ?? terms * Math.max(1, broadcastFactor);
        const vjpTol = plus(plus(float32Tolerance({ terms: vjpTerms, termBound: 16, rtol: 2e-5 }), op.float32), slack);
        got.cotangents.forEach((ct, k) => assertClose(ct, want.cotangents[k], { ...vjpTol, what: `${op.name} VJP of input ${k} on ${backend}` }));
      }),
      runs(backend === 'webgpu' ? 2 : 6),
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
        const grads = async (opts: { dtype: 'float32' | 'float64'; backend: T.BackendName }) => {
          const gs = T.tidy(() => {
            const xs = leaves.map((h) => T.fromArray(h.values, h.shape, opts));
            const f = (...a: T.Tensor[]) => evaluate(program, a);
            const [w] = directions([f(...xs)], seed);
            return AD.grad((...a: T.Tensor[]) => T.sum(T.mul(f(...a), w)), { argnums: xs.map((_, i) => i) })(...xs) as T.Tensor[];
          });
          return flat(await readAll(gs));
        };
        const want = await grads(FLOAT64 as { dtype: 'float64'; backend: 'reference' });
        const got = await grads({ dtype: 'float32', backend });
        const norm = Math.max(0, ...want.map(Math.abs));
        const err = Math.max(0, ...got.map((g, i) => Math.abs(g - want[i])));
        expect(err, `program ${program.text}`).toBeLessThanOrEqual(1e-3 * norm + 1e-6);
      }),
      runs(backend === 'webgpu' ? 5 : 25),
    );
  });
});
