/**
 * jit(fn): `replay` (@scm/tensor) for functions of pytrees, as jax.jit takes them: the
 * arguments and the result may be nested arrays and plain objects of tensors, so a model's
 * parameters go in as they are. Each argument structure gets its own replay (traced on its
 * first call); leaves that are not tensors (numbers, strings, booleans) are part of the
 * structure, so a new value of one traces anew, like a static argument of jax.jit.
 */
import { Tensor, replay, type Replayed, type ReplayOptions } from '@scm/tensor';
import { flatten } from './pytree.js';

export interface Jitted<A extends unknown[], R> {
  (...args: A): Promise<R>;
  /** The replay of the last call's argument structure (its executor, kernels, ...). */
  readonly last: Replayed<Tensor[], Tensor[]> | null;
  /** Release every structure's plans. */
  dispose(): void;
}

/** One argument structure's replay, and (once traced) how its output leaves rebuild fn's result. */
interface Entry {
  replayed: Replayed<Tensor[], Tensor[]>;
  rebuild: { unflatten(leaves: readonly Tensor[]): unknown } | null;
}

export function jit<A extends unknown[], R>(fn: (...args: A) => R, options: ReplayOptions = {}): Jitted<A, R> {
  const byStructure = new Map<string, Entry>();
  let last: Replayed<Tensor[], Tensor[]> | null = null;
  const call = async (...args: A): Promise<R> => {
    const input = flatten(args);
    const key = structureKey(args);
    let entry = byStructure.get(key);
    if (!entry) {
      const e: Entry = { replayed: null!, rebuild: null };
      e.replayed = replay((...leaves: Tensor[]) => {
        const out = flatten(fn(...(input.unflatten(leaves) as A)));
        e.rebuild = out;
        return out.leaves;
      }, options);
      byStructure.set(key, (entry = e));
    }
    last = entry.replayed;
    const leaves = await entry.replayed(...input.leaves);
    return entry.rebuild!.unflatten(leaves) as R;
  };
  return Object.defineProperties(call, {
    last: { get: () => last },
    dispose: {
      value: () => {
        for (const e of byStructure.values()) e.replayed.dispose();
        byStructure.clear();
        last = null;
      },
    },
  }) as unknown as Jitted<A, R>;
}

/** The shape of a pytree: where its tensors are (and their shapes and dtypes), and its other leaves' values. */
function structureKey(tree: unknown): string {
  if (tree instanceof Tensor) return `T${tree.dtype}[${tree.shape.join(',')}]`;
  if (Array.isArray(tree)) return `[${tree.map(structureKey).join(',')}]`;
  if (tree && typeof tree === 'object' && Object.getPrototypeOf(tree) === Object.prototype) {
    return `{${Object.keys(tree).map((k) => `${JSON.stringify(k)}:${structureKey((tree as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  // Any other leaf (a number, a random key, ...) is static: its value is part of the key.
  return JSON.stringify(tree) ?? String(tree);
}
