// A volume (vDisk) of the volumedriver: thin, cluster-addressed, its writes aggregated into SCOs and
// described by TLogs, both uploaded to the object backend in the background (docs/ARCHITECTURE.md).
//
// Write path: each cluster is checksummed, copied into the open SCO (kept in memory while open, written
// through to its file in batches: one pwrite per batch of writes that arrive together), its location
// recorded in the in-memory map layer and a TLog entry appended (in memory). A write is acknowledged once
// its SCO pwrite completed (DESIGN.md §4.1).
//
// Sync (FLUSH, FUA, SCO roll, timer; group commit): wait for the SCO pwrites, fdatasync the SCO files,
// then write the TLog entries and fdatasync the TLog. Only then are the map updates committed to LMDB,
// with the cork (metadata never runs ahead of durable TLogs). A restart replays TLogs from the cork.
//
// Backend: a closed and synced SCO is queued for upload; a closed TLog is queued after its SCOs and is
// uploaded only when every earlier item is stored (a barrier). Once a TLog is stored its SCOs are
// disposable and may leave the local write buffer; reads then fetch clusters by partial get.
//
// Every read verifies the CRC32C of every cluster against the map; a mismatch in a local copy is retried
// from the backend, and bytes that fail verification are never returned (CHECKSUM_MISMATCH → EIO).
//
// A failed SCO or TLog write (e.g. ENOSPC) halts the volume: its in-memory state may then name data that
// is not on disk, so every later I/O fails until a restart replays what is durable.

import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { assert, Crc32cCombiner, crc32c, crc32cBlocks, OvsError, type Logger } from "../base/index.js";
import type { ObjectBackend } from "../backend/index.js";
import { MetadataStore, zeroLocation, type ClusterLocation, type Cork, type TlogRecord } from "./metadata-store.js";
import { TlogWriter } from "./tlog-writer.js";
import { EntryKind, parseTlog, clusterAddressMax, entriesCrcOf, tlogHeaderSizeBytes } from "./tlog-format.js";
import { parseScoName, scoName } from "./sco-name.js";
import { closeFile, fdatasync, ioError, openFile, preadAll, pwriteAll, scoReadFds } from "./file-io.js";
import { Uploader } from "./uploader.js";
import { DirtyMap } from "./dirty-map.js";

export interface VolumeConfig {
  id: string;
  name: string;
  namespace: string;
  sizeBytes: number;
  clusterSizeBytes: number;
  scoSizeBytes: number;
  tlogMultiplier: number;
  /**
   * Per-volume cap on local SCO bytes (disposable SCOs above it are evicted; the backend keeps them);
   * 0 = no cap: only the file system's free-space guard evicts (volumeLimits.scoCacheFree…).
   */
  scoCacheMaxBytes: number;
  createdAt: string;
}

export const volumeLimits = {
  clusterSizeBytes: 4096,
  scoSizeBytesMin: 1024 * 1024,
  scoSizeBytesMax: 128 * 1024 * 1024,
  volumeSizeBytesMax: 64 * 1024 ** 4, // 64 TiB, as the original
  /** Non-disposable SCOs allowed, as a factor of SCO size × TLog multiplier (the original's 1.5). */
  nonDisposableFactor: 1.5,
  /** The write buffer's file system keeps at least this much free (disposable SCOs are evicted)... */
  scoCacheFreeBytesMin: 2 * 1024 ** 3,
  /** ...or this fraction of its size, whichever is larger. */
  scoCacheFreeFraction: 0.05,
  syncIntervalMs: 1000,
  /**
   * SCO rolls between background syncs (besides the timer, FLUSH and TLog rolls): bounds the TLog
   * entries and map updates held in memory without an fsync per 4 MiB SCO.
   */
  scoRollsPerBackgroundSync: 4,
  /** SCO numbers reserved per durable metadata commit (one commit per this many SCOs). */
  scoNumberReservationCount: 256,
  ioLengthBytesMax: 32 * 1024 * 1024,
  zeroChunkBytes: 1024 * 1024,
} as const;

/** The defaults of DESIGN.md §6. */
export function defaultVolumeSettings(): Pick<VolumeConfig, "clusterSizeBytes" | "scoSizeBytes" | "tlogMultiplier" | "scoCacheMaxBytes"> {
  return { clusterSizeBytes: 4096, scoSizeBytes: 4 * 1024 * 1024, tlogMultiplier: 16, scoCacheMaxBytes: 0 };
}

/** A SCO with a memory copy: the open one, and closed ones until they are synced. */
class MemorySco {
  readonly buffer: Buffer;
  clusterCount = 0; // clusters allocated (copied into buffer)
  writtenClusterCount = 0; // clusters whose pwrite has been issued
  fd: number | undefined;
  fdOpening: Promise<number> | undefined;
  batch: { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } | undefined;
  readonly inflight = new Set<Promise<void>>();
  dirtySinceSync = false;
  closed = false;
  /** CRC32C of buffer[0, clusterCount × cluster size), kept up to date from the clusters' CRCs. */
  crc = 0;

  /** The file was created and its directory entry is not yet known durable. */
  createdSinceSync = false;

  constructor(readonly scoNumber: number, readonly path: string, scoSizeBytes: number, readonly numberReserved: Promise<void>) {
    this.buffer = Buffer.allocUnsafe(scoSizeBytes);
  }
}

interface LocalSco {
  sizeBytes: number;
  disposable: boolean;
}

export interface VolumeStats {
  reads: number;
  writes: number;
  readBytes: number;
  writeBytes: number;
  flushes: number;
  syncs: number;
  backendReads: number;
  checksumErrors: number;
  scoUploads: number;
  tlogUploads: number;
  localScoBytes: number;
  nonDisposableBytes: number;
  pendingUploads: number;
  /** Map updates held in memory, not yet committed to LMDB (bounded by the sync interval). */
  uncommittedClusterCount: number;
  halted: string | undefined;
}

export class Volume {
  config: VolumeConfig;
  private readonly dir: string;
  private readonly scoDir: string;
  private readonly tlogDir: string;
  private readonly backend: ObjectBackend;
  private readonly log: Logger;
  private readonly metadata: MetadataStore;
  private readonly clustersPerSco: number;
  private readonly dirty = new DirtyMap();
  private readonly memoryScos = new Map<number, MemorySco>();
  private readonly localScos = new Map<number, LocalSco>(); // insertion order = age
  private readonly unsyncedTlogs: TlogWriter[] = [];
  private readonly tlogFds = new Map<number, number>();
  private readonly rmwLocks = new Map<number, Promise<void>>();
  private readonly scoPaths = new Map<number, string>();
  /** CRC32C results of one run of clusters (a SCO's worth or an I/O's worth); used synchronously only. */
  private readonly crcScratch: Uint32Array;
  private readonly crcCombiner: Crc32cCombiner;
  private readonly uploader: Uploader;
  private openSco!: MemorySco;
  private currentTlog!: TlogWriter;
  private nextScoNumber = 1;
  private syncing = false;
  private syncWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  private syncTimer: NodeJS.Timeout | undefined;
  private changedSinceSync = false;
  private scoRollsSinceSync = 0;
  private scoNumberReservedEnd = 0;
  private scoNumberReserved: Promise<void> = Promise.resolve();
  private committing: Promise<void> = Promise.resolve();
  private housekeeping: Promise<void> = Promise.resolve();
  private throttleWaiters: Array<() => void> = [];
  private halted: OvsError | undefined;
  private closing = false;
  private readonly counters = { reads: 0, writes: 0, readBytes: 0, writeBytes: 0, flushes: 0, syncs: 0, backendReads: 0, checksumErrors: 0 };

