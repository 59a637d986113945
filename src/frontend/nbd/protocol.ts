// NBD wire protocol (fixed newstyle): constants and pure codecs. Spec of what we implement:
// docs/formats/nbd.md; the public protocol: NetworkBlockDevice/nbd doc/proto.md.
//
// Imported only by src/frontend/nbd/. No I/O here: every function takes and returns bytes or values.
// Codecs come as measure / encode / decode. Encoders write into a caller-supplied Buffer at an offset
// and return the offset after what they wrote (so a caller can put several messages in one Buffer).
// Decoders never throw on bad input: they return `{ ok: false, reason }`.
// All integers are big-endian (network byte order). 64-bit values are read as two 32-bit halves so
// no bigint is allocated on the hot path; offsets at or above 2^53 decode clamped to
// Number.MAX_SAFE_INTEGER, which is past the end of every export (the largest vDisk is 64 TiB), so
// they fail the range check instead of being silently rounded.
// Buffers: decoders return views (subarray) into the input where they return bytes; callers own them.

import { assert } from "../../base/index.js";

// ---- Magic numbers -------------------------------------------------------------------------------

/** "NBDMAGIC", the first 8 bytes the server sends. */
export const NBD_MAGIC_HI = 0x4e42444d;
export const NBD_MAGIC_LO = 0x41474943;
/** "IHAVEOPT": the second 8 bytes of the server greeting and the first 8 of every option. */
export const NBD_OPTS_MAGIC_HI = 0x49484156;
export const NBD_OPTS_MAGIC_LO = 0x454f5054;
/** Magic of every fixed-newstyle option reply (0x0003e889045565a9). */
export const NBD_REP_MAGIC_HI = 0x0003e889;
export const NBD_REP_MAGIC_LO = 0x045565a9;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// ---- Handshake flags (16 bits, server) and client flags (32 bits) --------------------------------

export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;
/** Client flags we understand; any other bit set makes the server drop the connection (spec: MUST). */
export const NBD_CLIENT_FLAGS_KNOWN = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

// ---- Transmission flags (16 bits) ----------------------------------------------------------------

export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;

// ---- Options -------------------------------------------------------------------------------------

export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;

// ---- Option reply types --------------------------------------------------------------------------

export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
const NBD_REP_FLAG_ERROR = 0x80000000;
export const NBD_REP_ERR_UNSUP = (NBD_REP_FLAG_ERROR | 1) >>> 0;
export const NBD_REP_ERR_POLICY = (NBD_REP_FLAG_ERROR | 2) >>> 0;
export const NBD_REP_ERR_INVALID = (NBD_REP_FLAG_ERROR | 3) >>> 0;
export const NBD_REP_ERR_PLATFORM = (NBD_REP_FLAG_ERROR | 4) >>> 0;
export const NBD_REP_ERR_TLS_REQD = (NBD_REP_FLAG_ERROR | 5) >>> 0;
export const NBD_REP_ERR_UNKNOWN = (NBD_REP_FLAG_ERROR | 6) >>> 0;
export const NBD_REP_ERR_SHUTDOWN = (NBD_REP_FLAG_ERROR | 7) >>> 0;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = (NBD_REP_FLAG_ERROR | 8) >>> 0;
export const NBD_REP_ERR_TOO_BIG = (NBD_REP_FLAG_ERROR | 9) >>> 0;

// ---- Info types (NBD_OPT_INFO / NBD_OPT_GO) ------------------------------------------------------

export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

// ---- Commands and command flags ------------------------------------------------------------------

export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;

export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

// ---- Error values of the simple reply ------------------------------------------------------------

export const NBD_OK = 0;
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

// ---- Sizes of fixed-size messages ----------------------------------------------------------------

/** Server greeting: NBDMAGIC (8), IHAVEOPT (8), handshake flags (2). */
export const GREETING_BYTES = 18;
export const CLIENT_FLAGS_BYTES = 4;
/** Option header: IHAVEOPT (8), option (4), data length (4). */
export const OPTION_HEADER_BYTES = 16;
/** Option reply header: magic (8), option (4), reply type (4), data length (4). */
export const OPTION_REPLY_HEADER_BYTES = 20;
/** Reply to NBD_OPT_EXPORT_NAME: size (8), transmission flags (2), then 124 zeroes unless NO_ZEROES. */
export const EXPORT_NAME_REPLY_BYTES = 10;
export const EXPORT_NAME_REPLY_ZEROES_BYTES = 124;
/** Request header: magic (4), flags (2), type (2), handle (8), offset (8), length (4). */
export const REQUEST_HEADER_BYTES = 28;
/** Simple reply header: magic (4), error (4), handle (8). */
export const SIMPLE_REPLY_HEADER_BYTES = 16;
/** Structured reply chunk header: magic (4), flags (2), type (2), handle (8), payload length (4). */
export const STRUCTURED_REPLY_HEADER_BYTES = 20;

