// Every limit of the ASD (server, store and client), in one place so that their relations can be
// checked at load time (STYLE.md). Imported only by src/alba/asd/; the ones a peer must know are also
// advertised by the CAPABILITIES operation (docs/formats/asd-protocol.md).
//
// Backpressure comes from these: a connection stops reading its socket while it is at
// inFlightRequestsMax, inFlightBytesMax or replyBufferedBytesMax; the client queues requests beyond
// the server's inFlightRequestsMax locally, up to queuedRequestsMax. replyBufferedBytesMax stops new
// requests from being read; replies of requests already in flight still go out, so a connection's
// buffered replies stay below replyBufferedBytesMax + inFlightRequestsMax replies.

import { assert, KiB, MiB } from "../../base/index.js";

export const asdLimits = {
  /** Largest key, in bytes (lmdb with 8 KiB pages takes keys up to 4026 bytes). Keys are 1..keyBytesMax. */
  keyBytesMax: 4000,
  /** Largest value, in bytes. */
  valueBytesMax: 64 * MiB,
  /** Values smaller than this live in the index (lmdb); values of this size or larger are files. */
  inlineValueBytesMax: 16 * KiB - 1,
  /** Largest frame body (request or response), in bytes; a larger length in a header ends the connection. */
  frameBodyBytesMax: 72 * MiB,
  /** Keys per request: multi-get keys, partial-get items, apply asserts + updates. */
  keysPerRequestMax: 1024,
  /** (offset, length) ranges per partial-get request, over all its items. */
  rangesPerRequestMax: 4096,
  /** Largest limit a range / range-entries request may ask for. */
  rangeLimitMax: 10_000,
  /** A range-entries page stops before its key and value bytes pass this (one entry is always returned). */
  rangeEntriesBytesMax: 4 * MiB,
  /** Requests read and not yet answered, per connection. */
  inFlightRequestsMax: 256,
  /** Request body bytes in flight per connection (one request may exceed it alone). */
  inFlightBytesMax: 128 * MiB,
  /** Reply bytes queued in the socket and not yet taken by the kernel, per connection. */
  replyBufferedBytesMax: 32 * MiB,
  /** Concurrent connections per ASD; further ones are closed on accept. */
  connectionCountMax: 1024,
  /** From accept to the end of the prologue. */
  prologueTimeoutMs: 10_000,
  /** Largest backend id, in UTF-8 bytes. */
  backendIdBytesMax: 64,
  /** Largest message in an error response or in the prologue's auth reply, in UTF-8 bytes. */
  messageBytesMax: 1024,
  /** Applies merged into one group commit (one lmdb transaction, one fsync). */
  batchAppliesMax: 1024,
  /** Value bytes of one group commit; the batch closes when the next apply would pass it (one apply may exceed it alone). */
  batchBytesMax: 64 * MiB,
  /** Applies queued for the committer; more wait for a slot (backpressure onto connections). */
  queuedAppliesMax: 8192,
  /**
   * Bytes of committed value files whose pages may stay in the page cache (per ASD process); older ones
   * are dropped from it (DropBehind, src/base/page-cache.ts): a fresh page-cache page per fragment byte
   * written was the ASDs' costliest copy.
   */
  pageCacheWindowBytes: 256 * MiB,
  /** Block size of the checksum table of a file value: each block has its own CRC32C. */
  fileBlockBytes: 64 * KiB,
  /** How often a read retries when the file it found was replaced under it by a concurrent apply. */
  readRetriesMax: 3,
  /** How long close() waits for in-flight requests before it destroys the remaining sockets. */
  closeTimeoutMs: 10_000,
  /** Client: requests waiting for an in-flight slot, per connection; more are refused with UNAVAILABLE. */
  queuedRequestsMax: 65_536,
  /** Client: default per-request timeout. */
  requestTimeoutMsDefault: 30_000,
  /** Client: connect + prologue timeout. */
  connectTimeoutMsDefault: 5_000,
  /** Client: longest pause between reconnect attempts. */
  reconnectDelayMsMax: 2_000,
} as const;

const l = asdLimits;
assert(l.inlineValueBytesMax < l.valueBytesMax, "inline values are smaller than the largest value");
assert(l.keyBytesMax <= 4026 && l.keyBytesMax < 0x10000, "keys fit lmdb (8 KiB pages) and a u16 length");
assert(l.frameBodyBytesMax >= l.valueBytesMax + l.keysPerRequestMax * (l.keyBytesMax + 16), "one largest value and a full set of largest keys fit in a frame");
assert(l.frameBodyBytesMax <= 0xffffffff, "frame body length fits the u32 length field");
assert(l.rangeEntriesBytesMax + l.keyBytesMax + l.valueBytesMax + 64 <= l.frameBodyBytesMax, "a range-entries page (bytes below its cap, plus one entry) fits a frame");
assert(l.rangeLimitMax * (l.keyBytesMax + 2) + 64 <= l.frameBodyBytesMax, "a full page of largest keys fits a frame");
assert(l.rangesPerRequestMax >= l.keysPerRequestMax, "each partial-get item may have a range");
assert(l.inFlightRequestsMax >= 1 && l.inFlightBytesMax >= l.frameBodyBytesMax, "one largest request fits the in-flight budget");
assert(l.batchBytesMax >= 1 && l.batchAppliesMax >= 1 && l.queuedAppliesMax >= l.batchAppliesMax, "the apply queue holds at least one batch");
assert(l.fileBlockBytes > 0 && (l.fileBlockBytes & (l.fileBlockBytes - 1)) === 0, "file checksum blocks are a power of 2");
assert(Math.ceil(l.valueBytesMax / l.fileBlockBytes) * 4 + 64 < 1 << 20, "a file value's checksum table stays small in the index");
assert(l.messageBytesMax < 0x10000 && l.backendIdBytesMax < 0x10000, "messages and backend ids fit u16 lengths");
