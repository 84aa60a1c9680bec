/**
 * Helpers that build GPU.js kernel source text. Every kernel computes one flat output
 * cell `i = this.thread.x`; shapes and strides are baked in as literals, so a kernel is
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

export function kernelFn(nArgs: number, body: string, argNames?: string[]): string {
  const names = argNames ?? Array.from({ length: nArgs }, (_, k) => `x${k}`);
  return `function (${names.join(', ')}) {\nconst i = this.thread.x;\n${body}\n}`;
}
