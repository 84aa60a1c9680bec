#!/usr/bin/env node
/**
 * The sCT training step of @scm/consistency in jax-js (@jax-js/jax), jit-compiled, for
 * bench/sct-step.js. The network is our UNet (packages/nn/src/unet.ts) written with
 * jax-js primitives and loaded with the exact weights sct-step.js exports, so its
 * forward pass and JVP are checked against ours (--check) before anything is timed.
 *
 *   node bench/jaxjs-sct.js --params DIR --check
 *   node bench/jaxjs-sct.js --params DIR --batch 8 [--device wasm|webgpu] [--conv shifted|im2col]
 *                          [--warmup 1] [--reps 3] [--budget-s 60] [--json FILE|-]
 *
 * DIR holds manifest.json + params.bin (float32), written by sct-step.js.
 *
 * Two jax-js 0.1.25 limits shape the code: its convolution primitive is slow under jit
 * (about 13x slower on wasm than the forms in conv3x3, built from its own slices and
 * matmuls; --conv shifted|im2col picks one, default shifted on wasm, im2col on webgpu),
 * and its matmul gave wrong results when only one operand had a batch dimension, so
 * every contraction here is either a plain 2-D matmul or a lax.dot with explicit
 * contracting and matching batch axes.
 *
 * jax-js arrays are reference counted and every function consumes its array arguments:
 * an array used again later is passed as `x.ref`.
 */
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SIGMA_D = 0.5;
const EPS = 1e-6; // the UNet's GroupNorm epsilon

const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};

/** Presets of packages/nn/src/unet.ts (32x32x3). */
export const PRESETS = {
  nano: { base: 16, mult: [1, 2], blocks: 1, attn: [] },
  tiny: { base: 32, mult: [1, 2], blocks: 1, attn: [16] },
  small: { base: 64, mult: [1, 2, 2], blocks: 2, attn: [8] },
};

/** The block list of the UNet, as unet.ts builds it: names, channels, resampling, attention, skips. */
export function unetPlan({ base, mult, blocks, attn }, imageChannels = 3, imageSize = 32) {
  const enc = [], dec = [];
  let cout = imageChannels;
  const skips = [];
  mult.forEach((m, level) => {
    const res = imageSize >> level;
    if (level === 0) {
      enc.push({ name: `${res}x${res}_conv`, conv: true });
      cout = base;
    } else {
      enc.push({ name: `${res}x${res}_down`, resample: 'down', cin: cout, cout });
    }
    skips.push(cout);
    for (let i = 0; i < blocks; i++) {
      const cin = cout;
      cout = base * m;
      enc.push({ name: `${res}x${res}_block${i}`, cin, cout, attention: attn.includes(res) });
      skips.push(cout);
    }
  });
  for (let level = mult.length - 1; level >= 0; level--) {
    const res = imageSize >> level;
    if (level === mult.length - 1) {
      dec.push({ name: `${res}x${res}_in0`, cin: cout, cout, attention: attn.length > 0 });
      dec.push({ name: `${res}x${res}_in1`, cin: cout, cout });
    } else {
      dec.push({ name: `${res}x${res}_up`, resample: 'up', cin: cout, cout });
    }
    for (let i = 0; i <= blocks; i++) {
      const cin = cout + skips.pop();
      cout = base * mult[level];
      dec.push({ name: `${res}x${res}_block${i}`, cin, cout, withSkip: true, attention: i === blocks && attn.includes(res) });
    }
  }
  return { enc, dec, base, outChannels: cout };
}

/** EDM's GroupNorm group count: min(32, C/4), at least 1, dividing C. */
function defaultGroups(c) {
  let g = Math.max(1, Math.min(32, Math.floor(c / 4)));
  while (c % g) g--;
  return g;
}

