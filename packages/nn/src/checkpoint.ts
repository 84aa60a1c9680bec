/**
 * Checkpoints in the safetensors format (https://github.com/huggingface/safetensors):
 *
 *   [8 bytes]  N, the header length, unsigned little-endian
 *   [N bytes]  a JSON object, padded with spaces to a multiple of 8:
 *              { "<name>": { "dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end] },
 *                ..., "__metadata__": { "<key>": "<string>", ... } }
 *   [rest]     the tensor bytes, row-major little-endian; offsets are relative to the
 *              start of this buffer, which they cover exactly, without holes or overlap.
 *
 * A checkpoint is any tree of named parts, typically
 *   { params, opt: optimizerState, ema: emaState, key, step }.
 * Every tensor leaf is stored under its dotted path: `params.conv1.weight`,
 * `opt.mu.conv1.weight`, `ema.params.conv1.weight`, `blocks.0.w` for array elements.
 * Everything else (numbers such as `step`, `opt.step` and `ema.nimg`, strings, booleans,
 * null, random keys) lives in `__metadata__["scm.tree"]`: a JSON copy of the tree in
 * which each tensor is replaced by {"$tensor": "<its name>"} and each key by
 * {"$key": [k0, k1]} (its two 32-bit words), so loading rebuilds the same tree, arrays
 * included. Other metadata entries are free-form strings (`step` is also written as
 * plain text for other readers).
 *
 * Saving is atomic: the bytes go to a temporary file in the same directory, which is
 * flushed to disk (fsync) and then renamed over the target, and the directory entry is
 * flushed too. A crash at any point leaves either the previous checkpoint or the new one.
 */
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { endianness } from 'node:os';
import { Tensor, TensorError, fromArray, random, type BackendName, type DType, type TypedArray } from '@scm/tensor';

export class CheckpointError extends TensorError {
  constructor(op: string, message: string) {
    super(op, message);
    this.name = 'CheckpointError';
  }
}

const DTYPES: Record<DType, { name: string; bytes: number }> = {
  float32: { name: 'F32', bytes: 4 },
  float64: { name: 'F64', bytes: 8 },
  int32: { name: 'I32', bytes: 4 },
  bool: { name: 'BOOL', bytes: 1 },
};
const FROM_NAME = new Map(Object.entries(DTYPES).map(([d, v]) => [v.name, d as DType]));
/** Every dtype name the format defines (we read and write the first four). */
const KNOWN = new Set(['F32', 'F64', 'I32', 'BOOL', 'F16', 'BF16', 'I8', 'U8', 'I16', 'U16', 'U32', 'I64', 'U64', 'F8_E4M3', 'F8_E5M2']);
const MAX_HEADER = 100 * 1024 * 1024;
const TREE_KEY = 'scm.tree';

if (endianness() !== 'LE') throw new CheckpointError('checkpoint', 'safetensors is little-endian; this reader and writer assume a little-endian machine');

// ------------------------------ host-side format -------------------------------

export interface HostTensor {
  dtype: DType;
  shape: number[];
  data: TypedArray;
}

