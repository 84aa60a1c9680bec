import gpujs from 'gpu.js';
import type { Aval, Backend } from '../backend.js';
import { castArray, type TypedArray } from '../dtype.js';
import { TensorError } from '../errors.js';
import type { Primitive } from '../primitive.js';
import { sizeOf } from '../shape.js';

type GpuMode = 'cpu' | 'webasm' | 'webgpu';
// gpu.js ships CommonJS with loose typings; the backend only uses createKernel.
const { GPU } = gpujs as unknown as { GPU: new (settings: { mode: GpuMode }) => GpuInstance };
interface GpuInstance {
  createKernel(source: string, settings: Record<string, unknown>): KernelFn;
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

  constructor(readonly name: GpuMode, private readonly gpu: GpuInstance) {}

  static create(mode: GpuMode): GpuJsBackend {
    return new GpuJsBackend(mode, new GPU({ mode }));
  }

  private kernel(source: string, n: number, argKinds: string): KernelFn {
    const key = `${argKinds}|${source}`;
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
    const value = this.name === 'webgpu' ? await (buffer as Promise<unknown>) : buffer;
    const arr = value instanceof Float32Array ? value : await (value as DeviceHandle).toArray();
    return castArray(arr.length === sizeOf(aval.shape) ? arr : arr.subarray(0, sizeOf(aval.shape)), aval.dtype);
  }

  readSync(buffer: unknown, aval: Aval): TypedArray {
    if (this.name === 'webgpu') throw new TensorError('dataSync', 'the webgpu backend reads back asynchronously: use `await t.data()`');
    return castArray(buffer as Float32Array, aval.dtype);
  }

  free(buffer: unknown): void {
    if (this.name === 'webgpu') {
      (buffer as Promise<unknown>).then((h) => {
        if (!(h instanceof Float32Array)) (h as DeviceHandle).delete?.();
      }, () => {});
    }
  }

  run(prim: Primitive<any>, inputs: unknown[], inAvals: Aval[], params: unknown, out: Aval): unknown {
    const source = prim.kernel(inAvals, params, out);
    const n = sizeOf(out.shape);
    if (this.name !== 'webgpu') {
      const result = this.kernel(source, n, '')(...inputs) as Float32Array;
      // GPU.js may hand back a view into its own memory: copy so each tensor owns its buffer.
      return result;
    }
    return quiet(
      Promise.all(inputs as Promise<unknown>[]).then((args) => {
        const kinds = args.map((a) => (a instanceof Float32Array ? 'a' : 'd')).join('');
        return this.kernel(source, n, kinds)(...args);
      }),
    );
  }
}

// Keep a stored promise from raising an unhandled rejection; the error still reaches
// whoever awaits it (readback), with the op's message.
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}
