/** Every primitive, by name: the list the derivative tests iterate. */
import type { Primitive } from './primitive.js';
import { unaryPrimitives } from './primitives/unary.js';
import { binaryPrimitives, cast, where } from './primitives/binary.js';
import { argmax, max, sum } from './primitives/reduce.js';
import { broadcastTo, concat, flip, pad, reshape, slice, transpose } from './primitives/movement.js';
import { scatterAdd, take } from './primitives/gather.js';
import { matmul } from './primitives/matmul.js';
import { conv2d, conv2dInputGrad, conv2dWeightGrad } from './primitives/conv.js';
import { fused, fusedSum } from './primitives/fused.js';

export const primitives: Record<string, Primitive<any>> = {
  ...unaryPrimitives,
  ...binaryPrimitives,
  where, cast, sum, max, argmax,
  reshape, broadcastTo, transpose, slice, pad, flip, concat,
  take, scatterAdd, matmul, conv2d, conv2dInputGrad, conv2dWeightGrad, fused, fusedSum,
};
