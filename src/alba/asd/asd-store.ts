// AsdStore: the storage of one ASD in one directory: an lmdb index (keys → value records) with small
// values inline and large values as checksummed files, group commit, claim, and disk-usage accounting.
// On-disk layout: docs/formats/asd-protocol.md ("On disk"). Imported by asd-server.ts (and tests).
//
// Layout: DIR/index/ (lmdb: databases "values", "meta", "garbage"), DIR/blobs/XX/<16 hex file id>
// (XX = low byte of the id), DIR/LOCK (informational; the lock is an abstract unix socket).
//
// Invariants:
// - Every value is stored with its CRC32C (from the client, checked on arrival) and verified on every
//   read: inline values as a whole, file values per fileBlockBytes block (so a partial read verifies only
//   the blocks it touches). A record carries its own CRC too. A failed check is a per-key "corrupt"
//   result, never wrong bytes, and is counted (checksumErrors).
// - Durable before acknowledged (group commit): applies queued while a batch commits form the next batch.
//   A batch writes its value files, fsyncs them and their directories (one round), then runs one lmdb transaction
//   (asserts checked inside it, in arrival order) whose commit is fsynced (overlappingSync off) before any
//   apply of the batch resolves. An apply whose assert fails changes nothing.
// - Files: a file id is never reused (meta next-file-id, persisted in every batch). Every file with an
//   id below next-file-id is referenced by exactly one record or listed in "garbage" (written in the same
//   transaction that orphans it). After a crash, files with ids >= next-file-id (half-written by a batch
//   that never committed) and garbage files are deleted on open.
// - Reads never block on writes: a read uses lmdb's last committed snapshot; if the file it found was
//   replaced and unlinked meanwhile, it looks the key up again (readRetriesMax).
// - Writes are refused (NO_SPACE) once used + the apply's value bytes would pass fullThreshold of the
//   filesystem (statfs, injectable); reads and deletes are always served.
// - One process per directory (abstract unix socket lock, dropped by the kernel even on kill -9).
// Buffers: values returned by reads are fresh and owned by the caller; values passed to apply() must not
// change until it resolves (they are written as is).
// Limits: asdLimits (batchAppliesMax, batchBytesMax, queuedAppliesMax, fileBlockBytes, readRetriesMax).

