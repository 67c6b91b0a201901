import { Stack } from 'aws-cdk-lib';
import { Code, Function as LambdaFunction, Runtime } from 'aws-cdk-lib/aws-lambda';
import { describe, expect, it } from 'vitest';
import { BackupSchedules, DEFAULT_BACKUP_TIME, DEFAULT_CONFIG, localTimeConflicts } from '../../lib/index.js';
import { newTestApp } from './test-app.js';

const NOW = new Date('2026-12-01T12:00:00Z');
// Zones whose changes fall at different local times: Europe at 01:00 UTC (02:00 CET, 03:00 EET,
// 01:00 GMT), the US at 02:00 local, the southern hemisphere in the other half of the year, Chile
// at midnight, Cuba at 00:00, Lord Howe by half an hour.
const ZONES = [
  'Europe/Berlin',
  'Europe/London',
  'Europe/Helsinki',
  'America/New_York',
  'America/Los_Angeles',
  'America/Santiago',
  'America/Havana',
  'Australia/Sydney',
  'Australia/Lord_Howe',
  'Pacific/Auckland',
  'Asia/Beirut',
  'Africa/Cairo',
  'UTC',
];

describe('localTimeConflicts', () => {
  it.each([
    [
      'Europe/Berlin',
      2,
      30,
      [
        { date: '2027-03-28', kind: 'gap' },
        { date: '2027-10-31', kind: 'repeat' },
      ],
    ],
    ['America/New_York', 2, 0, [{ date: '2027-03-14', kind: 'gap' }]],
    ['America/New_York', 1, 30, [{ date: '2027-11-07', kind: 'repeat' }]],
    [
      'Australia/Sydney',
      2,
      30,
      [
        { date: '2027-04-04', kind: 'repeat' },
        { date: '2027-10-03', kind: 'gap' },
      ],
    ],
    [
      'Europe/Helsinki',
      3,
      30,
      [
        { date: '2027-03-28', kind: 'gap' },
        { date: '2027-10-31', kind: 'repeat' },
      ],
    ],
    ['UTC', 2, 0, []],
  ])('%s %i:%i', (zone, hour, minute, expected) => {
    expect(localTimeConflicts({ hour, minute }, zone, NOW)).toEqual(expected);
  });

  it(`keeps the default ${DEFAULT_BACKUP_TIME} (and its verify 6 h later) clear of the changes in common zones`, () => {
    expect(DEFAULT_CONFIG.backupSchedule).toBe(DEFAULT_BACKUP_TIME);
    const [hour, minute] = DEFAULT_BACKUP_TIME.split(':').map(Number) as [number, number];
    for (const zone of ZONES) {
      expect({ zone, conflicts: localTimeConflicts({ hour, minute }, zone, NOW) }).toEqual({
        zone,
        conflicts: [],
      });
      expect({ zone, conflicts: localTimeConflicts({ hour: hour + 6, minute }, zone, NOW) }).toEqual({
        zone,
        conflicts: [],
      });
    }
    // The old default: skipped on spring-forward day in Europe and the US.
    expect(localTimeConflicts({ hour: 2, minute: 0 }, 'Europe/Berlin', NOW).map((c) => c.kind)).toContain(
      'gap',
    );
  });
});

describe('BackupSchedules refuses a time in a daylight-saving change', () => {
  function schedules(backupTime: string, timeZone: string) {
    const stack = new Stack(newTestApp({}), 'Test');
    const fn = (id: string) =>
      new LambdaFunction(stack, id, {
        runtime: Runtime.NODEJS_24_X,
        handler: 'index.handler',
        code: Code.fromInline('exports.handler = async () => {};'),
      });
    const backupFunction = fn('Backup');
    const verifyFunction = fn('Verify');
    return () =>
      new BackupSchedules(stack, 'Schedules', {
        backupFunction,
        verifyFunction,
        backupTime,
        timeZone,
        now: NOW,
      });
  }

  it('names the time, the zone, the day and the way out', () => {
    expect(schedules('02:30', 'Europe/Berlin')).toThrow(
      /`backupTime` 02:30 in Europe\/Berlin falls into a daylight-saving change on 2027-03-28 \(skipped: clocks jump past it\), 2027-10-31 \(passes twice: clocks go back\): EventBridge Scheduler skips .* e\.g\. 04:00/,
    );
    expect(schedules('02:30', 'Europe/Berlin')).toThrow(
      expect.objectContaining({ name: 'ScheduleTimeError' }),
    );
  });

  it('checks the deep verify time too (backup time + 6 h)', () => {
    expect(schedules('20:00', 'America/New_York')).toThrow(
      /`backupTime \+ verifyDelayHours` 02:00 in America\/New_York/,
    );
  });

  it.each([
    ['04:00', 'Europe/Berlin'],
    ['02:30', 'UTC'],
    ['01:30', 'Asia/Tokyo'],
  ])('accepts %s in %s', (time, zone) => {
    expect(schedules(time, zone)).not.toThrow();
  });
});