// ---- Structured replies and metadata contexts ----------------------------------------------------

export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_ERROR = (1 << 15) | 1;
export const NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) | 2;
/** The one metadata context the protocol defines, and the only one we serve. */
export const BASE_ALLOCATION = "base:allocation";
/** base:allocation flags: not allocated (thin), and reads as zeroes. */
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;
/** Strings (export names, descriptions, messages) MUST be no longer than this (proto.md). */
export const STRING_BYTES_MAX = 4096;

const TWO_POW_32 = 4294967296;

export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string };

function fail(reason: string): { ok: false; reason: string } {
  return { ok: false, reason };
}

// ---- Greeting and client flags -------------------------------------------------------------------

export function encodeGreeting(target: Buffer, offset: number, handshakeFlags: number): number {
  assert(target.length - offset >= GREETING_BYTES, "greeting: target too small");
  target.writeUInt32BE(NBD_MAGIC_HI, offset);
  target.writeUInt32BE(NBD_MAGIC_LO, offset + 4);
  target.writeUInt32BE(NBD_OPTS_MAGIC_HI, offset + 8);
  target.writeUInt32BE(NBD_OPTS_MAGIC_LO, offset + 12);
  target.writeUInt16BE(handshakeFlags, offset + 16);
  return offset + GREETING_BYTES;
}

/** Decodes the 4-byte client flags; refuses bits the server did not offer (spec: MUST drop). */
export function decodeClientFlags(source: Buffer, offset: number, handshakeFlagsOffered: number): Decoded<number> {
  if (source.length - offset < CLIENT_FLAGS_BYTES) return fail("client flags: truncated");
  const flags = source.readUInt32BE(offset);
  if ((flags & ~NBD_CLIENT_FLAGS_KNOWN) !== 0) return fail(`client flags: unknown bits 0x${flags.toString(16)}`);
  if ((flags & NBD_FLAG_C_NO_ZEROES) !== 0 && (handshakeFlagsOffered & NBD_FLAG_NO_ZEROES) === 0) {
    return fail("client flags: NO_ZEROES set but not offered");
  }
  return { ok: true, value: flags };
}

// ---- Options -------------------------------------------------------------------------------------

export interface OptionHeader {
  option: number;
  dataBytes: number;
}

export function decodeOptionHeader(source: Buffer, offset: number): Decoded<OptionHeader> {
  if (source.length - offset < OPTION_HEADER_BYTES) return fail("option header: truncated");
  if (source.readUInt32BE(offset) !== NBD_OPTS_MAGIC_HI || source.readUInt32BE(offset + 4) !== NBD_OPTS_MAGIC_LO) {
    return fail("option header: bad magic (expected IHAVEOPT)");
  }
  return { ok: true, value: { option: source.readUInt32BE(offset + 8), dataBytes: source.readUInt32BE(offset + 12) } };
}

export function encodeOptionHeader(target: Buffer, offset: number, option: number, dataBytes: number): number {
  assert(target.length - offset >= OPTION_HEADER_BYTES, "option header: target too small");
  target.writeUInt32BE(NBD_OPTS_MAGIC_HI, offset);
  target.writeUInt32BE(NBD_OPTS_MAGIC_LO, offset + 4);
  target.writeUInt32BE(option >>> 0, offset + 8);
  target.writeUInt32BE(dataBytes >>> 0, offset + 12);
  return offset + OPTION_HEADER_BYTES;
}

/** Data of NBD_OPT_INFO and NBD_OPT_GO: name length (4), name, request count (2), requests (2 each). */
export interface InfoRequest {
  exportName: string;
  infoTypes: number[];
}

