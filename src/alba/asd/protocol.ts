// The ASD wire protocol: constants, the prologue (hello, HMAC challenge/response, claim check), frames,
// and the request / response codecs of every operation. Spec: docs/formats/asd-protocol.md; its worked
// example is a golden vector in protocol.test.ts.
//
// Imported by src/alba/asd/ (server, connection, client). No I/O here: every function takes and returns
// bytes or values, and the same code runs in the server, the client and the tests.
// Codecs come as measure / encode / decode: encoders write into a caller-supplied Buffer at an offset and
// return the offset after what they wrote; decoders never throw on bad input, they return
// `{ ok: false, reason }`. All integers are little-endian; 64-bit fields carry values below 2^53 (a
// larger one is a decode failure, not a rounded number).
// Buffers: decoded keys and values are views (subarray) into the input; whoever owns the input owns them.
// Limits: asdLimits (limits.ts) are checked by the decoders, so a decoded request is within them.

import { createHmac, timingSafeEqual } from "node:crypto";
import { assert, crc32c } from "../../base/index.js";
import { asdLimits } from "./limits.js";

// ---- Prologue ------------------------------------------------------------------------------------

/** "OASD": the first four bytes of the client hello and of the server hello. */
export const PROLOGUE_MAGIC = Buffer.from("OASD", "latin1");
export const PROTOCOL_VERSION = 1;
export const NONCE_BYTES = 16;
export const ASD_ID_BYTES = 16;
export const PROOF_BYTES = 32;
/** Client hello: magic (4), version (2), reserved (2), client nonce (16). */
export const CLIENT_HELLO_BYTES = 24;
/** Server hello: magic (4), version (2), status (2), server nonce (16), ASD id (16). */
export const SERVER_HELLO_BYTES = 40;
/** Fixed part of the client auth: proof (32), backend id length (2), reserved (2); then the backend id. */
export const CLIENT_AUTH_FIXED_BYTES = 36;
/** Fixed part of the auth reply: status (2), flags (2), server proof (32), message length (2), reserved (2). */
export const AUTH_REPLY_FIXED_BYTES = 40;

/** Server hello status. Persisted in the protocol: never renumber. */
export const HELLO_OK = 0;
export const HELLO_VERSION_UNSUPPORTED = 1;

/** Auth reply status. Persisted in the protocol: never renumber. */
export const AUTH_OK = 0;
export const AUTH_BAD_PROOF = 1;
export const AUTH_BACKEND_REFUSED = 2;
export const AUTH_MALFORMED = 3;

/** Auth reply flags. */
export const AUTH_FLAG_CLAIMED_BY_YOU = 1 << 0;
export const AUTH_FLAG_UNCLAIMED = 1 << 1;

const CLIENT_PROOF_LABEL = Buffer.from("ovs-asd-v1 client", "latin1");
const SERVER_PROOF_LABEL = Buffer.from("ovs-asd-v1 server", "latin1");

// ---- Frames --------------------------------------------------------------------------------------

/** Frame header: marker (1), kind (1), op or status (2), request id (4), body length (4), CRC32C (4). */
export const FRAME_HEADER_BYTES = 16;
export const FRAME_MARKER = 0xa5;
export const FRAME_KIND_REQUEST = 1;
export const FRAME_KIND_RESPONSE = 2;

/** Operation codes. Persisted in the protocol: never renumber. */
export const asdOpCodes = {
  capabilities: 1,
  claim: 2,
  multiGet: 3,
  partialGet: 4,
  apply: 5,
  range: 6,
  rangeEntries: 7,
  diskUsage: 8,
  statistics: 9,
} as const;
export type AsdOpName = keyof typeof asdOpCodes;
export const asdOpNames = Object.keys(asdOpCodes) as AsdOpName[];
const opNameByCode = new Map<number, AsdOpName>(asdOpNames.map((name) => [asdOpCodes[name], name]));

/** The name of an op code, or undefined for an unknown one. */
export function opNameOf(code: number): AsdOpName | undefined {
  return opNameByCode.get(code);
}

/** Response status codes (the op field of a response header). Persisted: never renumber. */
export const asdStatusCodes = {
  ok: 0,
  badRequest: 1,
  unknownOp: 2,
  assertFailed: 3,
  full: 4,
  notClaimed: 5,
  claimedByOther: 6,
  checksumMismatch: 7,
  ioError: 8,
  tooLarge: 9,
  unavailable: 10,
  badFrame: 11,
  internal: 12,
} as const;
export type AsdStatusName = keyof typeof asdStatusCodes;
const statusNameByCode = new Map<number, AsdStatusName>(
  (Object.keys(asdStatusCodes) as AsdStatusName[]).map((name) => [asdStatusCodes[name], name]),
);
export function statusNameOf(code: number): AsdStatusName | undefined {
  return statusNameByCode.get(code);
}

/** Per-key result status in multi-get, partial-get and range-entries responses. Persisted: never renumber. */
export const keyStatusCodes = { ok: 0, absent: 1, corrupt: 2, ioError: 3, outOfRange: 4 } as const;
export type KeyStatusName = keyof typeof keyStatusCodes;
const keyStatusNameByCode = new Map<number, KeyStatusName>(
  (Object.keys(keyStatusCodes) as KeyStatusName[]).map((name) => [keyStatusCodes[name], name]),
);

