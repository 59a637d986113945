// CRC32C (Castagnoli), the checksum of clusters, TLog entries, fragments and objects.
//
// - crc32c() and crc32cBlocks(): Intel ISA-L's crc32_iscsi through our addon (src/base/isal.ts,
//   native/isal/): 35–55 GB/s (reference/datapath-libs.md). crc32cBlocks checksums a run of equal blocks
//   (4 KiB clusters) in one N-API call: the volume's write and read paths would otherwise pay a crossing
//   per cluster (a profile of 1 MiB I/O showed per-cluster calls at 15–25 % of the node's CPU).
// - crc32cRange(): a table-driven pure-JS CRC32C over a byte range, for small records such as 32-byte
//   TLog entries: no N-API call and no view allocation.
// All three give the standard CRC32C ("123456789" → 0xE3069283).

import { isal } from "./isal.js";

/** CRC32C of `data`, continuing from `initial` (0 for a fresh checksum). Returns an unsigned 32-bit value. */
export function crc32c(data: Uint8Array, initial = 0): number {
  return isal().crc32c(data, initial) >>> 0;
}

/**
 * CRC32C of each `blockSizeBytes` block of `data` (its length a multiple of it) into `out[0..count)`.
 * `out` must hold at least data.length / blockSizeBytes values.
 */
export function crc32cBlocks(data: Uint8Array, blockSizeBytes: number, out: Uint32Array): void {
  isal().crc32cBlocks(data, blockSizeBytes, new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
}

/**
 * Seals `count` records `stride` bytes apart in `data`: the CRC32C of each record's first `length` bytes
 * is stored little-endian right after them. Returns the CRC32C of all the records' first `length` bytes
 * in order, continuing from `initial` (one N-API call for a run of TLog entries).
 */
export function crc32cSealRecords(data: Uint8Array, count: number, stride: number, length: number, initial = 0): number {
  return isal().crc32cSealRecords(data, count, stride, length, initial) >>> 0;
}

const table = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** CRC32C of data[start, end), continuing from `initial`; meant for ranges up to a few hundred bytes. */
export function crc32cRange(data: Uint8Array, start: number, end: number, initial = 0): number {
  let crc = ~initial;
  for (let i = start; i < end; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

/**
 * Combines CRC32Cs of consecutive pieces of a fixed length: `combine(crcOf(A), crcOf(B))` is the CRC32C of
 * A followed by B, where B is `lengthBytes` long, without reading A or B again (zlib's crc32_combine). The
 * operator "shift through lengthBytes zero bytes" is linear over GF(2), so it is precomputed as four
 * 256-entry tables, one per byte of crcA: a combine is four lookups. (A loop over crcA's 32 bits, with
 * a branch per bit, cost 240-350 ns a call on this machine, ~6 % of the main thread under 1 MiB writes:
 * the volume combines once per 4 KiB cluster to build a SCO's CRC, saving a pass over every SCO.)
 */
export class Crc32cCombiner {
  private static readonly byLength = new Map<number, Crc32cCombiner>();
  private readonly byByte = new Uint32Array(4 * 256);

  /** A shared combiner for pieces of `lengthBytes` (building one costs 32 × lengthBytes table steps). */
  static forLength(lengthBytes: number): Crc32cCombiner {
    let combiner = Crc32cCombiner.byLength.get(lengthBytes);
    if (combiner === undefined) Crc32cCombiner.byLength.set(lengthBytes, (combiner = new Crc32cCombiner(lengthBytes)));
    return combiner;
  }

  constructor(readonly lengthBytes: number) {
    // The operator's image of each single bit (its columns), then of every byte value at each byte position.
    const columns = new Uint32Array(32);
    for (let bit = 0; bit < 32; bit++) {
      let register = (1 << bit) >>> 0;
      for (let i = 0; i < lengthBytes; i++) register = table[register & 0xff]! ^ (register >>> 8);
      columns[bit] = register >>> 0;
    }
    for (let position = 0; position < 4; position++) {
      for (let value = 0; value < 256; value++) {
        let image = 0;
        for (let bit = 0; bit < 8; bit++) if (value & (1 << bit)) image ^= columns[position * 8 + bit]!;
        this.byByte[position * 256 + value] = image;
      }
    }
  }

  /** The CRC32C of A then B, from crcA and crcB (B being `lengthBytes` long). */
  combine(crcA: number, crcB: number): number {
    const t = this.byByte;
    return (t[crcA & 0xff]! ^ t[256 + ((crcA >>> 8) & 0xff)]! ^ t[512 + ((crcA >>> 16) & 0xff)]! ^ t[768 + (crcA >>> 24)]! ^ crcB) >>> 0;
  }
}
