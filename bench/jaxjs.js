/**
 * jax-js (@jax-js/jax) on one device: the same computations as ours.js. jax-js arrays are
 * reference counted and every function consumes its array arguments, so arrays that are
 * used again are passed as `x.ref`.
 */
import * as C from './cases.js';
import { randomArray, timeIt, timePerCall } from './harness.js';
import { FAST, SLOW, reportAutodiff } from './ours.js';

export async function runJax(results, jax, device, { slow = false, log = () => {} } = {}) {
  const impl = `jax-js:${device}`;
  const { numpy: np, lax } = jax;
  jax.defaultDevice(device);
  const opts = slow ? SLOW : FAST;
  const array = (shape, seed) => np.array(randomArray(shape.reduce((a, b) => a * b, 1), seed)).reshape(shape);
  const tree = (t, f) => (Array.isArray(t) ? t.map((v) => tree(v, f)) : t && t.constructor === Object ? Object.fromEntries(Object.entries(t).map(([k, v]) => [k, tree(v, f)])) : f(t));
  const leaves = (t) => (Array.isArray(t) ? t.flatMap(leaves) : t && t.constructor === Object ? Object.values(t).flatMap(leaves) : [t]);
  /**
   * Run f, read every output back (reading also disposes each output). On wasm, dataSync:
   * jax-js's asynchronous data() there adds a wait of its own (about 17 ms measured on a 1M
   * add, with 1 ms of CPU time) that would count against jax-js, not its kernels.
   */
  const readAll = async (f) => {
    for (const a of leaves(f())) {
      if (device === 'wasm') a.dataSync();
      else await a.data();
    }
  };

  for (const size of C.matmulSizes) {
    const [m, k, n] = size;
    const a = array([m, k], 1), b = array([k, n], 2);
    const ms = await timeIt(() => readAll(() => np.matmul(a.ref, b.ref)), opts);
    results.add(C.matmulName(size), impl, 'ms', ms);
    results.add(C.matmulName(size), impl, 'GFLOP/s', (2 * m * k * n) / ms / 1e6);
    log(`${C.matmulName(size)} ${impl}: ${ms.toFixed(1)} ms`);
    a.dispose(); b.dispose();
  }

  {
    const x = array(C.conv.x, 3), w = array(C.conv.w, 4);
    const [N, , H, W] = C.conv.x, [O, Ci, KH, KW] = C.conv.w;
    const p = C.conv.padding;
    const ms = await timeIt(() => readAll(() => lax.conv(x.ref, w.ref, [1, 1], [[p, p], [p, p]])), opts);
    results.add(C.convName, impl, 'ms', ms);
    results.add(C.convName, impl, 'GFLOP/s', (2 * N * O * H * W * Ci * KH * KW) / ms / 1e6);
    log(`${C.convName} ${impl}: ${ms.toFixed(1)} ms`);
    x.dispose(); w.dispose();
  }

  {
    const a = array([C.elementwiseSize], 5), b = array([C.elementwiseSize], 6);
    const add = await timeIt(() => readAll(() => np.add(a.ref, b.ref)), opts);
    results.add('add 1M', impl, 'ms', add);
    const exp = await timeIt(() => readAll(() => np.exp(a.ref)), opts);
    results.add('exp 1M', impl, 'ms', exp);
    log(`add/exp 1M ${impl}: ${add.toFixed(2)} / ${exp.toFixed(2)} ms`);
    a.dispose(); b.dispose();
  }

  if (device === 'wasm') {
    // jax-js is lazy: an op runs when its result is read. dataSync runs it (and frees it).
    const a = array([C.overheadSize], 7), b = array([C.overheadSize], 8);
    await a.ref.data(); await b.ref.data();
    const us = await timePerCall(() => np.add(a.ref, b.ref).dataSync(), { inner: 2000 });
    results.add('add 1k per call', impl, 'us', us);
    log(`add 1k ${impl}: ${us.toFixed(2)} us/call`);
    a.dispose(); b.dispose();
  }

  {
    const { batch, sizes } = C.mlp;
    const params = [];
    for (let l = 0; l + 1 < sizes.length; l++) {
      params.push({ w: array([sizes[l], sizes[l + 1]], 10 + l).mul(1 / Math.sqrt(sizes[l])), b: array([sizes[l + 1]], 20 + l) });
    }
    const x = array([batch, sizes[0]], 30), tx = array([batch, sizes[0]], 31);
    // Consumes ps and h (jax-js convention).
    const net = (ps, h) => {
      ps.forEach((p, l) => {
        h = np.add(np.matmul(h, p.w), p.b);
        if (l + 1 < ps.length) h = np.tanh(h);
      });
      return h;
    };
    const refs = (t) => tree(t, (a) => a.ref);
    const loss = (ps) => np.mean(np.square(np.subtract(net(ps, x.ref), x.ref)));
    await reportAutodiff(results, C.mlpName, impl, opts, log, {
      forward: () => readAll(() => net(refs(params), x.ref)),
      jvp: () => readAll(() => jax.jvp((h) => net(refs(params), h), [x.ref], [tx.ref])),
      grad: () => readAll(() => jax.grad(loss)(refs(params))),
    });
    leaves([params, x, tx]).forEach((a) => a.dispose());
  }

  {
    const x = array(C.convNet.x, 40), tx = array(C.convNet.x, 41);
    const params = C.convNet.layers.map((l, i) => ({
      w: array([l.cout, l.cin, 3, 3], 50 + i).mul(1 / Math.sqrt(l.cin * 9)),
      b: array([1, l.cout, 1, 1], 60 + i),
    }));
    const net = (ps, h) => {
      ps.forEach((p, i) => {
        const s = C.convNet.layers[i].stride;
        h = np.add(lax.conv(h, p.w, [s, s], [[1, 1], [1, 1]]), p.b);
        if (i + 1 < ps.length) h = np.tanh(h);
      });
      return h;
    };
    const refs = (t) => tree(t, (a) => a.ref);
    const loss = (ps) => np.mean(np.square(net(ps, x.ref)));
    await reportAutodiff(results, C.convNetName, impl, opts, log, {
      forward: () => readAll(() => net(refs(params), x.ref)),
      jvp: () => readAll(() => jax.jvp((h) => net(refs(params), h), [x.ref], [tx.ref])),
      grad: () => readAll(() => jax.grad(loss)(refs(params))),
    });
    leaves([params, x, tx]).forEach((a) => a.dispose());
  }
}
