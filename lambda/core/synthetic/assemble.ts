import {
  type Assembly,
  type AssemblyResult,
  ObjectExistsError,
  ObjectNotFoundError,
  type ObjectStore,
  SourceChangedError,
  type SourcePin,
  type StorageTier,
} from '../../store/types.js';
import { crc64nvme, crc64nvmeToBase64 } from '../archiver/crc64nvme.js';
import { describeRange, SyntheticFallbackError } from './errors.js';
import type { SyntheticPart, SyntheticPartPlan } from './part-plan.js';

/** Parts written at once: a few ranged reads and copies in flight, each upload part held in memory. */
export const DEFAULT_ASSEMBLY_CONCURRENCY = 4;

export interface AssemblyProgress {
  readonly partsDone: number;
  readonly parts: number;
  readonly bytesDone: number;
  readonly bytes: number;
}

export interface AssembleSyntheticOptions {
  readonly store: Pick<ObjectStore, 'url' | 'getRange' | 'assemble'>;
  /** Key of the new archive, e.g. `full/backup_20261201_020000.tar.gz`. */
  readonly key: string;
  /** Built with this store's limits ({@link Assembly}'s `minPartBytes` etc.). */
  readonly plan: SyntheticPartPlan;
  /** The pin of every source the plan reads or copies: copies and reads fail if the source changed since. */
  readonly pins: ReadonlyMap<string, SourcePin>;
  /**
   * An assembly already started at `key` (its limits made the plan); without it one is started with
   * `tier` and `signal`. Either way it is aborted when anything fails.
   */
  readonly assembly?: Assembly;
  /** @default 'archive' */
  readonly tier?: StorageTier;
  /** Stops between parts (and cancels the store's requests when the assembly was started with it). */
  readonly signal?: AbortSignal;
  /** @default {@link DEFAULT_ASSEMBLY_CONCURRENCY} */
  readonly concurrency?: number;
  /** Called after each part. */
  readonly onProgress?: (progress: AssemblyProgress) => void;
}

export interface SyntheticAssemblyResult {
  readonly result: AssemblyResult;
  readonly bytesCopied: number;
  readonly bytesFetched: number;
  readonly copyParts: number;
  readonly uploadParts: number;
}

/**
 * Builds the synthetic full at `key` from `plan`: copies ranges of the pinned sources server-side,
 * fetches the other ranges (checking each whole segment's CRC64NVME against the manifest's), uploads
 * them as parts, and completes with the expected size and full-object CRC64NVME, so the object
 * becomes visible only with exactly the planned bytes. Parts run `concurrency` at a time.
 *
 * On any failure no new part starts, the parts in flight settle, the assembly is aborted (and
 * awaited), then the error is thrown: {@link SyntheticFallbackError} when a source is missing or
 * changed, a fetched range has other bytes than recorded, or the store refuses the assembled bytes
 * (the run then builds a normal full); {@link ObjectExistsError} and request failures as they are.
 */
