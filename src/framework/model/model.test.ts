// The management model on real components (embedded store, local backend, vDisk service) with a fixed
// clock: the stored bytes of every record kind are the golden vectors of docs/formats/model-keys.md;
// the repository refuses stale and losing updates (CONFLICT, nothing changed); a vPool delete racing a
// vDisk create never leaves a vDisk in a deleted vPool; the safety numbers per policy.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EmbeddedStore } from "../../store/index.js";
import { LocalBackend } from "../../backend/index.js";
import { isOvsError, silentLogger } from "../../base/index.js";
import { VDiskService } from "../vdisk-service.js";
import { ManagementModel } from "./model-service.js";
import { modelKeys } from "./records.js";
import { policySafety } from "./safety.js";

let dir: string;
let store: EmbeddedStore;
let backend: LocalBackend;
let vdisks: VDiskService;
let model: ManagementModel;
const fixedMs = Date.UTC(2026, 10, 26, 12, 0, 0);

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-model-unit-"));
  store = await EmbeddedStore.open({ dir: path.join(dir, "store") });
  backend = await LocalBackend.open({ dir: path.join(dir, "backend") });
  const log = silentLogger();
  vdisks = new VDiskService({ dataDir: dir, nodeId: "node1", store, backend, log });
  await vdisks.start();
  model = new ManagementModel({ store, vdisks, nodeId: "node1", localBackendDir: path.join(dir, "backend"), log, now: () => fixedMs });
  await model.registerNode({ name: "node1", ip: "127.0.0.1", ports: { nbd: 10809, api: 8080 } });
});

