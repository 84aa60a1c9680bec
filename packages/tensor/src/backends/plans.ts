/**
 * Host plans: how the synchronous GPU.js backends (cpu, webasm) run the heavy primitives
 * (matmul and the three convolutions) fast.
 *
 * A plan packs its inputs into the layouts a fast kernel wants, runs GPU.js kernels, and
 * unpacks the result. Packing and unpacking are plain copies (a gather of values into a
 * new order, zeros for padding): every arithmetic operation happens inside GPU.js.
 *
 * Everything heavy reduces to one kernel, a matrix product C = A·B over packed operands
 * (`gemm` below). Why its shape is what it is, from how GPU.js 2.24 compiles kernels to
 * WebAssembly:
 *  - The SIMD path computes 4 neighbouring cells along thread.x at once. An array read
 *    whose index does not depend on thread.x is one scalar load; one that does is a
 *    4-lane gather (4 loads and lane inserts): the gather is the expensive part.
 *  - A kernel may return 4 values per cell. So each cell computes 4 rows of C for one
 *    column: per step of the reduction, 1 gather of B (4 columns, one per lane) and 4
 *    scalar loads of A feed 16 multiply-adds. With one value per cell, the same gather
 *    would feed 4.
 *  - Threads: a threaded GPU.js kernel returns a Promise, and the ops are synchronous. So
 *    a large call is split into parts over disjoint column tiles (or row blocks), run at
 *    once on the calling thread and on helper threads (threads.ts) that block-wait.
 *  - Declared locals become floats in GPU.js's wasm code (loop counters included); thread
 *    ids used inline and `x | 0` are integers. The kernel keeps two running offsets, one
 *    per operand, converts each once per step, and unrolls the reduction by 4.
 *  - The reduction walks B down a column tile: B is packed tile by tile ([tile][k][16
 *    columns]) so those reads are contiguous, not a 4 KiB stride per step that thrashes
 *    the cache for power-of-two widths. A is packed [row block][k][4 rows].
 *  - The kernel's output is cells x components; its order is undone by the unpacking.
 */

import { sharedFloats, type KernelPart } from './threads.js';

/** What a plan needs from the backend: running a GPU.js kernel synchronously. */
export interface KernelRunner {
  /**
   * Run the kernel `source` (compiled once per source and output grid, then cached) over
   * the grid `output` ([x, y, z], x fastest). Returns every cell's `components` values as
   * one flat array: cell after cell in grid order, a cell's components adjacent.
   */
  run(source: string, output: readonly number[], components: number, args: readonly Float32Array[]): Float32Array;
  /** How many parts a call can run in at the same time (1: no helper threads). */
  threads(): number;
  /** Run several parts at once, spread over the threads in groups; each part's cells as `run` returns them. */
  runParts(components: number, parts: readonly KernelPart[]): Float32Array[];
}

/** A primitive's fast path on the synchronous GPU.js backends. */
export interface HostPlan {
  /** Which variant runs, e.g. `gemm` (tests and benchmarks check the fast path is taken). */
  readonly variant: string;
  /** Compute the output (all of it, row-major) from the inputs' float32 buffers. */
  run(inputs: readonly Float32Array[], runner: KernelRunner): Float32Array;
}

/**
 * A matrix as an index map into a flat array: element (r, c) is
 * `data[offset + rows[r] + cols[c]]`. Row-major, transposed, batched and im2col views
 * (with a zero-padded source) are all of this form.
 */
export interface MatrixView {
  readonly data: Float32Array;
  readonly offset: number;
  readonly rows: Int32Array;
  readonly cols: Int32Array;
}

/** [start, start + stride, start + 2 stride, ...], n entries. */
export function strided(n: number, stride: number, start = 0): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = start + i * stride;
  return out;
}

/** A row-major m x n matrix at `offset` in `data`. */
export function rowMajor(data: Float32Array, m: number, n: number, offset = 0): MatrixView {
  return { data, offset, rows: strided(m, n), cols: strided(n, 1) };
}

/**
 * Whether a product of `work` multiply-adds with a reduction of length k runs packed: below
 * 2^15 multiply-adds packing does not pay, and reductions past 2^20 would take the kernel's
 * float offsets past 2^24, where they stop being exact. Others run the one-cell kernel.
 */
