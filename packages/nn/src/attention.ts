/**
 * Scaled dot-product attention, O = softmax(Q Kᵀ · scale) V, with a JVP that needs no
 * more memory than the forward pass (sCM paper §5.1, App. F).
 *
 * For one query row with scores x, p = softmax(x), y = p V and tangents ẋ, V̇:
 *     ẏ = (p ⊙ ẋ) V − (p · ẋ) y + p V̇.
 * Differentiating the composite instead would materialize the softmax tangent
 * ṗ = p ⊙ (ẋ − p·ẋ) and a handful of L×L temporaries along the way. The rule below
 * keeps only the forward's own L×L tensors (P) plus one L×L block at a time:
 *     Ṡ = (Q̇ Kᵀ + Q K̇ᵀ)·scale          (one matmul of concatenations: [Q̇ | Q]·[K | K̇]ᵀ)
 *     W = P ⊙ Ṡ
 *     [G | μ] = W · [V | 1]            (μ = row sums of W = p·ẋ)
 *     [O | P V̇] = P · [V | V̇]
 *     Ȯ = G − μ ⊙ O + P V̇
 * processed in blocks of query rows. Reverse mode differentiates the plain forward.
 *
 * When every input is a concrete tensor (no outer transform is tracing through), the
 * temporaries are freed as soon as they are used; under tracing they belong to the
 * enclosing transform and are left alone.
 */
import { customJvp, stopGradient } from '@scm/autodiff';
import {
  Tensor, TensorError, add, concat, div, exp, full, fuse, matmul, max, mT, mul, reshape, slice, softmax, split, sub, sum, tidy, transpose,
} from '@scm/tensor';
import { edm, type Initializer } from './init.js';
import { Module, getChild, type Ctx, type Params, type SpecTree } from './module.js';
import { Conv2d } from './layers/conv.js';
import { GroupNorm, defaultGroups } from './layers/norm.js';

export interface AttentionOptions {
  /** Score scale; default 1/sqrt(d). */
  scale?: number;
  /** Query rows per block in the JVP rule (default: half the sequence, at least 1). */
  blockRows?: number;
}

function checkQKV(q: Tensor, k: Tensor, v: Tensor): void {
  const bad = q.ndim < 2 || k.ndim !== q.ndim || v.ndim !== q.ndim
    || q.shape.slice(0, -2).some((d, i) => d !== k.shape[i] || d !== v.shape[i])
    || q.shape[q.ndim - 1] !== k.shape[k.ndim - 1] || k.shape[k.ndim - 2] !== v.shape[v.ndim - 2];
  if (bad) throw new TensorError('attention', 'expected q [..., Lq, d], k [..., Lk, d], v [..., Lk, dv] with equal batch dims', [q.shape, k.shape, v.shape]);
  if (q.dtype !== k.dtype || q.dtype !== v.dtype) throw new TensorError('attention', `q, k and v must share a dtype (got ${q.dtype}, ${k.dtype}, ${v.dtype})`, [q.shape, k.shape, v.shape]);
}

/** Frees temporaries when nothing can be tracing them (all inputs concrete). */
function releaser(inputs: Tensor[]): (...ts: Tensor[]) => void {
  const concrete = inputs.every((t) => t.trace === null);
  return concrete ? (...ts) => ts.forEach((t) => t.dispose()) : () => {};
}

/** softmax over the last axis; consumes s (frees it, and its temporaries, through `free`). */
function softmaxLastAxis(s: Tensor, free: (...ts: Tensor[]) => void): Tensor {
  const m = stopGradient(max(s, -1, true));
  const shifted = sub(s, m);
  free(s, m);
  const e = exp(shifted);
  free(shifted);
  const z = sum(e, -1, true);
  const p = div(e, z);
  free(e, z);
  return p;
}

/** The plain forward: P = softmax(Q Kᵀ · scale), O = P V. */
function attentionForward(q: Tensor, k: Tensor, v: Tensor, scale: number): Tensor {
  const free = releaser([q, k, v]);
  const qs = mul(q, scale);
  const kt = mT(k);
  const s = matmul(qs, kt);
  free(qs, kt);
  const p = softmaxLastAxis(s, free);
  const o = matmul(p, v);
  free(p);
  return o;
}

