/**
 * Defaults shared by the Lambda code and the CDK app (lib/config.ts). No imports: the CDK app reads
 * these without loading the gzip worker or any other runtime module.
 */

/**
 * Default gzip level, picked from `npm run bench` (README "Throughput and memory"): on the bench tree
 * level 5 writes 0.16% more than level 6 and 0.76% more than GNU `tar -czf` (smaller than restic's
 * repository) in ~25% less time; level 1 is ~1.2x faster again but 3.4% larger than tar, over
 * issue 2's +2% budget.
 */
export const DEFAULT_LEVEL = 5;
