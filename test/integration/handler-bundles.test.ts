import { builtinModules, createRequire } from 'node:module';
import path from 'node:path';
import { build } from 'esbuild';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { BackupSucceeded } from '../../lambda/core/archiver/backup.js';
import type { VerifyResult } from '../../lambda/core/checker/verify.js';
import type { RestoreHandlerResult } from '../../lambda/handlers/restore.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeLambdaContext } from '../fixtures/lambda-context.js';
import { makeMediaTree, snapshotTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver, stubHandlerEnvForS3rver } from '../fixtures/s3rver.js';

/**
 * Each handler bundled as the CDK's NodejsFunction will (esbuild, platform node, target node22, CJS)
 * but with nothing external, @aws-sdk/* included: lib-storage must be in the
 * bundle, and a complete bundle does not depend on the runtime's SDK version. Loaded from a folder
 * with no node_modules above it, a missing module would fail here rather than in AWS.
 */
const HANDLERS = [
  'backup',
  'restore',
  'verify',
  'monitor',
  'notify',
  // The sharded backup's steps (lib/constructs/state-machines.ts).
  'shard',
  'shard-commit',
  'shard-cleanup',
  // The restore and verify state machines' steps.
  'restore-phase',
  'verify-phase',
] as const;
type HandlerName = (typeof HANDLERS)[number];
type Handler = (event: unknown, context: unknown) => Promise<unknown>;

const dirs = tempDirs();
const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
let s3: S3rverFixture;
let outDir: string;
const bundles = new Map<HandlerName, { file: string; externals: string[]; bytes: number }>();

beforeAll(async () => {
  s3 = await startS3rver();
  outDir = await dirs.make('bundles-');
  for (const name of HANDLERS) {
    const file = path.join(outDir, name, 'index.js');
    const result = await build({
      entryPoints: [path.resolve(`lambda/handlers/${name}.ts`)],
      outfile: file,
      bundle: true,
      platform: 'node',
      target: 'node22',
      format: 'cjs',
      external: [],
      metafile: true,
      logLevel: 'silent',
    });
    const output = result.metafile.outputs[path.relative(process.cwd(), file)];
    bundles.set(name, {
      file,
      externals: (output?.imports ?? []).filter((i) => i.external).map((i) => i.path),
      bytes: output?.bytes ?? 0,
    });
  }
}, 120_000);
afterAll(async () => {
  await s3?.stop();
  await dirs.cleanup();
});
afterEach(() => {
  vi.unstubAllEnvs();
});

function loadHandler(name: HandlerName): Handler {
  const bundle = bundles.get(name)!;
  const mod = createRequire(bundle.file)(bundle.file) as { handler?: Handler };
  if (typeof mod.handler !== 'function') throw new Error(`${bundle.file} does not export handler`);
  return mod.handler;
}

describe('handler bundles (esbuild, CJS, node22, everything bundled)', () => {
  it.each(HANDLERS)('the %s bundle imports only Node built-ins and exports handler', (name) => {
    const bundle = bundles.get(name)!;
    expect(bundle.externals.filter((m) => !builtins.has(m))).toEqual([]);
    expect(bundle.bytes).toBeGreaterThan(0);
    expect(loadHandler(name)).toBeTypeOf('function');
  });

  it('the bundled handlers back up, verify and restore against s3rver', async () => {
    const mount = await dirs.make('efs-');
    await makeMediaTree(path.join(mount, 'media'), { files: 20, seed: 13 });
    stubHandlerEnvForS3rver(vi.stubEnv, s3, { prefix: 'bundles/', mount: mount });

    const backup = (await loadHandler('backup')({ type: 'full' }, makeLambdaContext())) as BackupSucceeded;
    expect(backup).toMatchObject({ status: 'SUCCEEDED', type: 'full', files: 20 });

    const verify = (await loadHandler('verify')({ deep: true }, makeLambdaContext())) as VerifyResult;
    expect(verify).toMatchObject({
      status: 'SUCCEEDED',
      backups: [expect.objectContaining({ backupId: backup.backupId, filesVerified: 20 })],
    });

    const restore = (await loadHandler('restore')({}, makeLambdaContext())) as RestoreHandlerResult;
    expect(restore.targetPath).toBe(`restores/${backup.backupId}`);
    expect(await snapshotTree(path.join(mount, 'restores', backup.backupId))).toEqual(
      await snapshotTree(path.join(mount, 'media')),
    );

    const health = (await loadHandler('monitor')({}, makeLambdaContext())) as { status: string };
    expect(health.status).toBe('ok');

    // Errors keep their class names through the bundle (alarms and tests match on `name`).
    await expect(loadHandler('backup')({ type: 'weekly' }, makeLambdaContext())).rejects.toMatchObject({
      name: 'EventValidationError',
      message: expect.stringContaining('`type` must be one of auto, full, incremental (got "weekly")'),
    });
  });
});
