/**
 * `replay(fn)`: a function of tensors run once, recorded, and replayed on later calls as GPU.js
 * `createPipeline` plans (our `jit`).
 *
 * Ops run eagerly, so the first call of `fn` for a given signature (the shapes and dtypes of
 * its arguments) runs it as usual while the backend records every primitive application:
 * which kernel ran, and where each input came from (an argument, an earlier application, or
 * a value that was already there). That record is a straight-line program of kernels. Runs of
 * it become the orchestrations of GPU.js pipelines, which GPU.js compiles once and then runs
 * without re-entering our code: on webasm over one WebAssembly memory, with no per-kernel
 * call, argument upload or readback. Later calls with the same signature run the plan,
 * whatever autodiff, shape checks and kernel lookups the first call went through.
 *
 * The contract is jax.jit's:
 *  - Everything that changes from call to call must be an argument. Tensors captured from
 *    the enclosing scope, and values made on the host inside `fn` (constants, random draws),
 *    are frozen into the plan as they were at the first call.
 *  - `fn` may not read values back (`data()`, `dataSync()`, `item()`): a plan cannot branch
 *    on data. It throws a TensorError naming `replay` instead.
 *  - The packed matrix products and convolutions of backends/plans.ts pack data on the host,
 *    which a pipeline cannot do (and GPU.js pipelines cannot pass their 4-value cells on to
 *    another kernel), so they run between pipelines, as they do eagerly: a plan is a list of
 *    pipelines (each a run of kernels between two packed products) and host plans.
 *
 * Plans run on every GPU.js backend. On webgpu a whole call is one pipeline, which GPU.js
 * records into one command encoder and submits once (`fused-encoder`); its encoder takes no
 * device-resident arguments, so arguments are passed from the host (device-resident ones are
 * read back first) and outputs come back to the host, where the next call takes them as they
 * are. On the reference backend a replayed function runs eagerly; `executor` says what ran.
 */
import type { Aval, Backend } from './backend.js';
import { GpuJsBackend, nonEmpty, type GpuPipeline } from './backends/gpujs.js';
import { TensorError } from './errors.js';
import { sizeOf } from './shape.js';
import { Storage, Tensor, tidy } from './tensor.js';

/** Where an input comes from: an argument of the call, an earlier application's result, or a frozen value. */
type Source = { kind: 'arg'; index: number } | { kind: 'value'; index: number } | { kind: 'frozen'; data: Float32Array };

/** One recorded kernel, or host plan (a packed matmul or convolution on cpu and webasm). */
interface Application {
  readonly inputs: readonly Source[];
  readonly kernel: ((...args: unknown[]) => unknown) | null;
  readonly host: ((inputs: Float32Array[]) => Float32Array) | null;
}

/**
 * What a call runs, in order: GPU.js pipelines (runs of applications with kernels) and, between
 * them, the host plans, which pack data on the host and so cannot be inside a pipeline.
 * `produces` are the value ids (application indices) an item makes that later items or the
 * outputs read.
 */
type Item =
  | { readonly kind: 'pipeline'; readonly pipeline: GpuPipeline; readonly inputs: readonly Source[]; readonly produces: readonly number[] }
  | { readonly kind: 'host'; readonly run: (inputs: Float32Array[]) => Float32Array; readonly inputs: readonly Source[]; readonly produces: readonly number[] };

/** The outputs of `fn`: a tensor, an array of tensors, or an object of tensors. */
export type ReplayOutput = Tensor | readonly Tensor[] | { readonly [name: string]: Tensor };

/** One signature's program, and what the outputs are. */
interface Plan {
  readonly items: readonly Item[];
  readonly kernels: number;
  readonly outputs: readonly { source: Source; aval: Aval }[];
  /** Rebuild fn's output structure from the output tensors. */
  readonly rebuild: (tensors: Tensor[]) => ReplayOutput;
}

