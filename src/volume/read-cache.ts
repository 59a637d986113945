// The node's read cache (the original's ClusterCache, location-based): clusters that were read from (or,
// per vDisk, written towards) the backend, kept in one file on the node's local disk, so that a read of a
// cluster whose SCO has left the write buffer is served locally instead of by a partial get.
//
// Who imports it: volume.ts (the read path: ReadCacheOwner.readThrough, the write path: populate) and the
// framework (VDiskService: one ReadCache per node, one owner per served vDisk; settings; statistics).
//
// Layout: `<dir>/clusters`, slot i at byte i × 4096; a slot holds one cluster. The index is in memory
// only, in typed arrays of one element per slot (43 to 47 bytes per 4 KiB slot, about 1.1 % of the cache size:
// bounded by the configured size, never by volume size). The cache is dropped at every start (the file
// is truncated): an entry kept across a restart could name a SCO number that a restart of the vDisk from
// the backend on another node has since reused, and the index would have to be persisted too. The cost
// is a cold cache after a node restart.
//
// Key: (namespace holding the SCO, SCO number, SCO version, offset in the SCO) plus the cluster's CRC32C
// from the map. A location is never rewritten in place: an overwrite or a trim changes the map, not
// the SCO, and the scrubber moves clusters to new SCO names, so a stale entry is simply never looked up
// again and ages out. What could reuse a key is a restart of the volume from the backend (a rollback, a
// lost local directory): the service drops the namespace's entries then (dropNamespace), and on a vDisk
// delete. On top of that every lookup requires the entry's CRC to equal the map's, and every cluster
// read from the cache file is verified against that CRC: a mismatch drops the entry and the cluster is
// read from the backend (never returned).
//
// Eviction: CLOCK over the whole cache (a hit sets the slot's reference bit; new entries start without
// it, so a one-time scan is evicted first). Per vDisk an optional quota: a vDisk at its quota evicts its
// own least recently used entry (a per-owner LRU list) before it adds one. Modes per vDisk:
// cache-on-read (backend reads populate), cache-on-write (writes populate), none (bypass; its entries
// are dropped). Hits are served in both caching modes.
//
// Free space: the file grows (it is sparse) only while the file system keeps more free than the write
// buffer's eviction target (twice max(2 GiB, 5 %), see Volume.evictScos), so the read cache never makes
// the write buffer evict; past that it reuses its own slots.
//
// Buffers: readThrough reads into the caller's view; populate copies what it keeps (the caller's buffer
// may be reused at once). Cache writes are asynchronous, bounded by writeBytesInFlightMax (beyond it
// populations are skipped, counted); an entry becomes visible only once its write completed. A slot
// evicted while a read of it is in flight is detected by its generation and treated as a miss.

import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { OvsError, assert, crc32c, crc32cBlocks, formatBytes, type Logger } from "../base/index.js";
import { closeFile, openFile, preadAll, pwriteAll } from "./file-io.js";

export type ReadCacheMode = "cache-on-read" | "cache-on-write" | "none";
export const readCacheModes: readonly ReadCacheMode[] = ["cache-on-read", "cache-on-write", "none"];

export const readCacheLimits = {
  clusterSizeBytes: 4096,
  /** The node's cache size when none is given (`ovs up --read-cache-size`). */
  sizeBytesDefault: 1024 ** 3,
  /** Largest node cache: its in-memory index is about 1.1 % of it (2.9 GiB). */
  sizeBytesMax: 256 * 1024 ** 3,
  /** vDisks attached at once. */
  ownerCountMax: 65535,
  /** Cache writes (populations) in flight; beyond it a population is skipped. */
  writeBytesInFlightMax: 16 * 1024 * 1024,
  /** How often the file system's free space is looked at (while the file may grow). */
  freeSpaceCheckIntervalMs: 1000,
  /** The write buffer's eviction trigger: max(this, fraction × file system size)... */
  writeBufferFreeBytesMin: 2 * 1024 ** 3,
  writeBufferFreeFraction: 0.05,
} as const;

export interface ReadCacheSettings {
  mode: ReadCacheMode;
  /** Most bytes of the cache this vDisk's entries may use; 0 = no quota (up to the node's cache size). */
  quotaBytes: number;
}

