// The contract between the NBD server and what it serves: an NbdExport is one block device (a vDisk,
// implemented by the volume engine; tests use memory-export.ts), an NbdExportProvider names them.
//
// Imported by src/frontend/nbd/ and, through src/frontend/index.ts, by whoever implements exports.
//
// Contract (the server relies on it; violations are bugs and trip assertions):
// - Offsets and lengths the server passes are integers with offsetBytes + lengthBytes <= sizeBytes()
//   as advertised to that connection, lengthBytes <= the server's request maximum (32 MiB) except for
//   trim (up to 2^32 - 1), lengthBytes > 0 (the server answers zero-length requests itself), and may
//   be unaligned to 512 bytes: the export does read-modify-write where it needs to.
// - read() resolves to a Buffer of exactly lengthBytes that the caller (the server) then owns; the
//   export must not modify it afterwards.
// - write(): `data` is handed over to the export. The server never reads or modifies it again after
//   the call. It may be a view into a larger socket chunk (up to 64 KiB), so an export that keeps it
//   after the promise settles (a write buffer, a cache) should copy it to avoid pinning that chunk.
// - flush() resolves once every write, trim and writeZeroes that resolved before flush() was called
//   is durable (DESIGN.md §4.1). A write with fua=true resolves only once that write is durable.
// - blockStatus() (optional) gets lengths up to 2^32 - 1 (not bounded by the request maximum).
// - Operating errors are rejected with OvsError; the server maps their codes to NBD errors
//   (nbdErrorOf below). Anything else is logged and reported as EIO; an AssertionError is a bug and
//   is rethrown (the process crashes and recovers, DESIGN.md / STYLE.md).
// - attach() is called when a connection selects the export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) and
//   may throw an OvsError (e.g. IN_USE) to refuse it; detach() once when that connection ends.
//   openExport() is also called for NBD_OPT_INFO, without attach(): it must have no side effects.

import { AssertionError, isOvsError } from "../../base/index.js";
import { NBD_EINVAL, NBD_EIO, NBD_ENOSPC, type BlockStatusExtent } from "./protocol.js";

export interface NbdExport {
  readonly name: string;
  readonly description?: string;
  /** Current size; read when a connection selects the export (it may grow between connections). */
  sizeBytes(): number;
  readonly readOnly: boolean;
  /** Resolves to exactly lengthBytes bytes, owned by the caller. */
  read(offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  /** Takes ownership of `data` (see the header: copy it if it is kept after the promise settles). */
  write(offsetBytes: number, data: Buffer, fua: boolean): Promise<void>;
  /**
   * Optional: the same as write() of the concatenation of `chunks` (lengthBytes in all), for a payload
   * that arrived in several socket chunks; the server then hands over views of those chunks instead of
   * gathering them into one buffer (an export that copies the payload anyway saves a copy).
   */
  writeChunks?(offsetBytes: number, chunks: readonly Buffer[], lengthBytes: number, fua: boolean): Promise<void>;
  /** Resolves once all writes acknowledged before it are durable. */
  flush(): Promise<void>;
  /** A hint: the range may be discarded. The server follows it with flush() when FUA is set. */
  trim(offsetBytes: number, lengthBytes: number): Promise<void>;
  /** The range reads back as zeroes afterwards; noHole: keep it allocated. */
  writeZeroes(offsetBytes: number, lengthBytes: number, noHole: boolean, fua: boolean): Promise<void>;
  /**
   * Optional: the allocation of [offsetBytes, offsetBytes + lengthBytes) as extents (NBD_STATE_HOLE |
   * NBD_STATE_ZERO for ranges that read as zeroes and are not allocated, 0 for data). The extents are
   * consecutive from offsetBytes, each longer than 0, at most extentCountMax of them, and cover the
   * range or a prefix of it (the client asks again for the rest). Only an export with it offers the
   * base:allocation metadata context. Contract: a range reported with NBD_STATE_ZERO reads as zeroes
   * (when in doubt, report 0: "data, contents unknown").
   */
  blockStatus?(offsetBytes: number, lengthBytes: number, extentCountMax: number): Promise<BlockStatusExtent[]>;
  /** True when flush/FUA effects are visible on all connections: the server advertises CAN_MULTI_CONN. */
  readonly flushSemanticsAcrossConnections: boolean;
  /** Called per connection that selected this export; may throw OvsError (e.g. IN_USE) to refuse. */
  attach(): void;
  /** Called once per successful attach(), when that connection ends. */
  detach(): void;
}

export interface NbdExportProvider {
  listExports(): Array<{ name: string; description?: string }>;
  /** Looks an export up by name; undefined if there is none. Must be free of side effects. */
  openExport(name: string): NbdExport | undefined;
}

/**
 * The NBD error value for an error an export rejected with: OUT_OF_RANGE and INVALID_ARGUMENT → EINVAL,
 * NO_SPACE → ENOSPC, everything else → EIO (read-only refusals never reach an export: the server
 * answers them with EPERM itself). AssertionErrors are bugs: they are rethrown.
 */
export function nbdErrorOf(error: unknown): number {
  if (error instanceof AssertionError) throw error;
  if (isOvsError(error)) {
    switch (error.code) {
      case "OUT_OF_RANGE":
      case "INVALID_ARGUMENT":
        return NBD_EINVAL;
      case "NO_SPACE":
        return NBD_ENOSPC;
      default:
        return NBD_EIO;
    }
  }
  return NBD_EIO;
}

