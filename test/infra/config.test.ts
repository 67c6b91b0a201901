import { readFileSync } from 'node:fs';
import { App } from 'aws-cdk-lib';
import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS, ConfigError, DEFAULT_CONFIG, loadConfig, parseConfig } from '../../lib/config.js';

const KMS_KEY_ARN = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const MRK_KEY_ARN = 'arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/mrk-0123456789abcdef0123456789abcdef';

describe('parseConfig', () => {
  it('fills in the defaults when nothing is set', () => {
    const config = parseConfig({});

    expect(config).toEqual(DEFAULT_CONFIG);
    expect(config).not.toHaveProperty('kmsKeyArn');
  });

  it('accepts the strings that `cdk synth -c key=value` delivers', () => {
    const config = parseConfig({
      retentionDays: '45',
      fullIntervalDays: ' 10 ',
      backupPrefix: 'team/media/',
      kmsKeyArn: KMS_KEY_ARN,
      objectLock: 'true',
    });

    expect(config).toEqual({
      retentionDays: 45,
      fullIntervalDays: 10,
      backupPrefix: 'team/media/',
      kmsKeyArn: KMS_KEY_ARN,
      objectLock: true,
    });
  });

  it.each([
    [
      { retentionDays: 7, fullIntervalDays: 7 },
      { retentionDays: 7, fullIntervalDays: 7 },
    ],
    [{ backupPrefix: '' }, { backupPrefix: '' }],
    [{ kmsKeyArn: MRK_KEY_ARN }, { kmsKeyArn: MRK_KEY_ARN }],
    [{ objectLock: false }, { objectLock: false }],
    [{ objectLock: 'false' }, { objectLock: false }],
    [{ retentionDays: null }, { retentionDays: 30 }],
  ])('accepts %o', (raw, expected) => {
    expect(parseConfig(raw)).toMatchObject(expected);
  });

  it('treats an empty `kmsKeyArn` (`-c kmsKeyArn=`) as SSE-S3', () => {
    expect(parseConfig({ kmsKeyArn: '' })).not.toHaveProperty('kmsKeyArn');
  });

  it.each<[Record<string, unknown>, RegExp]>([
    [{ retentionDays: 'abc' }, /`retentionDays` must be a whole number of days >= 1 \(got "abc"\)/],
    [{ retentionDays: 0 }, /`retentionDays` must be a whole number of days >= 1 \(got 0\)/],
    [{ retentionDays: '30.5' }, /`retentionDays` must be a whole number of days >= 1 \(got "30.5"\)/],
    [{ retentionDays: '' }, /`retentionDays` must be a whole number of days >= 1 \(got ""\)/],
    [{ retentionDays: true }, /`retentionDays` must be a whole number of days >= 1 \(got true\)/],
    [{ fullIntervalDays: -1 }, /`fullIntervalDays` must be a whole number of days >= 1 \(got -1\)/],
    [{ fullIntervalDays: 2.5 }, /`fullIntervalDays` must be a whole number of days >= 1 \(got 2.5\)/],
    [{ retentionDays: 5 }, /`retentionDays` must be at least `fullIntervalDays` \(got 5 < 7\)/],
    [{ retentionDays: '10', fullIntervalDays: '14' }, /`retentionDays` must be at least `fullIntervalDays`/],
    [
      { backupPrefix: 'media-backups' },
      /`backupPrefix` must be empty or end with "\/" \(got "media-backups"\)/,
    ],
    [{ backupPrefix: '/media/' }, /`backupPrefix` must not start with "\/" or contain "\/\/"/],
    [{ backupPrefix: 'a//b/' }, /`backupPrefix` must not start with "\/" or contain "\/\/"/],
    [{ backupPrefix: 7 }, /`backupPrefix` must be a string \(got 7\)/],
    [{ kmsKeyArn: 'alias/media-backup' }, /`kmsKeyArn` must be a KMS key ARN/],
    [
      { kmsKeyArn: 'arn:aws:kms:eu-west-1:123456789012:alias/media-backup' },
      /`kmsKeyArn` must be a KMS key ARN/,
    ],
    [
      { kmsKeyArn: 'arn:aws:kms:eu-west-1:123456789012:key/not-a-key-id' },
      /`kmsKeyArn` must be a KMS key ARN/,
    ],
    [{ objectLock: 'yes' }, /`objectLock` must be true or false \(got "yes"\)/],
    [{ objectLock: 1 }, /`objectLock` must be true or false \(got 1\)/],
  ])('rejects %o', (raw, message) => {
    expect(() => parseConfig(raw)).toThrow(message);
  });

  it('reports every invalid key at once, as a ConfigError', () => {
    const parse = () => parseConfig({ retentionDays: 'x', backupPrefix: 'media', objectLock: 'maybe' });

    expect(parse).toThrow(ConfigError);
    expect(parse).toThrow(/`retentionDays`[\s\S]*`backupPrefix`[\s\S]*`objectLock`/);
  });

  it('skips the `retentionDays` >= `fullIntervalDays` rule while either value is itself invalid', () => {
    expect(() => parseConfig({ retentionDays: 'x' })).not.toThrow(/must be at least/);
  });
});

describe('loadConfig', () => {
  it('reads the settings from construct context', () => {
    const app = new App({ context: { retentionDays: '60', fullIntervalDays: 14, objectLock: 'true' } });

    expect(loadConfig(app)).toEqual({
      ...DEFAULT_CONFIG,
      retentionDays: 60,
      fullIntervalDays: 14,
      objectLock: true,
    });
  });

  it('fails on invalid context with the key named', () => {
    const app = new App({ context: { fullIntervalDays: 'weekly' } });

    expect(() => loadConfig(app)).toThrow(
      /`fullIntervalDays` must be a whole number of days >= 1 \(got "weekly"\)/,
    );
  });

  it('matches cdk.json, which repeats the defaults for operators', () => {
    const { context } = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8'));
    const settings = Object.fromEntries(
      CONFIG_KEYS.filter((key) => key in context).map((key) => [key, context[key]]),
    );

    expect(settings).toEqual(DEFAULT_CONFIG);
    expect(loadConfig(new App({ context }))).toEqual(DEFAULT_CONFIG);
  });
});
