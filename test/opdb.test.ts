/**
 * The op database is complete and honest: every primitive in the registry has an entry,
 * and every entry really binds the primitives it claims to cover.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { toTensor } from '@scm/autodiff/testing';
import { opdb, runOp } from './opdb.js';

T.setBackend('reference');

/** Names of the primitives evaluated while fn runs (every evaluation goes through `abstract`). */
function primitivesBoundBy(fn: () => void): Set<string> {
  const seen = new Set<string>();
  const saved = Object.entries(T.primitives).map(([name, prim]) => {
    const abstract = prim.abstract;
    (prim as { abstract: typeof abstract }).abstract = (...args) => {
      seen.add(name);
      return abstract.apply(prim, args);
    };
    return () => ((prim as { abstract: typeof abstract }).abstract = abstract);
  });
  try {
    T.tidy(fn);
  } finally {
    saved.forEach((restore) => restore());
  }
  return seen;
}

describe('opdb', () => {
  test('every registry primitive has an entry', () => {
    const covered = new Set(opdb.flatMap((e) => e.covers));
    const missing = Object.keys(T.primitives).filter((name) => !covered.has(name));
    expect(missing, `primitives without an opdb entry: ${missing.join(', ')}`).toEqual([]);
  });

  test('entry names are unique and cover only registry primitives', () => {
    const names = opdb.map((e) => e.name);
    expect(new Set(names).size).toBe(names.length);
    const unknown = opdb.flatMap((e) => e.covers.filter((c) => !(c in T.primitives)).map((c) => `${e.name}: ${c}`));
    expect(unknown).toEqual([]);
  });

  test.each(opdb.map((e) => [e.name, e] as const))('%s binds the primitives it covers', (_name, op) => {
    const seen = new Set<string>();
    for (const c of fc.sample(op.cases, { numRuns: 25, seed: 7 })) {
      for (const name of primitivesBoundBy(() => {
        const inputs = c.inputs.map((h) => toTensor(h, { dtype: 'float64' }));
        runOp(op, inputs, c.params);
      })) seen.add(name);
    }
    const notBound = op.covers.filter((name) => !seen.has(name));
    expect(notBound, `${op.name} claims to cover ${notBound.join(', ')} but never binds it`).toEqual([]);
  });

  test('no tensors leak from the checks above', () => {
    expect(T.memory()).toEqual({ tensors: 0, buffers: 0 });
  });
});
