import type { Aval, Backend } from '../backend.js';
import { arrayFor, castArray, type TypedArray } from '../dtype.js';
import type { Primitive } from '../primitive.js';

/** The float64 oracle: plain TypeScript loops over typed arrays. Not a fast path. */
export class ReferenceBackend implements Backend {
  readonly name = 'reference' as const;
  readonly supportsFloat64 = true;

  fromHost(data: TypedArray, aval: Aval): TypedArray {
    return castArray(data, aval.dtype);
  }
  async read(buffer: unknown, aval: Aval): Promise<TypedArray> {
    return this.readSync(buffer, aval);
  }
  readSync(buffer: unknown, aval: Aval): TypedArray {
    return castArray(buffer as TypedArray, aval.dtype);
  }
  free(): void {}
  run(prim: Primitive<any>, inputs: unknown[], inAvals: Aval[], params: unknown, out: Aval): TypedArray {
    const result = prim.reference(inputs as TypedArray[], inAvals, params, out);
    const arr = arrayFor(out.dtype, result.length);
    if (out.dtype === 'bool') for (let i = 0; i < result.length; i++) arr[i] = result[i] ? 1 : 0;
    else arr.set(result);
    return arr;
  }
}
