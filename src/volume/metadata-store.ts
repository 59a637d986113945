// The volume's metadata: the cluster map (cluster address → SCO location and data CRC), the list of
// TLogs and the cork, persisted in an LMDB environment in the volume's local directory
// (docs/formats/volume-metadata.md).
//
// Invariants:
// - The persisted map never runs ahead of the fsynced TLogs: the volume commits a batch of map updates
//   only after the TLog entries that describe them are durable, and in the same LMDB transaction moves
//   the cork (TLog sequence number, entry count) to exactly the entries the batch covers. A restart
//   replays the TLogs from the cork on; replaying an entry twice is harmless (it is idempotent).
// - Memory is bounded by configuration, not by volume size: the map lives in LMDB (memory-mapped, paged
//   by the OS); only entries not yet committed are held in memory by the volume (bounded by the sync
//   interval and the SCO size).

import { open, type Database, type RootDatabase } from "lmdb";
import { assert } from "../base/index.js";

export interface ClusterLocation {
  cloneId: number;
  scoNumber: number;
  scoVersion: number;
  offsetClusters: number;
  dataCrc: number;
}

/** A map value meaning "reads as zeros" (trimmed or zeroed), pending its commit as a delete. */
export const zeroLocation: ClusterLocation = Object.freeze({ cloneId: 0, scoNumber: 0, scoVersion: 0, offsetClusters: 0, dataCrc: 0 });

export interface TlogRecord {
  seq: number; // 1, 2, 3 ... in write order
  id: string; // object name: tlog_<uuid>
  closed: boolean;
  stored: boolean; // on the backend
}

/** A snapshot as recorded in the local metadata (docs/formats/snapshots.md). */
export interface SnapshotRecord {
  number: number; // 1, 2, 3 ... in creation order; never reused while the volume lives
  name: string;
  createdAt: string;
  /** Every TLog with seq <= tlogSeq belongs to the snapshot; the TLog after it starts the next one. */
  tlogSeq: number;
  sticky: boolean;
  metadata?: string;
  /** True once the snapshots object on the backend lists it (usable for rollback and clones). */
  stored: boolean;
}

export interface Cork {
  /** Every entry of TLogs before `seq`, and the first `entryCount` entries of TLog `seq`, are in the map. */
  seq: number;
  entryCount: number;
  /** SCO numbers below it may exist (locally or on the backend): never reuse one. */
  nextScoNumber?: number;
}

/** Map values are 16 bytes; 12-byte values (before snapshots existed) read as TLog seq 0. */
const mapValueSizeBytes = 16;
const legacyMapValueSizeBytes = 12;

/**
 * The map is stored in pages of 64 clusters (database `pages`): one LMDB put per page a commit touches
 * instead of one per cluster. A sequential writer commits 262,144 clusters per GiB; per-cluster puts
 * were the largest single cost of the node's main thread after the data copies. A page value is a
 * 64-bit bitmap of the slots present, then their 16-byte values in slot order (a sparse page stays
 * small). Format 1 (one key per cluster, database `map`) is converted at open.
 */
const pageShift = 6;
const clustersPerPage = 1 << pageShift;
const pageBitmapBytes = 8;
/** A page in memory during a commit: the bitmap, then all 64 slots at fixed places. */
const expandedPageBytes = pageBitmapBytes + clustersPerPage * mapValueSizeBytes;
const mapFormatKey = "mapFormat";
const mapFormatPaged = "2";

/** One update of a commit: the location (zeroLocation = reads as zeros) and the TLog seq that wrote it. */
export type MapUpdate = [clusterAddress: number, location: ClusterLocation, tlogSeq: number];

/**
 * A cluster moved by the scrubber: wherever the map or the history holds `address` at (fromScoNumber,
 * fromOffsetClusters), it now lives at (toScoNumber, toOffsetClusters); CRC, clone id and TLog seq stay.
 */
export interface Relocation {
  address: number;
  fromScoNumber: number;
  fromOffsetClusters: number;
  toScoNumber: number;
  toOffsetClusters: number;
}

