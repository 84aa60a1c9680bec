/**
 * Where the time of a 1M-element add goes on the webasm backend, against jax-js's add in the
 * same run: the floor GPU.js's WebAssembly kernels set for an elementwise op, measured.
 *
 *   node bench/elementwise-limits.js [--json FILE]
 *
 * Rows, slowest path first:
 *   ours: T.add                       the op as users call it
 *   gpu.js kernel call                one GPU.js kernel: copies both inputs into its WebAssembly
 *                                     memory, runs, copies the output out
 *   gpu.js loop only                  the same kernel's compiled SIMD loop over memory already
 *                                     filled (no copies at all): the most a GPU.js kernel can do
 *   gpu.js 2 threads, shared memory   two halves at once on two threads, operands and output in
 *                                     SharedArrayBuffers (no staging, no concatenation)
 *   jax-js add                        jax-js on its wasm device, read back with dataSync
 *
 * The loop-only row reads GPU.js internals (`kernel._active.runSimd`), which is why it lives
 * here and not in the product: it is a measurement of the engine, not a way to run ops.
 */
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { GPU } from 'gpu.js';
import * as T from '@scm/tensor';
import { randomArray, timeIt } from './harness.js';
import { elementwiseSize } from './cases.js';

if (T.relaunchWithAllocatorSettings()) await new Promise(() => {});

const n = elementwiseSize, half = n / 2;
const shared = (length) => new Float32Array(new SharedArrayBuffer(4 * length));
const A = shared(n), B = shared(n), O = shared(n);
A.set(randomArray(n, 5));
B.set(randomArray(n, 6));
const rows = [];
const record = (name, ms) => {
  rows.push({ case: 'add 1M', impl: name, unit: 'ms', value: ms });
  console.log(`${name.padEnd(34)} ${ms.toFixed(3)} ms`);
};
const opts = { warmup: 5, reps: 15, minReps: 15, budgetMs: 1e9 };
// Each timed run repeats the op 20 times: one add is about a millisecond.
const timed = (f) => timeIt(() => { for (let i = 0; i < 20; i++) f(); }, opts).then((ms) => ms / 20);

T.setBackend('webasm');
const a = T.fromArray(A.slice(), [n]), b = T.fromArray(B.slice(), [n]);
record('ours: T.add', await timed(() => T.add(a, b).dispose()));

const gpu = new GPU({ mode: 'webasm' });
const addSource = 'function (a, b) { return a[this.thread.x] + b[this.thread.x]; }';
const whole = gpu.createKernel(addSource, { output: [n], tactic: 'precision' });
record('gpu.js kernel call', await timed(() => whole(A, B)));
const entry = whole.kernel._active;
record('gpu.js loop only (no copies)', await timed(() => entry.runSimd(0, n, 0)));

// A helper thread with its own GPU.js instance adds the second halves; the caller adds the first.
const control = new Int32Array(new SharedArrayBuffer(4));
const helper = new Worker(
  `const { workerData, parentPort } = require('node:worker_threads');
   const { GPU } = require(workerData.gpuPath);
   const { A, B, O, control, half, source } = workerData;
   const k = new GPU({ mode: 'webasm' }).createKernel(source, { output: [half], tactic: 'precision' });
   const a = A.subarray(half), b = B.subarray(half), o = O.subarray(half);
   parentPort.on('message', () => { o.set(k(a, b)); Atomics.store(control, 0, 1); Atomics.notify(control, 0); });`,
  { eval: true, workerData: { A, B, O, control, half, source: addSource, gpuPath: createRequire(import.meta.url).resolve('gpu.js') } },
);
const firstHalf = gpu.createKernel(addSource, { output: [half], tactic: 'precision' });
const a0 = A.subarray(0, half), b0 = B.subarray(0, half);
const split = () => {
  Atomics.store(control, 0, 0);
  helper.postMessage(0);
  O.set(firstHalf(a0, b0));
  Atomics.wait(control, 0, 0);
};
split();
const expected = whole(A, B);
if (!O.every((v, i) => v === expected[i])) throw new Error('the split add differs from the whole one');
record('gpu.js 2 threads, shared memory', await timed(split));

const jax = await import('@jax-js/jax');
await jax.init('wasm');
jax.defaultDevice('wasm');
const ja = jax.numpy.array(Array.from(A)), jb = jax.numpy.array(Array.from(B));
record('jax-js add (wasm)', await timed(() => jax.numpy.add(ja.ref, jb.ref).dataSync()));

const json = process.argv.indexOf('--json');
if (json > 0) writeFileSync(process.argv[json + 1], JSON.stringify(rows, null, 2));
await helper.terminate();
process.exit(0);
