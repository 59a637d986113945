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
import { assert, OvsError } from "../base/index.js";

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

export interface Cork {
  /** Every entry of TLogs before `seq`, and the first `entryCount` entries of TLog `seq`, are in the map. */
  seq: number;
  entryCount: number;
  /** SCO numbers below it may exist (locally or on the backend): never reuse one. */
  nextScoNumber?: number;
}

/**
 * The map is stored in pages of `clustersPerPage` consecutive clusters: one LMDB value per page instead of
 * one per cluster, so that a 1 MiB read costs 4 LMDB lookups instead of 256 and a commit of a 1 MiB write
 * 4 puts instead of 256 (per-cluster lookups were 15 % of the node's CPU on 1 MiB reads). 64 slots of 12
 * bytes keep a page (768 bytes) inline in LMDB's 4 KiB leaf pages (larger values go to overflow pages).
 */
export const clustersPerPage = 64;
export const slotSizeBytes = 12;
export const pageSizeBytes = clustersPerPage * slotSizeBytes;
/** meta key "mapFormat": the map layout of this file; another value is refused (no silent misreading). */
export const mapFormat = "pages-64x12";

export class MetadataStore {
  private readonly root: RootDatabase;
  private readonly pages: Database<Buffer, Buffer>;
  private readonly meta: Database<string, string>;
  private readonly keyBuffer = Buffer.alloc(8);
  /** The last page read by lookup(), copied; dropped around every commit. */
  private cachedPageNumber = -1;
  private readonly cachedPage = Buffer.alloc(pageSizeBytes);
  private cachedPagePresent = false;

  private constructor(root: RootDatabase) {
    this.root = root;
    this.pages = root.openDB<Buffer, Buffer>({ name: "map-pages", keyEncoding: "binary", encoding: "binary" });
    this.meta = root.openDB<string, string>({ name: "meta", encoding: "string" });
  }

  static open(path: string): MetadataStore {
    const store = new MetadataStore(open({ path, maxDbs: 4, compression: false }));
    const format = store.meta.get("mapFormat");
    if (store.meta.get("config") !== undefined && format !== mapFormat) {
      void store.close();
      throw new OvsError("INVALID_ARGUMENT", `the volume metadata in ${path} has map format ${format ?? "(none, an early version)"}, this version reads ${mapFormat}; rebuild it from the TLogs (restart from the backend).`);
    }
    return store;
  }

  /** The committed location of a cluster, or undefined if unwritten. Synchronous (LMDB read). */
  lookup(clusterAddress: number): ClusterLocation | undefined {
    const pageNumber = Math.floor(clusterAddress / clustersPerPage);
    if (pageNumber !== this.cachedPageNumber) {
      writeKey(this.keyBuffer, pageNumber);
      const value = this.pages.getBinary(this.keyBuffer);
      this.cachedPageNumber = pageNumber;
      this.cachedPagePresent = value !== undefined;
      if (value !== undefined) {
        assert(value.length === pageSizeBytes, "corrupt map page");
        this.cachedPage.set(value);
      }
    }
    if (!this.cachedPagePresent) return undefined;
    return readSlot(this.cachedPage, clusterAddress % clustersPerPage);
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
      for (let slot = 0; slot < clustersPerPage; slot++) {
        const address = base + slot;
        if (address >= first && address < end && value.readUInt32LE(slot * slotSizeBytes) !== 0) yield address;
      }
    }
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

  /** Number of written (non-zero) clusters committed in the map. */
  committedClusterCount(): number {
    return Number(this.meta.get("mapClusterCount") ?? "0");
  }

