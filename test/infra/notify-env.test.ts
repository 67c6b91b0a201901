import { type CfnElement, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { MediaBackupStack, parseConfig } from '../../lib/index.js';
import { newTestApp } from './test-app.js';

// Issue 11, "Emails a tired operator reads at a glance": the notify function shows times in the
// stack's zone and names the real folders, so it gets the zone and the paths the other functions use.

function notifyVariables(raw: Record<string, unknown>): Record<string, unknown> {
  const stack = new MediaBackupStack(newTestApp(), 'MediaBackup', { config: parseConfig(raw) });
  const fn = stack.notifications.notifyFunction!.function;
  const logicalId = Stack.of(fn).getLogicalId(fn.node.defaultChild as CfnElement);
  const resource = Template.fromStack(stack).findResources('AWS::Lambda::Function')[logicalId];
  return (resource.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
}

describe('notify function environment', () => {
  it('carries the time zone, the mount, the media and restore folders', () => {
    expect(
      notifyVariables({
        notificationEmail: 'ops@example.com',
        timeZone: 'Europe/Berlin',
        mediaPath: 'shared/media',
        restoresPath: 'shared/restores',
      }),
    ).toMatchObject({
      TIME_ZONE: 'Europe/Berlin',
      EFS_MOUNT: '/mnt/efs',
      MEDIA_PATH: 'shared/media',
      RESTORES_PATH: 'shared/restores',
    });
  });

  it('has the memory of the monitor, whose health checks the digest runs', () => {
    const stack = new MediaBackupStack(newTestApp(), 'MediaBackup', {
      config: parseConfig({ notificationEmail: 'ops@example.com' }),
    });
    const fn = stack.notifications.notifyFunction!.function;
    const logicalId = Stack.of(fn).getLogicalId(fn.node.defaultChild as CfnElement);
    expect(
      Template.fromStack(stack).findResources('AWS::Lambda::Function')[logicalId].Properties.MemorySize,
    ).toBe(512);
  });

  it('defaults TIME_ZONE to UTC like the schedules', () => {
    expect(notifyVariables({ notificationEmail: 'ops@example.com' })).toMatchObject({ TIME_ZONE: 'UTC' });
  });
});
