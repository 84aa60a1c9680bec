/**
 * Helper threads (backends/threads.ts): a large packed product on webasm is split over
 * threads, each running a GPU.js kernel over its part of the grid. A cell is computed the
 * same way whichever thread runs it, so results must be bitwise those of one thread; the
 * split must really happen (parts counted on the helpers); failures must surface as errors.
 */
import { afterAll, describe, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { runParts } from '../src/backends/threads.js';
import { gridValues } from '../../../test/harness.js';

const baseline = T.memory();
const threadsBefore = T.getThreads();
afterAll(() => {
  T.setThreads(threadsBefore);
  expect(T.memory()).toEqual(baseline);
});

/** `f` on webasm with one thread and with `threads`: bitwise equal, and the helpers ran parts. */
function sameOnThreads(what: string, f: () => T.Tensor, threads = 3): void {
  T.setThreads(1);
  const one = T.tidy(() => f().dataSync().slice());
  T.setThreads(threads);
  const before = T.helperThreads().partsRun;
  const many = T.tidy(() => f().dataSync().slice());
  expect(T.helperThreads().partsRun, `${what}: parts ran on helper threads`).toBeGreaterThan(before);
  expect(many.length).toBe(one.length);
  const firstDiff = one.findIndex((v, i) => !Object.is(v, many[i]));
  expect(firstDiff, `${what}: first cell that differs between 1 and ${threads} threads`).toBe(-1);
}

const tensor = (shape: number[], seed: number) => T.fromArray(gridValues(shape.reduce((a, b) => a * b, 1), seed), shape, { backend: 'webasm' });

describe('helper threads on webasm', () => {
  test('matmul split over column tiles, and over row blocks when the product is narrow', () => {
    sameOnThreads('matmul 300x200x260', () => T.matmul(tensor([300, 200], 1), tensor([200, 260], 2)));
    // 4 columns: one column tile, so the rows are split instead.
    sameOnThreads('matmul 2000x300x4', () => T.matmul(tensor([2000, 300], 3), tensor([300, 4], 4)));
    sameOnThreads('batched matmul, each product split', () => T.matmul(tensor([3, 100, 150], 5), tensor([3, 150, 120], 6)), 2);
    // Many small products (an attention's): whole products shared out between the threads.
    sameOnThreads('batched matmul, products shared out', () => T.matmul(tensor([8, 40, 61], 10), tensor([8, 61, 50], 11)), 2);
    sameOnThreads('batched matmul with broadcast batch dims', () => T.matmul(tensor([2, 4, 30, 33], 12), tensor([4, 33, 70], 13)), 3);
  });

  test('conv2d and the convolutions of its gradients', () => {
    const x = () => tensor([4, 16, 20, 20], 7);
    const w = () => tensor([24, 16, 3, 3], 8);
    sameOnThreads('conv2d', () => T.conv2d(x(), w(), { padding: 1 }));
    const g = () => tensor([4, 24, 20, 20], 9);
    const p = { stride: [1, 1] as [number, number], padding: [1, 1] as [number, number], dilation: [1, 1] as [number, number], groups: 1 };
    sameOnThreads('conv2d input gradient', () => T.conv2dInputGrad(g(), w(), { ...p, inputShape: [4, 16, 20, 20] }));
    sameOnThreads('conv2d weight gradient', () => T.conv2dWeightGrad(x(), g(), { ...p, kernelSize: [3, 3] }));
  });

  test('setThreads checks its argument and stops helpers it no longer needs', () => {
    expect(() => T.setThreads(0)).toThrow(/setThreads.*positive integer/);
    expect(() => T.setThreads(1.5)).toThrow(/setThreads.*positive integer/);
    T.setThreads(3);
    T.tidy(() => T.matmul(tensor([300, 200], 1), tensor([200, 260], 2)).dataSync());
    expect(T.helperThreads().live).toBe(2);
    T.setThreads(1);
    expect(T.helperThreads().live).toBe(0);
  });

  test("a helper's failing kernel is an error that says so, and the helper stays usable", () => {
    T.setThreads(2);
    const args = [new Float32Array(new SharedArrayBuffer(64))];
    const good = 'function (a) { return a[this.thread.x] + 1.0; }';
    const bad = 'function (a) { return a[this.thread.x] +; }';
    const run = (src: string) => runParts([{ source: good, output: [8], args }, { source: src, output: [8], args }], [8, 8], () => new Float32Array(8));
    expect(() => run(bad)).toThrow(/helper thread's kernel failed/);
    const [, theirs] = run(good);
    expect([...theirs]).toEqual(new Array(8).fill(1));
  });
});
