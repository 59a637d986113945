// Argument checks of the ObjectBackend calls that backend/index.ts does not export (list options, byte
// ranges, assert and update shapes), so AlbaBackend refuses the same input as LocalBackend with the same
// INVALID_ARGUMENT. Imported by alba-backend.ts only. Pure functions.

import { OvsError } from "../../base/index.js";
import { listLimitMax, nameBytesMax, validateName, type ByteRange, type ListOptions, type ObjectAssert, type ObjectUpdate } from "../../backend/index.js";

const prefixPattern = /^[A-Za-z0-9._-]*$/;

export interface CheckedListOptions {
  prefix: string;
  after: string | undefined;
  limit: number;
}

export function checkListOptions(options: ListOptions | undefined): CheckedListOptions {
  const prefix = options?.prefix ?? "";
  const after = options?.after;
  const limit = options?.limit ?? listLimitMax;
  if (typeof prefix !== "string" || prefix.length > nameBytesMax || !prefixPattern.test(prefix)) {
    throw new OvsError("INVALID_ARGUMENT", `list prefix ${JSON.stringify(prefix)} is invalid: use name characters only.`);
  }
  if (after !== undefined && (typeof after !== "string" || after.length > nameBytesMax || !prefixPattern.test(after))) {
    throw new OvsError("INVALID_ARGUMENT", `list "after" ${JSON.stringify(after)} is invalid: use name characters only.`);
  }
  if (!Number.isSafeInteger(limit) || limit < 1) throw new OvsError("INVALID_ARGUMENT", `list limit ${String(limit)} is invalid: use a positive integer.`);
  return { prefix, after, limit: Math.min(limit, listLimitMax) };
}

export function validateRanges(ranges: readonly ByteRange[], rangeCountMax: number): void {
  if (!Array.isArray(ranges)) throw new OvsError("INVALID_ARGUMENT", "ranges must be an array.");
  if (ranges.length > rangeCountMax) throw new OvsError("INVALID_ARGUMENT", `${ranges.length} ranges in one call; at most ${rangeCountMax} are allowed.`);
  for (const range of ranges) {
    const offsetBytes = range?.offsetBytes;
    const lengthBytes = range?.lengthBytes;
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || !Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
      throw new OvsError("INVALID_ARGUMENT", `range {offsetBytes: ${String(offsetBytes)}, lengthBytes: ${String(lengthBytes)}} is invalid: use non-negative integers.`);
    }
  }
}

export function validateAsserts(asserts: readonly ObjectAssert[]): void {
  if (!Array.isArray(asserts)) throw new OvsError("INVALID_ARGUMENT", "asserts must be an array.");
  for (const item of asserts) {
    if (typeof item !== "object" || item === null) throw new OvsError("INVALID_ARGUMENT", "An assert must be an object.");
    if (item.kind !== "absent" && item.kind !== "equals") throw new OvsError("INVALID_ARGUMENT", `Unknown assert kind ${JSON.stringify((item as { kind: unknown }).kind)}.`);
    validateName(item.name, "object name");
    if (item.kind === "equals" && !(item.value instanceof Uint8Array)) throw new OvsError("INVALID_ARGUMENT", "An equals assert needs a Uint8Array value.");
  }
}

export function validateUpdates(updates: readonly ObjectUpdate[]): void {
  if (!Array.isArray(updates)) throw new OvsError("INVALID_ARGUMENT", "updates must be an array.");
  for (const item of updates) {
    if (typeof item !== "object" || item === null) throw new OvsError("INVALID_ARGUMENT", "An update must be an object.");
    if (item.kind !== "put" && item.kind !== "delete") throw new OvsError("INVALID_ARGUMENT", `Unknown update kind ${JSON.stringify((item as { kind: unknown }).kind)}.`);
    validateName(item.name, "object name");
    if (item.kind === "put" && !(item.data instanceof Uint8Array)) throw new OvsError("INVALID_ARGUMENT", "A put needs Uint8Array data.");
  }
}