export class MetadataStore {
  private readonly root: RootDatabase;
  /** Format 1 of the map (one key per cluster): only read, to convert it at open. */
  private readonly legacyMap: Database<Buffer, Buffer>;
  /** The map: key = page number (8 bytes BE), value = bitmap + present slots (see clustersPerPage). */
  private readonly pages: Database<Buffer, Buffer>;
  private readonly meta: Database<string, string>;
  /**
   * Older versions of clusters that snapshots still see: key = address (8 bytes BE) + last TLog seq in
   * which the value was current (4 bytes BE); value = the map value it had. Written when a commit
   * replaces a value that some snapshot lies between its writing and its replacement.
   */
  private readonly history: Database<Buffer, Buffer>;
  private readonly keyBuffer = Buffer.alloc(8);
  private readonly historyStart = Buffer.alloc(12);
  private readonly historyEnd = Buffer.alloc(12);

  private constructor(root: RootDatabase) {
    this.root = root;
    this.legacyMap = root.openDB<Buffer, Buffer>({ name: "map", keyEncoding: "binary", encoding: "binary" });
    this.pages = root.openDB<Buffer, Buffer>({ name: "pages", keyEncoding: "binary", encoding: "binary" });
    this.meta = root.openDB<string, string>({ name: "meta", encoding: "string" });
    this.history = root.openDB<Buffer, Buffer>({ name: "history", keyEncoding: "binary", encoding: "binary" });
  }

  static open(path: string): MetadataStore {
    const store = new MetadataStore(open({ path, maxDbs: 5, compression: false }));
    store.convertLegacyMap();
    return store;
  }

  /**
   * Converts a format-1 map (one key per cluster) into pages, in one synchronous transaction: a crash
   * leaves the old map or the new one. Values of 12 bytes (before snapshots) become 16 (TLog seq 0).
   */
  private convertLegacyMap(): void {
    if (this.meta.get(mapFormatKey) === mapFormatPaged) return;
    this.root.transactionSync(() => {
      const key = Buffer.allocUnsafe(8);
      let pageIndex = -1;
      let page = Buffer.alloc(expandedPageBytes);
      const flush = (): void => {
        if (pageIndex < 0) return;
        writeKey(key, pageIndex);
        this.pages.put(key, packPage(page));
      };
      for (const { key: oldKey, value } of this.legacyMap.getRange({})) {
        const address = readKey(oldKey);
        const index = Math.floor(address / clustersPerPage);
        if (index !== pageIndex) {
          flush();
          pageIndex = index;
          page = Buffer.alloc(expandedPageBytes);
        }
        setSlot(page, address % clustersPerPage, normalizeValue(value));
      }
      flush();
      this.legacyMap.clearSync(); // inside this transaction (lmdb-js nests it)
      this.meta.put(mapFormatKey, mapFormatPaged);
    });
  }

  /**
   * The committed 16-byte map value of a cluster as a view into
   * LMDB's shared read buffer (valid until the next read), or undefined if unwritten.
   */
  private slotValue(clusterAddress: number): Buffer | undefined {
    writeKey(this.keyBuffer, Math.floor(clusterAddress / clustersPerPage));
    const packed = this.pages.getBinaryFast(this.keyBuffer);
    if (packed === undefined) return undefined;
    const offset = packedSlotOffset(packed, clusterAddress % clustersPerPage);
    return offset < 0 ? undefined : packed.subarray(offset, offset + mapValueSizeBytes);
  }

  /** The committed location of a cluster, or undefined if unwritten. Synchronous (LMDB read). */
  lookup(clusterAddress: number): ClusterLocation | undefined {
    const value = this.slotValue(clusterAddress);
    if (value === undefined) return undefined;
    return decodeLocation(value);
  }

  /**
   * The location a cluster had right after TLog `tlogSeq` (a snapshot's last TLog), or undefined if it
   * was not mapped then. Correct for any seq that was a snapshot when later values were committed.
   */
  lookupAsOf(clusterAddress: number, tlogSeq: number): ClusterLocation | undefined {
    writeKey(this.historyStart, clusterAddress);
    this.historyStart.writeUInt32BE(tlogSeq, 8);
    writeKey(this.historyEnd, clusterAddress);
    this.historyEnd.writeUInt32BE(0xffff_ffff, 8);
    for (const { value } of this.history.getRange({ start: this.historyStart, end: this.historyEnd, limit: 1 })) {
      // The first value that stopped being current at or after tlogSeq: current at tlogSeq if written by then.
      return valueSeq(value) <= tlogSeq ? decodeLocation(value) : undefined;
    }
    const value = this.slotValue(clusterAddress);
    if (value === undefined || valueSeq(value) > tlogSeq) return undefined;
    return decodeLocation(value);
  }

