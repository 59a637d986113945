// Scrubbing of one volume, by case, on the in-memory backend: space comes back, snapshots and clones
// keep what they see (during and after), a crash at every step leaves the old or the new state (local
// restart and restart from the backend), foreground I/O goes on during a throttled scrub, bad options
// change nothing, and the intent record's golden vector. The seeded model test mixes scrubs with
// everything else.

import { afterEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { isOvsError, silentLogger } from "../base/index.js";
import { Volume, defaultVolumeSettings, type VolumeConfig } from "./volume.js";
import { MemoryBackend } from "./testing/memory-backend.js";
import { decodeScrubIntent, encodeScrubIntent, ScrubStoppedForTest, type ScrubProgress, type ScrubStopPoint } from "./scrubber.js";
import { decodeSnapshotsObject, snapshotsObjectName } from "./snapshots-object.js";
import { parseTlog, EntryKind } from "./tlog-format.js";
import { parseScoName, scoName } from "./sco-name.js";

const log = silentLogger();
const dirs: string[] = [];
const volumes: Volume[] = [];
const KiB = 1024;
const MiB = 1024 * 1024;
const sizeBytes = 16 * MiB;

async function tempDir(): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-scrub-"));
  dirs.push(dir);
  return dir;
}

function track(volume: Volume): Volume {
  volumes.push(volume);
  return volume;
}

async function create(backend = new MemoryBackend()): Promise<{ volume: Volume; dir: string; backend: MemoryBackend; namespace: string }> {
  const id = randomUUID();
  const config: VolumeConfig = {
    id, name: "scrubbed", namespace: `vdisk-${id}`, sizeBytes, createdAt: new Date().toISOString(),
    ...defaultVolumeSettings(), scoSizeBytes: MiB, tlogMultiplier: 2,
  };
  const dir = await tempDir();
  const volume = track(await Volume.create({ dir, backend, config, log }));
  return { volume, dir, backend, namespace: config.namespace };
}

afterEach(async () => {
  for (const volume of volumes.splice(0)) await volume.close().catch(() => undefined);
  for (const dir of dirs.splice(0)) await fsp.rm(dir, { recursive: true, force: true });
});

/** Distinct content per 4 KiB cluster, tagged with `tag`. */
function pattern(tag: number, lengthBytes: number, offsetBytes = 0): Buffer {
  const data = Buffer.alloc(lengthBytes);
  for (let at = 0; at < lengthBytes; at += 512) data.writeUInt32LE(tag * 1_000_000 + (offsetBytes + at) / 512, at);
  return data;
}

function backendBytes(backend: MemoryBackend, namespace: string): number {
  let total = 0;
  for (const value of backend.namespaces.get(namespace)!.values()) total += value.length;
  return total;
}

/** Every SCO and TLog in the namespace is reached from snapshots.json, and every one it reaches is there. */
function expectSelfConsistent(backend: MemoryBackend, namespace: string): void {
  const objects = backend.namespaces.get(namespace)!;
  const listed = decodeSnapshotsObject(objects.get(snapshotsObjectName)!);
  if (!listed.ok) throw new Error(listed.reason);
  const referenced = new Set<string>();
  for (const tlog of listed.value.tlogs) {
    const bytes = objects.get(tlog.id);
    expect(bytes, `listed TLog ${tlog.id} is on the backend`).toBeDefined();
    for (const entry of parseTlog(bytes!).entries) {
      if (entry.kind === EntryKind.Location || entry.kind === EntryKind.ScoCrc) referenced.add(scoName({ cloneId: 0, scoNumber: entry.scoNumber, version: 0 }));
    }
  }
  for (const name of referenced) expect(objects.has(name), `SCO ${name} named by a listed TLog is on the backend`).toBe(true);
}

