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
import { alignedBuffer, assert, BufferPool, directIoAlignmentBytes, Coalescer, DirSync, Crc32cCombiner, crc32c, crc32cBlocks, OvsError, systemErrorCode, type Logger } from "../base/index.js";
import type { ObjectBackend, ObjectUpdate } from "../backend/index.js";
import { MetadataStore, zeroLocation, type ClusterLocation, type CommitBatch, type Cork, type SnapshotRecord, type TlogRecord } from "./metadata-store.js";
import {
  decodeSnapshotsObject,
  encodeOwnerTag,
  encodeSnapshotsObject,
  isValidSnapshotName,
  ownerTagObjectName,
  snapshotLimits,
  snapshotsObjectName,
  type SnapshotsObject,
  type SnapshotsObjectTlog,
} from "./snapshots-object.js";
import { TlogWriter } from "./tlog-writer.js";
import { EntryKind, parseTlog, clusterAddressMax, entriesCrcOf, tlogHeaderSizeBytes } from "./tlog-format.js";
import { parseScoName, scoName } from "./sco-name.js";
import { closeFile, fdatasync, ioError, openFile, preadAll, pwriteAll, removeFile, scoDropBehind, scoReadFds } from "./file-io.js";
import { Uploader } from "./uploader.js";
import { DirtyMap } from "./dirty-map.js";
import { finishInterruptedScrub, runScrub, type ScrubHost, type ScrubOptions, type ScrubReport } from "./scrubber.js";
import type { ReadCacheOwner, ReadCacheOwnerStats } from "./read-cache.js";

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
  /** Clones only: the parent's snapshot this volume was cloned from; reads of unwritten clusters go there. */
  parent?: CloneParent;
  /** A template is read-only and keeps exactly one snapshot, from which clones are made. */
  template?: boolean;
}

export interface CloneParent {
  namespace: string;
  volumeId: string;
  name: string;
  /** The parent's snapshot: its name and its last TLog's seq (the clone sees the parent as of then). */
  snapshot: string;
  tlogSeq: number;
  /** 1 for a clone of a volume that is no clone, 2 for a clone of such a clone, ... */
  depth: number;
}

/** Finds the open volume of a namespace (a clone's parent); the caller (VDiskService) keeps them open. */
export type ParentResolver = (namespace: string) => Volume | undefined;

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
  /**
   * Below this much free space on the write buffer's file system writes wait (they never fail) until
   * eviction or the operator frees space: a full disk would otherwise halt the volume (ENOSPC).
   */
  writeFreeBytesMin: 256 * 1024 * 1024,
  syncIntervalMs: 1000,
  /**
   * SCO rolls between background syncs (besides the timer, FLUSH and TLog rolls): bounds the TLog
   * entries and map updates held in memory without an fsync per SCO.
   */
  scoRollsPerBackgroundSync: 4,
  /** SCO numbers reserved per durable metadata commit (one commit per this many SCOs). */
  scoNumberReservationCount: 256,
  ioLengthBytesMax: 32 * 1024 * 1024,
  /** Clone chain length: every read of an unwritten cluster may walk it. */
  cloneDepthMax: 32,
  /** Map updates held in memory while a restart from the backend replays TLogs (then committed). */
  replayUncommittedClusterCountMax: 256 * 1024,
  zeroChunkBytes: 1024 * 1024,
  /**
   * A SCO whose first write is at least this large is written with O_DIRECT (volumeOs.scoWritesDirect):
   * large writes are streams (copies, imports, backups) whose data is rarely read back soon, and they
   * are where the page cache's copy and writeback cost the most CPU. A SCO started by smaller writes
   * is written through the page cache, which then serves reads of it.
   */
  scoDirectWriteRequestBytesMin: 256 * 1024,
} as const;

/**
 * The volume's view of its file system's free space (a seam: tests swap it to simulate a filling disk).
 * Checked every syncIntervalMs and at each eviction.
 */
export const volumeOs = {
  async statfs(dir: string): Promise<{ freeBytes: number; sizeBytes: number }> {
    const stat = await fsp.statfs(dir);
    return { freeBytes: stat.bavail * stat.bsize, sizeBytes: stat.blocks * stat.bsize };
  },
  /**
   * Write SCO files started by large writes (volumeLimits.scoDirectWriteRequestBytesMin) with O_DIRECT,
   * from the SCO's 4096-aligned buffer (clusters are 4 KiB-aligned in it and in the file): no copy into
   * the page cache and no writeback by the fdatasync that follows. A buffered write + fdatasync of 4 MiB
   * files cost ~1.7–2.0 s of kernel CPU per GiB on this VM, a direct one ~0.9 (dd, 256 files); under
   * sequential NBD writes the node is CPU-bound on 2 cores. Reads of such a SCO once it left memory come
   * from the disk the first time (they fill the page cache as usual). Where the file system refuses
   * O_DIRECT (tmpfs: EINVAL at open) the volume writes buffered.
   */
  scoWritesDirect: true,
};

/**
 * The defaults of DESIGN.md §6, but for the SCO size: 8 MiB with a TLog multiplier of 8 (one of the
 * original's pairings: 4/16, 8/8, 16/4, ...), so a TLog still covers 64 MiB and the write buffer is
 * still 96 MiB. The measured reason: every SCO costs a file created, fdatasynced and closed, and a
 * backend object (on the local backend a hard link, an object file and four syncs; on ALBA a manifest
 * and k + m fragments): 2.5–3 ms of CPU in all on this VM, whatever the SCO's size. With 4 MiB SCOs
 * that was a fifth of the node's CPU under sequential writes (`/work`'s ext4 has no journal, and its
 * inode allocator then steps over every inode freed in the last minute or more, one lookup each).
 * 8 MiB SCOs took node CPU per GiB written from 2.13–2.57 to 1.94–2.08 s and sequential NBD writes
 * from 534–644 to 627–673 MB/s (docs/BENCHMARKS.md). The price: an open SCO's buffer is 8 MiB of
 * memory per written vDisk (taken at the SCO's first write: `scoBufferBytes` in its stats).
 */
export function defaultVolumeSettings(): Pick<VolumeConfig, "clusterSizeBytes" | "scoSizeBytes" | "tlogMultiplier" | "scoCacheMaxBytes"> {
  return { clusterSizeBytes: 4096, scoSizeBytes: 8 * 1024 * 1024, tlogMultiplier: 8, scoCacheMaxBytes: 0 };
}


/** Reads a list of chunks front to back as one byte string (writeChunks). */
class ChunkCursor {
  private index = 0;
  private offset = 0;

  constructor(private readonly chunks: readonly Uint8Array[], readonly length: number) {
    let total = 0;
    for (const chunk of chunks) total += chunk.length;
    assert(total === length, "writeChunks: the chunks' lengths do not add up to lengthBytes");
  }

  /** Copies the next `byteCount` bytes into target[targetOffset...]. */
  copyNext(target: Buffer, targetOffset: number, byteCount: number): void {
    let copied = 0;
    while (copied < byteCount) {
      const chunk = this.chunks[this.index]!;
      const n = Math.min(chunk.length - this.offset, byteCount - copied);
      target.set(chunk.subarray(this.offset, this.offset + n), targetOffset + copied);
      copied += n;
      this.offset += n;
      if (this.offset === chunk.length) {
        this.index++;
        this.offset = 0;
      }
    }
  }
}

/**
 * SCO buffers are reused rather than allocated per SCO: each fresh SCO-sized Buffer is V8 external memory,
 * and at a few hundred MB/s of writes those allocations alone made V8 run a full mark-compact GC about
 * 60 times per GiB written (node --trace-gc on an in-process sequential write). One pool per SCO size,
 * shared by the volumes of the process, keeps at most scoBufferPoolBytesMax of idle buffers.
 */
const scoBufferPools = new Map<number, BufferPool>();
const scoBufferPoolBytesMax = 64 * 1024 * 1024;
/** The data of a SCO closed without a write (never taken from the pool). */
const emptyBytes = Buffer.alloc(0);

function scoBufferPool(scoSizeBytes: number): BufferPool {
  let pool = scoBufferPools.get(scoSizeBytes);
  if (pool === undefined) {
    // Aligned memory, so that SCO files can be written with O_DIRECT from it (volumeOs.scoWritesDirect).
    const aligned = scoSizeBytes % directIoAlignmentBytes === 0;
    pool = new BufferPool(scoSizeBytes, Math.max(2, Math.floor(scoBufferPoolBytesMax / scoSizeBytes)), aligned ? () => alignedBuffer(scoSizeBytes) : undefined);
    scoBufferPools.set(scoSizeBytes, pool);
  }
  return pool;
}

/** A SCO with a memory copy: the open one, and closed ones until they are synced. */
class MemorySco {
  /**
   * Taken from the pool at the first use (the SCO's first write), so that a vDisk that is not written
   * holds no SCO buffer (8 MiB by default) for its open SCO.
   */
  private storage: Buffer | undefined;
  /**
   * Holders of `buffer`: the volume while the SCO is in memoryScos, plus an upload reading from it
   * (only with a backend that releasesDataOnReturn). The last release returns it to the pool; a holder
   * that never releases (a close, a crash, a halted upload) just leaves the buffer to the GC.
   */
  private bufferRefs = 1;
  clusterCount = 0; // clusters allocated (copied into buffer)
  writtenClusterCount = 0; // clusters whose pwrite has been issued
  /** Its file is written with O_DIRECT (decided by its first write: see volumeOs.scoWritesDirect). */
  writeDirect = false;
  fd: number | undefined;
  fdOpening: Promise<number> | undefined;
  batch: { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } | undefined;
  readonly inflight = new Set<Promise<void>>();
  dirtySinceSync = false;
  closed = false;
  /** CRC32C of buffer[0, clusterCount × cluster size), kept up to date from the clusters' CRCs. */
  crc = 0;
  /** Each cluster's CRC32C, for a backend that links the SCO file (its checksum table); else undefined. */
  clusterCrcs: Uint32Array | undefined;

  /** The file was created and its directory entry is not yet known durable. */
  createdSinceSync = false;
  /** Set when the SCO closes: resolves once all its writes are done and its file is fdatasynced. */
  dataSynced: Promise<void> | undefined;

  constructor(readonly scoNumber: number, readonly path: string, private readonly pool: BufferPool, readonly numberReserved: Promise<void>) {}

  get buffer(): Buffer {
    if (this.storage === undefined) {
      assert(this.bufferRefs > 0, "MemorySco.buffer after the last release");
      this.storage = this.pool.take();
    }
    return this.storage;
  }

