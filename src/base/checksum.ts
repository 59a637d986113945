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
 * A followed by B, where B is `lengthBytes` long, without reading A or B again (zlib's crc32_combine, with
 * the operator "shift through lengthBytes zero bytes" precomputed as 32 columns). The volume builds a
 * SCO's CRC from its clusters' CRCs this way, saving a pass over every 4 MiB SCO.
 */
export class Crc32cCombiner {
  private static readonly byLength = new Map<number, Crc32cCombiner>();
  private readonly columns = new Uint32Array(32);

  /** A shared combiner for pieces of `lengthBytes` (building one costs 32 × lengthBytes table steps). */
  static forLength(lengthBytes: number): Crc32cCombiner {
    let combiner = Crc32cCombiner.byLength.get(lengthBytes);
    if (combiner === undefined) Crc32cCombiner.byLength.set(lengthBytes, (combiner = new Crc32cCombiner(lengthBytes)));
    return combiner;
  }

  constructor(readonly lengthBytes: number) {
    for (let bit = 0; bit < 32; bit++) {
      let register = (1 << bit) >>> 0;
      for (let i = 0; i < lengthBytes; i++) register = table[register & 0xff]! ^ (register >>> 8);
      this.columns[bit] = register >>> 0;
    }
  }

  /** The CRC32C of A then B, from crcA and crcB (B being `lengthBytes` long). */
  combine(crcA: number, crcB: number): number {
    let shifted = 0;
    for (let bit = 0; crcA !== 0; bit++, crcA >>>= 1) if (crcA & 1) shifted ^= this.columns[bit]!;
    return (shifted ^ crcB) >>> 0;
  }
}
