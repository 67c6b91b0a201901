/**
 * Source of one gzip worker thread, run with `new Worker(source, { eval: true })`.
 *
 * It is a string, not a module file, on purpose: the CLI and every Lambda function are single esbuild
 * bundles, and an eval'd worker needs no second bundle entry and no path that must survive bundling.
 * Keep it plain CommonJS JavaScript with no imports beyond node: built-ins.
 *
 * Protocol. workerData: { input: SharedArrayBuffer, slotBytes, fault? }. Main writes a chunk of the
 * tar stream into slot `slot` of `input`, then posts { id, slot, length, level, adaptive }. The worker
 * replies { id, member, stored } with `member` one complete gzip member (its ArrayBuffer transferred,
 * not copied), or { id, error } when compression threw. The slot is free again once the reply is
 * received. `fault` exists only for tests: { after, kind: 'throw' | 'exit' } fails the job after
 * `after` successful ones, either by throwing inside the job or by ending the thread.
 *
 * Adaptive storing: four 8 KiB samples are deflated at level 1; a chunk whose samples shrink by less
 * than 3% (JPEG, PNG, MP4, DOCX/XLSX, which are zip files) is written as a stored member, which costs
 * a CRC instead of a futile search for matches (PERFORMANCE-NOTES.md).
 */
export const GZIP_WORKER_SOURCE = `
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const zlib = require('node:zlib');

const SAMPLE_BYTES = 8 * 1024;
const SAMPLES = 4;
const MIN_GAIN = 0.03;
// zlib's default 16 KiB output chunk made a stored 4 MiB member cost ~4x the CPU (measured).
const OUTPUT_CHUNK = 1024 * 1024;

function worthCompressing(block) {
  if (block.length <= SAMPLE_BYTES * SAMPLES) {
    return zlib.deflateRawSync(block, { level: 1 }).length < block.length * (1 - MIN_GAIN);
  }
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

const { input, slotBytes, fault } = workerData;
let done = 0;

parentPort.on('message', (job) => {
  let member;
  let stored = false;
  try {
    if (fault && done >= fault.after) {
      if (fault.kind === 'exit') process.exit(70);
      throw new Error('injected gzip worker fault');
    }
    const block = Buffer.from(input, job.slot * slotBytes, job.length);
    const level = job.adaptive && job.level > 0 && !worthCompressing(block) ? 0 : job.level;
    stored = level === 0;
    const out = zlib.gzipSync(block, { level, chunkSize: OUTPUT_CHUNK });
    // Transfer only an ArrayBuffer that holds exactly this member; otherwise copy it into one.
    member = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength ? out : new Uint8Array(out);
  } catch (error) {
    parentPort.postMessage({ id: job.id, error: String((error && error.stack) || error) });
    return;
  }
  done += 1;
  parentPort.postMessage({ id: job.id, member, stored }, [member.buffer]);
});
`;