function rowBlocks(L: number, blockRows: number): [number, number][] {
  const out: [number, number][] = [];
  for (let r = 0; r < L; r += blockRows) out.push([r, Math.min(L, r + blockRows)]);
  return out;
}

/** The memory-lean JVP rule: primal and tangent together, block by block over query rows. */
function attentionJvpRule(primals: Tensor[], tangents: Tensor[], scale: number, blockRows?: number): [Tensor, Tensor] {
  const [q, k, v] = primals;
  const [tq, tk, tv] = tangents;
  const free = releaser([...primals, ...tangents]);
  const Lq = q.shape[q.ndim - 2];
  const dv = v.shape[v.ndim - 1];
  const rows = Math.max(1, Math.min(Lq, blockRows ?? Math.ceil(Lq / 2)));
  const ax = q.ndim - 2;
  const qs = mul(q, scale), tqs = mul(tq, scale);
  const kt = mT(k);
  const ktk = concat([k, tk], -1);
  const kk = mT(ktk); // [..., 2d, Lk]: [Q̇ | Q]·kk = Q̇Kᵀ + QK̇ᵀ
  free(ktk);
  const vtv = concat([v, tv], -1); // [..., Lk, 2dv]
  const ones = full([...v.shape.slice(0, -1), 1], 1, { dtype: v.dtype, backend: v.backend });
  const v1 = concat([v, ones], -1); // [..., Lk, dv + 1]
  free(ones);
  const outs: Tensor[] = [], touts: Tensor[] = [];
  for (const [r0, r1] of rowBlocks(Lq, rows)) {
    const pick = (t: Tensor) => (r0 === 0 && r1 === Lq ? t : slice(t, t.shape.map((_, d) => (d === ax ? { start: r0, stop: r1 } : null))));
    const qb = pick(qs), tqb = pick(tqs);
    const s = matmul(qb, kt);
    const p = softmaxLastAxis(s, free);
    const opv = matmul(p, vtv);
    const [o, ptv] = split(opv, 2, -1); // O and P V̇
    free(opv);
    const tqq = concat([tqb, qb], -1);
    if (qb !== qs) free(qb, tqb);
    const ts = matmul(tqq, kk); // Ṡ
    free(tqq);
    const w = mul(p, ts);
    free(p, ts);
    const gm = matmul(w, v1);
    free(w);
    const [g, mu] = split(gm, [dv, 1], -1);
    free(gm);
    const muO = mul(mu, o);
    const gMinus = sub(g, muO);
    free(g, mu, muO);
    const to = add(gMinus, ptv);
    free(gMinus, ptv);
    outs.push(o);
    touts.push(to);
  }
  free(qs, tqs, kt, kk, vtv, v1);
  if (outs.length === 1) return [outs[0], touts[0]];
  const o = concat(outs, ax), to = concat(touts, ax);
  free(...outs, ...touts);
  return [o, to];
}

/**
 * softmax(q kᵀ · scale) v over the last two axes: q [..., Lq, d], k [..., Lk, d],
 * v [..., Lk, dv] -> [..., Lq, dv]. Its JVP is the memory-lean rule above.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  return tidy(() => {
    checkQKV(q, k, v);
    const scale = opts.scale ?? 1 / Math.sqrt(q.shape[q.ndim - 1]);
    const f = customJvp(
      (a: Tensor, b: Tensor, c: Tensor) => attentionForward(a, b, c, scale),
      (primals: [Tensor, Tensor, Tensor], tangents: [Tensor, Tensor, Tensor]) => attentionJvpRule(primals, tangents, scale, opts.blockRows),
    );
    return f(q, k, v);
  });
}

/**
 * The same function as a plain composite (softmax of scores times values), left to
 * autodiff in both modes. The reference the lean JVP is tested against.
 */