  /** Addresses in [first, end) mapped now or in any kept older version (a superset of "ever mapped"). */
  *everMappedInRange(first: number, end: number): Generator<number> {
    yield* this.writtenClustersInRange(first, end);
    const start = Buffer.alloc(12);
    const stop = Buffer.alloc(12);
    writeKey(start, first);
    writeKey(stop, end);
    for (const key of this.history.getKeys({ start, end: stop })) yield readKey(key);
  }

  /** Addresses of committed (written) clusters in [first, end), in order. */
  *writtenClustersInRange(first: number, end: number): Generator<number> {
    if (end <= first) return;
    const start = Buffer.allocUnsafe(8);
    const stop = Buffer.allocUnsafe(8);
    writeKey(start, Math.floor(first / clustersPerPage));
    writeKey(stop, Math.floor((end - 1) / clustersPerPage) + 1);
    for (const { key, value } of this.pages.getRange({ start, end: stop })) {
      const base = readKey(key) * clustersPerPage;
      const low = value.readUInt32LE(0);
      const high = value.readUInt32LE(4);
      for (let slot = 0; slot < clustersPerPage; slot++) {
        const present = slot < 32 ? (low >>> slot) & 1 : (high >>> (slot - 32)) & 1;
        const address = base + slot;
        if (present === 1 && address >= first && address < end) yield address;
      }
    }
  }

  /**
   * True if the cluster at `address` stored at (scoNumber, offsetClusters) can still be read: it is the
   * current map value, or a history value that one of `snapshotSeqs` (ascending) sees, or the map's value
   * was written by a TLog after `storedThroughSeq` (not on the backend yet: until it is, a restart from
   * the backend reads the address from the stored TLogs, so their entries for it must stay). Locations
   * are unique within a volume (SCO numbers are never reused), so the location identifies the TLog
   * entry. Used by the scrubber to tell live clusters from garbage.
   */
  isLocationLive(address: number, scoNumber: number, offsetClusters: number, snapshotSeqs: readonly number[], storedThroughSeq: number): boolean {
    const value = this.slotValue(address);
    if (value !== undefined && value.readUInt32LE(0) === scoNumber && value.readUInt16LE(4) === offsetClusters) return true;
    if (value !== undefined && valueSeq(value) > storedThroughSeq) return true;
    if (snapshotSeqs.length === 0) return false; // no snapshot sees any history value
    writeKey(this.historyStart, address);
    this.historyStart.writeUInt32BE(0, 8);
    writeKey(this.historyEnd, address);
    this.historyEnd.writeUInt32BE(0xffff_ffff, 8);
    for (const { key, value: old } of this.history.getRange({ start: this.historyStart, end: this.historyEnd })) {
      if (old.readUInt32LE(0) !== scoNumber || old.readUInt16LE(4) !== offsetClusters) continue;
      // Current from its TLog seq through the key's seq f: seen by a snapshot whose cut lies in between.
      return snapshotBetween(snapshotSeqs, valueSeq(old), key.readUInt32BE(8));
    }
    return false;
  }

  getConfig<T>(): T | undefined {
    const text = this.meta.get("config");
    return text === undefined ? undefined : (JSON.parse(text) as T);
  }

  /** SCO numbers below this may have been handed out (and uploaded): a restart starts at or above it. */
  getScoNumberReservedEnd(): number {
    const text = this.meta.get("scoNumberReservedEnd");
    return text === undefined ? 1 : Number(text);
  }

  getCork(): Cork {
    const text = this.meta.get("cork");
    return text === undefined ? { seq: 1, entryCount: 0 } : (JSON.parse(text) as Cork);
  }

  tlogRecords(fromSeq = 0): TlogRecord[] {
    const records: TlogRecord[] = [];
    for (const { value } of this.meta.getRange({ start: tlogKey(fromSeq), end: "tlog;" })) {
      records.push(JSON.parse(value) as TlogRecord);
    }
    return records;
  }

  snapshotRecords(): SnapshotRecord[] {
    const records: SnapshotRecord[] = [];
    for (const { value } of this.meta.getRange({ start: "snap:", end: "snap;" })) records.push(JSON.parse(value) as SnapshotRecord);
    return records;
  }

  getValue(key: string): string | undefined {
    return this.meta.get(`value:${key}`);
  }

  /** Number of clusters committed in the map (explicit zeros of a clone included). Reads every page. */
  committedClusterCount(): number {
    let count = 0;
    for (const { value } of this.pages.getRange({})) count += popcount32(value.readUInt32LE(0)) + popcount32(value.readUInt32LE(4));
    return count;
  }

