/**
 * A small reader for tar archives (POSIX ustar, with GNU long names and pax path
 * records), and for gzip-compressed ones through zlib. Enough to read datasets shipped
 * as .tar.gz without unpacking them; it reads regular files and skips everything else.
 */
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import { DataError } from './errors.js';

const BLOCK = 512;

export interface TarEntry {
  /** Path inside the archive ('/'-separated, as stored). */
  name: string;
  /** '0' regular file, '5' directory, ... (the ustar typeflag; '\0' is stored as '0'). */
  type: string;
  size: number;
  /** The file's bytes (a view into the archive buffer). */
  data: Uint8Array;
}

function text(b: Uint8Array, start: number, len: number): string {
  let end = start;
  while (end < start + len && b[end] !== 0) end++;
  return Buffer.from(b.buffer, b.byteOffset + start, end - start).toString('utf8');
}

/** A numeric header field: octal text, or GNU's base-256 when the high bit is set. */
function number(b: Uint8Array, start: number, len: number, what: string, offset: number): number {
  if (b[start] & 0x80) {
    let v = b[start] & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + b[start + i];
    return v;
  }
  const s = text(b, start, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new DataError('tar', `the ${what} field of the header at offset ${offset} is ${JSON.stringify(s)}, not an octal number (not a tar archive, or corrupt)`);
  return parseInt(s, 8);
}

function checksumOk(b: Uint8Array, at: number): boolean {
  const stored = number(b, at + 148, 8, 'checksum', at);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : b[at + i];
  return sum === stored;
}

const isZeroBlock = (b: Uint8Array, at: number) => b.subarray(at, at + BLOCK).every((v) => v === 0);

/** The pax records "len key=value\n" of an extended header. */
function paxRecords(data: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  const s = Buffer.from(data.buffer, data.byteOffset, data.length).toString('utf8');
  let i = 0;
  while (i < s.length) {
    const sp = s.indexOf(' ', i);
    const len = parseInt(s.slice(i, sp), 10);
    if (!(sp > i && len > 0)) break;
    const rec = s.slice(sp + 1, i + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return out;
}

/** Every entry of an uncompressed tar archive, in order. */
export function readTar(archive: Uint8Array): TarEntry[] {
  const entries: TarEntry[] = [];
  if (archive.length < BLOCK) throw new DataError('tar', `the archive has ${archive.length} bytes, less than one ${BLOCK}-byte header (truncated or not a tar archive)`);
  let at = 0;
  let longName: string | null = null;
  let paxPath: string | null = null;
  while (at + BLOCK <= archive.length) {
    if (isZeroBlock(archive, at)) return entries; // end-of-archive marker
    if (!checksumOk(archive, at)) throw new DataError('tar', `header checksum mismatch at offset ${at} (not a tar archive, or corrupt)`);
    const size = number(archive, at + 124, 12, 'size', at);
    const type = String.fromCharCode(archive[at + 156] || 0x30);
    const magic = text(archive, at + 257, 6);
    const prefix = magic.startsWith('ustar') ? text(archive, at + 345, 155) : '';
    const stored = text(archive, at, 100);
    const start = at + BLOCK;
    if (start + size > archive.length) {
      throw new DataError('tar', `entry "${prefix ? `${prefix}/` : ''}${stored}" needs ${size} bytes at offset ${start} but the archive ends at ${archive.length} (truncated)`);
    }
    const data = archive.subarray(start, start + size);
    at = start + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'L') {
      longName = text(data, 0, data.length);
      continue;
    }
    if (type === 'x') {
      paxPath = paxRecords(data).get('path') ?? null;
      continue;
    }
    if (type === 'g') continue;
    const name = paxPath ?? longName ?? (prefix ? `${prefix}/${stored}` : stored);
    longName = paxPath = null;
    entries.push({ name, type, size, data });
  }
  if (at !== archive.length) throw new DataError('tar', `the archive ends inside a header at offset ${at} (truncated)`);
  return entries;
}

const gunzipAsync = promisify(gunzip);

/** Decompress gzip data, with a clear error for corrupt or truncated input. */
export async function gunzipBytes(bytes: Uint8Array, what: string): Promise<Uint8Array> {
  if (bytes.length < 2 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) throw new DataError('gzip', `${what} is not gzip data (it does not start with the gzip magic bytes 1f 8b)`);
  try {
    return await gunzipAsync(bytes);
  } catch (e) {
    throw new DataError('gzip', `${what} could not be decompressed (${(e as Error).message}): the file is corrupt or truncated`);
  }
}

/** The regular files of a .tar.gz archive. */
export async function readTarGz(bytes: Uint8Array, what: string): Promise<TarEntry[]> {
  return readTar(await gunzipBytes(bytes, what)).filter((e) => e.type === '0' || e.type === '7');
}

/** Write a ustar archive of regular files (for tests and fixtures). */
export function writeTar(files: readonly { name: string; data: Uint8Array }[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const f of files) {
    if (Buffer.byteLength(f.name) > 100) throw new DataError('tar', `name "${f.name}" is longer than 100 bytes (writeTar writes plain ustar headers only)`);
    const h = new Uint8Array(BLOCK);
    const put = (s: string, off: number) => h.set(Buffer.from(s, 'utf8'), off);
    put(f.name, 0);
    put('0000644\0', 100);
    put('0000000\0', 108);
    put('0000000\0', 116);
    put(`${f.data.length.toString(8).padStart(11, '0')}\0`, 124);
    put('00000000000\0', 136);
    h[156] = 0x30;
    put('ustar\0', 257);
    put('00', 263);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
    put(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    parts.push(h, f.data, new Uint8Array((BLOCK - (f.data.length % BLOCK)) % BLOCK));
  }
  parts.push(new Uint8Array(2 * BLOCK));
  return Buffer.concat(parts);
}