export const defaultReadCacheSettings: Readonly<ReadCacheSettings> = Object.freeze({ mode: "cache-on-read", quotaBytes: 0 });

/** Refuses a bad mode or quota with INVALID_ARGUMENT (nothing is changed then). */
export function validateReadCacheSettings(settings: ReadCacheSettings): void {
  if (!readCacheModes.includes(settings.mode)) {
    throw new OvsError("INVALID_ARGUMENT", `"${String(settings.mode)}" is not a read cache mode; use ${readCacheModes.join(", ")}.`);
  }
  const quota = settings.quotaBytes;
  if (!Number.isSafeInteger(quota) || quota < 0) throw new OvsError("INVALID_ARGUMENT", `the read cache quota must be a whole number of bytes ≥ 0 (0 = no quota), not ${String(quota)}.`);
  if (quota > 0 && quota < readCacheLimits.clusterSizeBytes) throw new OvsError("INVALID_ARGUMENT", `the read cache quota must be at least 4 KiB (one cluster), or 0 for no quota.`);
  if (quota > readCacheLimits.sizeBytesMax) throw new OvsError("INVALID_ARGUMENT", `the read cache quota must be at most ${formatBytes(readCacheLimits.sizeBytesMax)}.`);
}

export function validateReadCacheSize(sizeBytes: number): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || sizeBytes > readCacheLimits.sizeBytesMax) {
    throw new OvsError("INVALID_ARGUMENT", `the read cache size must be between 0 (off) and ${formatBytes(readCacheLimits.sizeBytesMax)}.`);
  }
}

export interface ReadCacheStats {
  capacityBytes: number;
  usedBytes: number;
  entryCount: number;
  /** Entries dropped to make room (CLOCK or a vDisk's quota). */
  evictions: number;
  /** Cached clusters that failed their checksum on read (dropped, read from the backend instead). */
  checksumErrors: number;
  /** Cache file writes that failed (the clusters were not cached). */
  writeErrors: number;
  /** Populations skipped because writeBytesInFlightMax was reached. */
  skippedPopulations: number;
  /** Bytes of the cache file written so far (it grows while the file system has room). */
  fileBytes: number;
  /** Memory of the in-memory index (fixed at open: bounded by the cache size). */
  indexBytes: number;
}

export interface ReadCacheOwnerStats {
  mode: ReadCacheMode;
  quotaBytes: number;
  /** Clusters served from the read cache. */
  hits: number;
  /** Clusters neither in the write buffer nor in the read cache: read from the backend. */
  misses: number;
  usedBytes: number;
  entryCount: number;
  /** The node's whole cache, which this vDisk shares. */
  node: ReadCacheStats;
}

/** Where a cluster lives and what it must checksum to (the map's view); the cache's key. */
export interface CachedLocation {
  scoNumber: number;
  scoVersion: number;
  offsetClusters: number;
  dataCrc: number;
}

const free = 0;
const reserved = 1; // being written; not findable yet
const indexed = 2;
const cancelled = 3; // dropped while its write is in flight: freed when the write completes

export class ReadCache {
  readonly capacityBytes: number;
  private readonly slotCount: number;
  private readonly clusterSize = readCacheLimits.clusterSizeBytes;
  // The index: one element per slot.
  private readonly state: Uint8Array;
  private readonly refBit: Uint8Array;
  private readonly scoVersion: Uint8Array;
  private readonly offset: Uint16Array;
  private readonly owner: Uint16Array;
  private readonly namespaceId: Uint32Array;
  private readonly scoNumber: Uint32Array;
  private readonly crc: Uint32Array;
  private readonly generation: Uint32Array;
  private readonly hashNext: Int32Array;
  private readonly ownerPrev: Int32Array;
  private readonly ownerNext: Int32Array;
  private readonly buckets: Int32Array;
  private readonly bucketMask: number;
  private readonly freeStack: Int32Array;
  private readonly indexBytes: number;
  private freeTop = 0;
  /** Slots at or above it were never written (the file has not grown there). */
  private highWater = 0;
  private hand = 0;
  private indexedCount = 0;
  private readonly owners: Array<ReadCacheOwner | undefined> = [undefined]; // id 0 is never used
  private readonly namespaceIds = new Map<string, number>();
  private namespaceIdNext = 1;
  private writeBytesInFlight = 0;
  private readonly writes = new Set<Promise<void>>();
  private freeBytes = Number.MAX_SAFE_INTEGER;
  private freeFloorBytes = 0;
  private freeCheckedAtMs = -Infinity;
  private freeChecking = false;
  private lastWriteErrorLogMs = -Infinity;
  private closed = false;
  private readonly counters = { evictions: 0, checksumErrors: 0, writeErrors: 0, skippedPopulations: 0 };

