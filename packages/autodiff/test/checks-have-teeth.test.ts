/**
 * The checks can fail: with a derivative rule or a kernel deliberately broken (and restored
 * afterwards), the same properties the suites run must reject. A check that passes whatever
 * the rules say would prove nothing.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, test, vi } from 'vitest';
import * as T from '@scm/tensor';
import { assertClose, float32Tolerance } from '@scm/autodiff/testing';
import { opInfo } from '../../../test/opdb.js';
import { float32Outputs, referenceOutputs, runs } from '../../../test/harness.js';
import { checkJvpAgainstFd, checkTransposeIdentity, checkVjpAgainstFd, seedArb } from '../../../test/derivatives.js';

T.setBackend('reference');
afterEach(() => vi.restoreAllMocks());

type Check = typeof checkJvpAgainstFd;
const rejects = (name: string, check: Check) => fc.assert(fc.asyncProperty(opInfo(name).cases, seedArb, async (c, seed) => check(opInfo(name), c, seed)), runs(30));

/** The message of the error that made a property fail (fast-check keeps it as the cause). */
async function failure(run: Promise<unknown>): Promise<string> {
  const err = await run.then(() => null, (e: Error) => e);
  expect(err, 'the property should have failed').not.toBeNull();
  return String((err!.cause as Error | undefined)?.message ?? err!.message);
}

describe('wrong derivative rules are caught', () => {
  test('a JVP rule off by a factor: JVP vs FD and the transpose identity fail, the VJP check passes', async () => {
    const jvp = T.primitives.tanh.jvp;
    vi.spyOn(T.primitives.tanh, 'jvp').mockImplementation((...args) => {
      const t = jvp(...args);
      return t && T.mul(t, 1.01);
    });
    expect(await failure(rejects('tanh', checkJvpAgainstFd))).toMatch(/JVP vs finite differences/);
    expect(await failure(rejects('tanh', checkTransposeIdentity))).toMatch(/<v, J·u> vs <Jᵀ·v, u>/);
    await rejects('tanh', checkVjpAgainstFd);
  });

  test('a VJP rule that swaps the cotangents of a product', async () => {
    vi.spyOn(T.primitives.mul, 'vjp').mockImplementation((ct, [a, b], _p, _y, needs) => [
      needs[0] ? T.unbroadcast(T.mul(ct, T.broadcastTo(a, ct.shape)), a.shape) : null,
      needs[1] ? T.unbroadcast(T.mul(ct, T.broadcastTo(b, ct.shape)), b.shape) : null,
    ]);
    expect(await failure(rejects('mul', checkVjpAgainstFd))).toMatch(/<Jᵀv, u> vs <v, FD\(u\)>/);
    expect(await failure(rejects('mul', checkTransposeIdentity))).toMatch(/<v, J·u> vs <Jᵀ·v, u>/);
  });

  test('a VJP that forgets to sum over broadcast dims', async () => {
    vi.spyOn(T.primitives.add, 'vjp').mockImplementation((ct, _x, _p, _y, needs) => needs.map((n) => (n ? ct : null)));
    expect(await failure(rejects('add', checkVjpAgainstFd))).toMatch(/wrong shape/);
  });

  test('a strided slice whose transpose puts cotangents back in the wrong place', async () => {
    vi.spyOn(T.primitives.slice, 'vjp').mockImplementation((ct, [x], p) => [
      T.padPrim(ct, { lo: p.starts.map(() => 0), interior: p.steps.map((s: number) => s - 1), shape: [...x.shape], value: 0 }),
    ]);
    expect(await failure(rejects('slice', checkVjpAgainstFd))).toMatch(/<Jᵀv, u> vs <v, FD\(u\)>/);
  });

  test('a reduction whose VJP scales its cotangent', async () => {
    const vjp = T.primitives.sum.vjp;
    vi.spyOn(T.primitives.sum, 'vjp').mockImplementation((...args) => vjp(...args).map((c) => c && T.mul(c, 2)));
    expect(await failure(rejects('sum', checkVjpAgainstFd))).toMatch(/<Jᵀv, u> vs <v, FD\(u\)>/);
  });
});

test('a wrong kernel is caught by the float32 forward comparison', async () => {
  const kernel = T.primitives.neg.kernel;
  // An indexing bug: every output cell reads the input's first element.
  vi.spyOn(T.primitives.neg, 'kernel').mockImplementation((...args) => {
    const source = kernel(...args);
    expect(source).toMatch(/x0\[/);
    return source.replace(/x0\[/g, 'x0[0 * ');
  });
  const op = opInfo('neg');
  const message = await failure(
    fc.assert(
      fc.asyncProperty(op.cases, async (c) => {
        const [want] = await referenceOutputs(op, c);
        const [got] = await float32Outputs(op, c, 'cpu');
        assertClose(got.values, want.values, float32Tolerance());
      }),
      runs(10),
    ),
  );
  expect(message).toMatch(/out of tolerance/);
});
