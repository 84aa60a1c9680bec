import gpujs from 'gpu.js';
import type { Aval, Backend } from '../backend.js';
import { castArray, type TypedArray } from '../dtype.js';
import { TensorError } from '../errors.js';
import type { Primitive } from '../primitive.js';
import { sizeOf } from '../shape.js';
import type { KernelRunner } from './plans.js';
import { getThreads, runParts } from './threads.js';

type GpuMode = 'cpu' | 'webasm' | 'webgpu';
// gpu.js ships CommonJS with loose typings; the backend only uses createKernel.
const { GPU } = gpujs as unknown as { GPU: new (settings: { mode: GpuMode }) => GpuInstance };
interface GpuInstance {
  createKernel(source: string, settings: Record<string, unknown>): KernelFn;
  createPipeline(fn: (...handles: unknown[]) => unknown, settings?: Record<string, unknown>): GpuPipeline;
}
/** A compiled `createPipeline` plan (see replay.ts). */
export interface GpuPipeline {
  (...args: Float32Array[]): Promise<Float32Array | Float32Array[]>;
  readonly executorKind: string | null;
  readonly fallbackReason: string | null;
  destroy(): void;
}

/** What `replay` sees of a backend while it traces a function: every kernel and host plan that ran. */
export interface KernelRecorder {
  /** A kernel ran on these input buffers and made `result`. */
  kernel(kernel: KernelFn, inputs: readonly unknown[], result: unknown): void;
  /** A host plan (cpu, webasm: a packed product) ran; `run` repeats it on other data. */
  host(run: (inputs: Float32Array[]) => Float32Array, inputs: readonly unknown[], result: unknown): void;
  /** A value was read back: the traced function depends on data, which a plan cannot replay. */
  read(): never;
}
type KernelFn = ((...args: unknown[]) => unknown) & { destroy?: () => void };
interface DeviceHandle {
  toArray(): Promise<Float32Array> | Float32Array;
  delete?(): void;
}

/**
 * GPU.js backends. Every tensor is stored as float32 (int32 and bool values are exact in
 * float32 up to 2^24). On cpu and webasm a buffer is a Float32Array and kernels run
 * synchronously. On webgpu a buffer is a Promise of a device-resident result: each op
 * chains onto its inputs' promises, so user code stays synchronous and only readback
 * (`await t.data()`) waits.
 */
export class GpuJsBackend implements Backend {
  readonly supportsFloat64 = false;
  private readonly kernels = new Map<string, KernelFn>();
  /** Number of kernels compiled so far (tests check the cache works). */
  compiled = 0;
  /** cpu/webasm: how often each fast path ran, by `primitive:variant` (tests check they are taken). */
  readonly planRuns = new Map<string, number>();
  /** cpu/webasm: compiled kernels by primitive and application (see applicationKey). */
  private readonly signatures = new Map<Primitive<any>, Map<string, KernelFn>>();
  /** webgpu: the pending kernels and reads of each buffer; it is deleted only after they ran. */
  private readonly readers = new WeakMap<object, Promise<unknown>[]>();

  /** webgpu: whether long sums with few cells are split (Primitive.split); benchmarks compare both. */
  splitSums = true;

  /** Set while `replay` traces a function on this backend. */
  recorder: KernelRecorder | null = null;

  constructor(readonly name: GpuMode, private readonly gpu: GpuInstance) {}

  static create(mode: GpuMode): GpuJsBackend {
    return new GpuJsBackend(mode, new GPU({ mode }));
  }

  private kernel(source: string, n: number, argKinds: string): KernelFn {
    // The output size is a kernel setting, not part of the source: it belongs in the key.
    const key = `${argKinds}|${n}|${source}`;
    let k = this.kernels.get(key);
    if (!k) {
      const settings: Record<string, unknown> = { output: [n], tactic: 'precision' };
      if (this.name === 'webgpu') Object.assign(settings, { pipeline: true, immutable: true });
      k = this.gpu.createKernel(source, settings);
      this.kernels.set(key, k);
      this.compiled++;
    }
    return k;
  }

  fromHost(data: TypedArray, _aval: Aval): unknown {
    const f32 = Float32Array.from(data);
    return this.name === 'webgpu' ? quiet(Promise.resolve(f32)) : f32;
  }

  async read(buffer: unknown, aval: Aval): Promise<TypedArray> {
    this.recorder?.read();
    const arr = this.name === 'webgpu' ? await this.readDevice(buffer) : (buffer as Float32Array);
    return castArray(arr.length === sizeOf(aval.shape) ? arr : arr.subarray(0, sizeOf(aval.shape)), aval.dtype);
  }

  readSync(buffer: unknown, aval: Aval): TypedArray {
    this.recorder?.read();
    if (this.name === 'webgpu') throw new TensorError('dataSync', 'the webgpu backend reads back asynchronously: use `await t.data()`');
    return castArray(buffer as Float32Array, aval.dtype);
  }

  free(buffer: unknown): void {
    if (this.name === 'webgpu') void this.deleteAfterReaders(buffer);
  }

  /** webgpu: device buffers a backend made for itself (split sums' partials) and not yet deleted. */
  intermediates = 0;