export function decodeInfoRequest(data: Buffer): Decoded<InfoRequest> {
  if (data.length < 6) return fail("info request: shorter than 6 bytes");
  const nameBytes = data.readUInt32BE(0);
  if (nameBytes > data.length - 6) return fail("info request: name length exceeds option data");
  if (nameBytes > STRING_BYTES_MAX) return fail("info request: name longer than 4096 bytes");
  const name = decodeString(data.subarray(4, 4 + nameBytes));
  if (!name.ok) return name;
  const countOffset = 4 + nameBytes;
  const infoCount = data.readUInt16BE(countOffset);
  if (data.length !== countOffset + 2 + 2 * infoCount) return fail("info request: count does not match option length");
  const infoTypes: number[] = [];
  for (let i = 0; i < infoCount; i++) infoTypes.push(data.readUInt16BE(countOffset + 2 + 2 * i));
  return { ok: true, value: { exportName: name.value, infoTypes } };
}

export function measureInfoRequest(request: InfoRequest): number {
  return 4 + Buffer.byteLength(request.exportName) + 2 + 2 * request.infoTypes.length;
}

export function encodeInfoRequest(target: Buffer, offset: number, request: InfoRequest): number {
  assert(target.length - offset >= measureInfoRequest(request), "info request: target too small");
  const nameBytes = target.write(request.exportName, offset + 4, "utf8");
  target.writeUInt32BE(nameBytes, offset);
  let at = offset + 4 + nameBytes;
  target.writeUInt16BE(request.infoTypes.length, at);
  at += 2;
  for (const type of request.infoTypes) at = target.writeUInt16BE(type, at);
  return at;
}

/** A protocol string: valid UTF-8, no NUL, at most 4096 bytes. */
export function decodeString(bytes: Buffer): Decoded<string> {
  if (bytes.length > STRING_BYTES_MAX) return fail("string longer than 4096 bytes");
  if (bytes.includes(0)) return fail("string contains NUL");
  const text = bytes.toString("utf8");
  if (Buffer.byteLength(text) !== bytes.length) return fail("string is not valid UTF-8");
  return { ok: true, value: text };
}

// ---- Option replies ------------------------------------------------------------------------------

export function measureOptionReply(dataBytes: number): number {
  return OPTION_REPLY_HEADER_BYTES + dataBytes;
}

export function encodeOptionReplyHeader(target: Buffer, offset: number, option: number, replyType: number, dataBytes: number): number {
  assert(target.length - offset >= OPTION_REPLY_HEADER_BYTES, "option reply: target too small");
  target.writeUInt32BE(NBD_REP_MAGIC_HI, offset);
  target.writeUInt32BE(NBD_REP_MAGIC_LO, offset + 4);
  target.writeUInt32BE(option >>> 0, offset + 8);
  target.writeUInt32BE(replyType >>> 0, offset + 12);
  target.writeUInt32BE(dataBytes >>> 0, offset + 16);
  return offset + OPTION_REPLY_HEADER_BYTES;
}

export interface OptionReplyHeader {
  option: number;
  replyType: number;
  dataBytes: number;
}

export function decodeOptionReplyHeader(source: Buffer, offset: number): Decoded<OptionReplyHeader> {
  if (source.length - offset < OPTION_REPLY_HEADER_BYTES) return fail("option reply: truncated");
  if (source.readUInt32BE(offset) !== NBD_REP_MAGIC_HI || source.readUInt32BE(offset + 4) !== NBD_REP_MAGIC_LO) {
    return fail("option reply: bad magic");
  }
  return {
    ok: true,
    value: { option: source.readUInt32BE(offset + 8), replyType: source.readUInt32BE(offset + 12), dataBytes: source.readUInt32BE(offset + 16) },
  };
}

/** A whole option reply (header and data) in a new Buffer. For handshake replies, which are rare. */
export function optionReply(option: number, replyType: number, data?: Buffer): Buffer {
  const dataBytes = data?.length ?? 0;
  const message = Buffer.alloc(measureOptionReply(dataBytes));
  const at = encodeOptionReplyHeader(message, 0, option, replyType, dataBytes);
  if (data) data.copy(message, at);
  return message;
}

/** NBD_REP_SERVER data: name length (4), name, then an optional human-readable description. */
export function encodeServerReplyData(name: string, description?: string): Buffer {
  const nameBytes = Buffer.byteLength(name);
  const descriptionBytes = description === undefined ? 0 : Buffer.byteLength(description);
  const data = Buffer.alloc(4 + nameBytes + descriptionBytes);
  data.writeUInt32BE(nameBytes, 0);
  data.write(name, 4, "utf8");
  if (description !== undefined) data.write(description, 4 + nameBytes, "utf8");
  return data;
}

