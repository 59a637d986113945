// CRC32C (Castagnoli), the checksum of clusters, TLog entries and objects.
//
// Two implementations, one function each, same results:
// - crc32c(): @node-rs/crc32 (prebuilt, maintained; reference/datapath-libs.md), SIMD, for data (4 KiB
//   clusters and up). Each call crosses N-API (~0.5–1 µs), so it is wasteful for tiny inputs.
// - crc32cRange(): a table-driven pure-JS CRC32C over a byte range of a Buffer, for small records such as
//   32-byte TLog entries: no N-API call and no view allocation (the write path checksums one entry per
//   4 KiB cluster written; the profile of 1 MiB writes showed crc32c calls at 16 % of CPU).
// The ISA-L addon of the ALBA issue will take over the data path; callers only see these functions.

import { crc32c as nodeRsCrc32c } from "@node-rs/crc32";

/** CRC32C of `data`, continuing from `initial` (0 for a fresh checksum). Returns an unsigned 32-bit value. */
export function crc32c(data: Uint8Array, initial = 0): number {
  return nodeRsCrc32c(data as Buffer, initial) >>> 0;
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
