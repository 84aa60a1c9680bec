/**
 * Image grids: a batch [N, C, H, W] with values in [-1, 1] (C = 1 grey or 3 RGB) laid
 * out row by row with padding between and around the tiles, written as an 8-bit PNG.
 * Values map to bytes by round((x + 1) · 127.5), clamped to [0, 255].
 */
import { writeFile } from 'node:fs/promises';
import pngjs from 'pngjs';
import { Tensor, TensorError } from '@scm/tensor';

const { PNG } = pngjs;

export interface GridOptions {
  /** Tiles per row (default ceil(sqrt(N))). */
  nrow?: number;
  /** Pixels between tiles and around the grid (default 2). */
  padding?: number;
  /** Grey level of the padding, in [-1, 1] (default 1: white). */
  padValue?: number;
}

export interface RgbaImage {
  width: number;
  height: number;
  /** width × height × 4 bytes, row-major RGBA. */
  rgba: Uint8Array;
}

const toByte = (v: number) => (Number.isNaN(v) ? 0 : Math.min(255, Math.max(0, Math.round((v + 1) * 127.5))));

/** Lay out host values of a [N, C, H, W] batch as one RGBA image. */
export function gridPixels(values: ArrayLike<number>, shape: readonly number[], opts: GridOptions = {}): RgbaImage {
  if (shape.length !== 4 || (shape[1] !== 1 && shape[1] !== 3) || shape[0] < 1) {
    throw new TensorError('imageGrid', 'expected images [N, C, H, W] with N >= 1 and C = 1 or 3', [shape]);
  }
  const [N, C, H, W] = shape;
  if (values.length !== N * C * H * W) throw new TensorError('imageGrid', `${values.length} values do not fill [${shape}]`, [shape]);
  const pad = opts.padding ?? 2;
  const nrow = opts.nrow ?? Math.ceil(Math.sqrt(N));
  if (!(Number.isInteger(pad) && pad >= 0)) throw new TensorError('imageGrid', `padding must be a non-negative integer, got ${pad}`);
  if (!(Number.isInteger(nrow) && nrow >= 1)) throw new TensorError('imageGrid', `nrow must be a positive integer, got ${nrow}`);
  const cols = Math.min(nrow, N);
  const rows = Math.ceil(N / nrow);
  const width = cols * (W + pad) + pad;
  const height = rows * (H + pad) + pad;
  const rgba = new Uint8Array(width * height * 4);
  const padByte = toByte(opts.padValue ?? 1);
  for (let i = 0; i < rgba.length; i += 4) rgba.set([padByte, padByte, padByte, 255], i);
  for (let n = 0; n < N; n++) {
    const ox = pad + (n % nrow) * (W + pad);
    const oy = pad + Math.floor(n / nrow) * (H + pad);
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const at = ((oy + y) * width + ox + x) * 4;
        for (let c = 0; c < 3; c++) rgba[at + c] = toByte(values[((n * C + (C === 1 ? 0 : c)) * H + y) * W + x]);
      }
  }
  return { width, height, rgba };
}

/** PNG bytes of an image grid of x (any backend; read back asynchronously). */
export async function imageGridPng(x: Tensor, opts: GridOptions = {}): Promise<Uint8Array> {
  if (!(x instanceof Tensor)) throw new TensorError('imageGrid', `expected a Tensor, got ${typeof x}`);
  const { width, height, rgba } = gridPixels(await x.data(), x.shape, opts);
  const png = new PNG({ width, height });
  png.data = Buffer.from(rgba.buffer, rgba.byteOffset, rgba.byteLength);
  return PNG.sync.write(png);
}

/** Write an image grid of x to a PNG file. */
export async function saveImageGrid(path: string, x: Tensor, opts: GridOptions = {}): Promise<void> {
  await writeFile(path, await imageGridPng(x, opts));
}