import { randomBytes } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";
import { mkdir, open, readdir, readFile, stat, statfs, unlink, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { open as openLmdb, type Database, type RootDatabase } from "lmdb";
import { DropBehind, OvsError, assert, crc32c, systemErrorCode, type Logger } from "../../base/index.js";
import { asdLimits } from "./limits.js";
import type { AsdAssert, AsdUpdate, ByteRange, RangeQuery, ValueResult } from "./protocol.js";

export const asdStoreFormat = "openvstorage-asd 1";
export const lockFileName = "LOCK";
const lmdbPageBytes = 8192;

/** Record kinds in the "values" database. Persisted: never renumber. */
export const RECORD_INLINE = 1;
export const RECORD_FILE = 2;
/** Record header: kind (1), reserved (3), value length (4), value CRC32C (4), record CRC32C (4). */
export const RECORD_HEADER_BYTES = 16;
/** A file record's body before its block table: file id (8), block size (4), block count (4). */
const FILE_RECORD_FIXED_BYTES = 16;

const metaKeys = {
  format: Buffer.from("format"),
  asdId: Buffer.from("asd-id"),
  claimedBy: Buffer.from("claimed-by"),
  nextFileId: Buffer.from("next-file-id"),
  valueCount: Buffer.from("value-count"),
  valueBytes: Buffer.from("value-bytes"),
};

/** What statfs reports for the ASD's filesystem. */
export interface FilesystemSpace {
  totalBytes: number;
  freeBytes: number;
}
export type StatfsSource = (dir: string) => Promise<FilesystemSpace>;

export async function statfsSpace(dir: string): Promise<FilesystemSpace> {
  const s = await statfs(dir);
  return { totalBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize };
}

export interface AsdStoreOptions {
  dir: string;
  logger: Logger;
  /** Where disk space comes from (default: fs.statfs of the directory). Tests inject a fake. */
  statfs?: StatfsSource;
  /** Fraction of the filesystem at which writes are refused (default 0.99). */
  fullThreshold?: number;
  /** statfs results are reused for this long (default 500 ms); value bytes written since are added. */
  statfsCacheMs?: number;
}

export interface StoreCounters {
  checksumErrors: number;
  fullRefusals: number;
  groupCommits: number;
  groupCommittedApplies: number;
  assertFailures: number;
}

export interface StoreDiskUsage {
  totalBytes: number;
  usedBytes: number;
  freeBytes: number;
  valueCount: number;
  valueBytes: number;
  fullThresholdPpm: number;
  refusingWrites: boolean;
}

interface FileRecord {
  fileId: number;
  blockBytes: number;
  blockCrcs: Uint32Array;
}
interface DecodedRecord {
  kind: number;
  valueBytes: number;
  valueCrc: number;
  /** Inline: the value (a view into the record). */
  inline?: Buffer;
  file?: FileRecord;
}

interface PendingApply {
  asserts: AsdAssert[];
  updates: AsdUpdate[];
  setBytes: number;
  /** File ids written for this apply's large sets, by update index. */
  files: Map<number, FileRecord>;
  error?: OvsError;
  resolve: () => void;
  reject: (error: OvsError) => void;
}

type Binary = Buffer;

export class AsdStore {
  readonly dir: string;
  readonly counters: StoreCounters = { checksumErrors: 0, fullRefusals: 0, groupCommits: 0, groupCommittedApplies: 0, assertFailures: 0 };

  private readonly root: RootDatabase<Binary, Binary>;
  private readonly values: Database<Binary, Binary>;
  private readonly meta: Database<Binary, Binary>;
  private readonly garbage: Database<Binary, Binary>;
  private readonly lockServer: net.Server;
  private readonly logger: Logger;
  private readonly statfsSource: StatfsSource;
  private readonly statfsCacheMs: number;
  readonly fullThreshold: number;

  private asdIdBytes: Buffer;
  private claimedByText: string | undefined;
  private nextFileId: number;
  private valueCountTotal: number;
  private valueBytesTotal: number;

  private readonly queue: PendingApply[] = [];
  private queuedWaiters: Array<() => void> = [];
  private committing: Promise<void> | undefined;
  /** Committed value files, oldest first: those beyond the window lose their page-cache pages. */
  private readonly dropBehind = new DropBehind(asdLimits.pageCacheWindowBytes);
  /** Garbage file ids unlinked since the last batch: their garbage records go in the next transaction. */
  private unlinkedGarbage: number[] = [];
  private readonly unlinking = new Set<Promise<void>>();
  private space: { at: number; space: FilesystemSpace; bytesWrittenSince: number } | undefined;
  private failure: OvsError | undefined;
  private closed = false;

  private constructor(dir: string, root: RootDatabase<Binary, Binary>, lockServer: net.Server, options: AsdStoreOptions) {
    this.dir = dir;
    this.root = root;
    this.values = root.openDB<Binary, Binary>({ name: "values", keyEncoding: "binary", encoding: "binary", cache: false });
    this.meta = root.openDB<Binary, Binary>({ name: "meta", keyEncoding: "binary", encoding: "binary", cache: false });
    this.garbage = root.openDB<Binary, Binary>({ name: "garbage", keyEncoding: "binary", encoding: "binary", cache: false });
    this.lockServer = lockServer;
    this.logger = options.logger;
    this.statfsSource = options.statfs ?? statfsSpace;
    this.statfsCacheMs = options.statfsCacheMs ?? 500;
    this.fullThreshold = options.fullThreshold ?? 0.99;
    assert(this.fullThreshold > 0 && this.fullThreshold <= 1, "fullThreshold is a fraction in (0, 1]");
    this.asdIdBytes = Buffer.alloc(16);
    this.nextFileId = 0;
    this.valueCountTotal = 0;
    this.valueBytesTotal = 0;
  }

  /** Opens (creating if needed) the ASD store in `dir`; IN_USE if another process has it. */
  static async open(options: AsdStoreOptions): Promise<AsdStore> {
    const dir = path.resolve(options.dir);
    try {
      await mkdir(path.join(dir, "index"), { recursive: true });
      await mkdir(path.join(dir, "blobs"), { recursive: true });
    } catch (error) {
      throw ioError(error, `create the ASD directory ${dir}`);
    }
    const lockServer = await acquireLock(dir);
    let root: RootDatabase<Binary, Binary> | undefined;
    try {
      root = openLmdb<Binary, Binary>({
        path: path.join(dir, "index"),
        keyEncoding: "binary",
        encoding: "binary",
        overlappingSync: false,
        pageSize: lmdbPageBytes,
        maxDbs: 4,
        cache: false,
      });
      const store = new AsdStore(dir, root, lockServer, options);
      await store.initialize();
      return store;
    } catch (error) {
      if (root !== undefined) await root.close().catch(() => undefined);
      lockServer.close();
      throw ioError(error, `open the ASD store in ${dir}`);
    }
  }

  private async initialize(): Promise<void> {
    const format = this.meta.getBinary(metaKeys.format);
    if (format === undefined) {
      for (const _key of this.values.getKeys({ limit: 1 })) {
        throw new OvsError("CORRUPT", `The ASD index in ${this.dir} has values but no format marker.`, { dir: this.dir });
      }
      await this.root.transaction(() => {
        this.meta.putSync(metaKeys.format, Buffer.from(asdStoreFormat));
        this.meta.putSync(metaKeys.asdId, randomBytes(16));
        this.meta.putSync(metaKeys.nextFileId, u64Bytes(0));
        this.meta.putSync(metaKeys.valueCount, u64Bytes(0));
        this.meta.putSync(metaKeys.valueBytes, u64Bytes(0));
      });
    } else if (format.toString() !== asdStoreFormat) {
      throw new OvsError("CORRUPT", `The ASD in ${this.dir} has format "${format.toString()}"; this version reads "${asdStoreFormat}".`, { dir: this.dir });
    }
    const asdId = this.meta.getBinary(metaKeys.asdId);
    assert(asdId !== undefined && asdId.length === 16, "an initialized ASD has a 16-byte id");
    this.asdIdBytes = Buffer.from(asdId);
    this.claimedByText = this.meta.getBinary(metaKeys.claimedBy)?.toString("utf8");
    this.nextFileId = readU64(this.meta.getBinary(metaKeys.nextFileId));
    this.valueCountTotal = readU64(this.meta.getBinary(metaKeys.valueCount));
    this.valueBytesTotal = readU64(this.meta.getBinary(metaKeys.valueBytes));

    // Blob directories exist before any batch, so a batch only fsyncs the directories it wrote into.
    const blobs = path.join(this.dir, "blobs");
    const existing = new Set(await readdir(blobs));
    for (let index = 0; index < 256; index++) {
      const name = hexByte(index);
      if (!existing.has(name)) await mkdir(path.join(blobs, name), { recursive: true });
    }
    if (existing.size < 256) {
      await fsyncDirectory(blobs);
      await fsyncDirectory(this.dir);
    }
    await this.collectGarbageOnOpen();
    await writeFile(path.join(this.dir, lockFileName), `pid ${process.pid}\nhost ${os.hostname()}\nsince ${new Date().toISOString()}\n`);
  }

  /** Deletes garbage files and files left by a batch that never committed (ids >= next-file-id). */
  private async collectGarbageOnOpen(): Promise<void> {
    const garbageIds: number[] = [];
    for (const key of this.garbage.getKeys({})) garbageIds.push(readU64KeyBytes(key));
    let removedCount = 0;
    for (const fileId of garbageIds) {
      if (await unlinkIfPresent(this.filePath(fileId))) removedCount++;
    }
    const blobs = path.join(this.dir, "blobs");
    for (let index = 0; index < 256; index++) {
      const sub = path.join(blobs, hexByte(index));
      for (const name of await readdir(sub)) {
        const fileId = /^[0-9a-f]{16}$/.test(name) ? Number.parseInt(name, 16) : undefined;
        if (fileId === undefined) {
          this.logger.warn({ file: path.join(sub, name) }, "asd: unknown file in blobs; left alone");
          continue;
        }
        if (fileId >= this.nextFileId) {
          await unlinkIfPresent(path.join(sub, name));
          removedCount++;
        }
      }
    }
    if (garbageIds.length > 0) {
      await this.root.transaction(() => {
        for (const fileId of garbageIds) this.garbage.removeSync(u64KeyBytes(fileId));
      });
    }
    if (removedCount > 0) this.logger.info({ dir: this.dir, removedCount }, "asd: removed orphaned value files");
  }

  get asdId(): Buffer {
    return this.asdIdBytes;
  }

  get claimedBy(): string | undefined {
    return this.claimedByText;
  }

  /** Claims the ASD for `backendId`: true if it was unclaimed; false if already ours; CONFLICT if another's. */
  async claim(backendId: string): Promise<boolean> {
    this.checkUsable();
    assert(backendId.length > 0, "a backend id is not empty");
    // Nothing throws inside the transaction: lmdb-js may share it with a concurrent batch.
    const current = await this.root.transaction(() => {
      const claimed = this.meta.getBinary(metaKeys.claimedBy)?.toString("utf8");
      if (claimed === undefined) this.meta.putSync(metaKeys.claimedBy, Buffer.from(backendId, "utf8"));
      return claimed;
    });
    if (current !== undefined && current !== backendId) throw claimedByOtherError(current);
    this.claimedByText = backendId;
    return current === undefined;
  }

  // ---- Reads ---------------------------------------------------------------------------------------

  /** Reads whole values; one result per key, in order. */
  async multiGet(keys: readonly Buffer[]): Promise<ValueResult[]> {
    this.checkUsable();
    return Promise.all(keys.map((key) => this.readValue(key, undefined)));
  }

  /** Reads byte ranges of values; per key the ranges' bytes concatenated, with their CRC32C. */
  async partialGet(items: ReadonlyArray<{ key: Buffer; ranges: ByteRange[] }>): Promise<ValueResult[]> {
    this.checkUsable();
    return Promise.all(items.map((item) => this.readValue(item.key, item.ranges)));
  }

  /** One page of keys (see RangeQuery); `more` if the limit stopped it. */
  range(query: RangeQuery): { keys: Buffer[]; more: boolean } {
    this.checkUsable();
    const keys: Buffer[] = [];
    let more = false;
    this.scan(query, (key) => {
      if (keys.length >= query.limit) {
        more = true;
        return false;
      }
      keys.push(Buffer.from(key));
      return true;
    });
    return { keys, more };
  }

  /** One page of entries with their values (verified), stopping at the limit or rangeEntriesBytesMax. */
  async rangeEntries(query: RangeQuery): Promise<{ entries: Array<{ key: Buffer; result: ValueResult }>; more: boolean }> {
    this.checkUsable();
    const keys: Buffer[] = [];
    let pageBytes = 0;
    let more = false;
    this.scan(query, (key, record) => {
      const valueBytes = record.length >= 8 ? record.readUInt32LE(4) : 0;
      if (keys.length >= query.limit || (keys.length > 0 && pageBytes + key.length + valueBytes > asdLimits.rangeEntriesBytesMax)) {
        more = true;
        return false;
      }
      keys.push(Buffer.from(key));
      pageBytes += key.length + valueBytes + 11;
      return true;
    }, true);
    const results = await Promise.all(keys.map((key) => this.readValue(key, undefined)));
    // A key deleted between the scan and the read is left out of the page.
    const entries = keys.map((key, index) => ({ key, result: results[index]! })).filter((entry) => entry.result.status !== "absent");
    return { entries, more };
  }

  /** Iterates [first, end) ascending, or descending from just below end; `visit` returns false to stop. */
  private scan(query: RangeQuery, visit: (key: Buffer, record: Buffer) => boolean, withValues = false): void {
    const first = query.first !== undefined && query.first.length > 0 ? query.first : undefined;
    const end = query.end;
    if (end !== undefined && end.length === 0) return;
    if (!query.reverse) {
      const options = { ...(first === undefined ? {} : { start: first }), ...(end === undefined ? {} : { end }) };
      if (withValues) {
        for (const { key, value } of this.values.getRange(options)) {
          if (end !== undefined && Buffer.compare(key, end) >= 0) break;
          if (!visit(key, value)) break;
        }
      } else {
        for (const key of this.values.getKeys(options)) {
          if (end !== undefined && Buffer.compare(key, end) >= 0) break;
          if (!visit(key, emptyRecord)) break;
        }
      }
      return;
    }
    const options = { reverse: true, ...(end === undefined ? {} : { start: end }) };
    const iterable = withValues ? this.values.getRange(options) : this.values.getKeys(options);
    for (const item of iterable) {
      const key = withValues ? (item as { key: Buffer }).key : (item as Buffer);
      const record = withValues ? (item as { value: Buffer }).value : emptyRecord;
      if (end !== undefined && Buffer.compare(key, end) >= 0) continue;
      if (first !== undefined && Buffer.compare(key, first) < 0) break;
      if (!visit(key, record)) break;
    }
  }

  /** Reads (and verifies) one value, whole or the given ranges; retries if its file was replaced meanwhile. */
  private async readValue(key: Buffer, ranges: ByteRange[] | undefined): Promise<ValueResult> {
    for (let attempt = 0; ; attempt++) {
      const recordBytes = this.values.getBinary(key);
      if (recordBytes === undefined) return { status: "absent" };
      const record = decodeRecord(recordBytes);
      if (record === undefined) return this.corrupt(key, "record fails its checksum");
      if (ranges !== undefined) {
        for (const range of ranges) {
          if (range.offsetBytes + range.lengthBytes > record.valueBytes) return { status: "outOfRange" };
        }
      }
      if (record.inline !== undefined) {
        if (crc32c(record.inline) !== record.valueCrc) return this.corrupt(key, "inline value fails its checksum");
        if (ranges === undefined) return { status: "ok", value: Buffer.from(record.inline), crc32c: record.valueCrc };
        const data = Buffer.concat(ranges.map((r) => record.inline!.subarray(r.offsetBytes, r.offsetBytes + r.lengthBytes)));
        return { status: "ok", value: data, crc32c: crc32c(data) };
      }
      const file = record.file!;
      try {
        return await this.readFileValue(key, record, file, ranges);
      } catch (error) {
        if (systemErrorCode(error) === "ENOENT") {
          const now = this.values.getBinary(key);
          if (now !== undefined && !now.equals(recordBytes)) {
            if (attempt < asdLimits.readRetriesMax) continue;
          } else if (now === undefined) {
            return { status: "absent" };
          }
          return this.corrupt(key, `value file ${this.filePath(file.fileId)} is missing`);
        }
        this.logger.error({ err: error, key: key.toString("hex") }, "asd: cannot read a value file");
        return { status: "ioError" };
      }
    }
  }

  private async readFileValue(key: Buffer, record: DecodedRecord, file: FileRecord, ranges: ByteRange[] | undefined): Promise<ValueResult> {
    const handle = await open(this.filePath(file.fileId), "r");
    try {
      const { size } = await handle.stat();
      if (size !== record.valueBytes) return this.corrupt(key, `value file has ${size} bytes, the record says ${record.valueBytes}`);
      const spans = ranges === undefined ? [{ offsetBytes: 0, lengthBytes: record.valueBytes }] : ranges;
      const parts: Buffer[] = [];
      for (const span of spans) {
        if (span.lengthBytes === 0) continue;
        const firstBlock = Math.floor(span.offsetBytes / file.blockBytes);
        const endBlock = Math.ceil((span.offsetBytes + span.lengthBytes) / file.blockBytes);
        const startBytes = firstBlock * file.blockBytes;
        const endBytes = Math.min(endBlock * file.blockBytes, record.valueBytes);
        const buffer = Buffer.allocUnsafe(endBytes - startBytes);
        let doneBytes = 0;
        while (doneBytes < buffer.length) {
          const { bytesRead } = await handle.read(buffer, doneBytes, buffer.length - doneBytes, startBytes + doneBytes);
          if (bytesRead === 0) return this.corrupt(key, "value file is shorter than its record");
          doneBytes += bytesRead;
        }
        for (let block = firstBlock; block < endBlock; block++) {
          const from = (block - firstBlock) * file.blockBytes;
          const to = Math.min(from + file.blockBytes, buffer.length);
          if (crc32c(buffer.subarray(from, to)) !== file.blockCrcs[block]) {
            return this.corrupt(key, `block ${block} of value file ${file.fileId.toString(16)} fails its checksum`);
          }
        }
        parts.push(buffer.subarray(span.offsetBytes - startBytes, span.offsetBytes - startBytes + span.lengthBytes));
      }
      if (ranges === undefined) {
        const value = parts[0] ?? Buffer.alloc(0);
        return { status: "ok", value, crc32c: record.valueCrc };
      }
      const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      return { status: "ok", value: data, crc32c: crc32c(data) };
    } finally {
      await handle.close();
    }
  }

  private corrupt(key: Buffer, why: string): ValueResult {
    this.counters.checksumErrors++;
    this.logger.error({ dir: this.dir, key: key.toString("hex"), why }, "asd: value fails verification; reporting it corrupt");
    return { status: "corrupt" };
  }

  // ---- Disk usage ----------------------------------------------------------------------------------

  async diskUsage(): Promise<StoreDiskUsage> {
    this.checkUsable();
    const space = await this.freshSpace(true);
    const usedBytes = Math.max(0, space.totalBytes - space.freeBytes);
    return {
      totalBytes: space.totalBytes,
      usedBytes,
      freeBytes: space.freeBytes,
      valueCount: this.valueCountTotal,
      valueBytes: this.valueBytesTotal,
      fullThresholdPpm: Math.round(this.fullThreshold * 1e6),
      refusingWrites: usedBytes >= this.fullThreshold * space.totalBytes,
    };
  }

  private async freshSpace(force: boolean): Promise<FilesystemSpace> {
    const now = Date.now();
    if (force || this.space === undefined || now - this.space.at >= this.statfsCacheMs) {
      const space = await this.statfsSource(this.dir);
      this.space = { at: now, space, bytesWrittenSince: 0 };
    }
    return this.space.space;
  }

  /** Throws NO_SPACE if writing `setBytes` more would take the filesystem past the threshold. */
  private async checkSpace(setBytes: number): Promise<void> {
    const space = await this.freshSpace(false);
    const projectedUsedBytes = space.totalBytes - space.freeBytes + (this.space?.bytesWrittenSince ?? 0) + setBytes;
    const limitBytes = this.fullThreshold * space.totalBytes;
    if (projectedUsedBytes > limitBytes || setBytes > space.freeBytes) {
      this.counters.fullRefusals++;
      throw new OvsError(
        "NO_SPACE",
        `The ASD in ${this.dir} is full: ${space.totalBytes - space.freeBytes} of ${space.totalBytes} bytes used, and writes stop at ` +
          `${Math.round(this.fullThreshold * 100)} %; reads and deletes still work.`,
        { dir: this.dir, totalBytes: space.totalBytes, freeBytes: space.freeBytes, setBytes },
      );
    }
  }

  // ---- Writes --------------------------------------------------------------------------------------

  /**
   * Applies sets and deletes atomically if every assert holds at commit time; resolves once durable.
   * ASSERT_FAILED (details.assertIndex) changes nothing; NO_SPACE when full (an apply without sets is
   * always accepted); CHECKSUM_MISMATCH if a set's CRC32C does not match its value.
   */
  async apply(asserts: AsdAssert[], updates: AsdUpdate[]): Promise<void> {
    this.checkUsable();
    let setBytes = 0;
    for (const [index, update] of updates.entries()) {
      if (update.kind !== "set") continue;
      assert(update.value.length <= asdLimits.valueBytesMax, "decoded values are within valueBytesMax");
      if (crc32c(update.value) !== update.crc32c >>> 0) {
        throw new OvsError("CHECKSUM_MISMATCH", `Update ${index} carries CRC32C ${update.crc32c >>> 0} but its value has another; nothing was changed.`, { updateIndex: index });
      }
      setBytes += update.value.length;
    }
    if (setBytes > 0) await this.checkSpace(setBytes);
    if (this.space !== undefined) this.space.bytesWrittenSince += setBytes;
    while (this.queue.length >= asdLimits.queuedAppliesMax) {
      await new Promise<void>((resolve) => this.queuedWaiters.push(resolve));
      this.checkUsable();
    }
    await new Promise<void>((resolve, reject) => {
      this.queue.push({ asserts, updates, setBytes, files: new Map(), resolve, reject });
      this.kickCommitter();
    });
  }

  private kickCommitter(): void {
    if (this.committing !== undefined) return;
    this.committing = this.runCommitter().finally(() => {
      this.committing = undefined;
      if (this.queue.length > 0 && this.failure === undefined) this.kickCommitter();
    });
  }

  private async runCommitter(): Promise<void> {
    while (this.queue.length > 0) {
      const batch: PendingApply[] = [];
      let batchBytes = 0;
      while (this.queue.length > 0 && batch.length < asdLimits.batchAppliesMax) {
        const next = this.queue[0]!;
        if (batch.length > 0 && batchBytes + next.setBytes > asdLimits.batchBytesMax) break;
        batch.push(this.queue.shift()!);
        batchBytes += next.setBytes;
      }
      for (const waiter of this.queuedWaiters.splice(0, batch.length)) waiter();
      if (this.failure !== undefined) {
        for (const pending of batch) pending.reject(this.failure);
        continue;
      }
      await this.commitBatch(batch);
    }
  }

  private async commitBatch(batch: PendingApply[]): Promise<void> {
    // 1. Value files: written, fsynced, their directories fsynced, before the index names them.
    const directories = new Set<string>();
    const writes: Array<() => Promise<void>> = [];
    const syncs: Array<() => Promise<void>> = [];
    for (const pending of batch) {
      for (const [index, update] of pending.updates.entries()) {
        if (update.kind !== "set" || update.value.length <= asdLimits.inlineValueBytesMax) continue;
        const fileId = this.nextFileId++;
        const file: FileRecord = { fileId, blockBytes: asdLimits.fileBlockBytes, blockCrcs: blockChecksums(update.value, asdLimits.fileBlockBytes) };
        pending.files.set(index, file);
        directories.add(path.dirname(this.filePath(fileId)));
        writes.push(async () => {
          try {
            await writeFile(this.filePath(fileId), update.value);
          } catch (error) {
            pending.error ??= ioError(error, `write a value file of ${update.value.length} bytes`);
          }
        });
        syncs.push(async () => {
          if (pending.error !== undefined) return;
          try {
            await fsyncFile(this.filePath(fileId));
          } catch (error) {
            pending.error ??= ioError(error, `fsync a value file of ${update.value.length} bytes`);
          }
        });
      }
    }
    // Written first, then one round of fsyncs: the files' and their directories' side by side (the file
    // system commits them together), instead of the directories' only after the files' (a second round
    // of journal commits on every batch). Both are durable before the index names the files.
    await runBounded(writes, 16);
    const directoriesSynced = Promise.all([...directories].map((directory) => fsyncDirectory(directory))).then(
      () => undefined,
      (error: unknown) => {
        const failure = ioError(error, "fsync the value directories");
        for (const pending of batch) pending.error ??= failure;
      },
    );
    await Promise.all([runBounded(syncs, 16), directoriesSynced]);

    // 2. One transaction: asserts in arrival order, then the updates; fsynced on commit.
    const garbageIds: number[] = [];
    let valueCountDelta = 0;
    let valueBytesDelta = 0;
    const unlinked = this.unlinkedGarbage;
    this.unlinkedGarbage = [];
    try {
      await this.root.transaction(() => {
        for (const pending of batch) {
          if (pending.error === undefined) {
            const failedIndex = this.failedAssertIndex(pending.asserts);
            if (failedIndex !== undefined) {
              const failed = pending.asserts[failedIndex]!;
              pending.error = new OvsError(
                "ASSERT_FAILED",
                `Assert ${failedIndex} failed: the key ${shortKey(failed.key)} ${failed.kind === "absent" ? "exists" : "does not have the asserted value"}; nothing was changed.`,
                { assertIndex: failedIndex },
              );
            }
          }
          if (pending.error !== undefined) {
            for (const file of pending.files.values()) garbageIds.push(file.fileId);
            continue;
          }
          for (const [index, update] of pending.updates.entries()) {
            const old = this.values.getBinary(update.key);
            if (old !== undefined) {
              const oldRecord = decodeRecord(old);
              if (oldRecord?.file !== undefined) garbageIds.push(oldRecord.file.fileId);
              valueCountDelta--;
              valueBytesDelta -= old.length >= 8 ? old.readUInt32LE(4) : 0;
            }
            if (update.kind === "set") {
              const file = pending.files.get(index);
              this.values.putSync(update.key, file === undefined ? encodeInlineRecord(update.value, update.crc32c >>> 0) : encodeFileRecord(update.value.length, update.crc32c >>> 0, file));
              valueCountDelta++;
              valueBytesDelta += update.value.length;
            } else if (old !== undefined) {
              this.values.removeSync(update.key);
            }
          }
        }
        for (const fileId of garbageIds) this.garbage.putSync(u64KeyBytes(fileId), emptyRecord);
        for (const fileId of unlinked) this.garbage.removeSync(u64KeyBytes(fileId));
        this.meta.putSync(metaKeys.nextFileId, u64Bytes(this.nextFileId));
        this.meta.putSync(metaKeys.valueCount, u64Bytes(this.valueCountTotal + valueCountDelta));
        this.meta.putSync(metaKeys.valueBytes, u64Bytes(this.valueBytesTotal + valueBytesDelta));
      });
    } catch (error) {
      // The commit failed: what is durable is unknown, so the store stops (it recovers on reopen).
      this.failure = ioError(error, "commit a batch of writes");
      this.logger.error({ err: error, dir: this.dir }, "asd: commit failed; the store refuses further requests until restarted");
      for (const pending of batch) pending.reject(this.failure);
      return;
    }
    this.valueCountTotal += valueCountDelta;
    this.valueBytesTotal += valueBytesDelta;
    assert(this.valueCountTotal >= 0 && this.valueBytesTotal >= 0, "value totals never go negative");
    this.counters.groupCommits++;
    for (const pending of batch) {
      if (pending.error === undefined) {
        this.counters.groupCommittedApplies++;
        for (const [index, file] of pending.files) {
          const update = pending.updates[index]!;
          if (update.kind === "set") void this.dropBehind.add(this.filePath(file.fileId), update.value.length);
        }
        pending.resolve();
      } else {
        if (pending.error.code === "ASSERT_FAILED") this.counters.assertFailures++;
        pending.reject(pending.error);
      }
    }
    // 3. Orphaned files go after the commit, off the commit path (not fsynced: a crash leaves them listed
    //    in garbage); their garbage records are dropped by a later batch.
    for (const fileId of garbageIds) {
      const unlinking = unlinkIfPresent(this.filePath(fileId)).then(
        () => void this.unlinkedGarbage.push(fileId),
        (error: unknown) => this.logger.warn({ err: error, fileId }, "asd: cannot remove an orphaned value file; it is retried on restart"),
      );
      this.unlinking.add(unlinking);
      void unlinking.finally(() => this.unlinking.delete(unlinking));
    }
  }

  /** Runs inside the write transaction: the index of the first assert that does not hold, or undefined. */
  private failedAssertIndex(asserts: AsdAssert[]): number | undefined {
    for (const [index, check] of asserts.entries()) {
      const current = this.values.getBinary(check.key);
      if (check.kind === "absent") {
        if (current !== undefined) return index;
        continue;
      }
      if (current === undefined) return index;
      const record = decodeRecord(current);
      if (record === undefined || record.valueBytes !== check.value.length || record.valueCrc !== crc32c(check.value)) return index;
      if (record.inline !== undefined) {
        if (!record.inline.equals(check.value)) return index;
        continue;
      }
      // A large value: compare its bytes (rare; asserts are for small values such as owner tags).
      if (!this.fileEqualsSync(record.file!, check.value)) return index;
    }
    return undefined;
  }

  private fileEqualsSync(file: FileRecord, expected: Buffer): boolean {
    try {
      const fd = openSync(this.filePath(file.fileId), "r");
      try {
        const buffer = Buffer.allocUnsafe(expected.length);
        let doneBytes = 0;
        while (doneBytes < buffer.length) {
          const bytesRead = readSync(fd, buffer, doneBytes, buffer.length - doneBytes, doneBytes);
          if (bytesRead === 0) return false;
          doneBytes += bytesRead;
        }
        return buffer.equals(expected);
      } finally {
        closeSync(fd);
      }
    } catch {
      return false;
    }
  }

  // ---- Life cycle ----------------------------------------------------------------------------------

  filePath(fileId: number): string {
    return path.join(this.dir, "blobs", hexByte(fileId % 256), fileId.toString(16).padStart(16, "0"));
  }

  /** Test hook: the raw record of a key in the index (to inspect or corrupt it from a test). */
  recordOf(key: Buffer): Buffer | undefined {
    return this.values.getBinary(key);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.committing !== undefined) await this.committing;
    await Promise.all([...this.unlinking]);
    try {
      await this.root.close();
    } finally {
      await new Promise<void>((resolve) => this.lockServer.close(() => resolve()));
    }
  }

  private checkUsable(): void {
    if (this.closed) throw new OvsError("CLOSED", `The ASD store in ${this.dir} is closed.`, { dir: this.dir });
    if (this.failure !== undefined) throw this.failure;
  }
}

