/**
 * relaunchWithAllocatorSettings (allocator.ts): on glibc, a command-line entry point runs
 * again as a child with the allocator settings, whose exit status becomes its own; with
 * the settings already present, or TENSOR_ALLOCATOR=system, it runs as it is.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { ALLOCATOR_ENV } from '@scm/tensor';

const script = fileURLToPath(new URL('./fixtures/relaunch.mjs', import.meta.url));
const glibc = !!(process.report?.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime;

function run(env: Record<string, string | undefined>) {
  const clean = { ...process.env };
  for (const k of Object.keys(ALLOCATOR_ENV)) delete clean[k];
  const r = spawnSync(process.execPath, [script], { env: { ...clean, ...env }, encoding: 'utf8' });
  return { status: r.status, out: JSON.parse(r.stdout.trim()) as { mmap: string | null; pid: number; ppid: number } };
}

describe('relaunchWithAllocatorSettings', () => {
  test.runIf(glibc)('relaunches once with the settings and passes the exit status on', () => {
    const { status, out } = run({});
    expect(status).toBe(3);
    expect(out.mmap).toBe(ALLOCATOR_ENV.MALLOC_MMAP_THRESHOLD_);
    expect(out.ppid).not.toBe(process.pid); // the printing process is the relaunched child
  });

  test('runs as it is when the settings are there or TENSOR_ALLOCATOR=system', () => {
    expect(run({ TENSOR_ALLOCATOR: 'system' }).out.mmap).toBe(null);
    const given = run({ ...ALLOCATOR_ENV });
    expect(given.status).toBe(3);
    expect(given.out.mmap).toBe(ALLOCATOR_ENV.MALLOC_MMAP_THRESHOLD_);
  });
});