export interface SafetensorsFile {
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string>;
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function toBytes(data: TypedArray, dtype: DType): Uint8Array {
  const typed = dtype === 'bool' ? Uint8Array.from(data, (v) => (v ? 1 : 0)) : data;
  return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
}

/** The header (length prefix and padded JSON) for tensors in the given order. */
function encodeHeader(entries: readonly [string, HostTensor][], metadata: Record<string, string>): { header: Uint8Array; total: number } {
  const json: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of entries) {
    const n = sizeOf(t.shape) * DTYPES[t.dtype].bytes;
    json[name] = { dtype: DTYPES[t.dtype].name, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  if (Object.keys(metadata).length) json.__metadata__ = metadata;
  let text = JSON.stringify(json);
  text += ' '.repeat((8 - ((8 + Buffer.byteLength(text)) % 8)) % 8);
  const body = Buffer.from(text, 'utf8');
  const header = new Uint8Array(8 + body.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(body.length), true);
  header.set(body, 8);
  return { header, total: header.length + offset };
}

/** Serialize host tensors to safetensors bytes. */
export function encodeSafetensors(tensors: Map<string, HostTensor> | readonly [string, HostTensor][], metadata: Record<string, string> = {}): Uint8Array {
  const entries = [...tensors];
  const { header, total } = encodeHeader(entries, metadata);
  const out = new Uint8Array(total);
  out.set(header, 0);
  let at = header.length;
  for (const [, t] of entries) {
    const b = toBytes(t.data, t.dtype);
    out.set(b, at);
    at += b.length;
  }
  return out;
}

/** Parse and validate safetensors bytes; `what` names the source in errors. */
export function decodeSafetensors(bytes: Uint8Array, what = 'safetensors data'): SafetensorsFile {
  const fail = (msg: string): never => {
    throw new CheckpointError('safetensors', `${what}: ${msg}`);
  };
  if (bytes.length < 8) fail(`${bytes.length} bytes is too short for the 8-byte header length (truncated or not a safetensors file)`);
  const n64 = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER)) fail(`the header length field says ${n64} bytes, more than the ${MAX_HEADER}-byte limit (not a safetensors file, or corrupt)`);
  const n = Number(n64);
  if (8 + n > bytes.length) fail(`the header needs ${n} bytes but the file has only ${bytes.length - 8} after the length field (truncated)`);
  if (n < 2 || bytes[8] !== 0x7b) fail('the header does not start with "{" (not a safetensors file)');
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    fail(`the header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) fail('the header is not a JSON object');
  const buffer = bytes.subarray(8 + n);
  const metadata: Record<string, string> = {};
  const spans: [number, number, string][] = [];
  const tensors = new Map<string, HostTensor>();
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (!entry || typeof entry !== 'object' || Array.isArray(entry)) fail('__metadata__ must be an object of strings');
      for (const [k, v] of Object.entries(entry as object)) {
        if (typeof v !== 'string') fail(`__metadata__["${k}"] must be a string, got ${typeof v}`);
        metadata[k] = v;
      }
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!e || typeof e !== 'object') fail(`tensor "${name}" has no dtype/shape/data_offsets entry`);
    if (typeof e.dtype !== 'string' || !KNOWN.has(e.dtype)) fail(`tensor "${name}" has unknown dtype ${JSON.stringify(e.dtype)}`);
    const dtype = FROM_NAME.get(e.dtype as string);
    if (!dtype) fail(`tensor "${name}" has dtype ${e.dtype}; this reader supports F32, F64, I32 and BOOL`);
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`tensor "${name}" has an invalid shape ${JSON.stringify(shape)} (expected a list of non-negative integers)`);
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isInteger(d) && d >= 0) || offs[0] > offs[1]) {
      fail(`tensor "${name}" has invalid data_offsets ${JSON.stringify(offs)} (expected [begin, end] with 0 <= begin <= end)`);
    }
    const [begin, end] = offs as [number, number];
    const want = sizeOf(shape as number[]) * DTYPES[dtype!].bytes;
    if (end - begin !== want) fail(`tensor "${name}" of shape [${shape}] and dtype ${e.dtype} needs ${want} bytes but data_offsets span ${end - begin}`);
    if (end > buffer.length) fail(`tensor "${name}" ends at byte ${end} of the data but the data has only ${buffer.length} bytes (truncated)`);
    spans.push([begin, end, name]);
    // Copy (a Buffer's slice is a view; the bytes may not be aligned for a typed array).
    const copy = new Uint8Array(bytes.subarray(8 + n + begin, 8 + n + end)).buffer;
    const data = dtype === 'float32' ? new Float32Array(copy) : dtype === 'float64' ? new Float64Array(copy) : dtype === 'int32' ? new Int32Array(copy) : new Uint8Array(copy);
    if (dtype === 'bool' && data.some((v) => v > 1)) fail(`tensor "${name}" is BOOL but holds bytes other than 0 and 1`);
    tensors.set(name, { dtype: dtype!, shape: shape as number[], data });
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let covered = 0;
  for (const [begin, end, name] of spans) {
    if (begin !== covered) fail(begin > covered ? `the data has a hole before tensor "${name}" (bytes ${covered}-${begin} belong to no tensor)` : `tensor "${name}" overlaps the tensor before it`);
    covered = end;
  }
  if (covered !== buffer.length) fail(`the tensors cover ${covered} bytes of data but the file has ${buffer.length} (${covered < buffer.length ? 'trailing bytes: corrupt' : 'truncated'})`);
  return { tensors, metadata };
}

// ------------------------------ trees <-> named tensors ------------------------------

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Split a tree into named tensors and a JSON skeleton that refers to them by name. */
function describe(tree: unknown, prefix: string, out: [string, Tensor][]): Json {
  if (tree instanceof Tensor) {
    if (tree.trace) throw new CheckpointError('saveCheckpoint', `"${prefix}" is a traced tensor (save concrete values, outside transforms)`);
    out.push([prefix, tree]);
    return { $tensor: prefix };
  }
  if (tree instanceof random.Key) return { $key: [tree.k0, tree.k1] };
  if (Array.isArray(tree)) return tree.map((t, i) => describe(t, prefix ? `${prefix}.${i}` : String(i), out));
  if (tree && typeof tree === 'object') {
    if (Object.getPrototypeOf(tree) !== Object.prototype) throw new CheckpointError('saveCheckpoint', `"${prefix}" is a ${tree.constructor?.name ?? 'non-plain object'}; checkpoints hold tensors, keys, numbers, strings, booleans, null, and plain objects and arrays of them`);
    const obj: Record<string, Json> = {};
    for (const [k, v] of Object.entries(tree)) {
      if (k.includes('.') || k.startsWith('$') || k === '') throw new CheckpointError('saveCheckpoint', `name "${k}" in "${prefix}" must be non-empty, without dots and not start with "$"`);
      obj[k] = describe(v, prefix ? `${prefix}.${k}` : k, out);
    }
    return obj;
  }
  if (typeof tree === 'number') {
    if (!Number.isFinite(tree)) throw new CheckpointError('saveCheckpoint', `"${prefix}" is ${tree}; only finite numbers can be saved`);
    return tree;
  }
  if (tree === null || typeof tree === 'string' || typeof tree === 'boolean') return tree;
  throw new CheckpointError('saveCheckpoint', `"${prefix}" is ${tree === undefined ? 'undefined' : `a ${typeof tree}`}, which a checkpoint cannot hold`);
}

function rebuild(skel: Json, make: (name: string) => Tensor, what: string): unknown {
  if (Array.isArray(skel)) return skel.map((s) => rebuild(s, make, what));
  if (skel && typeof skel === 'object') {
    if (typeof skel.$tensor === 'string') return make(skel.$tensor);
    if (Array.isArray(skel.$key) && skel.$key.length === 2 && skel.$key.every((w) => Number.isInteger(w) && (w as number) >= 0 && (w as number) < 2 ** 32)) {
      return new random.Key(skel.$key[0] as number, skel.$key[1] as number);
    }
    if (Object.keys(skel).some((k) => k.startsWith('$'))) throw new CheckpointError('loadCheckpoint', `${what}: malformed entry ${JSON.stringify(skel).slice(0, 80)} in ${TREE_KEY}`);
    return Object.fromEntries(Object.entries(skel).map(([k, v]) => [k, rebuild(v, make, what)]));
  }
  return skel;
}

/** Nested plain objects from dotted names (for files without our tree description). */
function nestByName(names: readonly string[], make: (name: string) => Tensor): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const name of names) {
    const parts = name.split('.');
    let node = root;
    parts.slice(0, -1).forEach((p) => {
      if (!(node[p] && typeof node[p] === 'object' && !(node[p] instanceof Tensor))) node[p] = {};
      node = node[p] as Record<string, unknown>;
    });
    node[parts[parts.length - 1]] = make(name);
  }
  return root;
}

// ------------------------------ files ------------------------------

export interface SaveOptions {
  /** Extra `__metadata__` strings (the key "scm.tree" is reserved). */
  metadata?: Record<string, string>;
}

/** The tensors of a checkpoint tree, read back to the host, and its metadata. */
export async function checkpointContents(tree: Record<string, unknown>, opts: SaveOptions = {}): Promise<{ entries: [string, HostTensor][]; metadata: Record<string, string> }> {
  if (!tree || typeof tree !== 'object' || Array.isArray(tree)) throw new CheckpointError('saveCheckpoint', 'the checkpoint must be a plain object of named parts ({ params, opt, ema, key, step, ... })');
  const named: [string, Tensor][] = [];
  const skeleton = describe(tree, '', named);
  const metadata: Record<string, string> = { ...(opts.metadata ?? {}) };
  if (TREE_KEY in metadata) throw new CheckpointError('saveCheckpoint', `metadata key "${TREE_KEY}" is reserved`);
  for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') throw new CheckpointError('saveCheckpoint', `metadata["${k}"] must be a string`);
  metadata[TREE_KEY] = JSON.stringify(skeleton);
  if (typeof tree.step === 'number') metadata.step ??= String(tree.step);
  const entries: [string, HostTensor][] = [];
  for (const [name, t] of named) entries.push([name, { dtype: t.dtype, shape: [...t.shape], data: await t.data() }]);
  return { entries, metadata };
}

/**
 * Write a checkpoint atomically (temporary file in the same directory, fsync, rename,
 * fsync of the directory). Tensors are read back with `await t.data()`, so any backend works.
 */
export async function saveCheckpoint(path: string, tree: Record<string, unknown>, opts: SaveOptions = {}): Promise<void> {
  const { entries, metadata } = await checkpointContents(tree, opts);
  const { header } = encodeHeader(entries, metadata);
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Date.now().toString(36)}${Math.floor(Math.random() * 1e9).toString(36)}.tmp`);
  const fh = await open(tmp, 'wx');
  try {
    await fh.write(header);
    for (const [, t] of entries) {
      const bytes = toBytes(t.data, t.dtype);
      // Write in slices so one huge tensor does not need one huge write call.
      for (let at = 0; at < bytes.length; at += 1 << 24) await fh.write(bytes.subarray(at, Math.min(at + (1 << 24), bytes.length)));
    }
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

export interface LoadOptions {
  backend?: BackendName;
  /** Convert float tensors to this dtype (e.g. float32 to load an F64 file on a GPU.js backend). */
  floatDtype?: 'float32' | 'float64';
}

/** Rebuild a checkpoint tree from decoded safetensors contents. */
export function checkpointFromContents(file: SafetensorsFile, opts: LoadOptions = {}, what = 'checkpoint'): Record<string, unknown> {
  const used = new Set<string>();
  const make = (name: string): Tensor => {
    const t = file.tensors.get(name);
    if (!t) throw new CheckpointError('loadCheckpoint', `${what}: ${TREE_KEY} refers to tensor "${name}", which the file does not contain`);
    used.add(name);
    const dtype = opts.floatDtype && (t.dtype === 'float32' || t.dtype === 'float64') ? opts.floatDtype : t.dtype;
    return fromArray(t.data, t.shape, { dtype, backend: opts.backend });
  };
  const treeText = file.metadata[TREE_KEY];
  if (treeText === undefined) return nestByName([...file.tensors.keys()], make);
  let skel: Json;
  try {
    skel = JSON.parse(treeText);
  } catch (e) {
    throw new CheckpointError('loadCheckpoint', `${what}: ${TREE_KEY} is not valid JSON (${(e as Error).message})`);
  }
  const tree = rebuild(skel, make, what) as Record<string, unknown>;
  const unused = [...file.tensors.keys()].filter((k) => !used.has(k));
  if (unused.length) throw new CheckpointError('loadCheckpoint', `${what}: tensors ${unused.slice(0, 5).join(', ')} are not part of ${TREE_KEY} (the file was changed by another tool?)`);
  return tree;
}

/**
 * Load a checkpoint written by saveCheckpoint (the same tree back, tensors on `backend`),
 * or any safetensors file (then a tree nested by the dotted names). Corrupt, truncated
 * and foreign files give a CheckpointError saying what is wrong.
 */
export async function loadCheckpoint(path: string, opts: LoadOptions = {}): Promise<Record<string, any>> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new CheckpointError('loadCheckpoint', `cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return checkpointFromContents(decodeSafetensors(bytes, path), opts, path);
}

/** The metadata of a checkpoint file without materializing its tensors. */
export async function readCheckpointMetadata(path: string): Promise<Record<string, string>> {
  return decodeSafetensors(await readFile(path), path).metadata;
}
