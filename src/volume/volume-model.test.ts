// Seeded model-based test of the volume engine: random writes (aligned and not), trims, write-zeroes,
// flushes, clean restarts, crashes (stop without sync, as kill -9), uploads with eviction, snapshots,
// deletes of snapshots, rollbacks, restarts from the backend on an empty directory, node losses
// (a crash, then a restart from the backend elsewhere) and scrubs (at random thresholds, beside
// foreground writes and reads, or stopped at a random step by a crash followed by a local restart or a
// restart from the backend; of the parent during a clone session and of the clone), against an in-memory reference disk. After a
// crash every sector must hold its last flushed value or a value written after that flush; after a node
// loss, its value at the last full backend sync or one written since; everything else (every read, every
// rollback to a snapshot, every restart from the backend after a full sync) must match exactly. A
// failure prints its seed; replay with OVS_MODEL_SEED=<seed>. OVS_MODEL_SEEDS / OVS_MODEL_OPS run more.
// Two seeds in three run with the node's read cache (read-cache.ts), small (256 or 512 clusters) so that it
// evicts all the time, in cache-on-read mode with a quota of 128 clusters or in cache-on-write mode, with
// a write buffer that keeps no SCO once it is safe (reads of older data go to the cache or the backend),
// entries dropped on a restart from the backend as the vDisk service does: no read may return stale bytes.

import { afterEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { isOvsError, silentLogger } from "../base/index.js";
import { Volume, defaultVolumeSettings, type VolumeConfig } from "./volume.js";
import { ReadCache, type ReadCacheMode, type ReadCacheOwner } from "./read-cache.js";
import { MemoryBackend } from "./testing/memory-backend.js";
import { LocalBackend, type ObjectBackend } from "../backend/index.js";
import { ScrubStoppedForTest, type ScrubStopPoint } from "./scrubber.js";

const sizeBytes = 4 * 1024 * 1024;
const sectorBytes = 512;
const scrubThresholds = [0.3, 0.5, 0.8, 1];
const scrubStopPoints: ScrubStopPoint[] = ["prepared", "uploaded", "committed", "published", "deleting"];

/** xorshift32: small, seeded, reproducible. */
function rng(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 2 ** 32;
  };
}

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await fsp.rm(dir, { recursive: true, force: true });
});

