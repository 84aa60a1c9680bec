/**
 * Data movement: reshape (zero-copy), broadcastTo, transpose, slice (positive steps),
 * pad (with interior padding: the transpose of a strided slice), flip and concat.
 * Each is linear, so its JVP applies itself to the tangent and its VJP is its transpose.
 */
import { broadcastIndex, coordLines, dot, f, kernelFn } from '../codegen.js';
import { TensorError } from '../errors.js';
import type { Primitive } from '../primitive.js';
import { broadcastMap, broadcastShapes, shapesEqual, sizeOf, stridesOf, type Shape } from '../shape.js';
import * as ops from '../ops.js';

/** Reference helper: out[i] = x[index(coords of i)] for a coordinate map. */
function gatherRef(x: ArrayLike<number>, outShape: Shape, index: (c: number[]) => number, fill = 0): Float64Array {
  const n = sizeOf(outShape);
  const strides = stridesOf(outShape);
  const out = new Float64Array(n);
  const c = new Array<number>(outShape.length);
  for (let i = 0; i < n; i++) {
    let rest = i;
    for (let d = 0; d < outShape.length; d++) {
      c[d] = Math.floor(rest / strides[d]);
      rest -= c[d] * strides[d];
    }
    const j = index(c);
    out[i] = j < 0 ? fill : x[j];
  }
  return out;
}

export const reshape: Primitive<{ shape: number[] }> = {
  name: 'reshape',
  aliases: true,
  abstract([x], { shape }) {
    if (sizeOf(shape) !== sizeOf(x.shape)) throw new TensorError('reshape', `cannot reshape ${sizeOf(x.shape)} elements into shape [${shape.join(', ')}]`, [x.shape]);
    return { shape, dtype: x.dtype };
  },
  reference: ([x]) => Float64Array.from(x),
  kernel: () => kernelFn(1, 'return x0[i];'),
  jvp: (_x, [t], { shape }) => t && ops.reshape(t, shape),
  vjp: (ct, [x]) => [ops.reshape(ct, x.shape)],
};

export const broadcastTo: Primitive<{ shape: number[] }> = {
  name: 'broadcastTo',
  abstract([x], { shape }) {
    const b = broadcastShapes('broadcastTo', x.shape, shape);
    if (!shapesEqual(b, shape)) throw new TensorError('broadcastTo', `cannot broadcast to [${shape.join(', ')}]`, [x.shape]);
    return { shape, dtype: x.dtype };
  },
  reference([x], [a], { shape }) {
    return Float64Array.from(broadcastMap(shape, a.shape), (j) => x[j]);
  },
  kernel([a], { shape }) {
    return kernelFn(1, `${coordLines(shape)}\nreturn x0[${sizeOf(a.shape) === 1 ? '0' : broadcastIndex(shape, a.shape)}];`);
  },
  jvp: (_x, [t], { shape }) => t && ops.broadcastTo(t, shape),
  vjp: (ct, [x]) => [ops.unbroadcast(ct, x.shape)],
};

export const transpose: Primitive<{ perm: number[] }> = {
  name: 'transpose',
  abstract([x], { perm }) {
    const ok = perm.length === x.shape.length && [...perm].sort((a, b) => a - b).every((p, k) => p === k);
    if (!ok) throw new TensorError('transpose', `perm [${perm.join(', ')}] is not a permutation of the ${x.shape.length} axes`, [x.shape]);
    return { shape: perm.map((p) => x.shape[p]), dtype: x.dtype };
  },
  reference([x], [a], { perm }, out) {
    const s = stridesOf(a.shape);
    return gatherRef(x, out.shape, (c) => c.reduce((acc, cd, d) => acc + cd * s[perm[d]], 0));
  },
  kernel([a], { perm }, out) {
    const s = stridesOf(a.shape);
    return kernelFn(1, `${coordLines(out.shape)}\nreturn x0[${dot(perm.map((_, d) => `c${d}`), perm.map((p) => s[p]))}];`);
  },
  jvp: (_x, [t], { perm }) => t && ops.transpose(t, perm),
  vjp: (ct, _x, { perm }) => {
    const inv = new Array<number>(perm.length);
    perm.forEach((p, d) => (inv[p] = d));
    return [ops.transpose(ct, inv)];
  },
};

