// VDiskService's settings and QoS on real components (embedded store, local backend, volumes on disk):
// a change is validated as a whole (bad input → INVALID_ARGUMENT, nothing changed, in memory or in the
// store), persisted (a new service on the same data dir and store starts with it) and applied live
// (the limiter in front of the volume delays requests over the limit; a clone has its own limiter).

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EmbeddedStore } from "../store/index.js";
import { LocalBackend } from "../backend/index.js";
import { silentLogger } from "../base/index.js";
import { ReadCache, noQosLimits } from "../volume/index.js";
import { VDiskService, type VDiskRecord } from "./vdisk-service.js";

const MiB = 1024 * 1024;
const log = silentLogger();
let dir: string;
let store: EmbeddedStore;
let backend: LocalBackend;
let service: VDiskService | undefined;

async function startService(): Promise<VDiskService> {
  service = new VDiskService({ dataDir: dir, nodeId: "n1", store, backend, log });
  await service.start();
  return service;
}

async function storedRecord(name: string): Promise<VDiskRecord> {
  const value = await store.get(`ovs/vdisks/${name}`);
  return JSON.parse(value!.toString("utf8")) as VDiskRecord;
}

beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-vdisk-service-"));
  store = await EmbeddedStore.open({ dir: path.join(dir, "store") });
  backend = await LocalBackend.open({ dir: path.join(dir, "backend") });
});