/** NBD_INFO_EXPORT data: type (2), size (8), transmission flags (2). */
export function encodeInfoExport(sizeBytes: number, transmissionFlags: number): Buffer {
  const data = Buffer.alloc(12);
  data.writeUInt16BE(NBD_INFO_EXPORT, 0);
  writeUInt64(data, 2, sizeBytes);
  data.writeUInt16BE(transmissionFlags, 10);
  return data;
}

/** NBD_INFO_NAME or NBD_INFO_DESCRIPTION data: type (2), string. */
export function encodeInfoString(infoType: number, text: string): Buffer {
  const data = Buffer.alloc(2 + Buffer.byteLength(text));
  data.writeUInt16BE(infoType, 0);
  data.write(text, 2, "utf8");
  return data;
}

export interface BlockSizes {
  minimumBytes: number;
  preferredBytes: number;
  maximumBytes: number;
}

/** NBD_INFO_BLOCK_SIZE data: type (2), minimum (4), preferred (4), maximum (4). */
export function encodeInfoBlockSize(sizes: BlockSizes): Buffer {
  const data = Buffer.alloc(14);
  data.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
  data.writeUInt32BE(sizes.minimumBytes, 2);
  data.writeUInt32BE(sizes.preferredBytes, 6);
  data.writeUInt32BE(sizes.maximumBytes, 10);
  return data;
}

/** Reply to NBD_OPT_EXPORT_NAME: size (8), transmission flags (2), and 124 zeroes unless NO_ZEROES. */
export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const message = Buffer.alloc(EXPORT_NAME_REPLY_BYTES + (noZeroes ? 0 : EXPORT_NAME_REPLY_ZEROES_BYTES));
  writeUInt64(message, 0, sizeBytes);
  message.writeUInt16BE(transmissionFlags, 8);
  return message;
}

// ---- Requests and simple replies -----------------------------------------------------------------

/**
 * A decoded request header. The 64-bit handle is kept as two 32-bit halves: the server never
 * interprets it, only echoes it. Reused by the server (decodeRequestHeaderInto) to avoid an
 * allocation per request.
 */
export interface RequestHeader {
  commandFlags: number;
  type: number;
  handleHi: number;
  handleLo: number;
  /** Exact below 2^53; larger offsets are clamped to Number.MAX_SAFE_INTEGER (always out of range). */
  offsetBytes: number;
  lengthBytes: number;
}

export function newRequestHeader(): RequestHeader {
  return { commandFlags: 0, type: 0, handleHi: 0, handleLo: 0, offsetBytes: 0, lengthBytes: 0 };
}

/**
 * Decodes a 28-byte request header from `source` at `offset` into `into`. Returns undefined on
 * success or the reason it is bad. The only bad header is one with the wrong magic (or too few bytes):
 * every field value is representable, and the server validates values against the export.
 */
export function decodeRequestHeaderInto(source: Buffer, offset: number, into: RequestHeader): string | undefined {
  if (source.length - offset < REQUEST_HEADER_BYTES) return "request: truncated header";
  const magic = source.readUInt32BE(offset);
  if (magic !== NBD_REQUEST_MAGIC) return `request: bad magic 0x${magic.toString(16).padStart(8, "0")}`;
  into.commandFlags = source.readUInt16BE(offset + 4);
  into.type = source.readUInt16BE(offset + 6);
  into.handleHi = source.readUInt32BE(offset + 8);
  into.handleLo = source.readUInt32BE(offset + 12);
  into.offsetBytes = readUInt64Clamped(source, offset + 16);
  into.lengthBytes = source.readUInt32BE(offset + 24);
  return undefined;
}

export function decodeRequestHeader(source: Buffer, offset: number): Decoded<RequestHeader> {
  const header = newRequestHeader();
  const reason = decodeRequestHeaderInto(source, offset, header);
  return reason === undefined ? { ok: true, value: header } : fail(reason);
}

