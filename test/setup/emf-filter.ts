type Write = (chunk: string | Uint8Array, ...rest: unknown[]) => boolean;

/** True for one EMF document as powertools Metrics prints it: a JSON line starting with `{"_aws":{`. */
export function isEmfLine(chunk: unknown): boolean {
  return typeof chunk === 'string' && chunk.startsWith('{"_aws":{');
}

/**
 * Wraps a stream's `write` so EMF documents are dropped (their callback still runs, as a write's
 * would) and every other chunk goes through unchanged.
 */
export function dropEmfLines(write: Write): Write {
  return function filtered(this: unknown, chunk, ...rest) {
    if (isEmfLine(chunk)) {
      const callback = rest.find((arg): arg is (error?: Error | null) => void => typeof arg === 'function');
      if (callback) queueMicrotask(() => callback());
      return true;
    }
    return write.call(this, chunk, ...rest);
  };
}