afterAll(async () => {
  model?.stop();
  await vdisks?.stop();
  await backend?.close();
  await store?.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

async function raw(key: string): Promise<string | undefined> {
  return (await store.get(key))?.toString("utf8");
}

describe("records (golden vectors of docs/formats/model-keys.md)", () => {
  it("stores the storage router, its heartbeat, the default vPool and its storage driver as documented", async () => {
    expect(await raw("ovs/model/storagerouters/node1")).toBe(
      '{"id":"node1","name":"node1","ip":"127.0.0.1","ports":{"nbd":10809,"api":8080},"status":"online","backend":{"kind":"local","storageRouterId":"node1"},' +
        '"defaultVPool":"default","updatedAt":"2026-11-26T12:00:00.000Z","domains":[],"createdAt":"2026-11-26T12:00:00.000Z","version":1}',
    );
    expect(await raw("ovs/model/heartbeats/node1")).toBe('{"id":"node1","at":"2026-11-26T12:00:00.000Z","intervalMs":30000,"offlineAfterMs":90000}');
    expect(await raw("ovs/model/vpools/default")).toBe(
      '{"name":"default","backend":{"kind":"local","storageRouterId":"node1"},"settings":{"scoSizeBytes":8388608,"tlogMultiplier":8,"scoCacheMaxBytes":0,"cacheMode":"cache-on-read"},' +
        '"status":"running","createdAt":"2026-11-26T12:00:00.000Z","updatedAt":"2026-11-26T12:00:00.000Z","version":1}',
    );
    expect(await raw("ovs/model/storagedrivers/default/node1")).toBe('{"vpool":"default","storageRouterId":"node1","status":"running","createdAt":"2026-11-26T12:00:00.000Z","version":1}');
  });

  it("stores a domain and an ASD's domain as documented, and the version rises with each change", async () => {
    await model.createDomain("rack1");
    expect(await raw("ovs/model/domains/rack1")).toBe('{"name":"rack1","createdAt":"2026-11-26T12:00:00.000Z","version":1}');
    await model.assignDomain("rack1", { storageRouters: ["node1"] }, true);
    expect(await raw("ovs/model/domains/rack1")).toBe('{"name":"rack1","createdAt":"2026-11-26T12:00:00.000Z","version":2}');
    expect(JSON.parse((await raw("ovs/model/storagerouters/node1"))!)).toMatchObject({ domains: ["rack1"], version: 2 });
    // An ASD's domain record (written by assign on a node with ALBA; the shape is the same).
    expect(modelKeys.asd("00112233445566778899aabbccddeeff")).toBe("ovs/model/asds/00112233445566778899aabbccddeeff");
    await model.assignDomain("rack1", { storageRouters: ["node1"] }, false);
    await model.deleteDomain("rack1");
    expect(await raw("ovs/model/domains/rack1")).toBeUndefined();
  });

  it("registering again keeps the record (and its domains) and raises the version", async () => {
    await model.createDomain("keep");
    await model.assignDomain("keep", { storageRouters: ["node1"] }, true);
    const before = await model.routers.require("node1");
    await model.markOffline("node1");
    await model.registerNode({ name: "node1", ip: "127.0.0.1", ports: { nbd: 10810, api: 8081 } });
    const after = await model.routers.require("node1");
    expect(after.record).toMatchObject({ status: "online", domains: ["keep"], ports: { nbd: 10810, api: 8081 }, version: before.record.version + 2 });
    await model.assignDomain("keep", { storageRouters: ["node1"] }, false);
    await model.deleteDomain("keep");
  });
});

describe("optimistic concurrency", () => {
  it("refuses a stale version with CONFLICT and changes nothing", async () => {
    await model.createVPool({ name: "occ" });
    const before = await raw(modelKeys.vpool("occ"));
    await expect(model.updateVPool("occ", { cacheMode: "none" }, 7)).rejects.toMatchObject({ code: "CONFLICT", message: "the vPool changed since version 7 (it is at version 1); read it again and retry." });
    expect(await raw(modelKeys.vpool("occ"))).toBe(before);
  });

  it("lets exactly one of two updates made from the same read commit", async () => {
    const loaded = await model.vpools.require("occ");
    const first = model.vpools.update(loaded, { ...loaded.record, settings: { ...loaded.record.settings, cacheMode: "cache-on-write" } });
    const second = model.vpools.update(loaded, { ...loaded.record, settings: { ...loaded.record.settings, cacheMode: "none" } });
    const results = await Promise.allSettled([first, second].map((update) => store.sequence(update.change.asserts, update.change.operations)));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const failed = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(isOvsError(failed.reason, "ASSERT_FAILED")).toBe(true);
    const now = (await model.vpools.require("occ")).record;
    expect(now.version).toBe(loaded.record.version + 1);
    expect(["cache-on-write", "none"]).toContain(now.settings.cacheMode);
    // Through the service: concurrent updates naming the same version: one wins, the other is CONFLICT.
    const outcomes = await Promise.allSettled([model.updateVPool("occ", { scoCacheMaxBytes: 1 << 20 }, now.version), model.updateVPool("occ", { scoCacheMaxBytes: 2 << 20 }, now.version)]);
    expect(outcomes.map((o) => o.status).sort()).toEqual(["fulfilled", "rejected"]);
    const reason = (outcomes.find((o) => o.status === "rejected") as PromiseRejectedResult).reason as Error;
    expect(reason).toMatchObject({ code: "CONFLICT" });
    // Refused before sending (it read the winner's version) or by the store (it lost the race): one sentence either way.
    expect(reason.message).toMatch(/^(the vPool changed since version \d+ \(it is at version \d+\)|vPool occ changed meanwhile); read it again and retry\.$/);
    await model.deleteVPool("occ");
  });

  it("puts the vPool and its storage drivers back exactly when a delete finds it in use", async () => {
    await model.createVPool({ name: "busy" });
    await model.createVDisk("busy1", 8 << 20, { vpool: "busy" });
    const pool = await raw(modelKeys.vpool("busy"));
    const driver = await raw(modelKeys.storageDriver("busy", "node1"));
    await expect(model.deleteVPool("busy")).rejects.toMatchObject({ code: "IN_USE", message: "vPool busy has 1 vDisk (busy1); delete them first." });
    await expect(model.shrinkVPool("busy", "node1")).rejects.toMatchObject({ code: "IN_USE" });
    expect(await raw(modelKeys.vpool("busy"))).toBe(pool);
    expect(await raw(modelKeys.storageDriver("busy", "node1"))).toBe(driver);
    // A change of the vPool's defaults while a vDisk is being created in it refuses neither.
    const [created, updated] = await Promise.allSettled([model.createVDisk("busy2", 8 << 20, { vpool: "busy" }), model.updateVPool("busy", { cacheMode: "none" })]);
    expect([created.status, updated.status]).toEqual(["fulfilled", "fulfilled"]);
    for (const name of ["busy1", "busy2"]) await vdisks.delete(name, true);
    await model.deleteVPool("busy");
    expect(await raw(modelKeys.storageDriver("busy", "node1"))).toBeUndefined();
  });

  it("never leaves a vDisk in a vPool deleted at the same time", async () => {
    for (let round = 0; round < 4; round++) {
      await model.createVPool({ name: "race" });
      const [created, deleted] = await Promise.allSettled([model.createVDisk(`race${round}`, 8 << 20, { vpool: "race" }), model.deleteVPool("race")]);
      const pool = await model.vpools.get("race");
      if (created.status === "fulfilled") {
        // The vDisk exists, so the delete must have been refused and the vPool must still be there.
        expect(deleted.status).toBe("rejected");
        expect(pool?.record.status).toBe("running");
        await vdisks.delete(`race${round}`, true);
        await model.deleteVPool("race");
      } else {
        expect(isOvsError(created.reason)).toBe(true);
        expect(await store.exists(`ovs/vdisks/race${round}`)).toBe(false);
        if (pool !== undefined) await model.deleteVPool("race");
      }
    }
  });
});

describe("vPool settings", () => {
  it("derives the TLog multiplier from a write buffer and refuses bad settings whole", async () => {
    const view = await model.createVPool({ name: "wb", scoSizeBytes: 8 << 20, writeBufferBytes: 96 << 20 });
    expect(view.settings).toMatchObject({ scoSizeBytes: 8 << 20, tlogMultiplier: 8 });
    expect(view.writeBufferBytes).toBe(96 << 20);
    for (const [change, message] of [
      [{ scoSizeBytes: 3 << 10 }, "the SCO size must be a multiple of 4 KiB from 1 MiB to 128 MiB."],
      [{ tlogMultiplier: 0 }, "the TLog multiplier must be from 1 to 1024 (write buffer from 12 MiB to 12 GiB with this SCO size)."],
      [{ cacheMode: "fast" }, '"fast" is not a cache mode: use cache-on-read, cache-on-write, none.'],
      [{ cacheMode: "both" }, '"both" is not a cache mode: use cache-on-read, cache-on-write, none ("both" is now called cache-on-write).'],
      [{ writeBufferBytes: 96 << 20, tlogMultiplier: 3 }, "a write buffer of 96 MiB means a TLog multiplier of 8, not 3; give one of the two."],
    ] as const) {
      await expect(model.updateVPool("wb", change)).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message });
    }
    expect((await model.vpools.require("wb")).record.version).toBe(1);
    const disk = await model.createVDisk("wb1", 16 << 20, { vpool: "wb" });
    expect(disk).toMatchObject({ vpool: "wb" });
    expect(vdisks.settings("wb1")).toMatchObject({ scoSizeBytes: 8 << 20, tlogMultiplier: 8 });
    await vdisks.delete("wb1", true);
    await model.deleteVPool("wb");
  });
});

