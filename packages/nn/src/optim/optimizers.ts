/**
 * Optimizers on parameter pytrees, in the functional style of optax:
 *
 *   let state = opt.init(params);
 *   ({ params, state } = opt.step(grads, state, params));   // frees the replaced tensors
 *
 * `update` is the pure form: it returns new tensors and leaves its inputs alone.
 * `step` is `update` followed by disposing the old parameters and the old state, so a
 * training loop's live tensor count stays flat (the gradients remain the caller's).
 *
 * The state is a plain object: `step`, the number of updates made so far (a number),
 * and one pytree per slot shaped like the parameters (`mu`, `nu`, `momentum`). Update
 * rules follow PyTorch's formulas (SGD, Adam, AdamW, RAdam), with the learning rate and
 * bias corrections evaluated in float64 on the host (`scalars`).
 *
 * The Adam family's rules run as three fused kernels per parameter (the two moments, then
 * the step) instead of a dozen elementwise ops: a model has hundreds of parameter tensors,
 * and every kernel call has a fixed cost. Values that change from step to step (bias
 * corrections, the learning rate) enter those kernels as 0-d tensors, not as constants,
 * so each kernel compiles once.
 */
import { type Expr, Tensor, TensorError, add, fuse, mul, sub, zerosLike } from '@scm/tensor';
import type { Schedule } from './schedules.js';
import { disposeReplaced, leaves, mapLeaves, scalar } from './tree.js';

export type LearningRate = number | Schedule;

export interface OptState {
  /** Updates made so far. */
  step: number;
  [slot: string]: unknown;
}

/**
 * What update number `step + 1` uses besides the tensors: the branch of the rule (RAdam's
 * unrectified first steps, say), which changes the kernels, and the values that change from
 * step to step (learning rate, bias corrections), which enter them as 0-d tensors.
 */
export interface StepScalars {
  branch: string;
  values: number[];
}

export interface Optimizer<S extends OptState = OptState> {
  readonly name: string;
  /** The learning rate used by the update after `step` updates. */
  learningRate(step: number): number;
  init<P>(params: P): S;
  /** The branch and per-step values of the update after `step` updates. */
  scalars(step: number): StepScalars;
  /**
   * The update. `given` supplies the branch and the per-step values as 0-d tensors (from
   * `scalars(state.step)`), as a replayed (`jit`) training step must: inside it, values made
   * on the host would be frozen at the trace, while tensor arguments change from call to call.
   */
  update<P>(grads: P, state: S, params: P, given?: { branch: string; values: readonly Tensor[] }): { params: P; state: S };
  step<P>(grads: P, state: S, params: P): { params: P; state: S };
}

function lrFn(op: string, lr: LearningRate): Schedule {
  if (typeof lr === 'function') return lr;
  if (!Number.isFinite(lr) || lr < 0) throw new TensorError(op, `learning rate must be a finite non-negative number or a schedule, got ${lr}`);
  return () => lr;
}

function checkHyper(op: string, name: string, v: number, lo: number, hi: number, hiOpen = true): void {
  if (!(Number.isFinite(v) && v >= lo && (hiOpen ? v < hi : v <= hi))) throw new TensorError(op, `${name} must be in [${lo}, ${hi}${hiOpen ? ')' : ']'}, got ${v}`);
}

function checkState(op: string, state: OptState, slots: readonly string[]): void {
  if (!state || !Number.isInteger(state.step) || state.step < 0) throw new TensorError(op, `state.step must be a non-negative integer, got ${state?.step}`);
  for (const s of slots) if (!(s in state)) throw new TensorError(op, `state has no slot "${s}" (was it made by this optimizer's init?)`);
}

/**
 * Build an optimizer from its per-leaf rule. `scalars(t, rate)` gives update number t's branch
 * and per-step values (t is 1-based, as the bias corrections count); `rule(p, g, slots, k,
 * branch)` gets one parameter, its gradient, its slot tensors and those values as 0-d tensors
 * `k`, and returns the new parameter followed by the new slots, in `slots` order. The 0-d
 * tensors are made once per update and shared by every leaf.
 */