export function encodeRequestHeader(target: Buffer, offset: number, header: RequestHeader): number {
  assert(target.length - offset >= REQUEST_HEADER_BYTES, "request: target too small");
  target.writeUInt32BE(NBD_REQUEST_MAGIC, offset);
  target.writeUInt16BE(header.commandFlags, offset + 4);
  target.writeUInt16BE(header.type, offset + 6);
  target.writeUInt32BE(header.handleHi >>> 0, offset + 8);
  target.writeUInt32BE(header.handleLo >>> 0, offset + 12);
  writeUInt64(target, offset + 16, header.offsetBytes);
  target.writeUInt32BE(header.lengthBytes >>> 0, offset + 24);
  return offset + REQUEST_HEADER_BYTES;
}

export function encodeSimpleReplyHeader(target: Buffer, offset: number, error: number, handleHi: number, handleLo: number): number {
  // Hot path: bounds are the caller's invariant (it allocates SIMPLE_REPLY_HEADER_BYTES).
  target.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, offset);
  target.writeUInt32BE(error, offset + 4);
  target.writeUInt32BE(handleHi, offset + 8);
  target.writeUInt32BE(handleLo, offset + 12);
  return offset + SIMPLE_REPLY_HEADER_BYTES;
}

export interface SimpleReplyHeader {
  error: number;
  handleHi: number;
  handleLo: number;
}

export function decodeSimpleReplyHeader(source: Buffer, offset: number): Decoded<SimpleReplyHeader> {
  if (source.length - offset < SIMPLE_REPLY_HEADER_BYTES) return fail("simple reply: truncated");
  const magic = source.readUInt32BE(offset);
  if (magic !== NBD_SIMPLE_REPLY_MAGIC) return fail(`simple reply: bad magic 0x${magic.toString(16)}`);
  return { ok: true, value: { error: source.readUInt32BE(offset + 4), handleHi: source.readUInt32BE(offset + 8), handleLo: source.readUInt32BE(offset + 12) } };
}

/**
 * Data of NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT: export name length (4), name, query
 * count (4), then per query its length (4) and the query string.
 */
export interface MetaContextRequest {
  exportName: string;
  queries: string[];
}

export function decodeMetaContextRequest(data: Buffer): Decoded<MetaContextRequest> {
  if (data.length < 8) return fail("meta context request: shorter than 8 bytes");
  const nameBytes = data.readUInt32BE(0);
  if (nameBytes > data.length - 8) return fail("meta context request: name length exceeds option data");
  const name = decodeString(data.subarray(4, 4 + nameBytes));
  if (!name.ok) return name;
  let at = 4 + nameBytes;
  const queryCount = data.readUInt32BE(at);
  at += 4;
  // Each query takes at least its 4-byte length: a count the data cannot hold is malformed.
  if (queryCount > (data.length - at) / 4) return fail("meta context request: query count exceeds option data");
  const queries: string[] = [];
  for (let i = 0; i < queryCount; i++) {
    if (data.length - at < 4) return fail("meta context request: truncated query length");
    const queryBytes = data.readUInt32BE(at);
    at += 4;
    if (queryBytes > data.length - at) return fail("meta context request: query length exceeds option data");
    const query = decodeString(data.subarray(at, at + queryBytes));
    if (!query.ok) return query;
    queries.push(query.value);
    at += queryBytes;
  }
  if (at !== data.length) return fail("meta context request: trailing bytes");
  return { ok: true, value: { exportName: name.value, queries } };
}

export function encodeMetaContextRequest(request: MetaContextRequest): Buffer {
  const parts: Buffer[] = [];
  const name = Buffer.from(request.exportName, "utf8");
  const head = Buffer.alloc(4);
  head.writeUInt32BE(name.length, 0);
  const count = Buffer.alloc(4);
  count.writeUInt32BE(request.queries.length, 0);
  parts.push(head, name, count);
  for (const query of request.queries) {
    const bytes = Buffer.from(query, "utf8");
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length, 0);
    parts.push(length, bytes);
  }
  return Buffer.concat(parts);
}

/** NBD_REP_META_CONTEXT data: context id (4), context name. */
export function encodeMetaContextReplyData(contextId: number, name: string): Buffer {
  const data = Buffer.alloc(4 + Buffer.byteLength(name));
  data.writeUInt32BE(contextId >>> 0, 0);
  data.write(name, 4, "utf8");
  return data;
}

