import { describe, expect, it, vi } from 'vitest';
import { DEFAULT_LEVEL } from '../../lambda/core/archiver/parallel-gzip.js';
import { CONFIG_DEFAULTS, openHandlerStore, readHandlerConfig } from '../../lambda/handlers/config.js';
import { EventValidationError, HandlerConfigError } from '../../lambda/handlers/errors.js';
import { parseBackupEvent, parseRestoreEvent, parseVerifyEvent } from '../../lambda/handlers/events.js';

describe('backup event', () => {
  it.each([
    [{}, { type: 'auto' }],
    [null, { type: 'auto' }],
    [undefined, { type: 'auto' }],
    [{ type: 'auto' }, { type: 'auto' }],
    [{ type: 'full' }, { type: 'full' }],
    [{ type: 'incremental' }, { type: 'incremental' }],
  ])('accepts %j', (event, expected) => {
    expect(parseBackupEvent(event)).toEqual(expected);
  });

  it.each([
    [{ type: 'weekly' }, /`type` must be one of auto, full, incremental \(got "weekly"\)/],
    [{ type: 7 }, /`type` must be one of auto, full, incremental \(got 7\)/],
    [{ type: 'full', retention: 30 }, /unknown field `retention`: this function accepts type/],
    [{ Type: 'full' }, /unknown field `Type`/],
    ['full', /the event must be a JSON object such as \{"type":"auto"\} \(got "full"\)/],
    [['full'], /the event must be a JSON object/],
  ])('rejects %j naming the field', (event, message) => {
    expect(() => parseBackupEvent(event)).toThrow(EventValidationError);
    expect(() => parseBackupEvent(event)).toThrow(message);
  });
});

describe('restore event', () => {
  it.each([
    [{}, { backup: 'latest', mode: 'new-folder', dryRun: false }],
    [{ backup: 'backup_20251227_020000' }, { backup: 'backup_20251227_020000' }],
    [{ backup: 'full/backup_20251227_020000.tar.gz' }, { backup: 'full/backup_20251227_020000.tar.gz' }],
    [{ backup: 'backup_20251227_020000.tar.gz' }, { backup: 'backup_20251227_020000.tar.gz' }],
    [{ at: '2025-12-27T12:00:00Z' }, { backup: 'latest', at: new Date('2025-12-27T12:00:00Z') }],
    [{ at: '2025-12-27' }, { at: new Date('2025-12-27T00:00:00Z') }],
    [{ backup: 'latest', at: '2025-12-27T12:00:00+02:00' }, { at: new Date('2025-12-27T10:00:00Z') }],
    [{ paths: ['avatars/**', 'reports'] }, { paths: ['avatars/**', 'reports'] }],
    [{ target: 'restores/drill/' }, { target: 'restores/drill' }],
    [{ mode: 'replace' }, { mode: 'replace', target: undefined }],
    [{ dryRun: true }, { dryRun: true }],
  ])('accepts %j', (event, expected) => {
    expect(parseRestoreEvent(event)).toMatchObject(expected);
  });

  it.each([
    [
      { backup: '/mnt/efs/evil.tar.gz' },
      /`backup` must be "latest", a backup id .* \(got "\/mnt\/efs\/evil.tar.gz"\)/,
    ],
    [{ backup: 'yesterday' }, /`backup` must be "latest"/],
    [{ backup: 42 }, /`backup` must be "latest".*\(got 42\)/],
    [
      { at: 'last tuesday' },
      /`at` must be an ISO-8601 time such as 2025-12-27T02:00:00Z \(got "last tuesday"\)/,
    ],
    [{ at: 1735264800000 }, /`at` must be an ISO-8601 time/],
    [
      { backup: 'backup_20251227_020000', at: '2025-12-27T12:00:00Z' },
      /`backup` and `at` cannot both be given/,
    ],
    [{ paths: 'avatars/**' }, /`paths` must be a list of globs/],
    [{ paths: ['avatars/**', 3] }, /`paths\[1\]` must be a glob such as "avatars\/\*\*" \(got 3\)/],
    [{ paths: [''] }, /`paths\[0\]` must not be an empty glob/],
    [{ paths: ['avatars'], mode: 'replace' }, /`paths` cannot be combined with `mode: "replace"`/],
    [{ target: '../etc' }, /`target` must be a folder relative to the file system mount.*'\.\.'/],
    [{ target: '/mnt/efs/media' }, /`target` .*is absolute/],
    [
      { target: '.' },
      /`target` must be a folder relative to the file system mount, such as "restores\/drill", not the mount itself/,
    ],
    [{ target: '' }, /`target` must be a folder relative to the file system mount/],
    [{ mode: 'in-place' }, /`mode` must be one of new-folder, replace \(got "in-place"\)/],
    [{ dryRun: 'yes' }, /`dryRun` must be true or false \(got "yes"\)/],
    [
      { dryrun: true },
      /unknown field `dryrun`: this function accepts backup, at, paths, target, mode, dryRun/,
    ],
    [42, /the event must be a JSON object/],
  ])('rejects %j naming the field', (event, message) => {
    expect(() => parseRestoreEvent(event)).toThrow(EventValidationError);
    expect(() => parseRestoreEvent(event)).toThrow(message);
  });
});