/** Statistics counter ids. Persisted: never renumber. */
export const counterIds = {
  checksumErrors: 1,
  fullRefusals: 2,
  authFailures: 3,
  malformedFrames: 4,
  connectionsAccepted: 5,
  connectionsOpen: 6,
  groupCommits: 7,
  groupCommittedApplies: 8,
  assertFailures: 9,
  injectedFaults: 10,
} as const;
export type CounterName = keyof typeof counterIds;
const counterNameById = new Map<number, CounterName>((Object.keys(counterIds) as CounterName[]).map((name) => [counterIds[name], name]));

/** Assert and update kinds in an apply. Persisted: never renumber. */
export const ASSERT_EQUALS = 1;
export const ASSERT_ABSENT = 2;
export const UPDATE_SET = 1;
export const UPDATE_DELETE = 2;

/** Range request flags. */
export const RANGE_FLAG_HAS_FIRST = 1 << 0;
export const RANGE_FLAG_HAS_END = 1 << 1;
export const RANGE_FLAG_REVERSE = 1 << 2;

// ---- Values --------------------------------------------------------------------------------------

export interface ClientHello {
  version: number;
  clientNonce: Buffer;
}
export interface ServerHello {
  version: number;
  status: number;
  serverNonce: Buffer;
  asdId: Buffer;
}
export interface ClientAuth {
  proof: Buffer;
  backendId: string;
}
export interface AuthReply {
  status: number;
  flags: number;
  serverProof: Buffer;
  message: string;
}

export interface ByteRange {
  offsetBytes: number;
  lengthBytes: number;
}
export interface PartialGetItem {
  key: Buffer;
  ranges: ByteRange[];
}
export type AsdAssert = { kind: "equals"; key: Buffer; value: Buffer } | { kind: "absent"; key: Buffer };
/** A set carries the CRC32C of its value as the client computed it; the ASD checks it before storing. */
export type AsdUpdate = { kind: "set"; key: Buffer; value: Buffer; crc32c: number } | { kind: "delete"; key: Buffer };
/** Keys k with first <= k < end (bytewise), ascending, or descending from just below end when reverse. */
export interface RangeQuery {
  first?: Buffer;
  end?: Buffer;
  limit: number;
  reverse: boolean;
}

export type AsdRequest =
  | { op: "capabilities" }
  | { op: "claim" }
  | { op: "multiGet"; keys: Buffer[] }
  | { op: "partialGet"; items: PartialGetItem[] }
  | { op: "apply"; asserts: AsdAssert[]; updates: AsdUpdate[] }
  | { op: "range"; query: RangeQuery }
  | { op: "rangeEntries"; query: RangeQuery }
  | { op: "diskUsage" }
  | { op: "statistics"; reset: boolean };

/** A value read for one key: the bytes and their CRC32C, or why there are none. */
export type ValueResult = { status: "ok"; value: Buffer; crc32c: number } | { status: Exclude<KeyStatusName, "ok"> };

export interface AsdCapabilities {
  version: number;
  ops: AsdOpName[];
  frameBodyBytesMax: number;
  keyBytesMax: number;
  valueBytesMax: number;
  inlineValueBytesMax: number;
  keysPerRequestMax: number;
  rangesPerRequestMax: number;
  inFlightRequestsMax: number;
  rangeLimitMax: number;
}

export interface AsdDiskUsage {
  totalBytes: number;
  usedBytes: number;
  freeBytes: number;
  valueCount: number;
  valueBytes: number;
  /** The fill level at which writes are refused, in parts per million of totalBytes (990000 = 99 %). */
  fullThresholdPpm: number;
  refusingWrites: boolean;
}

export interface OpStatistics {
  count: number;
  errorCount: number;
  latencyUsTotal: number;
  latencyUsMax: number;
}
export interface AsdStatistics {
  ops: Partial<Record<AsdOpName, OpStatistics>>;
  counters: Partial<Record<CounterName, number>>;
}

export type AsdResponse =
  | { op: "capabilities"; capabilities: AsdCapabilities }
  | { op: "claim"; newlyClaimed: boolean }
  | { op: "multiGet"; results: ValueResult[] }
  | { op: "partialGet"; results: ValueResult[] }
  | { op: "apply" }
  | { op: "range"; keys: Buffer[]; more: boolean }
  | { op: "rangeEntries"; entries: Array<{ key: Buffer; result: ValueResult }>; more: boolean }
  | { op: "diskUsage"; usage: AsdDiskUsage }
  | { op: "statistics"; statistics: AsdStatistics };

/** The body of a response whose status is not ok. */
export interface ErrorBody {
  /** For assertFailed: the index of the assert that failed; else 0. */
  detail: number;
  message: string;
}

export interface FrameHeader {
  kind: number;
  /** Op code in a request, status code in a response. */
  code: number;
  requestId: number;
  bodyBytes: number;
  crc32c: number;
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string };

// ---- Reader / Writer -----------------------------------------------------------------------------

class DecodeFailure extends Error {}

const TWO_POW_32 = 4294967296;

/** Bounds-checked little-endian reader; throws DecodeFailure, which decode functions turn into a reason. */
class Reader {
  constructor(readonly bytes: Buffer, public offset: number, readonly end: number) {}

