import type { Backend, Aval } from './backend.js';
import { type DType, type TypedArray } from './dtype.js';
import { TensorError } from './errors.js';
import { sizeOf, type Shape } from './shape.js';

// ---------------------------------------------------------------------------
// Memory model (the one model, documented in the README):
//  * A concrete tensor holds one reference to a Storage (a backend buffer).
//    Several tensors may share one Storage (reshape is zero-copy); the buffer is
//    freed when its last tensor is disposed.
//  * `t.dispose()` releases a tensor; `tidy(fn)` disposes every tensor created inside
//    fn except those it returns (anywhere inside arrays/objects) or `keep`s.
//  * Transforms (jvp, grad, ...) run the user's function inside such a scope when
//    they are the outermost transform, so their intermediates and residuals are freed
//    when they return. While any transform is active, `tidy` does not dispose: traced
//    residuals may still be needed by an outer transform.
//  * `memory()` counts live tensors and live buffers; tests assert they return to
//    their baseline.
// ---------------------------------------------------------------------------

let liveTensors = 0;
let liveBuffers = 0;

export class Storage {
  refs = 1;
  constructor(readonly backend: Backend, readonly buffer: unknown) {
    liveBuffers++;
  }
  retain(): this {
    this.refs++;
    return this;
  }
  release(): void {
    if (--this.refs === 0) {
      liveBuffers--;
      this.backend.free(this.buffer);
    }
  }
}

/** The interface a transform's trace offers to `bind` (implemented in @scm/autodiff). */
export interface Trace {
  readonly level: number;
  /** Wrap a value of a lower level as a tracer of this trace. */
  lift(x: Tensor): Tensor;
  process(prim: import('./primitive.js').Primitive<any>, tracers: Tensor[], params: any): Tensor;
}

export class Tensor implements Aval {
  readonly shape: Shape;
  readonly dtype: DType;
  /** Set on tracers (subclasses in @scm/autodiff); null on concrete tensors. */
  readonly trace: Trace | null = null;
  /** @internal concrete tensors only */
  _storage: Storage | null;
  private _disposed = false;

  constructor(shape: Shape, dtype: DType, storage: Storage | null) {
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this._storage = storage;
    if (storage) {
      liveTensors++;
      track(this);
    }
  }

  get size(): number {
    return sizeOf(this.shape);
  }
  get ndim(): number {
    return this.shape.length;
  }
  get isDisposed(): boolean {
    return this._disposed;
  }

  /** The backend this tensor's data lives on (for tracers: the backend of the underlying primal). */
  get backend(): Backend {
    return this.concrete('backend').storage.backend;
  }

  /** @internal the storage of a live concrete tensor. */
  get storage(): Storage {
    if (this._disposed || !this._storage) throw new TensorError('tensor', 'this tensor was disposed and can no longer be used');
    return this._storage;
  }

  /** The concrete tensor underneath tracers (a tracer's primal value). */
  concrete(op: string): Tensor {
    let t: Tensor = this;
    while (t.trace) t = t.primalOf();
    if (t._disposed) throw new TensorError(op, 'this tensor was disposed and can no longer be used', [t.shape]);
    return t;
  }

  /** @internal overridden by tracers: the value one level down. */
  primalOf(): Tensor {
    return this;
  }

  /** @internal overridden by tracers: every tensor (of any level) a tracer holds. */
  children(): Tensor[] {
    return [];
  }

  /** Read the values back (for tracers: the primal's values). */
  async data(): Promise<TypedArray> {
    const c = this.concrete('data');
    return c.storage.backend.read(c.storage.buffer, c);
  }

  /** Synchronous readback on the reference, cpu and webasm backends. */
  dataSync(): TypedArray {
    const c = this.concrete('dataSync');
    return c.storage.backend.readSync(c.storage.buffer, c);
  }

  /** Nested JS arrays (a number for a scalar). */
  async toArray(): Promise<NestedArray> {
    return nest(Array.from(await this.data()), this.shape, this.dtype);
  }

  toArraySync(): NestedArray {
    return nest(Array.from(this.dataSync()), this.shape, this.dtype);
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new TensorError('item', 'expected a tensor with exactly one element', [this.shape]);
    return (await this.data())[0];
  }

  dispose(): void {
    if (this._disposed || !this._storage) return;
    this._disposed = true;
    liveTensors--;
    this._storage.release();
    this._storage = null;
  }

  toString(): string {
    const head = `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}`;
    if (this.trace) return `${head}, traced at level ${this.trace.level})`;
    if (this._disposed) return `${head}, disposed)`;
    try {
      return `${head}, backend=${this.backend.name})\n${formatValues(Array.from(this.dataSync()), this.shape, this.dtype)}`;
    } catch {
      return `${head}, backend=${this.backend.name})`;
    }
  }
}

export type NestedArray = number | boolean | NestedArray[];

function nest(values: number[], shape: Shape, dtype: DType): NestedArray {
  const conv = (v: number) => (dtype === 'bool' ? v !== 0 : v);
  if (shape.length === 0) return conv(values[0]);
  const build = (offset: number, d: number): NestedArray[] => {
    const n = shape[d];
    const inner = sizeOf(shape.slice(d + 1));
    const out: NestedArray[] = [];
    for (let i = 0; i < n; i++) out.push(d === shape.length - 1 ? conv(values[offset + i]) : build(offset + i * inner, d + 1));
    return out;
  };
  return build(0, 0);
}

