/**
 * Random programs: compositions of 2 to 6 smooth ops (unary, binary, reduction, movement,
 * matmul), whose intermediate values may be reused (fan-out, so cotangents accumulate) and
 * whose binary ops may take new inputs of broadcastable shapes. A program is decoded from a
 * list of integer choices, so fast-check shrinks it towards short programs of the first op
 * of each kind; its `text` lists the steps (printed with any counterexample).
 *
 * Only smooth ops appear (no relu, abs, max, floor): finite differences are valid everywhere,
 * so the checks need no domain care.
 */
import fc from 'fast-check';
import * as T from '@scm/tensor';
import type { Tensor } from '@scm/tensor';
import { shapeArb, tensorArb, type HostTensor } from '@scm/autodiff/testing';
import { sizeOf } from './oracle.js';

interface Value {
  shape: number[];
  /** A leaf is a program input; otherwise the step that computes it. */
  step: Step | null;
}

interface Step {
  op: string;
  /** Indices of the values it reads. */
  args: number[];
  params: Record<string, unknown>;
}

export interface Program {
  values: Value[];
  leafShapes: number[][];
  text: string;
}

const MAX_SIZE = 64;

/** Whether shape b broadcasts to exactly shape s (each trailing dim equal or 1). */
const broadcastsInto = (b: number[], s: number[]) => b.length <= s.length && b.every((d, k) => d === 1 || d === s[s.length - b.length + k]);

const UNARY: Record<string, (x: Tensor) => Tensor> = {
  sin: T.sin,
  cos: T.cos,
  tanh: T.tanh,
  sigmoid: T.sigmoid,
  atan: T.atan,
  erf: T.erf,
  softplus: T.softplus,
  square: T.square,
  expHalf: (x) => T.exp(T.mul(x, 0.5)),
  neg: T.neg,
  gelu: T.gelu,
};
const BINARY: Record<string, (a: Tensor, b: Tensor) => Tensor> = {
  add: T.add,
  sub: T.sub,
  mul: T.mul,
  // a / (1 + b²): a division whose divisor never comes near zero.
  divSafe: (a, b) => T.div(a, T.add(T.square(b), 1)),
};
const REDUCE = ['sum', 'mean', 'logsumexp', 'softmax', 'logSoftmax', 'variance'] as const;
const MOVE = ['transpose', 'reshape', 'flip', 'slice', 'pad', 'concat', 'broadcast', 'take', 'matmul'] as const;

/** Turn integer choices into a program starting from one input of shape `shape`. */
export function decode(shape: number[], choices: [number, number, number, number][]): Program {
  const values: Value[] = [{ shape, step: null }];
  const lines = [`v0: input [${shape}]`];
  const leaf = (s: number[]) => {
    values.push({ shape: s, step: null });
    lines.push(`v${values.length - 1}: input [${s}]`);
    return values.length - 1;
  };
  const push = (op: string, args: number[], params: Record<string, unknown>, out: number[]) => {
    values.push({ shape: out, step: { op, args, params } });
    lines.push(`v${values.length - 1} = ${op}(${args.map((a) => `v${a}`).join(', ')}${Object.keys(params).length ? `, ${JSON.stringify(params)}` : ''}) -> [${out}]`);
  };
  for (const [c0, c1, c2, c3] of choices) {
    // Each step reads the latest value (and maybe earlier ones): the program is one chain with side inputs.
    const cur = values.length - 1;
    const s = values[cur].shape;
    const r = s.length;
    const kind = c0 % 4;
    const unary = () => {
      const names = Object.keys(UNARY);
      push(names[c1 % names.length], [cur], {}, s);
    };
    if (kind === 0) unary();
    else if (kind === 1) {
      const names = Object.keys(BINARY);
      const op = names[c1 % names.length];
      const reusable = values.map((_, i) => i).filter((i) => broadcastsInto(values[i].shape, s));
      let other: number;
      if (c2 % 2 === 0) other = reusable[c3 % reusable.length];
      else {
        const drop = c3 % (r + 1);
        other = leaf(s.slice(drop).map((d, k) => ((c2 >> (k + 1)) & 1 ? 1 : d)));
      }
      const args = (c3 >> 3) & 1 ? [other, cur] : [cur, other];
      push(op, args, {}, s);
    } else if (kind === 2 && r >= 1) {
      const op = REDUCE[c1 % REDUCE.length];
      const axis = c2 % r;
      const keepdims = c3 % 2 === 0;
      const out = op === 'softmax' || op === 'logSoftmax' ? s : keepdims ? s.map((d, k) => (k === axis ? 1 : d)) : s.filter((_, k) => k !== axis);
      if (op === 'variance' && s[axis] < 2) unary();
      else push(op, [cur], op === 'softmax' || op === 'logSoftmax' ? { axis } : { axis, keepdims }, out);
    } else if (kind === 3 && r >= 1) {
      const op = MOVE[c1 % MOVE.length];
      const axis = c2 % r;
      const n = s[axis];
      switch (op) {
        case 'transpose': {
          const perm = [...s.keys()].map((k) => (k + 1 + (c3 % r)) % r);
          push(op, [cur], { perm }, perm.map((p) => s[p]));
          break;
        }
        case 'reshape': {
          const out = c3 % 2 ? [sizeOf(s)] : [...s, 1];
          push(op, [cur], { shape: out }, out);
          break;
        }
        case 'flip':
          push(op, [cur], { axis }, s);
          break;
        case 'slice': {
          const step = [1, 2, -1, -2][c3 % 4];
          const start = step > 0 ? (c3 >> 2) % n : n - 1 - ((c3 >> 2) % n);
          const count = step > 0 ? Math.ceil((n - start) / step) : Math.ceil((start + 1) / -step);
          push(op, [cur], { axis, start, step }, s.map((d, k) => (k === axis ? count : d)));
          break;
        }
        case 'pad': {
          const widths: [number, number] = [c3 % 2, (c3 >> 1) % 3];
          push(op, [cur], { axis, widths }, s.map((d, k) => (k === axis ? d + widths[0] + widths[1] : d)));
          break;
        }
        case 'concat': {
          const partners = values.map((_, i) => i).filter((i) => values[i].shape.length === r && values[i].shape.every((d, k) => k === axis || d === s[k]));
          const other = partners[c3 % partners.length];
          const out = s.map((d, k) => (k === axis ? d + values[other].shape[axis] : d));
          if (sizeOf(out) > MAX_SIZE) unary();
          else push(op, [cur, other], { axis }, out);
          break;
        }
        case 'broadcast': {
          const out = [2, ...s];
          if (sizeOf(out) > MAX_SIZE) unary();
          else push(op, [cur], { shape: out }, out);
          break;
        }
        case 'take': {
          const indices = [c3 % n, 0, (c3 >> 2) % n];
          push(op, [cur], { axis, indices }, [...s.slice(0, axis), 3, ...s.slice(axis + 1)]);
          break;
        }
        case 'matmul': {
          const m = 1 + (c3 % 3);
          const w = leaf([s[r - 1], m]);
          push(op, [cur, w], {}, [...s.slice(0, -1), m]);
          break;
        }
      }
    } else unary();
  }
  const leafShapes = values.filter((v) => v.step === null).map((v) => v.shape);
  return { values, leafShapes, text: lines.join('; ') };
}

