/**
 * The C allocator under our float arrays, for long jobs on Linux.
 *
 * Every kernel result is a fresh typed array of the output's size (GPU.js copies results out
 * of its WebAssembly memory), megabytes each in a training step. glibc's malloc serves
 * blocks above its mmap threshold (128 KiB at first) with fresh mappings and unmaps them on
 * free: each new array then costs page faults on first write, and with helper threads
 * (backends/threads.ts) each unmap also interrupts the other cores to flush their TLBs.
 * Measured on the nano sCT step (2 threads): elementwise kernels 1.5-1.8x slower than
 * with the settings below, the whole step 4.0 s instead of 5.3-6.0 s.
 *
 * glibc reads these settings from the environment only when a process starts, so a
 * command-line entry point relaunches itself with them (the settings keep blocks up to 32
 * MiB in the heap and the heap from shrinking below 1 GiB of free space).
 */
import { spawn } from 'node:child_process';

export const ALLOCATOR_ENV: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: String(32 << 20),
  MALLOC_TRIM_THRESHOLD_: String(1 << 30),
};

function usesGlibc(): boolean {
  if (process.platform !== 'linux') return false;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return !!header?.glibcVersionRuntime;
}

/**
 * For a command-line entry point: when this process runs on glibc without the allocator
 * settings (and TENSOR_ALLOCATOR is not `system`), run the same command again as a child
 * with them, forward signals to it, exit with its status, and return true (the caller then
 * does nothing else). Otherwise return false.
 */
export function relaunchWithAllocatorSettings(): boolean {
  const missing = Object.keys(ALLOCATOR_ENV).some((k) => process.env[k] === undefined);
  if (!missing || process.env.TENSOR_ALLOCATOR === 'system' || !usesGlibc()) return false;
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...ALLOCATOR_ENV, ...process.env },
  });
  // A signal sent to this process is passed on (a terminal's Ctrl-C reaches both at once:
  // the training loop takes a repeat within a second as the same request).
  const exitCodes: Record<string, number> = { SIGHUP: 129, SIGINT: 130, SIGKILL: 137, SIGTERM: 143 };
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, () => child.kill(s));
  child.on('exit', (code, signal) => process.exit(code ?? exitCodes[signal ?? ''] ?? 1));
  child.on('error', (e) => {
    console.error(`could not relaunch with the allocator settings: ${e.message}`);
    process.exit(1);
  });
  return true;
}
