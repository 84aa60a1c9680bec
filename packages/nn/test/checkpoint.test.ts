import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as T from '@scm/tensor';
import { grad } from '@scm/autodiff';
import { CheckpointError, decodeSafetensors, encodeSafetensors, loadCheckpoint, saveCheckpoint } from '../src/checkpoint.js';
import { adam, clipByGlobalNorm, emaHalflife, schedules } from '../src/optim/index.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const repoRoot = resolve(here, '../../..');
let dir: string;

beforeAll(async () => {
  T.setBackend('reference');
  dir = await mkdtemp(join(tmpdir(), 'checkpoint-test-'));
});
afterAll(async () => {
  T.setBackend((process.env.TENSOR_BACKEND as T.BackendName) ?? 'webasm');
  await rm(dir, { recursive: true, force: true });
});

const values = (t: T.Tensor) => Array.from(t.dataSync());

function sampleState() {
  const params = {
    conv: { weight: T.tensor([[[[0.5, -1.25], [2, 3]]]]), bias: T.tensor([0.1]) },
    blocks: [{ w: T.tensor([1, 2, 3], { dtype: 'float64' }) }, { w: T.tensor([Math.PI, -0, 1e-300], { dtype: 'float64' }) }],
  };
  const opt = adam({ lr: 1e-3 }).init(params);
  return {
    params,
    opt,
    ema: { nimg: 1024, params: { scale: T.tensor([7], { dtype: 'float64' }) } },
    counts: T.tensor([1, -2, 2147483647], { dtype: 'int32' }),
    mask: T.tensor([true, false, true]),
    key: T.random.key(1234567890123),
    step: 42,
    note: 'hello',
    flag: true,
    nothing: null,
  };
}

describe('safetensors round trip', () => {
  test('tree, dtypes, keys and scalars come back identical', async () => {
    const state = sampleState();
    const file = join(dir, 'roundtrip.safetensors');
    await saveCheckpoint(file, state, { metadata: { purpose: 'test' } });
    const back = await loadCheckpoint(file);
    expect(Object.keys(back)).toEqual(Object.keys(state));
    expect(values(back.params.conv.weight)).toEqual(values(state.params.conv.weight));
    expect(back.params.conv.weight.shape).toEqual([1, 1, 2, 2]);
    expect(back.params.conv.weight.dtype).toBe('float32');
    expect(Array.isArray(back.params.blocks)).toBe(true);
    expect(values(back.params.blocks[1].w)).toEqual([Math.PI, -0, 1e-300]);
    expect(Object.is(back.params.blocks[1].w.dataSync()[1], -0)).toBe(true);
    expect(back.params.blocks[1].w.dtype).toBe('float64');
    expect(back.opt.step).toBe(0);
    expect(values(back.opt.mu.blocks[0].w)).toEqual([0, 0, 0]);
    expect(back.ema.nimg).toBe(1024);
    expect(values(back.counts)).toEqual([1, -2, 2147483647]);
    expect(back.counts.dtype).toBe('int32');
    expect(back.mask.dtype).toBe('bool');
    expect(values(back.mask)).toEqual([1, 0, 1]);
    expect(back.key).toBeInstanceOf(T.random.Key);
    expect(back.key.toJSON()).toEqual(state.key.toJSON());
    expect([back.step, back.note, back.flag, back.nothing]).toEqual([42, 'hello', true, null]);
    // Loading as float32 (for the GPU.js backends) converts only the floats.
    const f32 = await loadCheckpoint(file, { floatDtype: 'float32' });
    expect(f32.params.blocks[0].w.dtype).toBe('float32');
    expect(f32.counts.dtype).toBe('int32');
    T.dispose([state, back, f32]);
  });

  test('an independent reader parses the file per the format description', async () => {
    const state = sampleState();
    const file = join(dir, 'spec.safetensors');
    await saveCheckpoint(file, state);
    const bytes = await readFile(file);
    // 8-byte little-endian header length, then that many bytes of JSON.
    const n = Number(bytes.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0); // the header is padded so the data starts aligned
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
    const data = bytes.subarray(8 + n);
    const names = Object.keys(header).filter((k) => k !== '__metadata__').sort();
    expect(names).toEqual([
      'counts', 'ema.params.scale', 'mask',
      'opt.mu.blocks.0.w', 'opt.mu.blocks.1.w', 'opt.mu.conv.bias', 'opt.mu.conv.weight',
      'opt.nu.blocks.0.w', 'opt.nu.blocks.1.w', 'opt.nu.conv.bias', 'opt.nu.conv.weight',
      'params.blocks.0.w', 'params.blocks.1.w', 'params.conv.bias', 'params.conv.weight',
    ]);
    const itemSize: Record<string, number> = { F32: 4, F64: 8, I32: 4, BOOL: 1 };
    const read = (name: string): number[] => {
      const { dtype, shape, data_offsets: [b, e] } = header[name];
      const count = shape.reduce((a: number, d: number) => a * d, 1);
      expect(e - b).toBe(count * itemSize[dtype]);
      return Array.from({ length: count }, (_, i) => {
        const at = b + i * itemSize[dtype];
        return dtype === 'F32' ? data.readFloatLE(at) : dtype === 'F64' ? data.readDoubleLE(at) : dtype === 'I32' ? data.readInt32LE(at) : data[at];
      });
    };
    expect(header['params.conv.weight'].dtype).toBe('F32');
    expect(header['params.conv.weight'].shape).toEqual([1, 1, 2, 2]);
    expect(read('params.conv.weight')).toEqual([0.5, -1.25, 2, 3]);
    expect(header['params.blocks.1.w'].dtype).toBe('F64');
    expect(read('params.blocks.1.w')).toEqual([Math.PI, -0, 1e-300]);
    expect(read('counts')).toEqual([1, -2, 2147483647]);
    expect(header.mask.dtype).toBe('BOOL');
    expect(read('mask')).toEqual([1, 0, 1]);
    // The data buffer is covered exactly, without holes or overlaps.
    const spans = names.map((k) => header[k].data_offsets as [number, number]).sort((a, b) => a[0] - b[0]);
    let at = 0;
    for (const [b, e] of spans) {
      expect(b).toBe(at);
      at = e;
    }
    expect(at).toBe(data.length);
    // Metadata: a string map with the tree description and plain-text step.
    const meta = header.__metadata__;
    expect(Object.values(meta).every((v) => typeof v === 'string')).toBe(true);
    expect(meta.step).toBe('42');
    const tree = JSON.parse(meta['scm.tree']);
    expect(tree.params.conv.weight).toEqual({ $tensor: 'params.conv.weight' });
    expect(tree.key).toEqual({ $key: state.key.toJSON() });
    expect(tree.opt.step).toBe(0);
    T.dispose(state);
  });

  test('a foreign safetensors file (no tree description) loads nested by its dotted names', async () => {
    const bytes = encodeSafetensors([
      ['model.layer.weight', { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) }],
      ['model.bias', { dtype: 'float64', shape: [], data: new Float64Array([3]) }],
    ], { format: 'pt' });
    const file = join(dir, 'foreign.safetensors');
    await writeFile(file, bytes);
    const back = await loadCheckpoint(file);
    expect(values(back.model.layer.weight)).toEqual([1, 2]);
    expect(values(back.model.bias)).toEqual([3]);
    T.dispose(back);
  });
});

