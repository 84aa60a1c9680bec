/**
 * The benchmark cases, as plain data: each implementation (ours, jax-js) builds the same
 * computation from these definitions.
 */
export const matmulSizes = [
  [256, 256, 256],
  [512, 512, 512],
  [1024, 1024, 1024],
  [4096, 576, 64],
];

/** conv2d 3x3, 64 -> 64 channels, 16 images of 32x32, padding 1. */
export const conv = { x: [16, 64, 32, 32], w: [64, 64, 3, 3], padding: 1 };

export const elementwiseSize = 1 << 20;
export const overheadSize = 1000;

/** MLP 784-256-256-784, batch 64, tanh. */
export const mlp = { batch: 64, sizes: [784, 256, 256, 784] };

/** A small conv net: 3 -> 16 -> 32 (stride 2) -> 32 channels, 3x3 kernels, tanh, batch 8 at 32x32. */
export const convNet = {
  x: [8, 3, 32, 32],
  layers: [
    { cin: 3, cout: 16, stride: 1 },
    { cin: 16, cout: 32, stride: 2 },
    { cin: 32, cout: 32, stride: 1 },
  ],
};

export const matmulName = ([m, k, n]) => `matmul ${m}x${k}x${n}`;
export const convName = 'conv2d 3x3 64->64 16x32x32';
export const mlpName = 'mlp 784-256-256-784 b64';
export const convNetName = 'convnet 3-16-32-32 b8 32x32';