afterEach(async () => {
  await service?.stop();
  service = undefined;
  await backend.close();
  await store.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

describe("vDisk settings", () => {
  it("shows the defaults: no QoS limits, no SCO cache cap, the creation-time SCO size and TLog multiplier", async () => {
    const vdisks = await startService();
    await vdisks.create("d1", 16 * MiB);
    expect(vdisks.settings("d1")).toEqual({ qos: { ...noQosLimits }, scoCacheMaxBytes: 0, cache: { mode: "cache-on-read", quotaBytes: 0 }, scoSizeBytes: 8 * MiB, tlogMultiplier: 8, version: 0 });
    expect((await storedRecord("d1")).cache).toBeUndefined();
    expect(vdisks.info("d1").qos).toEqual({ limits: { ...noQosLimits }, delayedRequests: 0, delayedMsTotal: 0 });
    expect((await storedRecord("d1")).qos).toBeUndefined();
  });

  it("refuses bad input as a whole and changes nothing", async () => {
    const vdisks = await startService();
    await vdisks.create("d1", 16 * MiB);
    await vdisks.setSettings("d1", { qos: { writeIops: 100 }, scoCacheMaxBytes: 8 * MiB });
    const before = vdisks.settings("d1");
    const recordBefore = await storedRecord("d1");
    const bad: Array<[Parameters<VDiskService["setSettings"]>[1], RegExp]> = [
      [{ qos: { readIops: -1 } }, /readIops must be a whole number/],
      [{ qos: { writeBytesPerSecond: 1.5 } }, /writeBytesPerSecond must be a whole number/],
      [{ qos: { readIops: 10, colour: 3 } as never }, /"colour" is not a QoS limit/],
      // A valid QoS change with a bad cap: neither applies.
      [{ qos: { totalIops: 500 }, scoCacheMaxBytes: -4096 }, /SCO cache size/],
      [{ qos: { totalIops: 500 }, scoSizeBytes: 4 * MiB }, /SCO size of vDisk d1 is fixed at creation \(8 MiB\)/],
      [{ tlogMultiplier: 16 }, /TLog multiplier of vDisk d1 is fixed at creation \(8\)/],
      // A valid QoS change with a bad read cache setting: neither applies.
      [{ qos: { totalIops: 500 }, cache: { mode: "sometimes" as never } }, /"sometimes" is not a read cache mode/],
      [{ cache: { quotaBytes: -1 } }, /read cache quota must be a whole number/],
      [{ cache: { quotaBytes: 1000 } }, /at least 4 KiB/],
      [{ cache: { size: 5 } as never }, /"size" is not a read cache setting/],
    ];
    for (const [change, message] of bad) {
      await expect(vdisks.setSettings("d1", change), JSON.stringify(change)).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(message) });
      expect(vdisks.settings("d1")).toEqual(before);
      expect(await storedRecord("d1")).toEqual(recordBefore);
    }
    await expect(vdisks.setSettings("nope", { qos: { readIops: 1 } })).rejects.toMatchObject({ code: "NOT_FOUND" });
    // The current values of the fixed settings are accepted (nothing to change).
    await vdisks.setSettings("d1", { scoSizeBytes: 8 * MiB, tlogMultiplier: 8 });
    expect(vdisks.settings("d1")).toEqual(before);
  });

  it("persists QoS limits and the SCO cache cap across a service restart, and clearing them removes them", async () => {
    let vdisks = await startService();
    await vdisks.create("d1", 16 * MiB);
    const set = await vdisks.setSettings("d1", { qos: { writeIops: 300, readBytesPerSecond: 20 * MiB }, scoCacheMaxBytes: 64 * MiB });
    expect(set.qos).toEqual({ ...noQosLimits, writeIops: 300, readBytesPerSecond: 20 * MiB });
    // qos fields merge: setting one keeps the others.
    await vdisks.setSettings("d1", { qos: { totalIops: 1000 } });
    const expected = { qos: { ...noQosLimits, writeIops: 300, readBytesPerSecond: 20 * MiB, totalIops: 1000 }, scoCacheMaxBytes: 64 * MiB, cache: { mode: "cache-on-read", quotaBytes: 0 }, scoSizeBytes: 8 * MiB, tlogMultiplier: 8, version: 2 };
    expect(vdisks.settings("d1")).toEqual(expected);
    expect((await storedRecord("d1")).qos).toEqual(expected.qos);

    await vdisks.stop();
    vdisks = await startService();
    expect(vdisks.settings("d1")).toEqual(expected);
    expect(vdisks.info("d1").qos.limits).toEqual(expected.qos);

    await vdisks.setSettings("d1", { qos: { writeIops: 0, readBytesPerSecond: 0, totalIops: 0 }, scoCacheMaxBytes: 0 });
    expect((await storedRecord("d1")).qos).toBeUndefined();
    await vdisks.stop();
    vdisks = await startService();
    expect(vdisks.settings("d1")).toMatchObject({ qos: { ...noQosLimits }, scoCacheMaxBytes: 0 });
  });

  it("applies limits live in front of the volume, per vDisk: a clone has its own limiter, a rollback keeps it", async () => {
    const vdisks = await startService();
    await vdisks.create("d1", 16 * MiB);
    const nbdExport = vdisks.openExport("d1")!;
    const block = Buffer.alloc(4096, 1);
    // No limit: nothing is delayed.
    await Promise.all(Array.from({ length: 20 }, (_, i) => nbdExport.write(i * 4096, block, false)));
    expect(vdisks.info("d1").qos.delayedRequests).toBe(0);
    // 50 writes/s with a 0.1 s burst: 6 start at once, the other 14 one every 20 ms (280 ms; timers may
    // fire a little early, hence 250).
    await vdisks.setSettings("d1", { qos: { writeIops: 50 } });
    const start = performance.now();
    await Promise.all(Array.from({ length: 20 }, (_, i) => nbdExport.write(i * 4096, block, false)));
    expect(performance.now() - start).toBeGreaterThanOrEqual(250);
    const qos = vdisks.info("d1").qos;
    expect(qos.delayedRequests).toBeGreaterThanOrEqual(13);
    expect(qos.delayedMsTotal).toBeGreaterThan(0);

    // A clone starts without limits and does not share d1's limiter.
    await vdisks.createSnapshot("d1", "s1");
    const clone = await waitForClone(vdisks);
    expect(clone.qos.limits).toEqual({ ...noQosLimits });
    await vdisks.setSettings("c1", { qos: { readIops: 7 } });
    expect(vdisks.settings("c1").qos).toEqual({ ...noQosLimits, readIops: 7 });
    expect(vdisks.settings("d1").qos).toEqual({ ...noQosLimits, writeIops: 50 });

    // A rollback serves a new volume behind the same limiter (limits and counters kept).
    await vdisks.rollback("d1", "s1");
    expect(vdisks.info("d1").qos).toEqual(qos);
  });
});

