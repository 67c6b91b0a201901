import { describe, expect, it } from 'vitest';
import { diffManifests, entriesToPack } from '../../lambda/core/archiver/plan.js';
import type { ScannedEntry } from '../../lambda/core/archiver/scan.js';
import { retentionReport } from '../../lambda/core/repository/retention.js';
import { classifyObject } from '../../lambda/core/repository/usage.js';

/**
 * Issue 10 item 0: a full backup of 200,000 files failed with "Maximum call stack size exceeded"
 * because per-file arrays were spread as call arguments. These in-memory runs keep that regression
 * in the default test run; test/integration/scale.test.ts (MEDIA_BACKUP_SCALE_TEST=1) runs a real
 * 200,000-file tree end to end.
 */
const FILES = 200_000;

function tree(files: number): ScannedEntry[] {
  const entries: ScannedEntry[] = [];
  for (let f = 0; f < files / 500; f++) {
    const folder = `room-${String(f).padStart(3, '0')}`;
    entries.push({ path: folder, type: 'dir', mode: 0o755, mtimeMs: 1 });
    for (let i = 0; i < 500; i++) {
      entries.push({
        path: `${folder}/a-${String(i).padStart(3, '0')}.jpg`,
        type: 'file',
        size: 10,
        mtimeMs: 1,
        mode: 0o644,
      });
    }
  }
  return entries;
}

describe(`per-file arrays of ${FILES} entries`, () => {
  it('entriesToPack packs every folder and changed file in path order', () => {
    const scanned = tree(FILES);
    const plan = diffManifests(scanned, undefined);

    const toPack = entriesToPack(scanned, plan.toArchive);

    expect(plan.toArchive).toHaveLength(FILES);
    expect(toPack).toHaveLength(FILES + FILES / 500);
    expect(toPack[0]).toMatchObject({ path: 'room-000', type: 'dir' });
    expect(toPack[1]).toMatchObject({ path: 'room-000/a-000.jpg', type: 'file' });
    expect(toPack.at(-1)?.path).toBe('room-399/a-499.jpg');
  });

  it('retentionReport handles a backup that references that many archive parts', () => {
    const id = 'backup_20251201_020000';
    const objects = [
      classifyObject({ key: `full/${id}.tar.gz`, size: 1, lastModified: new Date('2025-12-01T02:05:00Z') }),
      classifyObject({
        key: `full/${id}.manifest.jsonl.gz`,
        size: 1,
        lastModified: new Date('2025-12-01T02:05:00Z'),
      }),
    ];
    const parts = Array.from(
      { length: FILES },
      (_, i) => `full/${id}.part-${String(i).padStart(6, '0')}.tar.gz`,
    );

    const report = retentionReport(
      'file:///s',
      objects,
      new Date('2025-12-02T00:00:00Z'),
      {},
      new Map([[id, parts]]),
    );

    // The parts are not in the listing: the backup is not restorable now (the earliest expiry).
    expect(report.backups[0].restorableUntil).toBe('2025-12-02T00:00:00.000Z');
  });
});
