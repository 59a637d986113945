// TLog codec (spec: docs/formats/tlog.md; golden vectors in tlog-format.test.ts).
//
// A TLog is a header followed by fixed 32-byte entries, each protected by its own CRC32C so that a torn
// tail (a crash in the middle of an append) is detected and cut off on replay. Entries are written in
// the order the volume applied them; replaying them in order rebuilds the cluster map.
//
// Persisted enums (EntryKind) are never renumbered.

import { assert, crc32cRange, storeUint32 } from "../base/index.js";

export const tlogMagic = Buffer.from("OVSTLOG\0", "latin1");
export const tlogFormatVersion = 1;
export const tlogHeaderSizeBytes = 32;
export const tlogEntrySizeBytes = 32;

export enum EntryKind {
  /** A cluster was written: address → (SCO, offset) with the data's CRC32C. */
  Location = 1,
  /** A run of clusters was trimmed or zeroed: they read as zeros. */
  Trim = 2,
  /** A SCO was closed: its name, cluster count and CRC32C of its whole content. */
  ScoCrc = 3,
  /** The TLog was closed: entry count before this one and the CRC32C over those entries' bytes. */
  TlogCrc = 4,
}

export interface LocationEntry {
  kind: EntryKind.Location;
  clusterAddress: number;
  cloneId: number;
  scoNumber: number;
  scoVersion: number;
  offsetClusters: number; // index of the cluster inside its SCO
  dataCrc: number;
}
export interface TrimEntry {
  kind: EntryKind.Trim;
  clusterAddress: number;
  clusterCount: number;
}
export interface ScoCrcEntry {
  kind: EntryKind.ScoCrc;
  cloneId: number;
  scoNumber: number;
  scoVersion: number;
  clusterCount: number;
  scoCrc: number;
}
export interface TlogCrcEntry {
  kind: EntryKind.TlogCrc;
  entryCount: number;
  entriesCrc: number;
}
export type TlogEntry = LocationEntry | TrimEntry | ScoCrcEntry | TlogCrcEntry;

/** 2^35 clusters (128 TiB at 4 KiB) like the original; addresses fit a 53-bit number. */
export const clusterAddressMax = 2 ** 35 - 1;

export function encodeTlogHeader(target: Buffer, clusterSizeBytes: number): void {
  assert(target.length >= tlogHeaderSizeBytes);
  target.fill(0, 0, tlogHeaderSizeBytes);
  tlogMagic.copy(target, 0);
  target.writeUInt16LE(tlogFormatVersion, 8);
  target.writeUInt32LE(clusterSizeBytes, 12);
  target.writeUInt32LE(crc32cRange(target, 0, 28), 28);
}

export type HeaderResult = { ok: true; clusterSizeBytes: number } | { ok: false; reason: string };

export function decodeTlogHeader(source: Buffer): HeaderResult {
  if (source.length < tlogHeaderSizeBytes) return { ok: false, reason: "TLog shorter than its header" };
  if (!source.subarray(0, 8).equals(tlogMagic)) return { ok: false, reason: "bad TLog magic" };
  if (source.readUInt32LE(28) !== crc32cRange(source, 0, 28)) return { ok: false, reason: "TLog header CRC mismatch" };
  const version = source.readUInt16LE(8);
  if (version !== tlogFormatVersion) return { ok: false, reason: `unsupported TLog version ${version}` };
  return { ok: true, clusterSizeBytes: source.readUInt32LE(12) };
}

/**
 * The TLog CRC: CRC32C over bytes 0–27 of each entry, in order, continuing from `initial`. Each entry's
 * own CRC field is left out on purpose: a CRC32C over data followed by that data's CRC32C is a constant
 * (the CRC residue), so including them would make the TLog CRC blind to the entries' content.
 */
export function entriesCrcOf(source: Buffer, firstEntryOffset: number, entryCount: number, initial = 0): number {
  let crc = initial;
  for (let i = 0; i < entryCount; i++) {
    const offset = firstEntryOffset + i * tlogEntrySizeBytes;
    crc = crc32cRange(source, offset, offset + 28, crc);
  }
  return crc;
}

/** Offset of an entry's own CRC (over its bytes 0–27) within the entry. */
export const tlogEntryCrcOffset = 28;

/**
 * Encodes a Location entry (clone 0, version 0) without building an entry object, its CRC left out
 * (encodeLocationEntry adds it; the volume seals a run of entries in one native call,
 * crc32cSealRecords). Byte stores rather than Buffer.writeUInt32LE, whose argument checks were ~9 % of
 * the main thread under sequential writes. The caller passes valid values (a uint32 SCO number, offset
 * and CRC; an address within clusterAddressMax).
 */
