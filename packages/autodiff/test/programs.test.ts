/**
 * Random programs (test/programs.ts: 2 to 6 smooth ops with reuse of intermediates and
 * broadcast side inputs), differentiated in float64 on the reference backend with respect to
 * all their inputs, and checked the same way as single ops: JVP against finite differences,
 * VJP through the inner-product identity, ⟨v, J·u⟩ = ⟨Jᵀ·v, u⟩ between our modes, and the
 * Hessian-vector product (forward-over-reverse) against reverse-over-reverse and against
 * finite differences of the gradient. These catch bookkeeping errors that single-op checks
 * cannot see: cotangents summed over fan-out, residuals kept for the right node.
 *
 * Composed values vary in magnitude (squares of sums, exponentials), so finite-difference
 * comparisons are normwise: ‖a − b‖∞ ≤ 1e-6·‖b‖∞ + 1e-9 (the 4-point stencil is good to about
 * 1e-9 relative here); identities between our own modes use 1e-10 relative to the sum of
 * absolute products.
 */
import fc from 'fast-check';
import { afterAll, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import * as AD from '@scm/autodiff';
import { innerProduct, numericalJvp } from '@scm/autodiff/testing';
import { evaluate, programArb, type ProgramCase } from '../../../test/programs.js';
import { runs } from '../../../test/harness.js';
import { directions, expectScaledClose, FLOAT64, flat, hostDot, read, seedArb } from '../../../test/derivatives.js';

T.setBackend('reference');
const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

function expectNormClose(what: string, got: number[], want: number[], rtol = 1e-6, atol = 1e-9): void {
  const norm = Math.max(0, ...want.map(Math.abs));
  const err = Math.max(0, ...got.map((g, i) => Math.abs(g - want[i])));
  if (!(err <= rtol * norm + atol) || got.length !== want.length) throw new Error(`${what}: max |difference| ${err} > ${rtol} × ${norm} + ${atol}`);
}

function setup({ program, leaves }: ProgramCase) {
  const inputs = leaves.map((h) => T.fromArray(h.values, h.shape, FLOAT64));
  const f = (...xs: T.Tensor[]) => evaluate(program, xs);
  return { inputs, f };
}

test('programs: finite output, JVP vs finite differences, VJP vs finite differences, transpose identity', async () => {
  await fc.assert(
    fc.asyncProperty(programArb, seedArb, async (pc, seed) => {
      T.tidy(() => {
        const { inputs, f } = setup(pc);
        const out = f(...inputs);
        expect(Array.from(out.dataSync()).every(Number.isFinite), 'the program has a finite value').toBe(true);
        const u = directions(inputs, seed);
        const [primal, ju] = AD.jvp(f, inputs, u) as [T.Tensor, T.Tensor];
        expect(Array.from(primal.dataSync())).toEqual(Array.from(out.dataSync()));
        const [fd] = numericalJvp(f, inputs, u);
        expectNormClose('JVP vs finite differences', Array.from(ju.dataSync()), Array.from(fd.dataSync()));

        const [, vjpFn] = AD.vjp(f, ...inputs);
        const [v] = directions([out], seed + 1);
        const cts = vjpFn(v) as T.Tensor[];
        cts.forEach((c, k) => expect(c.shape).toEqual(inputs[k].shape));
        const viaVjp = hostDot(read(cts), read(u));
        const viaFd = hostDot(read([v]), read([fd]));
        const viaJvp = hostDot(read([v]), read([ju]));
        // Plus the rounding floor of the finite differences, ~1e-13·|f|/h per output element.
        const floor = 1e-9 * read([v])[0].reduce((acc, vi, i) => acc + Math.abs(vi) * (1 + Math.abs(read([out])[0][i])), 0);
        expectScaledClose('<Jᵀv, u> vs <v, FD(u)>', viaVjp.value, viaFd.value, 1, 1e-6 * (viaVjp.scale + viaFd.scale) + floor);
        // Rounding is relative to intermediate terms, which may cancel (sin(x²) − x² at small x):
        // an absolute floor of 1e-12·Σ|v|·Σ|u| covers that; a wrong rule errs by O(the terms).
        const sumAbs = (ts: T.Tensor[]) => flat(read(ts)).reduce((a, b) => a + Math.abs(b), 0);
        expectScaledClose('<Jᵀv, u> vs <v, J·u>', viaVjp.value, viaJvp.value, 1, 1e-10 * (viaVjp.scale + viaJvp.scale) + 1e-12 * sumAbs([v]) * sumAbs(u));
      });
    }),
    runs(150),
  );
});

test('programs: HVP forward-over-reverse = reverse-over-reverse ≈ finite differences of the gradient', async () => {
  await fc.assert(
    fc.asyncProperty(programArb, seedArb, async (pc, seed) => {
      T.tidy(() => {
        const { inputs, f } = setup(pc);
        const [w] = directions([f(...inputs)], seed + 5);
        const s = (...xs: T.Tensor[]) => T.sum(T.mul(f(...xs), w));
        const argnums = inputs.map((_, i) => i);
        const gradS = AD.grad(s, { argnums });
        const u = directions(inputs, seed);
        const fwdRev = flat(read(AD.jvp((...xs: T.Tensor[]) => gradS(...xs), inputs, u)[1] as T.Tensor[]));
        const revRev = flat(read(AD.grad((...xs: T.Tensor[]) => innerProduct(gradS(...xs) as T.Tensor[], u), { argnums })(...inputs) as T.Tensor[]));
        expectNormClose('reverse-over-reverse vs forward-over-reverse', revRev, fwdRev, 1e-10, 1e-12);
        const fd = flat(read(numericalJvp((...xs: T.Tensor[]) => gradS(...xs), inputs, u)));
        expectNormClose('HVP vs finite differences of the gradient', fwdRev, fd, 1e-6, 1e-8);
      });
    }),
    runs(60),
  );
});