  /**
   * Commits, in one transaction: map updates (zeroLocation = delete), TLog records, the cork and the
   * config. Resolves once committed; `flushed()` tells when it is on disk.
   */
  async commit(batch: {
    /**
     * In order; one address may appear several times (oldest first). zeroLocation removes the key, or
     * with keepZeros (clones: zeros must hide the parent) stores an explicit zero value.
     */
    updates?: Iterable<MapUpdate>;
    keepZeros?: boolean;
    /** Last TLog seqs of the snapshots, ascending: replaced values they see go to the history. */
    snapshotSeqs?: readonly number[];
    tlogs?: Iterable<TlogRecord>;
    cork?: Cork;
    config?: unknown;
    scoNumberReservedEnd?: number;
    snapshots?: Iterable<SnapshotRecord>;
    deleteSnapshots?: Iterable<number>;
    /** Small named values (owner tag, rollback intent); undefined removes one. */
    values?: Record<string, string | undefined>;
    /** The scrubber's moves: applied to the map value, or to the history value, holding the old location. */
    relocations?: Iterable<Relocation>;
  }): Promise<void> {
    // lmdb-js copies keys and values into its write buffer when put/remove is called, so one key and
    // one history key buffer serve the whole batch.
    const key = Buffer.allocUnsafe(8);
    const historyKey = Buffer.allocUnsafe(12);
    const snapshotSeqs = batch.snapshotSeqs ?? [];
    await this.root.transaction(() => {
      // The pages this transaction touches, expanded; written back once at the end.
      const touched = new Map<number, Buffer>();
      const pageFor = (address: number): Buffer => {
        const index = Math.floor(address / clustersPerPage);
        let page = touched.get(index);
        if (page === undefined) {
          writeKey(key, index);
          const packed = this.pages.getBinaryFast(key);
          page = packed === undefined ? Buffer.alloc(expandedPageBytes) : expandPage(packed);
          touched.set(index, page);
        }
        return page;
      };
      if (batch.updates) {
        for (const [address, location, tlogSeq] of batch.updates) {
          const page = pageFor(address);
          const slot = address % clustersPerPage;
          const slotOffset = pageBitmapBytes + slot * mapValueSizeBytes;
          if (snapshotSeqs.length > 0 && slotPresent(page, slot)) {
            const oldSeq = page.readUInt32LE(slotOffset + 12);
            if (snapshotBetween(snapshotSeqs, oldSeq, tlogSeq - 1)) {
              writeKey(historyKey, address);
              historyKey.writeUInt32BE(tlogSeq - 1, 8);
              this.history.put(historyKey, page.subarray(slotOffset, slotOffset + mapValueSizeBytes));
            }
          }
          if (location.scoNumber === 0 && !batch.keepZeros) {
            clearSlot(page, slot);
          } else {
            page.writeUInt32LE(location.scoNumber, slotOffset);
            page.writeUInt16LE(location.offsetClusters, slotOffset + 4);
            page.writeUInt8(location.cloneId, slotOffset + 6);
            page.writeUInt8(location.scoVersion, slotOffset + 7);
            page.writeUInt32LE(location.dataCrc, slotOffset + 8);
            page.writeUInt32LE(tlogSeq, slotOffset + 12);
            markSlot(page, slot);
          }
        }
      }
      for (const relocation of batch.relocations ?? []) this.relocate(relocation, pageFor);
      for (const [index, page] of touched) {
        writeKey(key, index);
        if (page.readUInt32LE(0) === 0 && page.readUInt32LE(4) === 0) this.pages.remove(key);
        else this.pages.put(key, packPage(page));
      }
      for (const record of batch.tlogs ?? []) this.meta.put(tlogKey(record.seq), JSON.stringify(record));
      if (batch.cork) this.meta.put("cork", JSON.stringify(batch.cork));
      if (batch.config !== undefined) this.meta.put("config", JSON.stringify(batch.config));
      if (batch.scoNumberReservedEnd !== undefined) this.meta.put("scoNumberReservedEnd", String(batch.scoNumberReservedEnd));
      for (const record of batch.snapshots ?? []) this.meta.put(snapshotKey(record.number), JSON.stringify(record));
      for (const number of batch.deleteSnapshots ?? []) this.meta.remove(snapshotKey(number));
      for (const [key, value] of Object.entries(batch.values ?? {})) {
        if (value === undefined) this.meta.remove(`value:${key}`);
        else this.meta.put(`value:${key}`, value);
      }
    });
  }

