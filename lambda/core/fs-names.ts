import { isUtf8 } from 'node:buffer';

/**
 * File names are bytes; our paths are strings. Names that are valid UTF-8 (nearly all) are decoded as
 * usual, so manifests of such trees are exactly what they always were. A name that is not valid UTF-8
 * (Latin-1 names from old uploads: `caf\xE9.jpg`) is decoded with the "surrogateescape" rule of
 * Python's PEP 383: every byte that is not part of a valid UTF-8 sequence becomes the lone surrogate
 * U+DC80..U+DCFF (byte 0xE9 -> U+DCE9). Valid UTF-8 can never produce a lone surrogate, so the
 * mapping is reversible and unambiguous; `encodeFsName` gives the original bytes back. In a manifest
 * such a path is a JSON string with `\udce9` escapes (JSON.stringify writes lone surrogates that way,
 * and JSON.parse reads them back).
 */
export function decodeFsName(bytes: Buffer): string {
  if (isUtf8(bytes)) return bytes.toString('utf8');
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const length = validSequenceLength(bytes, i);
    if (length === 0) {
      out += String.fromCharCode(0xdc00 + bytes[i]);
      i += 1;
    } else {
      out += bytes.toString('utf8', i, i + length);
      i += length;
    }
  }
  return out;
}

/** The bytes a path string stands for: UTF-8, with escaped bytes (lone U+DC80..U+DCFF) restored. */
export function encodeFsName(name: string): Buffer {
  if (!hasEscapedBytes(name)) return Buffer.from(name, 'utf8');
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < name.length; i++) {
    if (isEscapedByteAt(name, i)) {
      if (i > start) parts.push(Buffer.from(name.slice(start, i), 'utf8'));
      parts.push(Buffer.of(name.charCodeAt(i) - 0xdc00));
      start = i + 1;
    }
  }
  if (start < name.length) parts.push(Buffer.from(name.slice(start), 'utf8'));
  return Buffer.concat(parts);
}

/** True when `name` holds bytes that are not valid UTF-8 (escaped by {@link decodeFsName}). */
export function hasEscapedBytes(name: string): boolean {
  for (let i = 0; i < name.length; i++) if (isEscapedByteAt(name, i)) return true;
  return false;
}

/**
 * The path to hand to `node:fs`: the string itself when it is plain Unicode (the fast, usual case),
 * else its bytes, so the call reaches the file whose name is not valid UTF-8.
 */
export function fsPath(p: string): string | Buffer {
  return hasEscapedBytes(p) ? encodeFsName(p) : p;
}

function isEscapedByteAt(s: string, i: number): boolean {
  const c = s.charCodeAt(i);
  if (c < 0xdc80 || c > 0xdcff) return false;
  // A low surrogate after a high one is half of a real character, not an escaped byte.
  const before = i > 0 ? s.charCodeAt(i - 1) : 0;
  return !(before >= 0xd800 && before <= 0xdbff);
}

/** Length of the valid UTF-8 sequence starting at `i`, or 0 when the byte there starts none. */
function validSequenceLength(b: Buffer, i: number): number {
  const lead = b[i];
  if (lead < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf) => i + k < b.length && b[i + k] >= lo && b[i + k] <= hi;
  if (lead >= 0xc2 && lead <= 0xdf) return cont(1) ? 2 : 0;
  if (lead === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if (lead === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0; // no UTF-16 surrogates
  if (lead >= 0xe1 && lead <= 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (lead === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (lead >= 0xf1 && lead <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (lead === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}
