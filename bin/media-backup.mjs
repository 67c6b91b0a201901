#!/usr/bin/env node
// Entry point for `npx media-backup`: runs the TypeScript CLI through tsx, no build step needed.
import { availableParallelism } from 'node:os';

// gzip members are compressed on libuv's pool, which file reads share: size it before first use.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, availableParallelism() + 2));
process.env.MEDIA_BACKUP_CLI = '1';
const { register } = await import('tsx/esm/api');
register();
await import('./media-backup.ts');