/** Clones d1 at s1 once the snapshot is on the backend (bounded wait). */
async function waitForClone(vdisks: VDiskService): Promise<ReturnType<VDiskService["info"]>> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (vdisks.listSnapshots("d1").find((s) => s.name === "s1")?.state === "stored") return vdisks.clone("d1", "s1", "c1");
    if (Date.now() > deadline) throw new Error("snapshot s1 is not stored after 20 s");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("vDisk read cache settings", () => {
  let readCache: ReadCache;
  beforeEach(async () => {
    readCache = await ReadCache.open({ dir: path.join(dir, "read-cache"), capacityBytes: 64 * MiB, log, freeBytesFloor: 0 });
  });
  afterEach(async () => {
    await service?.stop();
    service = undefined;
    await readCache.close();
  });

  async function startWithCache(): Promise<VDiskService> {
    service = new VDiskService({ dataDir: dir, nodeId: "n1", store, backend, log, readCache });
    await service.start();
    return service;
  }

  /** Writes `bytes`, stores everything on the backend and evicts it from the write buffer. */
  async function writeAndEvict(vdisks: VDiskService, name: string, bytes: Buffer): Promise<void> {
    await vdisks.setSettings(name, { scoCacheMaxBytes: 4096 });
    await vdisks.openExport(name)!.write(0, bytes, false);
    await vdisks.createSnapshot(name, `s${Date.now()}`); // closes the SCO and TLog
    const deadline = Date.now() + 20_000;
    while (vdisks.info(name).stats.localScoBytes > 0 || vdisks.info(name).stats.pendingUploads > 0) {
      if (Date.now() > deadline) throw new Error("the write buffer was not evicted within 20 s");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it("sets mode and quota live, persists them, serves hits, drops the entries at a rollback and a delete", async () => {
    let vdisks = await startWithCache();
    await vdisks.create("d1", 16 * MiB);
    const data = Buffer.alloc(MiB, 0x3c);
    await writeAndEvict(vdisks, "d1", data);
    const nbdExport = (): ReturnType<VDiskService["openExport"]> & object => vdisks.openExport("d1")!;
    expect((await nbdExport().read(0, MiB)).equals(data)).toBe(true);
    await readCache.idle();
    expect((await nbdExport().read(0, MiB)).equals(data)).toBe(true);
    expect(vdisks.info("d1").stats.readCache).toMatchObject({ mode: "cache-on-read", hits: 256, misses: 256, usedBytes: MiB, node: { entryCount: 256, capacityBytes: 64 * MiB } });

    const set = await vdisks.setSettings("d1", { cache: { quotaBytes: 256 * 1024 } });
    expect(set.cache).toEqual({ mode: "cache-on-read", quotaBytes: 256 * 1024 });
    expect(vdisks.info("d1").stats.readCache!.usedBytes).toBe(256 * 1024);
    expect((await storedRecord("d1")).cache).toEqual({ mode: "cache-on-read", quotaBytes: 256 * 1024 });
    await vdisks.setSettings("d1", { cache: { mode: "none" } });
    expect(vdisks.info("d1").stats.readCache).toMatchObject({ mode: "none", quotaBytes: 256 * 1024, usedBytes: 0 });
    await nbdExport().read(0, MiB);
    expect(vdisks.info("d1").stats.readCache!.hits).toBe(256);

    // Kept across a restart of the service (the cache itself starts empty: it is node-local and dropped).
    await vdisks.stop();
    vdisks = await startWithCache();
    expect(vdisks.settings("d1").cache).toEqual({ mode: "none", quotaBytes: 256 * 1024 });
    await vdisks.setSettings("d1", { cache: { mode: "cache-on-read", quotaBytes: 0 } });
    expect((await storedRecord("d1")).cache).toBeUndefined(); // back to the defaults

    // A rollback: the volume restarts from the backend, so its namespace's entries go; counters stay.
    await nbdExport().read(0, MiB);
    await readCache.idle();
    expect(readCache.stats().entryCount).toBe(256);
    const snapshot = vdisks.listSnapshots("d1")[0]!.name;
    await vdisks.rollback("d1", snapshot);
    expect(readCache.stats().entryCount).toBe(0);
    expect(vdisks.info("d1").stats.readCache).toMatchObject({ misses: 256, usedBytes: 0 });
    expect((await nbdExport().read(0, MiB)).equals(data)).toBe(true);
    await readCache.idle();
    expect(readCache.stats().entryCount).toBe(256);
    await vdisks.delete("d1", false);
    expect(readCache.stats().entryCount).toBe(0);
  });
});