  need(byteCount: number, what: string): void {
    if (this.end - this.offset < byteCount) throw new DecodeFailure(`truncated ${what}: needs ${byteCount} bytes, ${this.end - this.offset} left`);
  }
  u8(what: string): number {
    this.need(1, what);
    return this.bytes[this.offset++]!;
  }
  u16(what: string): number {
    this.need(2, what);
    const value = this.bytes.readUInt16LE(this.offset);
    this.offset += 2;
    return value;
  }
  u32(what: string): number {
    this.need(4, what);
    const value = this.bytes.readUInt32LE(this.offset);
    this.offset += 4;
    return value;
  }
  u64(what: string): number {
    this.need(8, what);
    const lo = this.bytes.readUInt32LE(this.offset);
    const hi = this.bytes.readUInt32LE(this.offset + 4);
    if (hi >= 0x200000) throw new DecodeFailure(`${what} is 2^53 or more`);
    this.offset += 8;
    return hi * TWO_POW_32 + lo;
  }
  take(byteCount: number, what: string): Buffer {
    this.need(byteCount, what);
    const view = this.bytes.subarray(this.offset, this.offset + byteCount);
    this.offset += byteCount;
    return view;
  }
  /** A key: u16 length (1..keyBytesMax) and its bytes. */
  key(what: string): Buffer {
    const keyBytes = this.u16(`${what} length`);
    if (keyBytes === 0) throw new DecodeFailure(`${what} is empty`);
    if (keyBytes > asdLimits.keyBytesMax) throw new DecodeFailure(`${what} has ${keyBytes} bytes; the most is ${asdLimits.keyBytesMax}`);
    return this.take(keyBytes, what);
  }
  /** A key bound of a range: u16 length (0..keyBytesMax) and its bytes. */
  bound(what: string): Buffer {
    const keyBytes = this.u16(`${what} length`);
    if (keyBytes > asdLimits.keyBytesMax) throw new DecodeFailure(`${what} has ${keyBytes} bytes; the most is ${asdLimits.keyBytesMax}`);
    return this.take(keyBytes, what);
  }
  /** A value: u32 length (0..valueBytesMax) and its bytes. */
  value(what: string): Buffer {
    const valueBytes = this.u32(`${what} length`);
    if (valueBytes > asdLimits.valueBytesMax) throw new DecodeFailure(`${what} has ${valueBytes} bytes; the most is ${asdLimits.valueBytesMax}`);
    return this.take(valueBytes, what);
  }
  /** A count whose items take at least minItemBytes each: rejects counts the remaining bytes cannot hold. */
  count(what: string, countMax: number, minItemBytes: number): number {
    const count = this.u32(what);
    if (count > countMax) throw new DecodeFailure(`${what} is ${count}; the most is ${countMax}`);
    if (count * minItemBytes > this.end - this.offset) throw new DecodeFailure(`${what} is ${count}, more than the body can hold`);
    return count;
  }
  done(what: string): void {
    if (this.offset !== this.end) throw new DecodeFailure(`${this.end - this.offset} trailing bytes after ${what}`);
  }
}

function decodeWith<T>(bytes: Buffer, offset: number, end: number, decode: (reader: Reader) => T): Decoded<T> {
  if (offset < 0 || end > bytes.length || offset > end) return { ok: false, reason: "input out of bounds" };
  try {
    return { ok: true, value: decode(new Reader(bytes, offset, end)) };
  } catch (error) {
    if (error instanceof DecodeFailure) return { ok: false, reason: error.message };
    throw error;
  }
}

/** Little-endian writer into a caller-supplied Buffer; Buffer's own range checks guard the bounds. */
class Writer {
  constructor(readonly bytes: Buffer, public offset: number) {}
  u8(value: number): void {
    this.offset = this.bytes.writeUInt8(value, this.offset);
  }
  u16(value: number): void {
    this.offset = this.bytes.writeUInt16LE(value, this.offset);
  }
  u32(value: number): void {
    this.offset = this.bytes.writeUInt32LE(value >>> 0, this.offset);
  }
  u64(value: number): void {
    assert(Number.isSafeInteger(value) && value >= 0, `u64 field takes a safe non-negative integer, got ${value}`);
    this.offset = this.bytes.writeUInt32LE(value % TWO_POW_32, this.offset);
    this.offset = this.bytes.writeUInt32LE(Math.floor(value / TWO_POW_32), this.offset);
  }
  put(data: Uint8Array): void {
    assert(this.offset + data.length <= this.bytes.length, "Writer.put: out of bounds");
    this.bytes.set(data, this.offset);
    this.offset += data.length;
  }
  key(key: Uint8Array): void {
    assert(key.length >= 1 && key.length <= asdLimits.keyBytesMax, `key length ${key.length} outside 1..${asdLimits.keyBytesMax}`);
    this.u16(key.length);
    this.put(key);
  }
  bound(key: Uint8Array | undefined): void {
    const length = key?.length ?? 0;
    assert(length <= asdLimits.keyBytesMax, "range bound too long");
    this.u16(length);
    if (key !== undefined) this.put(key);
  }
  value(value: Uint8Array): void {
    assert(value.length <= asdLimits.valueBytesMax, `value length ${value.length} above ${asdLimits.valueBytesMax}`);
    this.u32(value.length);
    this.put(value);
  }
}

// ---- Prologue codecs -----------------------------------------------------------------------------

export function encodeClientHello(out: Buffer, offset: number, hello: ClientHello): number {
  assert(hello.clientNonce.length === NONCE_BYTES, "client nonce is 16 bytes");
  const w = new Writer(out, offset);
  w.put(PROLOGUE_MAGIC);
  w.u16(hello.version);
  w.u16(0);
  w.put(hello.clientNonce);
  return w.offset;
}