export function encodeLocationEntryBody(target: Buffer, offset: number, clusterAddress: number, scoNumber: number, offsetClusters: number, dataCrc: number): void {
  target[offset] = EntryKind.Location;
  target[offset + 1] = 0;
  target[offset + 2] = 0;
  target[offset + 3] = 0;
  storeUint32(target, offset + 4, scoNumber);
  const low = clusterAddress >>> 0;
  storeUint32(target, offset + 8, low);
  storeUint32(target, offset + 12, (clusterAddress - low) / 2 ** 32);
  storeUint32(target, offset + 16, offsetClusters);
  storeUint32(target, offset + 20, dataCrc);
  storeUint32(target, offset + 24, 0);
}

/** Encodes a whole Location entry (clone 0, version 0): encodeLocationEntryBody plus the entry's CRC. */
export function encodeLocationEntry(target: Buffer, offset: number, clusterAddress: number, scoNumber: number, offsetClusters: number, dataCrc: number): void {
  encodeLocationEntryBody(target, offset, clusterAddress, scoNumber, offsetClusters, dataCrc);
  storeUint32(target, offset + tlogEntryCrcOffset, crc32cRange(target, offset, offset + tlogEntryCrcOffset));
}

/** Encodes one entry at target[offset .. offset+32). */
export function encodeTlogEntry(target: Buffer, offset: number, entry: TlogEntry): void {
  target.fill(0, offset, offset + tlogEntrySizeBytes);
  target.writeUInt8(entry.kind, offset);
  switch (entry.kind) {
    case EntryKind.Location:
      assert(entry.clusterAddress >= 0 && entry.clusterAddress <= clusterAddressMax, "cluster address out of range");
      target.writeUInt8(entry.cloneId, offset + 1);
      target.writeUInt8(entry.scoVersion, offset + 2);
      target.writeUInt32LE(entry.scoNumber, offset + 4);
      writeUInt64(target, offset + 8, entry.clusterAddress);
      target.writeUInt32LE(entry.offsetClusters, offset + 16);
      target.writeUInt32LE(entry.dataCrc, offset + 20);
      break;
    case EntryKind.Trim:
      writeUInt64(target, offset + 8, entry.clusterAddress);
      target.writeUInt32LE(entry.clusterCount, offset + 16);
      break;
    case EntryKind.ScoCrc:
      target.writeUInt8(entry.cloneId, offset + 1);
      target.writeUInt8(entry.scoVersion, offset + 2);
      target.writeUInt32LE(entry.scoNumber, offset + 4);
      target.writeUInt32LE(entry.clusterCount, offset + 16);
      target.writeUInt32LE(entry.scoCrc, offset + 20);
      break;
    case EntryKind.TlogCrc:
      target.writeUInt32LE(entry.entryCount, offset + 16);
      target.writeUInt32LE(entry.entriesCrc, offset + 20);
      break;
  }
  target.writeUInt32LE(crc32cRange(target, offset, offset + 28), offset + 28);
}

export type EntryResult = { ok: true; entry: TlogEntry } | { ok: false; reason: string };

/** Decodes the entry at source[offset .. offset+32); a bad CRC or kind is a reason, never a throw. */
export function decodeTlogEntry(source: Buffer, offset: number): EntryResult {
  if (source.length - offset < tlogEntrySizeBytes) return { ok: false, reason: "truncated entry" };
  if (source.readUInt32LE(offset + 28) !== crc32cRange(source, offset, offset + 28)) {
    return { ok: false, reason: "entry CRC mismatch" };
  }
  const kind = source.readUInt8(offset);
  switch (kind) {
    case EntryKind.Location:
      return {
        ok: true,
        entry: {
          kind,
          cloneId: source.readUInt8(offset + 1),
          scoVersion: source.readUInt8(offset + 2),
          scoNumber: source.readUInt32LE(offset + 4),
          clusterAddress: readUInt64(source, offset + 8),
          offsetClusters: source.readUInt32LE(offset + 16),
          dataCrc: source.readUInt32LE(offset + 20),
        },
      };
    case EntryKind.Trim:
      return { ok: true, entry: { kind, clusterAddress: readUInt64(source, offset + 8), clusterCount: source.readUInt32LE(offset + 16) } };
    case EntryKind.ScoCrc:
      return {
        ok: true,
        entry: {
          kind,
          cloneId: source.readUInt8(offset + 1),
          scoVersion: source.readUInt8(offset + 2),
          scoNumber: source.readUInt32LE(offset + 4),
          clusterCount: source.readUInt32LE(offset + 16),
          scoCrc: source.readUInt32LE(offset + 20),
        },
      };
    case EntryKind.TlogCrc:
      return { ok: true, entry: { kind, entryCount: source.readUInt32LE(offset + 16), entriesCrc: source.readUInt32LE(offset + 20) } };
    default:
      return { ok: false, reason: `unknown entry kind ${kind}` };
  }
}

export interface ParsedTlog {
  entries: TlogEntry[];
  /** Bytes of header plus valid entries; anything after is a torn tail. */
  validSizeBytes: number;
  /** Why parsing stopped before the end, if it did. */
  tailReason: string | undefined;
  closed: boolean;
}