async function runSeed(seed: number, operationCount: number, backendKind: "memory" | "local" = "memory"): Promise<void> {
  const random = rng(seed);
  const int = (max: number): number => Math.floor(random() * max);
  const newDir = async (): Promise<string> => {
    const made = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-model-"));
    dirs.push(made);
    return made;
  };
  let dir = await newDir();
  // The local backend stores closed SCOs by hard-linking their files: the model then also checks that no
  // path of the volume (crash recovery, scrub, eviction, restart elsewhere) changes a linked file.
  const backend: ObjectBackend = backendKind === "memory" ? new MemoryBackend() : await LocalBackend.open({ dir: path.join(await newDir(), "backend") });
  const cacheMode: ReadCacheMode | undefined = [undefined, "cache-on-read", "cache-on-write"][seed % 3] as ReadCacheMode | undefined;
  const id = randomUUID();
  const config: VolumeConfig = {
    ...defaultVolumeSettings(),
    id, name: "model", namespace: `vdisk-${id}`, sizeBytes, createdAt: "",
    // With the read cache, SCOs leave the write buffer as soon as they are safe: reads go to the cache.
    scoSizeBytes: 1024 * 1024, tlogMultiplier: 2, scoCacheMaxBytes: cacheMode === undefined ? 2 * 1024 * 1024 : 4096,
  };
  const log = silentLogger();
  // The read cache, as the vDisk service wires it: one owner per namespace, kept across restarts.
  const readCache = cacheMode === undefined ? undefined : await ReadCache.open({ dir: await newDir(), capacityBytes: (cacheMode === "cache-on-write" ? 512 : 256) * 4096, log, freeBytesFloor: 0 });
  const owners = new Map<string, ReadCacheOwner>();
  const cached = (opened: Volume): Volume => {
    if (readCache === undefined) return opened;
    const namespace = opened.config.namespace;
    if (opened.restoreReport !== undefined) readCache.dropNamespace(namespace);
    let owner = owners.get(namespace);
    if (owner === undefined) {
      owner = readCache.attach(namespace, { mode: cacheMode!, quotaBytes: cacheMode === "cache-on-read" ? 128 * 4096 : 0 });
      owners.set(namespace, owner);
    }
    opened.setReadCache(owner);
    return opened;
  };
  let volume = cached(await Volume.create({ dir, backend, config, log }));
  // Reference: what each sector must read as; `pending` holds values written since the last flush.
  const reference = Buffer.alloc(sizeBytes);
  let flushed = Buffer.alloc(sizeBytes);
  const pendingSectors = new Map<number, Buffer[]>();
  // The same since the last full backend sync (for node losses).
  let backendSynced = Buffer.alloc(sizeBytes);
  const pendingSinceBackendSync = new Map<number, Buffer[]>();
  const remember = (offset: number, length: number): void => {
    for (let s = offset / sectorBytes; s < (offset + length) / sectorBytes; s++) {
      const value = Buffer.from(reference.subarray(s * sectorBytes, (s + 1) * sectorBytes));
      for (const pending of [pendingSectors, pendingSinceBackendSync]) {
        const list = pending.get(s) ?? [];
        list.push(value);
        pending.set(s, list);
      }
    }
  };
  /** Everything is now both flushed and on the backend, exactly as the reference. */
  const allSynced = (): void => {
    flushed = Buffer.from(reference);
    pendingSectors.clear();
    backendSynced = Buffer.from(reference);
    pendingSinceBackendSync.clear();
  };
  /** Checks a whole-volume image against "its last durable value or one written since", sector by sector. */
  const checkAllowed = (op: number, what: string, got: Buffer, durableImage: Buffer, pending: Map<number, Buffer[]>): void => {
    for (let s = 0; s < sizeBytes / sectorBytes; s++) {
      const value = got.subarray(s * sectorBytes, (s + 1) * sectorBytes);
      const durable = durableImage.subarray(s * sectorBytes, (s + 1) * sectorBytes);
      const allowed = [durable, ...(pending.get(s) ?? [])];
      if (!allowed.some((candidate) => candidate.equals(value))) {
        throw new Error(`op ${op}: after ${what} sector ${s} holds a value never written there since: got ${value.readUInt32LE(0)}/${value[4]} durable ${durable.readUInt32LE(0)}/${durable[4]} pending ${(pending.get(s) ?? []).map((v) => v.readUInt32LE(0)).join(",")}`);
      }
    }
  };
  // Snapshots: name → the image they must read as after a rollback (a snapshot implies a flush).
  const snapshotImages = new Map<string, Buffer>();
  let snapshotCounter = 0;
  const snapshotCountMax = 6;
  let fill = 1;
  /**
   * A clone session: a linked clone of a random stored snapshot gets random writes, trims and
   * write-zeroes interleaved with writes and snapshots on its parent (which must never show through),
   * local restarts and restarts from the backend, and a clone of itself (half the time after it became
   * a template); every read is checked against
   * the clone's own reference (the snapshot's image plus its writes). The clones are deleted after.
   */
  const exerciseClone = async (op: number): Promise<void> => {
    const stored = volume.listSnapshots().filter((snapshot) => snapshot.state === "stored" && snapshotImages.has(snapshot.name));
    if (stored.length === 0) return;
    const snapshot = stored[int(stored.length)]!;
    const open = new Map<string, Volume>([[config.namespace, volume]]);
    const resolveParent = (namespace: string): Volume | undefined => open.get(namespace);
    const identity = (name: string): Pick<VolumeConfig, "id" | "name" | "namespace" | "createdAt"> => {
      const cloneId = randomUUID();
      return { id: cloneId, name, namespace: `vdisk-${cloneId}`, createdAt: "" };
    };
    let cloneDir = await newDir();
    let clone = cached(await Volume.createClone({ dir: cloneDir, backend, parent: volume, snapshot: snapshot.name, identity: identity("clone"), log, resolveParent }));
    const cloneNamespace = clone.config.namespace;
    open.set(cloneNamespace, clone);
    const cloneReference = Buffer.from(snapshotImages.get(snapshot.name)!);
    const namespaces = [cloneNamespace];
    try {
      for (let step = 0; step < 25; step++) {
        const c = int(100);
        const at = int(sizeBytes / sectorBytes) * sectorBytes;
        const length = Math.min(sizeBytes - at, (1 + int(64)) * sectorBytes);
        if (c < 35) {
          const data = Buffer.alloc(length, fill++ & 0xff);
          for (let i = 0; i < length; i += 512) data.writeUInt32LE(op * 100000 + 50000 + step * 100 + i / 512, i);
          await clone.write(at, data);
          data.copy(cloneReference, at);
        } else if (c < 45) {
          await clone.trim(at, length);
          const first = Math.ceil(at / 4096) * 4096;
          const end = Math.floor((at + length) / 4096) * 4096;
          if (end > first) cloneReference.fill(0, first, end);
        } else if (c < 50) {
          await clone.writeZeroes(at, length, int(2) === 0);
          cloneReference.fill(0, at, at + length);
        } else if (c < 70) {
          const data = Buffer.alloc(length, fill++ & 0xff);
          for (let i = 0; i < length; i += 512) data.writeUInt32LE(op * 100000 + 70000 + step * 100 + i / 512, i);
          await volume.write(at, data);
          data.copy(reference, at);
          remember(at, length);
        } else if (c < 85) {
          const got = await clone.read(at, length);
          if (!got.equals(cloneReference.subarray(at, at + length))) throw new Error(`op ${op} clone step ${step}: read at ${at}+${length} differs from the clone's reference`);
        } else if (c < 90) {
          if (snapshotImages.size < snapshotCountMax) {
            const name = `snap-${++snapshotCounter}`;
            await volume.createSnapshot(name);
            snapshotImages.set(name, Buffer.from(reference));
            flushed = Buffer.from(reference);
            pendingSectors.clear();
          }
        } else if (c < 93) {
          await clone.close();
          clone = cached(await Volume.open({ dir: cloneDir, backend, log, resolveParent }));
          open.set(cloneNamespace, clone);
        } else if (c < 97) {
          // A scrub of the parent (while the clone reads through it) or of the clone itself.
          const target = int(2) === 0 ? volume : clone;
          const scrub = target.scrub({ threshold: scrubThresholds[int(scrubThresholds.length)]!, bandwidthBytesPerSecond: 0 });
          const got = await clone.read(at, length);
          await scrub;
          if (!got.equals(cloneReference.subarray(at, at + length))) throw new Error(`op ${op} clone step ${step}: read during a scrub differs from the clone's reference`);
          if (target === volume) {
            flushed = Buffer.from(reference); // a scrub stores everything written before it
            pendingSectors.clear();
          }
        } else {
          await clone.syncToBackend();
          await clone.close();
          cloneDir = await newDir();
          clone = cached(await Volume.openFromBackend({ dir: cloneDir, backend, namespace: cloneNamespace, log, resolveParent }));
          open.set(cloneNamespace, clone);
        }
      }
      if (!(await clone.read(0, sizeBytes)).equals(cloneReference)) throw new Error(`op ${op}: the clone differs from its reference`);
      // A clone of the clone sees the clone's snapshot, not its later writes; or the clone becomes a
      // template (read-only, one snapshot) and the grandchild is made from that snapshot.
      let snapshotName = "c";
      if (int(2) === 0) {
        await clone.createSnapshot("c");
        await clone.syncToBackend();
        await clone.write(0, Buffer.alloc(4096, 0xee));
      } else {
        snapshotName = (await clone.setAsTemplate()).name;
        const refused = await clone.write(0, Buffer.alloc(4096, 0xee)).catch((e: unknown) => e);
        if (!isOvsError(refused, "CONFLICT")) throw new Error(`op ${op}: a template accepted a write`);
        if (clone.listSnapshots().length !== 1) throw new Error(`op ${op}: a template keeps ${clone.listSnapshots().length} snapshots`);
      }
      const grandchild = cached(await Volume.createClone({ dir: await newDir(), backend, parent: clone, snapshot: snapshotName, identity: identity("grandchild"), log, resolveParent }));
      namespaces.push(grandchild.config.namespace);
      const got = await grandchild.read(0, sizeBytes);
      await grandchild.close();
      if (!got.equals(cloneReference)) throw new Error(`op ${op}: the clone of the clone differs from the clone's snapshot`);
    } finally {
      await clone.close();
      for (const namespace of namespaces) await backend.deleteNamespace(namespace);
    }
  };
  const profile: Record<string, { count: number; ms: number }> = {};
  let scrubbedScoCount = 0;
  try {
    for (let op = 0; op < operationCount; op++) {
      const choice = int(1000) / 10;
      const offset = int(sizeBytes / sectorBytes) * sectorBytes;
      const length = Math.min(sizeBytes - offset, (1 + int(64)) * sectorBytes);
      if (process.env.OVS_MODEL_TRACE) console.log(`op ${op} choice ${choice} offset ${offset} (sector ${offset / 512}) length ${length}`);
      const opStartedAt = performance.now();
      if (choice < 51) {
        const data = Buffer.alloc(length, fill++ & 0xff);
        for (let i = 0; i < length; i += 512) data.writeUInt32LE(op * 100000 + i, i);
        await volume.write(offset, data);
        data.copy(reference, offset);
        remember(offset, length);
      } else if (choice < 57) {
        await volume.writeZeroes(offset, length, int(2) === 0);
        reference.fill(0, offset, offset + length);
        remember(offset, length);
      } else if (choice < 62) {
        await volume.trim(offset, length);
        // Only whole clusters are discarded.
        const first = Math.ceil(offset / 4096) * 4096;
        const end = Math.floor((offset + length) / 4096) * 4096;
        if (end > first) {
          reference.fill(0, first, end);
          remember(first, end - first);
        }
      } else if (choice < 74) {
        const data = await volume.read(offset, length);
        if (!data.equals(reference.subarray(offset, offset + length))) throw new Error(`op ${op}: read at ${offset}+${length} differs from the reference`);
        volume.stats(); // asserts that the write buffer's running totals match its SCOs
      } else if (choice < 76) {
        const threshold = scrubThresholds[int(scrubThresholds.length)]!;
        const mode = int(3);
        if (mode === 0) {
          // Beside foreground I/O: writes and reads while it runs.
          const scrub = volume.scrub({ threshold, bandwidthBytesPerSecond: 0 });
          for (let i = 0; i < 3; i++) {
            const at = int(sizeBytes / sectorBytes) * sectorBytes;
            const n = Math.min(sizeBytes - at, (1 + int(64)) * sectorBytes);
            const data = Buffer.alloc(n, fill++ & 0xff);
            for (let j = 0; j < n; j += 512) data.writeUInt32LE(op * 100000 + 90000 + i * 1000 + j / 512, j);
            await volume.write(at, data);
            data.copy(reference, at);
            remember(at, n);
            const readAt = int(sizeBytes / sectorBytes) * sectorBytes;
            const got = await volume.read(readAt, Math.min(sizeBytes - readAt, 16384));
            if (!got.equals(reference.subarray(readAt, readAt + got.length))) throw new Error(`op ${op}: read during a scrub differs from the reference`);
          }
          scrubbedScoCount += (await scrub).scosRewritten;
        } else if (mode === 1) {
          scrubbedScoCount += (await volume.scrub({ threshold, bandwidthBytesPerSecond: 0 })).scosRewritten;
          allSynced(); // everything written before it is stored first
        } else {
          // A crash at a random step of the scrub, then a local restart or a restart from the backend.
          const stopAt = scrubStopPoints[int(scrubStopPoints.length)]!;
          const stopped = await volume.scrub({ threshold, bandwidthBytesPerSecond: 0, stopAt }).then(() => undefined, (e: unknown) => e);
          if (stopped !== undefined && !(stopped instanceof ScrubStoppedForTest)) throw stopped;
          await volume.crashForTest();
          if (int(2) === 0) {
            volume = await Volume.open({ dir, backend, log });
          } else {
            dir = await newDir();
            volume = await Volume.openFromBackend({ dir, backend, namespace: config.namespace, log });
          }
          allSynced();
          const after = await volume.read(0, sizeBytes);
          if (!after.equals(reference)) throw new Error(`op ${op}: after a crash at scrub step ${stopAt} and a restart the volume differs from the reference`);
          const listed = volume.listSnapshots().map((snapshot) => snapshot.name);
          if (listed.join() !== [...snapshotImages.keys()].join()) throw new Error(`op ${op}: snapshots ${listed.join()} after a crash in a scrub`);
        }
      } else if (choice < 82.5) {
        await volume.flush();
        flushed = Buffer.from(reference);
        pendingSectors.clear();
      } else if (choice < 85.5) {
        await volume.close();
        volume = cached(await Volume.open({ dir, backend, log }));
        flushed = Buffer.from(reference); // a clean close syncs
        pendingSectors.clear();
      } else if (choice < 88.5) {
        await volume.crashForTest();
        volume = cached(await Volume.open({ dir, backend, log }));
        const after = await volume.read(0, sizeBytes);
        checkAllowed(op, "a crash", after, flushed, pendingSectors);
        for (let s = 0; s < sizeBytes / sectorBytes; s++) {
          // A value lost in the crash never reaches the backend: it is no longer allowed after a node loss.
          if (!after.subarray(s * sectorBytes, (s + 1) * sectorBytes).equals(reference.subarray(s * sectorBytes, (s + 1) * sectorBytes))) {
            const list = pendingSinceBackendSync.get(s) ?? [];
            list.push(Buffer.from(after.subarray(s * sectorBytes, (s + 1) * sectorBytes)));
            pendingSinceBackendSync.set(s, list);
          }
        }
        after.copy(reference);
        flushed = Buffer.from(reference); // recovery syncs what it replayed
        pendingSectors.clear();
      } else if (choice < 92) {
        await volume.syncToBackend();
        backendSynced = Buffer.from(reference);
        pendingSinceBackendSync.clear();
      } else if (choice < 95.5) {
        if (snapshotImages.size >= snapshotCountMax) {
          const oldest = [...snapshotImages.keys()][int(snapshotImages.size)]!;
          await volume.deleteSnapshot(oldest);
          snapshotImages.delete(oldest);
        }
        const name = `snap-${++snapshotCounter}`;
        await volume.createSnapshot(name, { sticky: int(2) === 0 });
        snapshotImages.set(name, Buffer.from(reference));
        flushed = Buffer.from(reference);
        pendingSectors.clear();
      } else if (choice < 96.5) {
        const names = [...snapshotImages.keys()];
        if (names.length > 0) {
          const name = names[int(names.length)]!;
          await volume.deleteSnapshot(name);
          snapshotImages.delete(name);
        }
      } else if (choice < 98) {
        const names = [...snapshotImages.keys()];
        if (names.length > 0) {
          const name = names[int(names.length)]!;
          const stored = volume.listSnapshots().find((snapshot) => snapshot.name === name)!.state === "stored";
          if (!stored) {
            const error = await volume.rollback(name).catch((e: unknown) => e);
            if (!isOvsError(error, "CONFLICT")) throw new Error(`op ${op}: rollback to pending snapshot ${name} did not fail with CONFLICT`);
          } else {
            volume = cached(await volume.rollback(name));
            snapshotImages.get(name)!.copy(reference);
            allSynced();
            const kept = names.slice(0, names.indexOf(name) + 1);
            for (const dropped of names) if (!kept.includes(dropped)) snapshotImages.delete(dropped);
            const after = await volume.read(0, sizeBytes);
            if (!after.equals(reference)) throw new Error(`op ${op}: after a rollback to ${name} the volume differs from the snapshot`);
          }
          const listed = volume.listSnapshots().map((snapshot) => snapshot.name);
          if (listed.join() !== [...snapshotImages.keys()].join()) throw new Error(`op ${op}: snapshots ${listed.join()} instead of ${[...snapshotImages.keys()].join()}`);
        }
      } else if (choice < 99) {
        // Restart from the backend on an empty directory, after a full sync: nothing may be lost.
        await volume.syncToBackend();
        await volume.close();
        dir = await newDir();
        volume = cached(await Volume.openFromBackend({ dir, backend, namespace: config.namespace, log }));
        allSynced();
        const after = await volume.read(0, sizeBytes);
        if (!after.equals(reference)) throw new Error(`op ${op}: after a restart from the backend the volume differs from the reference`);
        const listed = volume.listSnapshots().map((snapshot) => snapshot.name);
        if (listed.join() !== [...snapshotImages.keys()].join()) throw new Error(`op ${op}: snapshots ${listed.join()} after a restart from the backend`);
      } else if (choice < 99.5) {
        // Node loss: crash, then restart from the backend elsewhere (what was not uploaded is gone).
        await volume.crashForTest();
        dir = await newDir();
        volume = cached(await Volume.openFromBackend({ dir, backend, namespace: config.namespace, log }));
        const after = await volume.read(0, sizeBytes);
        checkAllowed(op, "a node loss", after, backendSynced, pendingSinceBackendSync);
        after.copy(reference);
        allSynced();
        const listed = new Set(volume.listSnapshots().map((snapshot) => snapshot.name));
        for (const name of [...snapshotImages.keys()]) if (!listed.has(name)) snapshotImages.delete(name); // pending ones are lost
        if (listed.size !== snapshotImages.size) throw new Error(`op ${op}: snapshots ${[...listed].join()} after a node loss`);
      } else {
        await exerciseClone(op);
      }
      const kind = ["write", "zeroes", "trim", "read", "scrub", "flush", "restart", "crash", "backend-sync", "snapshot", "delete-snapshot", "rollback", "restart-from-backend", "node-loss", "clone"][[51, 57, 62, 74, 76, 82.5, 85.5, 88.5, 92, 95.5, 96.5, 98, 99, 99.5, 100].findIndex((bound) => choice < bound)]!;
      const entry = (profile[kind] ??= { count: 0, ms: 0 });
      entry.count++;
      entry.ms += performance.now() - opStartedAt;
    }
    if (process.env.OVS_MODEL_PROFILE) console.log(JSON.stringify({ ...profile, scrubbedScoCount }), JSON.stringify(readCache?.stats()), JSON.stringify(owners.get(config.namespace)?.stats()));
    const all = await volume.read(0, sizeBytes);
    if (!all.equals(reference)) throw new Error("final read differs from the reference");
  } catch (error) {
    throw new Error(`model test failed with seed ${seed} (replay: OVS_MODEL_SEED=${seed}${backendKind === "local" ? ", the local-backend case" : ""}): ${(error as Error).message}`, { cause: error });
  } finally {
    await volume.close();
    await readCache?.close();
    await backend.close();
  }
}

describe("volume model", () => {
  const fixed = process.env.OVS_MODEL_SEED;
  const seedCount = Number(process.env.OVS_MODEL_SEEDS ?? 12);
  const operationCount = Number(process.env.OVS_MODEL_OPS ?? 2000);
  const seeds = fixed ? [Number(fixed)] : Array.from({ length: seedCount }, (_, i) => 1000 + i * 7919);
  for (const seed of seeds) {
    it(`matches the reference disk (seed ${seed})`, async () => {
      await expect(runSeed(seed, operationCount)).resolves.toBeUndefined();
    });
  }
  const localSeeds = fixed ? [Number(fixed)] : Array.from({ length: Number(process.env.OVS_MODEL_LOCAL_SEEDS ?? 3) }, (_, i) => 5000 + i * 7919);
  for (const seed of localSeeds) {
    it(`matches the reference disk on the local backend, SCOs linked (seed ${seed})`, async () => {
      await expect(runSeed(seed, operationCount, "local")).resolves.toBeUndefined();
    });
  }
});
