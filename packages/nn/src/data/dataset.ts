/**
 * Image datasets live on the host as uint8 pixels (N×C×H×W, like the files they come
 * from) and become tensors one batch at a time, scaled to [-1, 1].
 */
import { TensorError, fromArray, type BackendName, type DType, type Tensor } from '@scm/tensor';

export interface ImageDataset {
  readonly name: string;
  readonly count: number;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  /** count × channels × height × width bytes, sample-major, channel planes (CHW). */
  readonly pixels: Uint8Array;
  /** One class index per sample. */
  readonly labels: Uint8Array;
  readonly classNames: readonly string[];
}

export interface TensorOptions {
  backend?: BackendName;
  dtype?: DType;
}

/** Samples `indices` (optionally mirrored left-right where flips[k] is set) as a [B, C, H, W] tensor in [-1, 1]. */
export function imagesToTensor(ds: ImageDataset, indices: ArrayLike<number>, flips?: ArrayLike<boolean | number>, opts: TensorOptions = {}): Tensor {
  const { channels: C, height: H, width: W } = ds;
  const per = C * H * W;
  const out = new Float32Array(indices.length * per);
  for (let k = 0; k < indices.length; k++) {
    const idx = indices[k];
    if (!(Number.isInteger(idx) && idx >= 0 && idx < ds.count)) throw new TensorError('imagesToTensor', `index ${idx} is out of range for ${ds.name} with ${ds.count} samples`);
    const src = idx * per;
    const dst = k * per;
    const flip = flips ? !!flips[k] : false;
    for (let r = 0; r < C * H; r++) {
      const s = src + r * W;
      const d = dst + r * W;
      if (flip) for (let x = 0; x < W; x++) out[d + x] = ds.pixels[s + W - 1 - x] / 127.5 - 1;
      else for (let x = 0; x < W; x++) out[d + x] = ds.pixels[s + x] / 127.5 - 1;
    }
  }
  return fromArray(out, [indices.length, C, H, W], { dtype: opts.dtype ?? 'float32', backend: opts.backend });
}

/** Labels of `indices` as an int32 tensor [B]. */
export function labelsToTensor(ds: ImageDataset, indices: ArrayLike<number>, opts: Omit<TensorOptions, 'dtype'> = {}): Tensor {
  return fromArray(Int32Array.from(Array.from(indices, (i) => ds.labels[i])), [indices.length], { dtype: 'int32', backend: opts.backend });
}

/** The first `n` samples (or those at `indices`) as a new dataset sharing no memory with the original. */
export function subset(ds: ImageDataset, indices: ArrayLike<number>, name = `${ds.name} subset`): ImageDataset {
  const per = ds.channels * ds.height * ds.width;
  const pixels = new Uint8Array(indices.length * per);
  const labels = new Uint8Array(indices.length);
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k];
    if (!(Number.isInteger(i) && i >= 0 && i < ds.count)) throw new TensorError('subset', `index ${i} is out of range for ${ds.name} with ${ds.count} samples`);
    pixels.set(ds.pixels.subarray(i * per, (i + 1) * per), k * per);
    labels[k] = ds.labels[i];
  }
  return { ...ds, name, count: indices.length, pixels, labels };
}