// ---- Records -------------------------------------------------------------------------------------

const emptyRecord = Buffer.alloc(0);

export function encodeInlineRecord(value: Buffer, valueCrc: number): Buffer {
  const record = Buffer.allocUnsafe(RECORD_HEADER_BYTES + value.length);
  record.writeUInt8(RECORD_INLINE, 0);
  record.fill(0, 1, 4);
  record.writeUInt32LE(value.length, 4);
  record.writeUInt32LE(valueCrc >>> 0, 8);
  record.writeUInt32LE(crc32c(record.subarray(0, 12)), 12);
  value.copy(record, RECORD_HEADER_BYTES);
  return record;
}

function encodeFileRecord(valueBytes: number, valueCrc: number, file: FileRecord): Buffer {
  const blockCount = file.blockCrcs.length;
  const record = Buffer.allocUnsafe(RECORD_HEADER_BYTES + FILE_RECORD_FIXED_BYTES + 4 * blockCount);
  record.writeUInt8(RECORD_FILE, 0);
  record.fill(0, 1, 4);
  record.writeUInt32LE(valueBytes, 4);
  record.writeUInt32LE(valueCrc >>> 0, 8);
  let offset = RECORD_HEADER_BYTES;
  offset = record.writeUInt32LE(file.fileId % 2 ** 32, offset);
  offset = record.writeUInt32LE(Math.floor(file.fileId / 2 ** 32), offset);
  offset = record.writeUInt32LE(file.blockBytes, offset);
  offset = record.writeUInt32LE(blockCount, offset);
  for (const blockCrc of file.blockCrcs) offset = record.writeUInt32LE(blockCrc, offset);
  record.writeUInt32LE(crc32c(record.subarray(RECORD_HEADER_BYTES), crc32c(record.subarray(0, 12))), 12);
  return record;
}