describe('verify event', () => {
  it.each([
    [{}, { backup: 'latest', all: false, deep: false }],
    [{ deep: true }, { backup: 'latest', all: false, deep: true }],
    [
      { backup: 'backup_20251227_020000', deep: false },
      { backup: 'backup_20251227_020000', all: false, deep: false },
    ],
    [
      { all: true, deep: true },
      { backup: 'latest', all: true, deep: true },
    ],
  ])('accepts %j', (event, expected) => {
    expect(parseVerifyEvent(event)).toEqual(expected);
  });

  it.each([
    [{ deep: 'true' }, /`deep` must be true or false \(got "true"\)/],
    [{ all: 1 }, /`all` must be true or false \(got 1\)/],
    [{ backup: 'newest' }, /`backup` must be "latest"/],
    [{ backup: 'backup_20251227_020000', all: true }, /`backup` and `all` cannot both be given/],
    [{ deep: true, quick: false }, /unknown field `quick`: this function accepts backup, all, deep/],
  ])('rejects %j naming the field', (event, message) => {
    expect(() => parseVerifyEvent(event)).toThrow(EventValidationError);
    expect(() => parseVerifyEvent(event)).toThrow(message);
  });
});

describe('readHandlerConfig', () => {
  it('applies the defaults when only BUCKET_NAME is set', () => {
    expect(readHandlerConfig({ BUCKET_NAME: 'media-backup-bucket' })).toEqual({
      bucketName: 'media-backup-bucket',
      backupPrefix: CONFIG_DEFAULTS.backupPrefix,
      kmsKeyId: undefined,
      efsMount: '/mnt/efs',
      mediaPath: 'media',
      restoresPath: 'restores',
      fullIntervalDays: 7,
      syntheticFulls: true,
      normalFullEvery: 4,
      compressionLevel: DEFAULT_LEVEL,
      exclude: [],
      deadlineMarginMs: 60_000,
      s3: { endpoint: undefined, forcePathStyle: false, checksums: 'on' },
    });
  });

  it('reads every variable', () => {
    expect(
      readHandlerConfig({
        BUCKET_NAME: 'b-1',
        BACKUP_PREFIX: 'backups/',
        KMS_KEY_ID: 'arn:aws:kms:us-east-1:123456789012:key/1',
        EFS_MOUNT: '/mnt/media/',
        MEDIA_PATH: 'app/media/',
        RESTORES_PATH: 'app/restores',
        FULL_INTERVAL_DAYS: '14',
        SYNTHETIC_FULLS: 'false',
        NORMAL_FULL_EVERY: '2',
        COMPRESSION_LEVEL: '3',
        BACKUP_EXCLUDE: '*.tmp, cache/** ,,',
        DEADLINE_MARGIN_MS: '0',
        S3_ENDPOINT: 'http://127.0.0.1:4568',
        S3_FORCE_PATH_STYLE: 'true',
        S3_CHECKSUMS: 'off',
      }),
    ).toEqual({
      bucketName: 'b-1',
      backupPrefix: 'backups/',
      kmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/1',
      efsMount: '/mnt/media',
      mediaPath: 'app/media',
      restoresPath: 'app/restores',
      fullIntervalDays: 14,
      syntheticFulls: false,
      normalFullEvery: 2,
      compressionLevel: 3,
      exclude: ['*.tmp', 'cache/**'],
      deadlineMarginMs: 0,
      s3: { endpoint: 'http://127.0.0.1:4568', forcePathStyle: true, checksums: 'off' },
    });
  });

  it.each([
    [{}, /BUCKET_NAME is not set/],
    [{ BUCKET_NAME: '  ' }, /BUCKET_NAME is not set/],
    [
      { BUCKET_NAME: 'b-1', EFS_MOUNT: 'mnt/efs' },
      /EFS_MOUNT must be the absolute path .*\(got "mnt\/efs"\)/,
    ],
    [{ BUCKET_NAME: 'b-1', EFS_MOUNT: '/' }, /EFS_MOUNT must be the absolute path/],
    [
      { BUCKET_NAME: 'b-1', MEDIA_PATH: '.' },
      /MEDIA_PATH must be a folder relative to EFS_MOUNT, such as "media", not the mount itself/,
    ],
    [{ BUCKET_NAME: 'b-1', MEDIA_PATH: '/' }, /MEDIA_PATH must be a folder relative to EFS_MOUNT/],
    [{ BUCKET_NAME: 'b-1', MEDIA_PATH: '../media' }, /MEDIA_PATH .*'\.\.'/],
    [
      { BUCKET_NAME: 'b-1', RESTORES_PATH: '/tmp/restores' },
      /RESTORES_PATH must be a folder relative to EFS_MOUNT/,
    ],
    [
      { BUCKET_NAME: 'b-1', RESTORES_PATH: 'media/restores' },
      /MEDIA_PATH .* and RESTORES_PATH .* must be separate folders/,
    ],
    [{ BUCKET_NAME: 'b-1', MEDIA_PATH: 'data', RESTORES_PATH: 'data' }, /must be separate folders/],
    [
      { BUCKET_NAME: 'b-1', FULL_INTERVAL_DAYS: '0' },
      /FULL_INTERVAL_DAYS must be a whole number of days, at least 1 \(got "0"\)/,
    ],
    [{ BUCKET_NAME: 'b-1', FULL_INTERVAL_DAYS: '7.5' }, /FULL_INTERVAL_DAYS must be a whole number/],
    [
      { BUCKET_NAME: 'b-1', SYNTHETIC_FULLS: 'yes' },
      /SYNTHETIC_FULLS must be 'true' or 'false' \(got "yes"\)/,
    ],
    [
      { BUCKET_NAME: 'b-1', NORMAL_FULL_EVERY: '0' },
      /NORMAL_FULL_EVERY must be a whole number of fulls, at least 1 \(got "0"\)/,
    ],
    [
      { BUCKET_NAME: 'b-1', COMPRESSION_LEVEL: '10' },
      /COMPRESSION_LEVEL must be a gzip level from 0 to 9 \(got 10\)/,
    ],
    [{ BUCKET_NAME: 'b-1', COMPRESSION_LEVEL: 'fast' }, /COMPRESSION_LEVEL must be a whole number/],
    [
      { BUCKET_NAME: 'b-1', DEADLINE_MARGIN_MS: '-1' },
      /DEADLINE_MARGIN_MS must be a whole number of milliseconds/,
    ],
    [{ BUCKET_NAME: 'b-1', DEADLINE_MARGIN_MS: '1m' }, /DEADLINE_MARGIN_MS must be a whole number/],
    [
      { BUCKET_NAME: 'b-1', S3_FORCE_PATH_STYLE: 'yes' },
      /S3_FORCE_PATH_STYLE must be 'true' or 'false' \(got "yes"\)/,
    ],
    [{ BUCKET_NAME: 'b-1', S3_CHECKSUMS: 'false' }, /S3_CHECKSUMS must be 'on' or 'off' \(got "false"\)/],
  ])('rejects %j naming the variable', (env, message) => {
    expect(() => readHandlerConfig(env)).toThrow(HandlerConfigError);
    expect(() => readHandlerConfig(env)).toThrow(message);
  });

  it('reads process.env by default', () => {
    vi.stubEnv('BUCKET_NAME', '');
    try {
      expect(() => readHandlerConfig()).toThrow(/BUCKET_NAME is not set/);
      vi.stubEnv('BUCKET_NAME', 'from-process-env');
      expect(readHandlerConfig().bucketName).toBe('from-process-env');
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('names BUCKET_NAME when the bucket name is not a valid S3 bucket name', () => {
    const config = readHandlerConfig({ BUCKET_NAME: 'My_Bucket' });
    expect(() => openHandlerStore(config)).toThrow(HandlerConfigError);
    expect(() => openHandlerStore(config)).toThrow(/BUCKET_NAME .*"My_Bucket" is not a valid S3 bucket name/);
  });

  it('passes S3_CONNECT_TIMEOUT_MS / S3_IDLE_TIMEOUT_MS to the store, and names a bad one', () => {
    const config = readHandlerConfig({ BUCKET_NAME: 'media-backups-bucket' });
    vi.stubEnv('S3_IDLE_TIMEOUT_MS', '5s');
    try {
      expect(() => openHandlerStore(config)).toThrow(
        /S3_IDLE_TIMEOUT_MS must be a positive whole number of milliseconds, got "5s"/,
      );
      vi.stubEnv('S3_IDLE_TIMEOUT_MS', '120000');
      vi.stubEnv('S3_CONNECT_TIMEOUT_MS', '2500');
      expect(openHandlerStore(config).timeouts).toEqual({ connectMs: 2500, idleMs: 120000 });
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe('backup keys as people paste them (restore and verify)', () => {
  const STORE = { bucket: 'my-backups', prefix: 'media-backups/' };
  const KEY = 'full/backup_20251227_020000.tar.gz';

  it.each([
    ['the key as `aws s3 ls --recursive` prints it', `media-backups/${KEY}`],
    ['an s3:// URL', `s3://my-backups/media-backups/${KEY}`],
    ['an incremental', 's3://my-backups/media-backups/incremental/backup_20251228_020000.tar.gz'],
    ['the key below the prefix, as before', KEY],
  ])('accepts %s', (_name, backup) => {
    const expected = backup.includes('incremental/') ? 'incremental/backup_20251228_020000.tar.gz' : KEY;

    expect(parseRestoreEvent({ backup }, STORE).backup).toBe(expected);
    expect(parseVerifyEvent({ backup }, STORE).backup).toBe(expected);
  });

  it('accepts a URL with an empty prefix', () => {
    expect(
      parseRestoreEvent({ backup: `s3://my-backups/${KEY}` }, { bucket: 'my-backups', prefix: '' }).backup,
    ).toBe(KEY);
  });

  it.each([
    [
      'another bucket',
      `s3://other-bucket/media-backups/${KEY}`,
      /`backup` names bucket "other-bucket", but this function's backups are in s3:\/\/my-backups\/media-backups\/: .*s3:\/\/my-backups\/media-backups\/full\/backup_20251227_020000\.tar\.gz/,
    ],
    [
      'another prefix',
      `old-backups/${KEY}`,
      /`backup` is under the prefix "old-backups\/", but this function's backups are under "media-backups\/": .*\(media-backups\/full\/backup_20251227_020000\.tar\.gz\) or as a URL/,
    ],
    [
      'another prefix in a URL',
      `s3://my-backups/media-backups/nested/${KEY}`,
      /is under the prefix "media-backups\/nested\/"/,
    ],
    [
      'a metadata key',
      's3://my-backups/media-backups/full/backup_20251227_020000.meta.json',
      /`backup` must be "latest"/,
    ],
    ['a local path', `/mnt/efs/media-backups/${KEY}`, /is under the prefix "\/mnt\/efs\/media-backups\/"/],
    [
      'an https URL',
      `https://my-backups.s3.amazonaws.com/media-backups/${KEY}`,
      /is under the prefix "https:/,
    ],
  ])('refuses %s, naming the expected form', (_name, backup, message) => {
    expect(() => parseRestoreEvent({ backup }, STORE)).toThrow(EventValidationError);
    expect(() => parseRestoreEvent({ backup }, STORE)).toThrow(message);
    expect(() => parseVerifyEvent({ backup }, STORE)).toThrow(message);
  });

  it('refuses prefixed keys and URLs when the location is unknown', () => {
    expect(() => parseRestoreEvent({ backup: `media-backups/${KEY}` })).toThrow(/`backup` must be "latest"/);
    expect(() => parseRestoreEvent({ backup: `s3://my-backups/media-backups/${KEY}` })).toThrow(
      /an s3:\/\/ URL is read only by the Lambda functions/,
    );
  });
});

describe('restore event: import (demo)', () => {
  const STORE = { bucket: 'my-backups', prefix: 'media-backups/' };

  it.each([
    'media.tar.gz',
    'import/media.tar.gz',
    'media-backups/import/media.tar.gz',
    's3://my-backups/media-backups/import/media.tar.gz',
  ])('reads %s as import/media.tar.gz', (value) => {
    expect(parseRestoreEvent({ import: value }, STORE).import).toBe('import/media.tar.gz');
  });

  it('leaves import undefined for an ordinary restore', () => {
    expect(parseRestoreEvent({}, STORE).import).toBeUndefined();
  });

  it.each([
    [
      { import: '../media.tar.gz' },
      /`import` must name a \.tar\.gz uploaded to s3:\/\/my-backups\/media-backups\/import\/, like "media\.tar\.gz"/,
    ],
    [{ import: 'media.zip' }, /`import` must name a \.tar\.gz/],
    [{ import: 's3://other/media-backups/import/media.tar.gz' }, /`import` must name a \.tar\.gz/],
    [
      { import: 'media.tar.gz', target: 'restores/x' },
      /`import` cannot be combined with `target`: it always extracts into the empty media folder/,
    ],
    [
      { import: 'media.tar.gz', backup: 'latest', dryRun: true },
      /`import` cannot be combined with `backup`, `dryRun`/,
    ],
  ])('refuses %j', (event, message) => {
    expect(() => parseRestoreEvent(event, STORE)).toThrow(EventValidationError);
    expect(() => parseRestoreEvent(event, STORE)).toThrow(message);
  });
});