export interface Replayed<A extends Tensor[], R extends ReplayOutput> {
  /** Run `fn` (the first call of a signature) or its plan (later calls). Outputs are new tensors the caller owns. */
  (...args: A): Promise<R>;
  /** What ran last: `eager` (a first call, or the reference backend), `host` (host plans only), or GPU.js's executor of the pipelines (`fused-sync`, `fused-threaded`, `fused-encoder`, `generic`). */
  readonly executor: string | null;
  /** Why GPU.js's fused executor declined a pipeline of the last call (null when it took them all). */
  readonly fallbackReason: string | null;
  /** How many signatures have been traced. */
  readonly traces: number;
  /** In the last call's plan: kernels inside pipelines, pipelines, and host plans between them. */
  readonly kernels: number;
  readonly pipelines: number;
  readonly hostPlans: number;
  /** Release every plan (their GPU.js buffers and kernel instances). */
  dispose(): void;
}

export interface ReplayOptions {
  /**
   * true: GPU.js may run each pipeline across its worker pool (`fused-threaded`). Default
   * false (`fused-sync`): measured (bench/replay.js), the pool pays for long runs of large
   * elementwise kernels only; between packed products, which use our own helper threads, its
   * hand-offs cost more than they save.
   */
  threads?: boolean;
}

export function replay<A extends Tensor[], R extends ReplayOutput>(fn: (...args: A) => R, options: ReplayOptions = {}): Replayed<A, R> {
  const plans = new Map<string, Plan>();
  let executor: string | null = null;
  let fallbackReason: string | null = null;
  let traces = 0;
  let last: Plan | null = null;

  const call = async (...args: A): Promise<R> => {
    const backend = checkArguments(args);
    if (!(backend instanceof GpuJsBackend)) {
      executor = 'eager';
      return ownOutputs(tidy(() => fn(...args)), args) as R;
    }
    const key = args.map((a) => `${a.dtype}[${a.shape.join(',')}]`).join(';');
    const plan = plans.get(key);
    if (!plan) {
      const { result, plan: traced } = await trace(backend, fn, args, options);
      plans.set(key, traced);
      traces++;
      last = traced;
      executor = 'eager';
      return result as R;
    }
    last = plan;
    // webgpu: arguments on the device come back to the host, since GPU.js's encoder uploads its arguments itself.
    const argData = await Promise.all(args.map((a) => backend.hostArray(a.storage.buffer)));
    const values = new Map<number, Float32Array>();
    const read = (s: Source): Float32Array => (s.kind === 'arg' ? argData[s.index] : s.kind === 'value' ? values.get(s.index)! : s.data);
    executor = null;
    fallbackReason = null;
    for (const item of plan.items) {
      if (item.kind === 'host') {
        values.set(item.produces[0], item.run(item.inputs.map(read)));
        continue;
      }
      const results = (await item.pipeline(...item.inputs.map((s) => nonEmpty(read(s))))) as Float32Array[];
      item.produces.forEach((id, i) => values.set(id, results[i]));
      executor = item.pipeline.executorKind;
      fallbackReason ??= item.pipeline.fallbackReason;
    }
    executor ??= 'host';
    // A fresh buffer per output (fromHost copies): the caller owns it, whatever the plan does with its memory next call.
    const tensors = plan.outputs.map(({ source, aval }) => new Tensor(aval.shape, aval.dtype, new Storage(backend, backend.fromHost(read(source).subarray(0, sizeOf(aval.shape)), aval))));
    return plan.rebuild(tensors) as R;
  };

  const count = (kind: Item['kind']) => last?.items.filter((i) => i.kind === kind).length ?? 0;
  return Object.defineProperties(call, {
    executor: { get: () => executor },
    fallbackReason: { get: () => fallbackReason },
    traces: { get: () => traces },
    kernels: { get: () => last?.kernels ?? 0 },
    pipelines: { get: () => count('pipeline') },
    hostPlans: { get: () => count('host') },
    dispose: {
      value: () => {
        for (const p of plans.values()) for (const item of p.items) if (item.kind === 'pipeline') item.pipeline.destroy();
        plans.clear();
        last = null;
      },
    },
  }) as unknown as Replayed<A, R>;
}

