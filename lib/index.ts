export * from './config.js';
export * from './constructs/backup-bucket.js';
export * from './constructs/backup-function.js';
export * from './constructs/media-file-system.js';
export * from './constructs/schedules.js';
export * from './media-backup-stack.js';