/** Writes 8 MiB, overwrites three quarters of it, trims part of the rest, and stores it all. */
async function makeGarbage(volume: Volume, reference: Buffer): Promise<void> {
  const write = async (offset: number, data: Buffer): Promise<void> => {
    await volume.write(offset, data);
    data.copy(reference, offset);
  };
  await write(0, pattern(1, 8 * MiB));
  for (let offset = 0; offset < 8 * MiB; offset += 64 * KiB) {
    if ((offset / (64 * KiB)) % 4 !== 0) await write(offset, pattern(2, 64 * KiB, offset));
  }
  await volume.trim(0, 256 * KiB);
  reference.fill(0, 0, 256 * KiB);
  await volume.syncToBackend();
}

describe("scrub", () => {
  it("gives space back: rewrites sparse SCOs, deletes the old ones, and a restart from the backend reads the same", async () => {
    const { volume, backend, namespace } = await create();
    const reference = Buffer.alloc(sizeBytes);
    await makeGarbage(volume, reference);
    const before = backendBytes(backend, namespace);
    const progress: ScrubProgress[] = [];
    const report = await volume.scrub({ threshold: 0.5, bandwidthBytesPerSecond: 0, onProgress: (p) => progress.push(p) });
    expect(report.scosRewritten).toBeGreaterThanOrEqual(8); // the first 8 SCOs are a quarter live
    expect(report.scosWritten).toBeGreaterThan(0);
    expect(report.scosWritten).toBeLessThan(report.scosRewritten);
    expect(report.liveBytesRewritten).toBeGreaterThan(0);
    expect(report.garbageBytesDeleted).toBeGreaterThan(report.liveBytesRewritten);
    expect(report.bytesReclaimed).toBeGreaterThan(5 * MiB);
    expect(report.durationMs).toBeGreaterThan(0);
    expect(progress.some((p) => p.phase === "examine" && p.done === p.total)).toBe(true);
    expect(progress.some((p) => p.phase === "rewrite" && p.done === p.total)).toBe(true);
    expect(progress.some((p) => p.phase === "delete")).toBe(true);
    const after = backendBytes(backend, namespace);
    expect(before - after).toBe(report.bytesReclaimed);
    expect((await volume.read(0, sizeBytes)).equals(reference)).toBe(true);
    expectSelfConsistent(backend, namespace);
    // Nothing is left to rewrite at the same threshold.
    const again = await volume.scrub({ threshold: 0.5, bandwidthBytesPerSecond: 0 });
    expect(again.scosRewritten).toBe(0);

    // Restart from the backend alone.
    await volume.close();
    const restored = track(await Volume.openFromBackend({ dir: await tempDir(), backend, namespace, log }));
    expect((await restored.read(0, sizeBytes)).equals(reference)).toBe(true);
    expect(restored.restoreReport!.garbageObjectCount).toBe(0);
    // Writes go on after it, and a second restart from the backend has them too.
    await restored.write(12 * MiB, pattern(3, MiB));
    pattern(3, MiB).copy(reference, 12 * MiB);
    await restored.syncToBackend();
    await restored.close();
    const reopened = track(await Volume.openFromBackend({ dir: await tempDir(), backend, namespace, log }));
    expect((await reopened.read(0, sizeBytes)).equals(reference)).toBe(true);
  });

  it("keeps what snapshots and clones see, during and after the scrub; a deleted snapshot's data goes", async () => {
    const { volume, backend, namespace } = await create();
    const first = pattern(1, 4 * MiB);
    await volume.write(0, first);
    await volume.createSnapshot("s1");
    await volume.write(0, pattern(2, 4 * MiB)); // every cluster of s1 overwritten
    await volume.createSnapshot("s2");
    await volume.write(0, pattern(3, 4 * MiB));
    await volume.syncToBackend();
    const open = new Map<string, Volume>([[namespace, volume]]);
    const resolveParent = (ns: string): Volume | undefined => open.get(ns);
    const cloneId = randomUUID();
    const clone = track(await Volume.createClone({
      dir: await tempDir(), backend, parent: volume, snapshot: "s1", log, resolveParent,
      identity: { id: cloneId, name: "clone", namespace: `vdisk-${cloneId}`, createdAt: "" },
    }));
    open.set(clone.config.namespace, clone);
    // Every SCO is fully live (s1, s2 and the current state each see their own): nothing to do at 1.0.
    const none = await volume.scrub({ threshold: 1, bandwidthBytesPerSecond: 0 });
    expect(none.scosRewritten).toBe(0);

    // s2 goes: its data (written by pattern 2) is garbage now; the clone of s1 keeps reading s1.
    await volume.deleteSnapshot("s2");
    const before = backendBytes(backend, namespace);
    let cloneReads = 0;
    let reading = true;
    const reader = (async () => {
      while (reading) {
        const got = await clone.read(0, 4 * MiB);
        if (!got.equals(first)) throw new Error("the clone read something else than its snapshot during the parent's scrub");
        cloneReads++;
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const report = await volume.scrub({ threshold: 1, bandwidthBytesPerSecond: 8 * MiB });
    reading = false;
    await reader;
    expect(cloneReads).toBeGreaterThan(0);
    expect(report.scosRewritten).toBeGreaterThanOrEqual(4);
    expect(backendBytes(backend, namespace)).toBeLessThan(before - 3 * MiB);
    expect((await clone.read(0, 4 * MiB)).equals(first)).toBe(true);
    expect((await volume.read(0, 4 * MiB)).equals(pattern(3, 4 * MiB))).toBe(true);
    expectSelfConsistent(backend, namespace);
    // The parent restarted from the backend still serves s1 to the clone, and rolls back to it.
    await volume.close();
    const restored = track(await Volume.openFromBackend({ dir: await tempDir(), backend, namespace, log, resolveParent }));
    open.set(namespace, restored);
    expect((await clone.read(0, 4 * MiB)).equals(first)).toBe(true);
    await clone.close();
    const rolledBack = track(await restored.rollback("s1"));
    expect((await rolledBack.read(0, 4 * MiB)).equals(first)).toBe(true);
  });

  it("runs beside foreground writes and reads, within its bandwidth, and a rollback waits for it", async () => {
    const { volume, backend, namespace } = await create();
    const reference = Buffer.alloc(sizeBytes);
    await makeGarbage(volume, reference);
    await volume.createSnapshot("keep");
    await volume.waitForUploads();
    const bandwidth = 4 * MiB;
    const startedAt = performance.now();
    const scrub = volume.scrub({ threshold: 0.5, bandwidthBytesPerSecond: bandwidth });
    await expect(volume.scrub()).rejects.toMatchObject({ code: "CONFLICT" });
    await expect(volume.rollback("keep")).rejects.toMatchObject({ code: "CONFLICT" });
    let writes = 0;
    let done = false;
    void scrub.finally(() => (done = true));
    for (let i = 0; !done; i++) {
      const offset = ((i * 37) % 2048) * 4 * KiB;
      const data = pattern(10 + i, 8 * KiB, offset);
      await volume.write(offset, data);
      data.copy(reference, offset);
      const at = ((i * 101) % 4096) * 4 * KiB;
      expect((await volume.read(at, 8 * KiB)).equals(reference.subarray(at, at + 8 * KiB))).toBe(true);
      writes++;
    }
    const report = await scrub;
    const seconds = (performance.now() - startedAt) / 1000;
    expect(writes).toBeGreaterThan(10);
    // Bytes moved: live clusters read and written, TLogs read and written; at most a burst over the limit.
    expect(report.liveBytesRewritten * 2).toBeLessThanOrEqual(bandwidth * seconds + 8 * MiB + bandwidth);
    expect(seconds).toBeGreaterThan((report.liveBytesRewritten * 2 - 8 * MiB) / bandwidth - 0.5);
    expect((await volume.read(0, sizeBytes)).equals(reference)).toBe(true);
    await volume.syncToBackend();
    expectSelfConsistent(backend, namespace);
    await volume.close();
    const restored = track(await Volume.openFromBackend({ dir: await tempDir(), backend, namespace, log }));
    expect((await restored.read(0, sizeBytes)).equals(reference)).toBe(true);
  });

  it("keeps the backend's copy of a cluster whose newer value is not on the backend yet (node loss after the scrub)", async () => {
    const { volume, backend, namespace } = await create();
    await volume.write(0, pattern(1, MiB)); // fills SCO 1
    await volume.write(4 * KiB, pattern(2, 4 * KiB, 4 * KiB)); // cluster 1 overwritten: SCO 1 is 255/256 live
    await volume.syncToBackend();
    let wrote = false;
    const report = await volume.scrub({
      threshold: 1, bandwidthBytesPerSecond: 0,
      // Cluster 0 is overwritten after the scrub listed the backend's TLogs and before it judges them:
      // its new value is durable locally (flushed, in the map) but its TLog is still open, so not on
      // the backend.
      afterListingForTest: async () => {
        if (wrote) return;
        wrote = true;
        await volume.write(0, pattern(3, 4 * KiB));
        await volume.flush();
        while (volume.stats().uncommittedClusterCount > 0) await new Promise((resolve) => setTimeout(resolve, 5));
      },
    });
    expect(wrote).toBe(true);
    expect(report.scosRewritten).toBeGreaterThanOrEqual(1); // SCO 1 was rewritten
    expect((await volume.read(0, 8 * KiB)).equals(Buffer.concat([pattern(3, 4 * KiB), pattern(2, 4 * KiB, 4 * KiB)]))).toBe(true);
    // Node loss: only the backend is left. The unstored overwrite is gone; the old value must not be.
    await volume.crashForTest();
    volumes.splice(volumes.indexOf(volume), 1);
    const elsewhere = track(await Volume.openFromBackend({ dir: await tempDir(), backend, namespace, log }));
    expect((await elsewhere.read(0, 8 * KiB)).equals(Buffer.concat([pattern(1, 4 * KiB), pattern(2, 4 * KiB, 4 * KiB)]))).toBe(true);
    expect((await elsewhere.read(8 * KiB, MiB - 8 * KiB)).equals(pattern(1, MiB - 8 * KiB, 8 * KiB))).toBe(true);
    expectSelfConsistent(backend, namespace);
  });
  const smallRounds = [
    { name: "with the TLog cache and the examine's verdicts", limits: { victimScoCountPerRoundMax: 3 } },
    { name: "past every memory budget (no TLog cache, verdicts looked up again, no read coalescing)", limits: { victimScoCountPerRoundMax: 3, tlogCacheBytesMax: 0, liveBitsBytesMax: 0, readGapBytesMax: 0 } },
  ];
  for (const { name, limits } of smallRounds) {
    it(`gives the same state in many small rounds ${name}, reading the old SCOs from the backend`, async () => {
      const { volume, backend, namespace } = await create();
      const reference = Buffer.alloc(sizeBytes);
      await makeGarbage(volume, reference);
      await volume.createSnapshot("snap");
      const snapImage = Buffer.from(reference);
      for (let offset = 0; offset < 4 * MiB; offset += 192 * KiB) {
        const data = pattern(7, 64 * KiB, offset);
        await volume.write(offset, data);
        data.copy(reference, offset);
      }
      await volume.syncToBackend();
      await volume.close();
      // A restart from the backend has no local SCO copies: the live clusters come by partial gets.
      const restored = track(await Volume.openFromBackend({ dir: await tempDir(), backend, namespace, log }));
      const before = backendBytes(backend, namespace);
      const report = await restored.scrub({ threshold: 0.5, bandwidthBytesPerSecond: 0, limitsForTest: limits });
      expect(report.rounds).toBeGreaterThan(2);
      expect(report.scosRewritten).toBeGreaterThanOrEqual(8);
      expect(before - backendBytes(backend, namespace)).toBe(report.bytesReclaimed);
      expect((await restored.read(0, sizeBytes)).equals(reference)).toBe(true);
      expectSelfConsistent(backend, namespace);
      expect((await restored.scrub({ threshold: 0.5, bandwidthBytesPerSecond: 0 })).scosRewritten).toBe(0);
      await restored.close();
      const again = track(await Volume.openFromBackend({ dir: await tempDir(), backend, namespace, log }));
      expect((await again.read(0, sizeBytes)).equals(reference)).toBe(true);
      const rolled = track(await again.rollback("snap"));
      expect((await rolled.read(0, sizeBytes)).equals(snapImage)).toBe(true);
    });
  }

  it("refuses bad options with INVALID_ARGUMENT and changes nothing", async () => {
    const { volume, backend, namespace } = await create();
    const reference = Buffer.alloc(sizeBytes);
    await makeGarbage(volume, reference);
    const before = new Map(backend.namespaces.get(namespace)!);
    for (const options of [{ threshold: 0 }, { threshold: 1.5 }, { threshold: Number.NaN }, { bandwidthBytesPerSecond: -1 }, { bandwidthBytesPerSecond: 1.5 }]) {
      const error = await volume.scrub(options).catch((e: unknown) => e);
      expect(isOvsError(error, "INVALID_ARGUMENT")).toBe(true);
    }
    expect([...backend.namespaces.get(namespace)!.keys()].sort()).toEqual([...before.keys()].sort());
  });

  const stopPoints: ScrubStopPoint[] = ["prepared", "uploaded", "committed", "published", "deleting"];
  for (const stopAt of stopPoints) {
    it(`leaves the old or the new state after a crash at "${stopAt}" (local restart and restart from the backend)`, async () => {
      const { volume, dir, backend, namespace } = await create();
      const reference = Buffer.alloc(sizeBytes);
      await makeGarbage(volume, reference);
      await volume.createSnapshot("snap");
      const snapImage = Buffer.from(reference);
      await volume.write(8 * MiB, pattern(5, MiB));
      pattern(5, MiB).copy(reference, 8 * MiB);
      await volume.syncToBackend();
      const error = await volume.scrub({ threshold: 0.5, bandwidthBytesPerSecond: 0, stopAt }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ScrubStoppedForTest);
      await volume.crashForTest();
      // The backend as it is at the crash: a restart from it alone is one state or the other.
      const copy = new MemoryBackend();
      copy.namespaces.set(namespace, new Map(backend.namespaces.get(namespace)!));
      expectSelfConsistent(copy, namespace);
      const elsewhere = track(await Volume.openFromBackend({ dir: await tempDir(), backend: copy, namespace, log }));
      expect((await elsewhere.read(0, sizeBytes)).equals(reference)).toBe(true);
      const rolled = track(await elsewhere.rollback("snap"));
      expect((await rolled.read(0, sizeBytes)).equals(snapImage)).toBe(true);

      // The local restart undoes or finishes the scrub; then a new scrub completes.
      const reopened = track(await Volume.open({ dir, backend, log }));
      expect((await reopened.read(0, sizeBytes)).equals(reference)).toBe(true);
      const objects = [...backend.namespaces.get(namespace)!.keys()];
      expectSelfConsistent(backend, namespace);
      const listed = decodeSnapshotsObject(backend.namespaces.get(namespace)!.get(snapshotsObjectName)!);
      if (!listed.ok) throw new Error(listed.reason);
      const reached = new Set(listed.value.tlogs.map((t) => t.id));
      for (const tlog of listed.value.tlogs) {
        for (const entry of parseTlog(backend.namespaces.get(namespace)!.get(tlog.id)!).entries) {
          if (entry.kind === EntryKind.Location || entry.kind === EntryKind.ScoCrc) reached.add(scoName({ cloneId: 0, scoNumber: entry.scoNumber, version: 0 }));
        }
      }
      const unreached = objects.filter((name) => (name.startsWith("tlog_") || parseScoName(name)) && !reached.has(name));
      expect(unreached, "no object is left that nothing names").toEqual([]);
      const report = await reopened.scrub({ threshold: 0.5, bandwidthBytesPerSecond: 0 });
      if (stopAt === "prepared" || stopAt === "uploaded") expect(report.scosRewritten).toBeGreaterThan(0);
      expect((await reopened.read(0, sizeBytes)).equals(reference)).toBe(true);
      await reopened.close();
      const restored = track(await Volume.openFromBackend({ dir: await tempDir(), backend, namespace, log }));
      expect((await restored.read(0, sizeBytes)).equals(reference)).toBe(true);
      const back = track(await restored.rollback("snap"));
      expect((await back.read(0, sizeBytes)).equals(snapImage)).toBe(true);
    });
  }

  it("scrubs a clone's own SCOs while its parent stays as it is", async () => {
    const { volume, backend, namespace } = await create();
    await volume.write(0, pattern(1, 4 * MiB));
    await volume.createSnapshot("base");
    await volume.syncToBackend();
    const open = new Map<string, Volume>([[namespace, volume]]);
    const resolveParent = (ns: string): Volume | undefined => open.get(ns);
    const cloneId = randomUUID();
    const clone = track(await Volume.createClone({
      dir: await tempDir(), backend, parent: volume, snapshot: "base", log, resolveParent,
      identity: { id: cloneId, name: "clone", namespace: `vdisk-${cloneId}`, createdAt: "" },
    }));
    open.set(clone.config.namespace, clone);
    const reference = pattern(1, sizeBytes);
    reference.fill(0, 4 * MiB);
    for (let round = 0; round < 3; round++) {
      const data = pattern(20 + round, 2 * MiB, MiB);
      await clone.write(MiB, data);
      data.copy(reference, MiB);
    }
    await clone.trim(3 * MiB, 512 * KiB);
    reference.fill(0, 3 * MiB, 3 * MiB + 512 * KiB);
    await clone.syncToBackend();
    const parentBefore = backendBytes(backend, namespace);
    const report = await clone.scrub({ threshold: 0.9, bandwidthBytesPerSecond: 0 });
    expect(report.scosRewritten).toBeGreaterThan(0);
    expect(backendBytes(backend, namespace)).toBe(parentBefore);
    expect((await clone.read(0, sizeBytes)).equals(reference)).toBe(true);
    expectSelfConsistent(backend, clone.config.namespace);
    await clone.close();
    const restored = track(await Volume.openFromBackend({ dir: await tempDir(), backend, namespace: clone.config.namespace, log, resolveParent }));
    expect((await restored.read(0, sizeBytes)).equals(reference)).toBe(true);
  });
});

describe("scrub intent record", () => {
  it("matches the golden vector of docs/formats/volume-metadata.md", () => {
    const text = encodeScrubIntent({
      phase: "committed",
      created: ["00_00000109_00", "tlog_5f0c8a1e-2b3d-4c5e-8f70-9a1b2c3d4e5f"],
      replaced: ["00_00000003_00", "00_00000004_00", "tlog_0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"],
    });
    expect(text).toBe(
      '{"format":"ovs-scrub-intent","version":1,"phase":"committed","created":["00_00000109_00","tlog_5f0c8a1e-2b3d-4c5e-8f70-9a1b2c3d4e5f"],' +
        '"replaced":["00_00000003_00","00_00000004_00","tlog_0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"]}',
    );
    expect(decodeScrubIntent(text)).toEqual({ ok: true, value: { phase: "committed", created: ["00_00000109_00", "tlog_5f0c8a1e-2b3d-4c5e-8f70-9a1b2c3d4e5f"], replaced: ["00_00000003_00", "00_00000004_00", "tlog_0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"] } });
    for (const bad of ["", "[]", text.replace("committed", "done"), text.replace('"version":1', '"version":2'), text.replace("00_00000003_00", "../etc/passwd")]) {
      expect(decodeScrubIntent(bad).ok).toBe(false);
    }
  });
});
