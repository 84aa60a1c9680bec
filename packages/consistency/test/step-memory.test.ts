/**
 * Memory over a long run: sCT training iterations of micro UNets (the block kinds of the
 * real ones: adaptive double normalization, skips, self-attention with its custom JVP,
 * dropout, and in the second case down- and upsampling), done as the training loop does
 * them: scmStep, then RAdam and the EMA replacing the old state. After every iteration the
 * live tensor and buffer counts must equal the count before the first one, and freeing
 * the state must bring them back to where the test began.
 *
 * The 1,000-step run uses the GPU.js cpu backend: the same buffer bookkeeping as webasm
 * (the CPU default, exercised by the second case) at less cost per call, which is what an
 * iteration of a micro network is made of.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { UNet, radam, emaHalflife, type Params } from '@scm/nn';
import { scmStep } from '../src/step.js';
import { WeightingHead } from '../src/weighting.js';
import { defaultScmOptions } from '../src/scm.js';
import type { NetFn } from '../src/trigflow.js';

let previousBackend: T.BackendName;
beforeAll(() => {
  previousBackend = T.getBackend().name;
});
afterAll(() => T.setBackend(previousBackend));

const cases = [
  // 2x2 images, one level: the middle block has attention.
  { name: 'one level with attention', backend: 'cpu', steps: 1000, imageSize: 2, channelMult: [1] },
  // 4x4 images, two levels (4x4, 2x2), attention at 2x2 and in the middle block.
  { name: 'two levels with resampling and attention', backend: 'webasm', steps: 100, imageSize: 4, channelMult: [1, 2] },
] as const;

for (const { name, backend, steps, imageSize, channelMult } of cases) test(`live tensors and buffers stay flat over ${steps} sCT training steps (micro UNet, ${name}, ${backend} backend)`, async () => {
  T.setBackend(backend);
  const start = T.memory();
  const unet = new UNet({ imageChannels: 1, imageSize, baseChannels: 4, channelMult, blocksPerLevel: 0, attentionResolutions: [2], dropout: 0.2 });
  const net: NetFn<Params> = (p, y, t, ctx) => unet.apply(p, y, t, ctx);
  const head = new WeightingHead({ channels: 8 });
  const opts = { ...defaultScmOptions, method: 'sct' as const, warmupIters: steps / 2 };
  const optimizer = radam({ lr: 1e-3, b1: 0.9, b2: 0.99 });
  const batch = 2;
  const ema = emaHalflife({ halflifeKimg: 0.5, batchSize: batch });
  const runKey = T.random.key(3);

  let trainable = { net: unet.init(T.random.key(1)), head: head.init() };
  let opt = optimizer.init(trainable);
  let emaState = ema.init(trainable.net);
  const x0 = T.tidy(() => T.mul(T.random.normal(T.random.key(2), [batch, 1, imageSize, imageSize]), 0.5));
  const baseline = T.memory();

  const drift: string[] = [];
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    const res = await scmStep({ net, params: trainable.net, head, phi: trainable.head, x0, key: T.random.foldIn(runKey, step), iter: step, train: true }, opts);
    const upd = optimizer.step({ net: res.gradParams, head: res.gradPhi }, opt, trainable);
    T.dispose([res.gradParams, res.gradPhi]);
    emaState = ema.step(emaState, upd.params.net);
    trainable = upd.params;
    opt = upd.state;
    losses.push(res.loss);
    const now = T.memory();
    if (now.tensors !== baseline.tensors || now.buffers !== baseline.buffers) {
      drift.push(`step ${step + 1}: ${now.tensors} tensors, ${now.buffers} buffers`);
      if (drift.length >= 5) break;
    }
  }
  expect(drift, `baseline ${baseline.tensors} tensors, ${baseline.buffers} buffers`).toEqual([]);
  expect(losses.every(Number.isFinite)).toBe(true);
  // The run did train: the loss changed from step to step.
  expect(new Set(losses.map((l) => l.toPrecision(6))).size).toBeGreaterThan(1);

  T.dispose([trainable, opt, emaState.params, x0]);
  expect(T.memory()).toEqual(start);
}, 240_000);
