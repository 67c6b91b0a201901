import { randomBytes } from 'node:crypto';
import { Crc64Nvme } from '@aws-sdk/checksums/crc';
import { describe, expect, it } from 'vitest';
import { crc64nvmeToBase64 } from '../../lambda/core/archiver/crc64nvme.js';
import { Crc64NvmeWorkers } from '../../lambda/core/archiver/crc64nvme-workers.js';

async function sdkCrc(bytes: Uint8Array): Promise<string> {
  const c = new Crc64Nvme();
  c.update(bytes);
  return Buffer.from(await c.digest()).toString('base64');
}

describe('CRC64NVME on worker threads (the folder store copies ranges with it)', () => {
  it('equals the SDK on buffers of many sizes, hands the memory back, and runs jobs concurrently', async () => {
    const workers = new Crc64NvmeWorkers(2);
    try {
      const sizes = [1, 7, 8, 9, 4096, 100_000, 3 * 1024 * 1024 + 5];
      const jobs = sizes.map(async (size) => {
        const data = randomBytes(size);
        const expected = await sdkCrc(data);
        const owned = Buffer.allocUnsafeSlow(size + 10);
        data.copy(owned);
        const result = await workers.crc(owned, size);
        expect(crc64nvmeToBase64(result.crc)).toBe(expected);
        // The memory came back whole (reusable), with the bytes unchanged.
        expect(result.buffer.length).toBe(size + 10);
        expect(result.buffer.subarray(0, size).equals(data)).toBe(true);
        // The buffer passed in was transferred away.
        expect(owned.length).toBe(0);
      });
      await Promise.all(jobs);
    } finally {
      await workers.close();
    }
  });

  it('refuses a buffer that does not own its memory, and fails pending work once closed', async () => {
    const workers = new Crc64NvmeWorkers(1);
    await expect(workers.crc(Buffer.from('shared pool slice'), 4)).rejects.toThrow(/owns its memory/);
    const pending = workers.crc(Buffer.allocUnsafeSlow(64 * 1024 * 1024), 64 * 1024 * 1024);
    // Observed before close() fails it, so the rejection is never unhandled.
    const failedOnClose = expect(pending).rejects.toThrow(/closed/);
    await workers.close();
    await failedOnClose;
    await expect(workers.crc(Buffer.allocUnsafeSlow(8), 8)).rejects.toThrow(/closed/);
  });
});
