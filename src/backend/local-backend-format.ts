// Codecs of the local backend's two on-disk formats, specified in docs/formats/local-backend.md:
// - the object file: a 32-byte header, a table of one crc32c per 4 KiB block, then the object's bytes;
// - the apply journal: a 16-byte header and a JSON body listing the updates of one committed apply.
// Measure / encode / decode, so that callers allocate once. Decoders return a reason on bad input, they
// never throw on it. Imported by local-backend.ts and its tests only.
//
// Invariants: persisted numbers (magics, versions, checksum kinds) are never renumbered; v1 writes
// blockShift 12 and checksum kind 1 only; the data of a block is covered by exactly its table entry.
// Limits: objectSizeBytesMax (1 GiB) keeps the table and every offset far below 2^32.
// Buffers: encoders write into buffers the caller owns; decoders keep no reference to their input.

import { assert, crc32c, crc32cBlocks, GiB } from "../base/index.js";

const littleEndianHost = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
import { isValidName } from "./names.js";

export const objectMagic = 0x4c53564f; // "OVSL" read as a little-endian u32
export const objectFormatVersion = 1;
/** A linked object: the file holds the header and table only; the bytes are in its data file. */
export const objectFormatVersionLinked = 2;
export const objectHeaderBytes = 32;
export const objectBlockShift = 12;
export const objectBlockBytes = 1 << objectBlockShift; // 4096: the vDisk cluster size
export const checksumKindCrc32c = 1;
export const objectChecksumBytes = 4;
export const objectSizeBytesMax = 1 * GiB;

const headerCrcOffset = 28;

/** Number of 4 KiB blocks (and table entries) of an object of `dataBytes`; the last block may be short. */
export function objectBlockCount(dataBytes: number): number {
  return Math.ceil(dataBytes / objectBlockBytes);
}

/** File offset of the object's first byte: after the header and the checksum table. */
export function objectDataOffsetBytes(dataBytes: number): number {
  return objectHeaderBytes + objectChecksumBytes * objectBlockCount(dataBytes);
}

/** Total size of the object file holding `dataBytes` bytes. */
export function objectFileBytes(dataBytes: number): number {
  return objectDataOffsetBytes(dataBytes) + dataBytes;
}

/**
 * Encodes the header and checksum table of `data` into `out[0, objectDataOffsetBytes(data.length))`.
 * The file is `out` followed by `data` itself: the data is never copied.
 */
export function encodeObjectPrefix(data: Uint8Array, out: Buffer, linkId?: string, blockCrcs?: Uint32Array): void {
  const dataBytes = data.length;
  assert(dataBytes <= objectSizeBytesMax, "object too large for the local format");
  const blockCount = objectBlockCount(dataBytes);
  assert(out.length >= objectDataOffsetBytes(dataBytes), "prefix buffer too small");
  out.writeUInt32LE(objectMagic, 0);
  out.writeUInt16LE(linkId === undefined ? objectFormatVersion : objectFormatVersionLinked, 4);
  out.writeUInt8(objectBlockShift, 6);
  out.writeUInt8(checksumKindCrc32c, 7);
  out.writeBigUInt64LE(BigInt(dataBytes), 8);
  out.fill(0, 16, headerCrcOffset);
  if (linkId !== undefined) {
    assert(isLinkId(linkId), "a link id is 16 lowercase hex digits, not all zero");
    out.write(linkId, linkIdOffset, "hex");
  }
  out.writeUInt32LE(crc32c(out.subarray(0, headerCrcOffset)), headerCrcOffset);
  // Full blocks in one call (one N-API crossing per object, not per 4 KiB block), then the short tail.
  const fullBlocks = Math.floor(dataBytes / objectBlockBytes);
  const inPlace = littleEndianHost && (out.byteOffset + objectHeaderBytes) % 4 === 0;
  const table = inPlace ? new Uint32Array(out.buffer, out.byteOffset + objectHeaderBytes, blockCount) : new Uint32Array(blockCount);
  if (blockCrcs !== undefined) {
    // The caller's checksums of these very bytes (see ObjectUpdate.blockCrcs): no pass over the data.
    assert(blockCrcs.length === blockCount, "one block checksum per 4 KiB block");
    table.set(blockCrcs);
  } else {
    if (fullBlocks > 0) crc32cBlocks(data.subarray(0, fullBlocks * objectBlockBytes), objectBlockBytes, table);
    if (fullBlocks < blockCount) table[fullBlocks] = crc32c(data.subarray(fullBlocks * objectBlockBytes));
  }
  if (!inPlace) for (let i = 0; i < blockCount; i++) out.writeUInt32LE(table[i]!, objectHeaderBytes + objectChecksumBytes * i);
}

