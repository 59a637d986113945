// Every limit of the NBD server, in one place so that their relations can be checked (STYLE.md).
// Imported only by src/frontend/nbd/. Backpressure comes from these: a connection stops reading its
// socket while it is at inFlightRequestsMax, inFlightBytesMax or replyBufferedBytesMax.

import { assert, KiB, MiB } from "../../base/index.js";
import { STRING_BYTES_MAX } from "./protocol.js";

export const nbdLimits = {
  /** Largest READ / WRITE / WRITE_ZEROES length, advertised as the maximum block size (NBD_INFO_BLOCK_SIZE). */
  requestBytesMax: 32 * MiB,
  /** Advertised minimum block size. Advisory: unaligned requests are served (the export does RMW). */
  blockSizeMinimumBytes: 512,
  /** Advertised preferred block size: the volume's cluster size. */
  blockSizePreferredBytes: 4 * KiB,
  /** Requests dispatched to the export and not yet replied to, per connection. */
  inFlightRequestsMax: 128,
  /** Bytes of READ lengths and WRITE payloads in flight, per connection (one request may exceed it alone). */
  inFlightBytesMax: 64 * MiB,
  /** Reply bytes queued in the socket and not yet taken by the kernel, per connection. */
  replyBufferedBytesMax: 16 * MiB,
  /**
   * WRITE payloads up to this size that span socket chunks are gathered into pooled buffers (shared by
   * the server's connections, at most writePayloadPoolCountMax kept idle) instead of fresh allocations.
   */
  writePayloadPoolBufferBytes: 1 * MiB,
  writePayloadPoolCountMax: 64,
  /** Most extents in one BLOCK_STATUS reply (proto.md lets a reply cover a prefix; the client asks on). */
  blockStatusExtentsMax: 1024,
  /** Largest option data the server buffers; larger options are skipped and answered NBD_REP_ERR_TOO_BIG. */
  optionDataBytesMax: 16 * KiB,
  /** Options per connection before the server deems the client abusive and disconnects. */
  optionCountMax: 1024,
  /** Time from accept to the end of the handshake before the server disconnects. */
  handshakeTimeoutMs: 30_000,
  /** Concurrent connections per server; further ones are closed on accept. */
  connectionCountMax: 1024,
  /** How long close() waits for in-flight requests before it destroys the remaining sockets. */
  closeTimeoutMs: 10_000,
} as const;

const l = nbdLimits;
assert(l.blockSizeMinimumBytes > 0 && (l.blockSizeMinimumBytes & (l.blockSizeMinimumBytes - 1)) === 0 && l.blockSizeMinimumBytes <= 64 * KiB, "minimum block size: power of 2, at most 64 KiB");
assert((l.blockSizePreferredBytes & (l.blockSizePreferredBytes - 1)) === 0 && l.blockSizePreferredBytes >= Math.max(512, l.blockSizeMinimumBytes), "preferred block size: power of 2, >= max(512, minimum)");
assert(l.requestBytesMax % l.blockSizeMinimumBytes === 0 && l.requestBytesMax >= l.blockSizePreferredBytes && l.requestBytesMax >= MiB, "maximum block size: multiple of minimum, >= preferred, >= 1 MiB");
assert(l.requestBytesMax <= 0xffffffff, "maximum block size fits the 32-bit length field");
assert(l.inFlightRequestsMax >= 1 && l.inFlightBytesMax >= l.blockSizePreferredBytes * l.inFlightRequestsMax, "in-flight bytes allow a full queue of preferred-size requests");
assert(l.optionDataBytesMax >= 4 + STRING_BYTES_MAX + 2 + 2 * 16, "an INFO/GO option with a 4096-byte name fits");
