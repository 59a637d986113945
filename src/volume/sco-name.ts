// SCO naming (docs/formats/sco.md): `cc_nnnnnnnn_vv`, hex clone id (8 bits), SCO number (32 bits) and
// version (8 bits), as in the original so that operators recognise them. SCO number 0 is never used:
// a location with SCO number 0 means "unwritten" (reads as zeros).

import { assert } from "../base/index.js";

export interface ScoId {
  cloneId: number; // 0 = this volume; later issues: 1.. = parents
  scoNumber: number; // 1 .. 2^32-1
  version: number; // bumped by the scrubber when it rewrites a SCO
}

export const scoNumberMax = 0xffff_ffff;

export function scoName(id: ScoId): string {
  assert(id.cloneId >= 0 && id.cloneId <= 0xff, "clone id out of range");
  assert(id.scoNumber >= 1 && id.scoNumber <= scoNumberMax, "SCO number out of range");
  assert(id.version >= 0 && id.version <= 0xff, "SCO version out of range");
  return `${hex(id.cloneId, 2)}_${hex(id.scoNumber, 8)}_${hex(id.version, 2)}`;
}

/** Parses a SCO name; returns undefined for anything that is not one. */
export function parseScoName(name: string): ScoId | undefined {
  const match = /^([0-9a-f]{2})_([0-9a-f]{8})_([0-9a-f]{2})$/.exec(name);
  if (!match) return undefined;
  const id = { cloneId: parseInt(match[1]!, 16), scoNumber: parseInt(match[2]!, 16), version: parseInt(match[3]!, 16) };
  return id.scoNumber === 0 ? undefined : id;
}

function hex(value: number, width: number): string {
  return value.toString(16).padStart(width, "0");
}