describe("cache modes (golden vectors of docs/formats/model-keys.md)", () => {
  it("decodes a vPool written with an old cache mode name as the new name, and writes the new name at its next change", async () => {
    const old = '{"name":"legacy","backend":{"kind":"local","storageRouterId":"node1"},"settings":{"scoSizeBytes":4194304,"tlogMultiplier":16,"scoCacheMaxBytes":0,"cacheMode":"both"},' +
      '"status":"running","createdAt":"2026-11-26T12:00:00.000Z","updatedAt":"2026-11-26T12:00:00.000Z","version":1}';
    for (const [name, mode] of [["read", "cache-on-read"], ["write", "cache-on-write"], ["both", "cache-on-write"], ["none", "none"]] as const) {
      await store.put("ovs/model/vpools/legacy", Buffer.from(old.replace('"cacheMode":"both"', `"cacheMode":"${name}"`)));
      expect((await model.getVPool("legacy")).settings.cacheMode, name).toBe(mode);
    }
    await store.put("ovs/model/vpools/legacy", Buffer.from(old));
    await store.put("ovs/model/storagedrivers/legacy/node1", Buffer.from('{"vpool":"legacy","storageRouterId":"node1","status":"running","createdAt":"2026-11-26T12:00:00.000Z","version":1}'));
    // A vDisk created in it gets the decoded mode; the record is rewritten with the new name at its next change.
    await model.createVDisk("legacy1", 8 << 20, { vpool: "legacy" });
    expect(vdisks.settings("legacy1").cache).toEqual({ mode: "cache-on-write", quotaBytes: 0 });
    expect(JSON.parse((await raw("ovs/vdisks/legacy1"))!)).toMatchObject({ vpool: "legacy", cache: { mode: "cache-on-write", quotaBytes: 0 } });
    await model.updateVPool("legacy", { scoCacheMaxBytes: 0 });
    expect(await raw("ovs/model/vpools/legacy")).toBe(old.replace('"cacheMode":"both"', '"cacheMode":"cache-on-write"').replace('"version":1', '"version":2'));
    // An unknown name stays refused as corrupt.
    await store.put("ovs/model/vpools/legacy", Buffer.from(old.replace('"cacheMode":"both"', '"cacheMode":"fast"')));
    await expect(model.vpools.get("legacy")).rejects.toMatchObject({ code: "CORRUPT", message: "The model record ovs/model/vpools/legacy is malformed." });
    await store.put("ovs/model/vpools/legacy", Buffer.from(old));
    await vdisks.delete("legacy1", true);
    await model.deleteVPool("legacy");
  });

  it("gives a vDisk its vPool's cache mode unless its creation names another; refuses a bad one before anything is created", async () => {
    await model.createVPool({ name: "nocache", cacheMode: "none", scoSizeBytes: 8 << 20, tlogMultiplier: 4 });
    await model.createVDisk("nc1", 8 << 20, { vpool: "nocache" });
    expect(vdisks.settings("nc1")).toMatchObject({ cache: { mode: "none", quotaBytes: 0 }, scoSizeBytes: 8 << 20, tlogMultiplier: 4 });
    await model.createVDisk("nc2", 8 << 20, { vpool: "nocache", cacheMode: "cache-on-read" });
    expect(vdisks.settings("nc2").cache.mode).toBe("cache-on-read");
    expect(JSON.parse((await raw("ovs/vdisks/nc2"))!).cache).toBeUndefined(); // the default is not recorded
    await expect(model.createVDisk("nc3", 8 << 20, { vpool: "nocache", cacheMode: "read" })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT", message: '"read" is not a cache mode: use cache-on-read, cache-on-write, none ("read" is now called cache-on-read).',
    });
    expect(await raw("ovs/vdisks/nc3")).toBeUndefined();
    for (const name of ["nc1", "nc2"]) await vdisks.delete(name, true);
    await model.deleteVPool("nocache");
  });
});

