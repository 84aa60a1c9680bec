import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '@scm/tensor';
import { checkGrads } from '@scm/autodiff';
import { Classifier, crossEntropy, evaluateClassifier, loadClassifier, maxPool2x2, trainClassifier } from '../src/classifier.js';
import { imagesToTensor, type ImageDataset } from '../src/data/dataset.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'classifier-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * A small learnable dataset of 8×8 RGB images: class k in {0, 1, 2} brightens channel k,
 * with pixel noise from a fixed LCG.
 */
function toyDataset(n: number, seed: number): ImageDataset {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const pixels = new Uint8Array(n * 3 * 64);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 3;
    for (let c = 0; c < 3; c++) for (let p = 0; p < 64; p++) pixels[(i * 3 + c) * 64 + p] = Math.floor(rand() * 160) + (c === labels[i] ? 90 : 0);
  }
  return { name: `toy${seed}`, count: n, channels: 3, height: 8, width: 8, pixels, labels, classNames: ['r', 'g', 'b'] };
}
const TOY = { inChannels: 3, imageSize: 8, numClasses: 3, channels: [4, 8], hidden: 16 };

describe('classifier model', () => {
  test('shapes, features and input checks', () => {
    const model = new Classifier();
    const params = model.init(T.random.key(0));
    const x = T.random.uniform(T.random.key(1), [2, 3, 32, 32], { low: -1, high: 1 });
    const f = model.features(params, x);
    const logits = model.apply(params, x);
    expect(f.shape).toEqual([2, 128]);
    expect(Math.min(...f.dataSync())).toBeGreaterThanOrEqual(0); // after ReLU
    expect(logits.shape).toEqual([2, 10]);
    expect(model.parameterCount()).toBe(3 * 16 * 9 + 16 + 16 * 32 * 9 + 32 + 32 * 64 * 9 + 64 + 1024 * 128 + 128 + 128 * 10 + 10);
    expect(() => model.apply(params, T.zeros([2, 1, 32, 32]))).toThrow(/expected images \[N, 3, 32, 32\]/);
    expect(() => new Classifier({ ...TOY, imageSize: 6 })).toThrow(/divisible by 2\^2/);
    T.dispose([params, x, f, logits]);
  });

  test('max pooling and cross-entropy values', () => {
    const x = T.tensor([[[[1, 5, 2, 0], [3, 4, 8, 1], [0, 0, -1, -2], [0, 9, -3, -4]]]]);
    expect(maxPool2x2(x).toArraySync()).toEqual([[[[5, 8], [9, -1]]]]);
    const logits = [[2, -1, 0.5], [0, 0, 3]];
    const labels = [2, 0];
    const want = -labels.reduce((acc, l, i) => acc + logits[i][l] - Math.log(logits[i].reduce((a, v) => a + Math.exp(v), 0)), 0) / 2;
    const ce = crossEntropy(T.tensor(logits), T.tensor(labels, { dtype: 'int32' }));
    expect(ce.dataSync()[0]).toBeCloseTo(want, 5);
    expect(() => crossEntropy(T.zeros([2, 3]), T.zeros([3], { dtype: 'int32' }))).toThrow(/logits \[N, K\] and labels \[N\]/);
    T.dispose([x, ce]);
  });

  test('cross-entropy gradients match finite differences (float64)', async () => {
    T.setBackend('reference');
    try {
      const labels = T.tensor([1, 0, 2], { dtype: 'int32' });
      const logits = T.tensor([[0.3, -1.2, 2], [1, 0.5, -0.5], [0, 0.1, 0.2]], { dtype: 'float64' });
      await checkGrads((l: T.Tensor) => crossEntropy(l, labels), [logits], { order: 2 });
      T.dispose([labels, logits]);
    } finally {
      T.setBackend((process.env.TENSOR_BACKEND as T.BackendName) ?? 'webasm');
    }
  });
});

describe('training', () => {
  const train = toyDataset(48, 1);
  const test_ = toyDataset(30, 2);
  const base = { train, test: test_, config: TOY, epochs: 4, batchSize: 8, lr: 0.02, warmupSteps: 2, seed: 3, log: () => {} };

  test('a run interrupted and resumed equals a run straight through; the saved classifier reloads', async () => {
    const straight = await trainClassifier({ ...base, outDir: join(dir, 'straight') });
    expect(straight.step).toBe(24);
    const first = await trainClassifier({ ...base, outDir: join(dir, 'resumed'), maxSteps: 10, checkpointEvery: 4 });
    expect(first.step).toBe(10);
    expect(first.test).toBeUndefined();
    T.dispose(first.params);
    const second = await trainClassifier({ ...base, outDir: join(dir, 'resumed') });
    expect(second.resumedFrom).toBe(10);
    expect(second.step).toBe(24);
    const a = straight.params as any, b = second.params as any;
    for (const [u, v] of [[a.convs[0].weight, b.convs[0].weight], [a.fc.weight, b.fc.weight], [a.head.bias, b.head.bias]]) {
      expect(Array.from(v.dataSync())).toEqual(Array.from(u.dataSync()));
    }
    expect(second.test!.accuracy).toBe(straight.test!.accuracy);
    // The toy classes are separable by colour: training must beat chance (1/3) clearly.
    expect(straight.test!.accuracy).toBeGreaterThan(0.8);

    const { model, params } = await loadClassifier(join(dir, 'straight', 'classifier.safetensors'));
    const again = await evaluateClassifier(model, params, test_);
    expect(again.accuracy).toBe(straight.test!.accuracy);
    const x = imagesToTensor(test_, [0, 1, 2]);
    const f1 = model.features(params, x), f2 = straight.model.features(straight.params, x);
    expect(Array.from(f1.dataSync())).toEqual(Array.from(f2.dataSync()));
    T.dispose([straight.params, second.params, params, x, f1, f2]);

    await expect(trainClassifier({ ...base, lr: 0.1, outDir: join(dir, 'straight') })).rejects.toThrow(/written by a run with other settings/);
  });
});
