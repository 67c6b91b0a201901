import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const execFileAsync = promisify(execFile);
const out: string[] = [];
afterAll(async () => {
  await Promise.all(out.map((d) => rm(d, { recursive: true, force: true })));
});

describe('cdk synth', () => {
  it('synthesizes offline with no AWS credentials or account', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cdk-out-'));
    out.push(dir);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      CDK_DISABLE_VERSION_CHECK: '1',
      AWS_EC2_METADATA_DISABLED: 'true',
    };
    for (const name of Object.keys(env))
      if (/^(AWS_(ACCESS|SECRET|SESSION|PROFILE)|CDK_DEFAULT_)/.test(name)) delete env[name];
    // An unreachable proxy: any network call the synth tried would fail loudly instead of hanging.
    env.HTTPS_PROXY = 'http://127.0.0.1:9';
    env.HTTP_PROXY = 'http://127.0.0.1:9';

    await execFileAsync('npx', ['cdk', 'synth', '--quiet', '--output', dir], { env, timeout: 120_000 });

    expect(await readdir(dir)).toContain('MediaBackup.template.json');
    const template = JSON.parse(await readFile(path.join(dir, 'MediaBackup.template.json'), 'utf8'));
    const types = Object.values(template.Resources as Record<string, { Type: string }>).map((r) => r.Type);
    expect(types).toContain('AWS::S3::Bucket');
    // backup, restore, verify, monitor, the sharded backup's shard, commit and cleanup, and the
    // restore and verify state machines' phase functions; notify only with notificationEmail.
    expect(types.filter((type) => type === 'AWS::Lambda::Function')).toHaveLength(9);
    expect(types.filter((type) => type === 'AWS::Scheduler::Schedule')).toHaveLength(4);
    // esbuild bundled each handler with the SDK and lib-storage inside (externalModules: []).
    const assets = (await readdir(dir)).filter((name) => name.startsWith('asset.'));
    expect(assets).toHaveLength(9);
    for (const asset of assets) {
      const bundle = await readFile(path.join(dir, asset, 'index.js'), 'utf8');
      expect(bundle).toContain('CompleteMultipartUpload');
    }
  }, 120_000);
});