/** The network and the sCT step in jax-js, for one preset; convForm: 'shifted' or 'im2col' (see conv3x3). */
export function makeModel(jax, plan, convForm = 'shifted') {
  const { numpy: np, lax, nn } = jax;

  // x [N, C, H, W], w [O, C, 3, 3], b [O]: 3x3 convolution, padding 1, built from jax-js's
  // own slices and matmuls (its conv primitive is slow under jit). Two forms:
  //  - 'shifted': nine matmuls of the weight taps with shifted views of the padded input,
  //    channels first ([O, C] x [C, N·H·W]). Fastest on the wasm device: 2.4 GFLOP/s against
  //    1.6 for the best im2col layout and 0.18 for lax.conv (batch 16, 32 -> 32 channels, 32x32).
  //  - 'im2col': one dot of the stacked patches [N, C·9, H·W] with the weight [O, C·9]. Fewer,
  //    larger kernels: on WebGPU the jit'ed step compiles in seconds where 'shifted' took
  //    llvmpipe (the software driver) over ten minutes; not timed on a real GPU yet.
  function conv3x3(x, w, b) {
    return convForm === 'shifted' ? conv3x3Shifted(x, w, b) : conv3x3Im2col(x, w, b);
  }

  function conv3x3Shifted(x, w, b) {
    const [N, C, H, W] = x.shape;
    const O = w.shape[0];
    const xp = np.pad(x.transpose([1, 0, 2, 3]), [[0, 0], [0, 0], [1, 1], [1, 1]]);
    let y = null;
    for (let ky = 0; ky < 3; ky++) {
      for (let kx = 0; kx < 3; kx++) {
        const shifted = xp.ref.slice([], [], [ky, ky + H], [kx, kx + W]).reshape([C, N * H * W]);
        const tap = np.matmul(w.ref.slice([], [], ky, kx), shifted); // [O, C] x [C, N·H·W]
        y = y ? y.add(tap) : tap;
      }
    }
    xp.dispose();
    w.dispose();
    return y.add(b.reshape([O, 1])).reshape([O, N, H, W]).transpose([1, 0, 2, 3]);
  }

  function conv3x3Im2col(x, w, b) {
    const [N, C, H, W] = x.shape;
    const O = w.shape[0];
    const xp = np.pad(x, [[0, 0], [0, 0], [1, 1], [1, 1]]);
    const cols = [];
    for (let ky = 0; ky < 3; ky++) for (let kx = 0; kx < 3; kx++) cols.push(xp.ref.slice([], [], [ky, ky + H], [kx, kx + W]));
    xp.dispose();
    const patches = np.stack(cols, 2).reshape([N, C * 9, H * W]); // channel-major, then (ky, kx): the OIHW weight order
    const y = lax.dot(patches, w.reshape([O, C * 9]), { lhsContractingDims: [1], rhsContractingDims: [1] }); // [N, H·W, O]
    return y.transpose([0, 2, 1]).reshape([N, O, H, W]).add(b.reshape([1, O, 1, 1]));
  }

  function conv1x1(x, w, b) {
    const [N, C, H, W] = x.shape;
    const O = w.shape[0];
    const y = np.matmul(w.reshape([O, C]), x.transpose([1, 0, 2, 3]).reshape([C, N * H * W])).add(b.reshape([O, 1]));
    return y.reshape([O, N, H, W]).transpose([1, 0, 2, 3]);
  }

  /** x [N, in], w [out, in] (PyTorch layout), b [out]. */
  function linear(x, w, b) {
    return lax.dot(x, w, { lhsContractingDims: [1], rhsContractingDims: [1] }).add(b);
  }

  function groupNorm(x, p) {
    const [N, C] = x.shape;
    const G = defaultGroups(C);
    const g = x.reshape([N, G, -1]);
    const centered = g.ref.sub(np.mean(g, 2, { keepdims: true }));
    const variance = np.mean(np.square(centered.ref), 2, { keepdims: true });
    const xhat = centered.mul(np.reciprocal(np.sqrt(variance.add(EPS)))).reshape(x.shape);
    return xhat.mul(p.weight.reshape([1, C, 1, 1])).add(p.bias.reshape([1, C, 1, 1]));
  }

  function pixelNorm(v) {
    return v.ref.mul(np.reciprocal(np.sqrt(np.mean(np.square(v), 1, { keepdims: true }).add(1e-8))));
  }

  /** EDM positional embedding, endpoint form: t [N] -> [N, n]. */
  function positionalEmbedding(t, n, sinFirst) {
    const half = n / 2;
    const freqs = Float32Array.from({ length: half }, (_, k) => Math.pow(1 / 10000, k / (half - 1)));
    const arg = t.reshape([t.shape[0], 1]).mul(np.array(freqs).reshape([1, half]));
    const s = np.sin(arg.ref), c = np.cos(arg);
    return np.concatenate(sinFirst ? [s, c] : [c, s], 1);
  }

  const avgPool2 = (x) => {
    const [N, C, H, W] = x.shape;
    return np.mean(x.reshape([N, C, H / 2, 2, W / 2, 2]), [3, 5]);
  };
  const upsample2 = (x) => {
    const [N, C, H, W] = x.shape;
    return np.broadcastTo(x.reshape([N, C, H, 1, W, 1]), [N, C, H, 2, W, 2]).reshape([N, C, 2 * H, 2 * W]);
  };

  function attention(x, p) {
    const [N, C, H, W] = x.shape;
    const L = H * W;
    const qkv = conv1x1(groupNorm(x.ref, p.norm), p.qkv.weight, p.qkv.bias);
    const tokens = qkv.reshape([N, 3, 1, C, L]).transpose([1, 0, 2, 4, 3]).reshape([3, N, L, C]);
    const [q, k, v] = np.split(tokens, 3, 0).map((a) => a.reshape([N, L, C]));
    const s = lax.dot(q.mul(1 / Math.sqrt(C)), k, { lhsContractingDims: [2], rhsContractingDims: [2], lhsBatchDims: [0], rhsBatchDims: [0] });
    const pr = nn.softmax(s, -1);
    const o = lax.dot(pr, v, { lhsContractingDims: [2], rhsContractingDims: [1], lhsBatchDims: [0], rhsBatchDims: [0] }); // [N, L, C]
    const a = o.transpose([0, 2, 1]).reshape([N, C, H, W]);
    return x.add(conv1x1(a, p.proj.weight, p.proj.bias)).mul(Math.SQRT1_2);
  }

  function resBlock(x, emb, p, blk) {
    const resample = blk.resample === 'up' ? upsample2 : blk.resample === 'down' ? avgPool2 : (v) => v;
    let h = conv3x3(resample(nn.silu(groupNorm(x.ref, p.norm0))), p.conv0.weight, p.conv0.bias);
    // Adaptive double normalization.
    const C = blk.cout;
    const a = linear(emb, p.cond.affine.weight, p.cond.affine.bias);
    const [scale, shift] = np.split(a, 2, 1);
    h = groupNorm(h, p.cond.norm).mul(pixelNorm(scale).reshape([-1, C, 1, 1])).add(pixelNorm(shift).reshape([-1, C, 1, 1]));
    h = conv3x3(nn.silu(h), p.conv1.weight, p.conv1.bias);
    const skip = p.skip ? conv1x1(resample(x), p.skip.weight, p.skip.bias) : x;
    h = h.add(skip).mul(Math.SQRT1_2);
    return blk.attention ? attention(h, p.attn) : h;
  }

  /** F(params, y, t): consumes params, y and t. */
  function net(params, y, t) {
    const e = positionalEmbedding(t, plan.base, true);
    const m = params.map;
    const emb = nn.silu(linear(nn.silu(linear(e, m.layer0.weight, m.layer0.bias)), m.layer1.weight, m.layer1.bias));
    const skips = [];
    let h = y;
    for (const blk of plan.enc) {
      const p = params.enc[blk.name];
      h = blk.conv ? conv3x3(h, p.weight, p.bias) : resBlock(h, emb.ref, p, blk);
      skips.push(h.ref);
    }
    for (const blk of plan.dec) {
      if (blk.withSkip) h = np.concatenate([h, skips.pop()], 1);
      h = resBlock(h, emb.ref, params.dec[blk.name], blk);
    }
    emb.dispose();
    for (const s of skips) s.dispose();
    return conv3x3(nn.silu(groupNorm(h, params.out.norm)), params.out.conv.weight, params.out.conv.bias);
  }

  /** w_phi(t) = Linear(posemb(t, 128) -> 1), weight [128, 1] as in weighting.ts. */
  function head(phi, t) {
    const e = positionalEmbedding(t, 128, false);
    return lax.dot(e, phi.weight, { lhsContractingDims: [1], rhsContractingDims: [0] }).add(phi.bias).reshape([t.shape[0]]);
  }

  const perSample = (v) => v.reshape([v.shape[0], 1, 1, 1]);

  /** z, t, x_t and dx_t/dt of one step from its key (P_mean -1, P_std 1.4, t clamped). */
  function draw(x0, key) {
    const keys = jax.random.split(key, 2);
    const kz = keys.ref.slice(0), kt = keys.slice(1);
    const z = jax.random.normal(kz, x0.shape).mul(SIGMA_D);
    const tau = jax.random.normal(kt, [x0.shape[0]]).mul(1.4).add(-1.0);
    const t = np.clip(np.atan(np.exp(tau).mul(1 / SIGMA_D)), 1e-4, Math.PI / 2 - 1e-4);
    const c = perSample(np.cos(t.ref)), s = perSample(np.sin(t.ref));
    const xt = c.ref.mul(x0.ref).add(s.ref.mul(z.ref));
    const dxdt = c.mul(z).sub(s.mul(x0));
    return { t, xt, dxdt };
  }

  /** The raw tangent g of Algorithm 1 (r: tangent warmup factor): one JVP w.r.t. (x_t/sd, t). */
  function tangent(params, t, xt, dxdt, r) {
    const cs = np.cos(t.ref).mul(np.sin(t.ref));
    const vy = perSample(cs.ref).mul(dxdt.ref).mul(1 / SIGMA_D);
    const [F, J] = jax.jvp((yy, tt) => net(params, yy, tt), [xt.ref.mul(1 / SIGMA_D), t.ref], [vy, cs]);
    const c = perSample(np.cos(t.ref)), s = perSample(np.sin(t));
    const first = np.square(c.ref).neg().mul(F.mul(SIGMA_D).sub(dxdt));
    const second = c.mul(s).mul(xt).add(J.mul(SIGMA_D));
    return first.sub(second.mul(r));
  }

  /** g / (||g|| + 0.1) per sample. */
  function normalize(g) {
    const norm = np.sqrt(np.sum(np.square(g.ref), [1, 2, 3]));
    return g.div(perSample(norm.add(0.1)));
  }

  /** The sCT loss; F^- = stopGradient(F) of the same forward pass. */
  function loss(params, phi, xt, t, g) {
    const F = net(params, xt.mul(1 / SIGMA_D), t.ref);
    const D = F.size / F.shape[0];
    const diff = F.ref.sub(lax.stopGradient(F)).sub(g);
    const err = np.sum(np.square(diff), [1, 2, 3]).mul(1 / D);
    const w = head(phi, t);
    return np.mean(np.exp(w.ref).mul(err).sub(w));
  }

  /**
   * One training iteration: draw, tangent, loss gradients, RAdam in PyTorch's form and the
   * EMA (ema <- p + beta (ema - p)); the step-dependent scalars come from the host
   * (radamScalars), so one compiled program serves every step. Consumes every argument.
   */
  function step(state, x0, key, scal) {
    const { params, phi, mu, nu, ema } = state;
    const { t, xt, dxdt } = draw(x0, key);
    const g = lax.stopGradient(normalize(tangent(jax.tree.ref(params), t.ref, xt.ref, dxdt, scal.r)));
    const [value, [gp, gphi]] = jax.valueAndGrad((p, f) => loss(p, f, xt.ref, t.ref, g.ref), { argnums: [0, 1] })(jax.tree.ref(params), jax.tree.ref(phi));
    xt.dispose(); t.dispose(); g.dispose();
    const b1 = 0.9, b2 = 0.99;
    const upd = (p, gr, m, v) => {
      const m1 = m.mul(b1).add(gr.ref.mul(1 - b1));
      const v1 = v.mul(b2).add(np.square(gr).mul(1 - b2));
      const adaptive = np.reciprocal(np.sqrt(v1.ref).add(1e-8)).mul(scal.sqrtBc2.ref);
      // rho_t <= 5: plain momentum step (coef0); afterwards the rectified adaptive step (coef1).
      const stepDir = m1.ref.mul(scal.coef0.ref).add(m1.ref.mul(adaptive).mul(scal.coef1.ref));
      return [p.sub(stepDir), m1, v1];
    };
    const both = { net: params, head: phi };
    const flat = (tr) => jax.tree.leaves(tr);
    const [pl, gl, ml, vl] = [flat(both), flat({ net: gp, head: gphi }), flat(mu), flat(nu)];
    const out = pl.map((p, i) => upd(p, gl[i], ml[i], vl[i]));
    const def = jax.tree.structure(both);
    const newBoth = jax.tree.unflatten(def, out.map((o) => o[0]));
    const newMu = jax.tree.unflatten(def, out.map((o) => o[1]));
    const newNu = jax.tree.unflatten(def, out.map((o) => o[2]));
    const emaLeaves = flat(ema), netLeaves = flat(newBoth.net);
    const newEma = jax.tree.unflatten(jax.tree.structure(ema), emaLeaves.map((e, i) => netLeaves[i].ref.add(e.sub(netLeaves[i].ref).mul(scal.beta.ref))));
    for (const k of ['coef0', 'coef1', 'sqrtBc2', 'beta']) scal[k].dispose();
    return { state: { params: newBoth.net, phi: newBoth.head, mu: newMu, nu: newNu, ema: newEma }, loss: value };
  }

  return { net, tangent, draw, step };
}

