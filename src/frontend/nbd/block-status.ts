// base:allocation extents from the units (clusters, blocks) of a range that may hold data: the shared
// part of every export's blockStatus(). Imported by memory-export.ts and volume-export.ts.
//
// Invariant: a byte is reported NBD_STATE_HOLE | NBD_STATE_ZERO only if its unit is not in `dataUnits`;
// the caller guarantees that such units read as zeroes. Extents are consecutive from offsetBytes, each
// longer than 0, neighbours with equal flags merged; at most extentCountMax of them (a prefix of the
// range when there would be more). Limits: the work is linear in dataUnits.length.

import { assert } from "../../base/index.js";
import { NBD_STATE_HOLE, NBD_STATE_ZERO, type BlockStatusExtent } from "./protocol.js";

const zeroFlags = NBD_STATE_HOLE | NBD_STATE_ZERO;

/**
 * Extents of [offsetBytes, offsetBytes + lengthBytes), where the units of `unitBytes` listed in
 * `dataUnits` (ascending, unique) are data and every other unit reads as zeroes.
 */
export function extentsOfUnits(offsetBytes: number, lengthBytes: number, unitBytes: number, dataUnits: ArrayLike<number>, extentCountMax: number): BlockStatusExtent[] {
  assert(lengthBytes > 0 && extentCountMax >= 1 && unitBytes > 0, "extentsOfUnits: empty range, no extents or no unit");
  const end = offsetBytes + lengthBytes;
  const extents: BlockStatusExtent[] = [];
  let at = offsetBytes;
  const add = (until: number, flags: number): void => {
    if (until <= at) return;
    const last = extents.at(-1);
    if (last !== undefined && last.flags === flags) last.lengthBytes += until - at;
    else extents.push({ lengthBytes: until - at, flags });
    at = until;
  };
  let i = 0;
  const count = dataUnits.length;
  while (at < end && extents.length <= extentCountMax) {
    while (i < count && (dataUnits[i]! + 1) * unitBytes <= at) i++;
    if (i === count) {
      add(end, zeroFlags);
      break;
    }
    add(Math.min(dataUnits[i]! * unitBytes, end), zeroFlags);
    let j = i;
    while (j + 1 < count && dataUnits[j + 1] === dataUnits[j]! + 1) j++;
    add(Math.min((dataUnits[j]! + 1) * unitBytes, end), 0);
    i = j + 1;
  }
  return extents.length > extentCountMax ? extents.slice(0, extentCountMax) : extents;
}
