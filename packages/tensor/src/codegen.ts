/**
 * Helpers that build GPU.js kernel source text. Every kernel computes one flat output
 * cell `i` (this.thread.x); shapes and strides are baked in as literals, so a kernel is
 * compiled once per (primitive, shapes, params) signature and cached by its source.
 */
import { stridesOf, type Shape } from './shape.js';

/** A float literal GPU.js parses as a float. */
export function f(x: number): string {
  if (Number.isNaN(x)) return '(0.0 / 0.0)';
  if (x === Infinity) return '3.4028234663852886e38';
  if (x === -Infinity) return '-3.4028234663852886e38';
  const s = String(x);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

/** Lines declaring c0..c{r-1}, the coordinates of flat index `flat` in `shape`. */
export function coordLines(shape: Shape, flat = 'i', prefix = 'c'): string {
  const strides = stridesOf(shape);
  const lines: string[] = [];
  let rest = flat;
  for (let d = 0; d < shape.length; d++) {
    if (d === shape.length - 1) {
      lines.push(`const ${prefix}${d} = ${rest};`);
    } else {
      lines.push(`const ${prefix}${d} = Math.floor(${rest} / ${strides[d]});`);
      lines.push(`const ${prefix}r${d} = ${rest} - ${prefix}${d} * ${strides[d]};`);
      rest = `${prefix}r${d}`;
    }
  }
  return lines.join('\n');
}

/** The flat index of `coords` in a tensor with `strides` (terms with stride 0 dropped). */
export function dot(coords: string[], strides: readonly number[], base = 0): string {
  const terms: string[] = base ? [String(base)] : [];
  coords.forEach((c, d) => {
    if (strides[d] === 1) terms.push(`${c}`);
    else if (strides[d] !== 0) terms.push(`${c} * ${strides[d]}`);
  });
  return terms.length ? terms.join(' + ') : '0';
}

/** Index into an input of shape `inShape` broadcast to `outShape`, with coordinates c*. */
export function broadcastIndex(outShape: Shape, inShape: Shape, prefix = 'c'): string {
  const offset = outShape.length - inShape.length;
  const strides = stridesOf(inShape);
  const coords: string[] = [];
  const used: number[] = [];
  inShape.forEach((d, k) => {
    if (d !== 1) {
      coords.push(`${prefix}${k + offset}`);
      used.push(strides[k]);
    }
  });
  return dot(coords, used);
}

/**
 * Split sums (Primitive.split), in a kernel of `parts` partial sums laid out [parts, cells]:
 * which part of the outermost summed loop this thread sums, and for which output cell.
 */
export interface PartSplit {
  readonly parts: number;
  readonly cells: number;
}

export function partLines({ cells }: PartSplit): string {
  return `const part = Math.floor(i / ${cells});\nconst cell = i - part * ${cells};`;
}

/**
 * The opening of a summed loop over `v` in [0, extent): whole, or with `split` only this
 * part's chunk of it (a literal trip count and a bound check, as GPU.js wants literal loop
 * bounds). Closed by `closeLoop(split)`.
 */
export function openLoop(v: string, extent: number, split?: PartSplit): string {
  if (!split) return `for (let ${v} = 0; ${v} < ${extent}; ${v}++) {`;
  const chunk = Math.ceil(extent / split.parts);
  return `for (let ${v}q = 0; ${v}q < ${chunk}; ${v}q++) {\nconst ${v} = part * ${chunk} + ${v}q;\nif (${v} < ${extent}) {`;
}

export function closeLoop(split?: PartSplit): string {
  return split ? '}\n}' : '}';
}

/**
 * A kernel's source from its body, in which `i` is the flat output index. The index is
 * written inline as `this.thread.x` rather than declared: GPU.js's WebAssembly code keeps
 * every declared local as a float, so a declared index would cost a float-to-integer
 * conversion per array read and stop being exact past 2^24 elements, while the thread id
 * itself stays an integer.
 */
export function kernelFn(nArgs: number, body: string, argNames?: string[]): string {
  const names = argNames ?? Array.from({ length: nArgs }, (_, k) => `x${k}`);
  return `function (${names.join(', ')}) {\n${body.replace(/\bi\b/g, 'this.thread.x')}\n}`;
}

/**
 * Kernel lines that set `out` to e^v in float32 arithmetic alone. GPU.js's WebAssembly code
 * calls Math.exp through JavaScript once per element (about 20 ns each); this is a few
 * SIMD instructions per element, within 3 ulp of the rounded exact value:
 *   e^v = 2^k e^r with k = floor(v log2 e) and r = v - k ln 2 in [0, ln 2) (ln 2 split in
 *   two parts, the first with few mantissa bits, so k times it is exact); e^r by its
 *   degree-8 Taylor polynomial (truncation below 1e-7 relative); 2^|k| (|k| <= 127 in range)
 *   as the product of the powers 2^(2^j) selected by the bits of |k|, all exact.
 * Outside the float32 range: +inf from the first float32 above ln(FLT_MAX), 0 below ln(FLT_MIN) (subnormal results
 * flush to zero); NaN stays NaN. `out` names the result; helper locals use it as a prefix.
 */
export function expLines(v: string, out: string): string {
  const coefficients = [1, 1, 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040, 1 / 40320];
  const poly = coefficients.reduceRight((acc, c, i) => (i === coefficients.length - 1 ? f(c) : `${f(c)} + ${out}r * (${acc})`), '');
  const lines = [
    `const ${out}k = Math.floor(${v} * 1.4426950408889634);`,
    `const ${out}r = ${v} - ${out}k * 0.693145751953125 - ${out}k * 1.4286068203094172e-6;`,
    `const ${out}p = ${poly};`,
    `const ${out}b0 = Math.abs(${out}k);`,
  ];
  // Bit j of |k| is b_j - 2 b_{j+1}, with b_j = floor(|k| / 2^j).
  for (let j = 1; j <= 7; j++) lines.push(`const ${out}b${j} = Math.floor(${out}b0 * ${f(2 ** -j)});`);
  const factors = Array.from({ length: 7 }, (_, j) => `(1.0 + (${out}b${j} - 2.0 * ${out}b${j + 1}) * ${f(2 ** (2 ** j) - 1)})`);
  lines.push(`const ${out}s = ${factors.join(' * ')};`);
  lines.push(`const ${out} = ${v} >= 88.72283935546875 ? ${v} * 1e38 : (${v} < -87.33654022216797 ? 0.0 : (${out}k < 0.0 ? ${out}p / ${out}s : ${out}p * ${out}s));`);
  return lines.join('\n');
}
