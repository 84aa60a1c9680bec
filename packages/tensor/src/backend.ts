import type { DType, TypedArray } from './dtype.js';
import type { Shape } from './shape.js';
import type { Primitive } from './primitive.js';

/** Shape and dtype of a value: all that a shape rule needs to see. */
export interface Aval {
  readonly shape: Shape;
  readonly dtype: DType;
}

export type BackendName = 'reference' | 'cpu' | 'webasm' | 'webgpu';

/**
 * A backend stores buffers and runs primitives on them. Buffers are opaque to the rest
 * of the library; the reference backend holds typed arrays, GPU.js backends hold
 * Float32Arrays (webasm, cpu) or promises of device-resident buffers (webgpu).
 */
export interface Backend {
  readonly name: BackendName;
  /** Whether float64 tensors can live here. */
  readonly supportsFloat64: boolean;
  fromHost(data: TypedArray, aval: Aval): unknown;
  /** Read a buffer back as a typed array of the aval's dtype. */
  read(buffer: unknown, aval: Aval): Promise<TypedArray>;
  /** Synchronous readback where the backend allows it (throws on webgpu). */
  readSync(buffer: unknown, aval: Aval): TypedArray;
  free(buffer: unknown): void;
  run(prim: Primitive<any>, inputs: unknown[], inAvals: Aval[], params: any, out: Aval): unknown;
}
