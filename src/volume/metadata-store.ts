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
import { assert, storeUint16, storeUint32 } from "../base/index.js";

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
 * The map is stored in pages of 32 clusters: one LMDB value of 32 map values (512 bytes) per 32
 * consecutive cluster addresses, as the original's metadata pages. A cluster's value is 16 zero bytes
 * when it is not mapped. Why: lmdb-js spends ~1.8 µs of the event loop per put (its JS write path), and
 * one put per cluster was ~20 % of the main thread under sequential writes; a 1 MiB write now costs 8
 * puts, not 256. A page holding a single mapped cluster costs 512 bytes instead of 16 (sparse random
 * writes on a large volume use more space; the page stays small to bound that).
 */
export const mapPageEntries = 32;
const mapPageBytes = mapPageEntries * mapValueSizeBytes;
/** Working pages a commit holds before it puts them (bounds its memory: 4096 × 512 bytes). */
const workingPagesMax = 4096;
/** meta key saying the map is paged (envs from before pages hold one key per cluster in `map`). */
const mapFormatKey = "mapFormat";
const mapFormatPages = "pages32";

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

/** What one commit writes (MetadataStore.commit). */
export interface CommitBatch {
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
}

export class MetadataStore {
  private readonly root: RootDatabase;
  /** The paged map: key = page number (address / mapPageEntries, 8 bytes BE), value = mapPageBytes. */
  private readonly pages: Database<Buffer, Buffer>;
  private readonly meta: Database<string, string>;
  /**
   * Older versions of clusters that snapshots still see: key = address (8 bytes BE) + last TLog seq in
   * which the value was current (4 bytes BE); value = the map value it had. Written when a commit
   * replaces a value that some snapshot lies between its writing and its replacement.
   */
  private readonly history: Database<Buffer, Buffer>;
  private readonly keyBuffer = Buffer.alloc(8);
  /** Set by entryOf: the offset of the entry in the page it returned. */
  private entryOffset = 0;
  private readonly historyStart = Buffer.alloc(12);
  private readonly historyEnd = Buffer.alloc(12);

  private constructor(root: RootDatabase) {
    this.root = root;
    this.pages = root.openDB<Buffer, Buffer>({ name: "pages", keyEncoding: "binary", encoding: "binary" });
    this.meta = root.openDB<string, string>({ name: "meta", encoding: "string" });
    this.history = root.openDB<Buffer, Buffer>({ name: "history", keyEncoding: "binary", encoding: "binary" });
  }

  static open(path: string): MetadataStore {
    const store = new MetadataStore(open({ path, maxDbs: 5, compression: false }));
    store.migrateToPages();
    return store;
  }

  /**
   * An environment from before the paged map holds one `map` key per cluster: copies them into pages and
   * marks the format in one transaction, then drops the old database. Once, at the first open.
   */
  private migrateToPages(): void {
    if (this.meta.get(mapFormatKey) === mapFormatPages) return;
    const legacy = this.root.openDB<Buffer, Buffer>({ name: "map", keyEncoding: "binary", encoding: "binary" });
    this.root.transactionSync(() => {
      const work = new PageWork(this.pages);
      for (const { key, value } of legacy.getRange({})) {
        const address = readKey(key);
        const { page, offset } = work.entry(address);
        normalizeValue(value).copy(page, offset);
        work.putIfFull();
      }
      work.putAll();
      this.meta.putSync(mapFormatKey, mapFormatPages);
    });
    legacy.dropSync();
  }

  /**
   * The page holding `address` as LMDB returns it (a shared buffer, valid until the next read), with the
   * entry's offset in `this.entryOffset` (no allocation on the read path), or undefined if the cluster
   * is not mapped.
   */
  private entryOf(address: number): Buffer | undefined {
    const pageNumber = Math.floor(address / mapPageEntries);
    writeKey(this.keyBuffer, pageNumber);
    const page = this.pages.getBinaryFast(this.keyBuffer);
    if (page === undefined) return undefined;
    const offset = (address - pageNumber * mapPageEntries) * mapValueSizeBytes;
    this.entryOffset = offset;
    return isMapped(page, offset) ? page : undefined;
  }