export interface SliceParams {
  starts: number[];
  steps: number[];
  /** The output shape (number of elements taken along each axis). */
  shape: number[];
}

export const slice: Primitive<SliceParams> = {
  name: 'slice',
  abstract([x], { starts, steps, shape }) {
    const bad = x.shape.some((d, k) => steps[k] < 1 || starts[k] < 0 || (shape[k] > 0 && starts[k] + (shape[k] - 1) * steps[k] >= d));
    if (starts.length !== x.shape.length || bad) throw new TensorError('slice', `slice (starts [${starts}], steps [${steps}], sizes [${shape}]) does not fit`, [x.shape]);
    return { shape, dtype: x.dtype };
  },
  reference([x], [a], { starts, steps }, out) {
    const s = stridesOf(a.shape);
    return gatherRef(x, out.shape, (c) => c.reduce((acc, cd, d) => acc + (starts[d] + cd * steps[d]) * s[d], 0));
  },
  kernel([a], { starts, steps }, out) {
    const s = stridesOf(a.shape);
    const base = starts.reduce((acc, st, d) => acc + st * s[d], 0);
    return kernelFn(1, `${coordLines(out.shape)}\nreturn x0[${dot(out.shape.map((_, d) => `c${d}`), s.map((sd, d) => sd * steps[d]), base)}];`);
  },
  jvp: (_x, [t], p) => t && ops.slicePrim(t, p),
  // The transpose of a strided slice: put the cotangent back with zeros between.
  vjp: (ct, [x], { starts, steps, shape }) => [
    ops.padPrim(ct, {
      lo: starts,
      interior: steps.map((s) => s - 1),
      shape: [...x.shape],
      value: 0,
    }),
  ],
};

export interface PadParams {
  /** Elements before each axis. */
  lo: number[];
  /** Elements between neighbours along each axis. */
  interior: number[];
  /** The output shape (lo + n + (n-1)·interior + hi along each axis). */
  shape: number[];
  value: number;
}

export const pad: Primitive<PadParams> = {
  name: 'pad',
  abstract([x], { lo, interior, shape }) {
    const bad = x.shape.some((d, k) => lo[k] < 0 || interior[k] < 0 || (d > 0 && lo[k] + (d - 1) * (interior[k] + 1) >= shape[k]));
    if (lo.length !== x.shape.length || bad) throw new TensorError('pad', `padding (lo [${lo}], interior [${interior}]) into [${shape}] does not fit`, [x.shape]);
    return { shape, dtype: x.dtype };
  },
  reference([x], [a], { lo, interior, value }, out) {
    const s = stridesOf(a.shape);
    return gatherRef(x, out.shape, (c) => {
      let j = 0;
      for (let d = 0; d < c.length; d++) {
        const q = c[d] - lo[d];
        const step = interior[d] + 1;
        if (q < 0 || q % step !== 0 || q / step >= a.shape[d]) return -1;
        j += (q / step) * s[d];
      }
      return j;
    }, value);
  },
  kernel([a], { lo, interior, value }, out) {
    const s = stridesOf(a.shape);
    const lines = [coordLines(out.shape), 'let inside = 1.0;'];
    const coords: string[] = [];
    out.shape.forEach((_, d) => {
      const step = interior[d] + 1;
      lines.push(`const q${d} = c${d} - ${lo[d]};`);
      if (step === 1) {
        lines.push(`if (q${d} < 0 || q${d} >= ${a.shape[d]}) { inside = 0.0; }`);
        coords.push(`q${d}`);
      } else {
        lines.push(`const k${d} = Math.floor(q${d} / ${step});`);
        lines.push(`if (q${d} < 0 || q${d} - k${d} * ${step} != 0 || k${d} >= ${a.shape[d]}) { inside = 0.0; }`);
        coords.push(`k${d}`);
      }
    });
    lines.push(`let v = ${f(value)};`, `if (inside > 0.5) { v = x0[${dot(coords, s)}]; }`, 'return v;');
    return kernelFn(1, lines.join('\n'));
  },
  jvp: (_x, [t], p) => t && ops.padPrim(t, { ...p, value: 0 }),
  vjp: (ct, [x], { lo, interior }) => [
    ops.slicePrim(ct, { starts: lo, steps: interior.map((i) => i + 1), shape: [...x.shape] }),
  ],
};