  private constructor(
    private readonly file: string,
    private readonly fd: number,
    capacityBytes: number,
    private readonly log: Logger,
    private readonly freeFloorOverride: number | undefined,
  ) {
    this.slotCount = Math.floor(capacityBytes / this.clusterSize);
    this.capacityBytes = this.slotCount * this.clusterSize;
    const n = this.slotCount;
    this.state = new Uint8Array(n);
    this.refBit = new Uint8Array(n);
    this.scoVersion = new Uint8Array(n);
    this.offset = new Uint16Array(n);
    this.owner = new Uint16Array(n);
    this.namespaceId = new Uint32Array(n);
    this.scoNumber = new Uint32Array(n);
    this.crc = new Uint32Array(n);
    this.generation = new Uint32Array(n);
    this.hashNext = new Int32Array(n).fill(-1);
    this.ownerPrev = new Int32Array(n).fill(-1);
    this.ownerNext = new Int32Array(n).fill(-1);
    let bucketCount = 16;
    while (bucketCount < n) bucketCount *= 2;
    this.buckets = new Int32Array(bucketCount).fill(-1);
    this.bucketMask = bucketCount - 1;
    this.freeStack = new Int32Array(n);
    this.indexBytes = [
      this.state, this.refBit, this.scoVersion, this.offset, this.owner, this.namespaceId, this.scoNumber, this.crc, this.generation,
      this.hashNext, this.ownerPrev, this.ownerNext, this.buckets, this.freeStack,
    ].reduce((sum, array) => sum + array.byteLength, 0);
  }

  /**
   * Opens the node's cache in `dir` with room for `capacityBytes` (rounded down to whole clusters; 0 =
   * off: every vDisk reads through to the backend). Whatever a previous run cached is dropped.
   * `freeBytesFloor` overrides the free space the file system keeps (tests).
   */
  static async open(options: { dir: string; capacityBytes: number; log: Logger; freeBytesFloor?: number }): Promise<ReadCache> {
    validateReadCacheSize(options.capacityBytes);
    await fsp.mkdir(options.dir, { recursive: true });
    const file = path.join(options.dir, "clusters");
    const fd = await openFile(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC);
    const cache = new ReadCache(file, fd, options.capacityBytes, options.log.child({ component: "read-cache" }), options.freeBytesFloor);
    await cache.checkFreeSpace();
    return cache;
  }

  /** Registers a vDisk (its statistics and quota); one owner per served vDisk. */
  attach(name: string, settings: ReadCacheSettings = defaultReadCacheSettings): ReadCacheOwner {
    validateReadCacheSettings(settings);
    let id = this.owners.indexOf(undefined, 1);
    if (id === -1) id = this.owners.length;
    if (id > readCacheLimits.ownerCountMax) throw new OvsError("CONFLICT", `the read cache serves at most ${readCacheLimits.ownerCountMax} vDisks`);
    const owner = new ReadCacheOwner(this, id, name, settings);
    this.owners[id] = owner;
    return owner;
  }

  /** Unregisters a vDisk and drops its entries (a deleted vDisk). */
  detach(owner: ReadCacheOwner): void {
    if (this.owners[owner.id] !== owner) return;
    this.dropWhere((slot) => this.owner[slot] === owner.id);
    this.owners[owner.id] = undefined;
    owner.detached = true;
  }

  /**
   * Drops every entry of SCOs of `namespace`, whoever cached them: its volume restarted from the backend
   * (a rollback, a lost local directory) or was deleted, so its SCO numbers may be reused.
   */
  dropNamespace(namespace: string): void {
    const id = this.namespaceIds.get(namespace);
    if (id === undefined) return;
    this.dropWhere((slot) => this.namespaceId[slot] === id);
    this.namespaceIds.delete(namespace);
  }

