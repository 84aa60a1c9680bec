import type { Backend, BackendName } from '../backend.js';
import { TensorError } from '../errors.js';
import { GpuJsBackend } from './gpujs.js';
import { ReferenceBackend } from './reference.js';

const NAMES: readonly BackendName[] = ['reference', 'cpu', 'webasm', 'webgpu'];
const instances = new Map<BackendName, Backend>();
let current: BackendName | null = null;
let webgpuReady = false;

/** The backend instance for a name: one per process, created on first use. */
export function getBackendInstance(name: BackendName): Backend {
  if (!NAMES.includes(name)) throw new TensorError('backend', `unknown backend "${name}" (expected one of ${NAMES.join(', ')})`);
  let b = instances.get(name);
  if (!b) {
    if (name === 'webgpu' && !webgpuReady) {
      throw new TensorError('backend', 'the webgpu backend needs `await initWebGPU()` first (it looks for an adapter)');
    }
    b = name === 'reference' ? new ReferenceBackend() : GpuJsBackend.create(name);
    instances.set(name, b);
  }
  return b;
}

/** Select the default backend for new tensors. Default: $TENSOR_BACKEND, else webasm. */
export function setBackend(name: BackendName): void {
  getBackendInstance(name);
  current = name;
}

export function getBackend(): Backend {
  if (!current) {
    const env = (process.env.TENSOR_BACKEND ?? 'webasm') as BackendName;
    if (!NAMES.includes(env)) throw new TensorError('backend', `TENSOR_BACKEND="${env}" is not a backend (expected one of ${NAMES.join(', ')})`);
    current = env;
  }
  return getBackendInstance(current);
}

/**
 * Make WebGPU available in Node through the `webgpu` package (Dawn) and check that an
 * adapter answers. Returns false when none does (e.g. no GPU and no software Vulkan).
 */
export async function initWebGPU(): Promise<boolean> {
  if (webgpuReady) return true;
  const g = globalThis as unknown as { navigator?: { gpu?: { requestAdapter(): Promise<unknown> } } };
  if (!g.navigator?.gpu) {
    process.env.XDG_RUNTIME_DIR ??= '/tmp';
    let mod: { create(args: string[]): unknown; globals: object };
    try {
      mod = (await import('webgpu')) as unknown as typeof mod;
    } catch {
      return false;
    }
    Object.assign(globalThis, mod.globals);
    Object.defineProperty(globalThis, 'navigator', { value: { gpu: mod.create([]), userAgent: 'node' }, configurable: true, writable: true });
  }
  const adapter = await g.navigator!.gpu!.requestAdapter().catch(() => null);
  webgpuReady = !!adapter;
  return webgpuReady;
}