  /** The committed location of a cluster, or undefined if unwritten. Synchronous (LMDB read). */
  lookup(clusterAddress: number): ClusterLocation | undefined {
    const page = this.entryOf(clusterAddress);
    return page === undefined ? undefined : decodeLocationAt(page, this.entryOffset);
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
    const page = this.entryOf(clusterAddress);
    if (page === undefined || page.readUInt32LE(this.entryOffset + 12) > tlogSeq) return undefined;
    return decodeLocationAt(page, this.entryOffset);
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

  /**
   * Calls `visit(address, scoNumber)` for each committed map entry in [first, end), in address order
   * (scoNumber 0: an explicit zero). Reads the pages in place, no object per cluster: the cheap scan for
   * block status. `visit` must not read or write LMDB.
   */
  forEachCommittedInRange(first: number, end: number, visit: (address: number, scoNumber: number) => void): void {
    for (const { key, value } of this.pagesInRange(first, end)) {
      const base = readKey(key) * mapPageEntries;
      for (let i = 0; i < mapPageEntries; i++) {
        const address = base + i;
        if (address >= first && address < end && isMapped(value, i * mapValueSizeBytes)) visit(address, value.readUInt32LE(i * mapValueSizeBytes));
      }
    }
  }

  /** Addresses of committed (written) clusters in [first, end), in order. */
  *writtenClustersInRange(first: number, end: number): Generator<number> {
    for (const { key, value } of this.pagesInRange(first, end)) {
      // Each page's addresses are collected before yielding: the caller may read LMDB in between.
      const base = readKey(key) * mapPageEntries;
      const addresses: number[] = [];
      for (let i = 0; i < mapPageEntries; i++) {
        const address = base + i;
        if (address >= first && address < end && isMapped(value, i * mapValueSizeBytes)) addresses.push(address);
      }
      yield* addresses;
    }
  }

  /** The map pages that hold entries of [first, end), in order (none when the range is empty). */
  private pagesInRange(first: number, end: number): Iterable<{ key: Buffer; value: Buffer }> {
    if (end <= first) return [];
    const start = Buffer.allocUnsafe(8);
    const stop = Buffer.allocUnsafe(8);
    writeKey(start, Math.floor(first / mapPageEntries));
    writeKey(stop, Math.floor((end - 1) / mapPageEntries) + 1);
    return this.pages.getRange({ start, end: stop });
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
    const page = this.entryOf(address);
    if (page !== undefined) {
      const offset = this.entryOffset;
      if (page.readUInt32LE(offset) === scoNumber && page.readUInt16LE(offset + 4) === offsetClusters) return true;
      if (page.readUInt32LE(offset + 12) > storedThroughSeq) return true;
    }
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

  /**
   * Commits, in one transaction: map updates (zeroLocation = delete), TLog records, the cork and the
   * config. Resolves once committed; `flushed()` tells when it is on disk.
   */
  async commit(batch: CommitBatch): Promise<void> {
    await this.commitAll([batch]);
  }

  /**
   * Commits several batches in one transaction, applied in order (a later batch sees, and may replace,
   * what an earlier one wrote). One transaction costs lmdb-js a few trips through the event loop
   * whatever its size (~10 ms under load), so the volume groups the commits that queue up meanwhile.
   */
  async commitAll(batches: readonly CommitBatch[]): Promise<void> {
    // lmdb-js copies keys and values into its write buffer when put/remove is called, so one key buffer
    // serves the whole transaction.
    const historyKey = Buffer.allocUnsafe(12);
    await this.root.transaction(() => {
      for (const batch of batches) this.applyBatch(batch, historyKey);
    });
  }

  /** Inside a transaction: writes one batch. */
  private applyBatch(batch: CommitBatch, historyKey: Buffer): void {
    const snapshotSeqs = batch.snapshotSeqs ?? [];
    // Updates change working copies of their pages (the same page for runs of addresses), put once.
    const work = new PageWork(this.pages);
    if (batch.updates) {
      for (const [address, location, tlogSeq] of batch.updates) {
        const { page, offset } = work.entry(address); // sees this batch's earlier updates
        if (snapshotSeqs.length > 0 && isMapped(page, offset) && snapshotBetween(snapshotSeqs, page.readUInt32LE(offset + 12), tlogSeq - 1)) {
          writeKey(historyKey, address);
          historyKey.writeUInt32BE(tlogSeq - 1, 8);
          this.history.put(historyKey, page.subarray(offset, offset + mapValueSizeBytes));
        }
        if (location.scoNumber === 0 && !batch.keepZeros) {
          page.fill(0, offset, offset + mapValueSizeBytes);
        } else {
          // Every value written has a TLog seq >= 1, so an explicit zero (SCO 0) still reads as mapped.
          assert(tlogSeq >= 1, "map values carry the seq of the TLog that wrote them");
          storeUint32(page, offset, location.scoNumber);
          storeUint16(page, offset + 4, location.offsetClusters);
          page[offset + 6] = location.cloneId;
          page[offset + 7] = location.scoVersion;
          storeUint32(page, offset + 8, location.dataCrc);
          storeUint32(page, offset + 12, tlogSeq);
        }
        work.putIfFull();
      }
    }
    for (const relocation of batch.relocations ?? []) this.relocate(relocation, work);
    work.putAll();
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
  }

  /**
   * Inside a transaction: moves one cluster's location in the map (its working page), or else in the
   * history.
   */
  private relocate(relocation: Relocation, work: PageWork): void {
    const holds = (old: Buffer): boolean => old.readUInt32LE(0) === relocation.fromScoNumber && old.readUInt16LE(4) === relocation.fromOffsetClusters;
    const { page, offset } = work.entry(relocation.address);
    const current = page.subarray(offset, offset + mapValueSizeBytes);
    if (isMapped(page, offset) && holds(current)) {
      relocatedValue(current, relocation, current); // in place: every field is read before it is written
      work.putIfFull();
      return;
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

function tlogKey(seq: number): string {
  return `tlog:${seq.toString(16).padStart(12, "0")}`;
}

/**
 * Working copies of map pages inside one write transaction: entry() returns the page (read from LMDB,
 * which sees this transaction's earlier puts, or zeros) and the entry's offset; putAll() puts the
 * changed pages (removing the all-zero ones). putIfFull() does it early when many pages are held.
 */
class PageWork {
  private readonly pages = new Map<number, Buffer>();
  private lastNumber = -1;
  private lastPage: Buffer | undefined;
  private readonly key = Buffer.allocUnsafe(8);

  constructor(private readonly db: Database<Buffer, Buffer>) {}

  entry(address: number): { page: Buffer; offset: number } {
    const pageNumber = Math.floor(address / mapPageEntries);
    const offset = (address - pageNumber * mapPageEntries) * mapValueSizeBytes;
    if (pageNumber === this.lastNumber) return { page: this.lastPage!, offset };
    let page = this.pages.get(pageNumber);
    if (page === undefined) {
      page = Buffer.alloc(mapPageBytes);
      writeKey(this.key, pageNumber);
      const stored = this.db.getBinaryFast(this.key);
      if (stored !== undefined) {
        assert(stored.length === mapPageBytes, "corrupt map page");
        // getBinaryFast returns a view of lmdb-js's shared 16 MiB buffer whose length says the value's
        // size (set() and copy() see the whole buffer): copy through a view of exactly the value.
        page.set(new Uint8Array(stored.buffer, stored.byteOffset, mapPageBytes));
      }
      this.pages.set(pageNumber, page);
    }
    this.lastNumber = pageNumber;
    this.lastPage = page;
    return { page, offset };
  }

  putIfFull(): void {
    if (this.pages.size >= workingPagesMax) this.putAll();
  }

  putAll(): void {
    for (const [pageNumber, page] of this.pages) {
      writeKey(this.key, pageNumber);
      if (isAllZero(page)) this.db.remove(this.key);
      else this.db.put(this.key, page);
    }
    this.pages.clear();
    this.lastNumber = -1;
    this.lastPage = undefined;
  }
}

/** A map entry is mapped unless all zero: its SCO number is set, or (an explicit zero) its TLog seq. */
function isMapped(page: Buffer, offset: number): boolean {
  return page.readUInt32LE(offset) !== 0 || page.readUInt32LE(offset + 12) !== 0;
}

function isAllZero(page: Buffer): boolean {
  for (let i = 0; i < page.length; i += 4) if (page.readUInt32LE(i) !== 0) return false;
  return true;
}

function decodeLocationAt(page: Buffer, offset: number): ClusterLocation {
  return {
    scoNumber: page.readUInt32LE(offset),
    offsetClusters: page.readUInt16LE(offset + 4),
    cloneId: page[offset + 6]!,
    scoVersion: page[offset + 7]!,
    dataCrc: page.readUInt32LE(offset + 8),
  };
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