/** Decodes and checks a record; undefined if it is malformed or fails its own CRC. */
function decodeRecord(record: Buffer): DecodedRecord | undefined {
  if (record.length < RECORD_HEADER_BYTES) return undefined;
  const kind = record[0]!;
  const valueBytes = record.readUInt32LE(4);
  const valueCrc = record.readUInt32LE(8);
  const recordCrc = record.readUInt32LE(12);
  if (kind === RECORD_INLINE) {
    if (crc32c(record.subarray(0, 12)) !== recordCrc || record.length !== RECORD_HEADER_BYTES + valueBytes) return undefined;
    return { kind, valueBytes, valueCrc, inline: record.subarray(RECORD_HEADER_BYTES) };
  }
  if (kind === RECORD_FILE) {
    if (record.length < RECORD_HEADER_BYTES + FILE_RECORD_FIXED_BYTES) return undefined;
    if (crc32c(record.subarray(RECORD_HEADER_BYTES), crc32c(record.subarray(0, 12))) !== recordCrc) return undefined;
    const fileId = record.readUInt32LE(16) + record.readUInt32LE(20) * 2 ** 32;
    const blockBytes = record.readUInt32LE(24);
    const blockCount = record.readUInt32LE(28);
    if (blockBytes === 0 || record.length !== RECORD_HEADER_BYTES + FILE_RECORD_FIXED_BYTES + 4 * blockCount) return undefined;
    if (blockCount !== Math.ceil(valueBytes / blockBytes)) return undefined;
    const blockCrcs = new Uint32Array(blockCount);
    for (let index = 0; index < blockCount; index++) blockCrcs[index] = record.readUInt32LE(32 + 4 * index);
    return { kind, valueBytes, valueCrc, file: { fileId, blockBytes, blockCrcs } };
  }
  return undefined;
}