export async function assembleSynthetic(options: AssembleSyntheticOptions): Promise<SyntheticAssemblyResult> {
  const { store, key, plan, pins, signal } = options;
  const concurrency = options.concurrency ?? DEFAULT_ASSEMBLY_CONCURRENCY;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`\`concurrency\` must be a positive integer, got ${concurrency}`);
  }
  let assembly = options.assembly;
  try {
    signal?.throwIfAborted();
    checkPins(plan, pins);
    if (plan.uploadParts > 0 && !store.getRange) {
      throw new SyntheticFallbackError(`store ${store.url} cannot read byte ranges`);
    }
    if (!assembly) {
      if (!store.assemble) {
        throw new SyntheticFallbackError(`store ${store.url} cannot assemble objects from byte ranges`);
      }
      assembly = await store.assemble(key, {
        tier: options.tier ?? 'archive',
        contentType: 'application/gzip',
        ...(signal ? { signal } : {}),
      });
    }
    checkLimits(plan, assembly, key);
    await writeParts(options, assembly, concurrency);
    signal?.throwIfAborted();
    let result: AssemblyResult;
    try {
      result = await assembly.complete({ bytes: plan.bytes, crc64nvme: plan.crc64nvme });
    } catch (error) {
      if (error instanceof ObjectExistsError || signal?.aborted) throw error;
      // S3 or the folder store checked size and CRC64NVME and refused: some copied range does not
      // hold the recorded bytes (the fetched ones were checked already).
      throw new SyntheticFallbackError(
        `the store refused the assembled ${key} (${plan.bytes} bytes, expected CRC64NVME ${plan.crc64nvme}): ${errorText(error)}`,
        { cause: error },
      );
    }
    return {
      result,
      bytesCopied: plan.bytesCopied,
      bytesFetched: plan.bytesFetched,
      copyParts: plan.copyParts,
      uploadParts: plan.uploadParts,
    };
  } catch (error) {
    if (assembly) {
      try {
        await assembly.abort();
      } catch (abortError) {
        if (error instanceof SyntheticFallbackError) {
          throw new SyntheticFallbackError(
            `${error.reason}; aborting the assembly of ${key} failed too (${errorText(abortError)}), removing leftovers removes it later`,
            { cause: error.cause ?? error },
          );
        }
      }
    }
    throw error;
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function checkPins(plan: SyntheticPartPlan, pins: ReadonlyMap<string, SourcePin>): void {
  for (const part of plan.parts) {
    const sources = part.kind === 'copy' ? [part.source] : part.pieces.map((p) => p.source);
    for (const source of sources) {
      if (!pins.has(source)) {
        throw new SyntheticFallbackError(
          `source ${source} was not pinned, so it cannot be read or copied safely`,
        );
      }
    }
  }
}

/** A plan made for other limits would be refused part by part; say so before writing anything. */
function checkLimits(plan: SyntheticPartPlan, assembly: Assembly, key: string): void {
  if (plan.parts.length > assembly.maxParts) {
    throw new Error(
      `the plan for ${key} has ${plan.parts.length} parts; the store takes ${assembly.maxParts}`,
    );
  }
  plan.parts.forEach((part, i) => {
    const last = i === plan.parts.length - 1;
    if ((!last && part.length < assembly.minPartBytes) || part.length > assembly.maxPartBytes) {
      throw new Error(
        `part ${i + 1} of the plan for ${key} has ${part.length} bytes, outside the store's ` +
          `${assembly.minPartBytes}..${assembly.maxPartBytes}: plan with the assembly's limits`,
      );
    }
  });
}

async function writeParts(
  options: AssembleSyntheticOptions,
  assembly: Assembly,
  concurrency: number,
): Promise<void> {
  const { plan, signal } = options;
  const offsets: number[] = [];
  let at = 0;
  for (const part of plan.parts) {
    offsets.push(at);
    at += part.length;
  }
  let next = 0;
  let partsDone = 0;
  let bytesDone = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < plan.parts.length) {
      if (signal?.aborted) {
        failure ??= { error: signal.reason };
        return;
      }
      const index = next++;
      const part = plan.parts[index];
      try {
        await writePart(options, assembly, index + 1, offsets[index], part);
      } catch (error) {
        failure ??= { error };
        return;
      }
      partsDone += 1;
      bytesDone += part.length;
      options.onProgress?.({ partsDone, parts: plan.parts.length, bytesDone, bytes: plan.bytes });
    }
  };
  // Every worker settles before this returns: the abort that follows must not race a part in flight.
  await Promise.all(Array.from({ length: Math.min(concurrency, plan.parts.length) }, worker));
  if (failure) throw signal?.aborted ? signal.reason : failure.error;
}

async function writePart(
  options: AssembleSyntheticOptions,
  assembly: Assembly,
  partNumber: number,
  offset: number,
  part: SyntheticPart,
): Promise<void> {
  const { pins, store } = options;
  if (part.kind === 'copy') {
    const pin = pins.get(part.source)!;
    await asFallback(
      () => assembly.copyPart(partNumber, offset, pin, part.offset, part.length),
      describeRange(part.source, part.offset, part.length),
    );
    return;
  }
  const chunks: Buffer[] = [];
  for (const piece of part.pieces) {
    const where = describeRange(piece.source, piece.offset, piece.length);
    const pin = pins.get(piece.source)!;
    const bytes = await asFallback(
      () => store.getRange!(piece.source, piece.offset, piece.length, pin),
      where,
    );
    if (bytes.length !== piece.length) {
      throw new SyntheticFallbackError(`reading ${where} returned ${bytes.length} bytes`);
    }
    if (piece.wholeSegments) {
      const actual = crc64nvmeToBase64(crc64nvme(bytes));
      if (actual !== piece.crc64nvme) {
        throw new SyntheticFallbackError(
          `checksum mismatch: ${where} have CRC64NVME ${actual}, the manifest records ${piece.crc64nvme}`,
        );
      }
    }
    chunks.push(bytes);
  }
  await assembly.uploadPart(partNumber, offset, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
}

/** Runs a read or copy of `where`, turning a missing or changed source into a fallback naming it. */
async function asFallback<T>(operation: () => Promise<T>, where: string): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (error instanceof ObjectNotFoundError) {
      throw new SyntheticFallbackError(`source missing: ${where} cannot be read (${error.message})`, {
        cause: error,
      });
    }
    if (error instanceof SourceChangedError) {
      throw new SyntheticFallbackError(`source changed since it was pinned: ${where} (${error.message})`, {
        cause: error,
      });
    }
    throw error;
  }
}
