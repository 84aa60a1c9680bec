/**
 * Reverse mode on a tape. A VJPTracer records the primitive that made it, its params,
 * its input tracers and the primal values its rule will need (the residuals). The
 * backward pass walks the tape in reverse topological order, calling each primitive's
 * VJP rule; rules are tensor ops at the level below, so the backward pass can itself
 * be traced (grad of grad, jvp of grad).
 */
import {
  Tensor, add, bind, isFloat, zerosLike, TensorError, ownedByCurrentScope, withinTransform,
  type Primitive, type Trace,
} from '@scm/tensor';
import { flatten } from './pytree.js';
import { nextLevel, releaseLevel } from './levels.js';

interface Node {
  prim: Primitive<any>;
  params: any;
  /** Input tracers of this trace (null: a constant, needs no cotangent). */
  parents: (VJPTracer | null)[];
  primals: Tensor[];
}

export class VJPTrace implements Trace {
  constructor(readonly level: number) {}
  lift(x: Tensor): Tensor {
    return x;
  }
  process(prim: Primitive<any>, args: Tensor[], params: any): Tensor {
    const parents = args.map((a) => (a.trace === this ? (a as VJPTracer) : null));
    const primals = args.map((a) => (a.trace === this ? (a as VJPTracer).primal : a));
    const out = bind(prim, primals, params);
    // Integer and boolean outputs carry no cotangent: they leave the tape as constants.
    if (parents.every((p) => p === null) || !isFloat(out.dtype)) return out;
    return new VJPTracer(this, out, { prim, params, parents, primals });
  }
}

export class VJPTracer extends Tensor {
  override readonly trace: VJPTrace;
  constructor(trace: VJPTrace, readonly primal: Tensor, readonly node: Node | null) {
    super(primal.shape, primal.dtype, null);
    this.trace = trace;
  }
  override primalOf(): Tensor {
    return this.primal;
  }
  override children(): Tensor[] {
    return [this.primal];
  }
}

/** Reverse topological order of the tape reachable from the outputs. */
function toposort(outputs: VJPTracer[]): VJPTracer[] {
  const order: VJPTracer[] = [];
  const seen = new Set<VJPTracer>();
  // Iterative DFS (deep nets make deep tapes).
  const stack: [VJPTracer, boolean][] = outputs.map((o) => [o, false]);
  while (stack.length) {
    const [t, done] = stack.pop()!;
    if (done) {
      order.push(t);
      continue;
    }
    if (seen.has(t)) continue;
    seen.add(t);
    stack.push([t, true]);
    for (const p of t.node?.parents ?? []) if (p && !seen.has(p)) stack.push([p, false]);
  }
  return order.reverse();
}

/**
 * Propagate cotangents from outputs to inputs. With `release`, residuals and
 * intermediate cotangents owned by this transform are disposed as soon as the walk no
 * longer needs them (single-use backward passes: grad, valueAndGrad).
 */
export function backward(outputs: VJPTracer[], seeds: Tensor[], inputs: VJPTracer[], release: boolean): (Tensor | null)[] {
  const order = toposort(outputs);
  const cts = new Map<VJPTracer, Tensor>();
  const uses = new Map<Tensor, number>();
  const use = (t: Tensor, k: number) => uses.set(t, (uses.get(t) ?? 0) + k);
  const keep = new Set<Tensor>([...seeds, ...inputs.map((i) => i.primal), ...outputs.map((o) => o.primal)]);
  const drop = (t: Tensor) => {
    use(t, -1);
    if (release && uses.get(t)! <= 0 && !keep.has(t) && ownedByCurrentScope(t)) {
      uses.delete(t);
      t.dispose();
    }
  };
  if (release) {
    for (const t of order) {
      if (!t.node) continue;
      for (const p of t.node.primals) use(p, 1);
      use(t.primal, 1);
    }
  }
  // The caller hands over one use of `ct` to t's cotangent slot.
  const accumulate = (t: VJPTracer, ct: Tensor) => {
    const prev = cts.get(t);
    if (!prev) {
      cts.set(t, ct);
      return;
    }
    const next = add(prev, ct);
    use(next, 1);
    cts.set(t, next);
    drop(prev);
    drop(ct);
  };
  outputs.forEach((o, i) => {
    use(seeds[i], 1);
    accumulate(o, seeds[i]);
  });
  const inputSet = new Set(inputs);
  for (const t of order) {
    const ct = cts.get(t);
    const node = t.node;
    if (!node || inputSet.has(t)) continue;
    if (ct) {
      const needs = node.parents.map((p) => p !== null);
      const out = node.prim.vjp(ct, node.primals, node.params, t.primal, needs);
      node.parents.forEach((p, k) => {
        const c = out[k];
        if (!p || !c) return;
        if (c.shape.length !== p.shape.length || c.shape.some((d, i) => d !== p.shape[i])) {
          throw new TensorError(node.prim.name, `VJP rule returned a cotangent of the wrong shape for input ${k}`, [p.shape, c.shape]);
        }
        use(c, 1);
        accumulate(p, c);
      });
      cts.delete(t);
      drop(ct);
    }
    if (release) {
      for (const p of node.primals) drop(p);
      drop(t.primal);
    }
  }
  return inputs.map((i) => cts.get(i) ?? null);
}

