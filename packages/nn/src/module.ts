/**
 * Modules are stateless descriptions of a computation: `init(key)` builds the
 * parameters, a pytree of tensors (nested plain objects and arrays), and
 * `apply(params, ...inputs, ctx?)` evaluates the function. Since parameters are plain
 * pytrees they go straight into grad / valueAndGrad / jvp and the pytree helpers.
 *
 * A module declares its parameters once, in `spec()`: shapes and initializers, without
 * allocating. `init` materializes the spec; parameter counts and summaries of any
 * model (even one too large to allocate) are read from it.
 */
import { Tensor, TensorError, random, shapesEqual, sizeOf, tidy } from '@scm/tensor';
import type { Initializer, InitOptions } from './init.js';

export type Params = { [name: string]: Tensor | Params | Params[] };

/** Evaluation context: `train` enables dropout, whose masks come from `key` (keyed RNG). */
export interface Ctx {
  train?: boolean;
  key?: random.Key;
}

/** One parameter's declaration: its shape and how to initialize it. */
export class ParamSpec {
  readonly shape: readonly number[];
  constructor(shape: readonly number[], readonly init: Initializer) {
    this.shape = Object.freeze([...shape]);
  }
  get size(): number {
    return sizeOf(this.shape);
  }
}
export type SpecTree = { [name: string]: ParamSpec | SpecTree | SpecTree[] };

export function param(shape: readonly number[], init: Initializer): ParamSpec {
  for (const d of shape) if (!Number.isInteger(d) || d <= 0) throw new TensorError('param', 'parameter dimensions must be positive integers', [shape]);
  return new ParamSpec(shape, init);
}

export abstract class Module<Args extends unknown[] = [Tensor]> {
  constructor() {
    // `apply` runs in its own tidy scope, as every op does: called outside any scope, it
    // leaves behind only its result, not the intermediates of the layers inside.
    const apply = this.apply;
    this.apply = (params: Params, ...args: [...Args, Ctx?]) => tidy(() => apply.call(this, params, ...args));
  }

  /** The parameter shapes and initializers (no tensors are allocated). */
  abstract spec(): SpecTree;

  /** Evaluate the module. The optional context (dropout, train mode) always comes last. */
  abstract apply(params: Params, ...args: [...Args, Ctx?]): Tensor;

  /**
   * Materialize the parameters. Each leaf gets its own key, derived from `key` and
   * its dotted name, so a parameter's initial value does not depend on which other
   * parameters exist.
   */
  init(key: random.Key, opts: InitOptions = {}): Params {
    return initSpec(this.spec(), key, opts);
  }

  /** Number of scalar parameters, counted from the spec. */
  parameterCount(): number {
    return namedSpecs(this.spec()).reduce((n, [, s]) => n + s.size, 0);
  }

  /** A printable table of parameter names, shapes and counts, from the spec. */
  summary(): string {
    return formatSummary(namedSpecs(this.spec()).map(([n, s]) => [n, s.shape]), this.constructor.name);
  }
}

// ------------------------------ names and keys -------------------------------

/** FNV-1a, 32 bits: a stable number for a parameter or submodule name. */
export function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function walk<L>(tree: unknown, isLeaf: (v: unknown) => v is L, prefix: string, out: [string, L][], what: string): void {
  if (isLeaf(tree)) {
    out.push([prefix, tree]);
  } else if (Array.isArray(tree)) {
    tree.forEach((t, i) => walk(t, isLeaf, prefix ? `${prefix}.${i}` : String(i), out, what));
  } else if (tree && typeof tree === 'object' && Object.getPrototypeOf(tree) === Object.prototype) {
    for (const [k, v] of Object.entries(tree)) {
      if (k.includes('.')) throw new TensorError(what, `name "${k}" must not contain a dot (dotted names address nested parameters)`);
      walk(v, isLeaf, prefix ? `${prefix}.${k}` : k, out, what);
    }
  } else {
    throw new TensorError(what, `"${prefix}" is neither a parameter nor a nested object/array of parameters (got ${tree === null ? 'null' : typeof tree})`);
  }
}

/** [dottedName, spec] for every parameter of a spec tree, in declaration order. */
export function namedSpecs(spec: SpecTree): [string, ParamSpec][] {
  const out: [string, ParamSpec][] = [];
  walk(spec, (v): v is ParamSpec => v instanceof ParamSpec, '', out, 'namedSpecs');
  return out;
}