function makeOptimizer(
  name: string, lr: Schedule, slots: readonly string[],
  scalars: (t: number, rate: number) => StepScalars,
  rule: (p: Tensor, g: Tensor, s: Tensor[], k: readonly Tensor[], branch: string) => Tensor[],
): Optimizer {
  const opt: Optimizer = {
    name,
    learningRate: lr,
    init<P>(params: P) {
      const state: OptState = { step: 0 };
      for (const s of slots) state[s] = mapLeaves(`${name}.init`, ['params'], [params], 1, (p) => [zerosLike(p)])[0];
      return state;
    },
    scalars(step: number) {
      const rate = lr(step);
      if (!Number.isFinite(rate)) throw new TensorError(`${name}.update`, `the learning rate schedule gave ${rate} at step ${step}`);
      return scalars(step + 1, rate);
    },
    update<P>(grads: P, state: OptState, params: P, given?: { branch: string; values: readonly Tensor[] }) {
      checkState(`${name}.update`, state, slots);
      const trees = [params, grads, ...slots.map((s) => state[s])];
      const names = ['params', 'grads', ...slots.map((s) => `state.${s}`)];
      let branch: string, k: readonly Tensor[];
      let made: Tensor[] = [];
      if (given) {
        if (!given.values.every((v) => v instanceof Tensor && v.shape.length === 0)) {
          throw new TensorError(`${name}.update`, `given.values must be 0-d tensors (from scalars(step)), got shapes ${given.values.map((v) => (v instanceof Tensor ? `[${v.shape}]` : typeof v)).join(', ')}`);
        }
        ({ branch, values: k } = given);
      } else {
        const first = leaves(params)[0];
        const sc = opt.scalars(state.step);
        branch = sc.branch;
        k = made = first ? sc.values.map((v) => scalar(first, v)) : [];
      }
      try {
        const [newParams, ...newSlots] = mapLeaves(`${name}.update`, names, trees, 1 + slots.length, (p, g, ...s) => rule(p, g, s, k, branch));
        const newState: OptState = { step: state.step + 1 };
        slots.forEach((s, j) => (newState[s] = newSlots[j]));
        return { params: newParams as P, state: newState };
      } finally {
        for (const t of made) t.dispose();
      }
    },
    step<P>(grads: P, state: OptState, params: P) {
      const out = opt.update(grads, state, params);
      disposeReplaced(params, out.params);
      for (const s of slots) disposeReplaced(state[s], out.state[s]);
      return out;
    },
  };
  return opt;
}

export interface SgdOptions {
  lr: LearningRate;
  momentum?: number;
  nesterov?: boolean;
  /** L2 penalty added to the gradient (PyTorch's weight_decay). */
  weightDecay?: number;
}

/**
 * SGD with optional momentum (PyTorch's form, no dampening):
 *   g ← g + wd·p;  b ← μ·b + g;  d = nesterov ? g + μ·b : b;  p ← p − lr·d
 */
export function sgd({ lr, momentum = 0, nesterov = false, weightDecay = 0 }: SgdOptions): Optimizer {
  checkHyper('sgd', 'momentum', momentum, 0, 1);
  checkHyper('sgd', 'weightDecay', weightDecay, 0, Infinity);
  if (nesterov && momentum === 0) throw new TensorError('sgd', 'Nesterov momentum needs momentum > 0');
  const slots = momentum > 0 ? ['momentum'] : [];
  return makeOptimizer('sgd', lrFn('sgd', lr), slots, (_t, rate) => ({ branch: 'sgd', values: [rate] }), (p, g0, s, [rate]) => {
    const g = weightDecay ? add(g0, mul(p, weightDecay)) : g0;
    if (momentum === 0) return [sub(p, mul(g, rate))];
    const b = add(mul(s[0], momentum), g);
    const d = nesterov ? add(g, mul(b, momentum)) : b;
    return [sub(p, mul(d, rate)), b];
  });
}

export interface AdamOptions {
  lr: LearningRate;
  b1?: number;
  b2?: number;
  eps?: number;
  /** Adam: L2 penalty added to the gradient. AdamW: decoupled decay p ← p·(1 − lr·wd). */
  weightDecay?: number;
}

function checkAdam(op: string, b1: number, b2: number, eps: number, wd: number): void {
  checkHyper(op, 'b1', b1, 0, 1);
  checkHyper(op, 'b2', b2, 0, 1);
  checkHyper(op, 'eps', eps, 0, Infinity);
  checkHyper(op, 'weightDecay', wd, 0, Infinity);
}

/**
 * The first and second moment updates shared by the Adam family, two fused kernels:
 *   m ← b1·m + (1 − b1)·g;  v ← b2·v + (1 − b2)·g²,  with g = g0 + wd·p (L2 penalty) when wd > 0.
 */