export function packedProductFits(work: number, k: number): boolean {
  return work >= 1 << 15 && k <= 1 << 20;
}

/** Reduction steps per loop iteration (the packed K is padded with zeros to a multiple). */
const UNROLL = 4;
/** Columns per tile of packed B. */
const TILE = 16;
/** Upper bound on one packed operand per kernel call, in floats (larger problems are split). */
const CHUNK_FLOATS = 1 << 22;
/** Multiply-adds per kernel call above which it is split over threads (a part then takes well over a thread's hand-off, ~0.1 ms). */
const SPLIT_WORK = 1 << 19;

/**
 * The gemm kernel's source for a reduction of length kp (a multiple of UNROLL) over
 * column tiles `tile` wide. Cell (x, y, z) computes rows 4y..4y+3 of column z*tile + x.
 * The running offsets `ra` (into packed A) and `rb` (into packed B) are floats, as every
 * GPU.js local is, exact below 2^24 (calls are kept below that); `| 0` turns them back
 * into integers once per step, so the reads index with integer arithmetic only.
 */
export function gemmSource(kp: number, tile: number): string {
  const lines = [
    'let s0 = 0.0; let s1 = 0.0; let s2 = 0.0; let s3 = 0.0;',
    `let ra = this.thread.y * ${4 * kp};`,
    `let rb = this.thread.z * ${kp * tile};`,
    `for (let p = 0; p < ${kp}; p += ${UNROLL}) {`,
  ];
  for (let u = 0; u < UNROLL; u++) {
    lines.push(`  const b${u} = b[this.thread.x + (rb | 0)${u ? ` + ${u * tile}` : ''}];`);
    for (let c = 0; c < 4; c++) lines.push(`  s${c} += a[(ra | 0)${4 * u + c ? ` + ${4 * u + c}` : ''}] * b${u};`);
  }
  lines.push(`  ra += ${4 * UNROLL};`, `  rb += ${UNROLL * tile};`, '}', 'return [s0, s1, s2, s3];');
  return `function (a, b) {\n${lines.join('\n')}\n}`;
}

/** The packing geometry of one M x K x N product. */
interface Geometry {
  kp: number;
  tile: number;
  /** Row blocks (of 4 rows) and column tiles, in all and per kernel call. */
  mb: number;
  nt: number;
  mbCall: number;
  ntCall: number;
}

function geometry(m: number, k: number, n: number): Geometry {
  const kp = Math.ceil(k / UNROLL) * UNROLL;
  // Narrow products get narrow tiles (a multiple of 4, the SIMD width) to waste less.
  const tile = Math.min(TILE, Math.ceil(n / 4) * 4);
  const mb = Math.ceil(m / 4), nt = Math.ceil(n / tile);
  // Split into equal calls (the last padded with zeros) so one compiled kernel serves all.
  const rowCalls = Math.ceil((mb * kp * 4) / CHUNK_FLOATS), colCalls = Math.ceil((nt * kp * tile) / CHUNK_FLOATS);
  return { kp, tile, mb, nt, mbCall: Math.ceil(mb / rowCalls), ntCall: Math.ceil(nt / colCalls) };
}

const scratchSlots: Float32Array[] = [];
const SCRATCH_MAX = 1 << 23;

/**
 * A zeroed array of `length` floats from a reusable slot (gemm uses slots 0 and 1). Packing
 * writes tens of megabytes per convolution; fresh arrays of that size cost page faults on
 * every call (measured: about as much as the packing itself), reused ones do not. Plans run
 * synchronously, one at a time, so a slot is never in use twice. Arrays above 2^23 floats
 * are not kept. The memory is shared, so helper threads read packed operands in place.
 */
export function scratch(slot: number, length: number): Float32Array {
  if (length > SCRATCH_MAX) return sharedFloats(length);
  let buffer = scratchSlots[slot];
  if (!buffer || buffer.length < length) {
    buffer = sharedFloats(Math.max(length, Math.min(SCRATCH_MAX, 2 * (buffer?.length ?? 0))));
    scratchSlots[slot] = buffer;
    return buffer.subarray(0, length);
  }
  return buffer.subarray(0, length).fill(0);
}