// ---- linked objects (version 2) ----

const linkIdOffset = 16;
const linkIdBytes = 8;
const linkedDataPrefix = ".d-";
/** Longest object name that can be linked: its data file name must fit in 255 bytes. */
export const linkedNameBytesMax = 255 - linkedDataPrefix.length - 2 * linkIdBytes - 1;

function isLinkId(linkId: string): boolean {
  return /^[0-9a-f]{16}$/.test(linkId) && linkId !== "0000000000000000";
}

/** The file holding the bytes of the linked object `name` whose header carries `linkId`. */
export function linkedDataFileName(linkId: string, name: string): string {
  return `${linkedDataPrefix}${linkId}-${name}`;
}

/** The link id and object name a linked data file belongs to, or undefined for another file name. */
export function parseLinkedDataFileName(fileName: string): { linkId: string; name: string } | undefined {
  if (!fileName.startsWith(linkedDataPrefix)) return undefined;
  const linkId = fileName.slice(linkedDataPrefix.length, linkedDataPrefix.length + 2 * linkIdBytes);
  const separator = fileName[linkedDataPrefix.length + 2 * linkIdBytes];
  const name = fileName.slice(linkedDataPrefix.length + 2 * linkIdBytes + 1);
  if (!isLinkId(linkId) || separator !== "-" || !isValidName(name)) return undefined;
  return { linkId, name };
}

export type HeaderDecodeResult =
  /** linkId: set for a linked object (version 2), whose bytes are in linkedDataFileName(linkId, name). */
  | { ok: true; dataBytes: number; linkId: string | undefined }
  /** CHECKSUM_MISMATCH: the bytes are damaged; CORRUPT: intact but not something this version reads. */
  | { ok: false; code: "CHECKSUM_MISMATCH" | "CORRUPT"; reason: string };

/** Decodes and verifies the 32-byte header at the start of `bytes`. */
export function decodeObjectHeader(bytes: Uint8Array): HeaderDecodeResult {
  if (bytes.length < objectHeaderBytes) {
    return { ok: false, code: "CHECKSUM_MISMATCH", reason: `file is ${bytes.length} bytes, shorter than the ${objectHeaderBytes}-byte header` };
  }
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, objectHeaderBytes);
  const storedCrc = view.readUInt32LE(headerCrcOffset);
  const actualCrc = crc32c(view.subarray(0, headerCrcOffset));
  if (storedCrc !== actualCrc) {
    return { ok: false, code: "CHECKSUM_MISMATCH", reason: `header crc32c is ${hex32(actualCrc)}, stored ${hex32(storedCrc)}` };
  }
  if (view.readUInt32LE(0) !== objectMagic) return { ok: false, code: "CORRUPT", reason: "bad magic (not an object file)" };
  const version = view.readUInt16LE(4);
  if (version !== objectFormatVersion && version !== objectFormatVersionLinked) {
    return { ok: false, code: "CORRUPT", reason: `unsupported format version ${version}` };
  }
  if (view.readUInt8(6) !== objectBlockShift) return { ok: false, code: "CORRUPT", reason: `unsupported block shift ${view.readUInt8(6)}` };
  if (view.readUInt8(7) !== checksumKindCrc32c) return { ok: false, code: "CORRUPT", reason: `unsupported checksum kind ${view.readUInt8(7)}` };
  const linked = version === objectFormatVersionLinked;
  const linkId = linked ? view.toString("hex", linkIdOffset, linkIdOffset + linkIdBytes) : undefined;
  if (linkId !== undefined && !isLinkId(linkId)) return { ok: false, code: "CORRUPT", reason: "the link id is zero" };
  for (let offset = linked ? linkIdOffset + linkIdBytes : 16; offset < headerCrcOffset; offset += 1) {
    if (view[offset] !== 0) return { ok: false, code: "CORRUPT", reason: `reserved header byte ${offset} is not zero` };
  }
  const dataBytes = view.readBigUInt64LE(8);
  if (dataBytes > BigInt(objectSizeBytesMax)) return { ok: false, code: "CORRUPT", reason: `object size ${dataBytes} exceeds the maximum` };
  return { ok: true, dataBytes: Number(dataBytes), linkId };
}

/**
 * Verifies the blocks held in `blocks`, which starts at block `firstBlockIndex` of an object of
 * `dataBytes` and ends at a block boundary or at the object's end. `table` holds checksum entries
 * starting with entry `tableFirstIndex`. Returns the index of the first block that fails, or -1.
 */