describe('cross-check with the Python safetensors package', () => {
  let python = false;
  try {
    execFileSync('python3', ['-c', 'import safetensors.numpy, numpy'], { stdio: 'ignore' });
    python = true;
  } catch {
    console.log('skipping the Python safetensors cross-check: python3 with safetensors and numpy is not installed');
  }
  test.runIf(python)('files we write load in Python, and files Python writes load here', async () => {
    const state = sampleState();
    const ours = join(dir, 'ours.safetensors');
    const theirs = join(dir, 'theirs.safetensors');
    await saveCheckpoint(ours, state);
    const script = `
import json, sys, numpy as np
from safetensors.numpy import load_file, save_file
from safetensors import safe_open
t = load_file(sys.argv[1])
with safe_open(sys.argv[1], 'np') as f: meta = f.metadata()
print(json.dumps({k: [str(v.dtype), list(v.shape), v.astype(np.float64).ravel().tolist()] for k, v in t.items()} | {'__step': meta['step']}))
save_file({'a.b': np.arange(6, dtype=np.float32).reshape(2, 3), 'c': np.array([1.5, -2.0])}, sys.argv[2], metadata={'note': 'py'})
`;
    const out = JSON.parse(execFileSync('python3', ['-c', script, ours, theirs]).toString());
    expect(out['params.conv.weight']).toEqual(['float32', [1, 1, 2, 2], [0.5, -1.25, 2, 3]]);
    expect(out['params.blocks.1.w'][0]).toBe('float64');
    expect(out.counts).toEqual(['int32', [3], [1, -2, 2147483647]]);
    expect(out.mask[0]).toBe('bool');
    expect(out.__step).toBe('42');
    const back = await loadCheckpoint(theirs);
    expect(back.a.b.toArraySync()).toEqual([[0, 1, 2], [3, 4, 5]]);
    expect(values(back.c)).toEqual([1.5, -2]);
    T.dispose([state, back]);
  });
});

