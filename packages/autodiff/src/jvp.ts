/**
 * Forward mode. A JVPTracer carries a primal and its tangent (null = symbolic zero,
 * which costs nothing). Each primitive's output tangent comes from its JVP rule,
 * written with tensor ops that bind one level down, so transforms nest freely.
 */
import { Tensor, bind, isFloat, TensorError, transformScope, zerosLike, type Primitive, type Trace } from '@scm/tensor';
import { flatten } from './pytree.js';
import { nextLevel, releaseLevel } from './levels.js';

export class JVPTrace implements Trace {
  constructor(readonly level: number) {}
  lift(x: Tensor): Tensor {
    return x;
  }
  process(prim: Primitive<any>, args: Tensor[], params: any): Tensor {
    const primals = args.map((a) => (a.trace === this ? (a as JVPTracer).primal : a));
    const tangents = args.map((a) => (a.trace === this ? (a as JVPTracer).tangent : null));
    const out = bind(prim, primals, params);
    if (tangents.every((t) => t === null)) return out;
    const tangentOut = prim.jvp(primals, tangents, params, out);
    return tangentOut ? new JVPTracer(this, out, tangentOut) : out;
  }
}

export class JVPTracer extends Tensor {
  override readonly trace: JVPTrace;
  constructor(trace: JVPTrace, readonly primal: Tensor, readonly tangent: Tensor) {
    super(primal.shape, primal.dtype, null);
    this.trace = trace;
  }
  override primalOf(): Tensor {
    return this.primal;
  }
  override children(): Tensor[] {
    return [this.primal, this.tangent];
  }
}

/** Check that a tangent fits its primal: same shape, float dtype. */
export function checkTangent(op: string, primal: Tensor, tangent: Tensor | null): Tensor | null {
  if (tangent === null) return null;
  if (!(tangent instanceof Tensor)) throw new TensorError(op, 'tangents must be tensors (or null for zero)');
  if (!isFloat(primal.dtype)) return null; // integer and boolean inputs have no tangent space
  if (tangent.shape.length !== primal.shape.length || tangent.shape.some((d, i) => d !== primal.shape[i]) || tangent.dtype !== primal.dtype) {
    throw new TensorError(op, `a tangent must match its primal's shape and dtype (primal ${primal.dtype}, tangent ${tangent.dtype})`, [primal.shape, tangent.shape]);
  }
  return tangent;
}

/** The primal and tangent of a traced output (zeros where it does not depend on the inputs). */
export function unpackJVP(trace: JVPTrace, out: Tensor): [Tensor, Tensor | null] {
  if (out.trace === trace) return [(out as JVPTracer).primal, (out as JVPTracer).tangent];
  return [out, null];
}

/**
 * jvp(f, primals, tangents) -> [f(...primals), J·tangents]. `primals` and `tangents` are
 * lists of pytrees of the same structure; a null tangent leaf is a zero tangent.
 */
export function jvp<T = any>(f: (...args: any[]) => T, primals: readonly unknown[], tangents: readonly unknown[]): [T, T] {
  if (primals.length !== tangents.length) throw new TensorError('jvp', `got ${primals.length} primals and ${tangents.length} tangents`);
  return transformScope(() => {
    const level = nextLevel();
    try {
      const trace = new JVPTrace(level);
      const pf = flatten(primals as unknown[]);
      // Tangent trees may hold nulls where the primal tree holds a tensor.
      const tangentLeaves = alignTangents(primals, tangents);
      const inputs = pf.leaves.map((p, i) => {
        const t = checkTangent('jvp', p, tangentLeaves[i]);
        return t ? new JVPTracer(trace, p, t) : p;
      });
      const out = f(...(pf.unflatten(inputs) as unknown[]));
      const of = flatten(out);
      const outs = of.leaves.map((o) => unpackJVP(trace, o));
      return [of.unflatten(outs.map((o) => o[0])), of.unflatten(outs.map(([p, t]) => t ?? zerosLike(p)))] as [T, T];
    } finally {
      releaseLevel(level);
    }
  });
}

/** Tangent leaves in the order of the primal leaves, null where absent. */
export function alignTangents(primals: unknown, tangents: unknown): (Tensor | null)[] {
  const out: (Tensor | null)[] = [];
  const walk = (p: unknown, t: unknown) => {
    if (p instanceof Tensor) out.push(t instanceof Tensor ? t : null);
    else if (Array.isArray(p)) p.forEach((v, i) => walk(v, Array.isArray(t) ? t[i] : null));
    else if (p && typeof p === 'object' && Object.getPrototypeOf(p) === Object.prototype) {
      for (const k of Object.keys(p)) walk((p as any)[k], t && typeof t === 'object' ? (t as any)[k] : null);
    }
  };
  walk(primals, tangents);
  return out;
}
