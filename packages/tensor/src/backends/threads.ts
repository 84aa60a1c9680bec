/**
 * Helper threads for the synchronous webasm backend: kernel calls (the parts of one heavy
 * call, or the products of a batch) run at the same time, in groups, one group on the
 * calling thread and one on each helper.
 *
 * Why not GPU.js's own threads: a threaded GPU.js kernel returns a Promise (its worker
 * pool never blocks the main thread), and our ops are synchronous. Here each helper is a
 * worker thread with a GPU.js instance of its own (as GPU.js's pool workers have their own
 * WebAssembly instances); the caller posts it a part, runs its own part, then blocks on an
 * `Atomics.wait` until the helpers are done. The kernels are still GPU.js kernels; a part
 * differs from the whole call only in its grid and its slice of the operands, so every cell
 * is computed exactly as it would be on one thread (results are bitwise the same).
 *
 * Inputs and outputs cross threads without copies: they live in SharedArrayBuffers (the
 * plans' scratch arrays are shared; an argument that is not is copied into one).
 */
import { createRequire } from 'node:module';
import os from 'node:os';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { TensorError } from '../errors.js';

/** One part of a split call: its kernel's source, output grid and arguments. */
export interface KernelPart {
  readonly source: string;
  readonly output: readonly number[];
  readonly args: readonly Float32Array[];
}

// The helper's code (a CommonJS script, as worker_threads' `eval` runs it). A job lists
// parts, each a kernel source, its grid, shared arguments and a shared output; the helper
// runs them in order, writing each part's flat cells into its output, then stores 1 (done)
// or 2 (failed, message on the port) in the control word and wakes the caller.
const HELPER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { GPU } = require(workerData.gpuPath);
const gpu = new GPU({ mode: 'webasm' });
const kernels = new Map();
const port = workerData.port;
function flatten(v, out, at) {
  if (v instanceof Float32Array) { out.set(v, at); return at + v.length; }
  if (Array.isArray(v)) { for (const x of v) at = flatten(x, out, at); return at; }
  out[at] = v; return at + 1;
}
port.on('message', (job) => {
  let status = 1;
  try {
    for (const item of job.items) {
      const key = item.output.join('x') + '|' + item.args.map((a) => a.length).join(',') + '|' + item.source;
      let k = kernels.get(key);
      if (!k) {
        k = gpu.createKernel(item.source, { output: item.output, tactic: 'precision' });
        if (k.kernel && typeof k.kernel._shapeOutput === 'function') k.kernel._shapeOutput = (d) => d;
        kernels.set(key, k);
      }
      const written = flatten(k(...item.args), item.out, 0);
      if (written !== item.out.length) throw new Error('the kernel wrote ' + written + ' values where ' + item.out.length + ' were expected');
    }
  } catch (e) {
    status = 2;
    port.postMessage(String((e && e.stack) || e));
  }
  Atomics.store(job.control, 0, status);
  Atomics.notify(job.control, 0);
});
`;

/** How long the caller waits for a helper before it gives up with an error (ms). */
const HELPER_TIMEOUT_MS = 300_000;

class Helper {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly control = new Int32Array(new SharedArrayBuffer(4));
  private out: Float32Array = new Float32Array(0);
  /** Where arguments that are not in shared memory are copied (reused: fresh memory costs page faults). */
  private staging: Float32Array = new Float32Array(0);
  dead = false;

  constructor(gpuPath: string) {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(HELPER_SOURCE, { eval: true, workerData: { gpuPath, port: port2 }, transferList: [port2] });
    // An idle helper must not keep the process alive.
    this.worker.unref();
    this.port.unref();
    this.worker.on('error', () => (this.dead = true));
    this.worker.on('exit', () => (this.dead = true));
  }

  /** Start parts (run in order); `finish` blocks until they are done and returns their cells. */
  start(parts: readonly KernelPart[], lengths: readonly number[]): void {
    const total = lengths.reduce((a, b) => a + b, 0);
    if (this.out.length < total) this.out = sharedFloats(total);
    Atomics.store(this.control, 0, 0);
    const copied = parts.reduce((n, p) => n + p.args.reduce((m, a) => m + (a.buffer instanceof SharedArrayBuffer ? 0 : a.length), 0), 0);
    if (this.staging.length < copied) this.staging = sharedFloats(copied);
    let at = 0, outAt = 0;
    const items = parts.map((part, i) => {
      const args = part.args.map((a) => {
        if (a.buffer instanceof SharedArrayBuffer) return a;
        const copy = this.staging.subarray(at, (at += a.length));
        copy.set(a);
        return copy;
      });
      return { source: part.source, output: part.output, args, out: this.out.subarray(outAt, (outAt += lengths[i])) };
    });
    this.port.postMessage({ items, control: this.control });
  }

  finish(lengths: readonly number[]): Float32Array[] {
    const waited = Atomics.wait(this.control, 0, 0, HELPER_TIMEOUT_MS);
    if (waited === 'timed-out') {
      this.dead = true;
      throw new TensorError('threads', `a helper thread did not finish its part of a kernel in ${HELPER_TIMEOUT_MS / 1000} s`);
    }
    if (Atomics.load(this.control, 0) === 2) {
      const message = receiveMessageOnPort(this.port)?.message;
      throw new TensorError('threads', `a helper thread's kernel failed: ${String(message)}`);
    }
    let at = 0;
    return lengths.map((n) => this.out.subarray(at, (at += n)));
  }

  terminate(): void {
    this.dead = true;
    void this.worker.terminate();
  }
}