  stats(): ReadCacheStats {
    return {
      capacityBytes: this.capacityBytes,
      usedBytes: this.indexedCount * this.clusterSize,
      entryCount: this.indexedCount,
      ...this.counters,
      fileBytes: this.highWater * this.clusterSize,
      indexBytes: this.indexBytes,
    };
  }

  /** Waits for cache writes in flight, then closes the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.writes.size > 0) await Promise.allSettled([...this.writes]);
    await closeFile(this.fd);
  }

  // -------------------------------------------------------------------------------------------------
  // For ReadCacheOwner

  /** @internal */
  namespaceIdOf(namespace: string, create: boolean): number {
    let id = this.namespaceIds.get(namespace);
    if (id === undefined && create) {
      id = this.namespaceIdNext++;
      assert(id <= 0xffff_ffff, "namespace ids fit 32 bits");
      this.namespaceIds.set(namespace, id);
    }
    return id ?? 0;
  }

  /** @internal The indexed slot holding the cluster with this CRC, or -1 (a stale entry is dropped). */
  find(namespaceId: number, location: CachedLocation): number {
    if (this.slotCount === 0 || namespaceId === 0) return -1;
    let slot = this.buckets[this.bucketOf(namespaceId, location.scoNumber, location.scoVersion, location.offsetClusters)]!;
    while (slot !== -1) {
      if (
        this.namespaceId[slot] === namespaceId && this.scoNumber[slot] === location.scoNumber &&
        this.offset[slot] === location.offsetClusters && this.scoVersion[slot] === location.scoVersion
      ) {
        if (this.crc[slot] === location.dataCrc >>> 0) return slot;
        this.release(slot); // the same place with other contents: stale
        return -1;
      }
      slot = this.hashNext[slot]!;
    }
    return -1;
  }

  /** @internal A hit: the slot is referenced again (CLOCK bit, its owner's LRU order). */
  touch(slot: number): void {
    this.refBit[slot] = 1;
    const owner = this.owners[this.owner[slot]!];
    if (owner !== undefined && owner.lruTail !== slot) {
      this.unlinkOwner(owner, slot);
      this.linkOwner(owner, slot);
    }
  }

  /** @internal */
  generationOf(slot: number): number {
    return this.generation[slot]!;
  }

  /** @internal True while `slot` still holds what it held at `generation`. */
  unchanged(slot: number, generation: number): boolean {
    return this.state[slot] === indexed && this.generation[slot] === generation;
  }

  /** @internal Reads `count` consecutive slots from `slot` into `target` at `offsetBytes`. */
  readSlots(slot: number, count: number, target: Buffer, offsetBytes: number): Promise<void> {
    if (this.closed) return Promise.reject(new OvsError("CLOSED", "the read cache is closed"));
    return preadAll(this.fd, target, offsetBytes, count * this.clusterSize, slot * this.clusterSize);
  }

  /** @internal A cached cluster failed its checksum: drop it. */
  corrupt(slot: number, generation: number): void {
    this.counters.checksumErrors++;
    if (this.unchanged(slot, generation)) this.release(slot);
  }

