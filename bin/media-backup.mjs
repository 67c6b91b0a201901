#!/usr/bin/env -S UV_THREADPOOL_SIZE=64 node --max-semi-space-size=2
// UV_THREADPOOL_SIZE=64: on EFS/NFS the backup reads many files ahead with async calls, and libuv's
// default pool of 4 threads would cap the calls in flight at 4 (measured with the latency fs at 1 ms
// per call: 201 vs 463 files/s). It must be set before the process starts: the pool exists before
// this file's first line runs. On a local disk the backup reads synchronously and the pool idles.
// --max-semi-space-size=2 (MiB): V8's young generation otherwise grows to 3 x 16 MiB while the
// backup allocates read buffers; capped, peak RSS of a 1 GiB backup drops by ~25 MB at no measured
// speed cost (npm run bench). `node bin/media-backup.mjs` works too, without the cap.
// Entry point for `npx media-backup`. Runs the TypeScript CLI with no build step for the user: on
// first use (or after a source changed) it bundles bin/media-backup.ts with esbuild into
// node_modules/.cache/media-backup/, then runs that plain JavaScript. Compared with compiling on
// every start through tsx, this saves ~0.5 s of start-up and the loader thread's memory (measured
// by `npm run bench`). Without esbuild it falls back to tsx.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

process.env.MEDIA_BACKUP_CLI = '1';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const cacheDir = path.join(root, 'node_modules', '.cache', 'media-backup');
// Points at the current build folder: { dir, entry, inputs }. Replaced atomically (rename).
const currentFile = path.join(cacheDir, 'current.json');

/** The current build's entry, when no source it was built from is newer than it; else undefined. */
function currentEntry() {
  try {
    const current = JSON.parse(readFileSync(currentFile, 'utf8'));
    const entryFile = path.join(cacheDir, current.dir, current.entry);
    const built = statSync(entryFile).mtimeMs;
    const fresh =
      current.inputs.length > 0 &&
      current.inputs.every((file) => statSync(path.join(root, file)).mtimeMs <= built);
    return fresh ? entryFile : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Bundles with code splitting, so a module loaded with `await import()` (the S3 store and the AWS
 * SDK behind it) stays a separate chunk that only s3:// runs load: a folder-store command starts
 * without parsing the SDK. Each build goes to a new folder; builds older than a day are removed
 * (a process started from an old build may still load its chunks lazily).
 */
async function buildBundle() {
  const esbuild = await import('esbuild');
  mkdirSync(cacheDir, { recursive: true });
  const dir = `build-${Date.now()}-${process.pid}`;
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: { cli: 'bin/media-backup.ts' },
    bundle: true,
    splitting: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outdir: path.join(cacheDir, dir),
    outExtension: { '.js': '.mjs' },
    metafile: true,
    logLevel: 'error',
  });
  const temp = `${currentFile}.${process.pid}.tmp`;
  writeFileSync(temp, JSON.stringify({ dir, entry: 'cli.mjs', inputs: Object.keys(result.metafile.inputs) }));
  // Atomic: a concurrent run sees the old build or the new one, never half of one.
  renameSync(temp, currentFile);
  for (const old of readdirSync(cacheDir)) {
    if (!old.startsWith('build-') || old === dir) continue;
    const age = Date.now() - Number(old.split('-')[1]);
    if (age > 24 * 60 * 60 * 1000) rmSync(path.join(cacheDir, old), { recursive: true, force: true });
  }
  return path.join(cacheDir, dir, 'cli.mjs');
}

let entry;
try {
  entry = pathToFileURL(currentEntry() ?? (await buildBundle())).href;
} catch {
  const { register } = await import('tsx/esm/api');
  register();
  entry = './media-backup.ts';
}
await import(entry);