export function decodeClientHello(bytes: Buffer, offset: number): Decoded<ClientHello> {
  return decodeWith(bytes, offset, offset + CLIENT_HELLO_BYTES, (r) => {
    if (!r.take(4, "magic").equals(PROLOGUE_MAGIC)) throw new DecodeFailure("bad magic: not an ASD client");
    const version = r.u16("version");
    r.u16("reserved");
    return { version, clientNonce: r.take(NONCE_BYTES, "client nonce") };
  });
}

export function encodeServerHello(out: Buffer, offset: number, hello: ServerHello): number {
  assert(hello.serverNonce.length === NONCE_BYTES && hello.asdId.length === ASD_ID_BYTES, "server nonce and ASD id are 16 bytes");
  const w = new Writer(out, offset);
  w.put(PROLOGUE_MAGIC);
  w.u16(hello.version);
  w.u16(hello.status);
  w.put(hello.serverNonce);
  w.put(hello.asdId);
  return w.offset;
}

export function decodeServerHello(bytes: Buffer, offset: number): Decoded<ServerHello> {
  return decodeWith(bytes, offset, offset + SERVER_HELLO_BYTES, (r) => {
    if (!r.take(4, "magic").equals(PROLOGUE_MAGIC)) throw new DecodeFailure("bad magic: not an ASD");
    const version = r.u16("version");
    const status = r.u16("status");
    return { version, status, serverNonce: r.take(NONCE_BYTES, "server nonce"), asdId: r.take(ASD_ID_BYTES, "ASD id") };
  });
}

export function measureClientAuth(auth: ClientAuth): number {
  return CLIENT_AUTH_FIXED_BYTES + Buffer.byteLength(auth.backendId, "utf8");
}

export function encodeClientAuth(out: Buffer, offset: number, auth: ClientAuth): number {
  const backendId = Buffer.from(auth.backendId, "utf8");
  assert(auth.proof.length === PROOF_BYTES, "proof is 32 bytes");
  assert(backendId.length >= 1 && backendId.length <= asdLimits.backendIdBytesMax, "backend id is 1..64 bytes");
  const w = new Writer(out, offset);
  w.put(auth.proof);
  w.u16(backendId.length);
  w.u16(0);
  w.put(backendId);
  return w.offset;
}

/** Decodes the fixed part of a client auth; returns the proof and the backend id's length. */
export function decodeClientAuthFixed(bytes: Buffer, offset: number): Decoded<{ proof: Buffer; backendIdBytes: number }> {
  return decodeWith(bytes, offset, offset + CLIENT_AUTH_FIXED_BYTES, (r) => {
    const proof = r.take(PROOF_BYTES, "proof");
    const backendIdBytes = r.u16("backend id length");
    r.u16("reserved");
    if (backendIdBytes === 0 || backendIdBytes > asdLimits.backendIdBytesMax) {
      throw new DecodeFailure(`backend id length ${backendIdBytes} outside 1..${asdLimits.backendIdBytesMax}`);
    }
    return { proof, backendIdBytes };
  });
}

/** Decodes the backend id that follows the fixed part of a client auth. */
export function decodeBackendId(bytes: Buffer): Decoded<string> {
  const text = bytes.toString("utf8");
  if (!Buffer.from(text, "utf8").equals(bytes)) return { ok: false, reason: "backend id is not valid UTF-8" };
  return { ok: true, value: text };
}

export function measureAuthReply(reply: AuthReply): number {
  return AUTH_REPLY_FIXED_BYTES + Math.min(Buffer.byteLength(reply.message, "utf8"), asdLimits.messageBytesMax);
}

export function encodeAuthReply(out: Buffer, offset: number, reply: AuthReply): number {
  assert(reply.serverProof.length === PROOF_BYTES, "server proof is 32 bytes");
  const message = truncatedMessage(reply.message);
  const w = new Writer(out, offset);
  w.u16(reply.status);
  w.u16(reply.flags);
  w.put(reply.serverProof);
  w.u16(message.length);
  w.u16(0);
  w.put(message);
  return w.offset;
}

/** Decodes the fixed part of an auth reply; the message (messageBytes long) follows. */
export function decodeAuthReplyFixed(bytes: Buffer, offset: number): Decoded<Omit<AuthReply, "message"> & { messageBytes: number }> {
  return decodeWith(bytes, offset, offset + AUTH_REPLY_FIXED_BYTES, (r) => {
    const status = r.u16("status");
    const flags = r.u16("flags");
    const serverProof = r.take(PROOF_BYTES, "server proof");
    const messageBytes = r.u16("message length");
    r.u16("reserved");
    if (messageBytes > asdLimits.messageBytesMax) throw new DecodeFailure(`message length ${messageBytes} above ${asdLimits.messageBytesMax}`);
    return { status, flags, serverProof, messageBytes };
  });
}

function proofOf(label: Buffer, secret: string, clientNonce: Buffer, serverNonce: Buffer, asdId: Buffer, backendId: string): Buffer {
  return createHmac("sha256", Buffer.from(secret, "utf8"))
    .update(label)
    .update(clientNonce)
    .update(serverNonce)
    .update(asdId)
    .update(Buffer.from(backendId, "utf8"))
    .digest();
}

/** HMAC-SHA256(secret, "ovs-asd-v1 client" | client nonce | server nonce | ASD id | backend id). */
export function clientProof(secret: string, clientNonce: Buffer, serverNonce: Buffer, asdId: Buffer, backendId: string): Buffer {
  return proofOf(CLIENT_PROOF_LABEL, secret, clientNonce, serverNonce, asdId, backendId);
}