  /**
   * Inside a transaction: moves one cluster's location in the map (the expanded page from `pageFor`,
   * written back by the commit: no allocation per cluster), or else in the history.
   */
  private relocate(relocation: Relocation, pageFor: (address: number) => Buffer): void {
    const holds = (old: Buffer): boolean => old.readUInt32LE(0) === relocation.fromScoNumber && old.readUInt16LE(4) === relocation.fromOffsetClusters;
    const page = pageFor(relocation.address);
    const slot = relocation.address % clustersPerPage;
    if (slotPresent(page, slot)) {
      const slotOffset = pageBitmapBytes + slot * mapValueSizeBytes;
      const current = page.subarray(slotOffset, slotOffset + mapValueSizeBytes);
      if (holds(current)) {
        relocatedValue(current, relocation, current); // in place: every field is read before it is written
        return;
      }
    }
    const start = Buffer.alloc(12);
    const end = Buffer.alloc(12);
    writeKey(start, relocation.address);
    writeKey(end, relocation.address);
    end.writeUInt32BE(0xffff_ffff, 8);
    for (const { key: historyKey, value: old } of this.history.getRange({ start, end })) {
      if (holds(old)) {
        this.history.put(Buffer.from(historyKey), relocatedValue(old, relocation, Buffer.allocUnsafe(mapValueSizeBytes)));
        return;
      }
    }
    // Neither: overwritten (and seen by no snapshot) since the scrubber looked; nothing to move.
  }