/** Printing in NumPy's style, with long dimensions elided. */
export function formatValues(values: number[], shape: Shape, dtype: DType): string {
  const fmt = (v: number) => (dtype === 'bool' ? (v ? 'true' : 'false') : dtype === 'int32' ? String(v) : Number.isInteger(v) ? `${v}.` : v.toPrecision(5).replace(/(\.\d*?)0+($|e)/, '$1$2'));
  if (shape.length === 0) return fmt(values[0]);
  const edge = 3;
  const rec = (offset: number, d: number, indent: string): string => {
    const n = shape[d];
    const inner = sizeOf(shape.slice(d + 1));
    const idx = n > 2 * edge + 1 ? [...Array(edge).keys(), -1, ...Array.from({ length: edge }, (_, k) => n - edge + k)] : [...Array(n).keys()];
    if (d === shape.length - 1) return `[${idx.map((i) => (i < 0 ? '...' : fmt(values[offset + i]))).join(', ')}]`;
    const parts = idx.map((i) => (i < 0 ? '...' : rec(offset + i * inner, d + 1, indent + ' ')));
    return `[${parts.join(`,\n${indent} `)}]`;
  };
  return rec(0, 0, '');
}

// ----------------------------- scopes ------------------------------------

const scopes: Set<Tensor>[] = [];
let activeTransforms = 0;

function track(t: Tensor): void {
  if (scopes.length) scopes[scopes.length - 1].add(t);
}

/** Collect every concrete tensor reachable from a result (arrays, objects, tracers). */
export function collectTensors(result: unknown, out: Set<Tensor> = new Set()): Set<Tensor> {
  if (result instanceof Tensor) {
    if (!out.has(result)) {
      out.add(result);
      for (const c of result.children()) collectTensors(c, out);
    }
  } else if (Array.isArray(result)) {
    for (const r of result) collectTensors(r, out);
  } else if (result && typeof result === 'object' && Object.getPrototypeOf(result) === Object.prototype) {
    for (const r of Object.values(result)) collectTensors(r, out);
  }
  return out;
}

/**
 * Run fn, then dispose every tensor it created that is not part of its result.
 * Tensors in the result move to the enclosing scope.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    if (activeTransforms === 0) for (const t of scope) t.dispose();
    else moveToParent(scope);
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    // Refused, but what it made before its first await must not leak.
    if (activeTransforms === 0) for (const t of scope) t.dispose();
    else moveToParent(scope);
    throw new TensorError('tidy', 'the function must be synchronous (it returned a Promise)');
  }
  if (activeTransforms > 0) {
    moveToParent(scope);
    return result;
  }
  // The common case of an op's scope: it made nothing but the tensor it returns.
  if (scope.size === 0 || (scope.size === 1 && result instanceof Tensor && scope.has(result))) {
    for (const t of scope) track(t);
    return result;
  }
  const kept = collectTensors(result);
  for (const t of scope) {
    if (kept.has(t)) track(t);
    else t.dispose();
  }
  return result;
}

function moveToParent(scope: Set<Tensor>): void {
  for (const t of scope) track(t);
}

/** Keep tensors alive past the enclosing tidy (they move out of every scope). */
export function keep<T>(result: T): T {
  for (const t of collectTensors(result)) for (const s of scopes) s.delete(t);
  return result;
}

/** Dispose every concrete tensor in a result (arrays, objects, tracers). */
export function dispose(result: unknown): void {
  for (const t of collectTensors(result)) t.dispose();
}

/**
 * @internal Transforms run their body through this. The outermost transform owns a
 * scope and disposes its intermediates (residuals included) when it returns; nested
 * ones leave them to it, since an outer trace may still hold them.
 */
export function transformScope<T>(fn: () => T): T {
  const outermost = activeTransforms === 0;
  const scope = new Set<Tensor>();
  scopes.push(scope);
  activeTransforms++;
  let result: T;
  try {
    result = fn();
  } catch (e) {
    activeTransforms--;
    scopes.pop();
    if (outermost) for (const t of scope) t.dispose();
    else moveToParent(scope);
    throw e;
  }
  activeTransforms--;
  scopes.pop();
  if (!outermost) {
    moveToParent(scope);
    return result;
  }
  const kept = collectTensors(result);
  for (const t of scope) {
    if (kept.has(t)) track(t);
    else t.dispose();
  }
  return result;
}

/**
 * @internal Run fn as part of a transform that hands its values on to the caller's scope
 * (vjp: the residuals its pullback reads later). Scopes inside defer to the enclosing one,
 * as they do inside transformScope, so no op or tidy frees a residual.
 */
export function withinTransform<T>(fn: () => T): T {
  activeTransforms++;
  try {
    return fn();
  } finally {
    activeTransforms--;
  }
}

/** @internal whether the innermost scope created this tensor (transforms free only their own). */
export function ownedByCurrentScope(t: Tensor): boolean {
  return scopes.length > 0 && scopes[scopes.length - 1].has(t);
}

/** @internal whether a transform is running. */
export function transformDepth(): number {
  return activeTransforms;
}

export function memory(): { tensors: number; buffers: number } {
  return { tensors: liveTensors, buffers: liveBuffers };
}
