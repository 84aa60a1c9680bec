/**
 * One training iteration for each method, on any TrigFlow network `F(params, y, t, ctx)`:
 *  - 'diffusion': the TrigFlow velocity loss (teacher training).
 *  - 'sct' / 'scd': Algorithm 1 (see scm.ts).
 * A step draws its randomness from one key (noise, times, dropout), computes the loss and
 * the gradients of (θ, φ), and leaves the update to the optimizer. It returns host-side
 * diagnostics: the loss, and for sCM the raw tangent norm ‖g‖/√D per sample with its t, as
 * the spec recommends (§8.10: the sCM loss value itself is not a quality signal).
 */
import { Tensor, tidy, random, div, mul, mean, exp, sub, sqrt, full, dispose, type random as R } from '@scm/tensor';
import { valueAndGrad, type Jitted } from '@scm/autodiff';
import { lerpTree, type Optimizer, type OptState } from '@scm/nn';
import { addNoise, diffusionLossPerSample, velocityTarget, networkVelocity, type NetContext, type NetFn } from './trigflow.js';
import {
  ddimStepBack, normalizeTangent, previousTime, sampleTime, scmLoss, scmLossOfOutput, scmTangent, scmTangentFiniteDifference, sumSquaresPerSample, warmupFactor,
  type ScmOptions,
} from './scm.js';
import type { WeightingHead, WeightingParams } from './weighting.js';

export interface StepInputs<P> {
  net: NetFn<P>;
  params: P;
  head: WeightingHead;
  phi: WeightingParams;
  /** Clean data x0 [B, ...], scaled so its std is about σ_d. */
  x0: Tensor;
  key: R.Key;
  /** Iterations done so far (the tangent warmup's clock). */
  iter: number;
  /** Dropout rate > 0 turns on ctx.train for the student. */
  train: boolean;
}

export interface DiffusionStepOptions {
  sigmaD: number;
  pMean: number;
  pStd: number;
  adaptiveWeighting: boolean;
}

export interface StepResult<P> {
  loss: number;
  gradParams: P;
  gradPhi: WeightingParams;
  /** Per-sample t and raw ‖g‖/√D (sCM only), for bucketed monitoring. */
  t?: Float32Array | Float64Array;
  gRms?: Float32Array | Float64Array;
}

/** A step's randomness from its key: noise z, times t, and the dropout key. */
function drawStep(key: R.Key, x0: Tensor, sigmaD: number, pMean: number, pStd: number) {
  const [kz, kt, kd] = random.split(key, 3);
  const dtype = x0.dtype as 'float32' | 'float64';
  const z = random.normal(kz, [...x0.shape], { std: sigmaD, dtype, backend: x0.backend });
  const t = sampleTime(kt, x0.shape[0], pMean, pStd, sigmaD, dtype);
  return { z, t, dropoutKey: kd };
}

async function readArray(x: Tensor): Promise<Float32Array | Float64Array> {
  return (await x.data()) as Float32Array | Float64Array;
}

/** The diffusion (teacher) loss step: E‖F_θ(x_t/σ_d, t) − v_t/σ_d‖² (optionally adaptively weighted). */
export async function diffusionStep<P>(inp: StepInputs<P>, opts: DiffusionStepOptions): Promise<StepResult<P>> {
  const { net, head, x0, key, train } = inp;
  const sd = opts.sigmaD;
  const { z, t, dropoutKey } = drawStep(key, x0, sd, opts.pMean, opts.pStd);
  const ctx: NetContext = { train, key: dropoutKey };
  const [xt, v] = tidy(() => [addNoise(x0, z, t), velocityTarget(x0, z, t)]);
  const lossFn = (p: P, phi: WeightingParams) => {
    const per = diffusionLossPerSample(net(p, div(xt, sd), t, ctx), v, sd);
    if (!opts.adaptiveWeighting) return mean(per);
    const w = head.apply(phi, t);
    return mean(sub(mul(exp(w), per), w));
  };
  const [lossT, [gradParams, gradPhi]] = valueAndGrad(lossFn, { argnums: [0, 1] })(inp.params, inp.phi);
  const loss = (await readArray(lossT))[0];
  for (const x of [z, t, xt, v, lossT]) x.dispose();
  return { loss, gradParams, gradPhi };
}

export interface ScmStepInputs<P> extends StepInputs<P> {
  /** sCD: the teacher network and its (EMA) parameters; evaluated without dropout. */
  teacher?: { net: NetFn<any>; params: unknown };
  /**
   * The one-pass gradients compiled by `jit` (see onePassGradients), used in place of the
   * eager computation; the caller passes it only when the step is that same function (warmup
   * over, no dropout).
   */
  replayed?: (params: P, phi: WeightingParams, x0: Tensor, z: Tensor, t: Tensor) => Promise<OnePassOutputs<P>>;
}

