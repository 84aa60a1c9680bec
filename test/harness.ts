/** Shared settings and small functions of the property suites. */
import type fc from 'fast-check';
import * as T from '@scm/tensor';
import { readback, toTensor, type HostValue } from '@scm/autodiff/testing';
import { runOp, type OpCase, type OpInfo } from './opdb.js';

/**
 * One fixed seed by default, so a run is reproducible and CI is not flaky; FC_SEED=<n> replays
 * another, FC_SEED=random explores (fast-check prints the seed and path of any failure).
 */
export const SEED = process.env.FC_SEED === 'random' ? Date.now() : Number(process.env.FC_SEED ?? 20251);

/** Scale run counts: FC_RUNS_SCALE=10 for a long soak, 1 by default. */
const SCALE = Number(process.env.FC_RUNS_SCALE ?? 1);

export function runs<T>(numRuns: number, extra: fc.Parameters<T> = {}): fc.Parameters<T> {
  return { numRuns: Math.max(1, Math.round(numRuns * SCALE)), seed: SEED, ...extra };
}

/** The float64 reference outputs of an entry on a case. */
export function referenceOutputs(op: OpInfo, c: OpCase): Promise<HostValue[]> {
  return readback(() => runOp(op, c.inputs.map((h) => toTensor(h, { dtype: 'float64', backend: 'reference' })), c.params));
}

/** The outputs of an entry on a case, computed in float32 on a backend. */
export function float32Outputs(op: OpInfo, c: OpCase, backend: T.BackendName): Promise<HostValue[]> {
  return readback(() => runOp(op, c.inputs.map((h) => toTensor(h, { dtype: 'float32', backend })), c.params));
}

/** The dtype a float64-reference output has on a float32 backend. */
export const onFloat32 = (dtype: T.DType): T.DType => (dtype === 'float64' ? 'float32' : dtype);

/** Entries that run on a backend. */
export function entriesFor(db: readonly OpInfo[], backend: T.BackendName): OpInfo[] {
  return db.filter((e) => !e.backends || e.backends.includes(backend));
}

/** The backends present: reference, cpu and webasm always, webgpu when an adapter answers. */
export async function presentBackends(): Promise<T.BackendName[]> {
  const webgpu = await T.initWebGPU();
  if (!webgpu) console.log('webgpu: initWebGPU() found no adapter on this machine, so its tests do not run here');
  return ['reference', 'cpu', 'webasm', ...(webgpu ? (['webgpu'] as const) : [])];
}

/** Deterministic values on the 1/64 grid in [-1, 1] (an LCG): products of two are exact in float32. */
export function gridValues(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = ((s >>> 16) % 129 - 64) / 64;
  }
  return out;
}
