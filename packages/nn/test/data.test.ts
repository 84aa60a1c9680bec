import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as T from '@scm/tensor';
import {
  CIFAR10_RECORD, ImageLoader, checkerboard, gaussianMixture, imagesToTensor, labelsToTensor, loadCifar10, loadMnist, parseCifar10, readTar, readTarGz, spirals, twoMoons, writeTar,
  type ImageDataset,
} from '../src/data/index.js';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const SUBSET = join(repoRoot, '../shared/data/cifar-10-binary-subset.tar.gz');
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'data-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** CIFAR-10 records with label i % 10 and pixel (c, y, x) = (7i + 3c + 5y + x) mod 256. */
function cifarRecords(n: number, first = 0): Uint8Array {
  const out = new Uint8Array(n * CIFAR10_RECORD);
  for (let k = 0; k < n; k++) {
    const i = first + k;
    out[k * CIFAR10_RECORD] = i % 10;
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 32; y++)
        for (let x = 0; x < 32; x++) out[k * CIFAR10_RECORD + 1 + (c * 32 + y) * 32 + x] = (7 * i + 3 * c + 5 * y + x) % 256;
  }
  return out;
}
const pixelOf = (i: number, c: number, y: number, x: number) => (7 * i + 3 * c + 5 * y + x) % 256;

async function writeCifarFixture(): Promise<{ folder: string; archive: string }> {
  const folder = join(dir, 'cifar');
  await mkdir(join(folder, 'cifar-10-batches-bin'), { recursive: true });
  const files = [
    { name: 'cifar-10-batches-bin/data_batch_1.bin', data: cifarRecords(12) },
    { name: 'cifar-10-batches-bin/data_batch_2.bin', data: cifarRecords(5, 12) },
    { name: 'cifar-10-batches-bin/test_batch.bin', data: cifarRecords(7, 100) },
    { name: 'cifar-10-batches-bin/batches.meta.txt', data: Buffer.from('airplane\nautomobile\n') },
  ];
  for (const f of files) await writeFile(join(folder, f.name), f.data);
  const archive = join(dir, 'cifar-10-binary.tar.gz');
  await writeFile(archive, gzipSync(writeTar(files)));
  return { folder, archive };
}

