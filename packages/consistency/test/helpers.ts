/** Test helpers: float64 on the reference backend, a tiny random network, comparisons. */
import * as T from '@scm/tensor';
import { positionalEmbedding } from '@scm/nn';
import type { NetFn } from '../src/trigflow.js';

export { gaussianVariance as gaussVar, exactDiffusionNet, exactConsistencyNet } from '../src/analytic.js';

export const f64 = { dtype: 'float64' as const, backend: 'reference' as const };

export interface MlpParams {
  w1: T.Tensor; b1: T.Tensor; w2: T.Tensor; b2: T.Tensor; w3: T.Tensor; b3: T.Tensor;
}

/** A small random MLP F(y, t) on [B, d] inputs: [y, posemb(t)] → h → h → d (SiLU). */
export function randomMlp(d: number, hidden: number, seed: number, emb = 16): { net: NetFn<MlpParams>; params: MlpParams } {
  const ks = T.random.split(T.random.key(seed), 6);
  const n = (k: T.random.Key, shape: number[], fan: number) => T.random.normal(k, shape, { std: 1 / Math.sqrt(fan), ...f64 });
  const params: MlpParams = {
    w1: n(ks[0], [d + emb, hidden], d + emb), b1: n(ks[1], [hidden], 4),
    w2: n(ks[2], [hidden, hidden], hidden), b2: n(ks[3], [hidden], 4),
    w3: n(ks[4], [hidden, d], hidden), b3: n(ks[5], [d], 4),
  };
  const net: NetFn<MlpParams> = (p, y, t) => {
    const flat = T.reshape(y, [y.shape[0], -1]);
    const h0 = T.concat([flat, positionalEmbedding(t, emb)], 1);
    const h1 = T.silu(T.add(T.matmul(h0, p.w1), p.b1));
    const h2 = T.silu(T.add(T.matmul(h1, p.w2), p.b2));
    return T.reshape(T.add(T.matmul(h2, p.w3), p.b3), y.shape);
  };
  return { net, params };
}

export function maxAbs(x: T.Tensor): number {
  return Math.max(...Array.from(x.dataSync(), Math.abs));
}

export function maxAbsDiff(a: T.Tensor, b: T.Tensor): number {
  return T.tidy(() => maxAbs(T.sub(a, b)));
}

/** Run `f` with console.log and process.stdout captured; returns what they printed (one entry per call). */
export async function captureOutput(f: () => Promise<void>): Promise<string[]> {
  const printed: string[] = [];
  const log = console.log;
  const write = process.stdout.write.bind(process.stdout);
  console.log = (...a: unknown[]) => void printed.push(a.join(' '));
  (process.stdout as { write: unknown }).write = (s: string) => (printed.push(s), true);
  try {
    await f();
  } finally {
    console.log = log;
    (process.stdout as { write: unknown }).write = write;
  }
  return printed;
}
