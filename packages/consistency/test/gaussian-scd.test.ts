/**
 * End-to-end check of the training dynamics on the analytic Gaussian case (spec §9.1,
 * test 3): sCD with the exact teacher on x0 ~ N(0, s²), s = 1 ≠ σ_d, with the student
 * F(y, t) = a_φ(t)·y must find the exact consistency coefficient a*(t) = (cos t − s/√V)/sin t.
 */
import { beforeAll, expect, test } from 'vitest';
import * as T from '@scm/tensor';
import { gaussianScd } from '../src/analytic.js';

beforeAll(() => T.setBackend('cpu'));

const times = [0.2, 0.5, 0.8, 1.1, 1.4];

test('sCD with the exact teacher learns the exact consistency function of a Gaussian (paper proposal)', async () => {
  const before = T.memory();
  const { learned, exact } = await gaussianScd(times, { steps: 600, scm: { pMean: -1.0, pStd: 1.4 } });
  // a* runs from −0.18 (t = 0.2) to −1.77 (t = 1.4); sign or σ_d errors are off by O(1).
  learned.forEach((a, i) => expect(Math.abs(a - exact[i])).toBeLessThan(0.1));
  expect(T.memory()).toEqual(before);
});