  /** Bytes of memory its buffer takes: 0 until the SCO's first write. */
  get bufferBytes(): number {
    return this.storage === undefined ? 0 : this.storage.length;
  }

  retainBuffer(): void {
    assert(this.bufferRefs > 0, "MemorySco.retainBuffer after the last release");
    this.bufferRefs++;
  }

  /** Called once per holder, when that holder will not touch `buffer` (or a view of it) again. */
  releaseBuffer(): void {
    assert(this.bufferRefs > 0, "MemorySco.releaseBuffer: released too often");
    if (--this.bufferRefs === 0 && this.storage !== undefined) this.pool.release(this.storage);
  }
}

interface LocalSco {
  readonly sizeBytes: number;
  readonly disposable: boolean;
  /** Written with O_DIRECT: its file has no pages in the page cache to drop once it is stored. */
  readonly direct?: boolean;
}

/**
 * The volume's local SCO files (insertion order = age) with running totals of their bytes and of the
 * non-disposable ones: every write checks the write-buffer limit, and summing thousands of entries per
 * write (a volume keeps every SCO locally until space runs low) grew without bound with the volume's
 * age. Entries are immutable; markDisposable replaces one.
 */
class LocalScoMap extends Map<number, LocalSco> {
  bytes = 0;
  nonDisposableBytes = 0;

  override set(scoNumber: number, sco: LocalSco): this {
    this.forget(super.get(scoNumber));
    this.bytes += sco.sizeBytes;
    if (!sco.disposable) this.nonDisposableBytes += sco.sizeBytes;
    return super.set(scoNumber, sco);
  }

  override delete(scoNumber: number): boolean {
    this.forget(super.get(scoNumber));
    return super.delete(scoNumber);
  }

  override clear(): void {
    this.bytes = 0;
    this.nonDisposableBytes = 0;
    super.clear();
  }

  markDisposable(scoNumber: number): LocalSco | undefined {
    const sco = super.get(scoNumber);
    if (sco === undefined || sco.disposable) return sco;
    this.nonDisposableBytes -= sco.sizeBytes;
    const disposable = { ...sco, disposable: true };
    super.set(scoNumber, disposable); // an existing key keeps its place (age)
    return disposable;
  }

  private forget(sco: LocalSco | undefined): void {
    if (sco === undefined) return;
    this.bytes -= sco.sizeBytes;
    if (!sco.disposable) this.nonDisposableBytes -= sco.sizeBytes;
  }
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
  /**
   * Memory of the SCO buffers the volume holds: the open SCO's once it is written, and closed SCOs' until
   * they are synced (an upload from memory may hold one a little longer).
   */
  scoBufferBytes: number;
  pendingUploads: number;
  /** Writes that waited because non-disposable data was above the write-buffer limit, and how long in all. */
  throttledWrites: number;
  throttledMsTotal: number;
  /** Map updates held in memory, not yet committed to LMDB (bounded by the sync interval). */
  uncommittedClusterCount: number;
  halted: string | undefined;
  /** True when another start of this vDisk took its owner tag: this instance refuses all I/O. */
  fenced: boolean;
  snapshotCount: number;
  /** The vDisk's use of the node's read cache (read-cache.ts), when one is attached. */
  readCache?: ReadCacheOwnerStats;
}

export interface SnapshotInfo {
  number: number;
  name: string;
  createdAt: string;
  sticky: boolean;
  metadata?: string;
  /** Last TLog of the snapshot (its cut in the TLog list). */
  tlogSeq: number;
  /** "stored": listed by the snapshots object on the backend (usable for rollback and clones). */
  state: "stored" | "pending";
}

/** A commit batch waiting for its grouped transaction (Volume.enqueueBatch). */
interface GroupedBatch {
  build: () => CommitBatch;
  map: boolean;
  done: (() => void) | undefined;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** What a restart from the backend did (rebuilt the metadata by replaying the listed TLogs). */
export interface RestoreReport {
  tlogCount: number;
  entryCount: number;
  scoCount: number;
  garbageObjectCount: number;
  durationMs: number;
}

export class Volume {
  config: VolumeConfig;
  private readonly dir: string;
  private readonly scoDir: string;
  private readonly tlogDir: string;
  /** Directory fsyncs of the SCO and TLog folders (new files), coalesced, on descriptors kept open. */
  private readonly scoDirSync: DirSync;
  private readonly tlogDirSync: DirSync;
  private readonly backend: ObjectBackend;
  private readonly log: Logger;
  private readonly baseLog: Logger;
  private readonly metadata: MetadataStore;
  private readonly clustersPerSco: number;
  private readonly dirty = new DirtyMap();
  private readonly memoryScos = new Map<number, MemorySco>();
  private readonly localScos = new LocalScoMap(); // insertion order = age
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
  /** Cleared when the write buffer's file system refuses O_DIRECT (see openScoForWriting). */
  private scoWritesDirect = true;
  /** Commit batches queued for the next grouped transaction (enqueueBatch), while it has not started. */
  private openGroup: GroupedBatch[] | undefined;
  private housekeeping: Promise<void> = Promise.resolve();
  private throttleWaiters: Array<() => void> = [];
  /** The write buffer's file system has less than writeFreeBytesMin free: writes wait. */
  private lowSpace = false;
  private checkingSpace = false;
  private halted: OvsError | undefined;
  private fenced = false;
  private closing = false;
  /** The owner tag this instance took at its start; every backend write asserts it (fencing). */
  private ownerTag: Buffer = Buffer.alloc(0);
  /** Snapshots, in creation (= TLog) order. */
  private snapshots: SnapshotRecord[] = [];
  /** TLogs listed by the snapshots object on the backend, in order. */
  private backendTlogs: SnapshotsObjectTlog[] = [];
  /**
   * Every TLog up to this seq is listed by the snapshots object on the backend and marked stored in the
   * metadata (backendTlogs also holds TLogs put whose commit is still pending).
   */
  private storedThroughSeq = 0;
  private snapshotsGeneration = 0;
  /** Never reused while the volume is open (a delete's commit may still be queued behind a create). */
  private snapshotNumberNext = 1;
  /** Rewrites of the snapshots object; requests while one waits share it (see writeSnapshotsObject). */
  private readonly snapshotsObjectWriter = new Coalescer(() => this.writeSnapshotsObjectNow());
  /** TLogs on the backend whose listing and "stored" records are not committed yet, in seq order. */
  private readonly tlogsToCommitStored: Array<{ record: TlogRecord; scoNumbers: number[] }> = [];
  private readonly storedTlogCommitter = new Coalescer(() => this.commitStoredTlogs());
  private garbageCollection: Promise<void> = Promise.resolve();
  /** Local files of stored TLogs below this seq are removed (removeStoredTlogFiles resumes here). */
  private tlogFilesRemovedBelowSeq = 0;
  /** Finds a clone's parent volume (clones only). */
  private resolveParent: ParentResolver | undefined;
  /** Set when the volume was opened by a restart from the backend. */
  restoreReport: RestoreReport | undefined;
  /** The scrub running, if any (one at a time; close waits for it to stop). */
  private scrubRun: Promise<ScrubReport> | undefined;
  /** Reads in flight: a scrub deletes old SCOs only once every read that may use them has finished. */
  private readonly readsInFlight = new Set<Promise<void>>();
  /** The vDisk's share of the node's read cache (read-cache.ts); none: reads of evicted SCOs go to the backend. */
  private readCache: ReadCacheOwner | undefined;
  private readonly counters = { reads: 0, writes: 0, readBytes: 0, writeBytes: 0, flushes: 0, syncs: 0, backendReads: 0, checksumErrors: 0, throttledWrites: 0, throttledMsTotal: 0 };

  private constructor(dir: string, backend: ObjectBackend, metadata: MetadataStore, config: VolumeConfig, log: Logger) {
    this.dir = dir;
    this.scoDir = path.join(dir, "sco");
    this.tlogDir = path.join(dir, "tlog");
    this.scoDirSync = new DirSync(this.scoDir, ioError);
    this.tlogDirSync = new DirSync(this.tlogDir, ioError);
    this.backend = backend;
    this.metadata = metadata;
    this.config = config;
    this.baseLog = log;
    this.log = log.child({ volume: config.name, namespace: config.namespace });
    this.clustersPerSco = config.scoSizeBytes / config.clusterSizeBytes;
    this.crcCombiner = Crc32cCombiner.forLength(config.clusterSizeBytes);
    this.crcScratch = new Uint32Array(Math.max(this.clustersPerSco, volumeLimits.ioLengthBytesMax / config.clusterSizeBytes + 1));
    this.uploader = new Uploader({
      backend,
      namespace: config.namespace,
      log: this.log,
      onTlogStored: (seq, scoNumbers) => this.tlogStored(seq, scoNumbers),
      put: (name, data, file, blockCrcs) => this.fencedApply([file === undefined ? { kind: "put", name, data } : { kind: "put", name, data, file, ...(blockCrcs ? { blockCrcs } : {}) }]),
      isFatal: () => this.fenced,
    });
  }

  /** Creates a new volume in an empty `dir`, with its namespace on the backend. */
  static async create(options: { dir: string; backend: ObjectBackend; config: VolumeConfig; log: Logger; resolveParent?: ParentResolver }): Promise<Volume> {
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
    const firstTlog: TlogRecord = { seq: 1, id: `tlog_${randomUUID()}`, closed: false, stored: false };
    await metadata.commit({ config, tlogs: [firstTlog], cork: { seq: 1, entryCount: 0 } });
    await metadata.flushed();
    const volume = new Volume(dir, backend, metadata, config, log);
    volume.resolveParent = options.resolveParent;
    volume.ownerTag = await takeOwnerTag(backend, config);
    await volume.fencedApply([{ kind: "put", name: "volume_configuration", data: encodeConfig(config) }]);
    await volume.writeSnapshotsObject();
    volume.currentTlog = new TlogWriter({ seq: 1, id: firstTlog.id, clusterSizeBytes: config.clusterSizeBytes });
    volume.unsyncedTlogs.push(volume.currentTlog);
    volume.openSco = volume.newMemorySco();
    volume.start();
    return volume;
  }

  /**
   * True if `dir` holds a volume's local metadata (else only a restart from the backend can open it).
   * Not while that volume is open in this process (LMDB environments are opened once per process).
   */
  static async hasLocalVolume(dir: string): Promise<boolean> {
    if (!fs.existsSync(path.join(dir, "metadata"))) return false;
    const metadata = MetadataStore.open(path.join(dir, "metadata"));
    try {
      return metadata.getConfig() !== undefined;
    } finally {
      await metadata.close();
    }
  }

