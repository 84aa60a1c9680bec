/**
 * Batches of an image dataset, as a pure function of the global step: batch(step) is
 * the same whenever it is asked for, so a resumed run continues with exactly the batches
 * it would have seen. Epoch e is shuffled by a permutation drawn from foldIn(key, 2e);
 * horizontal flips are drawn per position from foldIn(key, 2e + 1).
 */
import { TensorError, random, type Tensor } from '@scm/tensor';
import { imagesToTensor, labelsToTensor, type ImageDataset, type TensorOptions } from './dataset.js';

export interface LoaderOptions extends TensorOptions {
  batchSize: number;
  /** Shuffle (and draw flips) with this key; without one, batches follow dataset order. */
  key?: random.Key;
  /** Mirror each image left-right with probability 1/2 (needs a key). */
  flip?: boolean;
  /** Drop the last incomplete batch of each epoch (default true). */
  dropLast?: boolean;
}

export interface Batch {
  /** [B, C, H, W] in [-1, 1]. */
  x: Tensor;
  /** [B] int32 class labels. */
  y: Tensor;
  /** Dataset indices of the samples. */
  indices: Int32Array;
  epoch: number;
}

export class ImageLoader {
  readonly batchSize: number;
  readonly stepsPerEpoch: number;
  private cache: { epoch: number; order: Int32Array; flips: Uint8Array | null } | null = null;

  constructor(readonly dataset: ImageDataset, readonly opts: LoaderOptions) {
    const { batchSize, flip = false, key } = opts;
    if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new TensorError('ImageLoader', `batchSize must be a positive integer, got ${batchSize}`);
    if (flip && !key) throw new TensorError('ImageLoader', 'random flips need a key');
    const dropLast = opts.dropLast ?? true;
    this.batchSize = batchSize;
    this.stepsPerEpoch = dropLast ? Math.floor(dataset.count / batchSize) : Math.ceil(dataset.count / batchSize);
    if (this.stepsPerEpoch === 0) throw new TensorError('ImageLoader', `${dataset.name} has ${dataset.count} samples, fewer than one batch of ${batchSize} (use dropLast: false)`);
  }

  private epochPlan(epoch: number): { order: Int32Array; flips: Uint8Array | null } {
    if (this.cache?.epoch === epoch) return this.cache;
    const { key, flip } = this.opts;
    const n = this.dataset.count;
    const order = key ? random.permutationArray(random.foldIn(key, 2 * epoch), n) : Int32Array.from({ length: n }, (_, i) => i);
    const flips = flip && key ? Uint8Array.from(random.bits(random.foldIn(key, 2 * epoch + 1), n), (b) => b >>> 31) : null;
    this.cache = { epoch, order, flips };
    return this.cache;
  }

  /** The dataset indices and flip flags of batch `step`. */
  plan(step: number): { indices: Int32Array; flips: Uint8Array | null; epoch: number } {
    if (!(Number.isInteger(step) && step >= 0)) throw new TensorError('ImageLoader', `step must be a non-negative integer, got ${step}`);
    const epoch = Math.floor(step / this.stepsPerEpoch);
    const start = (step % this.stepsPerEpoch) * this.batchSize;
    const { order, flips } = this.epochPlan(epoch);
    const end = Math.min(start + this.batchSize, this.dataset.count);
    return { indices: order.slice(start, end), flips: flips ? flips.slice(start, end) : null, epoch };
  }

  /** Batch number `step`, counting across epochs. */
  batch(step: number): Batch {
    const { indices, flips, epoch } = this.plan(step);
    const t = { backend: this.opts.backend, dtype: this.opts.dtype };
    return { x: imagesToTensor(this.dataset, indices, flips ?? undefined, t), y: labelsToTensor(this.dataset, indices, t), indices, epoch };
  }
}
