import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pngjs from 'pngjs';
import * as T from '@scm/tensor';
import { gridPixels, imageGridPng, saveImageGrid } from '../src/image.js';

const { PNG } = pngjs;
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'image-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const toByte = (v: number) => Math.min(255, Math.max(0, Math.round((v + 1) * 127.5)));

describe('image grids', () => {
  test('an RGB batch round-trips through a PNG file with its layout and padding', async () => {
    // 5 images of 3×4 pixels, 3 per row, padding 1: 2 rows.
    const [N, C, H, W] = [5, 3, 3, 4];
    const values = Float32Array.from({ length: N * C * H * W }, (_, i) => Math.sin(i * 0.37) * 1.2); // some beyond ±1
    const x = T.fromArray(values, [N, C, H, W]);
    const file = join(dir, 'grid.png');
    await saveImageGrid(file, x, { nrow: 3, padding: 1, padValue: -1 });
    const png = PNG.sync.read(await readFile(file));
    expect([png.width, png.height]).toEqual([3 * (W + 1) + 1, 2 * (H + 1) + 1]);
    const px = (x0: number, y0: number) => Array.from(png.data.subarray((y0 * png.width + x0) * 4, (y0 * png.width + x0) * 4 + 4));
    for (let n = 0; n < N; n++)
      for (let y = 0; y < H; y++)
        for (let xx = 0; xx < W; xx++) {
          const gx = 1 + (n % 3) * (W + 1) + xx;
          const gy = 1 + Math.floor(n / 3) * (H + 1) + y;
          const want = [0, 1, 2].map((c) => toByte(values[((n * C + c) * H + y) * W + xx]));
          expect(px(gx, gy)).toEqual([...want, 255]);
        }
    // Padding (padValue -1 → black): the border, the gaps, and the empty sixth slot.
    expect(px(0, 0)).toEqual([0, 0, 0, 255]);
    expect(px(W + 1, 2)).toEqual([0, 0, 0, 255]);
    expect(px(png.width - 2, png.height - 2)).toEqual([0, 0, 0, 255]);
    x.dispose();
  });

  test('greyscale images fill all three channels; the default layout is square-ish', async () => {
    const x = T.fromArray(Float32Array.from({ length: 4 * 2 * 2 }, (_, i) => -1 + i / 8), [4, 1, 2, 2]);
    const png = PNG.sync.read(Buffer.from(await imageGridPng(x)));
    expect([png.width, png.height]).toEqual([2 * 4 + 2, 2 * 4 + 2]);
    const at = ((2 + 4) * png.width + (2 + 4 + 1)) * 4; // image 3, pixel (y 0, x 1)
    const v = toByte(-1 + (3 * 4 + 1) / 8);
    expect(Array.from(png.data.subarray(at, at + 4))).toEqual([v, v, v, 255]);
    expect(Array.from(png.data.subarray(0, 4))).toEqual([255, 255, 255, 255]); // default white padding
    x.dispose();
  });

  test('bad shapes give clear errors', () => {
    expect(() => gridPixels(new Float32Array(2 * 2 * 4 * 4), [2, 2, 4, 4])).toThrow(/C = 1 or 3/);
    expect(() => gridPixels(new Float32Array(12), [4, 3])).toThrow(/expected images \[N, C, H, W\]/);
    expect(() => gridPixels(new Float32Array(3), [1, 1, 2, 2])).toThrow(/3 values do not fill/);
    expect(() => gridPixels(new Float32Array(4), [1, 1, 2, 2], { padding: -1 })).toThrow(/padding/);
  });
});
