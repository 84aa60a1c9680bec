/**
 * Broadcasting and its adjoint. For every broadcasting elementwise entry, the derivatives with
 * respect to the original (small) inputs must equal those of the same op applied to inputs
 * materialized at the full output shape, with
 *  - tangents: each small tangent broadcast to the output shape (on the host), and
 *  - cotangents: the full cotangents summed over the broadcast dims (on the host),
 * so the library's broadcast/unbroadcast logic is checked against plain loops. Float64,
 * reference backend; both sides are exact up to rounding (1e-12 relative).
 */
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import * as AD from '@scm/autodiff';
import { assertClose, broadcastShapesArb, tensorArb, type HostTensor } from '@scm/autodiff/testing';
import { opdb, runOp, type OpCase } from '../../../test/opdb.js';
import * as O from '../../../test/oracle.js';
import { runs } from '../../../test/harness.js';
import { directions, FLOAT64, read, seedArb } from '../../../test/derivatives.js';

T.setBackend('reference');
const baseline = T.memory();
afterAll(() => expect(T.memory()).toEqual(baseline));

const broadcasting = opdb.filter((e) => e.category === 'binary');

/** x materialized at `shape` (NumPy broadcasting), on the host. */
const expand = (x: O.Host, shape: number[]): O.Host => O.build(shape, (k) => O.getBroadcast(x, k));

/** The adjoint of `expand`: sum the entries of a full-shape array into the small shape. */
function sumTo(full: O.Host, shape: number[]): number[] {
  const out = new Array<number>(O.sizeOf(shape)).fill(0);
  const off = full.shape.length - shape.length;
  full.values.forEach((v, i) => {
    const k = O.unravel(i, full.shape).slice(off).map((c, d) => (shape[d] === 1 ? 0 : c));
    out[O.ravel(k, shape)] += v;
  });
  return out;
}

const TOL = { atol: 1e-12, rtol: 1e-12 };

describe.each(broadcasting.map((e) => [e.name, e] as const))('%s', (_name, op) => {
  test('derivatives through broadcasting equal those of explicitly expanded inputs', async () => {
    await fc.assert(
      fc.asyncProperty(op.cases, seedArb, async (c: OpCase, seed) => {
        T.tidy(() => {
          const small = c.inputs.map((h) => T.fromArray(h.values, h.shape, { ...FLOAT64, dtype: h.dtype ?? 'float64' }));
          const outShape = O.broadcast(...c.inputs.map((h) => h.shape));
          const full = c.inputs.map((h) => {
            const e = expand(h, outShape);
            return T.fromArray(e.values, e.shape, { ...FLOAT64, dtype: h.dtype ?? 'float64' });
          });
          const fOf = (args: T.Tensor[]) => (...d: T.Tensor[]) => {
            const all = [...args];
            op.diff.forEach((i, k) => (all[i] = d[k]));
            return runOp(op, all, c.params)[0];
          };
          const smallPrimals = op.diff.map((i) => small[i]);
          const fullPrimals = op.diff.map((i) => full[i]);

          // Forward: broadcast the small tangents by hand.
          const u = directions(smallPrimals, seed);
          const uFull = u.map((t) => {
            const e = expand({ shape: [...t.shape], values: Array.from(t.dataSync()) }, outShape);
            return T.fromArray(e.values, e.shape, FLOAT64);
          });
          const [, tSmall] = AD.jvp(fOf(small), smallPrimals, u);
          const [, tFull] = AD.jvp(fOf(full), fullPrimals, uFull);
          expect(tSmall.shape).toEqual(outShape);
          assertClose(Array.from(tSmall.dataSync()), Array.from(tFull.dataSync()), { ...TOL, what: 'JVP with broadcast inputs' });

          // Reverse: sum the full cotangents over the broadcast dims by hand.
          const [outSmall, vjpSmall] = AD.vjp(fOf(small), ...smallPrimals);
          const [v] = directions([outSmall], seed + 1);
          const ctSmall = vjpSmall(v) as T.Tensor[];
          const ctFull = AD.vjp(fOf(full), ...fullPrimals)[1](v) as T.Tensor[];
          op.diff.forEach((i, k) => {
            expect(ctSmall[k].shape, `cotangent ${i} shape`).toEqual(c.inputs[i].shape);
            const summed = sumTo({ shape: outShape, values: read([ctFull[k]])[0] }, c.inputs[i].shape);
            assertClose(read([ctSmall[k]])[0], summed, { ...TOL, what: `VJP of input ${i} vs the summed full cotangent` });
          });
        });
      }),
      runs(15),
    );
  });
});

test('grad of a sum through broadcasting counts how often each element was used', async () => {
  await fc.assert(
    fc.asyncProperty(broadcastShapesArb(2).chain(([a, b]) => fc.tuple(tensorArb(a), tensorArb(b))), async ([a, b]: HostTensor[]) => {
      T.tidy(() => {
        const [x, y] = [a, b].map((h) => T.fromArray(h.values, h.shape, FLOAT64));
        const out = O.broadcast(a.shape, b.shape);
        const [gx, gy] = AD.grad((p: T.Tensor, q: T.Tensor) => T.sum(T.add(p, q)), { argnums: [0, 1] })(x, y) as T.Tensor[];
        // d/dp sum(p + q) = the number of output cells each element of p feeds.
        expect(Array.from(gx.dataSync())).toEqual(new Array(x.size).fill(O.sizeOf(out) / Math.max(1, x.size)));
        expect(Array.from(gy.dataSync())).toEqual(new Array(y.size).fill(O.sizeOf(out) / Math.max(1, y.size)));
      });
    }),
    runs(30),
  );
});

test('reductions with keepdims round-trip their cotangents to the input shape', async () => {
  const x = T.fromArray([1, 2, 3, 4, 5, 6], [2, 1, 3], FLOAT64);
  for (const keepdims of [true, false])
    for (const axes of [undefined, 0, [0, 2], 1, -1] as T.Axes[]) {
      const g = AD.grad((p: T.Tensor) => T.sum(T.mul(T.sum(p, axes, keepdims), 2)))(x) as T.Tensor;
      expect(g.shape).toEqual([2, 1, 3]);
      expect(Array.from(g.dataSync())).toEqual(new Array(6).fill(2));
      g.dispose();
    }
  x.dispose();
});
