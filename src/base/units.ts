// Sizes with units: parse "10G", "512M", "4096" and print them back. Binary units (K = 1024).
// Sizes stay below 2^53 (the largest vDisk is 64 TiB), so plain numbers are exact.

import { OvsError } from "./errors.js";

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;

const suffixBytes: Record<string, number> = {
  "": 1, B: 1,
  K: KiB, KB: KiB, KIB: KiB,
  M: MiB, MB: MiB, MIB: MiB,
  G: GiB, GB: GiB, GIB: GiB,
  T: TiB, TB: TiB, TIB: TiB,
};

/** Parses "10G", "1.5T", "4096" (binary units) into bytes; throws INVALID_ARGUMENT on anything else. */
export function parseSizeBytes(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const multiplier = match ? suffixBytes[match[2]!.toUpperCase()] : undefined;
  if (!match || multiplier === undefined) {
    throw new OvsError("INVALID_ARGUMENT", `"${text}" is not a size; use a number with an optional unit K, M, G or T (e.g. 10G).`);
  }
  const bytes = Math.round(Number(match[1]) * multiplier);
  if (!Number.isSafeInteger(bytes)) throw new OvsError("INVALID_ARGUMENT", `size "${text}" is too large.`);
  return bytes;
}

/** Formats bytes with the largest binary unit that keeps the value >= 1, e.g. 10737418240 → "10 GiB". */
export function formatBytes(bytes: number): string {
  const units: Array<[string, number]> = [["TiB", TiB], ["GiB", GiB], ["MiB", MiB], ["KiB", KiB]];
  for (const [name, size] of units) {
    if (bytes >= size) {
      const value = bytes / size;
      return `${Number.isInteger(value) ? value : value.toFixed(2)} ${name}`;
    }
  }
  return `${bytes} B`;
}
