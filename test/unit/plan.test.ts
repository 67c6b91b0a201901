import { describe, expect, it } from 'vitest';
import { chooseBackupType, diffManifests } from '../../lambda/core/archiver/plan.js';
import type { ScannedEntry } from '../../lambda/core/archiver/scan.js';
import type { CatalogEntry } from '../../lambda/core/repository/catalog.js';
import { backupIdFor, backupIdTime, keysFor } from '../../lambda/core/repository/layout.js';
import { type FileEntry, type Manifest, totalsOf } from '../../lambda/core/repository/manifest.js';

const OLD_ARCHIVE = 'full/backup_20251220_020000.tar.gz';

function fileEntry(path: string, size: number, mtimeMs: number, mode = 0o644): FileEntry {
  return { path, type: 'file', size, mtimeMs, mode, sha256: 'b'.repeat(64), archive: OLD_ARCHIVE };
}

function base(files: FileEntry[]): Manifest {
  return {
    header: {
      format: 'media-backup/manifest',
      version: 1,
      backupId: 'backup_20251220_020000',
      type: 'full',
      createdAt: '2025-12-20T02:00:00.000Z',
      baseBackupId: null,
      source: { path: '/m' },
      totals: totalsOf(files),
    },
    entries: files,
  };
}

const scanned = (path: string, size: number, mtimeMs: number, mode = 0o644): ScannedEntry => ({
  path,
  type: 'file',
  size,
  mtimeMs,
  mode,
});

describe('diffManifests', () => {
  const previous = base([
    fileEntry('a.jpg', 10, 1000),
    fileEntry('b.pdf', 20, 2000),
    fileEntry('c.mp4', 30, 3000),
    fileEntry('d.png', 40, 4000),
    fileEntry('e.docx', 50, 5000),
  ]);

  it('classifies add, modify (size), modify (mtime only), delete, rename, mode-only and unchanged', () => {
    const plan = diffManifests(
      [
        scanned('a.jpg', 10, 1000), // unchanged
        scanned('b.pdf', 21, 2000), // size changed
        scanned('c.mp4', 30, 3001), // mtime-only change
        { path: 'dir', type: 'dir', mode: 0o755, mtimeMs: 1 },
        scanned('e.docx', 50, 5000, 0o600), // mode-only change
        scanned('new.xlsx', 5, 9000), // added
        scanned('renamed.png', 40, 4000), // d.png renamed
      ],
      previous,
    );
    expect(plan.toArchive.map((f) => f.path)).toEqual(['b.pdf', 'c.mp4', 'new.xlsx', 'renamed.png']);
    expect([...plan.unchanged.keys()]).toEqual(['a.jpg', 'e.docx']);
    expect(plan.unchanged.get('a.jpg')).toBe(previous.entries[0]);
    // Mode-only: bytes stay in the old archive, the new mode is recorded.
    expect(plan.unchanged.get('e.docx')).toMatchObject({ mode: 0o600, archive: OLD_ARCHIVE, size: 50 });
    expect(plan.deleted).toEqual(['d.png']);
  });

  it('archives everything without a base', () => {
    const plan = diffManifests([scanned('a.jpg', 10, 1000)], undefined);
    expect(plan.toArchive).toHaveLength(1);
    expect(plan.unchanged.size).toBe(0);
    expect(plan.deleted).toEqual([]);
  });

  it('re-archives unchanged files when asked to re-hash everything', () => {
    const plan = diffManifests([scanned('a.jpg', 10, 1000)], previous, { rehashAll: true });
    expect(plan.toArchive.map((f) => f.path)).toEqual(['a.jpg']);
    expect(plan.unchanged.size).toBe(0);
  });
});

function committed(...specs: [string, 'full' | 'incremental'][]): CatalogEntry[] {
  return specs.map(([iso, type]) => {
    const backupId = backupIdFor(new Date(iso));
    const keys = keysFor(type, backupId);
    return {
      backupId,
      type,
      archiveKey: keys.archive,
      metadataKey: keys.metadata,
      manifestKey: keys.manifest,
      committedAt: new Date(iso),
    };
  });
}

describe('chooseBackupType', () => {
  const chain = committed(['2025-12-21T02:00:00Z', 'full'], ['2025-12-22T02:00:00Z', 'incremental']);

  it.each([
    ['auto, nothing committed', 'auto', [], '2025-12-23T02:00:00Z', 'full', undefined],
    ['auto, full 2 days old', 'auto', chain, '2025-12-23T02:00:00Z', 'incremental', 'backup_20251222_020000'],
    [
      'auto, full 6.9 days old',
      'auto',
      chain,
      '2025-12-27T23:00:00Z',
      'incremental',
      'backup_20251222_020000',
    ],
    ['auto, full exactly 7 days old', 'auto', chain, '2025-12-28T02:00:00Z', 'full', undefined],
    [
      'auto, only incrementals',
      'auto',
      committed(['2025-12-22T02:00:00Z', 'incremental']),
      '2025-12-23T02:00:00Z',
      'full',
      undefined,
    ],
    ['full requested', 'full', chain, '2025-12-23T02:00:00Z', 'full', undefined],
    [
      'incremental requested',
      'incremental',
      chain,
      '2025-12-30T02:00:00Z',
      'incremental',
      'backup_20251222_020000',
    ],
    [
      'incremental requested, nothing to base on',
      'incremental',
      [],
      '2025-12-23T02:00:00Z',
      'full',
      undefined,
    ],
  ] as const)('%s -> %s', (_name, requested, list, now, type, baseId) => {
    const decision = chooseBackupType(requested, list, new Date(now), 7);
    expect(decision.type).toBe(type);
    expect(decision.base?.backupId).toBe(baseId);
    expect(decision.reason.length).toBeGreaterThan(5);
  });

  it('honours a different full interval', () => {
    expect(chooseBackupType('auto', chain, new Date('2025-12-23T02:00:00Z'), 2).type).toBe('full');
    expect(chooseBackupType('auto', chain, new Date('2025-12-23T01:59:59Z'), 2).type).toBe('incremental');
  });
});

describe('backup ids', () => {
  it('are UTC timestamps that sort in time order and parse back', () => {
    const id = backupIdFor(new Date('2025-12-27T02:00:09.999Z'));
    expect(id).toBe('backup_20251227_020009');
    expect(backupIdTime(id).toISOString()).toBe('2025-12-27T02:00:09.000Z');
    expect(keysFor('incremental', id)).toEqual({
      archive: 'incremental/backup_20251227_020009.tar.gz',
      metadata: 'incremental/backup_20251227_020009.tar.gz.metadata.json',
      manifest: 'incremental/backup_20251227_020009.manifest.jsonl.gz',
    });
  });
});
