// The pure part of the transmission phase: which transmission flags an export gets and whether a
// request is acceptable (and if not, which NBD error it gets). No I/O; the shell is connection.ts.
// Imported only by src/frontend/nbd/.
//
// Validation order (each step only if the previous passed), see docs/formats/nbd.md:
// 1. length > requestBytesMax on READ / WRITE / WRITE_ZEROES → EINVAL (a WRITE that big also ends the
//    connection: its payload cannot be skipped safely; connection.ts handles that).
// 2. unknown command → EINVAL; a command flag not valid for the command → EINVAL (DF on READ is valid
//    once structured replies are negotiated; BLOCK_STATUS, with REQ_ONE, once base:allocation is).
// 3. WRITE / TRIM / WRITE_ZEROES on a read-only export → EPERM.
// 4. FLUSH with a nonzero offset or length → EINVAL; BLOCK_STATUS with length 0 → EINVAL.
// 5. range past the end: WRITE / WRITE_ZEROES → ENOSPC (proto.md's SHOULD), READ / TRIM /
//    BLOCK_STATUS → EINVAL.

import type { NbdExport } from "./nbd-export.js";
import { nbdLimits } from "./limits.js";
import {
  NBD_CMD_BLOCK_STATUS, NBD_CMD_DISC, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_FLUSH,
  NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_EINVAL, NBD_ENOSPC, NBD_EPERM, NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS, NBD_FLAG_READ_ONLY, NBD_FLAG_SEND_DF, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES, NBD_OK, type RequestHeader,
} from "./protocol.js";

/** What the handshake negotiated that changes which requests are valid. */
export interface Negotiated {
  /** NBD_OPT_STRUCTURED_REPLY was acknowledged: READ gets structured replies and may carry DF. */
  structuredReplies: boolean;
  /** base:allocation was selected for this export: BLOCK_STATUS is valid. */
  blockStatus: boolean;
}

/** structuredReplies: SEND_DF is set (a READ's data always goes in one chunk, so DF costs nothing). */
export function transmissionFlagsOf(nbdExport: Pick<NbdExport, "readOnly" | "flushSemanticsAcrossConnections">, structuredReplies = false): number {
  let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA;
  if (structuredReplies) flags |= NBD_FLAG_SEND_DF;
  if (nbdExport.readOnly) flags |= NBD_FLAG_READ_ONLY;
  else flags |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
  if (nbdExport.flushSemanticsAcrossConnections) flags |= NBD_FLAG_CAN_MULTI_CONN;
  return flags;
}

/** True when a request's length is above the maximum block size for a command that has one. */
export function isOversized(header: RequestHeader): boolean {
  return header.lengthBytes > nbdLimits.requestBytesMax &&
    (header.type === NBD_CMD_READ || header.type === NBD_CMD_WRITE || header.type === NBD_CMD_WRITE_ZEROES);
}

/** NBD_OK if the request may be executed, else the NBD error to reply with. DISC is always NBD_OK. */
export function checkRequest(header: RequestHeader, sizeBytes: number, readOnly: boolean, negotiated: Negotiated = { structuredReplies: false, blockStatus: false }): number {
  if (isOversized(header)) return NBD_EINVAL;
  let flagsAllowed = NBD_CMD_FLAG_FUA;
  switch (header.type) {
    case NBD_CMD_READ:
      if (negotiated.structuredReplies) flagsAllowed |= NBD_CMD_FLAG_DF;
      break;
    case NBD_CMD_BLOCK_STATUS:
      if (!negotiated.blockStatus) return NBD_EINVAL;
      flagsAllowed |= NBD_CMD_FLAG_REQ_ONE;
      break;
    case NBD_CMD_WRITE:
    case NBD_CMD_TRIM:
    case NBD_CMD_FLUSH:
      break;
    case NBD_CMD_WRITE_ZEROES:
      flagsAllowed |= NBD_CMD_FLAG_NO_HOLE;
      break;
    case NBD_CMD_DISC:
      return NBD_OK;
    default:
      return NBD_EINVAL;
  }
  if ((header.commandFlags & ~flagsAllowed) !== 0) return NBD_EINVAL;
  const writes = header.type === NBD_CMD_WRITE || header.type === NBD_CMD_TRIM || header.type === NBD_CMD_WRITE_ZEROES;
  if (writes && readOnly) return NBD_EPERM;
  if (header.type === NBD_CMD_FLUSH) return header.offsetBytes === 0 && header.lengthBytes === 0 ? NBD_OK : NBD_EINVAL;
  if (header.type === NBD_CMD_BLOCK_STATUS && header.lengthBytes === 0) return NBD_EINVAL;
  // offsetBytes is clamped to MAX_SAFE_INTEGER and lengthBytes < 2^32, so the sum stays exact enough
  // to compare: anything clamped is far past every export's end.
  if (header.offsetBytes > sizeBytes || header.lengthBytes > sizeBytes - header.offsetBytes) {
    return header.type === NBD_CMD_WRITE || header.type === NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
  }
  return NBD_OK;
}