/** HMAC-SHA256(secret, "ovs-asd-v1 server" | ...): proves to the client that the ASD knows the secret too. */
export function serverProof(secret: string, clientNonce: Buffer, serverNonce: Buffer, asdId: Buffer, backendId: string): Buffer {
  return proofOf(SERVER_PROOF_LABEL, secret, clientNonce, serverNonce, asdId, backendId);
}

/** Constant-time comparison of two proofs. */
export function proofsEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

// ---- Frame codecs --------------------------------------------------------------------------------

/** Writes a frame header at out[offset] for the body that follows it in `out`, and its CRC32C. */
export function encodeFrameHeader(out: Buffer, offset: number, kind: number, code: number, requestId: number, bodyBytes: number): number {
  assert(bodyBytes <= asdLimits.frameBodyBytesMax, `frame body of ${bodyBytes} bytes above ${asdLimits.frameBodyBytesMax}`);
  assert(offset + FRAME_HEADER_BYTES + bodyBytes <= out.length, "the body follows the header in the same buffer");
  const w = new Writer(out, offset);
  w.u8(FRAME_MARKER);
  w.u8(kind);
  w.u16(code);
  w.u32(requestId);
  w.u32(bodyBytes);
  const body = out.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + bodyBytes);
  w.u32(frameCrc(out.subarray(offset, offset + 12), body));
  return w.offset + bodyBytes;
}

/** CRC32C over the first 12 header bytes, then the body. */
export function frameCrc(headerFirst12: Buffer, body: Buffer): number {
  return crc32c(body, crc32c(headerFirst12.subarray(0, 12)));
}

/** Decodes a frame header; checks the marker, the kind and the body length (not the CRC, which needs the body). */
export function decodeFrameHeader(bytes: Buffer, offset: number, expectedKind: number): Decoded<FrameHeader> {
  return decodeWith(bytes, offset, offset + FRAME_HEADER_BYTES, (r) => {
    const marker = r.u8("marker");
    if (marker !== FRAME_MARKER) throw new DecodeFailure(`bad frame marker 0x${marker.toString(16)}`);
    const kind = r.u8("kind");
    if (kind !== expectedKind) throw new DecodeFailure(`frame kind ${kind}, expected ${expectedKind}`);
    const code = r.u16("code");
    const requestId = r.u32("request id");
    const bodyBytes = r.u32("body length");
    if (bodyBytes > asdLimits.frameBodyBytesMax) throw new DecodeFailure(`frame body of ${bodyBytes} bytes above ${asdLimits.frameBodyBytesMax}`);
    return { kind, code, requestId, bodyBytes, crc32c: r.u32("crc") };
  });
}

// ---- Request bodies ------------------------------------------------------------------------------

const RANGE_FIXED_BYTES = 8;

export function measureRequestBody(request: AsdRequest): number {
  switch (request.op) {
    case "capabilities":
    case "claim":
    case "diskUsage":
      return 0;
    case "statistics":
      return 4;
    case "multiGet":
      return 4 + request.keys.reduce((sum, key) => sum + 2 + key.length, 0);
    case "partialGet":
      return 4 + request.items.reduce((sum, item) => sum + 2 + item.key.length + 4 + 8 * item.ranges.length, 0);
    case "apply": {
      let bytes = 8;
      for (const a of request.asserts) bytes += 1 + 2 + a.key.length + (a.kind === "equals" ? 4 + a.value.length : 0);
      for (const u of request.updates) bytes += 1 + 2 + u.key.length + (u.kind === "set" ? 8 + u.value.length : 0);
      return bytes;
    }
    case "range":
    case "rangeEntries":
      return RANGE_FIXED_BYTES + 2 + (request.query.first?.length ?? 0) + 2 + (request.query.end?.length ?? 0);
  }
}

export function encodeRequestBody(out: Buffer, offset: number, request: AsdRequest): number {
  const w = new Writer(out, offset);
  switch (request.op) {
    case "capabilities":
    case "claim":
    case "diskUsage":
      break;
    case "statistics":
      w.u8(request.reset ? 1 : 0);
      w.u8(0);
      w.u16(0);
      break;
    case "multiGet":
      w.u32(request.keys.length);
      for (const key of request.keys) w.key(key);
      break;
    case "partialGet":
      w.u32(request.items.length);
      for (const item of request.items) {
        w.key(item.key);
        w.u32(item.ranges.length);
        for (const range of item.ranges) {
          w.u32(range.offsetBytes);
          w.u32(range.lengthBytes);
        }
      }
      break;
    case "apply":
      w.u32(request.asserts.length);
      for (const a of request.asserts) {
        w.u8(a.kind === "equals" ? ASSERT_EQUALS : ASSERT_ABSENT);
        w.key(a.key);
        if (a.kind === "equals") w.value(a.value);
      }
      w.u32(request.updates.length);
      for (const u of request.updates) {
        w.u8(u.kind === "set" ? UPDATE_SET : UPDATE_DELETE);
        w.key(u.key);
        if (u.kind === "set") {
          w.u32(u.crc32c);
          w.value(u.value);
        }
      }
      break;
    case "range":
    case "rangeEntries": {
      const q = request.query;
      w.u8((q.first !== undefined ? RANGE_FLAG_HAS_FIRST : 0) | (q.end !== undefined ? RANGE_FLAG_HAS_END : 0) | (q.reverse ? RANGE_FLAG_REVERSE : 0));
      w.u8(0);
      w.u16(0);
      w.u32(q.limit);
      w.bound(q.first);
      w.bound(q.end);
      break;
    }
  }
  return w.offset;
}

