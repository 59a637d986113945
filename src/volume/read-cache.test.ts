import { afterEach, describe, expect, it } from "vitest";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomBytes, randomUUID } from "node:crypto";
import { crc32c, silentLogger } from "../base/index.js";
import { ReadCache, type CachedLocation } from "./read-cache.js";
import { Volume, defaultVolumeSettings, type VolumeConfig } from "./volume.js";
import { MemoryBackend } from "./testing/memory-backend.js";

const log = silentLogger();
const clusterSize = 4096;
const dirs: string[] = [];
const closers: Array<() => Promise<void>> = [];

async function tempDir(): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-read-cache-"));
  dirs.push(dir);
  return dir;
}

async function openCache(clusterCount: number, freeBytesFloor = 0): Promise<{ cache: ReadCache; dir: string }> {
  const dir = await tempDir();
  const cache = await ReadCache.open({ dir, capacityBytes: clusterCount * clusterSize, log, freeBytesFloor });
  closers.push(() => cache.close());
  return { cache, dir };
}

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  for (const dir of dirs.splice(0)) await fsp.rm(dir, { recursive: true, force: true });
});

/** A fake SCO on a fake backend: clusters of random bytes, the fetches counted. */
function sco(scoNumber: number, clusterCount: number, scoVersion = 0): { data: Buffer; locations: CachedLocation[]; fetched: number[]; fetch: (index: number, count: number, view: Buffer) => Promise<void> } {
  const data = randomBytes(clusterCount * clusterSize);
  const locations = Array.from({ length: clusterCount }, (_, i) => ({ scoNumber, scoVersion, offsetClusters: i, dataCrc: crc32c(data.subarray(i * clusterSize, (i + 1) * clusterSize)) }));
  const fetched: number[] = [];
  return {
    data,
    locations,
    fetched,
    fetch: async (index, count, view) => {
      for (let i = index; i < index + count; i++) fetched.push(i);
      data.copy(view, 0, index * clusterSize, (index + count) * clusterSize);
    },
  };
}

/** Reads clusters [first, first + count) of `s` through the owner's cache into a fresh buffer. */
async function read(owner: ReturnType<ReadCache["attach"]>, namespace: string, s: ReturnType<typeof sco>, first: number, count: number): Promise<Buffer> {
  const view = Buffer.alloc(count * clusterSize);
  await owner.readThrough(namespace, s.locations.slice(first, first + count), view, (index, n, subview) => s.fetch(first + index, n, subview));
  return view;
}

