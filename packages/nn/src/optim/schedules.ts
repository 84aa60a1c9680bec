/**
 * Learning-rate (or any scalar) schedules: pure functions of the step count, the number
 * of updates already made (0 for the first update), as optax's schedules.
 */
import { TensorError } from '@scm/tensor';

export type Schedule = (step: number) => number;

function check(op: string, cond: boolean, what: string): void {
  if (!cond) throw new TensorError(op, what);
}
const finite = (v: number) => Number.isFinite(v);
const count = (v: number) => Number.isInteger(v) && v >= 0;

export function constant(value: number): Schedule {
  check('constant', finite(value), `value must be finite, got ${value}`);
  return () => value;
}

/** From `init` to `end` linearly over `steps` steps, then `end`. */
export function linear(init: number, end: number, steps: number): Schedule {
  check('linear', finite(init) && finite(end), `init and end must be finite, got ${init}, ${end}`);
  check('linear', count(steps), `steps must be a non-negative integer, got ${steps}`);
  return (t) => (steps === 0 || t >= steps ? end : init + ((end - init) * Math.max(t, 0)) / steps);
}

/** Linear warmup from `init` (default 0) to `peak` over `steps` steps, then `peak`. */
export function linearWarmup(peak: number, steps: number, init = 0): Schedule {
  return linear(init, peak, steps);
}

/**
 * Cosine decay from `init` to `final` over `steps` steps (SGDR's half cosine), then `final`:
 * final + (init - final) · (1 + cos(pi · t / steps)) / 2.
 */
export function cosineDecay(init: number, steps: number, final = 0): Schedule {
  check('cosineDecay', finite(init) && finite(final), `init and final must be finite, got ${init}, ${final}`);
  check('cosineDecay', count(steps) && steps > 0, `steps must be a positive integer, got ${steps}`);
  return (t) => final + ((init - final) * (1 + Math.cos((Math.PI * Math.min(Math.max(t, 0), steps)) / steps))) / 2;
}

/**
 * Inverse square root decay, as EDM2's learning rate: peak / sqrt(max(t / tRef, 1)),
 * constant for the first `tRef` steps and then falling as 1/sqrt(t).
 */
export function inverseSqrt(peak: number, tRef: number): Schedule {
  check('inverseSqrt', finite(peak), `peak must be finite, got ${peak}`);
  check('inverseSqrt', finite(tRef) && tRef > 0, `tRef must be positive, got ${tRef}`);
  return (t) => peak / Math.sqrt(Math.max(t / tRef, 1));
}

/**
 * Run `schedules[0]` until `boundaries[0]`, then `schedules[1]` counting from 0 again,
 * and so on (optax's join_schedules).
 */
export function join(schedules: readonly Schedule[], boundaries: readonly number[]): Schedule {
  check('join', schedules.length === boundaries.length + 1, `needs one more schedule than boundaries (got ${schedules.length} and ${boundaries.length})`);
  check('join', boundaries.every((b, i) => count(b) && (i === 0 || b >= boundaries[i - 1])), `boundaries must be non-decreasing non-negative integers, got [${boundaries}]`);
  return (t) => {
    let k = 0;
    while (k < boundaries.length && t >= boundaries[k]) k++;
    return schedules[k](k === 0 ? t : t - boundaries[k - 1]);
  };
}

/** Linear warmup from 0 to `peak` over `warmupSteps`, then `decay` (a schedule that starts at step 0 of its own). */
export function warmupThen(peak: number, warmupSteps: number, decay: Schedule): Schedule {
  return join([linearWarmup(peak, warmupSteps), decay], [warmupSteps]);
}

/** Linear warmup to `peak`, then cosine decay to `final` at `totalSteps` (warmup included). */
export function warmupCosine(peak: number, warmupSteps: number, totalSteps: number, final = 0): Schedule {
  check('warmupCosine', count(warmupSteps) && totalSteps > warmupSteps, `totalSteps (${totalSteps}) must exceed warmupSteps (${warmupSteps})`);
  return warmupThen(peak, warmupSteps, cosineDecay(peak, totalSteps - warmupSteps, final));
}

/** Linear warmup to `peak`, then EDM2's inverse square root decay (counted from step 0, as EDM2). */
export function warmupInverseSqrt(peak: number, warmupSteps: number, tRef: number): Schedule {
  const decay = inverseSqrt(peak, tRef);
  return (t) => decay(t) * Math.min(1, warmupSteps > 0 ? t / warmupSteps : 1);
}
