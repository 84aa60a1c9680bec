#!/usr/bin/env node
/**
 * `npm run bench [-- --json FILE] [--only IMPLS] [--cpu-time]`: our tensor library on every
 * backend present against jax-js on the same devices. Prints a table; --json writes an
 * array of { case, impl, unit, value } records. --only takes a comma-separated list such
 * as `ours:webasm,jax-js:wasm`. --cpu-time times with this process's CPU time instead of
 * the wall clock (see harness.js); it leaves out webgpu, whose work runs on driver threads.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import * as T from '@scm/tensor';
import { Results, printTable, useCpuClock } from './harness.js';
import { runOurs } from './ours.js';
import { runJax } from './jaxjs.js';

// On glibc, run as a child with the allocator settings training uses (see @scm/tensor's allocator.ts).
if (T.relaunchWithAllocatorSettings()) await new Promise(() => {});

const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const jsonFile = flag('--json');
const cpuClock = args.includes('--cpu-time');
if (cpuClock) useCpuClock();
const only = flag('--only'); // comma-separated impls, e.g. "ours:webasm,jax-js:wasm"
const wanted = (impl) => !only || only.split(',').includes(impl);
const log = (line) => process.stderr.write(`  ${line}\n`);

/** The WebGPU adapter's description (e.g. llvmpipe, a software rasterizer on the CPU). */
async function adapterName() {
  const adapter = await globalThis.navigator.gpu.requestAdapter();
  const info = adapter?.info ?? {};
  return [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown';
}

const results = new Results();
const started = performance.now();
const webgpu = !cpuClock && (wanted('ours:webgpu') || wanted('jax-js:webgpu')) && (await T.initWebGPU());
const adapter = webgpu ? await adapterName() : '';
const jax = await import('@jax-js/jax');
const jaxDevices = await jax.init('wasm', ...(webgpu ? ['webgpu'] : []));

for (const backend of ['webasm', 'cpu']) {
  if (wanted(`ours:${backend}`)) await runOurs(results, backend, { log });
}
if (wanted('jax-js:wasm')) await runJax(results, jax, 'wasm', { log });
if (webgpu) {
  // On a machine without a GPU the adapter is a software driver (llvmpipe): few repetitions.
  if (wanted('ours:webgpu')) await runOurs(results, 'webgpu', { slow: true, log });
  if (wanted('jax-js:webgpu') && jaxDevices.includes('webgpu')) await runJax(results, jax, 'webgpu', { slow: true, log });
}

const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
console.log(`\n${cpu}, ${os.cpus().length} cores, node ${process.version}${webgpu ? `; webgpu adapter: ${adapter}` : ''}`);
const load = os.loadavg().map((v) => v.toFixed(1)).join(', ');
console.log(`${cpuClock ? 'CPU-time' : 'wall-clock'} medians after warm-up; load average at the end: ${load}`);
console.log('x/jax columns: speed of ours relative to jax-js on the same device class (above 1: ours is faster)\n');
printTable(results);
console.log(`\ntotal ${((performance.now() - started) / 1000).toFixed(0)} s`);
if (jsonFile) writeFileSync(jsonFile, JSON.stringify(results.records, null, 2) + '\n');

// WebGPU (Dawn) keeps the event loop alive.
process.exit(0);