export function findBadBlock(
  blocks: Uint8Array,
  firstBlockIndex: number,
  dataBytes: number,
  table: Uint8Array,
  tableFirstIndex: number,
): number {
  const firstByte = firstBlockIndex * objectBlockBytes;
  assert(firstByte + blocks.length <= dataBytes, "blocks run past the object");
  assert(blocks.length === 0 || (firstByte + blocks.length) % objectBlockBytes === 0 || firstByte + blocks.length === dataBytes,
    "blocks do not end at a block boundary");
  const tableView = Buffer.from(table.buffer, table.byteOffset, table.length);
  for (let start = 0; start < blocks.length; start += objectBlockBytes) {
    const blockIndex = firstBlockIndex + start / objectBlockBytes;
    const entryOffset = objectChecksumBytes * (blockIndex - tableFirstIndex);
    assert(entryOffset >= 0 && entryOffset + objectChecksumBytes <= table.length, "checksum entry not in the table read");
    const end = Math.min(start + objectBlockBytes, blocks.length);
    if (crc32c(blocks.subarray(start, end)) !== tableView.readUInt32LE(entryOffset)) return blockIndex;
  }
  return -1;
}

// ---- apply journal ----

export const journalMagic = 0x4a53564f; // "OVSJ" read as a little-endian u32
export const journalFormatVersion = 1;
export const journalHeaderBytes = 16;

export type JournalUpdate = { kind: "put"; name: string } | { kind: "delete"; name: string };

export interface Journal {
  /** 16 lowercase hex digits; names the journal file and the apply's staged objects. */
  applyId: string;
  /** Updates in order, at most one per name; a put's data is staged in stagedObjectName(applyId, index). */
  updates: JournalUpdate[];
}

export function journalFileName(applyId: string): string {
  return `.journal-${applyId}`;
}

export function stagedObjectName(applyId: string, updateIndex: number): string {
  return `.apply-${applyId}-${updateIndex}`;
}

/** Encodes a journal file (one allocation). */
export function encodeJournal(journal: Journal): Buffer {
  const body = Buffer.from(JSON.stringify({ applyId: journal.applyId, updates: journal.updates }), "utf8");
  const out = Buffer.allocUnsafe(journalHeaderBytes + body.length);
  out.writeUInt32LE(journalMagic, 0);
  out.writeUInt16LE(journalFormatVersion, 4);
  out.writeUInt16LE(0, 6);
  out.writeUInt32LE(body.length, 8);
  body.copy(out, journalHeaderBytes);
  out.writeUInt32LE(crc32c(body, crc32c(out.subarray(0, 12))), 12);
  return out;
}

export type JournalDecodeResult = { ok: true; journal: Journal } | { ok: false; reason: string };

/** Decodes and verifies a journal file. */
export function decodeJournal(bytes: Uint8Array): JournalDecodeResult {
  if (bytes.length < journalHeaderBytes) return { ok: false, reason: "shorter than the journal header" };
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (view.readUInt32LE(0) !== journalMagic) return { ok: false, reason: "bad magic" };
  if (view.readUInt16LE(4) !== journalFormatVersion) return { ok: false, reason: `unsupported version ${view.readUInt16LE(4)}` };
  const bodyBytes = view.readUInt32LE(8);
  if (journalHeaderBytes + bodyBytes !== view.length) return { ok: false, reason: "length does not match the header" };
  const body = view.subarray(journalHeaderBytes);
  if (crc32c(body, crc32c(view.subarray(0, 12))) !== view.readUInt32LE(12)) return { ok: false, reason: "crc32c mismatch" };
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch {
    return { ok: false, reason: "body is not JSON" };
  }
  const candidate = parsed as { applyId?: unknown; updates?: unknown };
  if (typeof candidate.applyId !== "string" || !/^[0-9a-f]{16}$/.test(candidate.applyId) || !Array.isArray(candidate.updates)) {
    return { ok: false, reason: "body lacks applyId or updates" };
  }
  const updates: JournalUpdate[] = [];
  for (const update of candidate.updates as unknown[]) {
    const { kind, name } = (update ?? {}) as { kind?: unknown; name?: unknown };
    if ((kind !== "put" && kind !== "delete") || !isValidName(name)) return { ok: false, reason: "malformed update" };
    updates.push({ kind, name });
  }
  return { ok: true, journal: { applyId: candidate.applyId, updates } };
}

function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, "0")}`;
}