  // A disposed tensor's buffer may still feed kernels queued on it: delete it after them.
  private deleteAfterReaders(buffer: unknown): Promise<void> {
    const pending = this.readers.get(buffer as object) ?? [];
    this.readers.delete(buffer as object);
    return Promise.allSettled(pending).then(() => buffer as Promise<unknown>).then((h) => {
      if (!(h instanceof Float32Array)) (h as DeviceHandle).delete?.();
    }, () => {});
  }

  run(prim: Primitive<any>, inputs: unknown[], inAvals: Aval[], params: unknown, out: Aval): unknown {
    if (this.name !== 'webgpu') {
      const result = this.runSync(prim, (inputs as Float32Array[]).map(nonEmpty), inAvals, params, out);
      if (this.recorder) {
        if (prim.plan?.(inAvals, params, out)) this.recorder.host((data) => this.runSync(prim, data.map(nonEmpty), inAvals, params, out), inputs, result);
        else this.recorder.kernel(this.cellKernel(prim, inAvals, params, out), inputs, result);
      }
      return result;
    }
    const n = sizeOf(out.shape);
    const split = this.splitSums ? prim.split?.(inAvals, params, out) : null;
    const parts = split ? splitParts(n, split.extent, split.terms) : 1;
    const source = parts > 1 ? split!.kernel(parts) : prim.kernel(inAvals, params, out);
    const result = quiet(
      Promise.all(inputs as Promise<unknown>[]).then((args) => {
        const kinds = args.map((a) => (a instanceof Float32Array ? 'a' : 'd')).join('');
        return this.kernel(source, n * parts, `${kinds}|${argSizes(inAvals)}`)(...args.map(nonEmpty));
      }),
    );
    for (const b of inputs) this.addReader(b, result);
    // A replay's pipelines pass every argument from the host (GPU.js's encoder takes no device handles as arguments).
    this.recorder?.kernel(this.kernel(source, n * parts, `${'a'.repeat(inputs.length)}|${argSizes(inAvals)}`), inputs, result);
    if (parts === 1) return result;
    // The partial sums, laid out [parts, n], summed by a second kernel, then deleted.
    this.planRuns.set(`${prim.name}:split`, (this.planRuns.get(`${prim.name}:split`) ?? 0) + 1);
    const combine = `function (x0) {\nlet s = 0.0;\nfor (let p = 0; p < ${parts}; p++) { s += x0[p * ${n} + this.thread.x]; }\nreturn s;\n}`;
    const total = quiet(result.then((partial) => this.kernel(combine, n, `d|${n * parts}`)(partial)));
    this.addReader(result, total);
    this.recorder?.kernel(this.kernel(combine, n, `a|${n * parts}`), [result], total);
    this.intermediates++;
    void this.deleteAfterReaders(result).then(() => this.intermediates--);
    return total;
  }

  /**
   * cpu and webasm: the primitive's host plan when it has one for these shapes (the fast
   * matmul and convolutions), else its one-cell kernel. Either way a fresh Float32Array:
   * GPU.js copies results out of its own memory, so each tensor owns its buffer.
   */
  runSync(prim: Primitive<any>, inputs: Float32Array[], inAvals: readonly Aval[], params: unknown, out: Aval): Float32Array {
    const plan = prim.plan?.(inAvals, params, out);
    if (plan) {
      const key = `${prim.name}:${plan.variant}`;
      this.planRuns.set(key, (this.planRuns.get(key) ?? 0) + 1);
      return plan.run(inputs, this.runner);
    }
    return this.cellKernel(prim, inAvals, params, out)(...inputs) as Float32Array;
  }

  /**
   * cpu and webasm: the primitive's one-cell kernel for this application. Found by a short
   * signature, it costs no source generation per call (about half of our per-op overhead
   * on small tensors).
   */
  cellKernel(prim: Primitive<any>, inAvals: readonly Aval[], params: unknown, out: Aval): KernelFn {
    let bySignature = this.signatures.get(prim);
    if (!bySignature) this.signatures.set(prim, (bySignature = new Map()));
    const signature = applicationKey(inAvals, params);
    let k = bySignature.get(signature);
    if (!k) {
      k = this.kernel(prim.kernel(inAvals, params, out), sizeOf(out.shape), argSizes(inAvals));
      bySignature.set(signature, k);
    }
    return k;
  }

  /** A buffer's values on the host (webgpu: read back; cpu, webasm: the buffer itself). */
  async hostArray(buffer: unknown): Promise<Float32Array> {
    return this.name === 'webgpu' ? this.readDevice(buffer) : (buffer as Float32Array);
  }

  /** GPU.js's `createPipeline`: an orchestration of kernels traced once and replayed as one plan. */
  createPipeline(orchestration: (...handles: unknown[]) => unknown, settings?: Record<string, unknown>): GpuPipeline {
    return this.gpu.createPipeline(orchestration, settings);
  }