function blockChecksums(value: Buffer, blockBytes: number): Uint32Array {
  const blockCount = Math.ceil(value.length / blockBytes);
  const crcs = new Uint32Array(blockCount);
  for (let index = 0; index < blockCount; index++) crcs[index] = crc32c(value.subarray(index * blockBytes, (index + 1) * blockBytes));
  return crcs;
}

// ---- Helpers -------------------------------------------------------------------------------------

function hexByte(value: number): string {
  return value.toString(16).padStart(2, "0");
}

function u64Bytes(value: number): Buffer {
  assert(Number.isSafeInteger(value) && value >= 0, "u64 meta values are safe integers");
  const bytes = Buffer.allocUnsafe(8);
  bytes.writeUInt32LE(value % 2 ** 32, 0);
  bytes.writeUInt32LE(Math.floor(value / 2 ** 32), 4);
  return bytes;
}

/** Big-endian, so garbage ids sort numerically. */
function u64KeyBytes(value: number): Buffer {
  const bytes = Buffer.allocUnsafe(8);
  bytes.writeUInt32BE(Math.floor(value / 2 ** 32), 0);
  bytes.writeUInt32BE(value % 2 ** 32, 4);
  return bytes;
}

/** A little-endian u64 meta value. */
function readU64(bytes: Buffer | undefined): number {
  assert(bytes !== undefined && bytes.length === 8, "u64 meta values are 8 bytes");
  return bytes.readUInt32LE(0) + bytes.readUInt32LE(4) * 2 ** 32;
}

