/**
 * CRC64NVME throughput: this project's table JS (lambda/core/archiver/crc64nvme.ts, main thread and the
 * worker source) against @aws-sdk/checksums' Crc64Nvme (its JS fallback, as in Lambda without the CRT).
 *
 * Run: npx tsx bench/crc64nvme.ts [MiB=64] [rounds=8]. Each round runs every contender once, in turn;
 * the figure is the fastest round in process CPU time (the machine this runs on is often shared, and
 * CPU time is what a loaded neighbour disturbs least), as MB/s (10^6 bytes per CPU-second).
 */
import { randomBytes } from 'node:crypto';
import { Crc64Nvme } from '@aws-sdk/checksums/crc';
import {
  CRC64NVME_WORKER_SOURCE,
  combineBase64,
  crc64nvme,
  crc64nvmeCombine,
  crc64nvmeToBase64,
} from '../lambda/core/archiver/crc64nvme.js';

const mib = Number(process.argv[2] ?? 64);
const rounds = Number(process.argv[3] ?? 8);
const data = randomBytes(mib * 1024 * 1024);
const MEMBER = 1 << 20;

const workerCrc = new Function(`${CRC64NVME_WORKER_SOURCE}\nreturn crc64nvmeBase64;`)() as (
  b: Uint8Array,
) => string;

const contenders: Record<string, () => Promise<string> | string> = {
  '@aws-sdk/checksums Crc64Nvme': async () => {
    const hash = new Crc64Nvme();
    hash.update(data);
    return Buffer.from(await hash.digest()).toString('base64');
  },
  'crc64nvme (this project)': () => crc64nvmeToBase64(crc64nvme(data)),
  CRC64NVME_WORKER_SOURCE: () => workerCrc(data),
  // 1 MiB members hashed one by one and combined, as the archive writer does.
  'crc64nvme per 1 MiB + combine': () => {
    let crc = 0n;
    for (let at = 0; at < data.length; at += MEMBER) {
      const member = data.subarray(at, at + MEMBER);
      crc = crc64nvmeCombine(crc, crc64nvme(member), member.length);
    }
    return crc64nvmeToBase64(crc);
  },
};

const fastest = new Map<string, number>();
const results = new Set<string>();
for (let round = 0; round < rounds; round++) {
  for (const [name, run] of Object.entries(contenders)) {
    const before = process.cpuUsage();
    results.add(await run());
    const used = process.cpuUsage(before);
    const seconds = (used.user + used.system) / 1e6;
    fastest.set(name, Math.min(fastest.get(name) ?? Number.POSITIVE_INFINITY, seconds));
  }
}
if (results.size !== 1) throw new Error(`CRC64NVME results differ: ${[...results].join(', ')}`);
console.log(`${mib} MiB, best of ${rounds} rounds (CPU time), checksum ${[...results][0]}`);
for (const [name, seconds] of fastest) {
  console.log(`${name.padEnd(32)} ${(data.length / seconds / 1e6).toFixed(0).padStart(6)} MB/s`);
}

const combines = 100_000;
const before = process.cpuUsage();
let crc = 0n;
for (let i = 0; i < combines; i++) crc = crc64nvmeCombine(crc, BigInt(i), 5 * 2 ** 40 - i);
const used = process.cpuUsage(before);
const micros = (used.user + used.system) / combines;
console.log(
  `crc64nvmeCombine, lengthB ~5 TiB  ${micros.toFixed(2).padStart(6)} µs each (result ${crc64nvmeToBase64(crc)})`,
);

// combineBase64 over one range per file, as a manifest of 200,000 files would be combined.
const parts = Array.from({ length: 200_000 }, (_, i) => ({
  crc64nvme: crc64nvmeToBase64((BigInt(i) * 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn),
  length: 1 + ((i * 2654435761) % 50_000_000),
}));
const beforeParts = process.cpuUsage();
const combined = combineBase64(parts);
const usedParts = process.cpuUsage(beforeParts);
console.log(
  `combineBase64, 200,000 ranges       ${((usedParts.user + usedParts.system) / parts.length).toFixed(2).padStart(6)} µs each (result ${combined})`,
);