export const flip: Primitive<{ axes: number[] }> = {
  name: 'flip',
  abstract([x], { axes }) {
    if (axes.some((a) => a < 0 || a >= x.shape.length)) throw new TensorError('flip', `axes [${axes}] out of range`, [x.shape]);
    return { shape: x.shape, dtype: x.dtype };
  },
  reference([x], [a], { axes }) {
    const s = stridesOf(a.shape);
    return gatherRef(x, a.shape, (c) => c.reduce((acc, cd, d) => acc + (axes.includes(d) ? a.shape[d] - 1 - cd : cd) * s[d], 0));
  },
  kernel([a], { axes }) {
    const s = stridesOf(a.shape);
    const coords = a.shape.map((n, d) => (axes.includes(d) ? `(${n - 1} - c${d})` : `c${d}`));
    return kernelFn(1, `${coordLines(a.shape)}\nreturn x0[${dot(coords, s)}];`);
  },
  jvp: (_x, [t], p) => t && ops.flip(t, p.axes),
  vjp: (ct, _x, p) => [ops.flip(ct, p.axes)],
};

export const concat: Primitive<{ axis: number }> = {
  name: 'concat',
  abstract(xs, { axis }) {
    const first = xs[0];
    for (const x of xs) {
      const same = x.shape.length === first.shape.length && x.shape.every((d, k) => k === axis || d === first.shape[k]);
      if (!same || x.dtype !== first.dtype) throw new TensorError('concat', `inputs must match in every axis but ${axis} and share a dtype`, xs.map((v) => v.shape));
    }
    const shape = [...first.shape];
    shape[axis] = xs.reduce((acc, x) => acc + x.shape[axis], 0);
    return { shape, dtype: first.dtype };
  },
  reference(xs, avals, { axis }, out) {
    const result = new Float64Array(sizeOf(out.shape));
    const outer = sizeOf(out.shape.slice(0, axis));
    const inner = sizeOf(out.shape.slice(axis + 1));
    let pos = 0;
    for (let o = 0; o < outer; o++) {
      avals.forEach((a, k) => {
        const chunk = a.shape[axis] * inner;
        for (let j = 0; j < chunk; j++) result[pos++] = xs[k][o * chunk + j];
      });
    }
    return result;
  },
  kernel(avals, { axis }, out) {
    const lines = [coordLines(out.shape)];
    let offset = 0;
    avals.forEach((a, k) => {
      const s = stridesOf(a.shape);
      const coords = out.shape.map((_, d) => (d === axis ? `(c${d} - ${offset})` : `c${d}`));
      const load = `return x${k}[${dot(coords, s)}];`;
      offset += a.shape[axis];
      lines.push(k === avals.length - 1 ? load : `if (c${axis} < ${offset}) { ${load} }`);
    });
    return kernelFn(avals.length, lines.join('\n'));
  },
  jvp(xs, ts, { axis }) {
    if (ts.every((t) => !t)) return null;
    return ops.concat(ts.map((t, k) => t ?? ops.zerosLike(xs[k])), axis);
  },
  vjp(ct, xs, { axis }, _y, needs) {
    let offset = 0;
    return xs.map((x, k) => {
      const start = offset;
      offset += x.shape[axis];
      if (!needs[k]) return null;
      const starts = x.shape.map((_, d) => (d === axis ? start : 0));
      return ops.slicePrim(ct, { starts, steps: x.shape.map(() => 1), shape: [...x.shape] });
    });
  },
};