describe("safety per policy", () => {
  const asd = (index: number, nodeId: string, domain?: string, usable = true) => ({ asdId: `a${index}`, nodeId, usable, ...(domain ? { domain } : {}) });

  it("counts the ASDs, nodes and domains a policy survives", () => {
    const oneNode = [0, 1, 2, 3, 4, 5].map((i) => asd(i, "n1"));
    expect(policySafety({ k: 4, m: 2, c: 5, x: 6 }, oneNode)).toEqual({ k: 4, m: 2, c: 5, x: 6, satisfiable: true, fragmentsPlaced: 6, asdFailuresTolerated: 2, nodeFailuresTolerated: 0, domainFailuresTolerated: null });
    // Two ASDs down: the best policy cannot reach c = 5; the fallback still writes 4 fragments.
    const twoDown = oneNode.map((a, i) => ({ ...a, usable: i >= 2 }));
    expect(policySafety({ k: 4, m: 2, c: 5, x: 6 }, twoDown)).toMatchObject({ satisfiable: false, fragmentsPlaced: 4, asdFailuresTolerated: 0 });
    expect(policySafety({ k: 2, m: 2, c: 3, x: 6 }, twoDown)).toMatchObject({ satisfiable: true, fragmentsPlaced: 4, asdFailuresTolerated: 2 });
    // The multi-node preset (5,4,8,3) on 4 nodes of 3 ASDs: 9 fragments, 3 per node; any one node may go.
    const fourNodes = Array.from({ length: 12 }, (_, i) => asd(i, `n${i % 4}`, `room${i % 2}`));
    expect(policySafety({ k: 5, m: 4, c: 8, x: 3 }, fourNodes)).toEqual({ k: 5, m: 4, c: 8, x: 3, satisfiable: true, fragmentsPlaced: 9, asdFailuresTolerated: 4, nodeFailuresTolerated: 1, domainFailuresTolerated: 0 });
    // One ASD per domain: each domain holds one fragment, so m domains may go.
    const ownDomains = oneNode.map((a, i) => ({ ...a, domain: `d${i}` }));
    expect(policySafety({ k: 4, m: 2, c: 5, x: 6 }, ownDomains).domainFailuresTolerated).toBe(2);
  });
});