  /** Opens an existing volume from its local directory (local restart), replaying TLogs after the cork. */
  static async open(options: { dir: string; backend: ObjectBackend; log: Logger; resolveParent?: ParentResolver }): Promise<Volume> {
    const { dir, backend, log } = options;
    const metadata = MetadataStore.open(path.join(dir, "metadata"));
    const config = metadata.getConfig<VolumeConfig>();
    if (config === undefined) {
      await metadata.close();
      throw new OvsError("NOT_FOUND", `no volume in ${dir}`);
    }
    const rollback = metadata.getValue("rollback");
    if (rollback !== undefined) {
      // A rollback was decided but may not have finished: finish it (it is idempotent).
      await metadata.close();
      return Volume.finishRollback({ dir, backend, log, config, tlogSeq: (JSON.parse(rollback) as { tlogSeq: number }).tlogSeq, resolveParent: options.resolveParent });
    }
    const volume = new Volume(dir, backend, metadata, config, log);
    volume.resolveParent = options.resolveParent;
    try {
      volume.ownerTag = await takeOwnerTag(backend, config);
      volume.loadBookkeeping();
      await volume.recover();
      await finishInterruptedScrub(volume.scrubHost());
    } catch (error) {
      await volume.uploader.stop();
      await metadata.close();
      throw error;
    }
    volume.start();
    return volume;
  }

  /**
   * Restart from the backend: opens the volume of `namespace` in an empty `dir` from its namespace
   * alone (configuration, snapshots object, TLogs, SCOs). Takes a new owner tag first (the previous
   * owner is fenced), then rebuilds the metadata by replaying every listed TLog in order, committing
   * every replayUncommittedClusterCountMax updates (memory bounded by that, not by the volume). SCOs and TLogs the snapshots object does not reach
   * (left by a crash or a rollback) are deleted in the background.
   */
  static async openFromBackend(options: { dir: string; backend: ObjectBackend; namespace: string; log: Logger; resolveParent?: ParentResolver }): Promise<Volume> {
    const { dir, backend, namespace, log } = options;
    const startedAt = performance.now();
    const config = JSON.parse((await backend.get(namespace, "volume_configuration")).toString("utf8")) as VolumeConfig;
    validateConfig(config);
    if (config.namespace !== namespace) throw new OvsError("CORRUPT", `the configuration in namespace ${namespace} names namespace ${config.namespace}`);
    const ownerTag = await takeOwnerTag(backend, config);
    // Read after taking the tag: the previous owner can change nothing any more.
    const decoded = decodeSnapshotsObject(await backend.get(namespace, snapshotsObjectName));
    if (!decoded.ok) throw new OvsError("CORRUPT", `the snapshots object of ${namespace} is unreadable: ${decoded.reason}`);
    const listed = decoded.value;
    const objects = await listAll(backend, namespace);
    let scoNumberMax = 0;
    const scoObjects = new Map<number, string>();
    const tlogObjects = new Set<string>();
    for (const name of objects) {
      const id = parseScoName(name);
      if (id && id.cloneId === 0) {
        scoNumberMax = Math.max(scoNumberMax, id.scoNumber);
        scoObjects.set(id.scoNumber, name);
      } else if (name.startsWith("tlog_")) {
        tlogObjects.add(name);
      }
    }
    await fsp.mkdir(path.join(dir, "sco"), { recursive: true });
    await fsp.mkdir(path.join(dir, "tlog"), { recursive: true });
    const metadata = MetadataStore.open(path.join(dir, "metadata"));
    if (metadata.getConfig() !== undefined) {
      await metadata.close();
      throw new OvsError("ALREADY_EXISTS", `a volume already exists in ${dir}; a restart from the backend needs an empty directory`);
    }
    const lastSeq = listed.tlogs.at(-1)?.seq ?? 0;
    const firstSeq = listed.tlogs[0]?.seq ?? lastSeq + 1;
    await metadata.commit({
      config,
      tlogs: listed.tlogs.map((t) => ({ seq: t.seq, id: t.id, closed: true, stored: true })),
      snapshots: listed.snapshots.map((snap) => ({ ...snap, stored: true })),
      cork: { seq: firstSeq, entryCount: 0 },
    });
    const volume = new Volume(dir, backend, metadata, config, log);
    volume.resolveParent = options.resolveParent;
    volume.ownerTag = ownerTag;
    volume.snapshotsGeneration = listed.generation;
    volume.snapshots = metadata.snapshotRecords(); // replay keeps the versions these snapshots see
    const referenced = new Set<number>();
    let entryCount = 0;
    try {
      for (const tlog of listed.tlogs) {
        const parsed = parseTlog(await backend.get(namespace, tlog.id));
        if (parsed.tailReason !== undefined || !parsed.closed) {
          throw new OvsError("CORRUPT", `TLog ${tlog.id} on the backend is damaged: ${parsed.tailReason ?? "not closed"}`);
        }
        for (const [entryIndex, entry] of parsed.entries.entries()) {
          if (entry.kind === EntryKind.Location) {
            const { kind: _kind, clusterAddress, ...location } = entry;
            volume.setDirty(clusterAddress, location, tlog.seq, entryIndex);
            referenced.add(entry.scoNumber);
          } else if (entry.kind === EntryKind.Trim) {
            volume.replayTrim(entry.clusterAddress, entry.clusterCount, tlog.seq, entryIndex);
          } else if (entry.kind === EntryKind.ScoCrc) {
            referenced.add(entry.scoNumber);
            scoNumberMax = Math.max(scoNumberMax, entry.scoNumber);
          }
        }
        entryCount += parsed.entries.length;
        // Commit in batches: memory stays bounded by replayUncommittedClusterCountMax, not volume size.
        if (volume.dirty.size >= volumeLimits.replayUncommittedClusterCountMax || tlog === listed.tlogs.at(-1)) {
          await volume.commitMetadata({ seq: tlog.seq + 1, entryCount: 0 });
        }
      }
      for (const scoNumber of referenced) {
        if (!scoObjects.has(scoNumber)) throw new OvsError("CORRUPT", `SCO ${scoName({ cloneId: 0, scoNumber, version: 0 })} named by a stored TLog is missing from the backend`);
      }
      const nextScoNumber = scoNumberMax + 1;
      const open: TlogRecord = { seq: lastSeq + 1, id: `tlog_${randomUUID()}`, closed: false, stored: false };
      await metadata.commit({ tlogs: [open], cork: { seq: lastSeq + 1, entryCount: 0, nextScoNumber }, scoNumberReservedEnd: nextScoNumber });
      await metadata.flushed();
      volume.loadBookkeeping();
      await volume.recover();
    } catch (error) {
      await volume.uploader.stop();
      await metadata.close();
      throw error;
    }
    const listedIds = new Set(listed.tlogs.map((t) => t.id));
    const garbage = [
      ...[...tlogObjects].filter((name) => !listedIds.has(name)),
      ...[...scoObjects].filter(([number]) => !referenced.has(number)).map(([, name]) => name),
    ];
    volume.restoreReport = {
      tlogCount: listed.tlogs.length,
      entryCount,
      scoCount: referenced.size,
      garbageObjectCount: garbage.length,
      durationMs: Math.round((performance.now() - startedAt) * 1000) / 1000,
    };
    volume.log.info(volume.restoreReport, "volume restarted from the backend");
    volume.start();
    if (garbage.length > 0) volume.garbageCollection = volume.collectGarbage(garbage);
    return volume;
  }

  get name(): string {
    return this.config.name;
  }

  get sizeBytes(): number {
    return this.config.sizeBytes;
  }

  get clusterSizeBytes(): number {
    return this.config.clusterSizeBytes;
  }

  /**
   * Clusters in [firstCluster, endCluster) that may read as non-zero, ascending: mapped to data here, or
   * (a clone) not mapped here and possibly mapped in its parent chain. Every other cluster of the range
   * reads as zeroes. Synchronous, so every write acknowledged before the call is seen.
   */
  clustersMaybeData(firstCluster: number, endCluster: number): number[] {
    return this.maybeDataScan(firstCluster, endCluster)(endCluster);
  }

