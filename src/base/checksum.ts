// CRC32C (Castagnoli), the checksum of clusters, TLog entries and objects. From @node-rs/crc32 (prebuilt,
// maintained; reference/datapath-libs.md). The ISA-L addon of the ALBA issue will replace it on the hot
// path; callers only see crc32c().

import { crc32c as nodeRsCrc32c } from "@node-rs/crc32";

/** CRC32C of `data`, continuing from `initial` (0 for a fresh checksum). Returns an unsigned 32-bit value. */
export function crc32c(data: Uint8Array, initial = 0): number {
  return nodeRsCrc32c(data as Buffer, initial) >>> 0;
}
