// Snapshots, rollback, restart from the backend and fencing of one volume, on the in-memory backend
// (the seeded model test covers them in random combinations; these name the cases).

import { afterEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { silentLogger, isOvsError } from "../base/index.js";
import { Volume, defaultVolumeSettings, type VolumeConfig } from "./volume.js";
import { MemoryBackend } from "./testing/memory-backend.js";
import { decodeSnapshotsObject, snapshotsObjectName } from "./snapshots-object.js";

const log = silentLogger();
const dirs: string[] = [];
const volumes: Volume[] = [];

async function tempDir(): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-snap-"));
  dirs.push(dir);
  return dir;
}

function config(overrides: Partial<VolumeConfig> = {}): VolumeConfig {
  const id = randomUUID();
  return {
    id, name: "vd1", namespace: `vdisk-${id}`, sizeBytes: 64 * 1024 * 1024, createdAt: new Date().toISOString(),
    ...defaultVolumeSettings(), scoSizeBytes: 1024 * 1024, tlogMultiplier: 2, ...overrides,
  };
}

async function create(backend = new MemoryBackend()): Promise<{ volume: Volume; dir: string; backend: MemoryBackend }> {
  const dir = await tempDir();
  const volume = track(await Volume.create({ dir, backend, config: config(), log }));
  return { volume, dir, backend };
}

function track(volume: Volume): Volume {
  volumes.push(volume);
  return volume;
}

const fill = (byte: number, length = 8192): Buffer => Buffer.alloc(length, byte);

afterEach(async () => {
  for (const volume of volumes.splice(0)) await volume.close();
  for (const dir of dirs.splice(0)) await fsp.rm(dir, { recursive: true, force: true });
});

describe("snapshots", () => {
  it("creates a snapshot that is pending until its TLogs and the snapshots object are stored", async () => {
    const { volume, backend } = await create();
    await volume.write(0, fill(1));
    const info = await volume.createSnapshot("first", { metadata: "{\"by\":\"test\"}", sticky: true });
    expect(info).toMatchObject({ number: 1, name: "first", sticky: true, metadata: "{\"by\":\"test\"}" });
    await volume.waitForUploads();
    expect(volume.listSnapshots().map((s) => [s.name, s.state])).toEqual([["first", "stored"]]);
    const object = decodeSnapshotsObject(backend.namespaces.get(volume.config.namespace)!.get(snapshotsObjectName)!);
    expect(object.ok && object.value.snapshots.map((s) => s.name)).toEqual(["first"]);
    expect(object.ok && object.value.tlogs.at(-1)!.seq).toBe(info.tlogSeq);
  });

  it("refuses a bad name, a duplicate name and oversized metadata, changing nothing", async () => {
    const { volume } = await create();
    await volume.createSnapshot("a");
    for (const [name, metadata] of [["bad name", undefined], ["a", undefined], ["b", "x".repeat(5000)]] as const) {
      const error = await volume.createSnapshot(name, metadata === undefined ? {} : { metadata }).catch((e: unknown) => e);
      expect(isOvsError(error)).toBe(true);
    }
    expect(volume.listSnapshots().map((s) => s.name)).toEqual(["a"]);
  });

  it("rolls back to a stored snapshot: later writes and snapshots are gone, earlier data is back", async () => {
    const { volume, backend } = await create();
    await volume.write(0, fill(1));
    await volume.createSnapshot("one");
    await volume.write(0, fill(2));
    await volume.write(1024 * 1024, fill(3));
    await volume.createSnapshot("two");
    await volume.write(8192, fill(4));
    await volume.syncToBackend();
    await volume.write(16384, fill(5)); // not even on the backend
    const rolled = track(await volume.rollback("one"));
    expect((await rolled.read(0, 8192)).equals(fill(1))).toBe(true);
    expect((await rolled.read(8192, 16384)).equals(Buffer.alloc(16384))).toBe(true);
    expect((await rolled.read(1024 * 1024, 8192)).equals(Buffer.alloc(8192))).toBe(true);
    expect(rolled.listSnapshots().map((s) => s.name)).toEqual(["one"]);
    // Writable afterwards, and the dropped objects are collected.
    await rolled.write(0, fill(6));
    await rolled.syncToBackend();
    await rolled.close();
    const names = [...backend.namespaces.get(volume.config.namespace)!.keys()];
    const reopened = track(await Volume.openFromBackend({ dir: await tempDir(), backend, namespace: volume.config.namespace, log }));
    expect((await reopened.read(0, 8192)).equals(fill(6))).toBe(true);
    expect(reopened.restoreReport?.garbageObjectCount).toBe(0);
    expect(names.filter((n) => n.startsWith("tlog_")).length).toBe(reopened.restoreReport?.tlogCount);
  });

  it("finishes an interrupted rollback at the next open", async () => {
    const { volume, dir, backend } = await create();
    await volume.write(0, fill(1));
    await volume.createSnapshot("one");
    await volume.write(0, fill(2));
    await volume.createSnapshot("two");
    await volume.syncToBackend();
    backend.failPuts = true; // the rollback stops after recording its intent and closing the volume
    await expect(volume.rollback("one")).rejects.toThrow(/injected/);
    backend.failPuts = false;
    const reopened = track(await Volume.open({ dir, backend, log }));
    expect((await reopened.read(0, 8192)).equals(fill(1))).toBe(true);
    expect(reopened.listSnapshots().map((s) => s.name)).toEqual(["one"]);
    await reopened.close();
    expect(await Volume.hasLocalVolume(dir)).toBe(true);
  });

  it("refuses to roll back to a snapshot that is not on the backend yet", async () => {
    const { volume, backend } = await create();
    await volume.write(0, fill(1));
    backend.failPuts = true;
    await volume.createSnapshot("s");
    const error = await volume.rollback("s").catch((e: unknown) => e);
    expect(isOvsError(error, "CONFLICT")).toBe(true);
    expect(volume.listSnapshots()[0]!.state).toBe("pending");
    backend.failPuts = false;
    await volume.waitForUploads();
    expect(volume.listSnapshots()[0]!.state).toBe("stored");
  });

  it("deletes a snapshot: its TLogs merge into the next one and a rollback to that one still works", async () => {
    const { volume } = await create();
    await volume.write(0, fill(1));
    await volume.createSnapshot("one");
    await volume.write(8192, fill(2));
    await volume.createSnapshot("two");
    await volume.write(0, fill(3));
    await volume.waitForUploads();
    await volume.deleteSnapshot("one");
    expect(volume.listSnapshots().map((s) => s.name)).toEqual(["two"]);
    const rolled = track(await volume.rollback("two"));
    expect((await rolled.read(0, 16384)).equals(Buffer.concat([fill(1), fill(2)]))).toBe(true);
  });

  it("keeps snapshots across a local restart and a crash", async () => {
    const { volume, dir, backend } = await create();
    await volume.write(0, fill(1));
    await volume.createSnapshot("one");
    await volume.crashForTest();
    const reopened = track(await Volume.open({ dir, backend, log }));
    expect(reopened.listSnapshots().map((s) => s.name)).toEqual(["one"]);
    await reopened.waitForUploads();
    expect(reopened.listSnapshots()[0]!.state).toBe("stored");
  });
});