  /**
   * The same in steps: returns `next(until)`, which gives the maybe-data clusters from where the last
   * step ended up to `until` (ascending, until <= endCluster). For block status, which looks at a range
   * in growing windows and stops early. Valid only within the synchronous call that made it (the
   * uncommitted layer is read once, at the start). Cost per step: the committed map entries of the
   * step's range, read in place (about 0.1 µs each; a lookup object per cluster cost 1.7 µs), plus one
   * pass over the uncommitted layer per scan.
   */
  maybeDataScan(firstCluster: number, endCluster: number): (untilCluster: number) => number[] {
    this.checkNotHalted();
    let position = firstCluster;
    if (this.config.parent !== undefined) {
      // A clone: its parent chain's candidates are an unordered superset; each one is looked up.
      return (untilCluster) => {
        const clusters: number[] = [];
        for (const address of this.mappedClustersInRange(position, untilCluster)) {
          const location = this.lookup(address);
          if (location === undefined || location.scoNumber !== 0) clusters.push(address);
        }
        position = untilCluster;
        return clusters.sort((a, b) => a - b);
      };
    }
    // The uncommitted layer overrides the committed map; its data addresses are merged in order.
    const uncommitted = this.dirty.scoNumbersInRange(firstCluster, endCluster);
    const uncommittedData: number[] = [];
    for (const [address, scoNumber] of uncommitted) if (scoNumber !== 0) uncommittedData.push(address);
    uncommittedData.sort((a, b) => a - b);
    let next = 0;
    return (untilCluster) => {
      assert(untilCluster >= position && untilCluster <= endCluster, "maybeDataScan: steps go forward within the range");
      const clusters: number[] = [];
      this.metadata.forEachCommittedInRange(position, untilCluster, (address, scoNumber) => {
        while (next < uncommittedData.length && uncommittedData[next]! < address) clusters.push(uncommittedData[next++]!);
        if (scoNumber !== 0 && !uncommitted.has(address)) clusters.push(address);
      });
      while (next < uncommittedData.length && uncommittedData[next]! < untilCluster) clusters.push(uncommittedData[next++]!);
      position = untilCluster;
      return clusters;
    };
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

  /**
   * write() of the concatenation of `chunks` (lengthBytes in all): the NBD server hands over a payload
   * that spans socket chunks as views of them, and aligned writes copy them straight into the SCO buffer
   * (one copy instead of a gather plus a copy). The chunks are only read, until the promise settles.
   */
  async writeChunks(offsetBytes: number, chunks: readonly Uint8Array[], lengthBytes: number, fua = false): Promise<void> {
    const clusterSize = this.config.clusterSizeBytes;
    if (offsetBytes % clusterSize !== 0 || lengthBytes % clusterSize !== 0) return this.write(offsetBytes, Buffer.concat(chunks, lengthBytes), fua);
    this.checkIo(offsetBytes, lengthBytes);
    this.checkWritable();
    this.counters.writes++;
    this.counters.writeBytes += lengthBytes;
    if (lengthBytes > 0) await this.writeClusters(offsetBytes / clusterSize, new ChunkCursor(chunks, lengthBytes));
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
    await this.fencedApply([{ kind: "put", name: "volume_configuration", data: encodeConfig(config) }]);
    this.config = config;
  }

  /**
   * Changes the per-volume cap on local SCO bytes (0 = none) while the volume serves I/O: persisted
   * locally and in volume_configuration, then applied; eviction only ever drops disposable SCOs (on the
   * backend already), so a lower cap is safe at any time and takes effect at the next housekeeping run,
   * started here.
   */
  async setScoCacheMax(scoCacheMaxBytes: number): Promise<void> {
    this.checkNotHalted();
    const config = { ...this.config, scoCacheMaxBytes };
    validateConfig(config);
    await this.enqueueCommit(async () => {
      await this.metadata.commit({ config });
      await this.metadata.flushed();
    });
    await this.fencedApply([{ kind: "put", name: "volume_configuration", data: encodeConfig(config) }]);
    this.config = { ...this.config, scoCacheMaxBytes };
    this.housekeeping = this.housekeeping
      .then(() => this.evictScos())
      .catch((error: unknown) => this.log.warn({ err: error }, "write buffer housekeeping failed"));
    await this.housekeeping;
  }

  /** Attaches the node's read cache (its mode, quota and counters belong to the vDisk, not this instance). */
  setReadCache(owner: ReadCacheOwner | undefined): void {
    this.readCache = owner;
  }

  stats(): VolumeStats {
    let localScoBytes = 0;
    let nonDisposableBytes = 0;
    for (const sco of this.localScos.values()) {
      localScoBytes += sco.sizeBytes;
      if (!sco.disposable) nonDisposableBytes += sco.sizeBytes;
    }
    assert(localScoBytes === this.localScos.bytes && nonDisposableBytes === this.localScos.nonDisposableBytes, "the local SCO totals match their entries");
    let scoBufferBytes = 0;
    for (const sco of this.memoryScos.values()) scoBufferBytes += sco.bufferBytes;
    const uploads = this.uploader.stats();
    return {
      ...this.counters,
      throttledMsTotal: Math.round(this.counters.throttledMsTotal),
      scoUploads: uploads.scoUploads,
      tlogUploads: uploads.tlogUploads,
      pendingUploads: uploads.pending,
      localScoBytes,
      nonDisposableBytes,
      scoBufferBytes,
      uncommittedClusterCount: this.dirty.size,
      halted: this.halted?.message,
      fenced: this.fenced,
      snapshotCount: this.snapshots.length,
      ...(this.readCache ? { readCache: this.readCache.stats() } : {}),
    };
  }

  // ---------------------------------------------------------------------------------------------------
  // Snapshots (docs/formats/snapshots.md)

  /**
   * Takes a snapshot: a cut in the TLog list. The open SCO and the current TLog are closed (the TLog
   * after the cut starts empty), the snapshot is recorded durably in the metadata, and the call returns
   * once every write acknowledged before it is durable (a snapshot implies a flush). No data is copied:
   * the cost is one SCO close, one sync and one metadata commit, whatever the volume's size. The
   * snapshot is "pending" until its TLogs and then the snapshots object naming it are on the backend.
   */
  async createSnapshot(name: string, options: { metadata?: string; sticky?: boolean } = {}): Promise<SnapshotInfo> {
    this.checkWritable();
    if (!isValidSnapshotName(name)) {
      throw new OvsError("INVALID_ARGUMENT", `"${String(name)}" is not a valid snapshot name: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.`);
    }
    if (options.metadata !== undefined && (typeof options.metadata !== "string" || Buffer.byteLength(options.metadata) > snapshotLimits.metadataBytesMax)) {
      throw new OvsError("INVALID_ARGUMENT", `snapshot metadata must be a string of at most ${snapshotLimits.metadataBytesMax} bytes`);
    }
    if (this.snapshots.some((snapshot) => snapshot.name === name)) throw new OvsError("ALREADY_EXISTS", `volume ${this.name} already has a snapshot named ${name}`);
    if (this.snapshots.length >= snapshotLimits.snapshotCountMax) {
      throw new OvsError("CONFLICT", `volume ${this.name} has ${this.snapshots.length} snapshots, the maximum; delete some first`);
    }
    return this.takeSnapshot(name, options);
  }

  private async takeSnapshot(name: string, options: { metadata?: string; sticky?: boolean }): Promise<SnapshotInfo> {
    // Synchronous up to the push: concurrent creates see each other's names, and the TLog cannot be
    // stored (which marks snapshots stored) before the record is in the list.
    if (this.openSco.clusterCount > 0) this.rollSco(true);
    else this.rollTlog();
    const record: SnapshotRecord = {
      number: this.snapshotNumberNext++,
      name,
      createdAt: new Date().toISOString(),
      tlogSeq: this.currentTlog.seq - 1,
      sticky: options.sticky === true,
      ...(options.metadata !== undefined ? { metadata: options.metadata } : {}),
      stored: false,
    };
    this.snapshots.push(record);
    const committed = this.enqueueCommit(async () => {
      await this.metadata.commit({ snapshots: [record] });
      await this.metadata.flushed();
    });
    await Promise.all([this.sync(), committed]);
    return snapshotInfo(record);
  }

  listSnapshots(): SnapshotInfo[] {
    return this.snapshots.map(snapshotInfo);
  }

  /** 0 for a volume that is no clone, else the length of its parent chain. */
  get cloneDepth(): number {
    return this.config.parent?.depth ?? 0;
  }

  get isTemplate(): boolean {
    return this.config.template === true;
  }

  /**
   * Creates a linked clone of a stored snapshot of `parent` in an empty `dir`, in its own namespace.
   * Nothing of the parent is copied or replayed: the clone's reads of clusters it never wrote look
   * through the parent's metadata as of the snapshot (and its parent's, and so on), so creation costs
   * the same at any parent size. The parent must stay open on this node while the clone is.
   */
  static async createClone(options: {
    dir: string;
    backend: ObjectBackend;
    parent: Volume;
    snapshot: string;
    identity: Pick<VolumeConfig, "id" | "name" | "namespace" | "createdAt">;
    log: Logger;
    resolveParent: ParentResolver;
  }): Promise<Volume> {
    const { parent } = options;
    parent.checkNotHalted();
    const snapshot = parent.snapshots.find((s) => s.name === options.snapshot);
    if (!snapshot) throw new OvsError("NOT_FOUND", `volume ${parent.name} has no snapshot named ${options.snapshot}`);
    if (!snapshot.stored) throw new OvsError("CONFLICT", `snapshot ${options.snapshot} of volume ${parent.name} is not on the backend yet; retry once its state is "stored"`);
    const depth = parent.cloneDepth + 1;
    if (depth > volumeLimits.cloneDepthMax) throw new OvsError("CONFLICT", `a clone of ${parent.name} would be ${depth} clones deep; the maximum is ${volumeLimits.cloneDepthMax}`);
    const p = parent.config;
    const config: VolumeConfig = {
      ...options.identity,
      sizeBytes: p.sizeBytes,
      clusterSizeBytes: p.clusterSizeBytes,
      scoSizeBytes: p.scoSizeBytes,
      tlogMultiplier: p.tlogMultiplier,
      scoCacheMaxBytes: p.scoCacheMaxBytes,
      parent: { namespace: p.namespace, volumeId: p.id, name: p.name, snapshot: snapshot.name, tlogSeq: snapshot.tlogSeq, depth },
    };
    return Volume.create({ dir: options.dir, backend: options.backend, config, log: options.log, resolveParent: options.resolveParent });
  }

  /**
   * Makes the volume a template: writes stop, one snapshot of the current state is taken and stored,
   * every other snapshot is deleted, and the template flag is persisted (locally and in
   * volume_configuration). The caller makes sure no clone depends on the snapshots deleted. `onStep`
   * sees each of templateSteps steps begin: snapshot, upload of the write buffer, deletion of the other
   * snapshots, the flag persisted.
   */
  async setAsTemplate(onStep?: (step: number, detail: string) => void): Promise<SnapshotInfo> {
    this.checkWritable();
    const before = this.config;
    this.config = { ...before, template: true }; // writes are refused from here on
    try {
      let name = "template";
      for (let n = 2; this.snapshots.some((s) => s.name === name); n++) name = `template-${n}`;
      onStep?.(0, `taking snapshot ${name}`);
      const info = await this.takeSnapshot(name, { sticky: true });
      onStep?.(1, "uploading the write buffer to the backend");
      await this.syncToBackend();
      const others = this.snapshots.filter((s) => s.name !== name);
      onStep?.(2, `deleting ${others.length} other snapshot${others.length === 1 ? "" : "s"}`);
      for (const other of others) await this.deleteSnapshot(other.name);
      onStep?.(3, "recording the template flag");
      await this.enqueueCommit(async () => {
        await this.metadata.commit({ config: this.config });
        await this.metadata.flushed();
      });
      await this.fencedApply([{ kind: "put", name: "volume_configuration", data: encodeConfig(this.config) }]);
      return { ...info, state: "stored" };
    } catch (error) {
      this.config = before;
      throw error;
    }
  }

  /**
   * Deletes a snapshot: only its cut goes; its TLogs now belong to the next snapshot (or to the
   * current state). No data is freed here (scrubbing does that).
   */
  async deleteSnapshot(name: string): Promise<void> {
    this.checkNotHalted();
    const index = this.snapshots.findIndex((snapshot) => snapshot.name === name);
    if (index === -1) throw new OvsError("NOT_FOUND", `volume ${this.name} has no snapshot named ${name}`);
    if (this.config.template && this.snapshots.length === 1) throw new OvsError("CONFLICT", `volume ${this.config.name} is a template: its one snapshot is kept`);
    const [record] = this.snapshots.splice(index, 1);
    // Listed (or being listed) once its last TLog is: its "stored" flag may lag the object write.
    if (record!.tlogSeq <= (this.backendTlogs.at(-1)?.seq ?? 0)) {
      try {
        await this.writeSnapshotsObject();
      } catch (error) {
        this.snapshots.splice(index, 0, record!);
        throw error;
      }
    }
    await this.enqueueCommit(async () => {
      await this.metadata.commit({ deleteSnapshots: [record!.number] });
      await this.metadata.flushed();
    });
  }

  /**
   * Rolls the volume back to a snapshot that is on the backend: later snapshots and TLogs are dropped,
   * the metadata is rebuilt from the TLogs up to the snapshot (a restart from the backend), and the
   * objects nothing names any more are deleted in the background. Writes not in the snapshot are lost,
   * by request. This instance is closed; the returned one serves the volume. The caller makes sure no
   * client is using the volume. A crash in the middle is finished at the next open (the intent is
   * recorded durably first).
   */
  async rollback(name: string): Promise<Volume> {
    this.checkWritable();
    const record = this.snapshots.find((snapshot) => snapshot.name === name);
    if (!record) throw new OvsError("NOT_FOUND", `volume ${this.name} has no snapshot named ${name}`);
    if (!record.stored) throw new OvsError("CONFLICT", `snapshot ${name} of volume ${this.name} is not on the backend yet; retry once its state is "stored"`);
    if (this.scrubRun) throw new OvsError("CONFLICT", `volume ${this.name} is being scrubbed; retry the rollback when the scrub has finished`);
    await this.enqueueCommit(async () => {
      await this.metadata.commit({ values: { rollback: JSON.stringify({ snapshot: name, tlogSeq: record.tlogSeq }) } });
      await this.metadata.flushed();
    });
    await this.close();
    return Volume.finishRollback({ dir: this.dir, backend: this.backend, log: this.baseLog, config: this.config, tlogSeq: record.tlogSeq, resolveParent: this.resolveParent });
  }

  private static async finishRollback(options: { dir: string; backend: ObjectBackend; log: Logger; config: VolumeConfig; tlogSeq: number; resolveParent: ParentResolver | undefined }): Promise<Volume> {
    const { dir, backend, log, config, tlogSeq } = options;
    const ownerTag = await takeOwnerTag(backend, config);
    const decoded = decodeSnapshotsObject(await backend.get(config.namespace, snapshotsObjectName));
    if (!decoded.ok) throw new OvsError("CORRUPT", `the snapshots object of ${config.namespace} is unreadable: ${decoded.reason}`);
    const listed = decoded.value;
    if (!listed.tlogs.some((t) => t.seq === tlogSeq)) throw new OvsError("CORRUPT", `the snapshots object of ${config.namespace} lacks TLog ${tlogSeq}, the rollback target's last`);
    const truncated: SnapshotsObject = {
      ...listed,
      generation: listed.generation + 1,
      tlogs: listed.tlogs.filter((t) => t.seq <= tlogSeq),
      snapshots: listed.snapshots.filter((snapshot) => snapshot.tlogSeq <= tlogSeq),
    };
    // The commit point of the rollback: from here on the backend says the volume is the snapshot.
    await backend.apply(
      config.namespace,
      [{ kind: "equals", name: ownerTagObjectName, value: ownerTag }],
      [{ kind: "put", name: snapshotsObjectName, data: encodeSnapshotsObject(truncated) }],
    );
    // Out of the way in one step (a crash during a recursive rm must not leave half a volume at `dir`).
    const old = `${dir}.rolled-back`;
    await fsp.rm(old, { recursive: true, force: true });
    await fsp.rename(dir, old).catch((error: unknown) => {
      if (systemErrorCode(error) !== "ENOENT") throw error;
    });
    await fsp.rm(old, { recursive: true, force: true });
    return Volume.openFromBackend({ dir, backend, namespace: config.namespace, log, resolveParent: options.resolveParent });
  }

  // ---------------------------------------------------------------------------------------------------
  // Scrubbing (algorithm in scrubber.ts)

  /**
   * Scrubs the volume while it serves I/O: SCOs on the backend whose live fraction is under the
   * threshold have their live clusters rewritten into new SCOs, the TLogs naming them are replaced,
   * and the old objects are deleted once nothing can read them. One scrub at a time (CONFLICT).
   */
  async scrub(options: ScrubOptions = {}): Promise<ScrubReport> {
    this.checkNotHalted();
    if (this.scrubRun) throw new OvsError("CONFLICT", `volume ${this.name} is already being scrubbed`);
    const run = runScrub(this.scrubHost(), options);
    this.scrubRun = run;
    try {
      return await run;
    } finally {
      this.scrubRun = undefined;
    }
  }

  get scrubbing(): boolean {
    return this.scrubRun !== undefined;
  }

  private scrubHost(): ScrubHost {
    return {
      name: this.config.name,
      namespace: this.config.namespace,
      clusterSizeBytes: this.config.clusterSizeBytes,
      scoSizeBytes: this.config.scoSizeBytes,
      backend: this.backend,
      log: this.log,
      metadata: this.metadata,
      scoDir: this.scoDir,
      tlogDir: this.tlogDir,
      storeWrittenSoFar: async (timeoutMs) => {
        this.checkNotHalted();
        if (this.openSco.clusterCount > 0) this.rollSco(true);
        else if (this.currentTlog.entryCount > 0) this.rollTlog();
        const seq = this.currentTlog.seq - 1;
        await this.sync();
        const deadline = Date.now() + timeoutMs;
        // Committed as stored, not only put: the scrub rewrites these TLogs' records, which a pending
        // stored-TLog commit would overwrite with the old names.
        while (this.storedThroughSeq < seq) {
          this.checkNotHalted();
          if (Date.now() > deadline) throw new OvsError("UNAVAILABLE", `the backend did not take volume ${this.name}'s TLogs within ${timeoutMs} ms; the scrub did not start`);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      },
      backendTlogs: () => this.backendTlogs,
      renameBackendTlogs: (ids) => {
        this.backendTlogs = this.backendTlogs.map((tlog) => ({ seq: tlog.seq, id: ids.get(tlog.seq) ?? tlog.id }));
      },
      snapshotSeqs: () => this.snapshots.map((snapshot) => snapshot.tlogSeq).sort((a, b) => a - b),
      writeSnapshotsObject: () => this.writeSnapshotsObject(),
      fencedApply: (updates) => this.fencedApply(updates),
      enqueueCommit: (work) => this.enqueueCommit(work),
      allocateScoNumber: async () => {
        const scoNumber = this.takeScoNumber();
        await this.scoNumberReserved;
        return scoNumber;
      },
      drainReads: async () => {
        await Promise.allSettled([...this.readsInFlight]);
      },
      forgetLocalSco: async (scoNumber) => {
        if (this.localScos.get(scoNumber)?.disposable === false) return; // only copies of backend objects
        const file = this.scoPath(scoNumber);
        scoReadFds.forget(file);
        await fsp.rm(file, { force: true });
        this.localScos.delete(scoNumber);
      },
      stopping: () => this.closing || this.halted !== undefined,
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
    this.checkNotHalted(); // e.g. fenced while uploading
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
    await this.scrubRun?.catch(() => undefined); // it stops at its next step (stopping() is true)
    await this.committing;
    await this.uploader.stop();
    await this.storedTlogCommitter.settled();
    await this.housekeeping;
    await this.snapshotsObjectWriter.settled();
    await this.garbageCollection;
    await this.committing;
    for (const waiter of this.throttleWaiters.splice(0)) waiter();
    for (const sco of this.memoryScos.values()) if (sco.fd !== undefined) await closeFile(sco.fd);
    for (const fd of this.tlogFds.values()) await closeFile(fd);
    this.scoDirSync.close();
    this.tlogDirSync.close();
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
    await this.scrubRun?.catch(() => undefined);
    await this.committing;
    await this.uploader.stop();
    await this.storedTlogCommitter.settled();
    await this.housekeeping;
    await this.snapshotsObjectWriter.settled();
    await this.garbageCollection;
    await this.committing;
    for (const sco of this.memoryScos.values()) if (sco.fd !== undefined) await closeFile(sco.fd);
    for (const fd of this.tlogFds.values()) await closeFile(fd);
    this.scoDirSync.close();
    this.tlogDirSync.close();
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

  /** `data` is one buffer, or chunks whose concatenation is the data (copied from in place). */
  private async writeClusters(firstCluster: number, data: Uint8Array | ChunkCursor): Promise<void> {
    if (this.lowSpace || this.nonDisposableBytes() > this.nonDisposableLimitBytes()) await this.throttle();
    this.checkWritable();
    const clusterSize = this.config.clusterSizeBytes;
    const clusterCount = data.length / clusterSize;
    assert(Number.isInteger(clusterCount));
    const source = data instanceof ChunkCursor ? data : Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length);
    const batches: Promise<void>[] = [];
    let done = 0;
    while (done < clusterCount) {
      const sco = this.openSco;
      const count = Math.min(clusterCount - done, this.clustersPerSco - sco.clusterCount);
      const tlog = this.currentTlog;
      const scoOffsetBytes = sco.clusterCount * clusterSize;
      if (sco.clusterCount === 0) sco.writeDirect = data.length >= volumeLimits.scoDirectWriteRequestBytesMin;
      if (source instanceof ChunkCursor) source.copyNext(sco.buffer, scoOffsetBytes, count * clusterSize);
      else source.copy(sco.buffer, scoOffsetBytes, done * clusterSize, (done + count) * clusterSize);
      const crcs = this.crcScratch;
      crc32cBlocks(sco.buffer.subarray(scoOffsetBytes, scoOffsetBytes + count * clusterSize), clusterSize, crcs);
      sco.clusterCrcs?.set(crcs.subarray(0, count), sco.clusterCount);
      const firstAddress = firstCluster + done;
      const firstEntryIndex = tlog.appendLocationRun(firstAddress, count, sco.scoNumber, sco.clusterCount, crcs);
      let scoCrc = sco.crc;
      for (let i = 0; i < count; i++) {
        const dataCrc = crcs[i]!;
        scoCrc = this.crcCombiner.combine(scoCrc, dataCrc);
        this.dirty.setWritten(firstAddress + i, sco.scoNumber, sco.clusterCount + i, dataCrc, tlog.seq, firstEntryIndex + i);
      }
      sco.crc = scoCrc;
      this.readCache?.populateFromWrite(this.config.namespace, sco.scoNumber, 0, sco.clusterCount, count, sco.buffer.subarray(scoOffsetBytes, scoOffsetBytes + count * clusterSize), crcs);
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
    // A clone must hide its parent's clusters too: zero every address the parent chain may map.
    if (this.config.parent) for (const address of this.parentVolume().everMappedInRange(first, end)) addresses.add(address);
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
    sco.fdOpening ??= this.openScoForWriting(sco).then((fd) => {
      sco.createdSinceSync = true;
      return (sco.fd = fd);
    });
    return sco.fdOpening;
  }

  /** Whether a SCO's file is (to be) written with O_DIRECT. */
  private writesDirect(sco: MemorySco): boolean {
    // The SCO's buffer is scoSizeBytes long (its pool's size); reading sco.buffer here would take one.
    const aligned = this.config.clusterSizeBytes % directIoAlignmentBytes === 0 && this.config.scoSizeBytes % directIoAlignmentBytes === 0;
    return sco.writeDirect && this.scoWritesDirect && volumeOs.scoWritesDirect && aligned;
  }

  /** Opens a new SCO's file for its writes: with O_DIRECT when volumeOs.scoWritesDirect and the file system allow. */
  private async openScoForWriting(sco: MemorySco): Promise<number> {
    const flags = fs.constants.O_RDWR | fs.constants.O_CREAT;
    if (this.writesDirect(sco)) {
      try {
        return await openFile(sco.path, flags | fs.constants.O_DIRECT);
      } catch (error) {
        if (systemErrorCode(error) !== "EINVAL") throw error;
        this.scoWritesDirect = false;
        this.log.info({ dir: this.scoDir }, "the write buffer's file system refuses O_DIRECT: SCO files are written through the page cache");
      }
    }
    return openFile(sco.path, flags);
  }

  private newMemorySco(): MemorySco {
    const scoNumber = this.takeScoNumber();
    const name = scoName({ cloneId: 0, scoNumber, version: 0 });
    const sco = new MemorySco(scoNumber, path.join(this.scoDir, name), scoBufferPool(this.config.scoSizeBytes), this.scoNumberReserved);
    // The local backend's checksum blocks are 4 KiB: the clusters' CRCs are its table.
    if (this.backend.linksFiles === true && this.config.clusterSizeBytes === 4096) sco.clusterCrcs = new Uint32Array(this.clustersPerSco);
    this.memoryScos.set(scoNumber, sco);
    this.localScos.set(scoNumber, { sizeBytes: 0, disposable: false });
    return sco;
  }

  /** The next SCO number; usable once this.scoNumberReserved (as of the call) resolves. */
  private takeScoNumber(): number {
    const scoNumber = this.nextScoNumber++;
    if (scoNumber >= this.scoNumberReservedEnd) {
      // SCOs reach the backend before any TLog names them, so their numbers are reserved durably ahead:
      // a restart continues after the reservation and never reuses a number the backend may hold.
      const end = scoNumber + volumeLimits.scoNumberReservationCount;
      this.scoNumberReservedEnd = end;
      this.scoNumberReserved = this.enqueueDurableBatch(() => ({ scoNumberReservedEnd: end }));
      this.scoNumberReserved.catch((error: unknown) => this.halt(error instanceof OvsError ? error : ioError(error, "SCO number reservation")));
    }
    return scoNumber;
  }

  /** Closes the open SCO into the current TLog and opens the next; closes the TLog every N SCOs. */
  private rollSco(closeTlog: boolean): void {
    const sco = this.openSco;
    sco.closed = true;
    const sizeBytes = sco.clusterCount * this.config.clusterSizeBytes;
    this.localScos.set(sco.scoNumber, { sizeBytes, disposable: false, direct: this.writesDirect(sco) });
    const data = sizeBytes === 0 ? emptyBytes : sco.buffer.subarray(0, sizeBytes);
    const scoCrc = sco.crc; // combined from the clusters' CRCs (no pass over the SCO)
    this.currentTlog.append({ kind: EntryKind.ScoCrc, cloneId: 0, scoNumber: sco.scoNumber, scoVersion: 0, clusterCount: sco.clusterCount, scoCrc });
    this.currentTlog.scoNumbers.push(sco.scoNumber);
    // Its content is final: upload it now, from memory, once its number is durably reserved. The TLog
    // naming it waits for it (barrier), and it becomes disposable only once that TLog is stored.
    // The upload holds the buffer too when the backend is done with it on return (else no pooling).
    const pooled = this.backend.releasesDataOnReturn === true;
    if (pooled) sco.retainBuffer();
    // A backend that links files (the local one) stores the SCO file itself once its writes are done:
    // each byte reaches the disk once. The file is never changed again (see closeRecoveredSco).
    const fileWritten = this.backend.linksFiles === true ? this.scoFileWritten(sco) : undefined;
    if (sco.clusterCount > 0) {
      // Its data is final: its fdatasync starts as soon as its writes are done, beside the writes of the
      // next SCO, and the sync step (one at a time) only waits for it. Done inside the sync step, these
      // fdatasyncs were most of its time: 79 ms from a TLog's close to its sync under sequential writes.
      sco.dataSynced = (fileWritten ?? this.scoFileWritten(sco)).then(async () => fdatasync(await this.scoFd(sco)));
      sco.dataSynced.catch(() => undefined); // the sync step reports a failure (and halts the volume)
    }
    const blockCrcs = sco.clusterCrcs?.subarray(0, sco.clusterCount);
    this.uploader.enqueueSco({ scoNumber: sco.scoNumber, file: sco.path, expectedCrc: scoCrc, ready: sco.numberReserved, data, fileWritten, blockCrcs, onDataReleased: pooled ? () => sco.releaseBuffer() : undefined });
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

  /**
   * Resolves when every write of a closed SCO has reached its file (not necessarily the disk); rejects
   * if one failed (the volume halts then).
   */
  private scoFileWritten(sco: MemorySco): Promise<void> {
    assert(sco.closed, "only a closed SCO's file is final");
    const writes: Promise<void>[] = [...sco.inflight];
    if (sco.batch) writes.push(sco.batch.promise);
    const written = Promise.all(writes).then(() => undefined);
    written.catch(() => undefined); // the write's own handler halts the volume
    return written;
  }

  private rollTlog(): void {
    const old = this.currentTlog;
    old.close();
    const record: TlogRecord = { seq: old.seq + 1, id: `tlog_${randomUUID()}`, closed: false, stored: false };
    const next = new TlogWriter({ seq: record.seq, id: record.id, clusterSizeBytes: this.config.clusterSizeBytes });
    // The new TLog's record must be durable before its file is written (a restart finds TLogs by record).
    next.recordPersisted = this.enqueueDurableBatch(() => ({ tlogs: [{ seq: old.seq, id: old.id, closed: true, stored: false }, record] }));
    this.currentTlog = next;
    this.unsyncedTlogs.push(next);
  }

  private nonDisposableBytes(): number {
    return this.localScos.nonDisposableBytes;
  }

  private nonDisposableLimitBytes(): number {
    return this.config.scoSizeBytes * this.config.tlogMultiplier * volumeLimits.nonDisposableFactor;
  }

  /**
   * Above the write-buffer limit writes wait (never fail) until uploads make SCOs disposable; on a file
   * system short of space (lowSpace) until eviction or the operator frees some.
   */
  private async throttle(): Promise<void> {
    const startedAt = performance.now();
    this.counters.throttledWrites++;
    while (!this.closing && !this.halted && (this.lowSpace || this.nonDisposableBytes() > this.nonDisposableLimitBytes())) {
      await new Promise<void>((resolve) => this.throttleWaiters.push(resolve));
    }
    this.counters.throttledMsTotal += performance.now() - startedAt;
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
      await Promise.all(scoWrites); // every SCO to sync has its file now (its first write opened it)
      // The SCOs' data, and the directory entries of new SCO files, must be durable before a TLog names
      // them: both in one round (each await is a trip through the thread pool and the event loop).
      const created = scosToSync.filter((sco) => sco.createdSinceSync);
      await Promise.all([...scosToSync.map(async (sco) => sco.dataSynced ?? fdatasync(await this.scoFd(sco))), ...(created.length > 0 ? [this.scoDirSync.sync()] : [])]);
      for (const sco of created) sco.createdSinceSync = false;
      // The TLog slices are written and synced side by side: under sequential writes one sync covers
      // several TLogs (each closes after a few SCOs), and one after the other (record, open, directory
      // sync, write, fdatasync: ~22 ms each under load) they made the sync step ~110 ms long.
      const slices = tlogSlices.filter((slice) => slice.bytes.length > 0);
      // allSettled: no write is still running when a failure halts the volume.
      const written = await Promise.allSettled(slices.map(async (slice) => {
        await slice.tlog.recordPersisted;
        const fd = await this.tlogFd(slice.tlog);
        await pwriteAll(fd, slice.bytes, 0, slice.bytes.length, slice.tlog.fileSizeBytes);
        await fdatasync(fd);
      }));
      const failed = written.find((result) => result.status === "rejected");
      if (failed !== undefined) throw failed.reason;
      for (const slice of slices) {
        slice.tlog.consumePending(slice.bytes.length, slice.entryCountAfter);
        // Durable: commit the map up to here and hand the TLogs now complete to the uploader.
        this.handOffSyncedTlogs({ seq: slice.tlog.seq, entryCount: slice.entryCountAfter, nextScoNumber: this.nextScoNumber });
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
        sco.releaseBuffer(); // no write in flight (checked above) and reads copy synchronously
        // Synced: nothing to wait for, but its early fdatasync (dataSynced) may still be using the
        // descriptor when this sync did not need it (the SCO was synced before it closed).
        const fd = sco.fd;
        if (fd !== undefined) void (sco.dataSynced ?? Promise.resolve()).then(() => closeFile(fd), () => closeFile(fd));
      }
    }
    this.handOffSyncedTlogs(undefined); // closed TLogs complete before this sync (a recovered one)
  }

  /**
   * After a TLog slice is durable: commits the map entries it covers (`cork`, if any) and queues the
   * closed TLogs now fully in their files for upload, in order.
   */
  private handOffSyncedTlogs(cork: Cork | undefined): void {
    if (cork) void this.commitMetadata(cork).catch((error: unknown) => this.log.error({ err: error }, "metadata commit failed"));
    while (this.unsyncedTlogs.length > 0) {
      const tlog = this.unsyncedTlogs[0]!;
      if (!tlog.closed || tlog.hasPending) break;
      this.unsyncedTlogs.shift();
      const fd = this.tlogFds.get(tlog.seq);
      if (fd !== undefined) {
        this.tlogFds.delete(tlog.seq);
        void closeFile(fd); // synced: nothing to wait for
      }
      // Queued after the map commit of its entries (above, or an earlier slice's): its "stored" commit
      // (which makes its snapshot usable by clones, who read the committed map as of it) lands after it.
      this.uploader.enqueueTlog(tlog.seq, tlog.id, path.join(this.tlogDir, tlog.id), tlog.scoNumbers, tlog.fileContent());
    }
  }

  private async tlogFd(tlog: TlogWriter): Promise<number> {
    let fd = this.tlogFds.get(tlog.seq);
    if (fd === undefined) {
      fd = await openFile(path.join(this.tlogDir, tlog.id), fs.constants.O_RDWR | fs.constants.O_CREAT);
      this.tlogFds.set(tlog.seq, fd);
      if (tlog.fileSizeBytes === 0) {
        // A new file: make its directory entry durable too.
        await this.tlogDirSync.sync();
      }
    }
    return fd;
  }

  /** Serialises metadata transactions, so commits land in order. */
  private enqueueCommit(work: () => Promise<void>): Promise<void> {
    this.openGroup = undefined; // batches queued from now on land after this work
    const next = this.committing.then(work);
    this.committing = next.catch(() => undefined);
    return next;
  }

  /**
   * Queues a commit batch, built when its transaction starts, in order with enqueueCommit's work. The
   * batches queued while the transaction before them runs share one transaction (group commit): each
   * transaction costs lmdb-js a few trips through the event loop, ~10 ms under load whatever its size,
   * and a sequential writer makes three or four commits per TLog (its record, its map entries, "stored",
   * SCO number reservations), which queued one behind the other used to take longer than the TLog's
   * writes: the sync step waited ~70 ms for a new TLog's record, a stored TLog ~90 ms for its commit.
   * `map`: a commit of the dirty map up to a cork; of those in one group only the last is built (its cork
   * covers the others' updates, a prefix of the dirty map).
   */
  private enqueueBatch(build: () => CommitBatch, options: { map?: boolean; done?: () => void } = {}): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let group = this.openGroup;
      if (group === undefined) {
        const created: GroupedBatch[] = [];
        group = created;
        void this.enqueueCommit(() => this.commitGroup(created));
        this.openGroup = created; // after enqueueCommit, which closes the open group
      }
      group.push({ build, map: options.map === true, done: options.done, resolve, reject });
    });
  }

  /** A batch (enqueueBatch) that resolves once it is durable: LMDB syncs outside the queue (overlapping sync). */
  private enqueueDurableBatch(build: () => CommitBatch): Promise<void> {
    return this.enqueueBatch(build).then(() => this.metadata.flushed());
  }

  private async commitGroup(group: GroupedBatch[]): Promise<void> {
    if (this.openGroup === group) this.openGroup = undefined; // later batches form the next group
    let lastMap = -1;
    group.forEach((item, index) => {
      if (item.map) lastMap = index;
    });
    try {
      const batches = group.filter((item, index) => !item.map || index === lastMap).map((item) => item.build());
      await this.metadata.commitAll(batches);
    } catch (error) {
      for (const item of group) item.reject(error);
      return;
    }
    group.forEach((item, index) => {
      if (!item.map || index === lastMap) item.done?.();
      item.resolve();
    });
  }

  /** Queues the commit of the map entries covered by `cork` (durable TLog entries), moving the cork. */
  private commitMetadata(cork: Cork): Promise<void> {
    let count = 0;
    return this.enqueueBatch(() => {
      count = this.dirty.coveredCount(cork);
      const snapshotSeqs = this.snapshots.map((snapshot) => snapshot.tlogSeq);
      return { updates: this.dirty.updates(count), cork, keepZeros: this.config.parent !== undefined, snapshotSeqs };
    }, { map: true, done: () => this.dirty.drop(count) }); // dropped once in LMDB
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

  /** undefined: not mapped in this volume (a clone reads its parent); SCO number 0: reads as zeros. */
  private lookup(address: number): ClusterLocation | undefined {
    return this.dirty.get(address) ?? this.metadata.lookup(address);
  }

  /**
   * For clones of this volume: reads clusters as they were right after TLog `tlogSeq` (a stored
   * snapshot's last TLog), from the committed map and its history, else from this volume's parent.
   */
  async readAsOf(firstCluster: number, clusterCount: number, target: Buffer, tlogSeq: number, cacheOwner?: ReadCacheOwner): Promise<void> {
    if (this.closing) throw new OvsError("UNAVAILABLE", `volume ${this.config.name} (a clone's parent) is closed or restarting; retry`);
    await this.readClusters(firstCluster, clusterCount, target, tlogSeq, cacheOwner);
  }

  /** Addresses in [first, end) that may read as non-zero as of any snapshot (a superset), parents included. */
  everMappedInRange(first: number, end: number): Set<number> {
    if (this.closing) throw new OvsError("UNAVAILABLE", `volume ${this.config.name} (a clone's parent) is closed or restarting; retry`);
    const addresses = new Set<number>(this.metadata.everMappedInRange(first, end));
    if (this.config.parent) for (const address of this.parentVolume().everMappedInRange(first, end)) addresses.add(address);
    return addresses;
  }

  private parentVolume(): Volume {
    const parent = this.config.parent;
    assert(parent !== undefined);
    const volume = this.resolveParent?.(parent.namespace);
    if (!volume) throw new OvsError("UNAVAILABLE", `the parent ${parent.name} of clone ${this.config.name} is not open on this node`);
    return volume;
  }

  /**
   * Reads `clusterCount` clusters from `firstCluster` into `target`, verifying every cluster's CRC. Tracked
   * in readsInFlight: a scrub deletes the SCOs it replaced only after every read that may have looked up
   * their locations has finished (lookups happen synchronously at the start of the read).
   * `cacheOwner`: whose read cache share serves clusters not in the write buffer (a clone's, when it
   * reads through its parent), counted there.
   */
  private readClusters(firstCluster: number, clusterCount: number, target: Buffer, asOfTlogSeq?: number, cacheOwner = this.readCache): Promise<void> {
    const read = this.readClustersUntracked(firstCluster, clusterCount, target, asOfTlogSeq, cacheOwner);
    this.readsInFlight.add(read);
    const untrack = (): void => void this.readsInFlight.delete(read);
    read.then(untrack, untrack);
    return read;
  }

  private async readClustersUntracked(firstCluster: number, clusterCount: number, target: Buffer, asOfTlogSeq: number | undefined, cacheOwner: ReadCacheOwner | undefined): Promise<void> {
    const clusterSize = this.config.clusterSizeBytes;
    // Runs of clusters that are consecutive in one SCO file are read with one pread.
    let runs: Array<{ scoNumber: number; offsetClusters: number; targetIndex: number; locations: ClusterLocation[] }> | undefined;
    // Clones: runs of clusters not mapped here, read from the parent as of the clone's snapshot.
    let parentRuns: Array<{ targetIndex: number; clusterCount: number }> | undefined;
    const hasParent = this.config.parent !== undefined;
    for (let i = 0; i < clusterCount; i++) {
      const location = asOfTlogSeq === undefined ? this.lookup(firstCluster + i) : this.metadata.lookupAsOf(firstCluster + i, asOfTlogSeq);
      const slot = target.subarray(i * clusterSize, (i + 1) * clusterSize);
      if (location === undefined && hasParent) {
        parentRuns ??= [];
        const last = parentRuns.at(-1);
        if (last && last.targetIndex + last.clusterCount === i) last.clusterCount++;
        else parentRuns.push({ targetIndex: i, clusterCount: 1 });
        continue;
      }
      if (location === undefined || location.scoNumber === 0) {
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
    if (parentRuns) {
      const parent = this.parentVolume();
      const parentSeq = this.config.parent!.tlogSeq;
      await Promise.all(
        parentRuns.map((run) =>
          parent.readAsOf(firstCluster + run.targetIndex, run.clusterCount, target.subarray(run.targetIndex * clusterSize, (run.targetIndex + run.clusterCount) * clusterSize), parentSeq, cacheOwner),
        ),
      );
    }
    if (!runs) return;
    await Promise.all(
      runs.map(async (run) => {
        const view = target.subarray(run.targetIndex * clusterSize, (run.targetIndex + run.locations.length) * clusterSize);
        const name = scoName({ cloneId: 0, scoNumber: run.scoNumber, version: 0 });
        // Evicted SCOs are not in localScos: no open() attempt per read of them.
        const handle = this.localScos.has(run.scoNumber) ? await scoReadFds.acquire(this.scoPath(run.scoNumber)) : undefined;
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
        const fromBackend = (index: number, count: number, subview: Buffer): Promise<void> =>
          this.readRunFromBackend(name, run.offsetClusters + index, subview, run.locations.slice(index, index + count), firstCluster + run.targetIndex + index);
        if (cacheOwner !== undefined) await cacheOwner.readThrough(this.config.namespace, run.locations, view, fromBackend);
        else await fromBackend(0, run.locations.length, view);
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

  /**
   * Called by the uploader, in TLog order, once TLog `seq` is on the backend. Its listing in the snapshots
   * object (stored means listed: a restart from the backend starts from that list) and its "stored"
   * record are committed by commitStoredTlogs, coalesced: TLogs that reach the backend while one commit
   * runs share the next one, so the uploader can put the next TLog meanwhile and a sequential writer
   * does not wait for one snapshots-object rewrite and one LMDB sync per TLog. Idempotent (a retry after
   * a failed commit calls it again).
   */
  private tlogStored(seq: number, scoNumbers: number[]): Promise<void> {
    const last = this.backendTlogs.at(-1);
    if (last === undefined || last.seq < seq) {
      const record = this.metadata.tlogRecords(seq).find((r) => r.seq === seq);
      assert(record !== undefined, `TLog ${seq} has no record`);
      this.backendTlogs.push({ seq, id: record.id });
      this.tlogsToCommitStored.push({ record, scoNumbers });
    } else {
      assert(this.backendTlogs.some((t) => t.seq === seq), "TLogs are stored in order");
    }
    return this.storedTlogCommitter.run();
  }

  /**
   * Commits every TLog put on the backend so far: one snapshots object listing them, then one LMDB
   * commit marking them (and the snapshots they complete) stored, then their SCOs become disposable.
   * On failure they stay pending for the next run (the uploader retries).
   */
  private async commitStoredTlogs(): Promise<void> {
    const batch = this.tlogsToCommitStored.splice(0);
    if (batch.length === 0) return;
    const lastSeq = batch.at(-1)!.record.seq;
    let nowStored: SnapshotRecord[];
    try {
      await this.writeSnapshotsObject();
      nowStored = this.snapshots.filter((snapshot) => !snapshot.stored && snapshot.tlogSeq <= lastSeq);
      // "stored" must be durable before its SCOs may leave the disk.
      await this.enqueueDurableBatch(() => ({
        tlogs: batch.map(({ record }) => ({ ...record, closed: true, stored: true })),
        snapshots: nowStored.map((snapshot) => ({ ...snapshot, stored: true })),
      }));
    } catch (error) {
      this.tlogsToCommitStored.unshift(...batch);
      throw error;
    }
    for (const snapshot of nowStored) snapshot.stored = true;
    this.storedThroughSeq = Math.max(this.storedThroughSeq, lastSeq);
    for (const { scoNumbers } of batch) {
      for (const scoNumber of scoNumbers) {
        const sco = this.localScos.markDisposable(scoNumber);
        if (!sco) continue;
        // A SCO written with O_DIRECT left nothing in the page cache: no drop (an open, an advice that
        // walks the file and a close, per SCO, on the main thread and the pool).
        if (sco.direct !== true) void scoDropBehind.add(this.scoPath(scoNumber), sco.sizeBytes);
      }
    }
    for (const waiter of this.throttleWaiters.splice(0)) waiter();
    // Housekeeping off the uploader's path.
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
    let total = this.localScos.bytes;
    const cap = this.config.scoCacheMaxBytes > 0 ? this.config.scoCacheMaxBytes : Number.MAX_SAFE_INTEGER;
    let toFreeBytes = 0;
    try {
      const { freeBytes, sizeBytes } = await volumeOs.statfs(this.scoDir);
      const triggerBytes = Math.max(volumeLimits.scoCacheFreeBytesMin, sizeBytes * volumeLimits.scoCacheFreeFraction);
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
      await removeFile(file);
      this.localScos.delete(scoNumber);
      total -= sco.sizeBytes;
    }
  }

  /**
   * Rewrites the snapshots object from the current state: the stored TLogs and the snapshots they
   * cover. Writes are serialised; each one writes the state as of when it starts, and calls made while
   * one waits to start share it (Coalescer). Fenced.
   */
  private writeSnapshotsObject(): Promise<void> {
    return this.snapshotsObjectWriter.run();
  }

  private async writeSnapshotsObjectNow(): Promise<void> {
    const lastSeq = this.backendTlogs.at(-1)?.seq ?? 0;
    const value: SnapshotsObject = {
      volumeId: this.config.id,
      generation: this.snapshotsGeneration,
      ...(this.config.parent ? { parent: { namespace: this.config.parent.namespace, snapshot: this.config.parent.snapshot, tlogSeq: this.config.parent.tlogSeq } } : {}),
      tlogs: this.backendTlogs,
      snapshots: this.snapshots.filter((snapshot) => snapshot.tlogSeq <= lastSeq).map(({ stored: _stored, ...snapshot }) => snapshot),
    };
    await this.fencedApply([{ kind: "put", name: snapshotsObjectName, data: encodeSnapshotsObject(value) }]);
  }

  /**
   * Applies backend updates under the owner tag this instance took: refused (ASSERT_FAILED) once
   * another start took a newer tag, which fences this instance: it halts and refuses all I/O.
   */
  private async fencedApply(updates: ObjectUpdate[]): Promise<void> {
    if (this.fenced) throw this.halted!;
    try {
      await this.backend.apply(this.config.namespace, [{ kind: "equals", name: ownerTagObjectName, value: this.ownerTag }], updates);
    } catch (error) {
      if (error instanceof OvsError && error.code === "ASSERT_FAILED") {
        this.fence();
        throw this.halted!;
      }
      throw error;
    }
  }

  private fence(): void {
    if (this.fenced) return;
    this.fenced = true;
    this.halted = new OvsError("IO_ERROR", `volume ${this.config.name} is fenced: a newer start of it took its owner tag, so this instance stopped; it serves no I/O`);
    this.log.error("volume fenced: another start took its owner tag; halting");
    for (const waiter of this.throttleWaiters.splice(0)) waiter();
  }

  /** Deletes objects nothing names any more (after a restart from the backend or a rollback). Fenced. */
  private async collectGarbage(names: string[]): Promise<void> {
    const batchCountMax = 32;
    try {
      for (let index = 0; index < names.length && !this.closing; index += batchCountMax) {
        await this.fencedApply(names.slice(index, index + batchCountMax).map((name) => ({ kind: "delete", name })));
      }
    } catch (error) {
      this.log.warn({ err: error }, "garbage collection stopped; the objects left are retried at the next restart from the backend");
    }
  }

  /** Snapshots and the TLogs on the backend, from the local metadata. */
  private loadBookkeeping(): void {
    this.snapshots = this.metadata.snapshotRecords();
    this.snapshotNumberNext = (this.snapshots.at(-1)?.number ?? 0) + 1;
    this.backendTlogs = this.metadata.tlogRecords().filter((record) => record.stored).map((record) => ({ seq: record.seq, id: record.id }));
    this.storedThroughSeq = this.backendTlogs.at(-1)?.seq ?? 0;
  }

  /** Local TLog files are removed once stored and behind a durable cork (a restart no longer needs them). */
  private async removeStoredTlogFiles(): Promise<void> {
    await this.metadata.flushed();
    const cork = this.metadata.getCork();
    // Resumes where the last pass stopped: a pass over every record each time made this quadratic
    // in the volume's TLog count (one unlink per TLog ever written, per TLog stored).
    let contiguous = true;
    for (const record of this.metadata.tlogRecords(this.tlogFilesRemovedBelowSeq)) {
      if (record.seq >= cork.seq) break;
      if (!record.stored) {
        contiguous = false; // look at it again next time
        continue;
      }
      await removeFile(path.join(this.tlogDir, record.id));
      if (contiguous) this.tlogFilesRemovedBelowSeq = record.seq + 1;
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
    const storedScos = new Set<number>(); // SCOs closed into parsed TLogs that are on the backend
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
        // A set, not a highest number: a scrub's SCOs have new (high) numbers in old TLogs.
        for (const scoNumber of scoNumbers) storedScos.add(scoNumber);
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
      if (!id) {
        if (file.endsWith(".copy")) await fsp.rm(full, { force: true }); // a closeRecoveredSco copy cut short
        continue;
      }
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
      this.localScos.set(id.scoNumber, { sizeBytes, disposable: storedScos.has(id.scoNumber) });
    }
    this.nextScoNumber = Math.max(scoNumberMax + 1, cork.nextScoNumber ?? 1, this.metadata.getScoNumberReservedEnd());
    this.openSco = this.newMemorySco();
    for (const item of pendingUploads) {
      for (const scoNumber of item.scoNumbers) {
        const expectedCrc = scoCrcs.get(scoNumber);
        if (!storedScos.has(scoNumber) && expectedCrc !== undefined) {
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
    if ((await fsp.stat(file)).nlink > 1) {
      // The backend may have linked this file (its upload finished before the crash lost the TLog entry
      // that closed it): never change a linked file; cut a private copy instead.
      const copy = `${file}.copy`;
      await fsp.copyFile(file, copy);
      await fsp.rename(copy, file);
    }
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
      if (!this.checkingSpace && !this.closing) void this.checkFreeSpace();
    }, volumeLimits.syncIntervalMs);
    this.syncTimer.unref();
  }

  /**
   * The free-space guard (the original's SCO cache cleaner and mountpoint choking): under the eviction
   * trigger, disposable SCOs are evicted now (not only when a TLog is stored); under writeFreeBytesMin
   * writes wait until there is room again.
   */
  private async checkFreeSpace(): Promise<void> {
    this.checkingSpace = true;
    try {
      const { freeBytes, sizeBytes } = await volumeOs.statfs(this.scoDir);
      const wasLow = this.lowSpace;
      this.lowSpace = freeBytes < volumeLimits.writeFreeBytesMin;
      if (this.lowSpace !== wasLow) {
        if (this.lowSpace) this.log.warn({ freeBytes }, "the write buffer's file system is nearly full: writes wait until space is freed");
        else this.log.info({ freeBytes }, "the write buffer's file system has room again: writes resume");
      }
      if (!this.lowSpace) for (const waiter of this.throttleWaiters.splice(0)) waiter();
      const triggerBytes = Math.max(volumeLimits.scoCacheFreeBytesMin, sizeBytes * volumeLimits.scoCacheFreeFraction);
      if (freeBytes < triggerBytes) {
        this.housekeeping = this.housekeeping
          .then(() => this.evictScos())
          .catch((error: unknown) => this.log.warn({ err: error }, "write buffer housekeeping failed"));
        await this.housekeeping;
      }
    } catch (error) {
      this.log.warn({ err: error }, "cannot read the free space of the write buffer's file system");
    } finally {
      this.checkingSpace = false;
    }
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
    if (this.config.template) throw new OvsError("CONFLICT", `volume ${this.config.name} is a template: it is read-only; clone it to write`);
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

function snapshotInfo(record: SnapshotRecord): SnapshotInfo {
  return {
    number: record.number,
    name: record.name,
    createdAt: record.createdAt,
    sticky: record.sticky,
    ...(record.metadata !== undefined ? { metadata: record.metadata } : {}),
    tlogSeq: record.tlogSeq,
    state: record.stored ? "stored" : "pending",
  };
}

function encodeConfig(config: VolumeConfig): Buffer {
  return Buffer.from(JSON.stringify(config, null, 2));
}

/**
 * Takes a new owner tag for a start of the volume: compare-and-swap of the `owner_tag` object against
 * what was read, so of two concurrent starts one fails; the instance holding the old tag is fenced.
 */
async function takeOwnerTag(backend: ObjectBackend, config: VolumeConfig): Promise<Buffer> {
  let current: Buffer | undefined;
  try {
    current = await backend.get(config.namespace, ownerTagObjectName);
  } catch (error) {
    if (!(error instanceof OvsError && error.code === "NOT_FOUND")) throw error;
  }
  const tag = encodeOwnerTag({ tag: randomUUID(), volumeId: config.id, takenAt: new Date().toISOString() });
  try {
    await backend.apply(
      config.namespace,
      [current === undefined ? { kind: "absent", name: ownerTagObjectName } : { kind: "equals", name: ownerTagObjectName, value: current }],
      [{ kind: "put", name: ownerTagObjectName, data: tag }],
    );
  } catch (error) {
    if (error instanceof OvsError && error.code === "ASSERT_FAILED") {
      throw new OvsError("CONFLICT", `volume ${config.name} is being started elsewhere at the same time (its owner tag changed); retry`, undefined, { cause: error });
    }
    throw error;
  }
  return tag;
}

async function listAll(backend: ObjectBackend, namespace: string): Promise<string[]> {
  const names: string[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await backend.list(namespace, after === undefined ? {} : { after });
    names.push(...page.names);
    if (!page.more || page.names.length === 0) return names;
    after = page.names.at(-1);
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