  /**
   * @internal Caches `count` clusters of `data` (consecutive in one SCO from `first`) for `owner`,
   * asynchronously; `crcs[i]` is cluster i's CRC32C. Clusters already cached are skipped.
   */
  populate(owner: ReadCacheOwner, namespace: string, locations: ArrayLike<CachedLocation> | undefined, first: CachedLocation, count: number, data: Uint8Array, crcs: ArrayLike<number>): void {
    if (this.closed || this.slotCount === 0 || count === 0) return;
    const bytes = count * this.clusterSize;
    if (this.writeBytesInFlight + bytes > readCacheLimits.writeBytesInFlightMax) {
      this.counters.skippedPopulations++;
      return;
    }
    this.maybeCheckFreeSpace();
    const namespaceId = this.namespaceIdOf(namespace, true);
    const slots: number[] = [];
    const sourceIndex: number[] = [];
    const scratch: CachedLocation = { scoNumber: first.scoNumber, scoVersion: first.scoVersion, offsetClusters: 0, dataCrc: 0 };
    for (let i = 0; i < count; i++) {
      const location = locations?.[i] ?? { ...scratch, offsetClusters: first.offsetClusters + i, dataCrc: crcs[i]! };
      if (this.find(namespaceId, location) !== -1) continue;
      const slot = this.allocate(owner);
      if (slot === -1) break;
      this.namespaceId[slot] = namespaceId;
      this.scoNumber[slot] = location.scoNumber;
      this.scoVersion[slot] = location.scoVersion;
      this.offset[slot] = location.offsetClusters;
      this.crc[slot] = crcs[i]! >>> 0;
      slots.push(slot);
      sourceIndex.push(i);
    }
    if (slots.length === 0) return;
    // One write per run of consecutive slots (fresh slots are handed out in order).
    const order = slots.map((_, i) => i).sort((a, b) => slots[a]! - slots[b]!);
    let start = 0;
    while (start < order.length) {
      let end = start + 1;
      while (end < order.length && slots[order[end]!]! === slots[order[end - 1]!]! + 1) end++;
      const runSlots = order.slice(start, end).map((i) => slots[i]!);
      const buffer = Buffer.allocUnsafe(runSlots.length * this.clusterSize);
      order.slice(start, end).forEach((i, k) => {
        const from = sourceIndex[i]! * this.clusterSize;
        buffer.set(data.subarray(from, from + this.clusterSize), k * this.clusterSize);
      });
      this.writeRun(runSlots, buffer);
      start = end;
    }
  }

  private writeRun(slots: number[], buffer: Buffer): void {
    const generations = slots.map((slot) => this.generation[slot]!);
    this.writeBytesInFlight += buffer.length;
    const write = pwriteAll(this.fd, buffer, 0, buffer.length, slots[0]! * this.clusterSize).then(
      () => {
        for (const [k, slot] of slots.entries()) {
          if (this.state[slot] === cancelled) {
            this.state[slot] = free; // dropped meanwhile; reusable now that nothing writes it
            this.freeStack[this.freeTop++] = slot;
            continue;
          }
          assert(this.state[slot] === reserved && this.generation[slot] === generations[k], "a slot being written stays reserved or is cancelled");
          const owner = this.owners[this.owner[slot]!];
          const location = { scoNumber: this.scoNumber[slot]!, scoVersion: this.scoVersion[slot]!, offsetClusters: this.offset[slot]!, dataCrc: this.crc[slot]! };
          if (owner === undefined || this.find(this.namespaceId[slot]!, location) !== -1) {
            // Its owner went, or a concurrent population cached the same cluster.
            if (owner !== undefined) owner.slotCount--;
            this.state[slot] = free;
            this.generation[slot] = (this.generation[slot]! + 1) >>> 0;
            this.freeStack[this.freeTop++] = slot;
            continue;
          }
          this.index(owner, slot);
        }
      },
      (error: unknown) => {
        this.counters.writeErrors++;
        const now = performance.now();
        if (now - this.lastWriteErrorLogMs > 60_000) {
          this.lastWriteErrorLogMs = now;
          this.log.warn({ err: error, file: this.file }, "read cache write failed; the clusters are not cached");
        }
        for (const slot of slots) {
          if (this.state[slot] === reserved) this.release(slot);
          this.state[slot] = free;
          this.freeStack[this.freeTop++] = slot;
        }
      },
    );
    const tracked = write.finally(() => {
      this.writeBytesInFlight -= buffer.length;
      this.writes.delete(tracked);
    });
    this.writes.add(tracked);
  }

  /** @internal Evicts `owner`'s least recently used entries until it is within its quota. */
  trimOwner(owner: ReadCacheOwner): void {
    const quotaSlots = owner.quotaSlots;
    while (owner.slotCount > quotaSlots && owner.lruHead !== -1) this.release(owner.lruHead, true);
  }

  /** @internal Drops every entry of `owner` (mode none). */
  dropOwner(owner: ReadCacheOwner): void {
    while (owner.lruHead !== -1) this.release(owner.lruHead);
  }

  /** Waits until every cache write in flight has completed (tests, benchmarks). */
  async idle(): Promise<void> {
    while (this.writes.size > 0) await Promise.allSettled([...this.writes]);
  }

  // -------------------------------------------------------------------------------------------------
  // Slots

