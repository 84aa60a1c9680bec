/**
 * A training run of the real `scm` command (dist/cli.js, which on glibc relaunches itself as
 * a child with the allocator settings) stopped by a signal: the signal reaches the training
 * loop, the checkpoint is written, the command exits, and `--resume` goes on from it. A
 * signal delivered twice at once (a terminal's Ctrl-C reaches the relauncher and the child)
 * is one stop request, not a kill.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { initWebGPU } from '@scm/tensor';

const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

/**
 * Start a long toy run in a process group of its own; once it has trained a few steps, send
 * `signal` to the command (`group`: to its whole process group, as a terminal's Ctrl-C does);
 * resolve on exit.
 */
function runAndStop(out: string, signal: NodeJS.Signals, { group = false, extra = [] as string[] } = {}) {
  const child = spawn(process.execPath, [cli, 'train', '--method', 'sct', '--data', 'toy:moons', '--model', 'toy', '--steps', '1000000', '--backend', 'cpu', '--out', out, ...extra], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  let sent = false;
  const onData = (d: Buffer) => {
    output += d.toString();
    if (!sent && /step\s+\d+\//.test(output)) {
      sent = true;
      setTimeout(() => (group ? process.kill(-child.pid!, signal) : child.kill(signal)), 1500);
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  // A run that does not stop is killed (group and all) rather than left training: the test then fails.
  const deadline = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 60_000);
  return new Promise<{ code: number | null; output: string }>((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(deadline);
      resolve({ code, output });
    }),
  );
}

async function checkpointStep(out: string): Promise<number> {
  const lines = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n');
  return JSON.parse(lines[lines.length - 1]).step as number;
}

describe('scm train stopped by a signal', () => {
  test('SIGTERM to the command saves the checkpoint; --resume continues from it', async () => {
    const out = await mkdtemp(join(tmpdir(), 'scm-signal-'));
    try {
      const first = await runAndStop(out, 'SIGTERM');
      expect(first.output).toMatch(/SIGTERM: saving the checkpoint at step \d+/);
      expect(first.code).toBe(0);
      expect(existsSync(join(out, 'checkpoint.safetensors'))).toBe(true);
      const stoppedAt = Number(/saving the checkpoint at step (\d+)/.exec(first.output)![1]);
      expect(await checkpointStep(out)).toBeLessThanOrEqual(stoppedAt);
      const second = await runAndStop(out, 'SIGTERM', { extra: ['--resume'] });
      expect(second.output).toMatch(new RegExp(`step\\s+${stoppedAt + 1}/`));
      expect(Number(/saving the checkpoint at step (\d+)/.exec(second.output)![1])).toBeGreaterThan(stoppedAt);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  test('SIGINT to the process group (the command and its child both get it) is one stop request', async () => {
    const out = await mkdtemp(join(tmpdir(), 'scm-signal-'));
    try {
      const run = await runAndStop(out, 'SIGINT', { group: true });
      expect(run.output).toMatch(/SIGINT: saving the checkpoint at step \d+/);
      expect(run.code).toBe(0);
      expect(existsSync(join(out, 'checkpoint.safetensors'))).toBe(true);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});

// Where a WebGPU adapter answers (a GPU, or a software Vulkan driver): its device kept the
// event loop alive, so a finished command never exited.
const webgpu = await initWebGPU();
describe('scm on webgpu', () => {
  test.skipIf(!webgpu)('a finished training command exits', async () => {
    const out = await mkdtemp(join(tmpdir(), 'scm-webgpu-exit-'));
    try {
      const child = spawn(process.execPath, [cli, 'train', '--method', 'sct', '--data', 'toy:moons', '--model', 'toy', '--steps', '2', '--batch', '16', '--backend', 'webgpu', '--sample-every', '100', '--eval-samples', '16', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      const deadline = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 90_000);
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      clearTimeout(deadline);
      expect(output).toMatch(/finished at step 2/);
      expect(code).toBe(0);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 120_000);
});