/** The loss, the raw tangent norm ‖g‖/√D per sample, and the gradients of (θ, φ). */
export interface OnePassOutputs<P> {
  loss: Tensor;
  gRms: Tensor;
  gradParams: P;
  gradPhi: WeightingParams;
}

/**
 * sCT / sCD in one pass, for drawn noise z and times t: F_θ⁻ = F_θ numerically (θ⁻ =
 * stopGradient(θ), the same dropout mask), so the JVP's primal output is the loss's F_θ. The
 * JVP runs inside the gradient and F comes from it: the network's forward runs once instead
 * of twice. The tangent J only enters g through stopGradient, so the backward pass never
 * visits the tangent computations. A function of tensors only (given r and ctx), so that
 * `jit` can replay it.
 */
export function onePassGradients<P>(
  net: NetFn<P>, head: WeightingHead, opts: ScmOptions, r: number, ctx: NetContext, teacher?: { net: NetFn<any>; params: unknown },
): (params: P, phi: WeightingParams, x0: Tensor, z: Tensor, t: Tensor) => OnePassOutputs<P> {
  const sd = opts.sigmaD;
  return (params, phi, x0, z, t) => {
    const xt = addNoise(x0, z, t);
    const dxdt = opts.method === 'sct' ? velocityTarget(x0, z, t) : networkVelocity(teacher!.net, teacher!.params, xt, t, sd);
    const lossFn = (p: P, ph: WeightingParams) => {
      const { F, g: raw } = scmTangent({ net, params: p, xt, t, dxdt, r, sigmaD: sd, ctx });
      const g = normalizeTangent(raw, opts.normalization, opts.normC);
      return [scmLossOfOutput(F, { phi: ph, head, t, g, opts }), raw];
    };
    const [[loss, raw], [gradParams, gradPhi]] = valueAndGrad(lossFn, { argnums: [0, 1], hasAux: true })(params, phi) as [[Tensor, Tensor], [P, WeightingParams]];
    const gRms = sqrt(div(sumSquaresPerSample(raw), raw.size / raw.shape[0]));
    return { loss, gRms, gradParams, gradPhi };
  };
}

/** One sCT / sCD iteration of Algorithm 1 (gradients only; the caller applies the optimizer). */
export async function scmStep<P>(inp: ScmStepInputs<P>, opts: ScmOptions): Promise<StepResult<P>> {
  const { net, head, x0, key, train, teacher } = inp;
  const sd = opts.sigmaD;
  if (opts.method === 'scd' && !teacher) throw new Error('scmStep: sCD needs a teacher network and parameters');
  const { z, t, dropoutKey } = drawStep(key, x0, sd, opts.pMean, opts.pStd);
  // The same dropout key in the JVP pass and the gradient pass: identical masks, so F_θ − F_θ⁻ = 0.
  const ctx: NetContext = { train, key: dropoutKey };

  if (opts.tangent === 'jvp' && opts.onePass !== false) {
    const out = inp.replayed
      ? await inp.replayed(inp.params, inp.phi, x0, z, t)
      : tidy(() => onePassGradients(net, head, opts, warmupFactor(inp.iter, opts.warmupIters), ctx, teacher)(inp.params, inp.phi, x0, z, t));
    const loss = (await readArray(out.loss))[0];
    const tHost = await readArray(t);
    const gRms = await readArray(out.gRms);
    for (const x of [z, t, out.loss, out.gRms]) x.dispose();
    return { loss, gradParams: out.gradParams, gradPhi: out.gradPhi, t: tHost, gRms };
  }

  const xt = tidy(() => addNoise(x0, z, t));
  const velocity = (x: Tensor, tt: Tensor) => tidy(() => networkVelocity(teacher!.net, teacher!.params, x, tt, sd));
  const dxdt = opts.method === 'sct' ? tidy(() => velocityTarget(x0, z, t)) : velocity(xt, t);

  // Two passes: the tangent (a JVP at θ⁻, or the discrete-time tangent of spec §2.11 from two
  // forward passes), then the loss's own forward pass at θ.
  let raw: Tensor;
  if (opts.tangent === 'jvp') {
    const out = scmTangent({ net, params: inp.params, xt, t, dxdt, r: warmupFactor(inp.iter, opts.warmupIters), sigmaD: sd, ctx });
    raw = out.g;
    out.F.dispose();
    out.J.dispose();
  } else {
    const tPrev = tidy(() => previousTime(t, opts.fdSteps));
    // sCT: the same (x0, z) at the earlier time; sCD: one teacher DDIM step back.
    const xPrev = opts.method === 'sct' ? tidy(() => addNoise(x0, z, tPrev)) : tidy(() => {
      const v = velocity(xt, t);
      return ddimStepBack(xt, t, tPrev, v);
    });
    const out = scmTangentFiniteDifference({ net, params: inp.params, xt, t, xPrev, tPrev, sigmaD: sd, ctx });
    raw = out.g;
    out.F.dispose();
    out.J.dispose();
    xPrev.dispose();
    tPrev.dispose();
  }
  const g = tidy(() => normalizeTangent(raw, opts.normalization, opts.normC));
  const gRmsT = tidy(() => sqrt(div(sumSquaresPerSample(raw), raw.size / raw.shape[0])));

  const lossFn = (p: P, phi: WeightingParams) => scmLoss({ net, params: p, phi, head, xt, t, g, opts, ctx });
  const [lossT, [gradParams, gradPhi]] = valueAndGrad(lossFn, { argnums: [0, 1] })(inp.params, inp.phi);
  const loss = (await readArray(lossT))[0];
  const tHost = await readArray(t);
  const gRms = await readArray(gRmsT);
  for (const x of new Set([z, t, xt, dxdt, raw, g, gRmsT, lossT])) x.dispose();
  return { loss, gradParams, gradPhi, t: tHost, gRms };
}