describe('corrupt, truncated and wrong files give clear errors', () => {
  let good: Uint8Array;
  beforeAll(async () => {
    const state = sampleState();
    const file = join(dir, 'good.safetensors');
    await saveCheckpoint(file, state);
    good = await readFile(file);
    T.dispose(state);
  });

  const decode = (b: Uint8Array) => () => decodeSafetensors(b, 'x.safetensors');
  const withHeader = (h: object, data = new Uint8Array(0)) => {
    let text = JSON.stringify(h);
    text += ' '.repeat((8 - ((8 + text.length) % 8)) % 8);
    const b = Buffer.alloc(8 + text.length + data.length);
    b.writeBigUInt64LE(BigInt(text.length), 0);
    b.write(text, 8);
    b.set(data, 8 + text.length);
    return b;
  };

  test('truncation anywhere is detected', () => {
    const n = Number(Buffer.from(good).readBigUInt64LE(0));
    expect(decode(good.subarray(0, 5))).toThrow(/too short.*truncated/);
    expect(decode(good.subarray(0, 8 + Math.floor(n / 2)))).toThrow(/truncated/);
    expect(decode(good.subarray(0, good.length - 1))).toThrow(/truncated/);
    expect(decode(good.subarray(0, 8 + n))).toThrow(/truncated/);
    for (let cut = 8 + n; cut < good.length; cut += 7) expect(decode(good.subarray(0, cut))).toThrow(CheckpointError);
  });

  test('files of another kind and damaged headers', () => {
    const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
    expect(decode(png)).toThrow(/header length field says .*not a safetensors file/);
    expect(decode(Buffer.from('just some text that is not a checkpoint'))).toThrow(/not a safetensors file|truncated/);
    const notJson = withHeader({});
    notJson.write('{oops!!', 8);
    expect(decode(notJson)).toThrow(/not valid UTF-8 JSON/);
    expect(decode(withHeader({ a: { dtype: 'F99', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)))).toThrow(/unknown dtype "F99"/);
    expect(decode(withHeader({ a: { dtype: 'BF16', shape: [1], data_offsets: [0, 2] } }, new Uint8Array(2)))).toThrow(/supports F32, F64, I32 and BOOL/);
    expect(decode(withHeader({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)))).toThrow(/invalid shape/);
    expect(decode(withHeader({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4)))).toThrow(/needs 8 bytes but data_offsets span 4/);
    expect(decode(withHeader({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8)))).toThrow(/hole/);
    expect(decode(withHeader({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8)))).toThrow(/overlaps/);
    expect(decode(withHeader({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(12)))).toThrow(/trailing bytes/);
    expect(decode(withHeader({ __metadata__: { step: 3 } }))).toThrow(/must be a string/);
  });

  test('missing files and unsupported trees', async () => {
    await expect(loadCheckpoint(join(dir, 'absent.safetensors'))).rejects.toThrow(/cannot read .*absent\.safetensors \(ENOENT\)/);
    await expect(saveCheckpoint(join(dir, 'bad.safetensors'), { params: { 'a.b': T.zeros([1]) } })).rejects.toThrow(/without dots/);
    await expect(saveCheckpoint(join(dir, 'bad.safetensors'), { step: NaN })).rejects.toThrow(/only finite numbers/);
    await expect(saveCheckpoint(join(dir, 'bad.safetensors'), { when: new Date() })).rejects.toThrow(/is a Date/);
    expect((await readdir(dir)).filter((f) => f.startsWith('.bad'))).toEqual([]);
  });
});

describe('atomic saves', () => {
  test('a writer killed with SIGKILL mid-save leaves the previous checkpoint valid', async () => {
    const file = join(dir, 'killed.safetensors');
    const floats = 4_194_304; // 16 MiB per save in 64 tensors: long enough to be caught mid-write
    let leftTemp = false;
    const tempFiles = async () => (await readdir(dir)).filter((f) => f.startsWith('.killed.safetensors.') && f.endsWith('.tmp'));
    for (let attempt = 0; attempt < 4 && !leftTemp; attempt++) {
      const child = spawn(process.execPath, [join(here, 'fixtures/checkpoint-writer.mjs'), repoRoot, file, String(floats)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let saved = -1;
      let lastMs = 50;
      let killing = false;
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      // 'close' comes after the output is drained, so `saved` is final when it resolves.
      const exited = new Promise<string | null>((res) => child.on('close', (_code, signal) => res(signal)));
      await new Promise<void>((res, rej) => {
        let buf = '';
        child.stdout.on('data', (d) => {
          buf += d;
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const [what, k, ms] = buf.slice(0, nl).split(' ');
            buf = buf.slice(nl + 1);
            if (what === 'saved') [saved, lastMs] = [Number(k), Number(ms)];
            // After a few complete saves, kill once the next save's temporary file
            // exists, at a random point of its write.
            if (what === 'begin' && Number(k) >= 3 && !killing) {
              killing = true;
              (async () => {
                for (let i = 0; i < 2000 && !(await tempFiles()).length; i++) await new Promise((r) => setTimeout(r, 1));
                await new Promise((r) => setTimeout(r, Math.random() * Math.min(20, lastMs / 3)));
                child.kill('SIGKILL');
                res();
              })();
            }
          }
        });
        child.on('exit', (code) => (code !== null ? rej(new Error(`writer exited with code ${code}: ${stderr}`)) : undefined));
      });
      expect(await exited).toBe('SIGKILL');
      const back = await loadCheckpoint(file);
      // Either the last completed save, or the one in flight if its rename had already happened.
      expect([saved, saved + 1]).toContain(back.step);
      expect(back.params.w.length).toBe(64);
      for (const w of back.params.w as T.Tensor[]) {
        expect(w.size).toBe(floats / 64);
        expect((w.dataSync() as Float32Array).every((v) => v === back.step)).toBe(true);
      }
      expect(values(back.params.b).every((v) => v === back.step)).toBe(true);
      expect(back.key.toJSON()).toEqual(T.random.key(back.step).toJSON());
      T.dispose(back);
      const temps = await tempFiles();
      leftTemp = temps.length > 0;
      for (const t of temps) await rm(join(dir, t));
    }
    // At least one kill landed inside a write (its temporary file was left behind).
    expect(leftTemp).toBe(true);
  }, 120_000);
});

describe('resuming', () => {
  // A tiny training loop whose every input comes from the state: parameters, Adam
  // state, EMA, the RNG key (split each step to draw the batch) and the step count.
  type State = { params: { w: T.Tensor; b: T.Tensor }; opt: any; ema: any; key: T.random.Key; step: number };
  const opt = adam({ lr: schedules.warmupCosine(0.05, 3, 40) });
  const ema = emaHalflife({ halflifeKimg: 0.05, batchSize: 8 });
  const trueW = [1.5, -2, 0.5];

  function init(backend: T.BackendName): State {
    const dtype = backend === 'reference' ? 'float64' : 'float32';
    const params = { w: T.zeros([3], { dtype, backend }), b: T.zeros([1], { dtype, backend }) };
    return { params, opt: opt.init(params), ema: ema.init(params), key: T.random.key(7), step: 0 };
  }

  function train(s: State, steps: number, backend: T.BackendName): State {
    const dtype = backend === 'reference' ? 'float64' : 'float32';
    let { params, opt: os, ema: es, key } = s;
    for (let i = 0; i < steps; i++) {
      const [next, sub] = T.random.split(key);
      key = next;
      const x = T.random.normal(sub, [8, 3], { dtype, backend });
      const y = T.tidy(() => T.add(T.matmul(x, T.tensor(trueW, { dtype, backend })), 0.3));
      const loss = (p: State['params']) => T.mean(T.square(T.sub(T.add(T.matmul(x, p.w), p.b), y)));
      const g = grad(loss)(params);
      const { grads, norm } = clipByGlobalNorm(g, 1);
      ({ params, state: os } = opt.step(grads, os, params));
      es = ema.step(es, params);
      T.dispose([x, y, g, grads, norm]);
    }
    return { params, opt: os, ema: es, key, step: s.step + steps };
  }

  for (const backend of ['reference', 'webasm'] as const) {
    test(`N steps straight equal N/2, save, load, N/2 (${backend})`, async () => {
      const straight = train(init(backend), 20, backend);
      const half = train(init(backend), 10, backend);
      const file = join(dir, `resume-${backend}.safetensors`);
      await saveCheckpoint(file, half);
      T.dispose(half);
      const loaded = (await loadCheckpoint(file, { backend })) as State;
      expect(loaded.step).toBe(10);
      const resumed = train(loaded, 10, backend);
      expect(resumed.step).toBe(20);
      expect(resumed.key.toJSON()).toEqual(straight.key.toJSON());
      expect(resumed.opt.step).toBe(straight.opt.step);
      expect(resumed.ema.nimg).toBe(straight.ema.nimg);
      for (const [a, b] of [[resumed.params.w, straight.params.w], [resumed.params.b, straight.params.b], [resumed.opt.nu.w, straight.opt.nu.w], [resumed.ema.params.w, straight.ema.params.w]]) {
        expect(values(a)).toEqual(values(b));
      }
      // and training did something
      expect(values(straight.params.w).some((v) => v !== 0)).toBe(true);
      T.dispose([straight, resumed, loaded]);
    });
  }
});