  private bucketOf(namespaceId: number, scoNumber: number, scoVersion: number, offsetClusters: number): number {
    let h = Math.imul(namespaceId ^ 0x9e3779b9, 0x85ebca6b);
    h = Math.imul(h ^ scoNumber ^ (h >>> 15), 0xc2b2ae35);
    h = Math.imul(h ^ ((scoVersion << 16) | offsetClusters) ^ (h >>> 13), 0x27d4eb2f);
    return (h ^ (h >>> 16)) & this.bucketMask;
  }

  /** A slot for a new entry of `owner` (reserved, counted to it), or -1 when none can be had now. */
  private allocate(owner: ReadCacheOwner): number {
    let slot: number;
    if (owner.slotCount >= owner.quotaSlots) {
      if (owner.lruHead === -1) return -1; // its quota is taken by writes in flight
      slot = owner.lruHead;
      this.release(slot, true, false);
    } else if (this.freeTop > 0) {
      slot = this.freeStack[--this.freeTop]!;
    } else if (this.highWater < this.slotCount && this.freeBytes - this.clusterSize > this.freeFloorBytes) {
      slot = this.highWater++;
      this.freeBytes -= this.clusterSize;
    } else {
      slot = this.clockVictim();
      if (slot === -1) return -1;
    }
    assert(this.state[slot] === free, "an allocated slot is free");
    this.state[slot] = reserved;
    this.generation[slot] = (this.generation[slot]! + 1) >>> 0;
    this.refBit[slot] = 0;
    this.owner[slot] = owner.id;
    owner.slotCount++;
    return slot;
  }

  /** CLOCK: the first indexed slot past the hand without its reference bit (bits cleared on the way). */
  private clockVictim(): number {
    const limit = this.highWater;
    if (limit === 0) return -1;
    for (let steps = 0; steps < 2 * limit; steps++) {
      const slot = this.hand;
      this.hand = this.hand + 1 >= limit ? 0 : this.hand + 1;
      if (this.state[slot] !== indexed) continue;
      if (this.refBit[slot] === 1) {
        this.refBit[slot] = 0;
        continue;
      }
      this.release(slot, true, false);
      return slot;
    }
    return -1;
  }

  private index(owner: ReadCacheOwner, slot: number): void {
    const bucket = this.bucketOf(this.namespaceId[slot]!, this.scoNumber[slot]!, this.scoVersion[slot]!, this.offset[slot]!);
    this.hashNext[slot] = this.buckets[bucket]!;
    this.buckets[bucket] = slot;
    this.linkOwner(owner, slot);
    this.state[slot] = indexed;
    this.indexedCount++;
  }

  /**
   * Frees a slot (indexed or reserved): out of the hash, its owner's list and count. `evicted` counts it
   * as an eviction; `toFreeList` false when the caller takes the slot at once.
   */
  private release(slot: number, evicted = false, toFreeList = true): void {
    const state = this.state[slot]!;
    if (state === free || state === cancelled) return;
    const owner = this.owners[this.owner[slot]!];
    if (state === reserved) {
      // Its write is in flight: the slot is reused only once that write completed (writeRun).
      if (owner !== undefined) owner.slotCount--;
      this.state[slot] = cancelled;
      this.generation[slot] = (this.generation[slot]! + 1) >>> 0;
      return;
    }
    const bucket = this.bucketOf(this.namespaceId[slot]!, this.scoNumber[slot]!, this.scoVersion[slot]!, this.offset[slot]!);
    let at = this.buckets[bucket]!;
    if (at === slot) this.buckets[bucket] = this.hashNext[slot]!;
    else {
      while (at !== -1 && this.hashNext[at] !== slot) at = this.hashNext[at]!;
      assert(at !== -1, "an indexed slot is in its hash chain");
      this.hashNext[at] = this.hashNext[slot]!;
    }
    this.hashNext[slot] = -1;
    if (owner !== undefined) this.unlinkOwner(owner, slot);
    this.indexedCount--;
    if (evicted) this.counters.evictions++;
    if (owner !== undefined) owner.slotCount--;
    this.state[slot] = free;
    this.generation[slot] = (this.generation[slot]! + 1) >>> 0;
    if (toFreeList) this.freeStack[this.freeTop++] = slot;
  }