/** Run fn once, recording its kernels and host plans, and compile them into pipelines and host plans. */
async function trace<A extends Tensor[]>(backend: GpuJsBackend, fn: (...args: A) => ReplayOutput, args: A, options: ReplayOptions): Promise<{ result: ReplayOutput; plan: Plan }> {
  if (backend.recorder) throw new TensorError('replay', 'a replayed function cannot replay another one while it is traced');
  const sourceOf = new Map<unknown, Source>();
  args.forEach((a, index) => {
    if (!sourceOf.has(a.storage.buffer)) sourceOf.set(a.storage.buffer, { kind: 'arg', index });
  });
  // A value from outside (captured, or made on the host inside fn) is frozen: its host copy is
  // asked for when it is first seen (webgpu: before the buffer can be freed), filled in below.
  const frozen: { source: { kind: 'frozen'; data: Float32Array }; values: Promise<Float32Array> }[] = [];
  const where = (buffer: unknown): Source => {
    let s = sourceOf.get(buffer);
    if (!s) {
      s = { kind: 'frozen', data: new Float32Array(1) };
      frozen.push({ source: s, values: backend.hostArray(buffer) });
      sourceOf.set(buffer, s);
    }
    return s;
  };
  const applications: Application[] = [];
  const record = (a: Application, result: unknown) => {
    applications.push(a);
    sourceOf.set(result, { kind: 'value', index: applications.length - 1 });
  };
  backend.recorder = {
    kernel: (kernel, inputs, result) => record({ inputs: inputs.map(where), kernel, host: null }, result),
    host: (run, inputs, result) => record({ inputs: inputs.map(where), kernel: null, host: run }, result),
    read(): never {
      throw new TensorError('replay', 'the function reads a value back (data, dataSync, item): a replayed plan cannot depend on data; return the value instead');
    },
  };
  let result: ReplayOutput;
  try {
    result = tidy(() => fn(...args));
  } finally {
    backend.recorder = null;
  }
  result = ownOutputs(result, args);
  const { tensors, rebuild } = flatten(result);
  const outputs = tensors.map((t) => ({ source: where(t.storage.buffer), aval: { shape: t.shape, dtype: t.dtype } }));
  for (const f of frozen) f.source.data = nonEmpty(await f.values);

  // Keep the applications some output needs (a JVP's primal output, say, may not be), in order.
  const needed = new Set<number>();
  const stack = outputs.flatMap(({ source }) => (source.kind === 'value' ? [source.index] : []));
  while (stack.length) {
    const i = stack.pop()!;
    if (needed.has(i)) continue;
    needed.add(i);
    for (const s of applications[i].inputs) if (s.kind === 'value') stack.push(s.index);
  }
  const kept = [...needed].sort((a, b) => a - b);

  // Where each value is read last: by a later application (its index) or by the outputs (Infinity).
  const lastRead = new Map<number, number>();
  for (const i of kept) for (const s of applications[i].inputs) if (s.kind === 'value') lastRead.set(s.index, i);
  for (const { source } of outputs) if (source.kind === 'value') lastRead.set(source.index, Infinity);

  // Cut the program at every host plan: runs of kernels in between become pipelines.
  const items: Item[] = [];
  let run: number[] = [];
  const flush = () => {
    if (run.length) items.push(pipelineOf(backend, applications, run, lastRead, options));
    run = [];
  };
  for (const i of kept) {
    const a = applications[i];
    if (!a.host) {
      run.push(i);
      continue;
    }
    flush();
    items.push({ kind: 'host', run: a.host, inputs: a.inputs, produces: [i] });
  }
  flush();
  const kernels = kept.filter((i) => !applications[i].host).length;
  return { result, plan: { items, kernels, outputs, rebuild } };
}