/** Host-side RAdam scalars (PyTorch's formulas, lr 1e-4, betas (0.9, 0.99)) and the EMA decay for update number t (1-based). */
export function radamScalars(np, t, batch, nimg) {
  const lr = 1e-4, b1 = 0.9, b2 = 0.99;
  const bc1 = 1 - b1 ** t, bc2 = 1 - b2 ** t;
  const rhoInf = 2 / (1 - b2) - 1;
  const rhoT = rhoInf - (2 * t * b2 ** t) / bc2;
  const rect = rhoT > 5 ? Math.sqrt(((rhoT - 4) * (rhoT - 2) * rhoInf) / ((rhoInf - 4) * (rhoInf - 2) * rhoT)) : 0;
  const halfLife = Math.min(500_000, nimg * 0.05);
  const scalar = (v) => np.array(new Float32Array([v])).reshape([]);
  return {
    coef0: scalar(rhoT > 5 ? 0 : lr / bc1),
    coef1: scalar(rhoT > 5 ? (lr * rect) / bc1 : 0),
    sqrtBc2: scalar(Math.sqrt(bc2)),
    beta: scalar(0.5 ** (batch / Math.max(halfLife, 1e-8))),
    r: scalar(Math.min(1, t / 10_000)),
  };
}

/** The parameters in DIR as a nested object (dotted names), plus the manifest and the raw floats. */
export function loadExport(np, dir) {
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  const bin = readFileSync(join(dir, 'params.bin'));
  const flat = new Float32Array(bin.buffer, bin.byteOffset, bin.byteLength / 4);
  const array = ({ shape, offset }) => np.array(flat.slice(offset, offset + shape.reduce((a, b) => a * b, 1))).reshape(shape);
  const params = {};
  for (const p of manifest.params) {
    const path = p.name.split('.');
    let node = params;
    for (const k of path.slice(0, -1)) node = node[k] ??= {};
    node[path.at(-1)] = array(p);
  }
  return { manifest, params, array, flat };
}

