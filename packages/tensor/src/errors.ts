/**
 * Every user-facing error from the tensor stack is a TensorError: it names the op,
 * the shapes (and dtypes) it was given, and what was expected instead.
 */
export class TensorError extends Error {
  constructor(
    readonly op: string,
    readonly detail: string,
    readonly shapes: readonly (readonly number[])[] = [],
  ) {
    const shapeText = shapes.length ? ` (got shapes ${shapes.map((s) => `[${s.join(', ')}]`).join(', ')})` : '';
    super(`${op}: ${detail}${shapeText}`);
    this.name = 'TensorError';
  }
}