/**
 * A whole request frame (header + body) in one Buffer, owned by the caller: fresh, or from `allocate`
 * (which must return exactly the bytes asked for; e.g. a SizeClassPool's take).
 */
export function encodeRequestFrame(requestId: number, request: AsdRequest, allocate: (byteCount: number) => Buffer = Buffer.allocUnsafe): Buffer {
  const bodyBytes = measureRequestBody(request);
  const frame = allocate(FRAME_HEADER_BYTES + bodyBytes);
  const end = encodeRequestBody(frame, FRAME_HEADER_BYTES, request);
  assert(end === frame.length, "measureRequestBody agrees with encodeRequestBody");
  encodeFrameHeader(frame, 0, FRAME_KIND_REQUEST, asdOpCodes[request.op], requestId, bodyBytes);
  return frame;
}

/** Decodes the body of a request whose op is `op` (a known op name). Checks every limit. */
export function decodeRequestBody(op: AsdOpName, body: Buffer): Decoded<AsdRequest> {
  return decodeWith(body, 0, body.length, (r): AsdRequest => {
    const limits = asdLimits;
    switch (op) {
      case "capabilities":
      case "claim":
      case "diskUsage":
        r.done(op);
        return { op };
      case "statistics": {
        const flags = r.u8("statistics flags");
        r.u8("reserved");
        r.u16("reserved");
        r.done(op);
        return { op, reset: (flags & 1) !== 0 };
      }
      case "multiGet": {
        const count = r.count("key count", limits.keysPerRequestMax, 3);
        const keys: Buffer[] = [];
        for (let index = 0; index < count; index++) keys.push(r.key(`key ${index}`));
        r.done(op);
        return { op, keys };
      }
      case "partialGet": {
        const count = r.count("item count", limits.keysPerRequestMax, 7);
        const items: PartialGetItem[] = [];
        let rangeTotal = 0;
        let lengthTotalBytes = 0;
        for (let index = 0; index < count; index++) {
          const key = r.key(`key ${index}`);
          const rangeCount = r.count(`range count of item ${index}`, limits.rangesPerRequestMax, 8);
          rangeTotal += rangeCount;
          if (rangeTotal > limits.rangesPerRequestMax) throw new DecodeFailure(`more than ${limits.rangesPerRequestMax} ranges in one request`);
          const ranges: ByteRange[] = [];
          for (let rangeIndex = 0; rangeIndex < rangeCount; rangeIndex++) {
            const offsetBytes = r.u32("range offset");
            const lengthBytes = r.u32("range length");
            lengthTotalBytes += lengthBytes;
            if (lengthTotalBytes > limits.valueBytesMax) throw new DecodeFailure(`ranges ask for more than ${limits.valueBytesMax} bytes in one request`);
            ranges.push({ offsetBytes, lengthBytes });
          }
          items.push({ key, ranges });
        }
        r.done(op);
        return { op, items };
      }
      case "apply": {
        const assertCount = r.count("assert count", limits.keysPerRequestMax, 4);
        const asserts: AsdAssert[] = [];
        for (let index = 0; index < assertCount; index++) {
          const kind = r.u8("assert kind");
          const key = r.key(`assert ${index} key`);
          if (kind === ASSERT_EQUALS) asserts.push({ kind: "equals", key, value: r.value(`assert ${index} value`) });
          else if (kind === ASSERT_ABSENT) asserts.push({ kind: "absent", key });
          else throw new DecodeFailure(`unknown assert kind ${kind}`);
        }
        const updateCount = r.count("update count", limits.keysPerRequestMax - assertCount, 4);
        const updates: AsdUpdate[] = [];
        const seen = new Set<string>();
        for (let index = 0; index < updateCount; index++) {
          const kind = r.u8("update kind");
          const key = r.key(`update ${index} key`);
          const keyHex = key.toString("hex");
          if (seen.has(keyHex)) throw new DecodeFailure(`update ${index} repeats a key of an earlier update`);
          seen.add(keyHex);
          if (kind === UPDATE_SET) {
            const checksum = r.u32(`update ${index} crc32c`);
            updates.push({ kind: "set", key, crc32c: checksum, value: r.value(`update ${index} value`) });
          } else if (kind === UPDATE_DELETE) {
            updates.push({ kind: "delete", key });
          } else {
            throw new DecodeFailure(`unknown update kind ${kind}`);
          }
        }
        r.done(op);
        return { op, asserts, updates };
      }
      case "range":
      case "rangeEntries": {
        const flags = r.u8("range flags");
        if ((flags & ~(RANGE_FLAG_HAS_FIRST | RANGE_FLAG_HAS_END | RANGE_FLAG_REVERSE)) !== 0) throw new DecodeFailure(`unknown range flags 0x${flags.toString(16)}`);
        r.u8("reserved");
        r.u16("reserved");
        const limit = r.u32("range limit");
        if (limit < 1 || limit > limits.rangeLimitMax) throw new DecodeFailure(`range limit ${limit} outside 1..${limits.rangeLimitMax}`);
        const first = r.bound("range first");
        const end = r.bound("range end");
        if ((flags & RANGE_FLAG_HAS_FIRST) === 0 && first.length > 0) throw new DecodeFailure("range first given without its flag");
        if ((flags & RANGE_FLAG_HAS_END) === 0 && end.length > 0) throw new DecodeFailure("range end given without its flag");
        r.done(op);
        const query: RangeQuery = { limit, reverse: (flags & RANGE_FLAG_REVERSE) !== 0 };
        if ((flags & RANGE_FLAG_HAS_FIRST) !== 0) query.first = first;
        if ((flags & RANGE_FLAG_HAS_END) !== 0) query.end = end;
        return { op, query };
      }
    }
  });
}

