/** A stream the CLI writes to: process.stdout/stderr, or a capture in tests. */
export type OutputStream = NodeJS.WritableStream & { isTTY?: boolean };

/** Writes whole lines to one output stream; a reader that went away ends the output quietly. */
export interface LineWriter {
  (line?: string): void;
  /** True once the reader closed the stream (`list | head -1`): further lines are dropped. */
  readonly closed: boolean;
}

/**
 * `list | head -1` closes the pipe after one line, and the next write fails with EPIPE. Node
 * ignores SIGPIPE, so without a listener that error is thrown as an uncaught exception with a stack
 * trace, possibly after a backup committed. A closed reader is not a failure of the operation: stop
 * writing to that stream and let the command finish with its own exit code (as `git log | head`
 * does). The listener stays attached: the error event can arrive after the command returned.
 */
export function lineWriter(stream: OutputStream, onOtherError?: (error: Error) => void): LineWriter {
  let closed = false;
  stream.on('error', (error: NodeJS.ErrnoException) => {
    const wasClosed = closed;
    closed = true;
    if (!wasClosed && error.code !== 'EPIPE' && error.code !== 'ERR_STREAM_DESTROYED') onOtherError?.(error);
  });
  const write = (line = '') => {
    if (closed) return;
    stream.write(`${line}\n`);
  };
  return Object.defineProperty(write, 'closed', { get: () => closed }) as LineWriter;
}