/** The training state a whole replayed step carries: parameters, head, optimizer state and EMA parameters. */
export interface ReplayedStepState<P> {
  params: P;
  phi: WeightingParams;
  opt: OptState;
  emaParams: P;
}

/**
 * A whole sCT / sCD iteration after the tangent warmup as one function of tensors, for
 * `jit`: the one-pass gradients, the optimizer's update and the EMA. The optimizer's per-step
 * values (learning rate, bias corrections) and the EMA's beta come in as 0-d tensors and its
 * branch as a static argument, so the trace stays valid from step to step; the state goes in
 * and comes out whole, so a replayed training loop's step is one plan (on webgpu: one upload,
 * one submit and one readback, where replaying the gradient alone moves every parameter and
 * gradient between host and device around the eager update).
 */
export function onePassTrainStep<P>(
  net: NetFn<P>, head: WeightingHead, opts: ScmOptions, optimizer: Optimizer, ctx: NetContext, teacher?: { net: NetFn<any>; params: unknown },
) {
  const gradients = onePassGradients(net, head, opts, 1, ctx, teacher);
  return (params: P, phi: WeightingParams, slots: Record<string, unknown>, emaParams: P, x0: Tensor, z: Tensor, t: Tensor, k: Tensor[], beta: Tensor, branch: string) => {
    const g = gradients(params, phi, x0, z, t);
    // The step count stays outside (a number would be a static argument: a new trace per step);
    // with `given`, update reads nothing of it.
    const upd = optimizer.update({ net: g.gradParams, head: g.gradPhi }, { step: 0, ...slots }, { net: params, head: phi }, { branch, values: k });
    const { step: _unused, ...newSlots } = upd.state;
    return { loss: g.loss, gRms: g.gRms, params: upd.params.net, phi: upd.params.head, slots: newSlots, emaParams: lerpTree(emaParams, upd.params.net, beta) };
  };
}

/** The function `onePassTrainStep` returns, and its jitted form. */
export type TrainStepFn<P> = ReturnType<typeof onePassTrainStep<P>>;
export type JittedTrainStep<P> = Jitted<Parameters<TrainStepFn<P>>, ReturnType<TrainStepFn<P>>>;

/**
 * One iteration through a jitted `onePassTrainStep`: draws (z, t) from `key` as `scmStep`
 * does, passes the per-step values, and returns the new state (the caller disposes the old
 * one) with the host-side diagnostics.
 */
export async function replayedScmStep<P>(
  run: JittedTrainStep<P>,
  inp: { state: ReplayedStepState<P>; x0: Tensor; key: R.Key; optimizer: Optimizer; emaBeta: number },
  opts: ScmOptions,
): Promise<{ loss: number; t: Float32Array | Float64Array; gRms: Float32Array | Float64Array; state: ReplayedStepState<P> }> {
  const { x0, state } = inp;
  const { z, t } = drawStep(inp.key, x0, opts.sigmaD, opts.pMean, opts.pStd);
  const { branch, values } = inp.optimizer.scalars(state.opt.step);
  const like = { dtype: x0.dtype, backend: x0.backend };
  const k = values.map((v) => full([], v, like));
  const beta = full([], inp.emaBeta, like);
  const { step, ...slots } = state.opt;
  const out = await run(state.params, state.phi, slots, state.emaParams, x0, z, t, k, beta, branch);
  const loss = (await readArray(out.loss))[0];
  const tHost = await readArray(t);
  const gRms = await readArray(out.gRms);
  dispose([z, t, k, beta, out.loss, out.gRms]);
  return { loss, t: tHost, gRms, state: { params: out.params, phi: out.phi, opt: { step: step + 1, ...out.slots }, emaParams: out.emaParams } };
}