/** Parses a whole TLog, stopping at the first invalid entry (a torn tail after a crash). */
export function parseTlog(source: Buffer): ParsedTlog {
  const header = decodeTlogHeader(source);
  if (!header.ok) return { entries: [], validSizeBytes: 0, tailReason: header.reason, closed: false };
  const entries: TlogEntry[] = [];
  let offset = tlogHeaderSizeBytes;
  let tailReason: string | undefined;
  let closed = false;
  while (offset < source.length) {
    const result = decodeTlogEntry(source, offset);
    if (!result.ok) {
      tailReason = result.reason;
      break;
    }
    if (result.entry.kind === EntryKind.TlogCrc) {
      const expectedCount = (offset - tlogHeaderSizeBytes) / tlogEntrySizeBytes;
      const entriesCrc = entriesCrcOf(source, tlogHeaderSizeBytes, expectedCount);
      if (result.entry.entriesCrc !== entriesCrc || result.entry.entryCount !== expectedCount) {
        tailReason = "TLog CRC entry does not match the entries before it";
        break;
      }
      closed = true;
    }
    entries.push(result.entry);
    offset += tlogEntrySizeBytes;
    if (closed) break;
  }
  return { entries, validSizeBytes: offset, tailReason, closed };
}

/**
 * Checks a whole TLog as parseTlog does (header, every entry's CRC and kind, the closing TlogCrc entry
 * against the entries before it) without building entry objects: the entry count before the TlogCrc
 * entry, or why it is unusable (a torn tail, or not closed). Entry i is at tlogEntryOffset(i); read its
 * fields with the entry*At readers. The scrubber's scan of every listed TLog.
 */
export function checkClosedTlog(source: Buffer): { ok: true; entryCount: number } | { ok: false; reason: string } {
  const header = decodeTlogHeader(source);
  if (!header.ok) return header;
  let entriesCrc = 0;
  for (let offset = tlogHeaderSizeBytes; offset + tlogEntrySizeBytes <= source.length; offset += tlogEntrySizeBytes) {
    if (source.readUInt32LE(offset + 28) !== crc32cRange(source, offset, offset + 28)) return { ok: false, reason: "entry CRC mismatch" };
    const kind = source[offset]!;
    if (kind === EntryKind.TlogCrc) {
      const entryCount = (offset - tlogHeaderSizeBytes) / tlogEntrySizeBytes;
      if (source.readUInt32LE(offset + 20) !== entriesCrc || source.readUInt32LE(offset + 16) !== entryCount) {
        return { ok: false, reason: "TLog CRC entry does not match the entries before it" };
      }
      return { ok: true, entryCount };
    }
    if (kind !== EntryKind.Location && kind !== EntryKind.Trim && kind !== EntryKind.ScoCrc) return { ok: false, reason: `unknown entry kind ${kind}` };
    entriesCrc = crc32cRange(source, offset, offset + 28, entriesCrc);
  }
  return { ok: false, reason: source.length % tlogEntrySizeBytes === 0 ? "not closed" : "truncated entry" };
}

/** Byte offset of entry `index` in a TLog. */
export function tlogEntryOffset(index: number): number {
  return tlogHeaderSizeBytes + index * tlogEntrySizeBytes;
}

// Field readers of a checked entry at `offset` (layout: docs/formats/tlog.md).
/** The entry's kind (EntryKind). */
export const entryKindAt = (source: Buffer, offset: number): number => source[offset]!;
/** Location and ScoCrc: the SCO number. */
export const entryScoNumberAt = (source: Buffer, offset: number): number => source.readUInt32LE(offset + 4);
/** Location and Trim: the (first) cluster address. */
export const entryAddressAt = (source: Buffer, offset: number): number => readUInt64(source, offset + 8);
/** Location: the cluster's offset in its SCO; Trim and ScoCrc: the cluster count. */
export const entryCountOrOffsetAt = (source: Buffer, offset: number): number => source.readUInt32LE(offset + 16);
/** Location: the data CRC; ScoCrc: the SCO CRC. */
export const entryCrcAt = (source: Buffer, offset: number): number => source.readUInt32LE(offset + 20);
/** Location and ScoCrc: the clone id and the SCO version. */
export const entryCloneIdAt = (source: Buffer, offset: number): number => source[offset + 1]!;
export const entryScoVersionAt = (source: Buffer, offset: number): number => source[offset + 2]!;

function writeUInt64(target: Buffer, offset: number, value: number): void {
  target.writeUInt32LE(value % 2 ** 32, offset);
  target.writeUInt32LE(Math.floor(value / 2 ** 32), offset + 4);
}

function readUInt64(source: Buffer, offset: number): number {
  return source.readUInt32LE(offset) + source.readUInt32LE(offset + 4) * 2 ** 32;
}
