#!/usr/bin/env node
/**
 * Train the CIFAR-10 classifier from the command line (after `npx tsc -b`):
 *
 *   node packages/nn/dist/train-classifier.js --data ../shared/data/cifar-10-binary-subset.tar.gz --out runs/classifier
 *
 * Trains on every data_batch_k.bin found (the subset has data_batch_1: 10,000 images),
 * evaluates on test_batch.bin, and writes runs/classifier/classifier.safetensors.
 * Interrupted runs resume from runs/classifier/checkpoint.safetensors when started again
 * with the same settings. `--help` lists the options.
 */
import { parseArgs } from 'node:util';
import { setBackend, type BackendName } from '@scm/tensor';
import { DEFAULT_CLASSIFIER, trainClassifier } from './classifier.js';
import { loadCifar10 } from './data/cifar10.js';
import { subset } from './data/dataset.js';

const HELP = `usage: node packages/nn/dist/train-classifier.js [options]
  --data PATH          CIFAR-10 binary .tar.gz or directory (default ../shared/data/cifar-10-binary-subset.tar.gz)
  --out DIR            output directory (default runs/classifier)
  --epochs N           (default 5)
  --batch N            batch size (default 32)
  --lr X               peak Adam learning rate (default 0.002)
  --warmup N           warmup steps (default 3% of training)
  --clip X             clip gradients to this global norm (default 0: off)
  --channels A,B,C     conv widths (default ${DEFAULT_CLASSIFIER.channels.join(',')})
  --hidden N           feature width (default ${DEFAULT_CLASSIFIER.hidden})
  --no-flip            no random horizontal flips
  --seed N             (default 0)
  --checkpoint-every N steps between resumable checkpoints (default 100)
  --max-steps N        stop after N steps in this invocation (resumable)
  --train-limit N      use only the first N training images
  --test-limit N       evaluate on only the first N test images
  --backend NAME       tensor backend (default $TENSOR_BACKEND or webasm)`;

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      data: { type: 'string', default: '../shared/data/cifar-10-binary-subset.tar.gz' },
      out: { type: 'string', default: 'runs/classifier' },
      epochs: { type: 'string', default: '5' },
      batch: { type: 'string', default: '32' },
      lr: { type: 'string', default: '0.002' },
      warmup: { type: 'string' },
      clip: { type: 'string', default: '0' },
      channels: { type: 'string', default: DEFAULT_CLASSIFIER.channels.join(',') },
      hidden: { type: 'string', default: String(DEFAULT_CLASSIFIER.hidden) },
      'no-flip': { type: 'boolean', default: false },
      seed: { type: 'string', default: '0' },
      'checkpoint-every': { type: 'string', default: '100' },
      'max-steps': { type: 'string' },
      'train-limit': { type: 'string' },
      'test-limit': { type: 'string' },
      backend: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (a.help) {
    console.log(HELP);
    return;
  }
  const int = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${v}`);
    return n;
  };
  const num = (name: string, v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got ${v}`);
    return n;
  };
  if (a.backend) setBackend(a.backend as BackendName);
  const t0 = performance.now();
  let train = await loadCifar10(a.data!, 'train');
  let test = await loadCifar10(a.data!, 'test');
  const trainLimit = int('train-limit', a['train-limit']);
  const testLimit = int('test-limit', a['test-limit']);
  if (trainLimit) train = subset(train, Array.from({ length: Math.min(trainLimit, train.count) }, (_, i) => i));
  if (testLimit) test = subset(test, Array.from({ length: Math.min(testLimit, test.count) }, (_, i) => i));
  console.log(`data: ${train.count} training and ${test.count} test images from ${a.data} (${((performance.now() - t0) / 1000).toFixed(1)}s)`);
  const channels = a.channels!.split(',').map((c) => int('channels', c)!);
  const result = await trainClassifier({
    train,
    test,
    outDir: a.out!,
    config: { ...DEFAULT_CLASSIFIER, channels, hidden: int('hidden', a.hidden)! },
    epochs: int('epochs', a.epochs)!,
    batchSize: int('batch', a.batch)!,
    lr: num('lr', a.lr!),
    warmupSteps: int('warmup', a.warmup),
    clipNorm: num('clip', a.clip!),
    flip: !a['no-flip'],
    seed: int('seed', a.seed),
    checkpointEvery: int('checkpoint-every', a['checkpoint-every']),
    maxSteps: int('max-steps', a['max-steps']),
  });
  const wall = (performance.now() - t0) / 1000;
  console.log(`done: step ${result.step}/${result.totalSteps}, ${result.seconds.toFixed(0)}s training in this invocation, ${wall.toFixed(0)}s wall in total` +
    (result.test ? `, test accuracy ${(100 * result.test.accuracy).toFixed(2)}%` : ''));
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
