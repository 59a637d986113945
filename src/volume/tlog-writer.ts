// One TLog being written: entries are encoded into an in-memory buffer as the volume applies writes, and
// reach the file only in the volume's sync step, after the SCO data they point to is fsynced (so a TLog
// on disk never names data that is not on disk). Owned by Volume; not shared.
//
// Limits: the pending buffer holds the entries since the last sync; the volume syncs every few SCO rolls
// (volumeLimits.scoRollsPerBackgroundSync), at TLog rolls and on a 1 s timer, so it stays under a few
// SCOs' worth of entries (32 bytes per cluster) plus what arrives during one sync.

import { assert, crc32cSealRecords } from "../base/index.js";
import {
  EntryKind,
  encodeTlogEntry,
  encodeLocationEntry,
  encodeLocationEntryBody,
  encodeTlogHeader,
  entriesCrcOf,
  tlogEntryCrcOffset,
  tlogEntrySizeBytes,
  tlogHeaderSizeBytes,
  type TlogEntry,
} from "./tlog-format.js";

/**
 * A TLog's bytes are also kept in memory, up to this size, so its upload needs no re-read of the file
 * (four trips through the thread pool and the event loop, about a fifth of the TLog upload's latency
 * under sequential writes). An 8 MiB SCO's entries take 64 KiB; bigger TLogs are read from the file.
 */
export const tlogMemoryCopyBytesMax = 4 * 1024 * 1024;

export class TlogWriter {
  readonly seq: number;
  readonly id: string;
  /** Bytes already in the file (fsynced when syncedBytes is updated by the volume). */
  fileSizeBytes: number;
  /** Entries appended so far (synced or not). */
  entryCount: number;
  /** Entries known durable in the file. */
  syncedEntryCount: number;
  /** SCO numbers closed into this TLog (in order). */
  readonly scoNumbers: number[] = [];
  closed = false;
  /** Resolves once the TLog's record is persisted in the metadata (before its file is written). */
  recordPersisted: Promise<void> = Promise.resolve();

  private pending: Buffer;
  private pendingLengthBytes = 0;
  private entriesCrc: number;
  /** Copies of the bytes written to the file, in order, while they are all there (not for a resumed TLog). */
  private written: Buffer[] | undefined;
  private writtenBytes = 0;

  constructor(options: { seq: number; id: string; clusterSizeBytes: number } | { seq: number; id: string; resume: { fileSizeBytes: number; entryCount: number; entriesCrc: number } }) {
    this.seq = options.seq;
    this.id = options.id;
    this.pending = Buffer.allocUnsafe(64 * 1024);
    if ("resume" in options) {
      this.fileSizeBytes = options.resume.fileSizeBytes;
      this.entryCount = options.resume.entryCount;
      this.syncedEntryCount = options.resume.entryCount;
      this.entriesCrc = options.resume.entriesCrc;
      this.written = undefined; // the file's first bytes are not in memory
    } else {
      this.written = [];
      this.fileSizeBytes = 0;
      this.entryCount = 0;
      this.syncedEntryCount = 0;
      this.entriesCrc = 0;
      encodeTlogHeader(this.pending, options.clusterSizeBytes);
      this.pendingLengthBytes = tlogHeaderSizeBytes;
    }
  }

  /** Appends an entry; returns its index in the TLog. */
  append(entry: TlogEntry): number {
    assert(!this.closed, "append to a closed TLog");
    this.ensureRoom(tlogEntrySizeBytes);
    const offset = this.pendingLengthBytes;
    encodeTlogEntry(this.pending, offset, entry);
    this.entriesCrc = entriesCrcOf(this.pending, offset, 1, this.entriesCrc);
    this.pendingLengthBytes += tlogEntrySizeBytes;
    return this.entryCount++;
  }