export interface VJPResult<T> {
  out: T;
  trace: VJPTrace;
  inputs: VJPTracer[];
  outTracers: Tensor[];
  unflattenInputs: (leaves: readonly Tensor[]) => any;
  unflattenOut: (leaves: readonly Tensor[]) => any;
}

/** Run f on tracers of a new VJP trace; the caller runs the backward pass inside the same level. */
export function traceVJP<T>(f: (...args: any[]) => T, primals: readonly unknown[], body: (r: VJPResult<T>) => any): any {
  const level = nextLevel();
  try {
    const trace = new VJPTrace(level);
    const pf = flatten(primals as unknown[]);
    const inputs = pf.leaves.map((p) => new VJPTracer(trace, p, null));
    const outTree = withinTransform(() => f(...(pf.unflatten(inputs) as unknown[])));
    const of = flatten(outTree);
    const out = of.unflatten(of.leaves.map((o) => (o.trace === trace ? (o as VJPTracer).primal : o)));
    return body({ out, trace, inputs, outTracers: of.leaves, unflattenInputs: pf.unflatten, unflattenOut: of.unflatten });
  } finally {
    releaseLevel(level);
  }
}

/** Cotangents of the inputs for output cotangents, for one traced call. */
export function pullback(r: VJPResult<unknown>, cotangents: readonly Tensor[], release: boolean): (Tensor | null)[] {
  const outs: VJPTracer[] = [];
  const seeds: Tensor[] = [];
  r.outTracers.forEach((o, i) => {
    const ct = cotangents[i];
    if (!ct) return;
    if (ct.shape.length !== o.shape.length || ct.shape.some((d, k) => d !== o.shape[k])) {
      throw new TensorError('vjp', `output cotangent ${i} must match the output's shape`, [o.shape, ct.shape]);
    }
    if (o.trace === r.trace) {
      outs.push(o as VJPTracer);
      seeds.push(ct);
    }
  });
  return backward(outs, seeds, r.inputs, release);
}

/**
 * vjp(f, ...primals) -> [f(...primals), vjpFn]; vjpFn(cotangent) returns the input
 * cotangents as a list shaped like `primals` (zeros where f does not depend on them).
 * The residuals live until the enclosing scope ends; vjpFn may be called many times.
 */
export function vjp<T = any>(f: (...args: any[]) => T, ...primals: unknown[]): [T, (cotangent: any) => any[]] {
  return traceVJP(f, primals, (r) => {
    const vjpFn = (cotangent: unknown) => {
      const cts = flatten(cotangent).leaves;
      if (cts.length !== r.outTracers.length) throw new TensorError('vjp', `expected ${r.outTracers.length} output cotangents, got ${cts.length}`);
      const grads = pullback(r, cts, false);
      return r.unflattenInputs(grads.map((g, i) => g ?? zerosLikeInput(r.inputs[i])));
    };
    return [r.out, vjpFn];
  });
}

function zerosLikeInput(t: VJPTracer): Tensor {
  return zerosLike(t.primal);
}
