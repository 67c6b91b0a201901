import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LEVEL } from '../../lambda/core/archiver/parallel-gzip.js';
import { CONFIG_KEYS, ConfigError, DEFAULT_CONFIG, loadConfig, parseConfig } from '../../lib/config.js';
import { bareTestApp } from './test-app.js';

const KMS_KEY_ARN = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const MRK_KEY_ARN = 'arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/mrk-0123456789abcdef0123456789abcdef';

describe('parseConfig', () => {
  it('fills in the defaults when nothing is set', () => {
    const config = parseConfig({});

    expect(config).toEqual({ ...DEFAULT_CONFIG, createS3GatewayEndpoint: true });
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

    expect(config).toMatchObject({
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

  it.each<[Record<string, unknown>, Record<string, unknown> | undefined]>([
    [{}, undefined],
    [{ objectLock: 'false' }, undefined],
    [{ objectLock: 'true' }, { objectLockMode: 'GOVERNANCE' }],
    [{ objectLock: true, objectLockMode: 'GOVERNANCE' }, { objectLockMode: 'GOVERNANCE' }],
    [{ objectLock: 'true', objectLockMode: 'compliance' }, { objectLockMode: 'COMPLIANCE' }],
  ])('objectLockMode: %o gives %o (GOVERNANCE by default, only with objectLock)', (raw, expected) => {
    const config = parseConfig(raw);

    if (expected) expect(config).toMatchObject({ objectLock: true, ...expected });
    else expect(config).not.toHaveProperty('objectLockMode');
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
    [
      { objectLock: 'true', objectLockMode: 'LEGAL_HOLD' },
      /`objectLockMode` must be one of GOVERNANCE, COMPLIANCE \(got "LEGAL_HOLD"\)/,
    ],
    [
      { objectLock: 'true', objectLockMode: 1 },
      /`objectLockMode` must be one of GOVERNANCE, COMPLIANCE \(got 1\)/,
    ],
    [
      { objectLockMode: 'COMPLIANCE' },
      /`objectLockMode` needs `objectLock`: true \(got objectLockMode COMPLIANCE with objectLock false\)/,
    ],
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
    const app = bareTestApp({ retentionDays: '60', fullIntervalDays: 14, objectLock: 'true' });

    expect(loadConfig(app)).toEqual({
      ...DEFAULT_CONFIG,
      createS3GatewayEndpoint: true,
      retentionDays: 60,
      fullIntervalDays: 14,
      objectLock: true,
      objectLockMode: 'GOVERNANCE',
    });
  });

  it('fails on invalid context with the key named', () => {
    const app = bareTestApp({ fullIntervalDays: 'weekly' });

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
    expect(loadConfig(bareTestApp(context))).toEqual({ ...DEFAULT_CONFIG, createS3GatewayEndpoint: true });
  });
});

describe('parseConfig: schedules, functions and the file system', () => {
  const EXISTING = {
    fileSystemId: 'fs-0123456789abcdef0',
    accessPointId: 'fsap-0123456789abcdef0',
    securityGroupId: 'sg-0123456789abcdef0',
    vpcId: 'vpc-0123456789abcdef0',
    privateSubnetIds: 'subnet-0123456789abcdef0,subnet-0123456789abcdef1',
    availabilityZones: 'eu-west-1a,eu-west-1b',
  };

  it('accepts the context forms of every new key', () => {
    const config = parseConfig({
      backupSchedule: '3:30',
      fullBackupDay: 'saturday',
      timeZone: 'America/Argentina/Buenos_Aires',
      notificationEmail: ' ops@example.com ',
      posixUid: '33',
      posixGid: 0,
      mediaPath: 'app/media',
      restoresPath: 'app/restores',
      backupExclude: '*.tmp, cache/**',
      backupMemoryMb: '4096',
      compressionLevel: '1',
      restoreMemoryMb: 3008,
      verifyMemoryMb: '128',
      logRetentionDays: '365',
    });

    expect(config).toMatchObject({
      backupSchedule: '03:30',
      fullBackupDay: 'SAT',
      timeZone: 'America/Argentina/Buenos_Aires',
      notificationEmail: 'ops@example.com',
      posixUid: 33,
      posixGid: 0,
      mediaPath: 'app/media',
      restoresPath: 'app/restores',
      backupExclude: ['*.tmp', 'cache/**'],
      backupMemoryMb: 4096,
      compressionLevel: 1,
      restoreMemoryMb: 3008,
      verifyMemoryMb: 128,
      logRetentionDays: 365,
      createS3GatewayEndpoint: true,
    });
    expect(config).not.toHaveProperty('existingFileSystem');
  });

  it('reads an existing file system from comma-separated ids or lists, without a gateway endpoint by default', () => {
    const config = parseConfig({ ...EXISTING, availabilityZones: ['eu-west-1a', 'eu-west-1b'] });

    expect(config.existingFileSystem).toEqual({
      fileSystemId: 'fs-0123456789abcdef0',
      accessPointId: 'fsap-0123456789abcdef0',
      securityGroupId: 'sg-0123456789abcdef0',
      vpcId: 'vpc-0123456789abcdef0',
      privateSubnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'],
      availabilityZones: ['eu-west-1a', 'eu-west-1b'],
    });
    expect(config.createS3GatewayEndpoint).toBe(false);
  });

  it('creates a gateway endpoint in an existing VPC when its route tables are given', () => {
    const config = parseConfig({
      ...EXISTING,
      createS3GatewayEndpoint: 'true',
      privateSubnetRouteTableIds: 'rtb-0123456789abcdef0,rtb-0123456789abcdef1',
    });

    expect(config.createS3GatewayEndpoint).toBe(true);
    expect(config.existingFileSystem?.privateSubnetRouteTableIds).toEqual([
      'rtb-0123456789abcdef0',
      'rtb-0123456789abcdef1',
    ]);
  });

  it.each<[Record<string, unknown>, RegExp]>([
    [{ backupSchedule: '24:00' }, /`backupSchedule` must be a time of day HH:MM/],
    [{ backupSchedule: '2am' }, /`backupSchedule` must be a time of day HH:MM/],
    [{ fullBackupDay: 'SUNDAYS' }, /`fullBackupDay` must be one of MON, TUE, WED, THU, FRI, SAT, SUN/],
    [{ fullBackupDay: 7 }, /`fullBackupDay` must be one of/],
    [{ timeZone: 'CET+1' }, /`timeZone` must be an IANA time zone name/],
    [{ timeZone: 'europe berlin' }, /`timeZone` must be an IANA time zone name/],
    [{ notificationEmail: 'ops@' }, /`notificationEmail` must be an email address/],
    [{ posixUid: -1 }, /`posixUid` must be a whole number from 0 to 4294967295/],
    [{ posixGid: 'staff' }, /`posixGid` must be a whole number/],
    [{ mediaPath: '/srv/media' }, /`mediaPath` must be a relative path/],
    [{ mediaPath: 'media/../etc' }, /`mediaPath` must be a relative path/],
    [{ restoresPath: 'media/restores' }, /`restoresPath` must not be inside `mediaPath`/],
    [{ backupExclude: ['*.tmp', ''] }, /`backupExclude` must be a comma-separated string or a list/],
    [{ backupMemoryMb: 64 }, /`backupMemoryMb` must be a whole number from 128 to 10240/],
    [{ compressionLevel: '10' }, /`compressionLevel` must be a whole number from 0 to 9 \(got "10"\)/],
    [{ restoreMemoryMb: '20000' }, /`restoreMemoryMb` must be a whole number from 128 to 10240/],
    [{ verifyMemoryMb: 1.5 }, /`verifyMemoryMb` must be a whole number/],
    [{ logRetentionDays: 10 }, /`logRetentionDays` must be a retention CloudWatch Logs offers/],
    [{ createS3GatewayEndpoint: 'yes' }, /`createS3GatewayEndpoint` must be true or false/],
    [{ fileSystemId: 'fs-0123456789abcdef0' }, /missing `accessPointId`, `securityGroupId`, `vpcId`/],
    [{ privateSubnetRouteTableIds: 'rtb-0123456789abcdef0' }, /`privateSubnetRouteTableIds` applies only/],
  ])('rejects %o', (raw, message) => {
    expect(() => parseConfig(raw)).toThrow(message);
  });

  it.each<[Record<string, unknown>, RegExp]>([
    [{ fileSystemId: 'fs-xyz' }, /`fileSystemId` must be an id like fs-/],
    [{ accessPointId: 'fs-0123456789abcdef0' }, /`accessPointId` must be an id like fsap-/],
    [{ securityGroupId: 'sg-1' }, /`securityGroupId` must be an id like sg-/],
    [{ vpcId: 'vpc' }, /`vpcId` must be an id like vpc-/],
    [{ privateSubnetIds: 'subnet-0123456789abcdef0,subnet-bad' }, /`privateSubnetIds` must list ids/],
    [{ availabilityZones: 'eu-west-1' }, /`availabilityZones` must list ids like eu-west-1a/],
    [
      { availabilityZones: 'eu-west-1a' },
      /`privateSubnetIds` and `availabilityZones` must have the same length/,
    ],
    [
      { createS3GatewayEndpoint: true },
      /`createS3GatewayEndpoint` with an existing VPC needs `privateSubnetRouteTableIds`/,
    ],
    [
      { privateSubnetRouteTableIds: 'rtb-0123456789abcdef0', createS3GatewayEndpoint: true },
      /`privateSubnetRouteTableIds` must list one route table per subnet/,
    ],
  ])('rejects an existing file system with %o', (override, message) => {
    expect(() => parseConfig({ ...EXISTING, ...override })).toThrow(message);
  });
});

describe('parseConfig: monitoring and email', () => {
  it('defaults the monitoring settings and leaves email off', () => {
    const config = parseConfig({});

    expect(config).toMatchObject({
      maxBackupAgeHours: 48,
      minBackupBytes: 1_000_000,
      maxShrinkPercent: 50,
      weeklyDigest: true,
      monitorMemoryMb: 512,
      dashboard: true,
    });
    expect(config).not.toHaveProperty('efsWarnBytes');
    expect(config).not.toHaveProperty('notificationEmail');
    expect(config).not.toHaveProperty('senderEmail');
  });

  it('sends from notificationEmail unless senderEmail is set', () => {
    expect(parseConfig({ notificationEmail: 'ops@example.com' }).senderEmail).toBe('ops@example.com');
    expect(
      parseConfig({ notificationEmail: 'ops@example.com', senderEmail: 'backup@example.com' }).senderEmail,
    ).toBe('backup@example.com');
  });

  it('accepts the strings that `-c key=value` delivers', () => {
    expect(
      parseConfig({
        maxBackupAgeHours: '72',
        minBackupBytes: '0',
        maxShrinkPercent: '100',
        efsWarnBytes: '5000000000',
        weeklyDigest: 'false',
        monitorMemoryMb: '1024',
        dashboard: 'false',
      }),
    ).toMatchObject({
      maxBackupAgeHours: 72,
      minBackupBytes: 0,
      maxShrinkPercent: 100,
      efsWarnBytes: 5_000_000_000,
      weeklyDigest: false,
      monitorMemoryMb: 1024,
      dashboard: false,
    });
  });

  it.each<[Record<string, unknown>, RegExp]>([
    [{ senderEmail: 'backup@example.com' }, /`senderEmail` needs `notificationEmail`/],
    [
      { notificationEmail: 'ops@example.com', senderEmail: 'not-an-address' },
      /`senderEmail` must be an email address \(got "not-an-address"\)/,
    ],
    [{ notificationEmail: 'ops' }, /`notificationEmail` must be an email address/],
    [{ maxBackupAgeHours: 24 }, /`maxBackupAgeHours` must be a whole number from 25 to 8760 \(got 24\)/],
    [{ maxBackupAgeHours: 'two days' }, /`maxBackupAgeHours` must be a whole number/],
    [{ minBackupBytes: -1 }, /`minBackupBytes` must be a whole number from 0/],
    [{ maxShrinkPercent: 0 }, /`maxShrinkPercent` must be a whole number from 1 to 100 \(got 0\)/],
    [{ maxShrinkPercent: 101 }, /`maxShrinkPercent` must be a whole number from 1 to 100/],
    [{ efsWarnBytes: 0 }, /`efsWarnBytes` must be a whole number from 1/],
    [{ efsWarnBytes: '1.5GB' }, /`efsWarnBytes` must be a whole number/],
    [{ weeklyDigest: 'weekly' }, /`weeklyDigest` must be true or false \(got "weekly"\)/],
    [{ dashboard: 'no' }, /`dashboard` must be true or false \(got "no"\)/],
    [{ dashboard: 0 }, /`dashboard` must be true or false \(got 0\)/],
    [{ monitorMemoryMb: 64 }, /`monitorMemoryMb` must be a whole number from 128 to 10240 \(got 64\)/],
  ])('rejects %o', (raw, message) => {
    expect(() => parseConfig(raw)).toThrow(ConfigError);
    expect(() => parseConfig(raw)).toThrow(message);
  });
});

describe('parseConfig: deploy traps', () => {
  it('leaves reserved concurrency, the existing SES identity and the raw alarm email off by default', () => {
    expect(parseConfig({})).toMatchObject({
      reserveBackupConcurrency: false,
      useExistingSesIdentity: false,
      rawAlarmEmail: false,
    });
    expect(parseConfig({}).demoAvailabilityZones).toBeUndefined();
  });

  it('accepts the switches and demo zones as `-c key=value` strings', () => {
    expect(
      parseConfig({
        reserveBackupConcurrency: 'true',
        notificationEmail: 'ops@example.com',
        useExistingSesIdentity: 'true',
        rawAlarmEmail: 'true',
        demoAvailabilityZones: 'eu-west-1b,eu-west-1c',
      }),
    ).toMatchObject({
      reserveBackupConcurrency: true,
      useExistingSesIdentity: true,
      rawAlarmEmail: true,
      demoAvailabilityZones: ['eu-west-1b', 'eu-west-1c'],
    });
  });

  it.each([
    [{ reserveBackupConcurrency: 'yes' }, /`reserveBackupConcurrency` must be true or false/],
    [{ useExistingSesIdentity: true }, /`useExistingSesIdentity` needs `notificationEmail`/],
    [{ rawAlarmEmail: true }, /`rawAlarmEmail` needs `notificationEmail`/],
    [{ demoAvailabilityZones: 'eu-west-1a' }, /`demoAvailabilityZones` must list at least two zones/],
    [{ demoAvailabilityZones: 'west,east' }, /`demoAvailabilityZones` must list ids like eu-west-1a/],
    [
      {
        demoAvailabilityZones: 'eu-west-1a,eu-west-1b',
        fileSystemId: 'fs-0123456789abcdef0',
        accessPointId: 'fsap-0123456789abcdef0',
        securityGroupId: 'sg-0123456789abcdef0',
        vpcId: 'vpc-0123456789abcdef0',
        privateSubnetIds: 'subnet-0123456789abcdef0,subnet-0123456789abcdef1',
        availabilityZones: 'eu-west-1a,eu-west-1b',
      },
      /`demoAvailabilityZones` applies only to the demo VPC/,
    ],
  ])('refuses %j', (raw, message) => {
    expect(() => parseConfig(raw)).toThrow(message);
  });
});

describe('the settings schema', () => {
  it('refuses an unknown key by name, suggesting the known key it is probably a typo of', () => {
    const parse = () => parseConfig({ retentionDay: 30, fullIntervalDays: 7, colour: 'blue' });

    expect(parse).toThrow(ConfigError);
    expect(parse).toThrow(/unknown settings `retentionDay` \(did you mean `retentionDays`\?\), `colour`:/);
  });

  it('refuses a misspelt context key, but leaves the namespaced keys of the CDK and libraries alone', () => {
    const app = bareTestApp({
      '@aws-cdk/core:validateAgainstDefaultRules': true,
      'aws:cdk:bundling-stacks': [],
      'availability-zones:account=123456789012:region=eu-west-1': ['eu-west-1a'],
      objectLockmode: 'COMPLIANCE',
    });

    expect(() => loadConfig(app)).toThrow(
      /unknown setting `objectLockmode` \(did you mean `objectLockMode`\?\)/,
    );
  });

  it('reports a rule across keys together with an invalid key', () => {
    const parse = () => parseConfig({ retentionDays: 5, backupPrefix: 'media' });

    expect(parse).toThrow(
      /`backupPrefix` must be empty or end with "\/"[\s\S]*`retentionDays` must be at least/,
    );
  });

  it('takes the default gzip level from the module the Lambda code uses', () => {
    expect(DEFAULT_CONFIG.compressionLevel).toBe(DEFAULT_LEVEL);
  });

  it('has a row in the README table "Configuration (CDK context)" for every key, and no row for another', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('### Configuration (CDK context)'));
    const rows = section
      .slice(0, section.indexOf('\n\n', section.indexOf('| key |')))
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .map((line) => line.split('|').map((cell) => cell.trim()));
    const keysOf = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((match) => match[1]);
    const documented = rows.flatMap(([, keys = '']) => keysOf(keys));

    expect([...documented].sort()).toEqual([...CONFIG_KEYS].sort());
    // The default column shows each default the schema has (lists and keys without one aside).
    for (const [, keys = '', , shown = ''] of rows) {
      for (const key of keysOf(keys)) {
        const value: unknown = DEFAULT_CONFIG[key as keyof typeof DEFAULT_CONFIG];
        if (value !== undefined && !Array.isArray(value)) expect(shown, key).toContain(String(value));
      }
    }
  });
});
