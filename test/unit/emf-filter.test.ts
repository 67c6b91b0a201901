import { describe, expect, it, vi } from 'vitest';
import { dropEmfLines } from '../setup/emf-filter.js';

describe('test output filter for EMF metric lines', () => {
  it('drops EMF documents, running their callback', async () => {
    const write = vi.fn(() => true);
    const callback = vi.fn();
    const filtered = dropEmfLines(write);

    expect(filtered('{"_aws":{"Timestamp":1,"CloudWatchMetrics":[]},"BackupSucceeded":1}\n', callback)).toBe(
      true,
    );
    await vi.waitFor(() => expect(callback).toHaveBeenCalledOnce());
    expect(write).not.toHaveBeenCalled();
  });

  it.each([
    ['a failure report', ' FAIL  test/x.test.ts > it breaks\n'],
    ['a JSON line that is not EMF', '{"level":"ERROR","message":"backup failed"}\n'],
    ['a buffer', Buffer.from('{"_aws":{}}\n')],
  ])('passes %s through unchanged', (_what, chunk) => {
    const write = vi.fn(() => true);
    dropEmfLines(write)(chunk, 'utf8');
    expect(write).toHaveBeenCalledWith(chunk, 'utf8');
  });
});
