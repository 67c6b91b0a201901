import { dropEmfLines } from './emf-filter.js';

/**
 * Keeps the test output readable. The Lambda handlers publish metrics as EMF documents: powertools
 * Metrics writes one JSON line per flush straight to process.stdout (through its own Console, so
 * vitest's console capture never sees it), and the handler tests would print dozens of them between
 * the results. Only those lines are dropped; everything else, failures included, still prints. Tests
 * that assert on the metrics spy on process.stdout.write themselves, which replaces this filter for
 * their duration, so they still see every document.
 */
process.stdout.write = dropEmfLines(
  process.stdout.write as Parameters<typeof dropEmfLines>[0],
) as typeof process.stdout.write;
