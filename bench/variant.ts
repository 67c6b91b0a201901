/**
 * One full backup into a folder store with explicit gzip settings, for the bench's "gzip settings"
 * table (the CLI has no flag for them). The bench bundles this file with esbuild and runs it as its
 * own process under GNU time, so its wall time and peak RSS compare with the CLI's.
 *
 *   node variant.mjs <source> <store dir> <level|default> <workers|default>
 *
 * Prints the engine's result as one JSON document on stdout.
 */
import { runBackup } from '../lambda/core/archiver/backup.js';
import { silentLogger, systemClock } from '../lambda/core/deps.js';
import { FsObjectStore } from '../lambda/store/fs.js';

function optionalInt(raw: string | undefined, name: string): number | undefined {
  if (raw === undefined || raw === 'default') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value)) throw new Error(`${name} must be a whole number or "default" (got ${raw})`);
  return value;
}

const [source, storeDir, levelArg, workersArg] = process.argv.slice(2);
if (!source || !storeDir) {
  throw new Error('usage: variant <source> <store dir> <level|default> <workers|default>');
}
const result = await runBackup(
  { store: new FsObjectStore(storeDir), clock: systemClock, logger: silentLogger },
  {
    source,
    type: 'full',
    gzip: { level: optionalInt(levelArg, 'level'), workers: optionalInt(workersArg, 'workers') },
  },
);
process.stdout.write(`${JSON.stringify(result)}\n`);