function apply(step: Step, args: Tensor[]): Tensor {
  const p = step.params as Record<string, any>;
  const [x] = args;
  if (step.op in UNARY) return UNARY[step.op](x);
  if (step.op in BINARY) return BINARY[step.op](args[0], args[1]);
  switch (step.op) {
    case 'sum': return T.sum(x, p.axis, p.keepdims);
    case 'mean': return T.mean(x, p.axis, p.keepdims);
    case 'logsumexp': return T.logsumexp(x, p.axis, p.keepdims);
    case 'variance': return T.variance(x, p.axis, p.keepdims);
    case 'softmax': return T.softmax(x, p.axis);
    case 'logSoftmax': return T.logSoftmax(x, p.axis);
    case 'transpose': return T.transpose(x, p.perm);
    case 'reshape': return T.reshape(x, p.shape);
    case 'flip': return T.flip(x, p.axis);
    case 'slice': return T.slice(x, x.shape.map((_, k) => (k === p.axis ? { start: p.start, step: p.step } : null)));
    case 'pad': return T.pad(x, x.shape.map((_, k) => (k === p.axis ? p.widths : [0, 0])));
    case 'concat': return T.concat(args, p.axis);
    case 'broadcast': return T.broadcastTo(T.expandDims(x, 0), p.shape);
    case 'take': return T.take(x, T.fromArray(p.indices, [p.indices.length], { dtype: 'int32', backend: x.backend }), p.axis);
    case 'matmul': return T.matmul(args[0], args[1]);
  }
  throw new Error(`unknown program step ${step.op}`);
}

/** Run a program on its inputs (one tensor per leaf, in order); returns the last value. */
export function evaluate(program: Program, leaves: readonly Tensor[]): Tensor {
  const env: Tensor[] = [];
  let next = 0;
  for (const v of program.values) env.push(v.step ? apply(v.step, v.step.args.map((a) => env[a])) : leaves[next++]);
  return env[env.length - 1];
}

export interface ProgramCase {
  program: Program;
  leaves: HostTensor[];
}

export const programArb: fc.Arbitrary<ProgramCase> = fc
  .record({
    shape: shapeArb({ minRank: 1, maxRank: 3, maxSize: 24 }),
    choices: fc.array(fc.tuple(fc.nat(), fc.nat(), fc.nat(), fc.nat()), { minLength: 2, maxLength: 6 }),
  })
  .map(({ shape, choices }) => decode(shape, choices))
  .chain((program) => fc.tuple(...program.leafShapes.map((s) => tensorArb(s))).map((leaves) => ({ program, leaves })));
