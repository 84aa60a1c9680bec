import './methods.js';

export { Tensor, tidy, keep, dispose, memory, Storage, formatValues, transformScope, collectTensors, ownedByCurrentScope, transformDepth } from './tensor.js';
export type { Trace, NestedArray } from './tensor.js';
export { TensorError } from './errors.js';
export type { DType, TypedArray } from './dtype.js';
export { isFloat, promote } from './dtype.js';
export type { Shape } from './shape.js';
export { sizeOf, broadcastShapes, stridesOf, shapesEqual } from './shape.js';
export type { Backend, BackendName, Aval } from './backend.js';
export { setBackend, getBackend, getBackendInstance, initWebGPU } from './backends/index.js';
export { getThreads, setThreads, helperThreads } from './backends/threads.js';
export type { Primitive } from './primitive.js';
export { bind } from './primitive.js';
export * from './ops.js';
export * as random from './random.js';
export { fromNdarray, toNdarray } from './interop.js';
export { primitives } from './registry.js';
export { Expr, FUSED_UNARY, FUSED_BINARY, type Instr, type FusedUnary, type FusedBinary } from './primitives/fused.js';
