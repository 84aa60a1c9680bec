/**
 * Independent float64 oracles for composite and data-movement ops, written from their
 * definitions (NumPy, Python slicing, PyTorch conv/pool conventions) with plain loops over
 * coordinates. They share no code with the library, so they also check the reference
 * backend and the composites' index arithmetic, which a backend-vs-reference comparison
 * cannot see.
 */

export interface Host {
  shape: number[];
  values: number[];
}

export const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d];
  }
  return s;
}

export function unravel(i: number, shape: readonly number[]): number[] {
  const c = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    c[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return c;
}

export function ravel(c: readonly number[], shape: readonly number[]): number {
  let i = 0;
  for (let d = 0; d < shape.length; d++) i = i * shape[d] + c[d];
  return i;
}

/** Build an array of `shape` from a function of coordinates. */
export function build(shape: number[], at: (c: number[]) => number): Host {
  return { shape, values: Array.from({ length: sizeOf(shape) }, (_, i) => at(unravel(i, shape))) };
}

export const get = (x: Host, c: readonly number[]) => x.values[ravel(c, x.shape)];

const normAxis = (a: number, rank: number) => (a < 0 ? a + rank : a);

export function normAxes(axes: number | readonly number[] | undefined, rank: number): number[] {
  if (axes === undefined) return [...Array(rank).keys()];
  return (typeof axes === 'number' ? [axes] : [...axes]).map((a) => normAxis(a, rank)).sort((a, b) => a - b);
}

/** Reduce `axes` with fn over the list of reduced values (NumPy's keepdims convention). */
export function reduce(x: Host, axes: number | readonly number[] | undefined, keepdims: boolean, fn: (vals: number[]) => number): Host {
  const ax = normAxes(axes, x.shape.length);
  const kept = x.shape.map((d, k) => (ax.includes(k) ? 1 : d));
  const groups = new Map<number, number[]>();
  x.values.forEach((v, i) => {
    const c = unravel(i, x.shape).map((cd, k) => (ax.includes(k) ? 0 : cd));
    const key = ravel(c, kept);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(v);
  });
  const values = Array.from({ length: sizeOf(kept) }, (_, k) => fn(groups.get(k) ?? []));
  return { shape: keepdims ? kept : x.shape.filter((_, k) => !ax.includes(k)), values };
}

/** Apply fn along one axis to each 1-D lane, returning a lane of the same length. */
export function alongAxis(x: Host, axis: number, fn: (lane: number[]) => number[]): Host {
  const a = normAxis(axis, x.shape.length);
  const out = [...x.values];
  const n = x.shape[a];
  const stride = stridesOf(x.shape)[a];
  x.values.forEach((_, i) => {
    if (unravel(i, x.shape)[a] !== 0) return;
    const idx = Array.from({ length: n }, (_, k) => i + k * stride);
    const lane = fn(idx.map((j) => x.values[j]));
    idx.forEach((j, k) => (out[j] = lane[k]));
  });
  return { shape: [...x.shape], values: out };
}

const sumOf = (v: number[]) => v.reduce((a, b) => a + b, 0);

export function logsumexp(v: number[]): number {
  const m = Math.max(...v);
  return m + Math.log(sumOf(v.map((x) => Math.exp(x - m))));
}

export const softmaxLane = (v: number[]) => {
  const lse = logsumexp(v);
  return v.map((x) => Math.exp(x - lse));
};

export function variance(v: number[], correction: number): number {
  const m = sumOf(v) / v.length;
  return sumOf(v.map((x) => (x - m) ** 2)) / (v.length - correction);
}

/** erf by composite Simpson quadrature of 2/√π·exp(−t²) (independent of the library's series). */
export function erf(x: number): number {
  const n = 2000;
  const h = x / n;
  let s = 1 + Math.exp(-x * x);
  for (let k = 1; k < n; k++) s += (k % 2 ? 4 : 2) * Math.exp(-((k * h) ** 2));
  return ((s * h) / 3) * (2 / Math.sqrt(Math.PI));
}

/** NumPy broadcasting of shapes. */
export function broadcast(...shapes: number[][]): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  return Array.from({ length: rank }, (_, k) => Math.max(...shapes.map((s) => s[s.length - rank + k] ?? 1)));
}

/** The element of x at output coordinates c under broadcasting. */
export function getBroadcast(x: Host, c: readonly number[]): number {
  const off = c.length - x.shape.length;
  return get(x, x.shape.map((d, k) => (d === 1 ? 0 : c[k + off])));
}

