#!/usr/bin/env -S node --max-semi-space-size=2
// --max-semi-space-size=2 (MiB): V8's young generation otherwise grows to 3 x 16 MiB while the
// backup allocates read buffers; capped, peak RSS of a 1 GiB backup drops by ~25 MB at no measured
// speed cost (npm run bench). `node bin/media-backup.mjs` works too, without the cap.
// Entry point for `npx media-backup`. Runs the TypeScript CLI with no build step for the user: on
// first use (or after a source changed) it bundles bin/media-backup.ts with esbuild into
// node_modules/.cache/media-backup/, then runs that plain JavaScript. Compared with compiling on
// every start through tsx, this saves ~0.5 s of start-up and the loader thread's memory (measured
// by `npm run bench`). Without esbuild it falls back to tsx.
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

process.env.MEDIA_BACKUP_CLI = '1';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const cacheDir = path.join(root, 'node_modules', '.cache', 'media-backup');
const bundle = path.join(cacheDir, 'cli.mjs');
const inputsFile = path.join(cacheDir, 'inputs.json');

/** The bundle is current when no source it was built from is newer than it. */
function bundleIsCurrent() {
  try {
    const built = statSync(bundle).mtimeMs;
    const inputs = JSON.parse(readFileSync(inputsFile, 'utf8'));
    return inputs.length > 0 && inputs.every((file) => statSync(path.join(root, file)).mtimeMs <= built);
  } catch {
    return false;
  }
}

async function buildBundle() {
  const esbuild = await import('esbuild');
  mkdirSync(cacheDir, { recursive: true });
  const temp = `${bundle}.${process.pid}.tmp`;
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: ['bin/media-backup.ts'],
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: temp,
    metafile: true,
    logLevel: 'error',
  });
  writeFileSync(inputsFile, JSON.stringify(Object.keys(result.metafile.inputs)));
  // Atomic: a concurrent run sees the old bundle or the new one, never half of one.
  renameSync(temp, bundle);
}

let entry;
try {
  if (!bundleIsCurrent()) await buildBundle();
  entry = pathToFileURL(bundle).href;
} catch {
  const { register } = await import('tsx/esm/api');
  register();
  entry = './media-backup.ts';
}
await import(entry);