describe("restart from the backend", () => {
  it("rebuilds a volume on an empty directory from its namespace alone", async () => {
    const { volume, backend } = await create();
    const data = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i, i);
    await volume.write(0, data);
    await volume.trim(4096, 8192);
    await volume.createSnapshot("s");
    await volume.write(8 * 1024 * 1024, fill(7));
    await volume.syncToBackend();
    await volume.close();
    const restored = track(await Volume.openFromBackend({ dir: await tempDir(), backend, namespace: volume.config.namespace, log }));
    const expected = Buffer.from(data);
    expected.fill(0, 4096, 12288);
    expect((await restored.read(0, data.length)).equals(expected)).toBe(true);
    expect((await restored.read(8 * 1024 * 1024, 8192)).equals(fill(7))).toBe(true);
    expect(restored.listSnapshots().map((s) => [s.name, s.state])).toEqual([["s", "stored"]]);
    expect(restored.restoreReport?.tlogCount).toBeGreaterThan(0);
    // It continues: new writes get new SCO numbers and survive another restart from the backend.
    await restored.write(0, fill(9));
    await restored.syncToBackend();
    await restored.close();
    const again = track(await Volume.openFromBackend({ dir: await tempDir(), backend, namespace: volume.config.namespace, log }));
    expect((await again.read(0, 8192)).equals(fill(9))).toBe(true);
    expect((await again.read(8192, 4096)).equals(Buffer.alloc(4096))).toBe(true);
  });

  it("refuses a directory that already holds a volume", async () => {
    const { volume, dir, backend } = await create();
    await volume.close();
    const error = await Volume.openFromBackend({ dir, backend, namespace: volume.config.namespace, log }).catch((e: unknown) => e);
    expect(isOvsError(error, "ALREADY_EXISTS")).toBe(true);
  });
});

