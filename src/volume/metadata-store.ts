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

const mapValueSizeBytes = 12;

export class MetadataStore {
  private readonly root: RootDatabase;
  private readonly map: Database<Buffer, Buffer>;
  private readonly meta: Database<string, string>;
  private readonly keyBuffer = Buffer.alloc(8);

  private constructor(root: RootDatabase) {
    this.root = root;
    this.map = root.openDB<Buffer, Buffer>({ name: "map", keyEncoding: "binary", encoding: "binary" });
    this.meta = root.openDB<string, string>({ name: "meta", encoding: "string" });
  }

  static open(path: string): MetadataStore {
    return new MetadataStore(open({ path, maxDbs: 4, compression: false }));
  }

  /** The committed location of a cluster, or undefined if unwritten. Synchronous (LMDB read). */
  lookup(clusterAddress: number): ClusterLocation | undefined {
    writeKey(this.keyBuffer, clusterAddress);
    const value = this.map.getBinaryFast(this.keyBuffer);
    if (value === undefined) return undefined;
    assert(value.length === mapValueSizeBytes, "corrupt map value");
    return {
      scoNumber: value.readUInt32LE(0),
      offsetClusters: value.readUInt16LE(4),
      cloneId: value.readUInt8(6),
      scoVersion: value.readUInt8(7),
      dataCrc: value.readUInt32LE(8),
    };
  }

  /** Addresses of committed (written) clusters in [first, end), in order. */
  *writtenClustersInRange(first: number, end: number): Generator<number> {
    const start = Buffer.allocUnsafe(8);
    const stop = Buffer.allocUnsafe(8);
    writeKey(start, first);
    writeKey(stop, end);
    for (const key of this.map.getKeys({ start, end: stop })) yield readKey(key);
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

  /** Number of written (non-zero) clusters committed in the map. */
  committedClusterCount(): number {
    return this.map.getCount();
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
    snapshots?: Iterable<SnapshotRecord>;
    deleteSnapshots?: Iterable<number>;
    /** Small named values (owner tag, rollback intent); undefined removes one. */
    values?: Record<string, string | undefined>;
  }): Promise<void> {
    // lmdb-js copies keys and values into its write buffer when put/remove is called, so one key and
    // one value buffer serve the whole batch.
    const key = Buffer.allocUnsafe(8);
    const value = Buffer.allocUnsafe(mapValueSizeBytes);
    await this.root.transaction(() => {
      if (batch.updates) {
        for (const [address, location] of batch.updates) {
          writeKey(key, address);
          if (location.scoNumber === 0) {
            this.map.remove(key);
          } else {
            value.writeUInt32LE(location.scoNumber, 0);
            value.writeUInt16LE(location.offsetClusters, 4);
            value.writeUInt8(location.cloneId, 6);
            value.writeUInt8(location.scoVersion, 7);
            value.writeUInt32LE(location.dataCrc, 8);
            this.map.put(key, value);
          }
        }
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
