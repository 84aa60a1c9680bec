/**
 * Pytrees: nested arrays and plain objects whose leaves are tensors (other leaves, such
 * as numbers or strings, are carried through unchanged). Transforms flatten their
 * arguments and results to lists of tensors and rebuild the same structure.
 */
import { Tensor } from '@scm/tensor';

export type Tree = Tensor | readonly Tree[] | { readonly [k: string]: Tree } | number | string | boolean | null | undefined;

export interface Flat {
  leaves: Tensor[];
  unflatten(leaves: readonly Tensor[]): any;
}

export function flatten(tree: unknown): Flat {
  const leaves: Tensor[] = [];
  const build = (t: unknown): (next: () => Tensor) => unknown => {
    if (t instanceof Tensor) {
      leaves.push(t);
      return (next) => next();
    }
    if (Array.isArray(t)) {
      const parts = t.map(build);
      return (next) => parts.map((p) => p(next));
    }
    if (t && typeof t === 'object' && Object.getPrototypeOf(t) === Object.prototype) {
      const keys = Object.keys(t);
      const parts = keys.map((k) => build((t as Record<string, unknown>)[k]));
      return (next) => Object.fromEntries(keys.map((k, i) => [k, parts[i](next)]));
    }
    return () => t;
  };
  const rebuild = build(tree);
  return {
    leaves,
    unflatten(newLeaves) {
      let i = 0;
      const out = rebuild(() => newLeaves[i++]);
      return out;
    },
  };
}

/** Apply fn to every tensor leaf. */
export function treeMap(tree: unknown, fn: (t: Tensor) => Tensor): any {
  const f = flatten(tree);
  return f.unflatten(f.leaves.map(fn));
}

/** Apply fn leafwise to several trees of the same structure. */
export function treeZip(trees: unknown[], fn: (...ts: Tensor[]) => Tensor): any {
  const flats = trees.map(flatten);
  const n = flats[0].leaves.length;
  if (flats.some((f) => f.leaves.length !== n)) throw new Error('treeZip: trees have different numbers of leaves');
  return flats[0].unflatten(flats[0].leaves.map((_, i) => fn(...flats.map((f) => f.leaves[i]))));
}