describe("heartbeats (the scheduler leader's check, with a controllable clock)", () => {
  it("marks a storage router without a recent heartbeat offline and fails its tasks; online again once it beats; an operator's mark stays", async () => {
    let clock = fixedMs;
    const watcher = new ManagementModel({ store, vdisks, nodeId: "node1", localBackendDir: path.join(dir, "backend"), log: silentLogger(), now: () => clock });
    const other = new ManagementModel({ store, vdisks, nodeId: "node2", log: silentLogger(), now: () => clock, heartbeatIntervalMs: 1000 });
    await other.registerNode({ name: "node2", ip: "127.0.0.2", ports: { nbd: 10809, api: 8080 } });
    expect(await raw("ovs/model/heartbeats/node2")).toBe('{"id":"node2","at":"2026-11-26T12:00:00.000Z","intervalMs":1000,"offlineAfterMs":3000}');
    const failed: Array<[string, string]> = [];
    const failTasks = async (nodeId: string, reason: string): Promise<number> => {
      failed.push([nodeId, reason]);
      return 1;
    };
    clock += 3000; // within 3 intervals: alive
    expect(await watcher.checkStorageRouters(failTasks)).toEqual({ markedOffline: [], markedOnline: [], tasksFailed: 0 });
    clock += 1; // node1 (this node, heartbeat stale on this clock) is never judged
    expect(await watcher.checkStorageRouters(failTasks)).toEqual({ markedOffline: ["node2"], markedOnline: [], tasksFailed: 1 });
    expect(failed).toEqual([["node2", "storage router node2 is offline; its last heartbeat was at 2026-11-26T12:00:00.000Z"]]);
    expect(await watcher.getStorageRouter("node2")).toMatchObject({ status: "offline", offlineReason: "heartbeat", alive: false, version: 2 });
    expect((await watcher.getStorageRouter("node1")).status).toBe("online");
    // Again: nothing to do (its tasks were failed for this silence).
    expect(await watcher.checkStorageRouters(failTasks)).toEqual({ markedOffline: [], markedOnline: [], tasksFailed: 0 });
    expect(failed).toHaveLength(1);
    // It beats again (it was only paused): online.
    await other.heartbeat();
    expect(await watcher.checkStorageRouters(failTasks)).toEqual({ markedOffline: [], markedOnline: ["node2"], tasksFailed: 0 });
    const online = await watcher.getStorageRouter("node2");
    expect(online).toMatchObject({ status: "online", alive: true, version: 3 });
    expect(online.offlineReason).toBeUndefined();
    // An operator's offline mark stays while it beats; its tasks fail only once its heartbeat is stale.
    failed.length = 0;
    await watcher.markOffline("node2");
    expect(await watcher.checkStorageRouters(failTasks)).toEqual({ markedOffline: [], markedOnline: [], tasksFailed: 0 });
    clock += 3001;
    expect(await watcher.checkStorageRouters(failTasks)).toEqual({ markedOffline: [], markedOnline: [], tasksFailed: 1 });
    expect(await watcher.getStorageRouter("node2")).toMatchObject({ status: "offline", offlineReason: "operator" });
    // Its start registers it online again, without a reason.
    await other.registerNode({ name: "node2", ip: "127.0.0.2", ports: { nbd: 10809, api: 8080 } });
    const back = await watcher.getStorageRouter("node2");
    expect(back).toMatchObject({ status: "online", alive: true });
    expect(back.offlineReason).toBeUndefined();
    expect(JSON.parse((await raw("ovs/model/storagerouters/node2"))!)).not.toHaveProperty("offlineReason");
  });
});