// ---- Response bodies -----------------------------------------------------------------------------

const CAPABILITIES_BYTES = 40;
const DISK_USAGE_BYTES = 48;
const OP_STATISTICS_BYTES = 36;
const COUNTER_BYTES = 12;

function measureValueResult(result: ValueResult): number {
  return result.status === "ok" ? 1 + 8 + result.value.length : 1;
}

function writeValueResult(w: Writer, result: ValueResult): void {
  w.u8(keyStatusCodes[result.status]);
  if (result.status === "ok") {
    w.u32(result.crc32c);
    w.value(result.value);
  }
}

function readValueResult(r: Reader, what: string): ValueResult {
  const code = r.u8(`${what} status`);
  const status = keyStatusNameByCode.get(code);
  if (status === undefined) throw new DecodeFailure(`unknown key status ${code} for ${what}`);
  if (status !== "ok") return { status };
  const checksum = r.u32(`${what} crc32c`);
  return { status, crc32c: checksum, value: r.value(`${what} value`) };
}

export function measureResponseBody(response: AsdResponse): number {
  switch (response.op) {
    case "capabilities":
      return CAPABILITIES_BYTES;
    case "claim":
      return 4;
    case "apply":
      return 0;
    case "multiGet":
    case "partialGet":
      return 4 + response.results.reduce((sum, result) => sum + measureValueResult(result), 0);
    case "range":
      return 8 + response.keys.reduce((sum, key) => sum + 2 + key.length, 0);
    case "rangeEntries":
      return 8 + response.entries.reduce((sum, entry) => sum + 2 + entry.key.length + measureValueResult(entry.result), 0);
    case "diskUsage":
      return DISK_USAGE_BYTES;
    case "statistics":
      return 4 + Object.keys(response.statistics.ops).length * OP_STATISTICS_BYTES + Object.keys(response.statistics.counters).length * COUNTER_BYTES;
  }
}

export function encodeResponseBody(out: Buffer, offset: number, response: AsdResponse): number {
  const w = new Writer(out, offset);
  switch (response.op) {
    case "capabilities": {
      const c = response.capabilities;
      w.u16(c.version);
      w.u16(0);
      w.u32(c.ops.reduce((mask, name) => mask | (1 << asdOpCodes[name]), 0));
      w.u32(c.frameBodyBytesMax);
      w.u32(c.keyBytesMax);
      w.u32(c.valueBytesMax);
      w.u32(c.inlineValueBytesMax);
      w.u32(c.keysPerRequestMax);
      w.u32(c.rangesPerRequestMax);
      w.u32(c.inFlightRequestsMax);
      w.u32(c.rangeLimitMax);
      break;
    }
    case "claim":
      w.u8(response.newlyClaimed ? 1 : 0);
      w.u8(0);
      w.u16(0);
      break;
    case "apply":
      break;
    case "multiGet":
    case "partialGet":
      w.u32(response.results.length);
      for (const result of response.results) writeValueResult(w, result);
      break;
    case "range":
      w.u32(response.keys.length);
      w.u8(response.more ? 1 : 0);
      w.u8(0);
      w.u16(0);
      for (const key of response.keys) w.key(key);
      break;
    case "rangeEntries":
      w.u32(response.entries.length);
      w.u8(response.more ? 1 : 0);
      w.u8(0);
      w.u16(0);
      for (const entry of response.entries) {
        w.key(entry.key);
        writeValueResult(w, entry.result);
      }
      break;
    case "diskUsage": {
      const u = response.usage;
      w.u64(u.totalBytes);
      w.u64(u.usedBytes);
      w.u64(u.freeBytes);
      w.u64(u.valueCount);
      w.u64(u.valueBytes);
      w.u32(u.fullThresholdPpm);
      w.u32(u.refusingWrites ? 1 : 0);
      break;
    }
    case "statistics": {
      const ops = Object.entries(response.statistics.ops) as Array<[AsdOpName, OpStatistics]>;
      const counters = Object.entries(response.statistics.counters) as Array<[CounterName, number]>;
      w.u16(ops.length);
      w.u16(counters.length);
      for (const [name, s] of ops) {
        w.u16(asdOpCodes[name]);
        w.u16(0);
        w.u64(s.count);
        w.u64(s.errorCount);
        w.u64(s.latencyUsTotal);
        w.u64(s.latencyUsMax);
      }
      for (const [name, value] of counters) {
        w.u16(counterIds[name]);
        w.u16(0);
        w.u64(value);
      }
      break;
    }
  }
  return w.offset;
}

