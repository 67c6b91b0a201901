import { describe, expect, it } from 'vitest';
import {
  DEFAULT_TARGET_UPLOAD_PART_BYTES,
  planSyntheticParts,
  S3_PART_LIMITS,
  type SyntheticSegment,
} from '../../lambda/core/synthetic/part-plan.js';
import {
  type CostInputs,
  planSyntheticFullModel,
  SYNTHETIC_PART_LIMITS,
  type SyntheticFullLayout,
  syntheticFullLayout,
  WITH_SYNTHETIC_FULLS,
} from '../../lib/cost-model.js';

// The cost model plans a synthetic full's parts with its own copy of the planner's rules (counts only,
// no checksums, no dependency on the Lambda code). Here both plan the same simulated layouts: a change
// to lambda/core/synthetic/part-plan.ts that moves the counts fails this test until the model follows.

/** The layout as the real planner's input: offsets where the bytes sit in each source object. */
function segmentsOf(layout: SyntheticFullLayout): SyntheticSegment[] {
  const next = new Array<number>(layout.staging + 1).fill(0);
  let inFull = 0;
  return Array.from(layout.segments, (length, k) => {
    const source = layout.sources[k]!;
    // The previous full holds the same tree: every entry at the offset it has in the new full.
    const offset = source === 0 ? inFull : next[source]!;
    next[source] = offset + length;
    inFull += length;
    return {
      source:
        source === 0
          ? 'full/previous'
          : source === layout.staging
            ? 'staging/fresh'
            : `incremental/day-${source}`,
      offset,
      length,
      crc64nvme: 'AAAAAAAAAAA=',
      sourceBytes: layout.sourceBytes[source]!,
    };
  });
}

describe('the cost model plans a synthetic full as lambda/core/synthetic/part-plan.ts does', () => {
  it.each([
    ['5 GB, scattered changes', { treeGB: 5 }],
    ['50 GB, scattered changes', { treeGB: 50 }],
    ['50 GB, 25 files per change', { treeGB: 50, changedFilesPerRun: 25 }],
    ['500 GB, scattered changes (thresholds raised)', { treeGB: 500 }],
    ['500 GB, 25 files per change', { treeGB: 500, changedFilesPerRun: 25 }],
    ['50 GB, every change a rewrite in place (no folder changes)', { treeGB: 50, addedOrRemovedShare: 0 }],
    [
      '500 GB, 25 files per change, every change adds or removes files',
      { treeGB: 500, changedFilesPerRun: 25, addedOrRemovedShare: 1 },
    ],
  ] as [string, Partial<CostInputs>][])('%s: the same parts and bytes', (_case, inputs) => {
    const layout = syntheticFullLayout({ ...WITH_SYNTHETIC_FULLS, ...inputs });
    const model = planSyntheticFullModel(layout)!;
    const real = planSyntheticParts(segmentsOf(layout));

    const pieces = real.parts.flatMap((part) => (part.kind === 'upload' ? part.pieces : []));
    expect({
      rangedGets: model.iaRangedGets + model.stagingRangedGets,
      fetchedFromStaging: Math.round(model.fetchedStagingBytes),
      copyParts: model.copyParts,
      uploadParts: model.uploadParts,
      bytesCopied: Math.round(model.copiedIaBytes + model.copiedStagingBytes),
      minCopyRunBytes: model.minCopyRunBytes,
      targetUploadPartBytes: model.targetUploadPartBytes,
    }).toEqual({
      rangedGets: pieces.length,
      fetchedFromStaging: pieces
        .filter((p) => p.source === 'staging/fresh')
        .reduce((n, p) => n + p.length, 0),
      copyParts: real.copyParts,
      uploadParts: real.uploadParts,
      bytesCopied: Math.round(real.bytesCopied),
      minCopyRunBytes: real.minCopyRunBytes,
      targetUploadPartBytes: real.targetUploadPartBytes,
    });
  });

  it("uses the planner's limits: S3's part sizes and count, an 8 MiB upload part to start with", () => {
    expect(SYNTHETIC_PART_LIMITS).toEqual({
      ...S3_PART_LIMITS,
      targetUploadPartBytes: DEFAULT_TARGET_UPLOAD_PART_BYTES,
    });
  });
});
