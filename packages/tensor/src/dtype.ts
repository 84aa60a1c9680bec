/** Element types. float64 exists on the reference backend only; GPU.js kernels compute in float32. */
export type DType = 'float32' | 'float64' | 'int32' | 'bool';

export type TypedArray = Float32Array | Float64Array | Int32Array | Uint8Array;

export const DTYPES: readonly DType[] = ['bool', 'int32', 'float32', 'float64'];

export function isFloat(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64';
}

/** The result type of mixing two dtypes: bool < int32 < float32 < float64. */
export function promote(a: DType, b: DType): DType {
  return DTYPES.indexOf(a) >= DTYPES.indexOf(b) ? a : b;
}

export function arrayFor(dtype: DType, n: number): TypedArray {
  switch (dtype) {
    case 'float32': return new Float32Array(n);
    case 'float64': return new Float64Array(n);
    case 'int32': return new Int32Array(n);
    case 'bool': return new Uint8Array(n);
  }
}

/** Copy numbers into a typed array of `dtype` (rounding floats, truncating ints, bools as 0/1). */
export function castArray(src: ArrayLike<number>, dtype: DType): TypedArray {
  const out = arrayFor(dtype, src.length);
  if (dtype === 'bool') for (let i = 0; i < src.length; i++) out[i] = src[i] ? 1 : 0;
  else out.set(src as ArrayLike<number>);
  return out;
}
