// Partial reads without decoding: which data fragment, and which bytes of it, hold a byte range of an
// object. Pure arithmetic, no I/O. Valid only when fragments are stored without compression and
// encryption (the pipeline checks that) and the data fragments are present; otherwise the client fetches
// whole fragments and decodes. A partial read cannot check the whole-fragment checksum: it relies on the
// ASD's own per-value checksum for the bytes it serves.
// Imported by pipeline.ts and through index.ts.
//
// Layout: an object is cut into chunks (every chunk chunkSizeMaxBytes but the last); chunk c of n bytes
// has k data fragments of f = ceil(n / k) bytes; byte b of the chunk is byte b mod f of data fragment
// floor(b / f), found in the packed fragment at fragmentHeaderSizeBytes + b mod f.
// Limits: object sizes below 2^53; slices out ≤ ranges + chunks × k (one per fragment crossed).

import { assert, OvsError } from "../../base/index.js";
import { fragmentSizeBytesFor } from "./erasure.js";
import { fragmentHeaderSizeBytes } from "./fragment-format.js";

export interface ByteRange {
  offsetBytes: number;
  lengthBytes: number;
}

export interface FragmentSlice {
  /** Which requested range this slice belongs to. */
  rangeIndex: number;
  /** Where the slice's bytes go in that range's output. */
  rangeOffsetBytes: number;
  chunkIndex: number;
  /** A data fragment index (< k). */
  fragmentIndex: number;
  /** Offset in the unpacked fragment. */
  fragmentOffsetBytes: number;
  /** Offset in the packed fragment (header included): what to ask the ASD for. */
  packedOffsetBytes: number;
  lengthBytes: number;
}

/** The chunk sizes of an object of `objectSizeBytes`: full chunks, then the rest. An empty object has none. */
export function chunkSizesBytesFor(objectSizeBytes: number, chunkSizeMaxBytes: number): number[] {
  assert(Number.isSafeInteger(objectSizeBytes) && objectSizeBytes >= 0, "object size is a non-negative integer");
  assert(Number.isSafeInteger(chunkSizeMaxBytes) && chunkSizeMaxBytes >= 1, "chunk size ≥ 1");
  const sizes: number[] = [];
  for (let offset = 0; offset < objectSizeBytes; offset += chunkSizeMaxBytes) {
    sizes.push(Math.min(chunkSizeMaxBytes, objectSizeBytes - offset));
  }
  return sizes;
}

/**
 * The fragment slices that hold `ranges` of an object with chunks `chunkSizesBytes` coded with k data
 * fragments, in range order and, within a range, in object order. Throws OvsError OUT_OF_RANGE for a
 * range past the end, INVALID_ARGUMENT for a malformed one.
 */
export function planPartialRead(chunkSizesBytes: readonly number[], k: number, ranges: readonly ByteRange[]): FragmentSlice[] {
  assert(Number.isInteger(k) && k >= 1, "k ≥ 1");
  const chunkStartsBytes: number[] = [];
  let objectSizeBytes = 0;
  for (const size of chunkSizesBytes) {
    assert(Number.isSafeInteger(size) && size >= 0, "chunk sizes are non-negative integers");
    chunkStartsBytes.push(objectSizeBytes);
    objectSizeBytes += size;
  }
  const slices: FragmentSlice[] = [];
  ranges.forEach((range, rangeIndex) => {
    const { offsetBytes, lengthBytes } = range;
    if (!(Number.isSafeInteger(offsetBytes) && offsetBytes >= 0 && Number.isSafeInteger(lengthBytes) && lengthBytes >= 0)) {
      throw new OvsError("INVALID_ARGUMENT", `range ${rangeIndex} (offset ${offsetBytes}, length ${lengthBytes}) is not a pair of non-negative integers.`);
    }
    if (offsetBytes + lengthBytes > objectSizeBytes) {
      throw new OvsError("OUT_OF_RANGE", `range ${rangeIndex} [${offsetBytes}, ${offsetBytes + lengthBytes}) ends past the object's ${objectSizeBytes} bytes.`, {
        rangeIndex,
        objectSizeBytes,
      });
    }
    const endBytes = offsetBytes + lengthBytes;
    let position = offsetBytes;
    let chunkIndex = lastChunkStartingAtOrBefore(chunkStartsBytes, position);
    while (position < endBytes) {
      while (position >= chunkStartsBytes[chunkIndex]! + chunkSizesBytes[chunkIndex]!) chunkIndex++;
      const chunkStart = chunkStartsBytes[chunkIndex]!;
      const chunkSize = chunkSizesBytes[chunkIndex]!;
      const fragmentSizeBytes = fragmentSizeBytesFor(chunkSize, k);
      const withinChunk = position - chunkStart;
      const fragmentIndex = Math.floor(withinChunk / fragmentSizeBytes);
      const fragmentOffsetBytes = withinChunk - fragmentIndex * fragmentSizeBytes;
      const length = Math.min(endBytes - position, fragmentSizeBytes - fragmentOffsetBytes, chunkStart + chunkSize - position);
      assert(length > 0 && fragmentIndex < k, "a slice is non-empty and in a data fragment");
      slices.push({
        rangeIndex,
        rangeOffsetBytes: position - offsetBytes,
        chunkIndex,
        fragmentIndex,
        fragmentOffsetBytes,
        packedOffsetBytes: fragmentHeaderSizeBytes + fragmentOffsetBytes,
        lengthBytes: length,
      });
      position += length;
    }
  });
  return slices;
}

function lastChunkStartingAtOrBefore(chunkStartsBytes: readonly number[], position: number): number {
  let low = 0;
  let high = chunkStartsBytes.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if (chunkStartsBytes[middle]! <= position) low = middle;
    else high = middle - 1;
  }
  return low;
}
