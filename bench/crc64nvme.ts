/**
 * CRC64NVME throughput: this project's table JS (lambda/core/archiver/crc64nvme.ts, main thread and the
 * worker source) against @aws-sdk/checksums' Crc64Nvme (JS fallback, as in Lambda without the CRT).
 * Run: npx tsx bench/crc64nvme.ts [MiB=64] [rounds=5]; prints the best round's MB/s (10^6 bytes/s).
 */
import { randomBytes } from 'node:crypto';
import { Crc64Nvme } from '@aws-sdk/checksums/crc';
import {
  CRC64NVME_WORKER_SOURCE,
  crc64nvme,
  crc64nvmeCombine,
  crc64nvmeToBase64,
} from '../lambda/core/archiver/crc64nvme.js';

const mib = Number(process.argv[2] ?? 64);
const rounds = Number(process.argv[3] ?? 5);
const data = randomBytes(mib * 1024 * 1024);

async function best(name: string, run: () => Promise<string> | string): Promise<string> {
  let fastest = Number.POSITIVE_INFINITY;
  let result = '';
  for (let i = 0; i < rounds; i++) {
    const started = performance.now();
    result = await run();
    fastest = Math.min(fastest, performance.now() - started);
  }
  console.log(
    `${name.padEnd(34)} ${(((data.length / fastest) * 1e3) / 1e6).toFixed(0).padStart(6)} MB/s  ${result}`,
  );
  return result;
}

const workerCrc = new Function(`${CRC64NVME_WORKER_SOURCE}\nreturn crc64nvmeBase64;`)() as (
  b: Uint8Array,
) => string;

const sdk = await best('@aws-sdk/checksums Crc64Nvme', async () => {
  const hash = new Crc64Nvme();
  hash.update(data);
  return Buffer.from(await hash.digest()).toString('base64');
});
const ours = await best('crc64nvme (this project)', () => crc64nvmeToBase64(crc64nvme(data)));
const worker = await best('CRC64NVME_WORKER_SOURCE', () => workerCrc(data));
// 1 MiB members, as the gzip workers would hash them.
const members = await best('crc64nvme per 1 MiB + combine', () => {
  let crc = 0n;
  for (let at = 0; at < data.length; at += 1 << 20) {
    const member = data.subarray(at, at + (1 << 20));
    crc = crc64nvmeCombine(crc, crc64nvme(member), member.length);
  }
  return crc64nvmeToBase64(crc);
});
if (new Set([sdk, ours, worker, members]).size !== 1) throw new Error('CRC64NVME results differ');

const combines = 100_000;
const started = performance.now();
let crc = 0n;
for (let i = 0; i < combines; i++) crc = crc64nvmeCombine(crc, BigInt(i), 5 * 2 ** 40 - i);
const perCombine = ((performance.now() - started) * 1e3) / combines;
console.log(
  `crc64nvmeCombine (lengthB ~5 TiB)   ${perCombine.toFixed(2)} µs each (${crc === 0n ? '' : 'ok'})`,
);
