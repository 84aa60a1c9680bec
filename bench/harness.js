/**
 * Timing and reporting helpers shared by the benchmark cases. A measurement runs its
 * function a few times to warm up (compilation, JIT tier-up), then reports the median of
 * several timed runs. Every timed run must include reading the result back, so that lazy
 * or asynchronous work is counted.
 */

/**
 * The clock: wall time by default; `cpu` measures this process's CPU time instead (user +
 * system, all threads). On a shared machine CPU time is far less sensitive to other
 * processes; it is only comparable between implementations that compute on one thread
 * (our cpu and webasm backends, jax-js's wasm device in Node).
 */
let clock = () => performance.now();
export function useCpuClock() {
  clock = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
}

/** Median of a list of numbers. */
export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Time an async function: `warmup` untimed runs, then timed runs until `reps` runs are
 * done or `budgetMs` is spent (at least `minReps`). Returns the median in milliseconds.
 */
export async function timeIt(fn, { warmup = 2, reps = 7, minReps = 3, budgetMs = 4000 } = {}) {
  for (let i = 0; i < warmup; i++) await fn();
  const times = [];
  const start = performance.now();
  while (times.length < reps && (times.length < minReps || performance.now() - start < budgetMs)) {
    const t0 = clock();
    await fn();
    times.push(clock() - t0);
  }
  return median(times);
}

/**
 * Per-call time of a cheap operation in microseconds: batches of `inner` calls, median
 * over batches. `fn` is synchronous; `drain` (async) runs once per batch, after the
 * timer stops, to settle asynchronous backends.
 */
export async function timePerCall(fn, { inner = 2000, batches = 7, drain = async () => {} } = {}) {
  for (let i = 0; i < inner; i++) fn();
  await drain();
  const perCall = [];
  for (let b = 0; b < batches; b++) {
    const t0 = clock();
    for (let i = 0; i < inner; i++) fn();
    await drain();
    perCall.push(((clock() - t0) / inner) * 1000);
  }
  return median(perCall);
}

/** Collected results: `{ case, impl, unit, value }` records. */
export class Results {
  constructor() {
    this.records = [];
  }
  add(caseName, impl, unit, value) {
    this.records.push({ case: caseName, impl, unit, value: Number(value.toPrecision(4)) });
    return value;
  }
  get(caseName, impl, unit) {
    return this.records.find((r) => r.case === caseName && r.impl === impl && r.unit === unit)?.value;
  }
}

/** Deterministic pseudo-random floats in [-0.5, 0.5) (no dependence on either library's RNG). */
export function randomArray(n, seed = 1) {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
}

/** Implementations in table order, and the speed ratios shown (ours vs jax-js on the same device class). */
const IMPLS = ['ours:webasm', 'ours:cpu', 'jax-js:wasm', 'ours:webgpu', 'jax-js:webgpu'];
const RATIOS = [['ours:webasm', 'jax-js:wasm'], ['ours:cpu', 'jax-js:wasm'], ['ours:webgpu', 'jax-js:webgpu']];
const SPEED_UNITS = ['ms', 'us', 'GFLOP/s'];

/**
 * Speed of `ours` relative to `theirs` for one measurement: above 1 means ours is faster
 * (times: theirs / ours; throughputs: ours / theirs). Undefined where not comparable.
 */
export function speedRatio(unit, ours, theirs) {
  if (!SPEED_UNITS.includes(unit) || ours === undefined || theirs === undefined) return undefined;
  return unit === 'GFLOP/s' ? ours / theirs : theirs / ours;
}

/** Print the results as a table: one row per case and unit, one column per implementation. */
export function printTable(results, write = (line) => console.log(line)) {
  const present = IMPLS.filter((impl) => results.records.some((r) => r.impl === impl));
  const ratios = RATIOS.filter(([a, b]) => present.includes(a) && present.includes(b));
  const header = ['case', 'unit', ...present, ...ratios.map(([a]) => `${a.split(':')[1]}/jax`)];
  const rows = [header];
  const keys = [];
  for (const r of results.records) if (!keys.some((k) => k.case === r.case && k.unit === r.unit)) keys.push({ case: r.case, unit: r.unit });
  for (const { case: c, unit } of keys) {
    const value = (impl) => results.get(c, impl, unit);
    rows.push([
      c, unit,
      ...present.map((impl) => (value(impl) === undefined ? '' : formatValue(value(impl)))),
      ...ratios.map(([a, b]) => {
        const s = speedRatio(unit, value(a), value(b));
        return s === undefined ? '' : `${s.toFixed(2)}x`;
      }),
    ]);
  }
  const widths = header.map((_, k) => Math.max(...rows.map((row) => row[k].length)));
  rows.forEach((row, i) => {
    write(row.map((cell, k) => (k < 2 ? cell.padEnd(widths[k]) : cell.padStart(widths[k]))).join('  '));
    if (i === 0) write(widths.map((w) => '-'.repeat(w)).join('  '));
  });
}

function formatValue(v) {
  return Math.abs(v) >= 100 ? v.toFixed(1) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3);
}