  private constructor(dir: string, backend: ObjectBackend, metadata: MetadataStore, config: VolumeConfig, log: Logger) {
    this.dir = dir;
    this.scoDir = path.join(dir, "sco");
    this.tlogDir = path.join(dir, "tlog");
    this.backend = backend;
    this.metadata = metadata;
    this.config = config;
    this.log = log.child({ volume: config.name, namespace: config.namespace });
    this.clustersPerSco = config.scoSizeBytes / config.clusterSizeBytes;
    this.crcCombiner = Crc32cCombiner.forLength(config.clusterSizeBytes);
    this.crcScratch = new Uint32Array(Math.max(this.clustersPerSco, volumeLimits.ioLengthBytesMax / config.clusterSizeBytes + 1));
    this.uploader = new Uploader({
      backend,
      namespace: config.namespace,
      log: this.log,
      onTlogStored: (seq, scoNumbers) => this.tlogStored(seq, scoNumbers),
    });
  }

  /** Creates a new volume in an empty `dir`, with its namespace on the backend. */
  static async create(options: { dir: string; backend: ObjectBackend; config: VolumeConfig; log: Logger }): Promise<Volume> {
    const { dir, backend, config, log } = options;
    validateConfig(config);
    await fsp.mkdir(path.join(dir, "sco"), { recursive: true });
    await fsp.mkdir(path.join(dir, "tlog"), { recursive: true });
    const metadata = MetadataStore.open(path.join(dir, "metadata"));
    if (metadata.getConfig() !== undefined) {
      await metadata.close();
      throw new OvsError("ALREADY_EXISTS", `a volume already exists in ${dir}`);
    }
    await backend.createNamespace(config.namespace);
    await backend.put(config.namespace, "volume_configuration", Buffer.from(JSON.stringify(config, null, 2)));
    const firstTlog: TlogRecord = { seq: 1, id: `tlog_${randomUUID()}`, closed: false, stored: false };
    await metadata.commit({ config, tlogs: [firstTlog], cork: { seq: 1, entryCount: 0 } });
    await metadata.flushed();
    const volume = new Volume(dir, backend, metadata, config, log);
    volume.currentTlog = new TlogWriter({ seq: 1, id: firstTlog.id, clusterSizeBytes: config.clusterSizeBytes });
    volume.unsyncedTlogs.push(volume.currentTlog);
    volume.openSco = volume.newMemorySco();
    volume.start();
    return volume;
  }

  /** Opens an existing volume from its local directory (local restart), replaying TLogs after the cork. */
  static async open(options: { dir: string; backend: ObjectBackend; log: Logger }): Promise<Volume> {
    const { dir, backend, log } = options;
    const metadata = MetadataStore.open(path.join(dir, "metadata"));
    const config = metadata.getConfig<VolumeConfig>();
    if (config === undefined) {
      await metadata.close();
      throw new OvsError("NOT_FOUND", `no volume in ${dir}`);
    }
    const volume = new Volume(dir, backend, metadata, config, log);
    try {
      await volume.recover();
    } catch (error) {
      await volume.uploader.stop();
      await metadata.close();
      throw error;
    }
    volume.start();
    return volume;
  }

  get name(): string {
    return this.config.name;
  }

  get sizeBytes(): number {
    return this.config.sizeBytes;
  }

