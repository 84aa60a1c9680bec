export { sgd, adam, adamw, radam } from './optimizers.js';
export type { Optimizer, OptState, StepScalars, LearningRate, SgdOptions, AdamOptions } from './optimizers.js';
export { globalNorm, clipByGlobalNorm } from './clip.js';
export * as schedules from './schedules.js';
export type { Schedule } from './schedules.js';
export { emaFixed, emaHalflife, emaPower, halflifeBeta, powerBeta, gammaToSigmaRel, sigmaRelToGamma, lerpTree } from './ema.js';
export type { Ema, EmaState, HalflifeOptions, PowerOptions } from './ema.js';
