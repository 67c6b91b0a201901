export * from './config.js';
export * from './constructs/backup-bucket.js';
export * from './media-backup-stack.js';
