/**
 * @scm/autodiff/testing: what our own derivative and op tests use, for users who want to
 * property-test their functions the same way (see TESTING.md).
 */
export {
  GRID, valueArb, valuesArb, distinctValuesArb, shapeArb, broadcastShapesArb, tensorArb, distinctTensorsArb,
  indexTensorArb, boolTensorArb, EDGE_VALUES, edgeValueArb, edgeTensorArb, toTensor, withTensors,
} from './arbitraries.js';
export type { Domain, HostTensor, ShapeOptions, ToTensorOptions } from './arbitraries.js';
export { FLOAT32_ROUNDOFF, float32Tolerance, findMismatch, assertClose, expectClose, expectNoLeaks } from './close.js';
export type { Tolerance, Mismatch } from './close.js';
export { numericalJvp, innerProduct, readback } from './numerical.js';
export type { NumericalJvpOptions, HostValue } from './numerical.js';
export { checkGrads, checkJvp, checkVjp } from '../check.js';
export type { CheckGradsOptions } from '../check.js';