const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function main() {
  const dir = flag('--params');
  if (!dir) throw new Error('jaxjs-sct: --params DIR is required (written by bench/sct-step.js)');
  const device = flag('--device', 'wasm');
  if (device === 'webgpu' && !globalThis.navigator?.gpu) {
    process.env.XDG_RUNTIME_DIR ??= '/tmp';
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    Object.defineProperty(globalThis, 'navigator', { value: { gpu: create([]), userAgent: 'node' }, configurable: true, writable: true });
  }
  const jax = await import('@jax-js/jax');
  const { numpy: np } = jax;
  const available = await jax.init(device);
  if (!available.includes(device)) throw new Error(`jax-js: device ${device} is not available (got ${available.join(', ') || 'none'})`);
  jax.defaultDevice(device);
  const { manifest, params, array, flat } = loadExport(np, dir);
  const size = manifest.imageSize ?? 32;
  const plan = unetPlan(PRESETS[manifest.preset], 3, size);
  const model = makeModel(jax, plan, flag('--conv', device === 'wasm' ? 'shifted' : 'im2col'));

  if (args.includes('--check')) {
    const f = jax.jit((p, y, t, vy, vt) => jax.jvp((yy, tt) => model.net(p, yy, tt), [y, t], [vy, vt]));
    const [F, J] = f(params, array(manifest.y), array(manifest.t), array(manifest.vy), array(manifest.vt));
    const relErr = async (a, key) => {
      const got = await a.data();
      const { offset, shape } = manifest[key];
      const ref = flat.subarray(offset, offset + shape.reduce((x, y) => x * y, 1));
      let d = 0, m = 0;
      for (let i = 0; i < ref.length; i++) [d, m] = [Math.max(d, Math.abs(got[i] - ref[i])), Math.max(m, Math.abs(ref[i]))];
      return d / m;
    };
    console.log(JSON.stringify({ preset: manifest.preset, forward_rel_err: await relErr(F, 'F'), jvp_rel_err: await relErr(J, 'J') }));
    return;
  }

  const batch = Number(flag('--batch', '8'));
  const warmup = Number(flag('--warmup', '1'));
  const reps = Number(flag('--reps', '3'));
  const budgetS = Number(flag('--budget-s', '60'));
  const impl = `jax-js:${device}`;
  const name = `sct ${manifest.preset}${size !== 32 ? ` ${size}px` : ''} b${batch}`;
  const xs = new Float32Array(batch * 3 * size * size);
  let s = 12345;
  for (let i = 0; i < xs.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    xs[i] = (s / 4294967296) * 2 - 1; // pixels in [-1, 1]
  }
  const x0 = np.array(xs).reshape([batch, 3, size, size]);
  const zerosTree = (tr) => jax.tree.map((a) => np.zerosLike(a.ref), tr);
  const phi = { weight: np.zeros([128, 1]), bias: np.zeros([1]) };
  let state = { params, phi, mu: zerosTree({ net: params, head: phi }), nu: zerosTree({ net: params, head: phi }), ema: jax.tree.map((a) => a.ref.mul(1), params) };

  const stepJit = jax.jit(model.step);
  const forwardJit = jax.jit((p, y, t) => model.net(p, y, t));
  const tangentJit = jax.jit((p, x, key) => {
    const { t, xt, dxdt } = model.draw(x, key);
    return model.tangent(p, t, xt, dxdt, 0.5);
  });
  const tFixed = np.full([batch], 0.8);
  let iter = 0;
  const clocks = () => [performance.now(), cpuMs()];
  const since = ([w, c]) => [performance.now() - w, cpuMs() - c];
  const runStep = async () => {
    iter++;
    const out = stepJit(state, x0.ref, jax.random.key(iter), radamScalars(np, iter, batch, (iter - 1) * batch));
    state = out.state;
    await out.loss.data();
    for (const leaf of jax.tree.leaves(state.ema)) await leaf.ref.data();
  };
  const runForward = async () => {
    await forwardJit(jax.tree.ref(state.params), x0.ref.mul(1 / SIGMA_D), tFixed.ref).data();
  };
  const runTangent = async () => {
    await tangentJit(jax.tree.ref(state.params), x0.ref, jax.random.key(1000 + iter)).data();
  };
  for (let i = 0; i < warmup; i++) {
    await runStep();
    await runForward();
    await runTangent();
  }
  const runs = [];
  const start = performance.now();
  let last = 0; // start another round only if it should end within the budget
  while (runs.length < reps && (runs.length === 0 || performance.now() - start + last < budgetS * 1000)) {
    const round = performance.now();
    let c = clocks();
    await runStep();
    const st = since(c);
    c = clocks();
    await runForward();
    const fw = since(c);
    c = clocks();
    await runTangent();
    const jv = since(c);
    runs.push({ st, fw, jv });
    last = performance.now() - round;
  }
  const med = (f) => median(runs.map(f));
  const stepMs = med((r) => r.st[0]);
  const records = [];
  const add = (c, unit, value) => records.push({ case: c, impl, unit, value: Number(value.toPrecision(4)) });
  add(`${name} step`, 'img/s', (batch / stepMs) * 1000);
  if (device === 'wasm') add(`${name} step`, 'img/s cpu-time', (batch / med((r) => r.st[1])) * 1000); // GPU work runs on driver threads
  add(`${name} step`, 'ms', stepMs);
  add(`${name} forward`, 'ms', med((r) => r.fw[0]));
  add(`${name} jvp`, 'ms', med((r) => r.jv[0]));
  add(`${name} grad+update`, 'ms', med((r) => r.st[0] - r.jv[0]));
  add(`${name} step`, 'runs', runs.length);
  process.stderr.write(`  ${impl} ${name}: step ${stepMs.toFixed(1)} ms (${((batch / stepMs) * 1000).toFixed(2)} img/s), median of ${runs.length}\n`);
  const json = flag('--json');
  if (json === '-') console.log(JSON.stringify(records));
  else if (json) writeFileSync(json, JSON.stringify(records, null, 2) + '\n');
}

function cpuMs() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  main().then(() => process.exit(0), (err) => {
    console.error(err?.stack ?? String(err));
    process.exit(1);
  });
}
