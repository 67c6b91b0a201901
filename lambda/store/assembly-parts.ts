import {
  type AssemblyExpectation,
  type AssemblyResult,
  checkPart,
  partsInOrder,
  StoreConfigError,
} from './types.js';

/** A part written into an assembly: where it sits and what the store needs of it to complete. */
export interface TrackedPart<P> {
  readonly offset: number;
  readonly length: number;
  readonly value: P;
}

/**
 * The bookkeeping both stores' assemblies share (S3's multipart upload, the folder store's temporary
 * file): each part written once, the parts in flight, the first failure (which stops the others and
 * aborts the assembly), one completion. A store implements the writes, `completeParts` and `abort`.
 */
export abstract class PartTrackedAssembly<P> {
  abstract readonly maxParts: number;
  /** `s3://bucket/prefix/key` or `file:///root/key`, for messages. */
  protected abstract readonly location: string;
  /** The first failure: later calls fail with it, and the assembly is aborted. */
  protected failure: { readonly error: unknown } | undefined;
  protected completing: Promise<AssemblyResult> | undefined;
  protected completed = false;
  protected readonly inFlight = new Set<Promise<void>>();
  private readonly parts = new Map<number, TrackedPart<P>>();
  private readonly claimed = new Set<number>();
  private signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.fail(this.signal?.reason);

  abstract abort(): Promise<void>;
  /** Makes the object visible from the parts, in order (every byte written, none in flight). */
  protected abstract completeParts(
    expected: AssemblyExpectation,
    parts: readonly TrackedPart<P>[],
  ): Promise<AssemblyResult>;

  complete(expected: AssemblyExpectation): Promise<AssemblyResult> {
    if (this.completing) {
      return Promise.reject(new StoreConfigError(`complete() of ${this.location} was already called`));
    }
    this.completing = (async () => {
      try {
        this.checkUsable();
        if (this.inFlight.size > 0) {
          throw new StoreConfigError(
            `complete() of ${this.location} called while ${this.inFlight.size} part(s) are still being written: await every part first`,
          );
        }
        const result = await this.completeParts(
          expected,
          partsInOrder(this.parts, expected.bytes, this.location),
        );
        this.completed = true;
        this.unwatch();
        return result;
      } catch (error) {
        this.fail(error);
        throw error;
      }
    })();
    return this.completing;
  }

  /** Fails the assembly when `signal` fires; call at the end of the subclass's constructor. */
  protected watch(signal: AbortSignal | undefined): void {
    this.signal = signal;
    if (signal?.aborted) this.fail(signal.reason);
    else signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  protected unwatch(): void {
    this.signal?.removeEventListener('abort', this.onAbort);
  }

  /** Stops the assembly after its first failure (or the abort signal) and aborts it. */
  protected fail(error: unknown): void {
    if (this.completed) return;
    this.failure ??= { error };
    this.abort().catch(() => undefined);
  }

  protected checkUsable(): void {
    if (this.failure) throw this.failure.error;
    if (this.completing || this.completed) {
      throw new StoreConfigError(`the assembly of ${this.location} is already being completed`);
    }
  }

  /** Runs one part's write: checks it, records it, and turns any failure into the assembly's. */
  protected track(
    partNumber: number,
    offset: number,
    length: number,
    write: () => Promise<P>,
  ): Promise<void> {
    const task = (async () => {
      try {
        this.checkUsable();
        checkPart(this.location, partNumber, offset, this.maxParts);
        if (this.claimed.has(partNumber)) {
          throw new StoreConfigError(`part ${partNumber} of ${this.location} was already written`);
        }
        this.claimed.add(partNumber);
        const value = await write();
        this.parts.set(partNumber, { offset, length, value });
      } catch (error) {
        // A part stopped because another failed (or the signal fired) reports that first failure.
        if (this.failure) throw this.failure.error;
        this.fail(error);
        throw error;
      }
    })();
    this.inFlight.add(task);
    const settled = (): void => {
      this.inFlight.delete(task);
    };
    task.then(settled, settled);
    return task;
  }
}
