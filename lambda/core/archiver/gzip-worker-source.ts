import { CRC64NVME_WORKER_SOURCE } from './crc64nvme.js';

/**
 * Source of one gzip worker thread, run with `new Worker(source, { eval: true })`.
 *
 * It is a string, not a module file, on purpose: the CLI and every Lambda function are single esbuild
 * bundles, and an eval'd worker needs no second bundle entry and no path that must survive bundling.
 * Keep it plain CommonJS JavaScript with no imports beyond node: built-ins.
 *
 * Protocol. workerData: { input: SharedArrayBuffer, slotBytes, fault?, stopFlag: Int32Array }. Main writes a chunk of the
 * tar stream into slot `slot` of `input`, then posts { id, slot, length, ends, heads, level,
 * adaptive }: `ends` are the ends of the members to cut from the chunk (offsets in the slot,
 * ascending, the last one `length`), so a member never holds bytes of two tar entries while one
 * message still carries up to a chunk of small entries; `heads[k]` is true when member k starts a
 * tar entry (its first 512 bytes are a header). The worker replies { id, output, sizes, stored,
 * crcs }: `output` is the members laid end to end (its ArrayBuffer transferred, not copied),
 * `sizes[k]` member k's gzip bytes, `stored` how many were written as stored blocks, `crcs[k]`
 * member k's CRC64NVME (base64, as S3 writes it), so every member's checksum is computed off the
 * main thread. On failure it replies { id, error }. The slot is free again once the reply is
 * received. `fault` exists only for tests: { after, kind: 'throw' | 'exit' } fails the job after
 * `after` successful ones, either by throwing inside the job or by ending the thread.
 *
 * Adaptive storing: four 8 KiB samples are deflated at level 1; a chunk whose samples shrink by less
 * than 8% (JPEG, PNG, MP4, DOCX/XLSX, which are zip files) is written as a stored member, which costs
 * a CRC instead of a futile search for matches (measured with `npm run bench`). 8%, not the first estimate's 3%: on the
 * bench tree, deflating the chunks that gain 3-8% (media with a few small files between) cost 1.3
 * CPU-s per GB (~8% of the backup's time) to save 0.5% of the output.
 */