  // ---------------------------------------------------------------------------------------------------
  // I/O

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.checkIo(offsetBytes, lengthBytes);
    this.counters.reads++;
    this.counters.readBytes += lengthBytes;
    const clusterSize = this.config.clusterSizeBytes;
    if (lengthBytes === 0) return Buffer.alloc(0);
    const firstCluster = Math.floor(offsetBytes / clusterSize);
    const endCluster = Math.ceil((offsetBytes + lengthBytes) / clusterSize);
    if (offsetBytes % clusterSize === 0 && lengthBytes % clusterSize === 0) {
      const result = Buffer.allocUnsafe(lengthBytes);
      await this.readClusters(firstCluster, endCluster - firstCluster, result);
      return result;
    }
    const whole = Buffer.allocUnsafe((endCluster - firstCluster) * clusterSize);
    await this.readClusters(firstCluster, endCluster - firstCluster, whole);
    const start = offsetBytes - firstCluster * clusterSize;
    return Buffer.from(whole.subarray(start, start + lengthBytes));
  }

  /** Writes `data` (any 512-byte-or-less alignment; partial clusters by read-modify-write). */
  async write(offsetBytes: number, data: Uint8Array, fua = false): Promise<void> {
    this.checkIo(offsetBytes, data.length);
    this.checkWritable();
    this.counters.writes++;
    this.counters.writeBytes += data.length;
    if (data.length > 0) {
      const clusterSize = this.config.clusterSizeBytes;
      if (offsetBytes % clusterSize === 0 && data.length % clusterSize === 0) {
        await this.writeClusters(offsetBytes / clusterSize, data);
      } else {
        await this.writeUnaligned(offsetBytes, data);
      }
    }
    if (fua) await this.flush();
  }

  /** Discards a range: whole clusters read as zeros afterwards; partial clusters are left as they are. */
  async trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.checkIo(offsetBytes, lengthBytes, Number.MAX_SAFE_INTEGER);
    this.checkWritable();
    const clusterSize = this.config.clusterSizeBytes;
    const first = Math.ceil(offsetBytes / clusterSize);
    const end = Math.floor((offsetBytes + lengthBytes) / clusterSize);
    if (end > first) this.zeroClusters(first, end - first);
  }

  /** Makes a range read as zeros. With noHole, zero clusters are written (allocated) instead of unmapped. */
  async writeZeroes(offsetBytes: number, lengthBytes: number, noHole = false, fua = false): Promise<void> {
    this.checkIo(offsetBytes, lengthBytes, Number.MAX_SAFE_INTEGER);
    this.checkWritable();
    const clusterSize = this.config.clusterSizeBytes;
    const endBytes = offsetBytes + lengthBytes;
    const firstWhole = Math.ceil(offsetBytes / clusterSize);
    const endWhole = Math.floor(endBytes / clusterSize);
    if (endWhole <= firstWhole) {
      await this.writeUnaligned(offsetBytes, Buffer.alloc(lengthBytes));
    } else {
      if (offsetBytes < firstWhole * clusterSize) await this.writeUnaligned(offsetBytes, Buffer.alloc(firstWhole * clusterSize - offsetBytes));
      if (endBytes > endWhole * clusterSize) await this.writeUnaligned(endWhole * clusterSize, Buffer.alloc(endBytes - endWhole * clusterSize));
      if (noHole) {
        const zeros = Buffer.alloc(volumeLimits.zeroChunkBytes);
        const chunkClusters = volumeLimits.zeroChunkBytes / clusterSize;
        for (let cluster = firstWhole; cluster < endWhole; cluster += chunkClusters) {
          const count = Math.min(chunkClusters, endWhole - cluster);
          await this.writeClusters(cluster, zeros.subarray(0, count * clusterSize));
        }
      } else {
        this.zeroClusters(firstWhole, endWhole - firstWhole);
      }
    }
    if (fua) await this.flush();
  }

  /** Returns when every write acknowledged before the call is durable (fsynced SCOs and TLog). */
  async flush(): Promise<void> {
    this.checkNotHalted();
    this.counters.flushes++;
    await this.sync();
  }

  /** Grows the volume. Shrinking is refused: it would drop data under a client's feet. */
  async resize(sizeBytes: number): Promise<void> {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % 512 !== 0) {
      throw new OvsError("INVALID_ARGUMENT", "the size must be a positive multiple of 512 bytes");
    }
    if (sizeBytes < this.config.sizeBytes) throw new OvsError("INVALID_ARGUMENT", `shrinking is not supported: the volume is ${this.config.sizeBytes} bytes`);
    if (sizeBytes > volumeLimits.volumeSizeBytesMax) throw new OvsError("INVALID_ARGUMENT", "the size is above the 64 TiB maximum");
    const config = { ...this.config, sizeBytes };
    await this.metadata.commit({ config });
    await this.metadata.flushed();
    await this.backend.put(config.namespace, "volume_configuration", Buffer.from(JSON.stringify(config, null, 2)));
    this.config = config;
  }

  stats(): VolumeStats {
    let localScoBytes = 0;
    let nonDisposableBytes = 0;
    for (const sco of this.localScos.values()) {
      localScoBytes += sco.sizeBytes;
      if (!sco.disposable) nonDisposableBytes += sco.sizeBytes;
    }
    const uploads = this.uploader.stats();
    return {
      ...this.counters,
      scoUploads: uploads.scoUploads,
      tlogUploads: uploads.tlogUploads,
      pendingUploads: uploads.pending,
      localScoBytes,
      nonDisposableBytes,
      uncommittedClusterCount: this.dirty.size,
      halted: this.halted?.message,
    };
  }

  /** Waits until everything closed so far is on the backend (tests, migration, clean shutdown). */
  async waitForUploads(): Promise<void> {
    await this.uploader.idle();
    await this.housekeeping;
  }

  /** Closes the current SCO and TLog and waits until everything written so far is on the backend. */
  async syncToBackend(): Promise<void> {
    this.checkNotHalted();
    if (this.openSco.clusterCount > 0) this.rollSco(true);
    else if (this.currentTlog.entryCount > 0) this.rollTlog();
    await this.sync();
    await this.uploader.idle();
    await this.housekeeping;
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.syncTimer) clearInterval(this.syncTimer);
    try {
      if (!this.halted) await this.sync();
    } catch (error) {
      this.log.error({ err: error }, "final sync failed");
    }
    await this.committing;
    await this.uploader.stop();
    await this.housekeeping;
    for (const waiter of this.throttleWaiters.splice(0)) waiter();
    for (const sco of this.memoryScos.values()) if (sco.fd !== undefined) await closeFile(sco.fd);
    for (const fd of this.tlogFds.values()) await closeFile(fd);
    for (const file of await fsp.readdir(this.scoDir).catch(() => [])) scoReadFds.forget(path.join(this.scoDir, file));
    await this.metadata.flushed();
    await this.metadata.close();
  }

  /**
   * For tests: stops the way kill -9 would, without syncing (pwrites already issued stay in the page
   * cache, TLog entries still in memory are lost). The volume must be reopened with Volume.open.
   */
  async crashForTest(): Promise<void> {
    this.closing = true;
    if (this.syncTimer) clearInterval(this.syncTimer);
    await Promise.allSettled([...this.memoryScos.values()].flatMap((sco) => [...sco.inflight, ...(sco.batch ? [sco.batch.promise] : [])]));
    while (this.syncing) await new Promise((resolve) => setTimeout(resolve, 1));
    await this.committing;
    await this.uploader.stop();
    await this.housekeeping;
    for (const sco of this.memoryScos.values()) if (sco.fd !== undefined) await closeFile(sco.fd);
    for (const fd of this.tlogFds.values()) await closeFile(fd);
    for (const file of await fsp.readdir(this.scoDir).catch(() => [])) scoReadFds.forget(path.join(this.scoDir, file));
    await this.metadata.close();
  }

  // ---------------------------------------------------------------------------------------------------
  // Write internals

  private async writeUnaligned(offsetBytes: number, data: Uint8Array): Promise<void> {
    const clusterSize = this.config.clusterSizeBytes;
    const first = Math.floor(offsetBytes / clusterSize);
    const end = Math.ceil((offsetBytes + data.length) / clusterSize);
    // Edge clusters are read, merged and written under a per-cluster lock, so that two partial writes
    // to different sectors of one cluster never lose each other's bytes.
    const edges = [...new Set([first, end - 1])];
    const release = await this.lockClusters(edges);
    try {
      const merged = Buffer.allocUnsafe((end - first) * clusterSize);
      const headBytes = offsetBytes - first * clusterSize;
      const tailEnd = offsetBytes + data.length - first * clusterSize;
      if (headBytes > 0) await this.readClusters(first, 1, merged.subarray(0, clusterSize));
      if (tailEnd < merged.length && (end - 1 !== first || headBytes === 0)) {
        await this.readClusters(end - 1, 1, merged.subarray(merged.length - clusterSize));
      }
      merged.set(data, headBytes);
      await this.writeClusters(first, merged);
    } finally {
      release();
    }
  }

  private async lockClusters(addresses: number[]): Promise<() => void> {
    addresses.sort((a, b) => a - b);
    const releases: Array<() => void> = [];
    for (const address of addresses) {
      while (this.rmwLocks.has(address)) await this.rmwLocks.get(address);
      let release!: () => void;
      this.rmwLocks.set(address, new Promise<void>((resolve) => (release = resolve)));
      releases.push(() => {
        this.rmwLocks.delete(address);
        release();
      });
    }
    return () => releases.forEach((r) => r());
  }

  private async writeClusters(firstCluster: number, data: Uint8Array): Promise<void> {
    if (this.nonDisposableBytes() > this.nonDisposableLimitBytes()) await this.throttle();
    this.checkWritable();
    const clusterSize = this.config.clusterSizeBytes;
    const clusterCount = data.length / clusterSize;
    assert(Number.isInteger(clusterCount));
    const source = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length);
    const batches: Promise<void>[] = [];
    let done = 0;
    while (done < clusterCount) {
      const sco = this.openSco;
      const count = Math.min(clusterCount - done, this.clustersPerSco - sco.clusterCount);
      const tlog = this.currentTlog;
      const scoOffsetBytes = sco.clusterCount * clusterSize;
      source.copy(sco.buffer, scoOffsetBytes, done * clusterSize, (done + count) * clusterSize);
      const crcs = this.crcScratch;
      crc32cBlocks(sco.buffer.subarray(scoOffsetBytes, scoOffsetBytes + count * clusterSize), clusterSize, crcs);
      for (let i = 0; i < count; i++) {
        const offsetClusters = sco.clusterCount + i;
        const dataCrc = crcs[i]!;
        const address = firstCluster + done + i;
        sco.crc = this.crcCombiner.combine(sco.crc, dataCrc);
        const entryIndex = tlog.appendLocation(address, sco.scoNumber, offsetClusters, dataCrc);
        this.setDirty(address, { cloneId: 0, scoNumber: sco.scoNumber, scoVersion: 0, offsetClusters, dataCrc }, tlog.seq, entryIndex);
      }
      sco.clusterCount += count;
      done += count;
      batches.push(this.scheduleScoWrite(sco));
      if (sco.clusterCount === this.clustersPerSco) this.rollSco(false);
    }
    this.changedSinceSync = true;
    await Promise.all(batches);
  }

  private zeroClusters(firstCluster: number, clusterCount: number): void {
    const end = firstCluster + clusterCount;
    const addresses = this.mappedClustersInRange(firstCluster, end);
    if (addresses.size === 0) return;
    const tlog = this.currentTlog;
    // One Trim entry per 2^32-1 clusters at most (its count field is 32 bits).
    let entryIndex = -1;
    for (let start = firstCluster; start < end; start += 0xffff_ffff) {
      entryIndex = tlog.append({ kind: EntryKind.Trim, clusterAddress: start, clusterCount: Math.min(0xffff_ffff, end - start) });
    }
    for (const address of addresses) this.setDirty(address, zeroLocation, tlog.seq, entryIndex);
    this.changedSinceSync = true;
  }

  /**
   * Clusters in [first, end) that are mapped (committed in LMDB or written in memory): an LMDB range scan
   * plus the in-memory layer, so unmapping a range costs its written clusters, not its size.
   */
  private mappedClustersInRange(first: number, end: number): Set<number> {
    const addresses = new Set<number>(this.metadata.writtenClustersInRange(first, end));
    for (const address of this.dirty.mappedAddressesInRange(first, end)) addresses.add(address);
    return addresses;
  }


  private scheduleScoWrite(sco: MemorySco): Promise<void> {
    sco.dirtySinceSync = true;
    if (sco.batch) return sco.batch.promise;
    let resolve!: () => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
    sco.batch = { promise, resolve, reject };
    setImmediate(() => this.issueScoWrite(sco));
    return promise;
  }

  private issueScoWrite(sco: MemorySco): void {
    const batch = sco.batch;
    assert(batch !== undefined);
    sco.batch = undefined;
    const clusterSize = this.config.clusterSizeBytes;
    const start = sco.writtenClusterCount * clusterSize;
    const end = sco.clusterCount * clusterSize;
    sco.writtenClusterCount = sco.clusterCount;
    const write = (async () => {
      const fd = await this.scoFd(sco);
      await pwriteAll(fd, sco.buffer, start, end - start, start);
    })();
    sco.inflight.add(write);
    write.then(
      () => {
        sco.inflight.delete(write);
        batch.resolve();
      },
      (error: unknown) => {
        sco.inflight.delete(write);
        const failure = error instanceof OvsError ? error : ioError(error, "SCO write");
        this.halt(failure);
        batch.reject(failure);
      },
    );
  }

  private scoFd(sco: MemorySco): Promise<number> {
    if (sco.fd !== undefined) return Promise.resolve(sco.fd);
    sco.fdOpening ??= openFile(sco.path, fs.constants.O_RDWR | fs.constants.O_CREAT).then((fd) => {
      sco.createdSinceSync = true;
      return (sco.fd = fd);
    });
    return sco.fdOpening;
  }

  private newMemorySco(): MemorySco {
    const scoNumber = this.nextScoNumber++;
    if (scoNumber >= this.scoNumberReservedEnd) {
      // SCOs reach the backend before any TLog names them, so their numbers are reserved durably ahead:
      // a restart continues after the reservation and never reuses a number the backend may hold.
      const end = scoNumber + volumeLimits.scoNumberReservationCount;
      this.scoNumberReservedEnd = end;
      this.scoNumberReserved = this.enqueueCommit(async () => {
        await this.metadata.commit({ scoNumberReservedEnd: end });
        await this.metadata.flushed();
      });
      this.scoNumberReserved.catch((error: unknown) => this.halt(error instanceof OvsError ? error : ioError(error, "SCO number reservation")));
    }
    const name = scoName({ cloneId: 0, scoNumber, version: 0 });
    const sco = new MemorySco(scoNumber, path.join(this.scoDir, name), this.config.scoSizeBytes, this.scoNumberReserved);
    this.memoryScos.set(scoNumber, sco);
    this.localScos.set(scoNumber, { sizeBytes: 0, disposable: false });
    return sco;
  }

  /** Closes the open SCO into the current TLog and opens the next; closes the TLog every N SCOs. */
  private rollSco(closeTlog: boolean): void {
    const sco = this.openSco;
    sco.closed = true;
    const sizeBytes = sco.clusterCount * this.config.clusterSizeBytes;
    this.localScos.set(sco.scoNumber, { sizeBytes, disposable: false });
    const data = sco.buffer.subarray(0, sizeBytes);
    const scoCrc = sco.crc; // combined from the clusters' CRCs (no pass over the SCO)
    this.currentTlog.append({ kind: EntryKind.ScoCrc, cloneId: 0, scoNumber: sco.scoNumber, scoVersion: 0, clusterCount: sco.clusterCount, scoCrc });
    this.currentTlog.scoNumbers.push(sco.scoNumber);
    // Its content is final: upload it now, from memory, once its number is durably reserved. The TLog
    // naming it waits for it (barrier), and it becomes disposable only once that TLog is stored.
    this.uploader.enqueueSco({ scoNumber: sco.scoNumber, file: sco.path, expectedCrc: scoCrc, ready: sco.numberReserved, data });
    this.openSco = this.newMemorySco();
    this.changedSinceSync = true;
    this.scoRollsSinceSync++;
    // Under write pressure the TLog closes early: its SCOs become disposable (and writes may go on)
    // only once it is stored, so with 64 MiB TLogs and a 96 MiB write buffer at most one TLog cycle
    // would overlap the next; shorter TLogs keep several in flight.
    const underPressure = this.nonDisposableBytes() >= this.nonDisposableLimitBytes() / 2 && this.currentTlog.scoNumbers.length >= 4;
    if (closeTlog || underPressure || this.currentTlog.scoNumbers.length >= this.config.tlogMultiplier) {
      this.rollTlog();
      this.backgroundSync();
    } else if (this.scoRollsSinceSync >= volumeLimits.scoRollsPerBackgroundSync) {
      this.backgroundSync();
    }
  }

  private rollTlog(): void {
    const old = this.currentTlog;
    old.close();
    const record: TlogRecord = { seq: old.seq + 1, id: `tlog_${randomUUID()}`, closed: false, stored: false };
    const next = new TlogWriter({ seq: record.seq, id: record.id, clusterSizeBytes: this.config.clusterSizeBytes });
    // The new TLog's record must be durable before its file is written (a restart finds TLogs by record).
    next.recordPersisted = this.enqueueCommit(async () => {
      await this.metadata.commit({ tlogs: [{ seq: old.seq, id: old.id, closed: true, stored: false }, record] });
      await this.metadata.flushed();
    });
    this.currentTlog = next;
    this.unsyncedTlogs.push(next);
  }

  private nonDisposableBytes(): number {
    let total = 0;
    for (const sco of this.localScos.values()) if (!sco.disposable) total += sco.sizeBytes;
    return total;
  }

  private nonDisposableLimitBytes(): number {
    return this.config.scoSizeBytes * this.config.tlogMultiplier * volumeLimits.nonDisposableFactor;
  }

  /** Above the write-buffer limit writes wait (never fail) until uploads make SCOs disposable. */
  private async throttle(): Promise<void> {
    while (!this.closing && !this.halted && this.nonDisposableBytes() > this.nonDisposableLimitBytes()) {
      await new Promise<void>((resolve) => this.throttleWaiters.push(resolve));
    }
  }

  // ---------------------------------------------------------------------------------------------------
  // Sync (group commit)

  private sync(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.syncWaiters.push({ resolve, reject });
      if (!this.syncing) void this.runSyncLoop();
    });
  }

  private backgroundSync(): void {
    this.sync().catch((error: unknown) => this.log.error({ err: error }, "background sync failed"));
  }

  private async runSyncLoop(): Promise<void> {
    this.syncing = true;
    while (this.syncWaiters.length > 0) {
      const waiters = this.syncWaiters;
      this.syncWaiters = [];
      try {
        if (this.halted) throw this.halted;
        await this.syncOnce();
        for (const waiter of waiters) waiter.resolve();
      } catch (error) {
        for (const waiter of waiters) waiter.reject(error);
      }
    }
    this.syncing = false;
  }

  private async syncOnce(): Promise<void> {
    this.counters.syncs++;
    this.changedSinceSync = false;
    this.scoRollsSinceSync = 0;
    // Capture, in one synchronous step, the SCO writes to wait for and the TLog bytes they cover.
    const scoWrites: Promise<void>[] = [];
    const scosToSync: MemorySco[] = [];
    const closedAtCapture = new Set<MemorySco>();
    for (const sco of this.memoryScos.values()) {
      if (sco.closed) closedAtCapture.add(sco);
      if (sco.batch) scoWrites.push(sco.batch.promise);
      for (const write of sco.inflight) scoWrites.push(write);
      if (sco.dirtySinceSync) {
        sco.dirtySinceSync = false;
        scosToSync.push(sco);
      }
    }
    const tlogSlices = this.unsyncedTlogs.map((tlog) => ({ tlog, ...tlog.takePending(), closed: tlog.closed }));
    try {
      await Promise.all(scoWrites);
      await Promise.all(scosToSync.map(async (sco) => fdatasync(await this.scoFd(sco))));
      // New SCO files: their directory entries must be durable before a TLog names them.
      const created = scosToSync.filter((sco) => sco.createdSinceSync);
      if (created.length > 0) {
        await fsyncDirectory(this.scoDir);
        for (const sco of created) sco.createdSinceSync = false;
      }
      for (const slice of tlogSlices) {
        if (slice.bytes.length === 0) continue;
        await slice.tlog.recordPersisted;
        const fd = await this.tlogFd(slice.tlog);
        await pwriteAll(fd, slice.bytes, 0, slice.bytes.length, slice.tlog.fileSizeBytes);
        await fdatasync(fd);
        slice.tlog.consumePending(slice.bytes.length, slice.entryCountAfter);
      }
    } catch (error) {
      const failure = error instanceof OvsError ? error : ioError(error, "sync");
      for (const sco of scosToSync) sco.dirtySinceSync = true;
      this.halt(failure);
      throw failure;
    }
    // Everything captured is durable. Hand closed SCOs and TLogs to the uploader, in order.
    for (const sco of [...this.memoryScos.values()]) {
      // Closed before the capture (so its SCO CRC entry is durable now) and fully synced.
      if (closedAtCapture.has(sco) && !sco.dirtySinceSync && sco.inflight.size === 0 && !sco.batch) {
        this.memoryScos.delete(sco.scoNumber); // reads now go to the (synced) file
        if (sco.fd !== undefined) await closeFile(sco.fd);
      }
    }
    while (this.unsyncedTlogs.length > 0) {
      const tlog = this.unsyncedTlogs[0]!;
      if (!tlog.closed || tlog.hasPending) break;
      this.unsyncedTlogs.shift();
      const fd = this.tlogFds.get(tlog.seq);
      if (fd !== undefined) {
        this.tlogFds.delete(tlog.seq);
        await closeFile(fd);
      }
      this.uploader.enqueueTlog(tlog.seq, tlog.id, path.join(this.tlogDir, tlog.id), tlog.scoNumbers);
    }
    const last = tlogSlices.filter((s) => s.bytes.length > 0).at(-1);
    if (last) {
      const cork: Cork = { seq: last.tlog.seq, entryCount: last.entryCountAfter, nextScoNumber: this.nextScoNumber };
      void this.enqueueCommit(() => this.commitMetadata(cork)).catch((error: unknown) => this.log.error({ err: error }, "metadata commit failed"));
    }
  }

  private async tlogFd(tlog: TlogWriter): Promise<number> {
    let fd = this.tlogFds.get(tlog.seq);
    if (fd === undefined) {
      fd = await openFile(path.join(this.tlogDir, tlog.id), fs.constants.O_RDWR | fs.constants.O_CREAT);
      this.tlogFds.set(tlog.seq, fd);
      if (tlog.fileSizeBytes === 0) {
        // A new file: make its directory entry durable too.
        await fsyncDirectory(this.tlogDir);
      }
    }
    return fd;
  }

  /** Serialises metadata transactions, so commits land in order. */
  private enqueueCommit(work: () => Promise<void>): Promise<void> {
    const next = this.committing.then(work);
    this.committing = next.catch(() => undefined);
    return next;
  }

  /** Commits the map entries covered by `cork` (durable TLog entries) and moves the cork. */
  private async commitMetadata(cork: Cork): Promise<void> {
    const count = this.dirty.coveredCount(cork);
    await this.metadata.commit({ updates: this.dirty.updates(count), cork });
    this.dirty.drop(count); // now in LMDB
  }


  /** The local path of a SCO file; memoised (the read path needs it per request). */
  private scoPath(scoNumber: number): string {
    let file = this.scoPaths.get(scoNumber);
    if (file === undefined) {
      if (this.scoPaths.size >= 4096) this.scoPaths.clear();
      file = path.join(this.scoDir, scoName({ cloneId: 0, scoNumber, version: 0 }));
      this.scoPaths.set(scoNumber, file);
    }
    return file;
  }

  private setDirty(address: number, location: ClusterLocation, tlogSeq: number, entryIndex: number): void {
    this.dirty.set(address, location, tlogSeq, entryIndex);
  }


  // ---------------------------------------------------------------------------------------------------
  // Read internals

  private lookup(address: number): ClusterLocation | undefined {
    const location = this.dirty.get(address);
    if (location !== undefined) return location.scoNumber === 0 ? undefined : location;
    return this.metadata.lookup(address);
  }


  /** Reads `clusterCount` clusters from `firstCluster` into `target`, verifying every cluster's CRC. */
  private async readClusters(firstCluster: number, clusterCount: number, target: Buffer): Promise<void> {
    const clusterSize = this.config.clusterSizeBytes;
    // Runs of clusters that are consecutive in one SCO file are read with one pread.
    let runs: Array<{ scoNumber: number; offsetClusters: number; targetIndex: number; locations: ClusterLocation[] }> | undefined;
    for (let i = 0; i < clusterCount; i++) {
      const location = this.lookup(firstCluster + i);
      const slot = target.subarray(i * clusterSize, (i + 1) * clusterSize);
      if (location === undefined) {
        slot.fill(0);
        continue;
      }
      const memory = this.memoryScos.get(location.scoNumber);
      if (memory && location.offsetClusters < memory.clusterCount) {
        memory.buffer.copy(slot, 0, location.offsetClusters * clusterSize, (location.offsetClusters + 1) * clusterSize);
        if (crc32c(slot) !== location.dataCrc) {
          this.counters.checksumErrors++;
          throw new OvsError("CHECKSUM_MISMATCH", `cluster ${firstCluster + i} failed its checksum in memory`);
        }
        continue;
      }
      runs ??= [];
      const run = runs.at(-1);
      if (run && run.scoNumber === location.scoNumber && run.offsetClusters + run.locations.length === location.offsetClusters && run.targetIndex + run.locations.length === i) {
        run.locations.push(location);
      } else {
        runs.push({ scoNumber: location.scoNumber, offsetClusters: location.offsetClusters, targetIndex: i, locations: [location] });
      }
    }
    if (!runs) return;
    await Promise.all(
      runs.map(async (run) => {
        const view = target.subarray(run.targetIndex * clusterSize, (run.targetIndex + run.locations.length) * clusterSize);
        const name = scoName({ cloneId: 0, scoNumber: run.scoNumber, version: 0 });
        const handle = await scoReadFds.acquire(this.scoPath(run.scoNumber));
        if (handle !== undefined) {
          try {
            await preadAll(handle.fd, view, 0, view.length, run.offsetClusters * clusterSize);
            if (this.verifyRun(view, run.locations) === -1) return;
            this.counters.checksumErrors++;
            this.log.warn({ sco: name }, "local SCO copy failed its checksum; reading from the backend");
          } catch (error) {
            this.log.warn({ sco: name, err: error }, "local SCO read failed; reading from the backend");
          } finally {
            handle.release();
          }
        }
        await this.readRunFromBackend(name, run.offsetClusters, view, run.locations, firstCluster + run.targetIndex);
      }),
    );
  }

  /** Index of the first cluster in `view` whose CRC does not match, or -1. */
  private verifyRun(view: Buffer, locations: ClusterLocation[]): number {
    const crcs = this.crcScratch;
    crc32cBlocks(view, this.config.clusterSizeBytes, crcs); // synchronous: the shared scratch is safe
    for (let i = 0; i < locations.length; i++) {
      if (crcs[i] !== locations[i]!.dataCrc) return i;
    }
    return -1;
  }

  private async readRunFromBackend(name: string, offsetClusters: number, view: Buffer, locations: ClusterLocation[], firstAddress: number): Promise<void> {
    const clusterSize = this.config.clusterSizeBytes;
    this.counters.backendReads++;
    const [data] = await this.backend.getRanges(this.config.namespace, name, [{ offsetBytes: offsetClusters * clusterSize, lengthBytes: view.length }]);
    if (data === undefined || data.length !== view.length) {
      throw new OvsError("IO_ERROR", `the backend returned ${data?.length ?? 0} bytes instead of ${view.length} for SCO ${name}`);
    }
    data.copy(view);
    const bad = this.verifyRun(view, locations);
    if (bad !== -1) {
      this.counters.checksumErrors++;
      throw new OvsError("CHECKSUM_MISMATCH", `cluster ${firstAddress + bad} failed its checksum (SCO ${name} on the backend)`);
    }
  }

  // ---------------------------------------------------------------------------------------------------
  // Backend bookkeeping

  private async tlogStored(seq: number, scoNumbers: number[]): Promise<void> {
    const record = this.metadata.tlogRecords(seq).find((r) => r.seq === seq);
    assert(record !== undefined, `TLog ${seq} has no record`);
    await this.enqueueCommit(async () => {
      await this.metadata.commit({ tlogs: [{ ...record, closed: true, stored: true }] });
      await this.metadata.flushed(); // "stored" must be durable before its SCOs may leave the disk
    });
    for (const scoNumber of scoNumbers) {
      const sco = this.localScos.get(scoNumber);
      if (sco) sco.disposable = true;
    }
    for (const waiter of this.throttleWaiters.splice(0)) waiter();
    // Housekeeping off the uploader's path (the uploader waits for this function before its next item).
    this.housekeeping = this.housekeeping
      .then(async () => {
        await this.evictScos();
        await this.removeStoredTlogFiles();
      })
      .catch((error: unknown) => this.log.warn({ err: error }, "write buffer housekeeping failed"));
  }

  /** Drops disposable SCOs (oldest first) while the local SCO bytes exceed the cache size. */
  /**
   * Drops disposable SCOs (oldest first) when the file system's free space falls under the trigger
   * (max of scoCacheFreeBytesMin and scoCacheFreeFraction of its size) until twice the trigger is free,
   * as the original's SCO cache cleaner did, and while the volume's local SCO bytes exceed
   * scoCacheMaxBytes when that per-volume cap is set (non-zero). Until then the write buffer doubles as
   * a read cache: clusters are read from local files rather than by partial gets from the backend.
   */
  private async evictScos(): Promise<void> {
    let total = 0;
    for (const sco of this.localScos.values()) total += sco.sizeBytes;
    const cap = this.config.scoCacheMaxBytes > 0 ? this.config.scoCacheMaxBytes : Number.MAX_SAFE_INTEGER;
    let toFreeBytes = 0;
    try {
      const stat = await fsp.statfs(this.scoDir);
      const freeBytes = stat.bavail * stat.bsize;
      const triggerBytes = Math.max(volumeLimits.scoCacheFreeBytesMin, stat.blocks * stat.bsize * volumeLimits.scoCacheFreeFraction);
      if (freeBytes < triggerBytes) toFreeBytes = 2 * triggerBytes - freeBytes;
    } catch (error) {
      this.log.warn({ err: error }, "cannot read the free space of the write buffer's file system");
    }
    for (const [scoNumber, sco] of this.localScos) {
      if (total <= cap && toFreeBytes <= 0) break;
      if (!sco.disposable) continue;
      toFreeBytes -= sco.sizeBytes;
      const file = this.scoPath(scoNumber);
      scoReadFds.forget(file);
      await fsp.rm(file, { force: true });
      this.localScos.delete(scoNumber);
      total -= sco.sizeBytes;
    }
  }

  /** Local TLog files are removed once stored and behind a durable cork (a restart no longer needs them). */
  private async removeStoredTlogFiles(): Promise<void> {
    await this.metadata.flushed();
    const cork = this.metadata.getCork();
    for (const record of this.metadata.tlogRecords()) {
      if (record.seq >= cork.seq) break;
      if (record.stored) await fsp.rm(path.join(this.tlogDir, record.id), { force: true });
    }
  }

  // ---------------------------------------------------------------------------------------------------
  // Recovery (local restart)

  private async recover(): Promise<void> {
    const cork = this.metadata.getCork();
    const records = this.metadata.tlogRecords();
    assert(records.length > 0, "a volume has at least one TLog record");
    let scoNumberMax = 0;
    const closedScos = new Map<number, number>(); // scoNumber → cluster count
    const scoCrcs = new Map<number, number>(); // scoNumber → CRC of the whole SCO
    const scoClusterEnd = new Map<number, number>(); // referenced SCOs: highest offset + 1
    const pendingUploads: Array<{ record: TlogRecord; scoNumbers: number[]; closed: boolean }> = [];
    let lastScoStored = 0;
    let lowestParsedSco = Number.MAX_SAFE_INTEGER; // SCOs below it belong to stored TLogs not parsed
    for (const [index, record] of records.entries()) {
      const isLast = index === records.length - 1;
      if (record.seq < cork.seq && record.stored) {
        continue; // fully in the map and on the backend
      }
      const bytes = await this.readTlogForRecovery(record);
      const parsed = parseTlog(bytes);
      if (parsed.tailReason !== undefined && parsed.validSizeBytes > 0) {
        this.log.info({ tlog: record.id, reason: parsed.tailReason, validSizeBytes: parsed.validSizeBytes }, "cutting a torn TLog tail");
      }
      const scoNumbers: number[] = [];
      const skip = record.seq === cork.seq ? cork.entryCount : record.seq < cork.seq ? Number.MAX_SAFE_INTEGER : 0;
      for (const [entryIndex, entry] of parsed.entries.entries()) {
        if (entry.kind === EntryKind.Location) {
          scoNumberMax = Math.max(scoNumberMax, entry.scoNumber);
          lowestParsedSco = Math.min(lowestParsedSco, entry.scoNumber);
          scoClusterEnd.set(entry.scoNumber, Math.max(scoClusterEnd.get(entry.scoNumber) ?? 0, entry.offsetClusters + 1));
          if (entryIndex >= skip) {
            const { kind: _kind, clusterAddress, ...location } = entry;
            this.setDirty(clusterAddress, location, record.seq, entryIndex);
          }
        } else if (entry.kind === EntryKind.Trim) {
          if (entryIndex >= skip) this.replayTrim(entry.clusterAddress, entry.clusterCount, record.seq, entryIndex);
        } else if (entry.kind === EntryKind.ScoCrc) {
          scoNumberMax = Math.max(scoNumberMax, entry.scoNumber);
          closedScos.set(entry.scoNumber, entry.clusterCount);
          scoCrcs.set(entry.scoNumber, entry.scoCrc);
          scoNumbers.push(entry.scoNumber);
        }
      }
      if (record.stored) {
        lastScoStored = Math.max(lastScoStored, ...scoNumbers);
        continue;
      }
      // Not on the backend yet: resume writing it (last) or finish closing it, and queue it.
      const validSize = Math.max(parsed.validSizeBytes, 0);
      const entryCount = parsed.entries.length;
      const entriesCrc = entriesCrcOf(bytes, tlogHeaderSizeBytes, entryCount);
      const writer =
        validSize === 0
          ? new TlogWriter({ seq: record.seq, id: record.id, clusterSizeBytes: this.config.clusterSizeBytes })
          : new TlogWriter({ seq: record.seq, id: record.id, resume: { fileSizeBytes: validSize, entryCount, entriesCrc } });
      writer.scoNumbers.push(...scoNumbers);
      if (validSize < bytes.length) {
        // Cut the torn tail (a torn header cuts everything), durably, before anything is appended.
        const file = path.join(this.tlogDir, record.id);
        await fsp.truncate(file, validSize);
        const fd = await openFile(file, "r+");
        await fdatasync(fd);
        await closeFile(fd);
      }
      if (parsed.closed) writer.closed = true;
      this.unsyncedTlogs.push(writer);
      if (!isLast && !writer.closed) writer.close();
      pendingUploads.push({ record, scoNumbers, closed: writer.closed });
      if (isLast) this.currentTlog = writer;
    }
    if (this.currentTlog === undefined || this.currentTlog.closed) {
      // The last TLog was closed: start the next one.
      const last = records.at(-1)!;
      const record: TlogRecord = { seq: last.seq + 1, id: `tlog_${randomUUID()}`, closed: false, stored: false };
      await this.metadata.commit({ tlogs: [record] });
      await this.metadata.flushed();
      this.currentTlog = new TlogWriter({ seq: record.seq, id: record.id, clusterSizeBytes: this.config.clusterSizeBytes });
      this.unsyncedTlogs.push(this.currentTlog);
    }
    // Local SCO files: the one that was open at the crash is closed at its last referenced cluster;
    // files beyond every reference are unsynced leftovers and are removed.
    const files = await fsp.readdir(this.scoDir);
    for (const file of files.sort()) {
      const id = parseScoName(file);
      const full = path.join(this.scoDir, file);
      if (!id) continue;
      const referencedEnd = scoClusterEnd.get(id.scoNumber);
      if (referencedEnd === undefined && !closedScos.has(id.scoNumber)) {
        if (id.scoNumber < Math.min(lowestParsedSco, cork.nextScoNumber ?? 1)) {
          // Part of a stored TLog that needed no replay: a disposable copy of a backend object.
          const stat = await fsp.stat(full);
          this.localScos.set(id.scoNumber, { sizeBytes: stat.size, disposable: true });
        } else {
          await fsp.rm(full, { force: true }); // written after the last sync, never referenced
        }
        continue;
      }
      let clusterCount = closedScos.get(id.scoNumber);
      if (clusterCount === undefined) {
        clusterCount = referencedEnd!;
        await this.closeRecoveredSco(id.scoNumber, full, clusterCount);
      }
      const sizeBytes = clusterCount * this.config.clusterSizeBytes;
      this.localScos.set(id.scoNumber, { sizeBytes, disposable: id.scoNumber <= lastScoStored });
    }
    this.nextScoNumber = Math.max(scoNumberMax + 1, cork.nextScoNumber ?? 1, this.metadata.getScoNumberReservedEnd());
    this.openSco = this.newMemorySco();
    for (const item of pendingUploads) {
      for (const scoNumber of item.scoNumbers) {
        const expectedCrc = scoCrcs.get(scoNumber);
        if (scoNumber > lastScoStored && expectedCrc !== undefined) {
          this.uploader.enqueueSco({ scoNumber, file: this.scoPath(scoNumber), expectedCrc, ready: Promise.resolve() });
        }
      }
    }
    // Closed TLogs are queued by the sync below once their closing entries are durable.
    this.changedSinceSync = true;
    await this.sync();
    this.log.info({ replayedClusters: this.dirty.size, nextScoNumber: this.nextScoNumber }, "volume recovered");
  }

  private async readTlogForRecovery(record: TlogRecord): Promise<Buffer> {
    try {
      return await fsp.readFile(path.join(this.tlogDir, record.id));
    } catch (error) {
      if (!record.stored) {
        // A record is persisted before its file is first written; a missing file means no entries yet.
        return Buffer.alloc(0);
      }
      this.log.info({ tlog: record.id, err: error }, "TLog not local; reading it from the backend");
      return this.backend.get(this.config.namespace, record.id);
    }
  }

  private replayTrim(first: number, count: number, tlogSeq: number, entryIndex: number): void {
    for (const address of this.mappedClustersInRange(first, first + count)) this.setDirty(address, zeroLocation, tlogSeq, entryIndex);
  }

  /** Closes the SCO that was open at a crash: cut at its last referenced cluster, record its CRC. */
  private async closeRecoveredSco(scoNumber: number, file: string, clusterCount: number): Promise<void> {
    const sizeBytes = clusterCount * this.config.clusterSizeBytes;
    await fsp.truncate(file, sizeBytes);
    const data = await fsp.readFile(file);
    const fd = await openFile(file, "r+");
    await fdatasync(fd);
    await closeFile(fd);
    const scoCrc = crc32c(data);
    this.currentTlog.append({ kind: EntryKind.ScoCrc, cloneId: 0, scoNumber, scoVersion: 0, clusterCount, scoCrc });
    this.currentTlog.scoNumbers.push(scoNumber);
    // Its content is final and synced: upload it (before any TLog, which the recovery sync queues).
    this.uploader.enqueueSco({ scoNumber, file, expectedCrc: scoCrc, ready: Promise.resolve(), data });
  }

  // ---------------------------------------------------------------------------------------------------

  private start(): void {
    this.syncTimer = setInterval(() => {
      if (this.changedSinceSync && !this.syncing && !this.halted) this.backgroundSync();
    }, volumeLimits.syncIntervalMs);
    this.syncTimer.unref();
  }

  private halt(error: OvsError): void {
    if (this.halted) return;
    this.halted = new OvsError("IO_ERROR", `volume ${this.config.name} halted after a failed write: ${error.message}; restart it to recover`, undefined, { cause: error });
    this.log.error({ err: error }, "volume halted");
    for (const waiter of this.throttleWaiters.splice(0)) waiter();
  }

  private checkNotHalted(): void {
    if (this.halted) throw this.halted;
    if (this.closing) throw new OvsError("CLOSED", `volume ${this.config.name} is closed`);
  }

  private checkWritable(): void {
    this.checkNotHalted();
  }

  private checkIo(offsetBytes: number, lengthBytes: number, lengthBytesMax: number = volumeLimits.ioLengthBytesMax): void {
    this.checkNotHalted();
    if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0) {
      throw new OvsError("INVALID_ARGUMENT", "offset and length must be non-negative integers");
    }
    if (offsetBytes + lengthBytes > this.config.sizeBytes) {
      throw new OvsError("OUT_OF_RANGE", `I/O at ${offsetBytes}+${lengthBytes} passes the end of the volume (${this.config.sizeBytes} bytes)`);
    }
    if (lengthBytes > lengthBytesMax) throw new OvsError("INVALID_ARGUMENT", `I/O length ${lengthBytes} is above ${lengthBytesMax}`);
  }
}