export function transpose(x: Host, perm?: readonly number[]): Host {
  const p = perm ? perm.map((a) => normAxis(a, x.shape.length)) : [...x.shape.keys()].reverse();
  return build(p.map((a) => x.shape[a]), (c) => {
    const src = new Array<number>(p.length);
    p.forEach((a, d) => (src[a] = c[d]));
    return get(x, src);
  });
}

/** The indices a Python slice start:stop:step takes from a sequence of length n. */
export function pySliceIndices(n: number, start: number | undefined, stop: number | undefined, step = 1): number[] {
  // CPython's PySlice_AdjustIndices.
  let lo: number, hi: number;
  if (step > 0) {
    lo = start === undefined ? 0 : start < 0 ? Math.max(start + n, 0) : Math.min(start, n);
    hi = stop === undefined ? n : stop < 0 ? Math.max(stop + n, 0) : Math.min(stop, n);
  } else {
    lo = start === undefined ? n - 1 : start < 0 ? Math.max(start + n, -1) : Math.min(start, n - 1);
    hi = stop === undefined ? -1 : stop < 0 ? Math.max(stop + n, -1) : Math.min(stop, n - 1);
  }
  const out: number[] = [];
  for (let i = lo; step > 0 ? i < hi : i > hi; i += step) out.push(i);
  return out;
}

export type SliceSpec = { start?: number; stop?: number; step?: number } | number | null;

/** x[specs] with Python semantics: numbers index (and drop the axis), null takes the axis whole. */
export function slice(x: Host, specs: readonly SliceSpec[]): Host {
  const lists = x.shape.map((n, d) => {
    const s = specs[d];
    if (typeof s === 'number') return [s < 0 ? s + n : s];
    if (!s) return [...Array(n).keys()];
    return pySliceIndices(n, s.start, s.stop, s.step ?? 1);
  });
  const full = build(lists.map((l) => l.length), (c) => get(x, c.map((k, d) => lists[d][k])));
  return { shape: full.shape.filter((_, d) => typeof specs[d] !== 'number'), values: full.values };
}

export function pad(x: Host, widths: readonly (readonly [number, number])[], value: number): Host {
  const shape = x.shape.map((n, d) => n + widths[d][0] + widths[d][1]);
  return build(shape, (c) => {
    const src = c.map((cd, d) => cd - widths[d][0]);
    return src.every((s, d) => s >= 0 && s < x.shape[d]) ? get(x, src) : value;
  });
}

export function flip(x: Host, axes?: number | readonly number[]): Host {
  const ax = normAxes(axes, x.shape.length);
  return build([...x.shape], (c) => get(x, c.map((cd, d) => (ax.includes(d) ? x.shape[d] - 1 - cd : cd))));
}

export function concat(xs: readonly Host[], axis: number): Host {
  const a = normAxis(axis, xs[0].shape.length);
  const shape = [...xs[0].shape];
  shape[a] = xs.reduce((s, x) => s + x.shape[a], 0);
  return build(shape, (c) => {
    let k = c[a];
    for (const x of xs) {
      if (k < x.shape[a]) return get(x, c.map((cd, d) => (d === a ? k : cd)));
      k -= x.shape[a];
    }
    throw new Error('concat oracle: out of range');
  });
}

export function take(x: Host, idx: Host, axis: number): Host {
  const a = normAxis(axis, x.shape.length);
  const r = idx.shape.length;
  const shape = [...x.shape.slice(0, a), ...idx.shape, ...x.shape.slice(a + 1)];
  return build(shape, (c) => get(x, [...c.slice(0, a), get(idx, c.slice(a, a + r)), ...c.slice(a + r)]));
}

/** NumPy matmul: 1-D operands are promoted to matrices and the added axis removed. */
export function matmul(a: Host, b: Host): Host {
  const A = a.shape.length === 1 ? { shape: [1, a.shape[0]], values: a.values } : a;
  const B = b.shape.length === 1 ? { shape: [b.shape[0], 1], values: b.values } : b;
  const [m, k] = A.shape.slice(-2);
  const n = B.shape[B.shape.length - 1];
  const batch = broadcast(A.shape.slice(0, -2), B.shape.slice(0, -2));
  const batchOf = (x: Host, c: number[]) => {
    const xb = x.shape.slice(0, -2);
    return c.slice(c.length - xb.length).map((cd, d) => (xb[d] === 1 ? 0 : cd));
  };
  const out = build([...batch, m, n], (c) => {
    const bc = c.slice(0, -2);
    const [i, j] = c.slice(-2);
    let s = 0;
    for (let p = 0; p < k; p++) s += get(A, [...batchOf(A, bc), i, p]) * get(B, [...batchOf(B, bc), p, j]);
    return s;
  });
  let shape = out.shape;
  if (a.shape.length === 1) shape = [...shape.slice(0, -2), shape[shape.length - 1]];
  if (b.shape.length === 1) shape = shape.slice(0, -1);
  return { shape, values: out.values };
}