  private dropWhere(matches: (slot: number) => boolean): void {
    for (let slot = 0; slot < this.highWater; slot++) if (this.state[slot] !== free && matches(slot)) this.release(slot);
  }

  private linkOwner(owner: ReadCacheOwner, slot: number): void {
    this.ownerPrev[slot] = owner.lruTail;
    this.ownerNext[slot] = -1;
    if (owner.lruTail !== -1) this.ownerNext[owner.lruTail] = slot;
    else owner.lruHead = slot;
    owner.lruTail = slot;
    owner.entryCount++;
  }

  private unlinkOwner(owner: ReadCacheOwner, slot: number): void {
    const prev = this.ownerPrev[slot]!;
    const next = this.ownerNext[slot]!;
    if (prev !== -1) this.ownerNext[prev] = next;
    else owner.lruHead = next;
    if (next !== -1) this.ownerPrev[next] = prev;
    else owner.lruTail = prev;
    this.ownerPrev[slot] = this.ownerNext[slot] = -1;
    owner.entryCount--;
  }

  private maybeCheckFreeSpace(): void {
    if (this.highWater >= this.slotCount || this.freeChecking) return;
    if (performance.now() - this.freeCheckedAtMs < readCacheLimits.freeSpaceCheckIntervalMs) return;
    void this.checkFreeSpace();
  }

  private async checkFreeSpace(): Promise<void> {
    this.freeChecking = true;
    try {
      const stat = await fsp.statfs(path.dirname(this.file));
      const sizeBytes = stat.blocks * stat.bsize;
      this.freeBytes = stat.bavail * stat.bsize;
      this.freeFloorBytes = this.freeFloorOverride ?? 2 * Math.max(readCacheLimits.writeBufferFreeBytesMin, sizeBytes * readCacheLimits.writeBufferFreeFraction);
    } catch (error) {
      this.log.warn({ err: error }, "cannot read the free space of the read cache's file system; it does not grow");
      this.freeBytes = 0;
    } finally {
      this.freeCheckedAtMs = performance.now();
      this.freeChecking = false;
    }
  }
}

/**
 * One vDisk's use of the node's read cache: its mode, quota and counters. Kept across a rollback (the
 * service hands it to the new volume), dropped with the vDisk.
 */
export class ReadCacheOwner {
  hits = 0;
  misses = 0;
  /** @internal Slots counted to it: indexed entries and writes in flight. */
  slotCount = 0;
  /** @internal Indexed entries, in its LRU list. */
  entryCount = 0;
  /** @internal Its LRU list: oldest first. */
  lruHead = -1;
  lruTail = -1;
  /** @internal */
  detached = false;
  private current: ReadCacheSettings;

  /** @internal */
  constructor(private readonly cache: ReadCache, readonly id: number, readonly name: string, settings: ReadCacheSettings) {
    this.current = { ...settings };
  }

  get settings(): ReadCacheSettings {
    return { ...this.current };
  }

  get mode(): ReadCacheMode {
    return this.current.mode;
  }

  /** @internal The quota in slots (no quota: the whole cache). */
  get quotaSlots(): number {
    const all = Math.floor(this.cache.capacityBytes / readCacheLimits.clusterSizeBytes);
    return this.current.quotaBytes === 0 ? all : Math.min(all, Math.floor(this.current.quotaBytes / readCacheLimits.clusterSizeBytes));
  }

  /** Changes mode and quota while the vDisk serves I/O: a lower quota evicts at once; none drops its entries. */
  set(settings: ReadCacheSettings): void {
    validateReadCacheSettings(settings);
    this.current = { ...settings };
    if (this.detached) return;
    if (settings.mode === "none") this.cache.dropOwner(this);
    else this.cache.trimOwner(this);
  }

  stats(): ReadCacheOwnerStats {
    return {
      ...this.current, hits: this.hits, misses: this.misses, usedBytes: this.entryCount * readCacheLimits.clusterSizeBytes, entryCount: this.entryCount,
      node: this.cache.stats(),
    };
  }