/** A zeroed float array in shared memory (what the plans' scratch arrays are made of). */
export function sharedFloats(length: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(4 * Math.max(1, length)), 0, length);
}

function defaultThreads(): number {
  const env = process.env.TENSOR_THREADS;
  if (env !== undefined) {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) throw new TensorError('threads', `TENSOR_THREADS="${env}" is not a positive integer`);
    return n;
  }
  return Math.min(4, os.availableParallelism?.() ?? os.cpus().length);
}

let threadCount: number | null = null;
const helpers: Helper[] = [];

/** Threads a heavy webasm kernel call is split over (the caller's included). Default: $TENSOR_THREADS, else the cores (at most 4). */
export function getThreads(): number {
  return (threadCount ??= defaultThreads());
}

/** Set the number of threads for heavy webasm kernels (1: everything on the calling thread). Extra helpers are stopped. */
export function setThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new TensorError('setThreads', `expected a positive integer number of threads, got ${n}`);
  threadCount = n;
  while (helpers.length > n - 1) helpers.pop()!.terminate();
}

/** Helper threads: how many are live (started on the first split call), and how many parts they have run. */
export function helperThreads(): { live: number; partsRun: number } {
  return { live: helpers.filter((h) => !h.dead).length, partsRun };
}
let partsRun = 0;

function helper(i: number): Helper {
  if (!helpers[i] || helpers[i].dead) helpers[i] = new Helper(createRequire(import.meta.url).resolve('gpu.js'));
  return helpers[i];
}

/**
 * Run `parts` at the same time, in contiguous groups, one group per thread: the first on the
 * calling thread (each part through `runHere`), the others on helpers. Returns each part's
 * flat cells (`lengths[i]` values); a helper's cells stay valid until its next job.
 */
export function runParts(
  parts: readonly KernelPart[],
  lengths: readonly number[],
  runHere: (part: KernelPart) => Float32Array,
): Float32Array[] {
  const per = Math.ceil(parts.length / Math.max(1, Math.min(getThreads(), parts.length)));
  const started: { helper: Helper; lengths: number[] }[] = [];
  for (let first = per; first < parts.length; first += per) {
    const h = helper(started.length);
    const group = lengths.slice(first, first + per);
    h.start(parts.slice(first, first + per), group);
    started.push({ helper: h, lengths: group });
    partsRun += group.length;
  }
  // Whatever fails, every helper is waited for: they read memory the caller reuses.
  const errors: unknown[] = [];
  const attempt = (f: () => Float32Array[]): Float32Array[] => {
    try {
      return f();
    } catch (e) {
      errors.push(e);
      return [];
    }
  };
  const mine = attempt(() => parts.slice(0, per).map(runHere));
  const theirs = started.flatMap((s) => attempt(() => s.helper.finish(s.lengths)));
  if (errors.length) throw errors[0];
  return [...mine, ...theirs];
}