/** Decodes the body of an ok response to a request of `op`. Unknown statistics entries are skipped. */
export function decodeResponseBody(op: AsdOpName, body: Buffer): Decoded<AsdResponse> {
  return decodeWith(body, 0, body.length, (r): AsdResponse => {
    switch (op) {
      case "capabilities": {
        const version = r.u16("version");
        r.u16("reserved");
        const mask = r.u32("op mask");
        const capabilities: AsdCapabilities = {
          version,
          ops: asdOpNames.filter((name) => (mask & (1 << asdOpCodes[name])) !== 0),
          frameBodyBytesMax: r.u32("frameBodyBytesMax"),
          keyBytesMax: r.u32("keyBytesMax"),
          valueBytesMax: r.u32("valueBytesMax"),
          inlineValueBytesMax: r.u32("inlineValueBytesMax"),
          keysPerRequestMax: r.u32("keysPerRequestMax"),
          rangesPerRequestMax: r.u32("rangesPerRequestMax"),
          inFlightRequestsMax: r.u32("inFlightRequestsMax"),
          rangeLimitMax: r.u32("rangeLimitMax"),
        };
        r.done(op);
        return { op, capabilities };
      }
      case "claim": {
        const newlyClaimed = r.u8("claim result") === 1;
        r.u8("reserved");
        r.u16("reserved");
        r.done(op);
        return { op, newlyClaimed };
      }
      case "apply":
        r.done(op);
        return { op };
      case "multiGet":
      case "partialGet": {
        const count = r.count("result count", asdLimits.keysPerRequestMax, 1);
        const results: ValueResult[] = [];
        for (let index = 0; index < count; index++) results.push(readValueResult(r, `result ${index}`));
        r.done(op);
        return { op, results };
      }
      case "range": {
        const count = r.count("key count", asdLimits.rangeLimitMax, 3);
        const more = r.u8("more") === 1;
        r.u8("reserved");
        r.u16("reserved");
        const keys: Buffer[] = [];
        for (let index = 0; index < count; index++) keys.push(r.key(`key ${index}`));
        r.done(op);
        return { op, keys, more };
      }
      case "rangeEntries": {
        const count = r.count("entry count", asdLimits.rangeLimitMax, 4);
        const more = r.u8("more") === 1;
        r.u8("reserved");
        r.u16("reserved");
        const entries: Array<{ key: Buffer; result: ValueResult }> = [];
        for (let index = 0; index < count; index++) {
          const key = r.key(`entry ${index} key`);
          entries.push({ key, result: readValueResult(r, `entry ${index}`) });
        }
        r.done(op);
        return { op, entries, more };
      }
      case "diskUsage": {
        const usage: AsdDiskUsage = {
          totalBytes: r.u64("totalBytes"),
          usedBytes: r.u64("usedBytes"),
          freeBytes: r.u64("freeBytes"),
          valueCount: r.u64("valueCount"),
          valueBytes: r.u64("valueBytes"),
          fullThresholdPpm: r.u32("fullThresholdPpm"),
          refusingWrites: (r.u32("flags") & 1) !== 0,
        };
        r.done(op);
        return { op, usage };
      }
      case "statistics": {
        const opCount = r.u16("op count");
        const counterCount = r.u16("counter count");
        const statistics: AsdStatistics = { ops: {}, counters: {} };
        for (let index = 0; index < opCount; index++) {
          const name = opNameOf(r.u16("op"));
          r.u16("reserved");
          const s: OpStatistics = { count: r.u64("count"), errorCount: r.u64("errorCount"), latencyUsTotal: r.u64("latencyUsTotal"), latencyUsMax: r.u64("latencyUsMax") };
          if (name !== undefined) statistics.ops[name] = s;
        }
        for (let index = 0; index < counterCount; index++) {
          const name = counterNameById.get(r.u16("counter id"));
          r.u16("reserved");
          const value = r.u64("counter value");
          if (name !== undefined) statistics.counters[name] = value;
        }
        r.done(op);
        return { op, statistics };
      }
    }
  });
}

/** A whole ok response frame in one fresh Buffer, owned by the caller. */
export function encodeResponseFrame(requestId: number, response: AsdResponse, allocate: (byteCount: number) => Buffer = Buffer.allocUnsafe): Buffer {
  const bodyBytes = measureResponseBody(response);
  const frame = allocate(FRAME_HEADER_BYTES + bodyBytes);
  const end = encodeResponseBody(frame, FRAME_HEADER_BYTES, response);
  assert(end === frame.length, "measureResponseBody agrees with encodeResponseBody");
  encodeFrameHeader(frame, 0, FRAME_KIND_RESPONSE, asdStatusCodes.ok, requestId, bodyBytes);
  return frame;
}

function truncatedMessage(message: string): Buffer {
  const bytes = Buffer.from(message, "utf8");
  if (bytes.length <= asdLimits.messageBytesMax) return bytes;
  // Cut at a character boundary: re-encode the decoded prefix (drops a split multi-byte character).
  return Buffer.from(bytes.subarray(0, asdLimits.messageBytesMax).toString("utf8").replace(/\uFFFD$/, ""), "utf8");
}

/** An error response frame: status (not ok), detail (u32), message length (u16), reserved (u16), message. */
export function encodeErrorFrame(requestId: number, status: Exclude<AsdStatusName, "ok">, message: string, detail = 0): Buffer {
  const messageBytes = truncatedMessage(message);
  const bodyBytes = 8 + messageBytes.length;
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + bodyBytes);
  const w = new Writer(frame, FRAME_HEADER_BYTES);
  w.u32(detail);
  w.u16(messageBytes.length);
  w.u16(0);
  w.put(messageBytes);
  encodeFrameHeader(frame, 0, FRAME_KIND_RESPONSE, asdStatusCodes[status], requestId, bodyBytes);
  return frame;
}

export function decodeErrorBody(body: Buffer): Decoded<ErrorBody> {
  return decodeWith(body, 0, body.length, (r) => {
    const detail = r.u32("detail");
    const messageBytes = r.u16("message length");
    r.u16("reserved");
    if (messageBytes > asdLimits.messageBytesMax) throw new DecodeFailure(`message length ${messageBytes} above ${asdLimits.messageBytesMax}`);
    const message = r.take(messageBytes, "message").toString("utf8");
    r.done("error body");
    return { detail, message };
  });
}
