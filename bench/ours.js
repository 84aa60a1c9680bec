/** Our library's side of every case, on one backend (webasm, cpu or webgpu). */
import * as T from '@scm/tensor';
import * as AD from '@scm/autodiff';
import { randomArray, timeIt, timePerCall } from './harness.js';
import * as C from './cases.js';

/** Repetitions: median of up to 11 runs (at least 3, within about 4 s) after 2 warm-ups; on a slow backend, as few as 1 after 1. */
export const FAST = { warmup: 2, reps: 11, minReps: 3, budgetMs: 4000 };
export const SLOW = { warmup: 1, reps: 3, minReps: 1, budgetMs: 1500 };

export async function runOurs(results, backend, { slow = false, log = () => {} } = {}) {
  const impl = `ours:${backend}`;
  T.setBackend(backend);
  const baseline = T.memory();
  // A slow backend (webgpu on a software driver) gets fewer repetitions.
  const opts = slow ? SLOW : FAST;
  const tensor = (shape, seed) => T.fromArray(randomArray(shape.reduce((a, b) => a * b, 1), seed), shape);
  /** Run f, read every output back, free everything it made. */
  const readAll = async (f) => {
    const out = T.tidy(f);
    for (const t of T.collectTensors(out)) await t.data();
    T.dispose(out);
  };

  for (const size of C.matmulSizes) {
    const [m, k, n] = size;
    const a = tensor([m, k], 1), b = tensor([k, n], 2);
    const ms = await timeIt(() => readAll(() => T.matmul(a, b)), opts);
    results.add(C.matmulName(size), impl, 'ms', ms);
    results.add(C.matmulName(size), impl, 'GFLOP/s', (2 * m * k * n) / ms / 1e6);
    log(`${C.matmulName(size)} ${impl}: ${ms.toFixed(1)} ms`);
    T.dispose([a, b]);
  }

  {
    const x = tensor(C.conv.x, 3), w = tensor(C.conv.w, 4);
    const [N, , H, W] = C.conv.x, [O, Ci, KH, KW] = C.conv.w;
    const flops = 2 * N * O * H * W * Ci * KH * KW;
    const ms = await timeIt(() => readAll(() => T.conv2d(x, w, { padding: C.conv.padding })), opts);
    results.add(C.convName, impl, 'ms', ms);
    results.add(C.convName, impl, 'GFLOP/s', flops / ms / 1e6);
    log(`${C.convName} ${impl}: ${ms.toFixed(1)} ms`);
    T.dispose([x, w]);
  }

  {
    const a = tensor([C.elementwiseSize], 5), b = tensor([C.elementwiseSize], 6);
    const add = await timeIt(() => readAll(() => T.add(a, b)), opts);
    results.add('add 1M', impl, 'ms', add);
    const exp = await timeIt(() => readAll(() => T.exp(a)), opts);
    results.add('exp 1M', impl, 'ms', exp);
    log(`add/exp 1M ${impl}: ${add.toFixed(2)} / ${exp.toFixed(2)} ms`);
    T.dispose([a, b]);
  }

  {
    // The full op path: promotion checks, kernel lookup, the kernel, Tensor creation, disposal.
    const a = tensor([C.overheadSize], 7), b = tensor([C.overheadSize], 8);
    let last = null;
    const us = await timePerCall(() => {
      const c = T.add(a, b);
      c.dispose();
    }, { inner: slow ? 200 : 2000, drain: async () => { last = T.add(a, b); await last.data(); last.dispose(); } });
    results.add('add 1k per call', impl, 'us', us);
    log(`add 1k ${impl}: ${us.toFixed(2)} us/call`);
    T.dispose([a, b]);
  }

  await autodiffCases(results, impl, opts, tensor, readAll, log);

  const after = T.memory();
  if (after.tensors !== baseline.tensors || after.buffers !== baseline.buffers) {
    throw new Error(`${impl}: the benchmark leaked tensors (${JSON.stringify(baseline)} -> ${JSON.stringify(after)})`);
  }
}

async function autodiffCases(results, impl, opts, tensor, readAll, log) {
  // MLP: forward, JVP with respect to the input, gradient of a squared error w.r.t. parameters.
  {
    const { batch, sizes } = C.mlp;
    const params = T.tidy(() => sizes.slice(1).map((d, l) => ({
      w: T.mul(tensor([sizes[l], d], 10 + l), 1 / Math.sqrt(sizes[l])),
      b: tensor([d], 20 + l),
    })));
    const x = tensor([batch, sizes[0]], 30), tx = tensor([batch, sizes[0]], 31);
    const net = (ps, h) => {
      ps.forEach((p, l) => {
        h = T.add(T.matmul(h, p.w), p.b);
        if (l + 1 < ps.length) h = T.tanh(h);
      });
      return h;
    };
    const loss = (ps) => T.mean(T.square(T.sub(net(ps, x), x)));
    await reportAutodiff(results, C.mlpName, impl, opts, log, {
      forward: () => readAll(() => net(params, x)),
      jvp: () => readAll(() => AD.jvp((h) => net(params, h), [x], [tx])),
      grad: () => readAll(() => AD.grad(loss)(params)),
    });
    T.dispose([params, x, tx]);
  }
  // Conv net.
  {
    const x = tensor(C.convNet.x, 40), tx = tensor(C.convNet.x, 41);
    const params = T.tidy(() => C.convNet.layers.map((l, i) => ({
      w: T.mul(tensor([l.cout, l.cin, 3, 3], 50 + i), 1 / Math.sqrt(l.cin * 9)),
      b: tensor([1, l.cout, 1, 1], 60 + i),
    })));
    const net = (ps, h) => {
      ps.forEach((p, i) => {
        h = T.add(T.conv2d(h, p.w, { stride: C.convNet.layers[i].stride, padding: 1 }), p.b);
        if (i + 1 < ps.length) h = T.tanh(h);
      });
      return h;
    };
    const loss = (ps) => T.mean(T.square(net(ps, x)));
    await reportAutodiff(results, C.convNetName, impl, opts, log, {
      forward: () => readAll(() => net(params, x)),
      jvp: () => readAll(() => AD.jvp((h) => net(params, h), [x], [tx])),
      grad: () => readAll(() => AD.grad(loss)(params)),
    });
    T.dispose([params, x, tx]);
  }
}

/** Time forward, JVP and gradient; record times and the two ratios to the forward pass. */
export async function reportAutodiff(results, name, impl, opts, log, fns) {
  const fwd = await timeIt(fns.forward, opts);
  const jvp = await timeIt(fns.jvp, opts);
  const grad = await timeIt(fns.grad, opts);
  results.add(`${name} forward`, impl, 'ms', fwd);
  results.add(`${name} jvp`, impl, 'ms', jvp);
  results.add(`${name} grad`, impl, 'ms', grad);
  results.add(`${name} jvp`, impl, 'x forward', jvp / fwd);
  results.add(`${name} grad`, impl, 'x forward', grad / fwd);
  log(`${name} ${impl}: forward ${fwd.toFixed(1)} ms, jvp ${jvp.toFixed(1)} ms, grad ${grad.toFixed(1)} ms`);
}