  /**
   * Fills `view` with clusters [0, locations.length) of one SCO of `namespace` (consecutive in it): those
   * in the cache from the cache file (each verified against its location's CRC), the others through
   * `fetch(index, count, subview)` (the backend; it verifies), which then populate the cache in
   * cache-on-read mode. Counts hits and misses.
   */
  async readThrough(
    namespace: string,
    locations: readonly CachedLocation[],
    view: Buffer,
    fetch: (index: number, count: number, subview: Buffer) => Promise<void>,
  ): Promise<void> {
    const count = locations.length;
    const clusterSize = readCacheLimits.clusterSizeBytes;
    const cache = this.cache;
    const namespaceId = this.current.mode === "none" || this.detached ? 0 : cache.namespaceIdOf(namespace, false);
    let missing: Uint8Array | undefined;
    if (namespaceId !== 0) {
      // Hits: runs of consecutive slots read with one pread each, verified, then handed back on failure.
      const slots = new Int32Array(count).fill(-1);
      const generations = new Uint32Array(count);
      let hitCount = 0;
      for (let i = 0; i < count; i++) {
        const slot = cache.find(namespaceId, locations[i]!);
        if (slot === -1) continue;
        cache.touch(slot);
        slots[i] = slot;
        generations[i] = cache.generationOf(slot);
        hitCount++;
      }
      if (hitCount > 0) {
        const reads: Promise<void>[] = [];
        for (let i = 0; i < count; ) {
          if (slots[i] === -1) {
            i++;
            continue;
          }
          let end = i + 1;
          while (end < count && slots[end] === slots[end - 1]! + 1) end++;
          reads.push(cache.readSlots(slots[i]!, end - i, view, i * clusterSize));
          i = end;
        }
        const results = await Promise.allSettled(reads);
        if (results.some((result) => result.status === "rejected")) {
          slots.fill(-1); // the cache file failed us (or closed): read everything from the backend
        } else {
          const crcs = new Uint32Array(count);
          if (hitCount === count) crc32cBlocks(view, clusterSize, crcs);
          for (let i = 0; i < count; i++) {
            const slot = slots[i]!;
            if (slot === -1) continue;
            const crc = hitCount === count ? crcs[i]! : crc32c(view.subarray(i * clusterSize, (i + 1) * clusterSize));
            if (!cache.unchanged(slot, generations[i]!)) {
              slots[i] = -1; // evicted and reused while being read: a miss
            } else if (crc !== locations[i]!.dataCrc >>> 0) {
              cache.corrupt(slot, generations[i]!); // never returned: read from the backend
              slots[i] = -1;
            } else {
              this.hits++;
            }
          }
        }
      }
      for (let i = 0; i < count; i++) {
        if (slots[i] === -1) (missing ??= new Uint8Array(count))[i] = 1;
      }
      if (missing === undefined) return;
    }
    // Misses: runs of consecutive missing clusters, one backend read each.
    const fetches: Promise<void>[] = [];
    for (let i = 0; i < count; ) {
      if (missing !== undefined && missing[i] === 0) {
        i++;
        continue;
      }
      let end = i + 1;
      while (end < count && (missing === undefined || missing[end] === 1)) end++;
      const index = i;
      const runCount = end - i;
      this.misses += runCount;
      const subview = view.subarray(index * clusterSize, end * clusterSize);
      fetches.push(
        fetch(index, runCount, subview).then(() => {
          if (this.current.mode === "cache-on-read" && !this.detached) {
            const runLocations = locations.slice(index, index + runCount);
            cache.populate(this, namespace, runLocations, runLocations[0]!, runCount, subview, runLocations.map((l) => l.dataCrc));
          }
        }),
      );
      i = end;
    }
    await Promise.all(fetches);
  }

  /**
   * Cache-on-write: caches `count` clusters just written at `offsetClusters` of SCO `scoNumber` (version
   * `scoVersion`) of `namespace`, with their CRCs. Copies what it keeps; does nothing in other modes.
   */
  populateFromWrite(namespace: string, scoNumber: number, scoVersion: number, offsetClusters: number, count: number, data: Uint8Array, crcs: ArrayLike<number>): void {
    if (this.current.mode !== "cache-on-write" || this.detached) return;
    this.cache.populate(this, namespace, undefined, { scoNumber, scoVersion, offsetClusters, dataCrc: 0 }, count, data, crcs);
  }
}
