import { App, type AppProps, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { loadConfig } from './config.js';
import { MediaBackupStack } from './media-backup-stack.js';

/** The environment variables the CDK CLI sets for the app (`CDK_DEFAULT_ACCOUNT`, `CDK_DEFAULT_REGION`). */
export type CdkEnvironmentVariables = Readonly<Record<string, string | undefined>>;

/**
 * The CDK app of `bin/app.ts`: the `MediaBackup` stack with the settings from context, checked by
 * cdk-nag. The stack takes the CLI's account and region when it knows them, and synth stays offline
 * either way: nothing in the stack looks anything up (see `MediaBackupStack.availabilityZones`).
 */
export function buildApp(variables: CdkEnvironmentVariables = process.env, props: AppProps = {}) {
  const app = new App(props);
  const stack = new MediaBackupStack(app, 'MediaBackup', {
    description: 'media-backup: scheduled tar.gz backups of a media tree into S3',
    config: loadConfig(app),
    env: { account: variables.CDK_DEFAULT_ACCOUNT, region: variables.CDK_DEFAULT_REGION },
  });
  // cdk-nag 3 is a policy-validation plugin: an unacknowledged finding fails synth. Each
  // acknowledgement (Validations.of(construct).acknowledge) sits next to the construct it excuses.
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stack };
}