function moments(p: Tensor, g0: Tensor, m: Tensor, v: Tensor, b1: number, b2: number, wd: number): [Tensor, Tensor] {
  const grad = (g: Expr, q: Expr) => (wd ? g.add(q.mul(wd)) : g);
  return [
    fuse((mm, g, q) => mm.mul(b1).add(grad(g, q).mul(1 - b1)), [m, g0, p]),
    fuse((vv, g, q) => {
      const gq = grad(g, q);
      return vv.mul(b2).add(gq.mul(gq).mul(1 - b2));
    }, [v, g0, p]),
  ];
}

/**
 * The Adam step on bias-corrected moments, in PyTorch's arrangement, one fused kernel:
 *   p ← p·decay − (lr / (1 − b1^t)) · m / (sqrt(v) / sqrt(1 − b2^t) + eps)
 * (decay = 1 − lr·wd for AdamW, else 1). Its per-step values: [sqrt(1 − b2^t), lr / (1 − b1^t), decay].
 */
function adamScalars(t: number, rate: number, b1: number, b2: number, decay = 1): StepScalars {
  return { branch: 'adam', values: [Math.sqrt(1 - b2 ** t), rate / (1 - b1 ** t), decay] };
}
function adamStep(p: Tensor, m: Tensor, v: Tensor, [root, step, decay]: readonly Tensor[], eps: number): Tensor {
  return fuse((q, mm, vv, r, st, d) => q.mul(d).sub(mm.div(vv.sqrt().div(r).add(eps)).mul(st)), [p, m, v, root, step, decay]);
}

/** Adam (Kingma & Ba, 2015); `weightDecay` is the classic L2 penalty added to the gradient. */
export function adam({ lr, b1 = 0.9, b2 = 0.999, eps = 1e-8, weightDecay = 0 }: AdamOptions): Optimizer {
  checkAdam('adam', b1, b2, eps, weightDecay);
  return makeOptimizer('adam', lrFn('adam', lr), ['mu', 'nu'], (t, rate) => adamScalars(t, rate, b1, b2), (p, g, [m0, v0], k) => {
    const [m, v] = moments(p, g, m0, v0, b1, b2, weightDecay);
    return [adamStep(p, m, v, k, eps), m, v];
  });
}

/** AdamW (Loshchilov & Hutter, 2019): weight decay decoupled from the gradient, p ← p·(1 − lr·wd) before the Adam step. */
export function adamw({ lr, b1 = 0.9, b2 = 0.999, eps = 1e-8, weightDecay = 0.01 }: AdamOptions): Optimizer {
  checkAdam('adamw', b1, b2, eps, weightDecay);
  return makeOptimizer('adamw', lrFn('adamw', lr), ['mu', 'nu'], (t, rate) => adamScalars(t, rate, b1, b2, 1 - rate * weightDecay), (p, g, [m0, v0], k) => {
    const [m, v] = moments(p, g, m0, v0, b1, b2, 0);
    return [adamStep(p, m, v, k, eps), m, v];
  });
}

/**
 * RAdam (Liu et al., 2020), PyTorch's form: while the variance of the adaptive rate is
 * intractable (rho_t ≤ 5) it takes plain momentum steps p ← p − lr·m̂; after that
 * p ← p − lr · m̂ · r_t · sqrt(1 − b2^t) / (sqrt(v) + eps), with the rectification r_t.
 */
export function radam({ lr, b1 = 0.9, b2 = 0.999, eps = 1e-8, weightDecay = 0 }: AdamOptions): Optimizer {
  checkAdam('radam', b1, b2, eps, weightDecay);
  const rhoInf = 2 / (1 - b2) - 1;
  const scalars = (t: number, rate: number): StepScalars => {
    const bc1 = 1 - b1 ** t;
    const bc2 = 1 - b2 ** t;
    const rhoT = rhoInf - (2 * t * b2 ** t) / bc2;
    if (rhoT <= 5) return { branch: 'momentum', values: [rate / bc1] };
    const rect = Math.sqrt(((rhoT - 4) * (rhoT - 2) * rhoInf) / ((rhoInf - 4) * (rhoInf - 2) * rhoT));
    return { branch: 'rectified', values: [Math.sqrt(bc2), (rate * rect) / bc1] };
  };
  return makeOptimizer('radam', lrFn('radam', lr), ['mu', 'nu'], scalars, (p, g, [m0, v0], k, branch) => {
    const [m, v] = moments(p, g, m0, v0, b1, b2, weightDecay);
    if (branch === 'momentum') return [fuse((q, mm, step) => q.sub(mm.mul(step)), [p, m, k[0]]), m, v];
    return [fuse((q, mm, vv, root, step) => q.sub(mm.mul(root.div(vv.sqrt().add(eps))).mul(step)), [p, m, v, k[0], k[1]]), m, v];
  });
}