export interface ConvOptions {
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  groups: number;
}

/** PyTorch conv2d (cross-correlation), NCHW input, OIHW weight. */
export function conv2d(x: Host, w: Host, o: ConvOptions): Host {
  const [N, C, H, W] = x.shape;
  const [O, Cg, KH, KW] = w.shape;
  const size = (n: number, k: number, d: 0 | 1) => Math.floor((n + 2 * o.padding[d] - o.dilation[d] * (k - 1) - 1) / o.stride[d]) + 1;
  const Og = O / o.groups;
  void C;
  return build([N, O, size(H, KH, 0), size(W, KW, 1)], ([n, oc, oh, ow]) => {
    const g = Math.floor(oc / Og);
    let s = 0;
    for (let c = 0; c < Cg; c++)
      for (let i = 0; i < KH; i++)
        for (let j = 0; j < KW; j++) {
          const ih = oh * o.stride[0] - o.padding[0] + i * o.dilation[0];
          const iw = ow * o.stride[1] - o.padding[1] + j * o.dilation[1];
          if (ih >= 0 && ih < H && iw >= 0 && iw < W) s += get(x, [n, g * Cg + c, ih, iw]) * get(w, [oc, c, i, j]);
        }
    return s;
  });
}

/**
 * PyTorch conv_transpose2d, IOHW weight [C_in, C_out/groups, kH, kW]: every input element
 * scatters its products with the kernel into the output (the definition, not the adjoint).
 */
export function conv2dTranspose(x: Host, w: Host, o: ConvOptions & { outputPadding: [number, number] }): Host {
  const [N, Cin, H, W] = x.shape;
  const [, Og, KH, KW] = w.shape;
  const Cg = Cin / o.groups;
  const size = (n: number, k: number, d: 0 | 1) => (n - 1) * o.stride[d] - 2 * o.padding[d] + o.dilation[d] * (k - 1) + 1 + o.outputPadding[d];
  const shape = [N, Og * o.groups, size(H, KH, 0), size(W, KW, 1)];
  const out = { shape, values: new Array<number>(sizeOf(shape)).fill(0) };
  for (let n = 0; n < N; n++)
    for (let c = 0; c < Cin; c++) {
      const g = Math.floor(c / Cg);
      for (let ih = 0; ih < H; ih++)
        for (let iw = 0; iw < W; iw++)
          for (let oc = 0; oc < Og; oc++)
            for (let i = 0; i < KH; i++)
              for (let j = 0; j < KW; j++) {
                const oh = ih * o.stride[0] - o.padding[0] + i * o.dilation[0];
                const ow = iw * o.stride[1] - o.padding[1] + j * o.dilation[1];
                if (oh < 0 || oh >= shape[2] || ow < 0 || ow >= shape[3]) continue;
                out.values[ravel([n, g * Og + oc, oh, ow], shape)] += get(x, [n, c, ih, iw]) * get(w, [c, oc, i, j]);
              }
    }
  return out;
}

/** PyTorch avg_pool2d with count_include_pad=True (the padding counts as zeros). */
export function avgPool2d(x: Host, k: [number, number], s: [number, number], p: [number, number]): Host {
  const [N, C, H, W] = x.shape;
  const size = (n: number, d: 0 | 1) => Math.floor((n + 2 * p[d] - k[d]) / s[d]) + 1;
  return build([N, C, size(H, 0), size(W, 1)], ([n, c, oh, ow]) => {
    let acc = 0;
    for (let i = 0; i < k[0]; i++)
      for (let j = 0; j < k[1]; j++) {
        const ih = oh * s[0] - p[0] + i, iw = ow * s[1] - p[1] + j;
        if (ih >= 0 && ih < H && iw >= 0 && iw < W) acc += get(x, [n, c, ih, iw]);
      }
    return acc / (k[0] * k[1]);
  });
}

export function upsampleNearest(x: Host, f: [number, number]): Host {
  const [N, C, H, W] = x.shape;
  return build([N, C, H * f[0], W * f[1]], ([n, c, i, j]) => get(x, [n, c, Math.floor(i / f[0]), Math.floor(j / f[1])]));
}