export function encodeStructuredReplyHeader(target: Buffer, offset: number, flags: number, type: number, handleHi: number, handleLo: number, payloadBytes: number): number {
  // Hot path (every READ once structured replies are negotiated): the caller sizes `target`.
  target.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, offset);
  target.writeUInt16BE(flags, offset + 4);
  target.writeUInt16BE(type, offset + 6);
  target.writeUInt32BE(handleHi, offset + 8);
  target.writeUInt32BE(handleLo, offset + 12);
  target.writeUInt32BE(payloadBytes >>> 0, offset + 16);
  return offset + STRUCTURED_REPLY_HEADER_BYTES;
}

/** A final NBD_REPLY_TYPE_ERROR chunk: header, error (4), message length (2), message. */
export function encodeStructuredError(handleHi: number, handleLo: number, error: number, message: string): Buffer {
  // At most STRING_BYTES_MAX bytes of message, cut at a character boundary (Buffer.write never writes
  // part of a character, and says how many bytes it wrote).
  const text = Buffer.alloc(Math.min(Buffer.byteLength(message), STRING_BYTES_MAX));
  const messageBytes = text.write(message, 0, "utf8");
  const chunk = Buffer.alloc(STRUCTURED_REPLY_HEADER_BYTES + 6 + messageBytes);
  let at = encodeStructuredReplyHeader(chunk, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, handleHi, handleLo, 6 + messageBytes);
  at = chunk.writeUInt32BE(error, at);
  at = chunk.writeUInt16BE(messageBytes, at);
  text.copy(chunk, at, 0, messageBytes);
  return chunk;
}

/** One base:allocation extent: a length and its NBD_STATE_* flags. */
export interface BlockStatusExtent {
  lengthBytes: number;
  flags: number;
}

/** A final NBD_REPLY_TYPE_BLOCK_STATUS chunk: header, context id (4), then length (4) and flags (4) per extent. */
export function encodeBlockStatusReply(handleHi: number, handleLo: number, contextId: number, extents: readonly BlockStatusExtent[]): Buffer {
  const payloadBytes = 4 + 8 * extents.length;
  const chunk = Buffer.alloc(STRUCTURED_REPLY_HEADER_BYTES + payloadBytes);
  let at = encodeStructuredReplyHeader(chunk, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, handleHi, handleLo, payloadBytes);
  at = chunk.writeUInt32BE(contextId >>> 0, at);
  for (const extent of extents) {
    at = chunk.writeUInt32BE(extent.lengthBytes, at);
    at = chunk.writeUInt32BE(extent.flags >>> 0, at);
  }
  return chunk;
}

export interface StructuredReplyHeader {
  flags: number;
  type: number;
  handleHi: number;
  handleLo: number;
  payloadBytes: number;
}

export function decodeStructuredReplyHeader(source: Buffer, offset: number): Decoded<StructuredReplyHeader> {
  if (source.length - offset < STRUCTURED_REPLY_HEADER_BYTES) return fail("structured reply: truncated");
  const magic = source.readUInt32BE(offset);
  if (magic !== NBD_STRUCTURED_REPLY_MAGIC) return fail(`structured reply: bad magic 0x${magic.toString(16)}`);
  return {
    ok: true,
    value: {
      flags: source.readUInt16BE(offset + 4), type: source.readUInt16BE(offset + 6), handleHi: source.readUInt32BE(offset + 8),
      handleLo: source.readUInt32BE(offset + 12), payloadBytes: source.readUInt32BE(offset + 16),
    },
  };
}

// ---- 64-bit helpers ------------------------------------------------------------------------------

/** Writes a non-negative safe integer as a big-endian 64-bit value. */
export function writeUInt64(target: Buffer, offset: number, value: number): number {
  assert(Number.isSafeInteger(value) && value >= 0, "writeUInt64: not a non-negative safe integer");
  target.writeUInt32BE(Math.floor(value / TWO_POW_32), offset);
  target.writeUInt32BE(value >>> 0, offset + 4);
  return offset + 8;
}

/** Reads a big-endian 64-bit value; values at or above 2^53 come back as Number.MAX_SAFE_INTEGER. */
export function readUInt64Clamped(source: Buffer, offset: number): number {
  const hi = source.readUInt32BE(offset);
  if (hi >= 0x200000) return Number.MAX_SAFE_INTEGER;
  return hi * TWO_POW_32 + source.readUInt32BE(offset + 4);
}