/**
 * [dottedName, tensor] for every parameter, in a stable order (object key order, array
 * index order). Array elements are named by index: `blocks.0.conv.weight`. These names
 * are the keys parameters are saved under.
 */
export function namedParameters(params: Params): [string, Tensor][] {
  const out: [string, Tensor][] = [];
  walk(params, (v): v is Tensor => v instanceof Tensor, '', out, 'namedParameters');
  return out;
}

/** Number of scalar parameters in a parameter tree (or declared by a module). */
export function parameterCount(params: Params | Module<any>): number {
  if (params instanceof Module) return params.parameterCount();
  return namedParameters(params).reduce((n, [, t]) => n + t.size, 0);
}

/** Materialize a spec tree: every leaf initialized with a key folded from its dotted name. */
export function initSpec(spec: SpecTree, key: random.Key, opts: InitOptions = {}): Params {
  const build = (tree: ParamSpec | SpecTree | SpecTree[], prefix: string): Tensor | Params | Params[] => {
    if (tree instanceof ParamSpec) {
      const t = tree.init(random.foldIn(key, hashName(prefix)), tree.shape, opts);
      if (!shapesEqual(t.shape, tree.shape)) throw new TensorError('init', `initializer of "${prefix}" returned the wrong shape`, [tree.shape, t.shape]);
      return t;
    }
    if (Array.isArray(tree)) return tree.map((t, i) => build(t, prefix ? `${prefix}.${i}` : String(i)) as Params);
    const out: Params = {};
    for (const [k, v] of Object.entries(tree)) out[k] = build(v, prefix ? `${prefix}.${k}` : k);
    return out;
  };
  return build(spec, '') as Params;
}

function formatSummary(rows: [string, readonly number[]][], title: string): string {
  const lines = rows.map(([n, s]) => [n, `[${s.join(', ')}]`, sizeOf(s).toLocaleString('en-US')]);
  const total = rows.reduce((a, [, s]) => a + sizeOf(s), 0);
  const head = ['parameter', 'shape', 'count'];
  const foot = ['total', `${rows.length} tensors`, total.toLocaleString('en-US')];
  const all = [head, ...lines, foot];
  const w = [0, 1, 2].map((c) => Math.max(...all.map((r) => r[c].length)));
  const fmt = (r: string[]) => `${r[0].padEnd(w[0])}  ${r[1].padEnd(w[1])}  ${r[2].padStart(w[2])}`;
  const rule = '-'.repeat(w[0] + w[1] + w[2] + 4);
  return [title, fmt(head), rule, ...lines.map(fmt), rule, fmt(foot)].join('\n');
}

/** A printable table of parameter names, shapes and counts (of a module's spec or of a parameter tree). */
export function summary(params: Params | Module<any>, title = 'parameters'): string {
  if (params instanceof Module) return params.summary();
  return formatSummary(namedParameters(params).map(([n, t]) => [n, t.shape]), title);
}

// ------------------------------ apply helpers --------------------------------

/** The tensor params[name], checked against the shape the module expects. */
export function getParam(params: Params, name: string, owner: string, shape?: readonly number[]): Tensor {
  const t = params?.[name];
  if (!(t instanceof Tensor)) {
    throw new TensorError(owner, `missing parameter "${name}"${shape ? ` of shape [${shape.join(', ')}]` : ''} (has: ${params ? Object.keys(params).join(', ') || 'nothing' : 'no params'})`);
  }
  if (shape && !shapesEqual(t.shape, shape)) throw new TensorError(owner, `parameter "${name}" has the wrong shape: expected [${shape.join(', ')}]`, [t.shape]);
  return t;
}

/** The nested parameters params[name] of a submodule. */
export function getChild(params: Params, name: string, owner: string): Params {
  const c = params?.[name];
  if (!c || c instanceof Tensor || Array.isArray(c) || typeof c !== 'object') {
    throw new TensorError(owner, `missing parameters of submodule "${name}" (has: ${params ? Object.keys(params).join(', ') || 'nothing' : 'no params'})`);
  }
  return c;
}

/**
 * The context for a submodule: same train flag, a key folded from the submodule's name,
 * so each dropout layer draws its own mask and the same ctx always gives the same masks.
 */
export function childCtx(ctx: Ctx | undefined, name: string | number): Ctx | undefined {
  if (!ctx) return ctx;
  return ctx.key ? { ...ctx, key: random.foldIn(ctx.key, hashName(String(name))) } : ctx;
}