  /**
   * Commits, in one transaction: map updates (zeroLocation = delete), TLog records, the cork and the
   * config. Resolves once committed; `flushed()` tells when it is on disk.
   */
  async commit(batch: {
    updates?: Iterable<[number, ClusterLocation]>;
    tlogs?: Iterable<TlogRecord>;
    cork?: Cork;
    config?: unknown;
    scoNumberReservedEnd?: number;
  }): Promise<void> {
    // Each touched page is read once, updated in a copy (the last update per address wins) and put once.
    // The updates are consumed inside the transaction and not kept: the caller may reuse the pair and
    // the location between steps (DirtyMap does). lmdb-js copies keys and values when put is called.
    const key = Buffer.allocUnsafe(8);
    this.cachedPageNumber = -1;
    try {
      await this.root.transaction(() => {
        let countDelta = 0;
        const touched = new Map<number, Buffer>();
        for (const [address, location] of batch.updates ?? []) {
          const pageNumber = Math.floor(address / clustersPerPage);
          let page = touched.get(pageNumber);
          if (page === undefined) {
            writeKey(key, pageNumber);
            const current = this.pages.getBinary(key);
            page = Buffer.alloc(pageSizeBytes);
            if (current !== undefined) page.set(current);
            touched.set(pageNumber, page);
          }
          const offset = (address % clustersPerPage) * slotSizeBytes;
          const wasWritten = page.readUInt32LE(offset) !== 0;
          writeSlot(page, offset, location);
          countDelta += (location.scoNumber !== 0 ? 1 : 0) - (wasWritten ? 1 : 0);
        }
        for (const [pageNumber, page] of touched) {
          writeKey(key, pageNumber);
          if (isZero(page)) this.pages.remove(key);
          else this.pages.put(key, page);
        }
        if (countDelta !== 0) this.meta.put("mapClusterCount", String(this.committedClusterCount() + countDelta));
        for (const record of batch.tlogs ?? []) this.meta.put(tlogKey(record.seq), JSON.stringify(record));
        if (batch.cork) this.meta.put("cork", JSON.stringify(batch.cork));
        if (batch.config !== undefined) {
          this.meta.put("config", JSON.stringify(batch.config));
          this.meta.put("mapFormat", mapFormat);
        }
        if (batch.scoNumberReservedEnd !== undefined) this.meta.put("scoNumberReservedEnd", String(batch.scoNumberReservedEnd));
      });
    } finally {
      // A lookup during the commit may have cached the page as it was before.
      this.cachedPageNumber = -1;
    }
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

/** Decodes map slot `slot` of `page` (docs/formats/volume-metadata.md); undefined when unwritten. */
export function readSlot(page: Buffer, slot: number): ClusterLocation | undefined {
  const offset = slot * slotSizeBytes;
  const scoNumber = page.readUInt32LE(offset);
  if (scoNumber === 0) return undefined;
  return {
    scoNumber,
    offsetClusters: page.readUInt16LE(offset + 4),
    cloneId: page.readUInt8(offset + 6),
    scoVersion: page.readUInt8(offset + 7),
    dataCrc: page.readUInt32LE(offset + 8),
  };
}

/** Encodes `location` at byte `offset` of a page; zeroLocation (SCO number 0) clears the slot. */
export function writeSlot(page: Buffer, offset: number, location: ClusterLocation): void {
  if (location.scoNumber === 0) {
    page.fill(0, offset, offset + slotSizeBytes);
    return;
  }
  page.writeUInt32LE(location.scoNumber, offset);
  page.writeUInt16LE(location.offsetClusters, offset + 4);
  page.writeUInt8(location.cloneId, offset + 6);
  page.writeUInt8(location.scoVersion, offset + 7);
  page.writeUInt32LE(location.dataCrc, offset + 8);
}

function isZero(page: Buffer): boolean {
  for (let offset = 0; offset < page.length; offset += slotSizeBytes) if (page.readUInt32LE(offset) !== 0) return false;
  return true;
}

function readKey(source: Buffer): number {
  return source.readUInt32BE(0) * 2 ** 32 + source.readUInt32BE(4);
}

function writeKey(target: Buffer, pageNumber: number): void {
  // Big-endian, so that LMDB's byte order is address order.
  target.writeUInt32BE(Math.floor(pageNumber / 2 ** 32), 0);
  target.writeUInt32BE(pageNumber % 2 ** 32, 4);
}