async function fsyncDirectory(dir: string): Promise<void> {
  const fd = await openFile(dir, "r");
  try {
    await fdatasync(fd);
  } finally {
    await closeFile(fd);
  }
}

export function validateConfig(config: VolumeConfig): void {
  const fail = (message: string): never => {
    throw new OvsError("INVALID_ARGUMENT", message);
  };
  if (config.clusterSizeBytes !== volumeLimits.clusterSizeBytes) fail("the cluster size is fixed at 4096 bytes");
  if (!Number.isSafeInteger(config.sizeBytes) || config.sizeBytes <= 0 || config.sizeBytes % 512 !== 0) fail("the size must be a positive multiple of 512 bytes");
  if (config.sizeBytes > volumeLimits.volumeSizeBytesMax) fail("the size is above the 64 TiB maximum");
  if (Math.ceil(config.sizeBytes / config.clusterSizeBytes) > clusterAddressMax) fail("the size has too many clusters");
  if (config.scoSizeBytes < volumeLimits.scoSizeBytesMin || config.scoSizeBytes > volumeLimits.scoSizeBytesMax || config.scoSizeBytes % config.clusterSizeBytes !== 0) {
    fail("the SCO size must be a multiple of the cluster size between 1 MiB and 128 MiB");
  }
  if (config.scoSizeBytes / config.clusterSizeBytes > 65536) fail("a SCO holds at most 65536 clusters");
  if (!Number.isSafeInteger(config.scoCacheMaxBytes) || config.scoCacheMaxBytes < 0) fail("the SCO cache size must be a non-negative number of bytes (0: no per-volume cap)");
  if (!Number.isInteger(config.tlogMultiplier) || config.tlogMultiplier < 1 || config.tlogMultiplier > 1024) fail("the TLog multiplier must be between 1 and 1024");
}