function readU64KeyBytes(bytes: Buffer): number {
  assert(bytes.length === 8, "garbage keys are 8 bytes");
  return bytes.readUInt32BE(0) * 2 ** 32 + bytes.readUInt32BE(4);
}

function shortKey(key: Buffer): string {
  const text = key.toString("hex");
  return text.length > 64 ? `0x${text.slice(0, 64)}…` : `0x${text}`;
}

function claimedByOtherError(current: string): OvsError {
  return new OvsError("CONFLICT", `This ASD is claimed by another backend (${current}); it serves only that backend.`, { claimedBy: current, reason: "claimedByOther" });
}

/** fsync of a file written (and closed) earlier: fsync flushes the file, whichever descriptor wrote it. */
async function fsyncFile(filePath: string): Promise<void> {
  const handle = await open(filePath, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function unlinkIfPresent(filePath: string): Promise<boolean> {
  try {
    await unlink(filePath);
    return true;
  } catch (error) {
    if (systemErrorCode(error) === "ENOENT") return false;
    throw error;
  }
}

async function runBounded(tasks: Array<() => Promise<void>>, concurrency: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) await tasks[next++]!();
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, tasks.length) }, worker));
}

function ioError(error: unknown, doing: string): OvsError {
  if (error instanceof OvsError) return error;
  const text = error instanceof Error ? error.message : String(error);
  const noSpace = systemErrorCode(error) === "ENOSPC" || /ENOSPC|No space left|MDB_MAP_FULL/.test(text);
  return new OvsError(noSpace ? "NO_SPACE" : "IO_ERROR", `The ASD could not ${doing}: ${text}.`, undefined, { cause: error });
}

/** Takes the one-process lock of `dir`: an abstract unix socket named after its device and inode. */
async function acquireLock(dir: string): Promise<net.Server> {
  const identity = await stat(dir);
  const socketName = `\0openvstorage-asd:${identity.dev}:${identity.ino}`;
  const server = net.createServer((socket) => socket.destroy());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ path: socketName }, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (error) {
    if (systemErrorCode(error) === "EADDRINUSE") {
      const holder = await readFile(path.join(dir, lockFileName), "utf8").catch(() => "");
      const pid = /^pid (\d+)/m.exec(holder)?.[1];
      throw new OvsError("IN_USE", `The ASD directory ${dir} is already in use${pid === undefined ? "" : ` (by process ${pid})`}; one ASD per directory.`, { dir });
    }
    throw ioError(error, `lock ${dir}`);
  }
  server.unref();
  return server;
}