describe("ReadCache", () => {
  it("serves a second read from the cache: no fetch, hits and misses counted, bytes verified", async () => {
    const { cache } = await openCache(64);
    const owner = cache.attach("vd1");
    const s = sco(7, 16);
    expect((await read(owner, "ns", s, 0, 16)).equals(s.data)).toBe(true);
    expect(s.fetched).toHaveLength(16);
    await cache.idle();
    expect(owner.stats()).toMatchObject({ hits: 0, misses: 16, entryCount: 16, usedBytes: 16 * clusterSize });
    expect((await read(owner, "ns", s, 0, 16)).equals(s.data)).toBe(true);
    expect(s.fetched).toHaveLength(16);
    expect((await read(owner, "ns", s, 3, 5)).equals(s.data.subarray(3 * clusterSize, 8 * clusterSize))).toBe(true);
    expect(owner.stats()).toMatchObject({ hits: 21, misses: 16 });
    expect(cache.stats()).toMatchObject({ entryCount: 16, usedBytes: 16 * clusterSize, evictions: 0, checksumErrors: 0, fileBytes: 16 * clusterSize });
  });

  it("fetches only the clusters it lacks, in runs, and caches them", async () => {
    const { cache } = await openCache(64);
    const owner = cache.attach("vd1");
    const s = sco(1, 12);
    await read(owner, "ns", s, 2, 2);
    await read(owner, "ns", s, 8, 1);
    await cache.idle();
    s.fetched.length = 0;
    expect((await read(owner, "ns", s, 0, 12)).equals(s.data)).toBe(true);
    expect(s.fetched).toEqual([0, 1, 4, 5, 6, 7, 9, 10, 11]);
    expect(owner.stats()).toMatchObject({ hits: 3, misses: 3 + 9 });
  });

  it("evicts by CLOCK within its size: entries hit since the last sweep survive a scan", async () => {
    const { cache } = await openCache(8);
    const owner = cache.attach("vd1");
    const hot = sco(1, 4);
    await read(owner, "ns", hot, 0, 4);
    await cache.idle();
    await read(owner, "ns", hot, 0, 4); // referenced
    const colds: Array<ReturnType<typeof sco>> = [];
    for (let n = 2; n < 6; n++) {
      const cold = sco(n, 4);
      colds.push(cold);
      await read(owner, "ns", cold, 0, 4);
      await cache.idle();
      expect(cache.stats().entryCount).toBeLessThanOrEqual(8);
      hot.fetched.length = 0;
      await read(owner, "ns", hot, 0, 4);
      expect(hot.fetched).toEqual([]); // hit between sweeps: kept
    }
    expect(cache.stats().evictions).toBe(12); // three cold SCOs pushed out by the next
    colds[0]!.fetched.length = 0;
    await read(owner, "ns", colds[0]!, 0, 4);
    expect(colds[0]!.fetched).toHaveLength(4);
  });

  it("keeps a vDisk within its quota by evicting its own entries first, and applies a lower quota and mode none at once", async () => {
    const { cache } = await openCache(64);
    const small = cache.attach("small", { mode: "cache-on-read", quotaBytes: 4 * clusterSize });
    const other = cache.attach("other");
    const mine = sco(1, 10);
    const theirs = sco(2, 10);
    await read(other, "ns-b", theirs, 0, 10);
    for (let first = 0; first < 10; first += 2) {
      await read(small, "ns-a", mine, first, 2);
      await cache.idle();
    }
    expect(small.stats().entryCount).toBe(4);
    expect(other.stats().entryCount).toBe(10);
    // Its newest clusters are the ones kept (LRU within the quota).
    mine.fetched.length = 0;
    await read(small, "ns-a", mine, 6, 4);
    expect(mine.fetched).toEqual([]);
    small.set({ mode: "cache-on-read", quotaBytes: 2 * clusterSize });
    expect(small.stats().entryCount).toBe(2);
    expect(other.stats().entryCount).toBe(10);
    small.set({ mode: "none", quotaBytes: 0 });
    expect(small.stats().entryCount).toBe(0);
    mine.fetched.length = 0;
    await read(small, "ns-a", mine, 0, 10);
    await cache.idle();
    expect(mine.fetched).toHaveLength(10);
    expect(small.stats()).toMatchObject({ entryCount: 0, mode: "none" }); // none neither serves nor caches
    expect(() => small.set({ mode: "sometimes" as never, quotaBytes: 0 })).toThrow(/not a read cache mode/);
    expect(() => small.set({ mode: "cache-on-read", quotaBytes: 100 })).toThrow(/at least 4 KiB/);
    expect(small.settings).toEqual({ mode: "none", quotaBytes: 0 });
  });

  it("drops a cached cluster that fails its checksum and returns the backend's bytes instead", async () => {
    const { cache, dir } = await openCache(16);
    const owner = cache.attach("vd1");
    const s = sco(3, 4);
    await read(owner, "ns", s, 0, 4);
    await cache.idle();
    // Flip a byte of every slot written (the file holds exactly these 4 clusters).
    const file = path.join(dir, "clusters");
    const fd = fs.openSync(file, "r+");
    for (let slot = 0; slot < 4; slot++) fs.writeSync(fd, Buffer.from([0x5a]), 0, 1, slot * clusterSize + 100);
    fs.closeSync(fd);
    s.fetched.length = 0;
    expect((await read(owner, "ns", s, 0, 4)).equals(s.data)).toBe(true);
    expect(s.fetched).toEqual([0, 1, 2, 3]);
    expect(cache.stats().checksumErrors).toBe(4);
    expect(owner.stats().hits).toBe(0);
    await cache.idle();
    s.fetched.length = 0;
    expect((await read(owner, "ns", s, 0, 4)).equals(s.data)).toBe(true); // re-cached from the backend
    expect(s.fetched).toEqual([]);
  });

  it("never serves an entry whose location changed: other CRC, other SCO version, dropped namespace, detached owner", async () => {
    const { cache } = await openCache(64);
    const owner = cache.attach("vd1");
    const s = sco(5, 4);
    await read(owner, "ns", s, 0, 4);
    await cache.idle();
    // The same SCO number and offset with other contents (a reused number): the stale entry is dropped.
    const reused = sco(5, 4);
    expect((await read(owner, "ns", reused, 0, 4)).equals(reused.data)).toBe(true);
    expect(reused.fetched).toHaveLength(4);
    expect(owner.stats().hits).toBe(0);
    // A new version of the SCO (the scrubber's rewrite) is another key.
    const rewritten = sco(5, 4, 1);
    await read(owner, "ns", rewritten, 0, 4);
    expect(rewritten.fetched).toHaveLength(4);
    await cache.idle();
    // A dropped namespace (rollback, restart from the backend) loses every entry.
    cache.dropNamespace("ns");
    expect(cache.stats().entryCount).toBe(0);
    rewritten.fetched.length = 0;
    await read(owner, "ns", rewritten, 0, 4);
    expect(rewritten.fetched).toHaveLength(4);
    await cache.idle();
    expect(cache.stats().entryCount).toBe(4);
    cache.detach(owner);
    expect(cache.stats().entryCount).toBe(0);
    expect(owner.stats().hits).toBe(0);
  });

  it("cache-on-write caches written clusters; cache-on-read does not", async () => {
    const { cache } = await openCache(64);
    const writer = cache.attach("w", { mode: "cache-on-write", quotaBytes: 0 });
    const reader = cache.attach("r");
    const s = sco(9, 8);
    const crcs = s.locations.map((l) => l.dataCrc);
    writer.populateFromWrite("ns-w", 9, 0, 0, 8, s.data, crcs);
    reader.populateFromWrite("ns-r", 9, 0, 0, 8, s.data, crcs);
    s.data.fill(0); // populate copied what it keeps
    await cache.idle();
    expect(writer.stats().entryCount).toBe(8);
    expect(reader.stats().entryCount).toBe(0);
    const view = Buffer.alloc(8 * clusterSize);
    await writer.readThrough("ns-w", s.locations, view, () => Promise.reject(new Error("no backend read expected")));
    expect(writer.stats().hits).toBe(8);
    expect(view.subarray(0, clusterSize).equals(Buffer.alloc(clusterSize))).toBe(false);
  });

  it("does not grow its file past the free-space floor, and a zero size turns it off", async () => {
    const { cache } = await openCache(64, Number.MAX_SAFE_INTEGER);
    const owner = cache.attach("vd1");
    const s = sco(1, 8);
    await read(owner, "ns", s, 0, 8);
    await cache.idle();
    expect(cache.stats()).toMatchObject({ entryCount: 0, fileBytes: 0 });
    const off = await openCache(0);
    const none = off.cache.attach("vd2");
    await read(none, "ns", s, 0, 8);
    await off.cache.idle();
    expect(none.stats()).toMatchObject({ hits: 0, misses: 8, entryCount: 0 });
  });

  it("lays clusters out as docs/formats/read-cache.md says: slot i at byte i × 4096, nothing else", async () => {
    const { cache, dir } = await openCache(4);
    const owner = cache.attach("vd1");
    const s = sco(7, 2);
    await read(owner, "ns", s, 0, 2);
    await cache.idle();
    const file = await fsp.readFile(path.join(dir, "clusters"));
    expect(file.length).toBe(8192);
    expect(file.subarray(0, 4096).equals(s.data.subarray(0, 4096))).toBe(true);
    expect(file.subarray(4096, 8192).equals(s.data.subarray(4096, 8192))).toBe(true);
  });

  it("keeps its index within 47 bytes per 4 KiB slot, whatever is cached (11 MiB for 1 GiB)", async () => {
    const dir = await tempDir();
    const cache = await ReadCache.open({ dir, capacityBytes: 1024 ** 3, log, freeBytesFloor: 0 });
    closers.push(() => cache.close());
    expect(cache.stats().indexBytes).toBeLessThanOrEqual(47 * (1024 ** 3 / clusterSize));
    expect(cache.stats().indexBytes).toBeLessThanOrEqual(11 * 1024 * 1024);
  });

  it("drops what a previous run cached when it opens", async () => {
    const { cache, dir } = await openCache(16);
    const owner = cache.attach("vd1");
    await read(owner, "ns", sco(1, 4), 0, 4);
    await cache.close();
    closers.pop();
    expect(fs.statSync(path.join(dir, "clusters")).size).toBe(4 * clusterSize);
    const again = await ReadCache.open({ dir, capacityBytes: 16 * clusterSize, log, freeBytesFloor: 0 });
    closers.push(() => again.close());
    expect(fs.statSync(path.join(dir, "clusters")).size).toBe(0);
    expect(again.stats().entryCount).toBe(0);
  });
});

