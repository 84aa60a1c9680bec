import { TensorError } from './errors.js';

export type Shape = readonly number[];

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major (C order) strides in elements. */
export function stridesOf(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = s;
    s *= shape[d];
  }
  return strides;
}

export function shapesEqual(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** NumPy broadcasting of any number of shapes. */
export function broadcastShapes(op: string, ...shapes: Shape[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const d = s[s.length - 1 - i];
      const j = rank - 1 - i;
      if (out[j] === 1) out[j] = d;
      else if (d !== 1 && d !== out[j]) {
        throw new TensorError(op, 'shapes do not broadcast (each dimension must match or be 1)', shapes);
      }
    }
  }
  return out;
}

/** Normalize one axis (negative counts from the end) and check it is in range. */
export function normAxis(op: string, axis: number, rank: number, shape: Shape = []): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    throw new TensorError(op, `axis ${axis} is out of range for a tensor of rank ${rank} (expected -${rank} <= axis < ${rank})`, [shape]);
  }
  return axis < 0 ? axis + rank : axis;
}

/** Normalize a list of axes (undefined = all), sorted, without duplicates. */
export function normAxes(op: string, axes: number | readonly number[] | undefined, rank: number, shape: Shape = []): number[] {
  if (axes === undefined) return [...Array(rank).keys()];
  const list = typeof axes === 'number' ? [axes] : axes;
  const out = list.map((a) => normAxis(op, a, rank, shape));
  if (new Set(out).size !== out.length) throw new TensorError(op, `repeated axis in [${list.join(', ')}]`, [shape]);
  return out.sort((a, b) => a - b);
}

export function checkShape(op: string, shape: Shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new TensorError(op, `dimensions must be non-negative integers`, [shape]);
  }
}

/** For the reference backend: the flat input index of every flat output index under broadcasting. */
export function broadcastMap(outShape: Shape, inShape: Shape): Int32Array {
  const n = sizeOf(outShape);
  const map = new Int32Array(n);
  const offset = outShape.length - inShape.length;
  const inStrides = stridesOf(inShape);
  const outStrides = stridesOf(outShape);
  for (let i = 0; i < n; i++) {
    let idx = 0;
    let rest = i;
    for (let d = 0; d < outShape.length; d++) {
      const c = Math.floor(rest / outStrides[d]);
      rest -= c * outStrides[d];
      const k = d - offset;
      if (k >= 0 && inShape[k] !== 1) idx += c * inStrides[k];
    }
    map[i] = idx;
  }
  return map;
}
