export { jvp, JVPTrace, JVPTracer } from './jvp.js';
export { vjp, VJPTrace, VJPTracer } from './vjp.js';
export { grad, valueAndGrad, linearize, jacfwd, jacrev, hessian, hvp, stopGradient } from './transforms.js';
export type { GradOptions } from './transforms.js';
export { customJvp, customVjp } from './custom.js';
export { checkGrads, checkJvp, checkVjp } from './check.js';
export type { CheckGradsOptions } from './check.js';
export { flatten, treeMap, treeZip } from './pytree.js';
export type { Tree } from './pytree.js';