  /** Runs the kernels of host plans: compiled once per source and output grid. */
  private readonly runner: KernelRunner = {
    // Helper threads run WebAssembly; GPU.js's cpu mode (the debugging backend) stays on one thread.
    threads: () => (this.name === 'webasm' ? getThreads() : 1),
    runParts: (components, parts) =>
      runParts(
        parts,
        parts.map((p) => sizeOf(p.output) * components),
        (p) => this.runner.run(p.source, p.output, components, p.args),
      ),
    run: (source: string, output: readonly number[], components: number, args: readonly Float32Array[]): Float32Array => {
      // GPU.js fixes argument sizes when it compiles: they are part of the key.
      const key = `plan|${output.join('x')}|${args.map((a) => a.length).join(',')}|${source}`;
      let k = this.kernels.get(key);
      if (!k) {
        k = this.gpu.createKernel(source, { output: [...output], tactic: 'precision' });
        flatOutput(k);
        this.kernels.set(key, k);
        this.compiled++;
      }
      const result = k(...args);
      return flatCells(result, sizeOf(output) * components);
    },
  };

  private addReader(buffer: unknown, reader: Promise<unknown>): void {
    const list = this.readers.get(buffer as object) ?? [];
    this.readers.set(buffer as object, list);
    list.push(reader);
    // Forget it once it ran, so long-lived buffers (weights) do not collect readers.
    const forget = () => {
      const i = list.indexOf(reader);
      if (i >= 0) list.splice(i, 1);
    };
    reader.then(forget, forget);
  }

  /** webgpu: read a buffer back; it is not deleted before the read is done. */
  private readDevice(buffer: unknown): Promise<Float32Array> {
    const host = quiet((buffer as Promise<unknown>).then((h) => (h instanceof Float32Array ? h : (h as DeviceHandle).toArray())));
    this.addReader(buffer, host);
    return host;
  }
}

/**
 * How many parts a sum of `terms` terms per cell over `cells` cells is cut into on webgpu
 * (Primitive.split; 1: not cut). A GPU keeps some 100,000 threads busy: a sum that gives it
 * far fewer, with long loops, is cut along its outermost loop (`extent`) until each thread
 * sums about 256 terms or the cells times the parts reach about 2^19.
 */
export function splitParts(cells: number, extent: number, terms: number): number {
  if (cells >= 1 << 16 || terms <= 1024) return 1;
  const parts = Math.min(extent, Math.ceil(terms / 256), Math.max(1, Math.floor((1 << 19) / cells)));
  // Parts of equal chunks: ceil(extent / chunk) of them, none empty.
  return parts < 2 ? 1 : Math.ceil(extent / Math.ceil(extent / parts));
}

/**
 * webasm: have a kernel return the flat array it computed. For a multi-dimensional or
 * vector-valued output GPU.js otherwise builds nested arrays with one subarray per cell
 * (50 to 160 ms measured for the 262,144 cells of a 1024x1024 product); `flatCells`
 * accepts either form.
 */
function flatOutput(k: KernelFn): void {
  const inner = (k as unknown as { kernel?: { _shapeOutput?: unknown } }).kernel;
  if (inner && typeof inner._shapeOutput === 'function') inner._shapeOutput = (data: Float32Array) => data;
}

/** A kernel result (flat, or nested arrays of rows or of per-cell vectors) as one flat array. */
function flatCells(result: unknown, length: number): Float32Array {
  if (result instanceof Float32Array && result.length === length) return result;
  const flat = new Float32Array(length);
  let at = 0;
  const walk = (v: unknown): void => {
    if (v instanceof Float32Array) {
      flat.set(v, at);
      at += v.length;
    } else if (Array.isArray(v)) {
      for (const x of v) walk(x);
    } else {
      flat[at++] = v as number;
    }
  };
  walk(result);
  if (at !== length) throw new Error(`internal: a kernel returned ${at} values where ${length} were expected`);
  return flat;
}

/** GPU.js cannot pass an empty array to a kernel; a kernel never reads an empty input, so one cell stands in. */
export function nonEmpty<T>(a: T): T | Float32Array {
  return a instanceof Float32Array && a.length === 0 ? new Float32Array(1) : a;
}

/**
 * What a primitive's kernel source depends on: its inputs' dtypes and shapes and its
 * params (the output aval follows from them). Numbers are written exactly (NaN, ±Infinity
 * and -0 kept apart), so two applications share a key only if they share a kernel.
 */
function applicationKey(avals: readonly Aval[], params: unknown): string {
  let key = '';
  for (const a of avals) key += `${a.dtype}[${a.shape.join(',')}]`;
  return `${key}|${valueKey(params)}`;
}

function valueKey(v: unknown): string {
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
  if (Array.isArray(v)) return `[${v.map(valueKey).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    let key = '{';
    for (const k of Object.keys(v)) key += `${k}:${valueKey((v as Record<string, unknown>)[k])},`;
    return `${key}}`;
  }
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** GPU.js fixes argument sizes when it compiles, and a source need not mention them (slice): they belong in the cache key. */
function argSizes(avals: readonly Aval[]): string {
  return avals.map((a) => sizeOf(a.shape)).join(',');
}

// Keep a stored promise from raising an unhandled rejection; the error still reaches
// whoever awaits it (readback), with the op's message.
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}