export function attentionComposite(q: Tensor, k: Tensor, v: Tensor, opts: { scale?: number } = {}): Tensor {
  return tidy(() => {
    checkQKV(q, k, v);
    const scale = opts.scale ?? 1 / Math.sqrt(q.shape[q.ndim - 1]);
    return matmul(softmax(mul(matmul(q, mT(k)), scale), -1), v);
  });
}

export interface SelfAttentionOptions {
  numHeads?: number;
  groups?: number;
  eps?: number;
  /** Output (x + attention) · skipScale (DDPM++: sqrt(0.5)); default 1. */
  skipScale?: number;
  /** Initializer of the qkv projection (DDPM++: EDM xavier_uniform · sqrt(0.2)). */
  qkvInit?: Initializer;
  /** Initializer of the output projection (DDPM++: EDM xavier_uniform · 1e-5). */
  projInit?: Initializer;
  blockRows?: number;
}

/**
 * Multi-head self-attention over the H×W positions of a feature map, as a residual
 * block: GroupNorm → 1×1 conv to q, k, v → attention per head (scale 1/sqrt(C/heads))
 * → 1×1 conv → (x + ·) · skipScale.
 * The qkv channels are laid out [q | k | v], each split into heads of C/heads channels.
 */
export class SelfAttention2d extends Module {
  readonly numHeads: number;
  readonly skipScale: number;
  readonly norm: GroupNorm;
  readonly qkv: Conv2d;
  readonly proj: Conv2d;
  constructor(readonly channels: number, private readonly opts: SelfAttentionOptions = {}) {
    super();
    this.numHeads = opts.numHeads ?? 1;
    if (!Number.isInteger(this.numHeads) || this.numHeads < 1 || channels % this.numHeads !== 0) {
      throw new TensorError('SelfAttention2d', `${channels} channels do not split into ${this.numHeads} heads`);
    }
    this.skipScale = opts.skipScale ?? 1;
    this.norm = new GroupNorm(opts.groups ?? defaultGroups(channels), channels, { eps: opts.eps ?? 1e-5 });
    this.qkv = new Conv2d(channels, 3 * channels, 1, { init: opts.qkvInit ?? edm('xavier_uniform', Math.sqrt(0.2)) });
    this.proj = new Conv2d(channels, channels, 1, { init: opts.projInit ?? edm('xavier_uniform', 1e-5) });
  }

  spec(): SpecTree {
    return { norm: this.norm.spec(), qkv: this.qkv.spec(), proj: this.proj.spec() };
  }

  /** x: [N, C, H, W] -> [N, C, H, W]. */
  apply(params: Params, x: Tensor, _ctx?: Ctx): Tensor {
    if (x.ndim !== 4 || x.shape[1] !== this.channels) throw new TensorError('SelfAttention2d', `expected input [N, ${this.channels}, H, W]`, [x.shape]);
    const [N, C, H, W] = x.shape;
    const heads = this.numHeads, d = C / heads, L = H * W;
    const h = this.norm.apply(getChild(params, 'norm', 'SelfAttention2d'), x);
    const qkv = this.qkv.apply(getChild(params, 'qkv', 'SelfAttention2d'), h);
    // [N, 3C, H, W] -> [3, N·heads, L, d]
    const tokens = reshape(transpose(reshape(qkv, [N, 3, heads, d, L]), [1, 0, 2, 4, 3]), [3, N * heads, L, d]);
    const [q, k, v] = split(tokens, 3, 0).map((t) => reshape(t, [N * heads, L, d]));
    const o = attention(q, k, v, { blockRows: this.opts.blockRows });
    // [N·heads, L, d] -> [N, C, H, W]
    const a = reshape(transpose(reshape(o, [N, heads, L, d]), [0, 1, 3, 2]), [N, C, H, W]);
    const p = this.proj.apply(getChild(params, 'proj', 'SelfAttention2d'), a);
    const scale = this.skipScale;
    return scale === 1 ? add(x, p) : fuse((u, w) => u.add(w).mul(scale), [x, p]);
  }
}
