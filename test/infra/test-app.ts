import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { App, type AppProps } from 'aws-cdk-lib';
import { CDK_APP_MODE_CONTEXT } from 'aws-cdk-lib/cx-api';
import { afterAll } from 'vitest';

/** The context of `cdk.json` (feature flags and settings), as `cdk synth` sees it. */
export const cdkJsonContext: Record<string, unknown> = JSON.parse(
  readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8'),
).context;

// An App without `outdir` writes its cloud assembly to a fresh /tmp/cdk.out* folder that nobody
// removes (about 84 per run of the infra tests). Every test App writes below one temp folder per
// test file instead, removed when the file's tests end.
let root: string | undefined;
afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
  root = undefined;
});

/** A fresh output folder for one App, removed after the test file. */
export function testOutdir(): string {
  root ??= mkdtempSync(path.join(tmpdir(), 'media-backup-infra-'));
  return mkdtempSync(path.join(root, 'cdk.out-'));
}

/**
 * An App for infra tests: `cdk.json`'s context (or `context`), "inmemory" mode (a validation
 * failure throws with the full report instead of only printing it), no bundling (synth.test.ts
 * bundles for real), and an output folder that is cleaned up.
 */
export function newTestApp(context: Record<string, unknown> = cdkJsonContext, props: AppProps = {}): App {
  return new App({
    ...props,
    outdir: testOutdir(),
    context: { ...context, [CDK_APP_MODE_CONTEXT]: 'inmemory', 'aws:cdk:bundling-stacks': [] },
  });
}

/** An App with only the given context (config tests), writing into a cleaned-up folder. */
export function bareTestApp(context: Record<string, unknown> = {}): App {
  return new App({ outdir: testOutdir(), context });
}