  /** Appends a Location entry (clone 0, version 0); the write path's allocation-free variant of append. */
  appendLocation(clusterAddress: number, scoNumber: number, offsetClusters: number, dataCrc: number): number {
    assert(!this.closed, "append to a closed TLog");
    this.ensureRoom(tlogEntrySizeBytes);
    const offset = this.pendingLengthBytes;
    encodeLocationEntry(this.pending, offset, clusterAddress, scoNumber, offsetClusters, dataCrc);
    this.entriesCrc = entriesCrcOf(this.pending, offset, 1, this.entriesCrc);
    this.pendingLengthBytes += tlogEntrySizeBytes;
    return this.entryCount++;
  }

  /**
   * Appends the Location entries (clone 0, version 0) of `count` consecutive clusters from
   * `firstClusterAddress`, written at consecutive offsets of one SCO from `firstOffsetClusters`, their data
   * CRCs in dataCrcs[0..count). The same bytes as `count` appendLocation calls, with the entries' CRCs
   * computed in one native call. Returns the first entry's index.
   */
  appendLocationRun(firstClusterAddress: number, count: number, scoNumber: number, firstOffsetClusters: number, dataCrcs: Uint32Array): number {
    assert(!this.closed, "append to a closed TLog");
    assert(count <= dataCrcs.length);
    this.ensureRoom(count * tlogEntrySizeBytes);
    const start = this.pendingLengthBytes;
    const pending = this.pending;
    for (let i = 0; i < count; i++) {
      encodeLocationEntryBody(pending, start + i * tlogEntrySizeBytes, firstClusterAddress + i, scoNumber, firstOffsetClusters + i, dataCrcs[i]!);
    }
    this.entriesCrc = crc32cSealRecords(pending.subarray(start, start + count * tlogEntrySizeBytes), count, tlogEntrySizeBytes, tlogEntryCrcOffset, this.entriesCrc);
    this.pendingLengthBytes += count * tlogEntrySizeBytes;
    const first = this.entryCount;
    this.entryCount += count;
    return first;
  }

  /** Appends the closing entry (entry count and CRC over all entries). */
  close(): void {
    this.append({ kind: EntryKind.TlogCrc, entryCount: this.entryCount, entriesCrc: this.entriesCrc });
    this.closed = true;
  }

  /** A view of the bytes not yet in the file, and the entry count they bring the file to. */
  takePending(): { bytes: Buffer; entryCountAfter: number } {
    return { bytes: this.pending.subarray(0, this.pendingLengthBytes), entryCountAfter: this.entryCount };
  }

  /** Drops the first `lengthBytes` pending bytes once they are in the file. */
  consumePending(lengthBytes: number, entryCountAfter: number): void {
    assert(lengthBytes <= this.pendingLengthBytes);
    if (this.written !== undefined) {
      if (this.writtenBytes + lengthBytes <= tlogMemoryCopyBytesMax) {
        this.written.push(Buffer.from(this.pending.subarray(0, lengthBytes)));
        this.writtenBytes += lengthBytes;
      } else {
        this.written = undefined;
      }
    }
    this.pending.copy(this.pending, 0, lengthBytes, this.pendingLengthBytes);
    this.pendingLengthBytes -= lengthBytes;
    this.fileSizeBytes += lengthBytes;
    this.syncedEntryCount = entryCountAfter;
  }

  /**
   * The whole file's bytes once the TLog is closed and all of it is in the file, if they were kept in
   * memory (see tlogMemoryCopyBytesMax); else undefined (read the file).
   */
  fileContent(): Buffer | undefined {
    if (!this.closed || this.pendingLengthBytes > 0 || this.written === undefined || this.writtenBytes !== this.fileSizeBytes) return undefined;
    return this.written.length === 1 ? this.written[0] : Buffer.concat(this.written, this.writtenBytes);
  }

  get hasPending(): boolean {
    return this.pendingLengthBytes > 0;
  }

  private ensureRoom(lengthBytes: number): void {
    if (this.pendingLengthBytes + lengthBytes <= this.pending.length) return;
    const larger = Buffer.allocUnsafe(Math.max(this.pending.length * 2, this.pendingLengthBytes + lengthBytes));
    this.pending.copy(larger, 0, 0, this.pendingLengthBytes);
    this.pending = larger;
  }
}
