/**
 * Counter-based random numbers with explicit keys (as JAX): a key is two 32-bit words;
 * `split` and `foldIn` derive new keys by hashing, and every draw is a pure function of
 * (key, index) computed on the host with Threefry-2x32 (20 rounds), so every backend
 * gets the same numbers for the same key.
 */
import type { DType } from './dtype.js';
import { TensorError } from './errors.js';
import { fromArray, type CreateOptions } from './ops.js';
import { checkShape, sizeOf, type Shape } from './shape.js';
import type { Tensor } from './tensor.js';

export class Key {
  constructor(readonly k0: number, readonly k1: number) {}
  toJSON(): [number, number] {
    return [this.k0, this.k1];
  }
  toString(): string {
    return `Key(${this.k0}, ${this.k1})`;
  }
}

const ROT = [13, 15, 26, 6, 17, 29, 16, 24];

/** Threefry-2x32 with 20 rounds (Salmon et al. 2011), as JAX's default PRNG. */
export function threefry2x32(k0: number, k1: number, x0: number, x1: number): [number, number] {
  const k2 = (k0 ^ k1 ^ 0x1bd11bda) >>> 0;
  const ks = [k0 >>> 0, k1 >>> 0, k2];
  let a = (x0 + ks[0]) >>> 0;
  let b = (x1 + ks[1]) >>> 0;
  for (let r = 0; r < 5; r++) {
    for (let i = 0; i < 4; i++) {
      const rot = ROT[(r % 2) * 4 + i];
      a = (a + b) >>> 0;
      b = ((b << rot) | (b >>> (32 - rot))) >>> 0;
      b = (b ^ a) >>> 0;
    }
    a = (a + ks[(r + 1) % 3]) >>> 0;
    b = (b + ks[(r + 2) % 3] + r + 1) >>> 0;
  }
  return [a, b];
}

export function key(seed: number): Key {
  if (!Number.isInteger(seed)) throw new TensorError('key', `seed must be an integer, got ${seed}`);
  return new Key(Math.floor(seed / 2 ** 32) >>> 0, seed >>> 0);
}

export function split(k: Key, n = 2): Key[] {
  return Array.from({ length: n }, (_, i) => {
    const [a, b] = threefry2x32(k.k0, k.k1, 0, i);
    return new Key(a, b);
  });
}

export function foldIn(k: Key, data: number): Key {
  const [a, b] = threefry2x32(k.k0, k.k1, data >>> 0, 0x9e3779b9);
  return new Key(a, b);
}

/** n uniformly distributed 32-bit words for this key. */
export function bits(k: Key, n: number): Uint32Array {
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i += 2) {
    const [a, b] = threefry2x32(k.k0, k.k1, i >>> 1, 0x5bd1e995);
    out[i] = a;
    if (i + 1 < n) out[i + 1] = b;
  }
  return out;
}

/** Uniform floats in [0, 1) with 24 random bits (exact in float32). */
function unit(k: Key, n: number): Float64Array {
  const b = bits(k, n);
  return Float64Array.from(b, (v) => (v >>> 8) / 16777216);
}

function checked(op: string, shape: Shape, opts: CreateOptions): { n: number; dtype: DType } {
  checkShape(op, shape);
  return { n: sizeOf(shape), dtype: opts.dtype ?? 'float32' };
}

export function uniform(k: Key, shape: Shape, opts: CreateOptions & { low?: number; high?: number } = {}): Tensor {
  const { n } = checked('uniform', shape, opts);
  const lo = opts.low ?? 0, hi = opts.high ?? 1;
  return fromArray(unit(k, n).map((u) => lo + (hi - lo) * u), shape, { dtype: 'float32', ...opts });
}

/** Standard normal draws (Box-Muller on pairs of uniforms). */
export function normal(k: Key, shape: Shape, opts: CreateOptions & { mean?: number; std?: number } = {}): Tensor {
  const { n } = checked('normal', shape, opts);
  const u = unit(k, 2 * Math.ceil(n / 2));
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - u[i])); // 1-u in (0, 1]
    const th = 2 * Math.PI * u[i + 1];
    out[i] = r * Math.cos(th);
    if (i + 1 < n) out[i + 1] = r * Math.sin(th);
  }
  const m = opts.mean ?? 0, s = opts.std ?? 1;
  return fromArray(out.map((v) => m + s * v), shape, { dtype: 'float32', ...opts });
}

export function bernoulli(k: Key, p: number, shape: Shape, opts: CreateOptions = {}): Tensor {
  if (!(p >= 0 && p <= 1)) throw new TensorError('bernoulli', `p must be in [0, 1], got ${p}`);
  const { n } = checked('bernoulli', shape, opts);
  return fromArray(unit(k, n).map((u) => +(u < p)), shape, { dtype: 'bool', ...opts });
}

/** A random permutation of 0..n-1 (sorting by random words; ties broken by index). */
export function permutationArray(k: Key, n: number): Int32Array {
  const b = bits(k, n);
  const idx = Array.from({ length: n }, (_, i) => i).sort((x, y) => b[x] - b[y] || x - y);
  return Int32Array.from(idx);
}

export function permutation(k: Key, n: number, opts: CreateOptions = {}): Tensor {
  return fromArray(permutationArray(k, n), [n], { ...opts, dtype: 'int32' });
}
