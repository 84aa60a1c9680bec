/**
 * Hand-written derivative rules for composite functions.
 *  - customJvp(f, rule): in forward mode, rule(primals, tangents) -> [out, tangentOut]
 *    replaces differentiating f (e.g. a fused attention whose JVP needs no extra memory).
 *    Reverse mode differentiates f itself.
 *  - customVjp(f, fwd, bwd): in reverse mode, fwd(...args) -> [out, residuals] runs the
 *    forward pass and bwd(residuals, cotangent) -> input cotangents replaces the tape of f.
 *    Forward mode differentiates f itself.
 */
import { Tensor, TensorError, zerosLike, type Primitive, type Trace } from '@scm/tensor';
import { JVPTrace, JVPTracer, unpackJVP } from './jvp.js';
import { VJPTrace, VJPTracer } from './vjp.js';
import { flatten } from './pytree.js';

function topTrace(leaves: Tensor[]): Trace | null {
  let top: Trace | null = null;
  for (const a of leaves) if (a.trace && (!top || a.trace.level > top.level)) top = a.trace;
  return top;
}

export function customJvp<A extends Tensor[], R>(
  f: (...args: A) => R,
  rule: (primals: A, tangents: A) => [R, R],
): (...args: A) => R {
  const g = (...args: A): R => {
    const flat = flatten(args);
    const top = topTrace(flat.leaves);
    if (!(top instanceof JVPTrace)) return f(...args);
    const primals = flat.leaves.map((a) => (a.trace === top ? (a as JVPTracer).primal : a));
    const tangents = flat.leaves.map((a, i) => (a.trace === top ? (a as JVPTracer).tangent : zerosLike(primals[i])));
    const [out, tout] = rule(flat.unflatten(primals), flat.unflatten(tangents));
    const fo = flatten(out), ft = flatten(tout);
    if (fo.leaves.length !== ft.leaves.length) throw new TensorError('customJvp', 'the rule must return outputs and tangents of the same structure');
    return fo.unflatten(fo.leaves.map((o, i) => {
      const [p, t0] = unpackJVP(top, o);
      void t0;
      return new JVPTracer(top, p, ft.leaves[i]);
    }));
  };
  return g;
}

export function customVjp<A extends Tensor[], Res>(
  f: (...args: A) => Tensor,
  fwd: (...args: A) => [Tensor, Res],
  bwd: (residuals: Res, cotangent: Tensor) => (Tensor | null)[],
): (...args: A) => Tensor {
  return (...args: A): Tensor => {
    for (const a of args) if (!(a instanceof Tensor)) throw new TensorError('customVjp', 'arguments must be tensors');
    const top = topTrace(args);
    if (!(top instanceof VJPTrace)) return f(...args);
    const parents = args.map((a) => (a.trace === top ? (a as VJPTracer) : null));
    const primals = args.map((a) => (a.trace === top ? (a as VJPTracer).primal : a)) as A;
    const [out, residuals] = fwd(...primals);
    const prim: Primitive<null> = {
      name: `customVjp(${f.name || 'f'})`,
      abstract: () => out,
      reference: () => { throw new TensorError('customVjp', 'not a kernel'); },
      kernel: () => { throw new TensorError('customVjp', 'not a kernel'); },
      jvp: () => { throw new TensorError('customVjp', 'forward mode of a customVjp function differentiates f, not this node'); },
      vjp: (ct, _p, _params, _out, needs) => {
        const cts = bwd(residuals, ct);
        if (cts.length !== args.length) throw new TensorError('customVjp', `bwd returned ${cts.length} cotangents for ${args.length} arguments`);
        return cts.map((c, i) => (needs[i] ? c : null));
      },
    };
    return new VJPTracer(top, out, { prim, params: null, parents, primals });
  };
}