  /** Resolves when every committed transaction is durable on disk. */
  async flushed(): Promise<void> {
    await this.root.flushed;
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}

// ---- pages ----

function slotPresent(page: Buffer, slot: number): boolean {
  return ((page.readUInt32LE(slot < 32 ? 0 : 4) >>> (slot & 31)) & 1) === 1;
}

function markSlot(page: Buffer, slot: number): void {
  const at = slot < 32 ? 0 : 4;
  page.writeUInt32LE((page.readUInt32LE(at) | (1 << (slot & 31))) >>> 0, at);
}

function clearSlot(page: Buffer, slot: number): void {
  const at = slot < 32 ? 0 : 4;
  page.writeUInt32LE((page.readUInt32LE(at) & ~(1 << (slot & 31))) >>> 0, at);
  page.fill(0, pageBitmapBytes + slot * mapValueSizeBytes, pageBitmapBytes + (slot + 1) * mapValueSizeBytes);
}

/** Sets a slot of an expanded page to a 16-byte value. */
function setSlot(page: Buffer, slot: number, value: Buffer): void {
  value.copy(page, pageBitmapBytes + slot * mapValueSizeBytes, 0, mapValueSizeBytes);
  markSlot(page, slot);
}

function popcount32(value: number): number {
  let v = value >>> 0;
  v -= (v >>> 1) & 0x55555555;
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}

/** Byte offset of a slot's value in a packed page, or -1 if the slot is absent. */
function packedSlotOffset(packed: Buffer, slot: number): number {
  assert(packed.length >= pageBitmapBytes, "corrupt map page");
  const low = packed.readUInt32LE(0);
  const high = packed.readUInt32LE(4);
  let rank: number;
  if (slot < 32) {
    if (((low >>> slot) & 1) === 0) return -1;
    rank = slot === 0 ? 0 : popcount32(low << (32 - slot));
  } else {
    const bit = slot - 32;
    if (((high >>> bit) & 1) === 0) return -1;
    rank = popcount32(low) + (bit === 0 ? 0 : popcount32(high << (32 - bit)));
  }
  const offset = pageBitmapBytes + rank * mapValueSizeBytes;
  assert(offset + mapValueSizeBytes <= packed.length, "corrupt map page");
  return offset;
}

/** A packed page (bitmap + present slots in order) → the expanded form (bitmap + 64 fixed slots). */
function expandPage(packed: Buffer): Buffer {
  const page = Buffer.alloc(expandedPageBytes);
  const low = packed.readUInt32LE(0);
  const high = packed.readUInt32LE(4);
  assert(packed.length === pageBitmapBytes + (popcount32(low) + popcount32(high)) * mapValueSizeBytes, "corrupt map page");
  page.writeUInt32LE(low, 0);
  page.writeUInt32LE(high, 4);
  let from = pageBitmapBytes;
  for (let slot = 0; slot < clustersPerPage; slot++) {
    const present = slot < 32 ? (low >>> slot) & 1 : (high >>> (slot - 32)) & 1;
    if (present === 0) continue;
    // Word by word: lmdb's getBinaryFast buffer is shared and refuses Buffer.copy past its value.
    const to = pageBitmapBytes + slot * mapValueSizeBytes;
    page.writeUInt32LE(packed.readUInt32LE(from), to);
    page.writeUInt32LE(packed.readUInt32LE(from + 4), to + 4);
    page.writeUInt32LE(packed.readUInt32LE(from + 8), to + 8);
    page.writeUInt32LE(packed.readUInt32LE(from + 12), to + 12);
    from += mapValueSizeBytes;
  }
  return page;
}

/** The expanded page → its packed value (a new Buffer). */
function packPage(page: Buffer): Buffer {
  const low = page.readUInt32LE(0);
  const high = page.readUInt32LE(4);
  const packed = Buffer.allocUnsafe(pageBitmapBytes + (popcount32(low) + popcount32(high)) * mapValueSizeBytes);
  page.copy(packed, 0, 0, pageBitmapBytes);
  let to = pageBitmapBytes;
  for (let slot = 0; slot < clustersPerPage; slot++) {
    const present = slot < 32 ? (low >>> slot) & 1 : (high >>> (slot - 32)) & 1;
    if (present === 0) continue;
    const from = pageBitmapBytes + slot * mapValueSizeBytes;
    page.copy(packed, to, from, from + mapValueSizeBytes);
    to += mapValueSizeBytes;
  }
  return packed;
}

function tlogKey(seq: number): string {
  return `tlog:${seq.toString(16).padStart(12, "0")}`;
}

function decodeLocation(value: Buffer): ClusterLocation {
  assert(value.length === mapValueSizeBytes || value.length === legacyMapValueSizeBytes, "corrupt map value");
  return {
    scoNumber: value.readUInt32LE(0),
    offsetClusters: value.readUInt16LE(4),
    cloneId: value.readUInt8(6),
    scoVersion: value.readUInt8(7),
    dataCrc: value.readUInt32LE(8),
  };
}

function valueSeq(value: Buffer): number {
  return value.length >= mapValueSizeBytes ? value.readUInt32LE(12) : 0;
}

/** `target` := the 16-byte form of map value `old` with the relocation's new location. */
function relocatedValue(old: Buffer, relocation: Relocation, target: Buffer): Buffer {
  target.writeUInt32LE(relocation.toScoNumber, 0);
  target.writeUInt16LE(relocation.toOffsetClusters, 4);
  target[6] = old[6]!; // clone id
  target[7] = old[7]!; // SCO version
  target.writeUInt32LE(old.readUInt32LE(8), 8); // data CRC
  target.writeUInt32LE(valueSeq(old), 12);
  return target;
}

/** A copy of a map value in the 16-byte form. */
function normalizeValue(value: Buffer): Buffer {
  // Field by field: lmdb's getBinaryFast buffer is shared and refuses Buffer.copy past its value.
  const copy = Buffer.alloc(mapValueSizeBytes);
  copy.writeUInt32LE(value.readUInt32LE(0), 0);
  copy.writeUInt32LE(value.readUInt32LE(4), 4);
  copy.writeUInt32LE(value.readUInt32LE(8), 8);
  copy.writeUInt32LE(valueSeq(value), 12);
  return copy;
}

/** True if some seq in the ascending `seqs` lies in [low, high]. */
function snapshotBetween(seqs: readonly number[], low: number, high: number): boolean {
  let lo = 0;
  let hi = seqs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (seqs[mid]! < low) lo = mid + 1;
    else hi = mid;
  }
  return lo < seqs.length && seqs[lo]! <= high;
}

function snapshotKey(number: number): string {
  return `snap:${number.toString(16).padStart(8, "0")}`;
}

function readKey(source: Buffer): number {
  return source.readUInt32BE(0) * 2 ** 32 + source.readUInt32BE(4);
}

function writeKey(target: Buffer, clusterAddress: number): void {
  // Big-endian, so that LMDB's byte order is address order.
  target.writeUInt32BE(Math.floor(clusterAddress / 2 ** 32), 0);
  target.writeUInt32BE(clusterAddress % 2 ** 32, 4);
}
