// Validation of the arguments every ObjectBackend takes: namespace and object names, list options and
// byte ranges (object-backend.ts states the rules). Shared by every implementation so that they all
// refuse the same input with the same INVALID_ARGUMENT. Imported by backend/ implementations only (and
// re-exported through backend/index.ts for clients that want to check names early).
//
// Invariant: a valid name is 1–nameBytesMax bytes of [A-Za-z0-9._-] not starting with "."; such a name
// is a safe single path component on every filesystem we run on, and its UTF-16 code units are its
// bytes, so JavaScript's `<` on names is the byte order that listings promise.

import { OvsError } from "../base/index.js";
import { listLimitMax, type ByteRange, type ListOptions } from "./object-backend.js";

export const nameBytesMax = 255;

const namePattern = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;
const prefixPattern = /^[A-Za-z0-9._-]*$/;

/** True if `name` is a valid namespace or object name. */
export function isValidName(name: unknown): name is string {
  return typeof name === "string" && name.length >= 1 && name.length <= nameBytesMax && namePattern.test(name);
}

/** Throws INVALID_ARGUMENT unless `name` is a valid namespace or object name; `what` names it in the message. */
export function validateName(name: unknown, what: "namespace" | "object name"): asserts name is string {
  if (!isValidName(name)) {
    const shown = typeof name === "string" ? JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name) : typeof name;
    throw new OvsError(
      "INVALID_ARGUMENT",
      `${what} ${shown} is invalid: use 1–${nameBytesMax} characters of A–Z, a–z, 0–9, ".", "_" and "-", not starting with ".".`,
      { [what === "namespace" ? "namespace" : "name"]: typeof name === "string" ? name : undefined },
    );
  }
}

export interface CheckedListOptions {
  prefix: string;
  after: string | undefined;
  limit: number;
}

/**
 * Checks list options and fills in defaults. `prefix` and `after` must be made of name characters (at
 * most nameBytesMax of them; either may be empty); `limit` must be a positive integer and is clamped to
 * listLimitMax.
 */
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
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new OvsError("INVALID_ARGUMENT", `list limit ${String(limit)} is invalid: use a positive integer.`);
  }
  return { prefix, after, limit: Math.min(limit, listLimitMax) };
}

/**
 * Selects one page from unsorted `names`: those with the prefix, strictly after `after`, sorted by
 * bytes, at most `limit` of them. Sorts a copy of the matches only.
 */
export function selectPage(names: Iterable<string>, options: CheckedListOptions): { names: string[]; more: boolean } {
  const matches: string[] = [];
  for (const name of names) {
    if (!name.startsWith(options.prefix)) continue;
    if (options.after !== undefined && !(name > options.after)) continue;
    matches.push(name);
  }
  matches.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const more = matches.length > options.limit;
  if (more) matches.length = options.limit;
  return { names: matches, more };
}

/** Throws INVALID_ARGUMENT unless every range has a non-negative safe-integer offset and length. */
export function validateRanges(ranges: readonly ByteRange[], rangeCountMax: number): void {
  if (!Array.isArray(ranges)) throw new OvsError("INVALID_ARGUMENT", "ranges must be an array.");
  if (ranges.length > rangeCountMax) {
    throw new OvsError("INVALID_ARGUMENT", `${ranges.length} ranges in one call; at most ${rangeCountMax} are allowed.`);
  }
  for (const range of ranges) {
    const offsetBytes = range?.offsetBytes;
    const lengthBytes = range?.lengthBytes;
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || !Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
      throw new OvsError(
        "INVALID_ARGUMENT",
        `range {offsetBytes: ${String(offsetBytes)}, lengthBytes: ${String(lengthBytes)}} is invalid: use non-negative integers.`,
      );
    }
  }
}
