/**
 * Manifest reading bench (issue 14, "memory must not grow with the tree"): entries/s and peak RSS of
 * reading one synthetic manifest with openManifestStream (streaming, bounded memory) and with
 * decodeManifest (the whole manifest in memory), each in a child process of its own so each peak RSS
 * is its own; an idle child (same imports, no manifest) gives the baseline.
 *
 *   npx tsx bench/manifest-stream.ts                                 # 1,000,000 entries
 *   BENCH_MANIFEST_ENTRIES=300000 npx tsx bench/manifest-stream.ts
 *
 * The manifest is cached as BENCH_DIR/manifest-<entries>.jsonl.gz (written through
 * ManifestMemberWriter: header member + one entries member, as a sharded commit writes it). Rows look
 * like a media tree: 500 files per folder, a folder row before each. MB = 10^6 bytes.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, renameSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import {
  decodeManifest,
  type ManifestEntry,
  type ManifestHeader,
} from '../lambda/core/repository/manifest.js';
import {
  encodeHeaderMember,
  ManifestMemberWriter,
  openManifestStream,
} from '../lambda/core/repository/manifest-stream.js';

const THIS_FILE = fileURLToPath(import.meta.url);
const FILES_PER_FOLDER = 500;
const MB = 1e6;

type Mode = 'idle' | 'stream' | 'decode';

interface ChildResult {
  readonly mode: Mode;
  readonly entries: number;
  readonly seconds: number;
  readonly peakRssMb: number;
}

function row(n: number): ManifestEntry {
  const folderNo = Math.floor(n / (FILES_PER_FOLDER + 1));
  const folder = `media/uploads/${String(Math.floor(folderNo / 100)).padStart(4, '0')}/room-${String(folderNo).padStart(6, '0')}`;
  const inFolder = n % (FILES_PER_FOLDER + 1);
  if (inFolder === 0) return { path: folder, type: 'dir', mode: 0o755, mtimeMs: 1735264800000 };
  return {
    path: `${folder}/avatar-${String(inFolder).padStart(4, '0')}.jpg`,
    type: 'file',
    size: 20_000 + ((n * 7919) % 500_000),
    mtimeMs: 1735264800000 + n * 1000,
    mode: 0o644,
    sha256: createHash('sha256').update(String(n)).digest('hex'),
    archive: 'full/backup_20261201_020000.part-0001.tar.gz',
  };
}

/** Writes the synthetic manifest unless cached; memory stays bounded (it streams to the file). */
async function ensureManifest(dir: string, count: number): Promise<string> {
  const file = path.join(dir, `manifest-${count}.jsonl.gz`);
  if (existsSync(file)) return file;
  mkdirSync(dir, { recursive: true });
  const started = performance.now();
  let files = 0;
  let bytes = 0;
  for (let n = 0; n < count; n++) {
    const r = row(n);
    if (r.type === 'file') {
      files += 1;
      bytes += r.size;
    }
  }
  const header: ManifestHeader = {
    format: 'media-backup/manifest',
    version: 1,
    backupId: 'backup_20261201_020000',
    type: 'full',
    createdAt: '2026-12-01T02:00:00.000Z',
    baseBackupId: null,
    source: { path: '/mnt/media' },
    root: { mode: 0o755, mtimeMs: 1735264800000 },
    totals: { files, bytes },
  };
  const partial = `${file}.partial`;
  const out = createWriteStream(partial);
  out.write(encodeHeaderMember(header));
  const writer = new ManifestMemberWriter();
  const written = pipeline(writer.member, out);
  for (let n = 0; n < count; n++) await writer.write(row(n));
  await Promise.all([writer.end(), written]);
  renameSync(partial, file);
  console.log(`Wrote ${file} (${count} entries) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return file;
}

async function child(mode: Mode, file: string): Promise<ChildResult> {
  const started = performance.now();
  let entries = 0;
  if (mode === 'stream') {
    const manifest = await openManifestStream(createReadStream(file), file);
    for await (const _ of manifest.entries) entries += 1;
  } else if (mode === 'decode') {
    const manifest = await decodeManifest(await readFile(file), file);
    entries = manifest.entries.length;
  }
  const seconds = (performance.now() - started) / 1000;
  // maxRSS is in KiB: the peak of this process, which did nothing else.
  return { mode, entries, seconds, peakRssMb: (process.resourceUsage().maxRSS * 1024) / MB };
}

function runChild(mode: Mode, file: string): ChildResult {
  const result = spawnSync(process.execPath, ['--import', 'tsx', THIS_FILE, '--child', mode, file], {
    encoding: 'utf8',
    maxBuffer: 1024 * 1024,
  });
  if (result.status !== 0) throw new Error(`bench child ${mode} failed (${result.status}): ${result.stderr}`);
  return JSON.parse(result.stdout.trim().split('\n').at(-1) as string) as ChildResult;
}

async function main(): Promise<void> {
  const childAt = process.argv.indexOf('--child');
  if (childAt !== -1) {
    const result = await child(process.argv[childAt + 1] as Mode, process.argv[childAt + 2]);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const count = Number(process.env.BENCH_MANIFEST_ENTRIES || 1_000_000);
  const dir = path.resolve(process.env.BENCH_DIR || '/tmp/media-backup-bench');
  const file = await ensureManifest(dir, count);
  const gzipBytes = (await readFile(file)).length;
  const idle = runChild('idle', file);
  const stream = runChild('stream', file);
  const decode = runChild('decode', file);
  for (const r of [stream, decode]) {
    if (r.entries !== count) throw new Error(`${r.mode} read ${r.entries} entries, expected ${count}`);
  }
  const rate = (r: ChildResult) => r.entries / r.seconds;
  console.log(`\nManifest of ${count} entries, ${(gzipBytes / MB).toFixed(1)} MB gzip (${file})`);
  console.log('| reader | seconds | entries/s | peak RSS MB | over idle MB |');
  console.log('|---|---:|---:|---:|---:|');
  console.log(`| (idle child: node + imports) | - | - | ${idle.peakRssMb.toFixed(0)} | 0 |`);
  for (const r of [stream, decode]) {
    console.log(
      `| ${r.mode === 'stream' ? 'openManifestStream' : 'decodeManifest'} | ${r.seconds.toFixed(2)} | ${Math.round(rate(r)).toLocaleString('en-US')} | ${r.peakRssMb.toFixed(0)} | ${(r.peakRssMb - idle.peakRssMb).toFixed(0)} |`,
    );
  }
  const ratios = {
    speed: rate(stream) / rate(decode),
    peakRss: stream.peakRssMb / decode.peakRssMb,
    peakRssOverIdle: (stream.peakRssMb - idle.peakRssMb) / (decode.peakRssMb - idle.peakRssMb),
  };
  console.log(
    `stream/decode: entries/s x${ratios.speed.toFixed(2)}, peak RSS x${ratios.peakRss.toFixed(3)} (over idle: x${ratios.peakRssOverIdle.toFixed(3)})`,
  );
  console.log(
    JSON.stringify({ bench: 'manifest-stream', entries: count, gzipBytes, idle, stream, decode, ratios }),
  );
}

await main();
