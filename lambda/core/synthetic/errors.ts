/**
 * A synthetic full cannot be built safely, so the run builds a normal full instead (it re-reads the
 * tree). `reason` is a sentence for the operator's log and the backup's metadata: what was missing,
 * replaced, too large or corrupt, naming the object and byte range when there is one.
 */
export class SyntheticFallbackError extends Error {
  override readonly name = 'SyntheticFallbackError';
  constructor(
    readonly reason: string,
    options: { cause?: unknown } = {},
  ) {
    super(`synthetic full not possible, building a normal full instead: ${reason}`, options);
  }
}

/** `full/x.tar.gz bytes 100-199`: a byte range of an object as an HTTP Range names it (last byte included). */
export function describeRange(source: string, offset: number, length: number): string {
  return `${source} bytes ${offset}-${offset + length - 1}`;
}