describe("Volume with the read cache", () => {
  const volumes: Volume[] = [];
  afterEach(async () => {
    for (const volume of volumes.splice(0)) await volume.close();
  });

  async function volumeWithCache(mode: "cache-on-read" | "cache-on-write" | "none", quotaBytes = 0): Promise<{ volume: Volume; backend: MemoryBackend; cache: ReadCache }> {
    const backend = new MemoryBackend();
    const id = randomUUID();
    const config: VolumeConfig = {
      ...defaultVolumeSettings(), id, name: "vd", namespace: `vdisk-${id}`, sizeBytes: 64 * 1024 * 1024, createdAt: "",
      scoSizeBytes: 1024 * 1024, tlogMultiplier: 2, scoCacheMaxBytes: 1024 * 1024,
    };
    const volume = await Volume.create({ dir: await tempDir(), backend, config, log });
    volumes.push(volume);
    const { cache } = await openCache(4096);
    volume.setReadCache(cache.attach("vd", { mode, quotaBytes }));
    return { volume, backend, cache };
  }

  it("reads evicted SCOs from the backend once, then from the cache; overwrites and trims are never served stale", async () => {
    const { volume, backend, cache } = await volumeWithCache("cache-on-read");
    const data = randomBytes(6 * 1024 * 1024);
    await volume.write(0, data);
    await volume.syncToBackend();
    expect(volume.stats().localScoBytes).toBeLessThanOrEqual(1024 * 1024);
    const before = backend.getRangeCount;
    expect((await volume.read(0, data.length)).equals(data)).toBe(true);
    const cold = backend.getRangeCount - before;
    expect(cold).toBeGreaterThan(0);
    await cache.idle();
    expect((await volume.read(0, data.length)).equals(data)).toBe(true);
    expect(backend.getRangeCount - before).toBe(cold);
    const stats = volume.stats().readCache!;
    expect(stats.hits).toBeGreaterThanOrEqual(5 * 256); // the evicted SCOs' clusters, the second time
    expect(stats.misses).toBe(stats.hits);
    // Overwrite half a cached cluster and trim another, push them out of the write buffer, read back.
    const patch = randomBytes(2048);
    await volume.write(4096 + 1024, patch);
    await volume.trim(8 * 4096, 4096);
    await volume.write(5 * 1024 * 1024, randomBytes(3 * 1024 * 1024)); // more SCOs: the patch's SCO is evicted
    await volume.syncToBackend();
    patch.copy(data, 4096 + 1024);
    data.fill(0, 8 * 4096, 9 * 4096);
    expect((await volume.read(0, 64 * 1024)).equals(data.subarray(0, 64 * 1024))).toBe(true);
  });

  it("cache-on-write serves evicted data without any backend read; none never hits", async () => {
    const onWrite = await volumeWithCache("cache-on-write");
    const data = randomBytes(4 * 1024 * 1024);
    await onWrite.volume.write(0, data);
    await onWrite.volume.syncToBackend();
    await onWrite.cache.idle();
    const before = onWrite.backend.getRangeCount;
    expect((await onWrite.volume.read(0, data.length)).equals(data)).toBe(true);
    expect(onWrite.backend.getRangeCount).toBe(before);
    expect(onWrite.volume.stats().readCache).toMatchObject({ misses: 0 });
    expect(onWrite.volume.stats().readCache!.hits).toBeGreaterThanOrEqual(3 * 256);

    const none = await volumeWithCache("none");
    await none.volume.write(0, data);
    await none.volume.syncToBackend();
    await none.volume.read(0, data.length);
    await none.cache.idle();
    const again = none.backend.getRangeCount;
    expect((await none.volume.read(0, data.length)).equals(data)).toBe(true);
    expect(none.backend.getRangeCount).toBeGreaterThan(again);
    expect(none.volume.stats().readCache).toMatchObject({ hits: 0, entryCount: 0 });
  });

  it("keeps a vDisk within its quota", async () => {
    const { volume, cache } = await volumeWithCache("cache-on-read", 64 * 1024);
    const data = randomBytes(4 * 1024 * 1024);
    await volume.write(0, data);
    await volume.syncToBackend();
    expect((await volume.read(0, data.length)).equals(data)).toBe(true);
    await cache.idle();
    expect(volume.stats().readCache!.usedBytes).toBe(64 * 1024);
    expect(cache.stats().usedBytes).toBe(64 * 1024);
  });
});