/** Rows row0.. of A packed as [row block][k][4 rows] into `out` (zeroed; padding stays 0). */
function packA(out: Float32Array, a: MatrixView, row0: number, rowsHere: number, k: number, kp: number): void {
  const { data, cols } = a;
  for (let r = 0; r < rowsHere; r++) {
    const src = a.offset + a.rows[row0 + r];
    let dst = (r >> 2) * kp * 4 + (r & 3);
    for (let p = 0; p < k; p++, dst += 4) out[dst] = data[src + cols[p]];
  }
}

/** Columns col0.. of B packed as [column tile][k][tile columns] into `out` (zeroed). */
function packB(out: Float32Array, b: MatrixView, col0: number, colsHere: number, k: number, kp: number, tile: number): void {
  const { data, rows, cols } = b;
  for (let t = 0; t * tile < colsHere; t++) {
    const j0 = col0 + t * tile, width = Math.min(tile, colsHere - t * tile);
    for (let p = 0; p < k; p++) {
      const src = b.offset + rows[p];
      const dst = (t * kp + p) * tile;
      for (let x = 0; x < width; x++) out[dst + x] = data[src + cols[j0 + x]];
    }
  }
}

/**
 * out := A·B for an m x k matrix A and a k x n matrix B, written through the view `out`
 * (only the m x n elements it maps are written). Large products run as several calls of
 * one compiled kernel, each on a chunk of rows and a chunk of columns.
 */
export function gemm(runner: KernelRunner, a: MatrixView, b: MatrixView, out: MatrixView, m: number, k: number, n: number): void {
  const g = geometry(m, k, n);
  const rowCalls = Math.ceil(g.mb / g.mbCall), colCalls = Math.ceil(g.nt / g.ntCall);
  const rowsPerCall = g.mbCall * 4, colsPerCall = g.ntCall * g.tile;
  const source = gemmSource(g.kp, g.tile);
  const ap = scratch(0, g.mbCall * g.kp * 4);
  for (let cc = 0; cc < colCalls; cc++) {
    const col0 = cc * colsPerCall;
    const bp = scratch(1, g.ntCall * g.kp * g.tile);
    packB(bp, b, col0, Math.min(colsPerCall, n - col0), k, g.kp, g.tile);
    for (let rc = 0; rc < rowCalls; rc++) {
      const row0 = rc * rowsPerCall;
      if (rowCalls > 1 || cc === 0) {
        if (rc > 0 || cc > 0) ap.fill(0);
        packA(ap, a, row0, Math.min(rowsPerCall, m - row0), k, g.kp);
      }
      // A part over tiles t0.. reads their slice of packed B; over row blocks, of packed A.
      runCall(runner, source, g, out, m, n, row0, col0, (t0, tiles) => [ap, bp.subarray(t0 * g.kp * g.tile, (t0 + tiles) * g.kp * g.tile)], (r0, blocks) => [ap.subarray(r0 * g.kp * 4, (r0 + blocks) * g.kp * 4), bp]);
    }
  }
}

/**
 * The same product with B read where it lies instead of packed: b(p, j) =
 * data[offset + rows[p] + cols[j]] inside the kernel. For a convolution's im2col view this
 * skips materializing a matrix 9 times the size of the image (and GPU.js's copy of it into
 * its memory); the kernel computes every cell with the same operations in the same order
 * as gemm's, so the results are the same bits. Per step, the lanes' read of B is one
 * gather either way; this one adds one scalar read of rows[p]. Measured on one thread, on
 * convolutions of the nano UNet's shapes: 10 to 20 % faster than packing plus the packed
 * kernel; with threads more, since packing ran on the calling thread alone. Needs
 * data.length < 2^24 (indices are float-exact); `gemmReadsInPlace` says when it applies.
 */