describe('CIFAR-10 binary format', () => {
  test('reads a directory and a .tar.gz identically, in record order', async () => {
    const { folder, archive } = await writeCifarFixture();
    for (const source of [folder, join(folder, 'cifar-10-batches-bin'), archive]) {
      const train = await loadCifar10(source, 'train');
      expect(train.count).toBe(17);
      expect([train.channels, train.height, train.width]).toEqual([3, 32, 32]);
      expect(Array.from(train.labels)).toEqual(Array.from({ length: 17 }, (_, i) => i % 10));
      for (const [i, c, y, x] of [[0, 0, 0, 0], [3, 2, 31, 5], [16, 1, 7, 30]]) {
        expect(train.pixels[((i * 3 + c) * 32 + y) * 32 + x]).toBe(pixelOf(i, c, y, x));
      }
      const test = await loadCifar10(source, 'test');
      expect(test.count).toBe(7);
      expect(test.labels[0]).toBe(0);
      expect(test.pixels[(1 * 3 * 32 + 2) * 32 + 3]).toBe(pixelOf(101, 0, 2, 3));
      const one = await loadCifar10(source, ['data_batch_2.bin']);
      expect(one.count).toBe(5);
      expect(one.labels[0]).toBe(2);
    }
  });

  test('tensors are CHW in [-1, 1]; flips mirror left-right; labels are int32', async () => {
    const ds = parseCifar10(cifarRecords(4), 'fixture');
    const x = imagesToTensor(ds, [2, 0], [1, 0]);
    expect(x.shape).toEqual([2, 3, 32, 32]);
    const v = x.dataSync();
    expect(v[0 * 1024 + 5 * 32 + 0]).toBeCloseTo(pixelOf(2, 0, 5, 31) / 127.5 - 1, 6); // flipped
    expect(v[3 * 1024 + 2 * 1024 + 5 * 32 + 9]).toBeCloseTo(pixelOf(0, 2, 5, 9) / 127.5 - 1, 6);
    expect(Math.min(...v)).toBeGreaterThanOrEqual(-1);
    expect(Math.max(...v)).toBeLessThanOrEqual(1);
    const y = labelsToTensor(ds, [2, 0, 3]);
    expect(y.dtype).toBe('int32');
    expect(Array.from(y.dataSync())).toEqual([2, 0, 3]);
    expect(() => imagesToTensor(ds, [4])).toThrow(/index 4 is out of range/);
    T.dispose([x, y]);
  });

  test('corrupt, truncated and wrong-format inputs give clear errors', async () => {
    const { folder, archive } = await writeCifarFixture();
    const good = cifarRecords(3);
    expect(() => parseCifar10(good.subarray(0, good.length - 100), 'cut.bin')).toThrow(/cut\.bin has 9119 bytes, not a whole positive number of 3073-byte records/);
    expect(() => parseCifar10(new Uint8Array(0), 'empty.bin')).toThrow(/0 bytes/);
    const badLabel = good.slice();
    badLabel[CIFAR10_RECORD] = 10;
    expect(() => parseCifar10(badLabel, 'bad.bin')).toThrow(/record 1 has label 10, expected 0-9/);
    const bytes = await readFile(archive);
    const truncated = join(dir, 'truncated.tar.gz');
    await writeFile(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
    await expect(loadCifar10(truncated)).rejects.toThrow(/could not be decompressed .*corrupt or truncated/);
    const notGzip = join(dir, 'not-gzip.tar.gz');
    await writeFile(notGzip, 'hello');
    await expect(loadCifar10(notGzip)).rejects.toThrow(/not gzip data/);
    const notTar = join(dir, 'not-tar.tar.gz');
    await writeFile(notTar, gzipSync(Buffer.alloc(2048, 65)));
    await expect(loadCifar10(notTar)).rejects.toThrow(/not a tar archive/);
    await expect(loadCifar10(join(dir, 'nowhere'))).rejects.toThrow(/does not exist/);
    await expect(loadCifar10(join(folder, 'cifar-10-batches-bin/batches.meta.txt'))).rejects.toThrow(/not a \.tar\.gz archive/);
    await expect(loadCifar10(folder, ['data_batch_9.bin'])).rejects.toThrow(/lacks data_batch_9\.bin/);
    const emptyDir = join(dir, 'empty');
    await mkdir(emptyDir, { recursive: true });
    await expect(loadCifar10(emptyDir, 'train')).rejects.toThrow(/lacks data_batch_1\.bin/);
  });

  test.runIf(existsSync(SUBSET))('the real subset: counts, labels and pixel statistics', async () => {
    const train = await loadCifar10(SUBSET, 'train');
    const test = await loadCifar10(SUBSET, 'test');
    for (const ds of [train, test]) {
      expect(ds.count).toBe(10_000);
      const perClass = Array(10).fill(0);
      for (const l of ds.labels) perClass[l]++;
      expect(perClass.reduce((a, b) => a + b)).toBe(10_000);
      for (const n of perClass) expect(n).toBeGreaterThan(800), expect(n).toBeLessThan(1200);
      // Channel means of CIFAR-10 are about (125, 123, 114) with standard deviations about 63.
      for (let c = 0; c < 3; c++) {
        let s = 0, s2 = 0;
        for (let i = 0; i < ds.count; i++) {
          const plane = ds.pixels.subarray((i * 3 + c) * 1024, (i * 3 + c + 1) * 1024);
          for (const v of plane) (s += v), (s2 += v * v);
        }
        const n = ds.count * 1024;
        const mean = s / n;
        const std = Math.sqrt(s2 / n - mean * mean);
        expect(mean).toBeGreaterThan(105), expect(mean).toBeLessThan(135);
        expect(std).toBeGreaterThan(55), expect(std).toBeLessThan(75);
      }
    }
  });
  if (!existsSync(SUBSET)) console.log(`skipping the real CIFAR-10 subset test: ${SUBSET} is absent`);
});

describe('tar reader', () => {
  test('reads archives made by the system tar (GNU long names, directories)', async () => {
    let hasTar = true;
    try {
      execFileSync('tar', ['--version'], { stdio: 'ignore' });
    } catch {
      hasTar = false;
    }
    if (!hasTar) {
      console.log('skipping the system-tar cross-check: no tar command');
      return;
    }
    const src = join(dir, 'tarsrc');
    const long = `${'a'.repeat(60)}/${'b'.repeat(70)}.bin`;
    await mkdir(join(src, 'a'.repeat(60)), { recursive: true });
    await writeFile(join(src, long), Buffer.from([1, 2, 3, 4, 5]));
    await writeFile(join(src, 'empty.txt'), '');
    await writeFile(join(src, 'big.bin'), Buffer.alloc(1500, 7));
    const archive = join(dir, 'system.tar.gz');
    execFileSync('tar', ['-czf', archive, '-C', src, '.']);
    const entries = await readTarGz(await readFile(archive), archive);
    const byName = new Map(entries.map((e) => [e.name.replace(/^\.\//, ''), e]));
    expect(Array.from(byName.get(long)!.data)).toEqual([1, 2, 3, 4, 5]);
    expect(byName.get('empty.txt')!.size).toBe(0);
    expect(byName.get('big.bin')!.data.every((v) => v === 7)).toBe(true);
    expect(byName.get('big.bin')!.size).toBe(1500);
  });

  test('checksum and truncation errors', () => {
    const tar = writeTar([{ name: 'x.bin', data: new Uint8Array(1000).fill(3) }]);
    expect(readTar(tar)[0].data.length).toBe(1000);
    const bad = new Uint8Array(tar);
    bad[10] ^= 1;
    expect(() => readTar(bad)).toThrow(/checksum mismatch at offset 0/);
    expect(() => readTar(tar.subarray(0, 900))).toThrow(/needs 1000 bytes at offset 512 .*truncated/);
    expect(() => readTar(new Uint8Array(100))).toThrow(/less than one 512-byte header/);
  });
});

describe('MNIST from the mnist package', () => {
  test('10,000 real digits as bytes, labels, padding and a deterministic split', () => {
    const all = loadMnist();
    expect(all.count).toBe(10_000);
    expect([all.channels, all.height, all.width]).toEqual([1, 28, 28]);
    const perClass = Array(10).fill(0);
    for (const l of all.labels) perClass[l]++;
    for (const n of perClass) expect(n).toBeGreaterThan(800);
    let sum = 0;
    for (const v of all.pixels) sum += v;
    const mean = sum / all.pixels.length;
    expect(mean).toBeGreaterThan(20); // MNIST's mean intensity is about 33/255
    expect(mean).toBeLessThan(50);
    // Digits are centred: the border is background, the centre has ink.
    let border = 0, centre = 0;
    for (let i = 0; i < all.count; i++) {
      border += all.pixels[i * 784];
      centre += all.pixels[i * 784 + 14 * 28 + 14];
    }
    expect(border).toBe(0);
    expect(centre / all.count).toBeGreaterThan(60);
    const padded = loadMnist({ pad: 2 });
    expect([padded.height, padded.width]).toEqual([32, 32]);
    expect(padded.pixels[5 * 1024 + (2 + 10) * 32 + 2 + 13]).toBe(all.pixels[5 * 784 + 10 * 28 + 13]);
    const train = loadMnist({ split: 'train' });
    const test = loadMnist({ split: 'test' });
    expect(train.count + test.count).toBe(10_000);
    expect(test.count).toBeGreaterThan(900);
    expect(() => loadMnist({ pad: -1 })).toThrow(/pad must be/);
  });
});

describe('2-D toy distributions', () => {
  const key = T.random.key(5);
  const pts = (t: T.Tensor) => {
    const v = t.dataSync();
    return Array.from({ length: t.shape[0] }, (_, i) => [v[2 * i], v[2 * i + 1]]);
  };

  test('keyed, shaped [n, 2], and different keys give different samples', () => {
    for (const f of [gaussianMixture, checkerboard, twoMoons, spirals]) {
      const a = f(key, 100), b = f(key, 100), c = f(T.random.key(6), 100);
      expect(a.shape).toEqual([100, 2]);
      expect(Array.from(a.dataSync())).toEqual(Array.from(b.dataSync()));
      expect(Array.from(a.dataSync())).not.toEqual(Array.from(c.dataSync()));
      expect(() => f(key, 0)).toThrow(/positive integer/);
      T.dispose([a, b, c]);
    }
  });

  test('each distribution has its shape', () => {
    const g = gaussianMixture(key, 4000, { modes: 8, radius: 2, std: 0.05 });
    const hits = Array(8).fill(0);
    for (const [x, y] of pts(g)) {
      expect(Math.abs(Math.hypot(x, y) - 2)).toBeLessThan(0.3);
      hits[Math.round(((Math.atan2(y, x) / (2 * Math.PI)) * 8 + 8) % 8) % 8]++;
    }
    for (const h of hits) expect(h).toBeGreaterThan(400), expect(h).toBeLessThan(600);
    const cb = checkerboard(key, 4000, { cells: 4, scale: 2 });
    for (const [x, y] of pts(cb)) {
      expect(Math.abs(x)).toBeLessThanOrEqual(2), expect(Math.abs(y)).toBeLessThanOrEqual(2);
      expect((Math.floor(x + 2) + Math.floor(y + 2)) % 2).toBe(0); // dark squares only
    }
    const moons = twoMoons(key, 2000, { noise: 0 });
    for (const [x, y] of pts(moons)) {
      const outer = Math.abs(Math.hypot(x, y) - 1) < 1e-5 && y >= -1e-6;
      const inner = Math.abs(Math.hypot(x - 1, y - 0.5) - 1) < 1e-5 && y <= 0.5 + 1e-6;
      expect(outer || inner).toBe(true);
    }
    const sp = spirals(key, 2000, { noise: 0, turns: 1.5, scale: 0.5 });
    for (const [x, y] of pts(sp)) {
      // r = θ/π · scale, and the angle of (x, y) agrees with θ on one arm or the other.
      const r = Math.hypot(x, y);
      const theta = (r / 0.5) * Math.PI;
      const ok = [1, -1].some((arm) => Math.hypot(x - arm * -Math.cos(theta) * r, y - arm * Math.sin(theta) * r) < 1e-4);
      expect(ok).toBe(true);
    }
    T.dispose([g, cb, moons, sp]);
  });
});

describe('batch loader', () => {
  const ds: ImageDataset = parseCifar10(cifarRecords(10), 'fixture');

  test('seeded shuffling covers every sample once per epoch and batch(step) is pure', () => {
    const loader = new ImageLoader(ds, { batchSize: 3, key: T.random.key(1) });
    expect(loader.stepsPerEpoch).toBe(3); // the incomplete last batch is dropped
    const epoch0 = [0, 1, 2].flatMap((s) => Array.from(loader.plan(s).indices));
    const epoch1 = [3, 4, 5].flatMap((s) => Array.from(loader.plan(s).indices));
    expect(new Set(epoch0).size).toBe(9);
    expect(new Set(epoch1).size).toBe(9);
    expect(epoch0).not.toEqual(epoch1);
    const again = new ImageLoader(ds, { batchSize: 3, key: T.random.key(1) });
    expect(Array.from(again.plan(4).indices)).toEqual(Array.from(loader.plan(4).indices)); // a resumed run sees the same batch
    const other = new ImageLoader(ds, { batchSize: 3, key: T.random.key(2) });
    expect([0, 1, 2].flatMap((s) => Array.from(other.plan(s).indices))).not.toEqual(epoch0);
    const b = loader.batch(4);
    expect(b.x.shape).toEqual([3, 3, 32, 32]);
    expect(Array.from(b.y.dataSync())).toEqual(Array.from(b.indices, (i) => i % 10));
    expect(b.epoch).toBe(1);
    T.dispose([b.x, b.y]);
    const ordered = new ImageLoader(ds, { batchSize: 4, dropLast: false });
    expect(ordered.stepsPerEpoch).toBe(3);
    expect(Array.from(ordered.plan(2).indices)).toEqual([8, 9]);
    expect(() => new ImageLoader(ds, { batchSize: 2, flip: true })).toThrow(/need a key/);
    expect(() => new ImageLoader(ds, { batchSize: 11 })).toThrow(/fewer than one batch/);
  });

  test('random flips: about half, each a mirror image', () => {
    const loader = new ImageLoader(ds, { batchSize: 10, key: T.random.key(3), flip: true });
    let flipped = 0;
    for (let step = 0; step < 40; step++) {
      const { indices, flips } = loader.plan(step);
      flipped += flips!.reduce((a, f) => a + f, 0);
      if (step === 0) {
        const b = loader.batch(0);
        const v = b.x.dataSync();
        for (let k = 0; k < 10; k++) {
          const x = flips![k] ? 31 : 0;
          expect(v[k * 3072 + 2 * 1024 + 4 * 32]).toBeCloseTo(pixelOf(indices[k], 2, 4, x) / 127.5 - 1, 6);
        }
        T.dispose([b.x, b.y]);
      }
    }
    expect(flipped).toBeGreaterThan(150);
    expect(flipped).toBeLessThan(250);
  });
});
