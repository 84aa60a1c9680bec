/**
 * Second derivatives of every differentiable op-database entry, in float64 on the reference
 * backend. With s(x) = ⟨w, f(x)⟩ for a fixed random w, the Hessian-vector product H·u is
 * computed four ways, which must agree to rounding (1e-9 relative to the sum of absolute
 * entries), and against finite differences of the gradient (4-point stencil, atol 1e-7,
 * rtol 1e-6 as for first derivatives):
 *   forward-over-reverse  jvp(grad s)(x; u)          (and the library's hvp, which is that)
 *   reverse-over-forward  grad(x ↦ jvp(s)(x; u))
 *   reverse-over-reverse  grad(x ↦ ⟨grad s(x), u⟩)
 * The Hessian is symmetric: ⟨u2, H·u1⟩ = ⟨u1, H·u2⟩.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import * as AD from '@scm/autodiff';
import { assertClose, innerProduct, numericalJvp } from '@scm/autodiff/testing';
import { opdb, type OpInfo } from '../../../test/opdb.js';
import { runs } from '../../../test/harness.js';
import { differentiable, directions, expectCloseToScale, expectScaledClose, flat, hostDot, prepare, read, seedArb } from '../../../test/derivatives.js';

T.setBackend('reference');
const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

const AGREE = 1e-9;
const FD = { atol: 1e-7, rtol: 1e-6 };
const tolerance = (op: OpInfo) => ({ atol: Math.max(FD.atol, op.derivative?.atol ?? 0), rtol: Math.max(FD.rtol, op.derivative?.rtol ?? 0) });
const agreement = (op: OpInfo) => Math.max(AGREE, op.derivative?.rtol ?? 0);

describe.each(differentiable(opdb).map((e) => [e.name, e] as const))('%s', (_name, op) => {
  test('HVP: forward-over-reverse = reverse-over-forward = reverse-over-reverse = hvp ≈ FD of the gradient; H symmetric', async () => {
    await fc.assert(
      fc.asyncProperty(op.cases, seedArb, async (c, seed) => {
        T.tidy(() => {
          const { primals, f } = prepare(op, c);
          const w = directions(f(...primals), seed + 5);
          const s = (...p: T.Tensor[]) => innerProduct(w, f(...p));
          const argnums = primals.map((_, i) => i);
          const gradS = AD.grad(s, { argnums });
          const u = directions(primals, seed);

          const fwdRev = AD.jvp((...p: T.Tensor[]) => gradS(...p), primals, u)[1] as T.Tensor[];
          const revFwd = AD.grad((...p: T.Tensor[]) => AD.jvp(s, p, u)[1], { argnums })(...primals) as T.Tensor[];
          const revRev = AD.grad((...p: T.Tensor[]) => innerProduct(gradS(...p) as T.Tensor[], u), { argnums })(...primals) as T.Tensor[];
          const library = AD.hvp(s, primals, u) as T.Tensor[];
          fwdRev.forEach((h, k) => expect(h.shape).toEqual(primals[k].shape));

          const ref = flat(read(fwdRev));
          const scale = ref.map(Math.abs);
          expectCloseToScale('reverse-over-forward vs forward-over-reverse', flat(read(revFwd)), ref, scale, agreement(op), 1e-12);
          expectCloseToScale('reverse-over-reverse vs forward-over-reverse', flat(read(revRev)), ref, scale, agreement(op), 1e-12);
          expect(flat(read(library)), 'hvp is forward-over-reverse').toEqual(ref);

          const fd = numericalJvp((...p: T.Tensor[]) => gradS(...p), primals, u, { eps: op.fdStep?.h ?? 1e-3 });
          assertClose(ref, flat(read(fd)), { ...tolerance(op), what: 'HVP vs finite differences of the gradient' });

          const u2 = directions(primals, seed + 9);
          const hu2 = AD.jvp((...p: T.Tensor[]) => gradS(...p), primals, u2)[1] as T.Tensor[];
          const a = hostDot(read(u2), read(fwdRev));
          const b = hostDot(read(u), read(hu2));
          expectScaledClose('<u2, H·u1> vs <u1, H·u2>', a.value, b.value, a.scale + b.scale + 1e-300, agreement(op));
        });
      }),
      runs(6),
    );
  });
});