export function gemmInPlace(runner: KernelRunner, a: MatrixView, b: MatrixView, out: MatrixView, m: number, k: number, n: number): void {
  const g = geometry(m, k, n);
  const rowCalls = Math.ceil(g.mb / g.mbCall);
  const rowsPerCall = g.mbCall * 4;
  // Columns per call: the whole width unless one call's output would pass the chunk size.
  const colCalls = Math.ceil((g.mbCall * 4 * g.nt * g.tile) / CHUNK_FLOATS);
  const ntCall = Math.ceil(g.nt / colCalls), colsPerCall = ntCall * g.tile;
  const gc = { ...g, ntCall };
  const source = gemmInPlaceSource(k, g.kp, g.tile);
  const { rows, cols } = inPlaceOffsets(b, k, n, colCalls * colsPerCall);
  const ap = scratch(0, g.mbCall * g.kp * 4);
  for (let rc = 0; rc < rowCalls; rc++) {
    const row0 = rc * rowsPerCall;
    if (rc > 0) ap.fill(0);
    packA(ap, a, row0, Math.min(rowsPerCall, m - row0), k, g.kp);
    for (let cc = 0; cc < colCalls; cc++) {
      const col0 = cc * colsPerCall;
      const colsHere = (t0: number, tiles: number) => cols.subarray(col0 + t0 * g.tile, col0 + (t0 + tiles) * g.tile);
      runCall(runner, source, gc, out, m, n, row0, col0, (t0, tiles) => [ap, b.data, rows, colsHere(t0, tiles)], (r0, blocks) => [ap.subarray(r0 * g.kp * 4, (r0 + blocks) * g.kp * 4), b.data, rows, colsHere(0, ntCall)]);
    }
  }
}

/** One product of a batch: A, B and out as views. */
export interface BatchItem {
  readonly a: MatrixView;
  readonly b: MatrixView;
  readonly out: MatrixView;
}

/**
 * Independent products of one shape (a batch) at once, each product whole in one kernel
 * call, the calls spread over the threads in groups: for batches of small products (an
 * attention's), which split one by one would pay a hand-off each. B is read in place.
 * Returns false, having done nothing, when a product does not fit one call or B is too
 * large to read in place (the caller then runs the products one by one).
 */
export function gemmInPlaceBatch(runner: KernelRunner, items: readonly BatchItem[], m: number, k: number, n: number): boolean {
  const g = geometry(m, k, n);
  const aFloats = g.mb * g.kp * 4;
  if (aFloats > CHUNK_FLOATS || g.mb * 4 * g.nt * g.tile > CHUNK_FLOATS || !items.every((it) => gemmReadsInPlace(it.b))) return false;
  const whole = { ...g, mbCall: g.mb, ntCall: g.nt };
  const source = gemmInPlaceSource(k, g.kp, g.tile);
  const ap = scratch(0, items.length * aFloats);
  const parts = items.map((it, i) => {
    const a = ap.subarray(i * aFloats, (i + 1) * aFloats);
    packA(a, it.a, 0, m, k, g.kp);
    const { rows, cols } = inPlaceOffsets(it.b, k, n, g.nt * g.tile);
    return { source, output: [g.tile, g.mb, g.nt], args: [a, it.b.data, rows, cols] };
  });
  const cells = runner.runParts(4, parts);
  items.forEach((it, i) => unpack(cells[i], it.out, m, n, 0, 0, whole));
  return true;
}

/**
 * B's row and column offsets as the in-place kernel reads them (floats, exact below 2^24),
 * the row offsets with the view's offset added. Columns past n (the last tile's padding)
 * read column 0: valid, and never unpacked.
 */
function inPlaceOffsets(b: MatrixView, k: number, n: number, colsLength: number): { rows: Float32Array; cols: Float32Array } {
  const rows = new Float32Array(k);
  for (let p = 0; p < k; p++) rows[p] = b.offset + b.rows[p];
  const cols = new Float32Array(colsLength);
  for (let j = 0; j < n; j++) cols[j] = b.cols[j];
  return { rows, cols };
}

/** Whether gemmInPlace can read `b` where it lies (its indices are float-exact). */
export function gemmReadsInPlace(b: MatrixView): boolean {
  return b.data.length < 1 << 24;
}

/**
 * gemmInPlace's kernel: gemmSource's, with B's read `data[cj + rows[p]]`, where cj (this
 * cell's column offset) is read once. The reduction runs over k exactly, unrolled by 4 with
 * the remainder after (packed A's padding is never read): padding B with zeros, as gemm
 * does, is not possible in place, and an Inf or NaN under a zero of A would give NaN.
 */
