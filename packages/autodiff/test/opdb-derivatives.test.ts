/**
 * First derivatives of every differentiable op-database entry, in float64 on the reference
 * backend, with fast-check cases (shapes, broadcasting, parameters, values in each op's
 * domain) and random directions u (tangents) and v (cotangents) uniform in [-1, 1]:
 *  - JVP: the primal is exactly f(x); the tangent matches central finite differences;
 *  - VJP: cotangents have the inputs' shapes and dtypes; ⟨Jᵀv, u⟩ matches ⟨v, FD(u)⟩;
 *  - the transpose identity ⟨v, J·u⟩ = ⟨Jᵀ·v, u⟩ between our two modes (no finite differences);
 *  - linearity of the JVP in u and of the VJP in v; zero and absent tangents give zero.
 * (The checks themselves are in test/derivatives.ts; checks-have-teeth.test.ts shows they fail
 * on wrong rules.)
 *
 * Tolerances. Finite differences use the 4-point stencil with h = 1e-3: truncation h⁴|f⁽⁵⁾|/30
 * and rounding ~1e-13·|f|/h stay below 1e-8 on the op domains (the worst is 1/x and x^-2 near
 * 0.25, |f⁽⁵⁾| ≈ 1e7 against |f'| ≈ 100), so FD checks use atol 1e-7, rtol 1e-6. The identities
 * between our own modes hold up to float64 rounding of sums of a few hundred terms: 1e-11
 * relative to the sum of absolute products. Per-op overrides (cast through float32) say why.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import * as AD from '@scm/autodiff';
import { toTensor } from '@scm/autodiff/testing';
import { opdb, runOp } from '../../../test/opdb.js';
import { runs } from '../../../test/harness.js';
import { checkJvpAgainstFd, checkLinearity, checkTransposeIdentity, checkVjpAgainstFd, differentiable, directions, FLOAT64, seedArb } from '../../../test/derivatives.js';

T.setBackend('reference');
const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

describe.each(differentiable(opdb).map((e) => [e.name, e] as const))('%s', (_name, op) => {
  test('jvp: exact primal, tangent of the output shape, matches finite differences', async () => {
    await fc.assert(fc.asyncProperty(op.cases, seedArb, async (c, seed) => checkJvpAgainstFd(op, c, seed)), runs(12));
  });

  test('vjp: cotangents shaped like the inputs, <Jᵀv, u> matches <v, FD(u)>', async () => {
    await fc.assert(fc.asyncProperty(op.cases, seedArb, async (c, seed) => checkVjpAgainstFd(op, c, seed)), runs(12));
  });

  test('transpose identity <v, J·u> = <Jᵀ·v, u> between jvp and vjp', async () => {
    await fc.assert(fc.asyncProperty(op.cases, seedArb, async (c, seed) => checkTransposeIdentity(op, c, seed)), runs(12));
  });

  test('linearity: J(a·u1 + b·u2) = a·J·u1 + b·J·u2 and likewise for Jᵀ; zero tangents give zero', async () => {
    await fc.assert(
      fc.asyncProperty(op.cases, seedArb, fc.constantFrom(-1.5, 0.5, 3), fc.constantFrom(-2, 0.25, 1), async (c, seed, a, b) => checkLinearity(op, c, seed, a, b)),
      runs(6),
    );
  });
});

// Entries with float inputs but no derivative (argmax, comparisons, casts to int32 and bool):
// their outputs carry zero tangents of their own dtype, and nothing flows back through them.
const withoutDerivative = opdb.filter((e) => e.diff.length === 0 && !e.backends);
describe.each(withoutDerivative.map((e) => [e.name, e] as const))('%s (no derivative)', (_name, op) => {
  test('zero tangents of the output dtype; zero cotangents for float inputs', async () => {
    await fc.assert(
      fc.asyncProperty(op.cases, seedArb, async (c, seed) => {
        T.tidy(() => {
          const args = c.inputs.map((h) => toTensor(h, FLOAT64));
          const floats = args.map((a, i) => i).filter((i) => T.isFloat(args[i].dtype));
          if (!floats.length) return;
          const f = (...p: T.Tensor[]) => {
            const all = [...args];
            floats.forEach((i, k) => (all[i] = p[k]));
            return runOp(op, all, c.params);
          };
          const primals = floats.map((i) => args[i]);
          const [outs, tangents] = AD.jvp(f, primals, directions(primals, seed)) as [T.Tensor[], T.Tensor[]];
          tangents.forEach((t, k) => {
            expect(t.dtype).toBe(outs[k].dtype);
            expect(Array.from(t.dataSync()).every((v) => v === 0)).toBe(true);
          });
          const g = AD.grad((...p: T.Tensor[]) => f(...p).map((o) => T.sum(T.cast(o, 'float64'))).reduce((a, b) => T.add(a, b)), { argnums: primals.map((_, i) => i) })(...primals) as T.Tensor[];
          g.forEach((gi) => expect(Array.from(gi.dataSync()).every((v) => v === 0)).toBe(true));
        });
      }),
      runs(6),
    );
  });
});
