#!/usr/bin/env node
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { loadConfig, MediaBackupStack } from '../lib/index.js';

const app = new App();

new MediaBackupStack(app, 'MediaBackup', {
  description: 'media-backup: scheduled tar.gz backups of a media tree into S3',
  config: loadConfig(app),
  // Environment-agnostic unless the CLI knows the target; nothing is looked up, so synth works offline.
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});

// cdk-nag 3 is a policy-validation plugin: an unacknowledged finding fails synth. Each
// acknowledgement (Validations.of(construct).acknowledge) sits next to the construct it excuses.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