export function gemmInPlaceSource(k: number, kp: number, tile: number): string {
  const k4 = Math.floor(k / UNROLL) * UNROLL;
  const off = (base: string, d: number) => (d ? `${base} + ${d}` : base);
  const lines = [
    'let s0 = 0.0; let s1 = 0.0; let s2 = 0.0; let s3 = 0.0;',
    `let ra = this.thread.y * ${4 * kp};`,
    `const cj = cols[this.thread.z * ${tile} + this.thread.x];`,
    `for (let p = 0; p < ${k4}; p += ${UNROLL}) {`,
  ];
  for (let u = 0; u < UNROLL; u++) {
    lines.push(`  const b${u} = data[cj + rows[${off('(p | 0)', u)}]];`);
    for (let c = 0; c < 4; c++) lines.push(`  s${c} += a[${off('(ra | 0)', 4 * u + c)}] * b${u};`);
  }
  lines.push(`  ra += ${4 * UNROLL};`, '}');
  if (k > k4) {
    lines.push(`for (let p = ${k4}; p < ${k}; p++) {`, '  const b = data[cj + rows[p | 0]];');
    for (let c = 0; c < 4; c++) lines.push(`  s${c} += a[${off('(ra | 0)', c)}] * b;`);
    lines.push('  ra += 4;', '}');
  }
  lines.push('return [s0, s1, s2, s3];');
  return `function (a, data, rows, cols) {\n${lines.join('\n')}\n}`;
}

/**
 * One kernel call (the grid of `g`: tiles x row blocks x column tiles) and the unpacking of
 * its cells into out. Large calls run as parts over disjoint column tiles, or row blocks
 * when there are too few tiles, one part per thread; `tileArgs(t0, tiles)` and
 * `rowArgs(r0, blocks)` give a part's kernel arguments.
 */
function runCall(
  runner: KernelRunner,
  source: string,
  g: Geometry,
  out: MatrixView,
  m: number,
  n: number,
  row0: number,
  col0: number,
  tileArgs: (t0: number, tiles: number) => Float32Array[],
  rowArgs: (r0: number, blocks: number) => Float32Array[],
): void {
  const threads = runner.threads();
  const byTiles = g.ntCall >= threads;
  const units = byTiles ? g.ntCall : g.mbCall;
  if (threads < 2 || units < 2 || g.mbCall * 4 * g.ntCall * g.tile * g.kp < SPLIT_WORK) {
    unpack(runner.run(source, [g.tile, g.mbCall, g.ntCall], 4, tileArgs(0, g.ntCall)), out, m, n, row0, col0, g);
    return;
  }
  const per = Math.ceil(units / Math.min(threads, units));
  const parts: (KernelPart & { row0: number; col0: number; geometry: Geometry })[] = [];
  for (let u0 = 0; u0 < units; u0 += per) {
    const count = Math.min(per, units - u0);
    if (byTiles) {
      parts.push({ source, output: [g.tile, g.mbCall, count], args: tileArgs(u0, count), row0, col0: col0 + u0 * g.tile, geometry: { ...g, ntCall: count } });
    } else {
      parts.push({ source, output: [g.tile, count, g.ntCall], args: rowArgs(u0, count), row0: row0 + u0 * 4, col0, geometry: { ...g, mbCall: count } });
    }
  }
  const cells = runner.runParts(4, parts);
  parts.forEach((p, i) => unpack(cells[i], out, m, n, p.row0, p.col0, p.geometry));
}

/** Scatter one call's cells (x: column in tile, y: row block, z: tile; 4 rows each) into out. */
function unpack(cells: Float32Array, out: MatrixView, m: number, n: number, row0: number, col0: number, g: Geometry): void {
  const { data, rows, cols } = out;
  for (let z = 0; z < g.ntCall; z++) {
    const c0 = col0 + z * g.tile;
    const width = Math.min(g.tile, n - c0);
    if (width <= 0) break;
    for (let y = 0; y < g.mbCall; y++) {
      for (let c = 0; c < 4; c++) {
        const row = row0 + y * 4 + c;
        if (row >= m) break;
        const dst = out.offset + rows[row];
        let src = ((z * g.mbCall + y) * g.tile) * 4 + c;
        for (let x = 0; x < width; x++, src += 4) data[dst + cols[c0 + x]] = cells[src];
      }
    }
  }
}