describe("fencing", () => {
  it("halts a stale owner: its next backend write is refused and its I/O fails; the new owner has the data", async () => {
    const { volume, backend } = await create();
    await volume.write(0, fill(1));
    await volume.syncToBackend();
    // A second start (another node, after a failover) takes the owner tag.
    const newer = track(await Volume.openFromBackend({ dir: await tempDir(), backend, namespace: volume.config.namespace, log }));
    await volume.write(8192, fill(2));
    const error = await volume.syncToBackend().catch((e: unknown) => e);
    expect(isOvsError(error, "IO_ERROR")).toBe(true);
    expect(volume.stats().fenced).toBe(true);
    expect(volume.stats().halted).toMatch(/fenced/);
    await expect(volume.read(0, 4096)).rejects.toThrow(/fenced/);
    await expect(volume.write(0, fill(3))).rejects.toThrow(/fenced/);
    expect((await newer.read(0, 16384)).equals(Buffer.concat([fill(1), Buffer.alloc(8192)]))).toBe(true);
    await newer.write(0, fill(4));
    await newer.syncToBackend();
    expect(newer.stats().fenced).toBe(false);
  });
});

describe("clones", () => {
  async function parentWithSnapshot(): Promise<{ parent: Volume; backend: MemoryBackend; resolve: (ns: string) => Volume | undefined; open: Map<string, Volume> }> {
    const { volume: parent, backend } = await create();
    await parent.write(0, fill(1, 16384));
    await parent.write(4 * 1024 * 1024, fill(2));
    await parent.createSnapshot("base");
    await parent.syncToBackend();
    // Later parent writes, overwrites and trims must not show in clones of "base".
    await parent.write(0, fill(3));
    await parent.trim(4 * 1024 * 1024, 8192);
    await parent.write(8 * 1024 * 1024, fill(4));
    await parent.createSnapshot("later");
    await parent.write(8192, fill(5));
    await parent.flush();
    const open = new Map<string, Volume>([[parent.config.namespace, parent]]);
    return { parent, backend, resolve: (ns) => open.get(ns), open };
  }

  function identity(name: string): Pick<VolumeConfig, "id" | "name" | "namespace" | "createdAt"> {
    const id = randomUUID();
    return { id, name, namespace: `vdisk-${id}`, createdAt: new Date().toISOString() };
  }

  const baseImage = (): Buffer => {
    const image = Buffer.alloc(12 * 1024 * 1024);
    fill(1, 16384).copy(image, 0);
    fill(2).copy(image, 4 * 1024 * 1024);
    return image;
  };

  it("reads the parent's snapshot through the parent's metadata, writes its own, hides trimmed parent data", async () => {
    const { parent, backend, resolve, open } = await parentWithSnapshot();
    const cloneDir = await tempDir();
    const clone = track(await Volume.createClone({ dir: cloneDir, backend, parent, snapshot: "base", identity: identity("c1"), log, resolveParent: resolve }));
    open.set(clone.config.namespace, clone);
    expect(clone.cloneDepth).toBe(1);
    expect((await clone.read(0, 12 * 1024 * 1024)).equals(baseImage())).toBe(true);
    await clone.write(4096, fill(9, 4096));
    await clone.trim(4 * 1024 * 1024, 4096);
    await clone.writeZeroes(8192, 4096);
    const expected = baseImage();
    fill(9, 4096).copy(expected, 4096);
    expected.fill(0, 4 * 1024 * 1024, 4 * 1024 * 1024 + 4096);
    expected.fill(0, 8192, 12288);
    expect((await clone.read(0, 12 * 1024 * 1024)).equals(expected)).toBe(true);
    expect((await parent.read(0, 4096)).equals(fill(3, 4096))).toBe(true); // the parent is untouched
    // After a local restart, a crash and a restart from the backend the clone reads the same.
    await clone.close();
    let again = track(await Volume.open({ dir: cloneDir, backend, log, resolveParent: resolve }));
    expect((await again.read(0, 12 * 1024 * 1024)).equals(expected)).toBe(true);
    await again.syncToBackend();
    await again.crashForTest();
    again = track(await Volume.openFromBackend({ dir: await tempDir(), backend, namespace: clone.config.namespace, log, resolveParent: resolve }));
    open.set(clone.config.namespace, again);
    expect((await again.read(0, 12 * 1024 * 1024)).equals(expected)).toBe(true);
    // A clone of the clone (depth 2) sees the clone's snapshot.
    await again.createSnapshot("c-snap");
    await again.syncToBackend();
    await again.write(0, fill(7));
    const grandchild = track(await Volume.createClone({ dir: await tempDir(), backend, parent: again, snapshot: "c-snap", identity: identity("c2"), log, resolveParent: resolve }));
    expect(grandchild.cloneDepth).toBe(2);
    expect((await grandchild.read(0, 12 * 1024 * 1024)).equals(expected)).toBe(true);
  });

  it("reports the parent's data as the clone's, and what the clone trimmed or zeroed as holes", async () => {
    const { parent, backend, resolve } = await parentWithSnapshot();
    const clone = track(await Volume.createClone({ dir: await tempDir(), backend, parent, snapshot: "base", identity: identity("c1"), log, resolveParent: resolve }));
    const first4M = 1024; // cluster of 4 MiB
    // Every cluster the parent ever mapped may be data (a superset: 8 MiB was written after "base").
    expect(clone.clustersMaybeData(0, 3072)).toEqual([0, 1, 2, 3, first4M, first4M + 1, 2048, 2049]);
    await clone.trim(4 * 1024 * 1024, 4096);
    await clone.writeZeroes(8192, 4096);
    await clone.write(4 * 4096, fill(9, 4096));
    expect(clone.clustersMaybeData(0, 3072)).toEqual([0, 1, 3, 4, first4M + 1, 2048, 2049]);
    // Whatever is not reported reads as zeroes.
    const image = await clone.read(0, 12 * 1024 * 1024);
    const reported = new Set(clone.clustersMaybeData(0, 3072));
    for (let c = 0; c < 3072; c++) if (!reported.has(c)) expect(image.subarray(c * 4096, (c + 1) * 4096).every((b) => b === 0), `cluster ${c}`).toBe(true);
  });

  it("sees the parent as of its snapshot even after the parent restarts from the backend", async () => {
    const { parent, backend, resolve, open } = await parentWithSnapshot();
    const clone = track(await Volume.createClone({ dir: await tempDir(), backend, parent, snapshot: "base", identity: identity("c1"), log, resolveParent: resolve }));
    await parent.syncToBackend();
    await parent.close();
    const restarted = track(await Volume.openFromBackend({ dir: await tempDir(), backend, namespace: parent.config.namespace, log }));
    open.set(parent.config.namespace, restarted);
    expect((await clone.read(0, 12 * 1024 * 1024)).equals(baseImage())).toBe(true);
  });

  it("refuses a pending snapshot and an unknown one", async () => {
    const { volume: parent, backend } = await create();
    backend.failPuts = true;
    await parent.createSnapshot("s");
    for (const snapshot of ["s", "nope"]) {
      const error = await Volume.createClone({ dir: await tempDir(), backend, parent, snapshot, identity: identity("c"), log, resolveParent: () => parent }).catch((e: unknown) => e);
      expect(isOvsError(error, snapshot === "s" ? "CONFLICT" : "NOT_FOUND")).toBe(true);
    }
    backend.failPuts = false;
  });

  it("makes a template: read-only, one snapshot kept, clones made from it", async () => {
    const { volume, backend } = await create();
    await volume.write(0, fill(1));
    await volume.createSnapshot("old");
    await volume.write(8192, fill(2));
    const info = await volume.setAsTemplate();
    expect(info.state).toBe("stored");
    expect(volume.isTemplate).toBe(true);
    expect(volume.listSnapshots().map((s) => s.name)).toEqual([info.name]);
    await expect(volume.write(0, fill(3))).rejects.toThrow(/template/);
    await expect(volume.createSnapshot("x")).rejects.toThrow(/template/);
    await expect(volume.deleteSnapshot(info.name)).rejects.toThrow(/template/);
    const clone = track(await Volume.createClone({ dir: await tempDir(), backend, parent: volume, snapshot: info.name, identity: identity("from-template"), log, resolveParent: () => volume }));
    expect((await clone.read(0, 16384)).equals(Buffer.concat([fill(1), fill(2)]))).toBe(true);
  });
});

describe("snapshot numbers", () => {
  it("never reuses a number while a delete of the last snapshot races a create (regression)", async () => {
    const { volume, dir, backend } = await create();
    await volume.createSnapshot("a");
    await volume.waitForUploads();
    const deleting = volume.deleteSnapshot("a");
    const created = await volume.createSnapshot("b");
    await deleting;
    expect(created.number).toBe(2);
    await volume.close();
    const reopened = track(await Volume.open({ dir, backend, log }));
    expect(reopened.listSnapshots().map((s) => s.name)).toEqual(["b"]);
  });
});