export const GZIP_WORKER_SOURCE = `
'use strict';
${CRC64NVME_WORKER_SOURCE}
const { parentPort, workerData } = require('node:worker_threads');
const zlib = require('node:zlib');

const SAMPLE_BYTES = 8 * 1024;
const SAMPLES = 4;
const MIN_GAIN = 0.08;
// Deflate output never exceeds its input by more than ~0.03% + a few bytes (zlib's deflateBound).
const DEFLATE_SLACK = 64 * 1024;

/** Whether deflate is worth its CPU for a block larger than the samples. */
function worthCompressing(block) {
  let sampled = 0;
  let compressed = 0;
  const stride = Math.floor((block.length - SAMPLE_BYTES) / (SAMPLES - 1));
  for (let i = 0; i < SAMPLES; i++) {
    const sample = block.subarray(i * stride, i * stride + SAMPLE_BYTES);
    sampled += sample.length;
    compressed += zlib.deflateRawSync(sample, { level: 1 }).length;
  }
  return compressed < sampled * (1 - MIN_GAIN);
}

// gzip member framing (RFC 1952): header with no name and no mtime (so equal input gives equal
// output), OS = 255 (unknown); trailer = CRC-32 and input size mod 2^32, both little-endian.
const HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
const TRAILER_BYTES = 8;
const STORED_BLOCK = 65535;

const EMPTY = Buffer.alloc(0);
// A record's header (a tar header block, 512 bytes of mostly zeros and octal digits) shrinks ~10x
// even when the file after it is incompressible.
const HEAD_BYTES = 512;

/**
 * The first HEAD_BYTES of a member that starts a record, deflated as a non-final part of the deflate
 * stream (a sync flush leaves it byte-aligned, so stored blocks can follow), or no bytes when that
 * does not shrink it.
 */
function deflatedHead(block, level) {
  if (block.length <= HEAD_BYTES) return { bytes: 0, deflated: EMPTY };
  const deflated = zlib.deflateRawSync(block.subarray(0, HEAD_BYTES), {
    level,
    windowBits: windowBitsFor(HEAD_BYTES),
    chunkSize: 2 * HEAD_BYTES,
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
  if (deflated.length >= HEAD_BYTES - 32) return { bytes: 0, deflated: EMPTY };
  return { bytes: HEAD_BYTES, deflated };
}

/**
 * One gzip member holding deflate "stored" blocks (after the deflated head, when given): built by
 * hand into one exact-size buffer (so it can be transferred as is), with no compressor state and no
 * intermediate output chunks.
 */
function storedMember(block, head) {
  const from = head ? head.bytes : 0;
  const prefix = head ? head.deflated : EMPTY;
  const blocks = Math.max(1, Math.ceil((block.length - from) / STORED_BLOCK));
  const out = Buffer.allocUnsafeSlow(
    HEADER.length + prefix.length + blocks * 5 + block.length - from + TRAILER_BYTES,
  );
  HEADER.copy(out, 0);
  let at = HEADER.length;
  at += prefix.copy(out, at);
  for (let i = 0; i < blocks; i++) {
    const start = from + i * STORED_BLOCK;
    const len = Math.min(STORED_BLOCK, block.length - start);
    out[at] = i === blocks - 1 ? 1 : 0; // BFINAL on the last block; BTYPE 00 = stored
    out.writeUInt16LE(len, at + 1);
    out.writeUInt16LE(~len & 0xffff, at + 3);
    at += 5;
    at += block.copy(out, at, start, start + len);
  }
  out.writeUInt32LE(zlib.crc32(block), at);
  out.writeUInt32LE(block.length % 0x100000000, at + 4);
  return out;
}

/**
 * One gzip member of the block deflated at the given level. The output chunk is larger than any
 * deflate output of the block can be, so zlib writes it into one buffer of its own, which is then
 * transferred whole: the worker keeps no garbage that would wait for its next GC.
 */
function deflatedMember(block, level) {
  return zlib.gzipSync(block, {
    level,
    windowBits: windowBitsFor(block.length),
    chunkSize: block.length + Math.min(DEFLATE_SLACK, 1024 + (block.length >>> 6)),
  });
}

/**
 * The smallest deflate window that still reaches back over the whole block, so it compresses as
 * the full 32 KiB window does: with a member per tar entry most blocks are small, and zlib sets up
 * its window for every member.
 */
function windowBitsFor(length) {
  return Math.min(15, Math.max(9, Math.ceil(Math.log2(length + 262))));
}

/**
 * One gzip member of the block: stored when deflate does not pay, else deflated at the level. A
 * stored member that starts a record (\`headed\`) keeps its header deflated: with one member per
 * tar entry, a small photo would otherwise store its 512-byte header as is (bench tree: 1.8 MB of
 * 815 MB). A block no larger than the samples (a small tar entry) is simply deflated at its level
 * and kept when it shrank enough: sampling it first would deflate it twice.
 */
function member(block, level, adaptive, headed) {
  if (level === 0) return { bytes: storedMember(block), stored: true };
  if (!adaptive) return { bytes: deflatedMember(block, level), stored: false };
  const stored = () => storedMember(block, headed ? deflatedHead(block, level) : undefined);
  if (block.length <= SAMPLE_BYTES * SAMPLES) {
    const deflated = deflatedMember(block, level);
    // Smaller than any stored form could be by the margin: no need to build one.
    const storedAtLeast = HEADER.length + TRAILER_BYTES + block.length - HEAD_BYTES;
    if (deflated.length < storedAtLeast * (1 - MIN_GAIN)) return { bytes: deflated, stored: false };
    const kept = stored();
    if (deflated.length < kept.length * (1 - MIN_GAIN)) return { bytes: deflated, stored: false };
    return { bytes: kept, stored: true };
  }
  return worthCompressing(block)
    ? { bytes: deflatedMember(block, level), stored: false }
    : { bytes: stored(), stored: true };
}

const { input, slotBytes, fault, stopFlag } = workerData;
let done = 0;

parentPort.on('message', (job) => {
  // Closing: end between jobs (never mid-zlib call), skipping jobs still queued.
  if (job.stop || Atomics.load(stopFlag, 0) === 1) {
    process.exit(0);
    return;
  }
  let output;
  const sizes = [];
  const crcs = [];
  let stored = 0;
  try {
    if (fault && done >= fault.after) {
      if (fault.kind === 'exit') process.exit(70);
      throw new Error('injected gzip worker fault');
    }
    const chunk = Buffer.from(input, job.slot * slotBytes, job.length);
    const members = [];
    let start = 0;
    for (const [k, end] of job.ends.entries()) {
      const m = member(chunk.subarray(start, end), job.level, job.adaptive, job.heads[k]);
      members.push(m.bytes);
      sizes.push(m.bytes.length);
      crcs.push(crc64nvmeBase64(m.bytes));
      if (m.stored) stored += 1;
      start = end;
    }
    if (members.length === 1) {
      output = members[0];
    } else {
      // One exact-size buffer to transfer: a deflated member's buffer is far larger than the member.
      output = Buffer.allocUnsafeSlow(sizes.reduce((a, b) => a + b, 0));
      let at = 0;
      for (const m of members) at += m.copy(output, at);
    }
  } catch (error) {
    parentPort.postMessage({ id: job.id, error: String((error && error.stack) || error) });
    return;
  }
  done += 1;
  parentPort.postMessage({ id: job.id, output, sizes, stored, crcs }, [output.buffer]);
});
`;
