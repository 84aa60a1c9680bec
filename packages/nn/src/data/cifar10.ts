/**
 * CIFAR-10 in its official binary format: each file is a sequence of 3073-byte
 * records, one label byte (0-9) followed by 3072 pixel bytes, the red, green and blue
 * 32×32 planes in row-major order (CHW). The training set is data_batch_1..5.bin, the
 * test set test_batch.bin, all in cifar-10-batches-bin/. Files are read from a
 * directory (the folder itself or its parent) or straight from the .tar.gz release.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ImageDataset } from './dataset.js';
import { DataError } from './errors.js';
import { readTarGz } from './tar.js';

export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'] as const;
export const CIFAR10_RECORD = 1 + 3 * 32 * 32;
export const CIFAR10_TRAIN_FILES = [1, 2, 3, 4, 5].map((k) => `data_batch_${k}.bin`);
export const CIFAR10_TEST_FILE = 'test_batch.bin';

/** Parse one binary batch file; `what` names it in errors. */
export function parseCifar10(bytes: Uint8Array, what: string): ImageDataset {
  if (bytes.length === 0 || bytes.length % CIFAR10_RECORD !== 0) {
    throw new DataError('cifar10', `${what} has ${bytes.length} bytes, not a whole positive number of ${CIFAR10_RECORD}-byte records (truncated, or not the CIFAR-10 binary format)`);
  }
  const count = bytes.length / CIFAR10_RECORD;
  const labels = new Uint8Array(count);
  const pixels = new Uint8Array(count * (CIFAR10_RECORD - 1));
  for (let i = 0; i < count; i++) {
    const rec = i * CIFAR10_RECORD;
    const label = bytes[rec];
    if (label > 9) throw new DataError('cifar10', `${what}: record ${i} has label ${label}, expected 0-9 (not the CIFAR-10 binary format, or corrupt)`);
    labels[i] = label;
    pixels.set(bytes.subarray(rec + 1, rec + CIFAR10_RECORD), i * (CIFAR10_RECORD - 1));
  }
  return { name: what, count, channels: 3, height: 32, width: 32, pixels, labels, classNames: CIFAR10_CLASSES };
}

/** Concatenate datasets of one image shape. */
export function concatDatasets(parts: readonly ImageDataset[], name: string): ImageDataset {
  if (!parts.length) throw new DataError('concatDatasets', 'needs at least one dataset');
  const count = parts.reduce((n, p) => n + p.count, 0);
  const pixels = new Uint8Array(parts.reduce((n, p) => n + p.pixels.length, 0));
  const labels = new Uint8Array(count);
  let px = 0, lb = 0;
  for (const p of parts) {
    pixels.set(p.pixels, px);
    labels.set(p.labels, lb);
    px += p.pixels.length;
    lb += p.count;
  }
  return { ...parts[0], name, count, pixels, labels };
}

export type Cifar10Split = 'train' | 'test' | readonly string[];

const isTarGz = (p: string) => /\.(tar\.gz|tgz)$/i.test(p);

/**
 * Load a CIFAR-10 split from a directory or a .tar.gz. 'train' reads every
 * data_batch_k.bin present (at least one is required), 'test' reads test_batch.bin,
 * and a list names the files to read, in order.
 */
export async function loadCifar10(source: string, split: Cifar10Split = 'train'): Promise<ImageDataset> {
  const wanted = split === 'train' ? CIFAR10_TRAIN_FILES : split === 'test' ? [CIFAR10_TEST_FILE] : [...split];
  const required = split === 'train' ? 1 : wanted.length;
  let found: [string, Uint8Array][] = [];
  const info = await stat(source).catch(() => null);
  if (!info) throw new DataError('cifar10', `${source} does not exist (expected a cifar-10-batches-bin directory, its parent, or the cifar-10-binary.tar.gz archive)`);
  if (info.isFile()) {
    if (!isTarGz(source)) throw new DataError('cifar10', `${source} is a file but not a .tar.gz archive (give the archive or the directory of .bin files)`);
    const entries = await readTarGz(await readFile(source), source);
    const byBase = new Map(entries.map((e) => [e.name.split('/').pop()!, e.data]));
    found = wanted.flatMap((w) => (byBase.has(w) ? [[w, byBase.get(w)!] as [string, Uint8Array]] : []));
  } else {
    for (const w of wanted) {
      for (const dir of [source, join(source, 'cifar-10-batches-bin')]) {
        const bytes = await readFile(join(dir, w)).catch(() => null);
        if (bytes) {
          found.push([w, bytes]);
          break;
        }
      }
    }
  }
  if (found.length < required || (split !== 'train' && found.length !== wanted.length)) {
    const missing = wanted.filter((w) => !found.some(([f]) => f === w));
    throw new DataError('cifar10', `${source} lacks ${missing.join(', ')} (the CIFAR-10 binary release has data_batch_1..5.bin and test_batch.bin in cifar-10-batches-bin/)`);
  }
  const parts = found.map(([w, bytes]) => parseCifar10(bytes, w));
  return parts.length === 1 ? parts[0] : concatDatasets(parts, `cifar10 ${typeof split === 'string' ? split : split.join('+')}`);
}