/** One pipeline for a run of kernel applications: its inputs from outside the run, and the values it returns. */
function pipelineOf(backend: GpuJsBackend, applications: readonly Application[], run: readonly number[], lastRead: ReadonlyMap<number, number>, options: ReplayOptions): Item {
  const inside = new Set(run);
  const inputs: Source[] = [];
  const inputKey = new Map<string, number>();
  const handleOf = (s: Source): number | null => {
    if (s.kind === 'frozen' || (s.kind === 'value' && inside.has(s.index))) return null;
    const key = `${s.kind}${s.index}`;
    if (!inputKey.has(key)) inputKey.set(key, inputs.push(s) - 1);
    return inputKey.get(key)!;
  };
  const steps = run.map((i) => ({ id: i, kernel: applications[i].kernel!, args: applications[i].inputs.map((s) => ({ source: s, handle: handleOf(s) })) }));
  const end = run[run.length - 1];
  const produces = run.filter((i) => (lastRead.get(i) ?? -1) > end);
  // GPU.js runs this once, with opaque handles for the inputs, and records the kernel calls.
  const orchestration = (...handles: unknown[]) => {
    const values = new Map<number, unknown>();
    for (const step of steps) {
      const args = step.args.map(({ source, handle }) => (handle !== null ? handles[handle] : source.kind === 'frozen' ? source.data : values.get(source.index)));
      values.set(step.id, step.kernel(...args));
    }
    return produces.map((i) => values.get(i));
  };
  // GPU.js counts a pipeline's arguments by the function's declared length.
  Object.defineProperty(orchestration, 'length', { value: inputs.length });
  const pipeline = backend.createPipeline(orchestration, options.threads ? undefined : { threads: false });
  return { kind: 'pipeline', pipeline, inputs, produces };
}

function checkArguments(args: readonly unknown[]): Backend {
  if (args.length === 0) throw new TensorError('replay', 'a replayed function needs at least one tensor argument (what changes between calls)');
  args.forEach((a, i) => {
    if (!(a instanceof Tensor)) throw new TensorError('replay', `argument ${i} is not a Tensor (got ${typeof a}); pass tensors only, and capture other values`);
    if (a.trace) throw new TensorError('replay', `argument ${i} is a tracer: call a replayed function on concrete tensors, outside jvp/vjp`);
  });
  const tensors = args as Tensor[];
  const backend = tensors[0].storage.backend;
  if (tensors.some((t) => t.storage.backend !== backend)) {
    throw new TensorError('replay', `all arguments must live on one backend (got ${tensors.map((t) => t.storage.backend.name).join(', ')})`, tensors.map((t) => t.shape));
  }
  return backend;
}

/** The output structure as a list of tensors, and the way back. */
function flatten(out: ReplayOutput): { tensors: Tensor[]; rebuild: (t: Tensor[]) => ReplayOutput } {
  if (out instanceof Tensor) return { tensors: [out], rebuild: (t) => t[0] };
  if (Array.isArray(out)) {
    checkOutputs(out);
    return { tensors: [...out], rebuild: (t) => t };
  }
  if (out && typeof out === 'object') {
    const names = Object.keys(out);
    const tensors = names.map((n) => (out as Record<string, Tensor>)[n]);
    checkOutputs(tensors);
    return { tensors, rebuild: (t) => Object.fromEntries(names.map((n, i) => [n, t[i]])) };
  }
  throw new TensorError('replay', `the function must return a Tensor, an array of tensors or an object of tensors (got ${typeof out})`);
}

function checkOutputs(values: readonly unknown[]): void {
  values.forEach((v, i) => {
    if (!(v instanceof Tensor)) throw new TensorError('replay', `output ${i} is not a Tensor (got ${typeof v}); return tensors only`);
  });
}

/** Outputs the caller owns: an argument (or an output) returned again becomes a new tensor on its buffer. */
function ownOutputs(out: ReplayOutput, args: readonly Tensor[]): ReplayOutput {
  const { tensors, rebuild } = flatten(out);
  const inputs = new Set(args);
  const seen = new Set<Tensor>();
  return rebuild(tensors.map((t) => {
    const copy = inputs.has(t) || seen.has(t);
    seen.add(t);
    return copy ? new Tensor(t.shape, t.dtype, t.storage.retain()) : t;
  }));
}

