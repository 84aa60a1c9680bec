import { TensorError } from '@scm/tensor';

/** A data loading error: names the reader and what was wrong with the input. */
export class DataError extends TensorError {
  constructor(op: string, message: string) {
    super(op, message);
    this.name = 'DataError';
  }
}
