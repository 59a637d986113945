// The manager and the NSM store on both ClusterStores (an EmbeddedStore in a temp dir and a 1-member
// etcd that the test starts): ASD registry with observations and decommission, presets with versions,
// namespaces with ids never reused and spread over NSM hosts, racing creations, deletion that records the
// namespace for GC, and manifest commits whose asserts make exactly one of racing overwrites win; an NSM
// host on a second store (through the NSM resolver) holds its namespaces' manifests.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { isOvsError } from "../../base/index.js";
import { EmbeddedStore, EtcdStore, type ClusterStore } from "../../store/index.js";
import { startEtcdCluster, type EtcdTestCluster } from "../../store/etcd-test-cluster.js";
import { encodeManifest, type Manifest } from "./manifest.js";
import { AlbaManager } from "./manager.js";
import { singleNodePreset } from "./records.js";

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  try {
    await promise;
  } catch (error) {
    expect(isOvsError(error) ? error.code : String(error)).toBe(code);
    return;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}

function manifestFor(name: string, objectId: string, asdId: string): Manifest {
  return {
    name, objectId, sizeBytes: 4, objectCrc32c: 1, presetName: "default", presetVersion: 1, policy: { k: 1, m: 0, c: 1, x: 1 }, policyIndex: 0,
    fragmentSizeMaxBytes: 1024, compression: "none", encryption: "none", fragmentChecksum: "crc32c", timestampMs: 1,
    chunks: [{ chunkSizeBytes: 4, fragments: [{ asdId, version: 0, checksumValue: 7, packedSizeBytes: 60 }] }],
  };
}

function managerSuite(label: string, openStore: () => Promise<ClusterStore>): void {
  describe(`AlbaManager on ${label}`, () => {
    let store: ClusterStore;
    let manager: AlbaManager;

    beforeAll(async () => {
      store = await openStore();
      manager = await AlbaManager.open({ store, root: `test-${randomBytes(4).toString("hex")}/` });
      await manager.createPreset(singleNodePreset());
    });

    afterAll(async () => {
      await store.close();
    });

    test("keeps one backend id across opens", async () => {
      const again = await AlbaManager.open({ store, root: manager.root });
      expect(again.backendId).toBe(manager.backendId);
      expect(manager.backendId).toMatch(/^alba-[0-9a-f]{16}$/);
    });

    test("registers ASDs, folds observations in and decommissions", async () => {
      const asdId = randomBytes(16).toString("hex");
      await manager.registerAsd({ asdId, nodeId: "node-1", host: "127.0.0.1", port: 8600, rack: "r1" });
      await manager.recordAsdObservations([{ asdId, lastSeenMs: 5, usedBytes: 10, capacityBytes: 100, errors: { readErrors: 1, checksumErrors: 2 } }]);
      await manager.recordAsdObservations([{ asdId, errors: { checksumErrors: 1, writeErrors: 3 } }]);
      const record = await manager.getAsd(asdId);
      expect(record).toMatchObject({ asdId, nodeId: "node-1", rack: "r1", state: "claimed", usedBytes: 10, capacityBytes: 100 });
      expect(record!.errorCounts).toEqual({ readErrors: 1, writeErrors: 3, checksumErrors: 3 });
      expect((await manager.decommissionAsd(asdId)).state).toBe("decommissioned");
      expect((await manager.listAsds()).map((asd) => asd.asdId)).toContain(asdId);
      await expectCode(manager.registerAsd({ asdId: "nothex", nodeId: "n", host: "h", port: 1 }), "INVALID_ARGUMENT");
    });

    test("creates presets, refuses duplicates and bad ones, versions updates", async () => {
      expect(await manager.defaultPresetName()).toBe("default");
      await expectCode(manager.createPreset(singleNodePreset()), "ALREADY_EXISTS");
      await expectCode(manager.createPreset({ ...singleNodePreset("bad"), policies: [{ k: 4, m: 2, c: 7, x: 1 }] }), "INVALID_ARGUMENT");
      await expectCode(manager.createPreset({ ...singleNodePreset("bad2"), encryption: "aes-256-gcm" }), "INVALID_ARGUMENT");
      const encrypted = await manager.createPreset({ ...singleNodePreset("secret"), encryption: "aes-256-gcm", encryptionKeyHex: "11".repeat(32) });
      expect(encrypted.version).toBe(1);
      const updated = await manager.updatePreset("secret", { policies: [{ k: 2, m: 1, c: 2, x: 3 }] });
      expect(updated.version).toBe(2);
      expect((await manager.getPreset("secret"))!.policies).toEqual([{ k: 2, m: 1, c: 2, x: 3 }]);
      expect((await manager.listPresets()).map((preset) => preset.name).sort()).toEqual(["default", "secret"]);
    });

    test("creates and deletes namespaces; ids are never reused; deletion is recorded for GC", async () => {
      const first = await manager.createNamespace("ns-a");
      expect(first.state).toBe("active");
      await expectCode(manager.createNamespace("ns-a"), "ALREADY_EXISTS");
      await expectCode(manager.createNamespace("ns-x", "missing-preset"), "NOT_FOUND");
      const nsm = await manager.nsm(first.nsmId);
      expect(await nsm.namespaceExists(first.namespaceId)).toBe(true);
      await manager.deleteNamespace("ns-a");
      expect(await manager.getNamespace("ns-a")).toBeUndefined();
      expect(await nsm.namespaceExists(first.namespaceId)).toBe(false);
      expect((await manager.listDeletedNamespaces()).map((record) => record.namespaceId)).toContain(first.namespaceId);
      await expectCode(manager.deleteNamespace("ns-a"), "NOT_FOUND");
      const second = await manager.createNamespace("ns-a");
      expect(second.namespaceId).toBeGreaterThan(first.namespaceId);
      await manager.forgetDeletedNamespace(first.namespaceId);
      expect((await manager.listDeletedNamespaces()).map((record) => record.namespaceId)).not.toContain(first.namespaceId);
    });

    test("exactly one of racing creations of one name wins; ids stay unique", async () => {
      const outcomes = await Promise.allSettled(Array.from({ length: 6 }, () => manager.createNamespace("race")));
      expect(outcomes.filter((outcome) => outcome.status === "fulfilled").length).toBe(1);
      const many = await Promise.all(Array.from({ length: 6 }, (_, index) => manager.createNamespace(`many-${index}`)));
      expect(new Set(many.map((record) => record.namespaceId)).size).toBe(6);
      const page = await manager.listNamespaces({ prefix: "many-", after: "many-1", limit: 3 });
      expect(page.records.map((record) => record.name)).toEqual(["many-2", "many-3", "many-4"]);
      expect(page.more).toBe(true);
    });

    test("spreads namespaces over NSM hosts by load", async () => {
      await manager.addNsm("nsm-1");
      await expectCode(manager.addNsm("nsm-1"), "ALREADY_EXISTS");
      const created = await Promise.all([0, 1, 2].map(async (index) => manager.createNamespace(`spread-${index}`)));
      expect(created.some((record) => record.nsmId === "nsm-1")).toBe(true);
      const counts = Object.fromEntries((await manager.listNsms()).map((nsm) => [nsm.nsmId, nsm.namespaceCount]));
      expect(Math.abs(counts["nsm-0"]! - counts["nsm-1"]!)).toBeLessThanOrEqual(counts["nsm-0"]!);
      const onNsm1 = created.find((record) => record.nsmId === "nsm-1")!;
      await manager.deleteNamespace(onNsm1.name);
      expect((await manager.listNsms()).find((nsm) => nsm.nsmId === "nsm-1")!.namespaceCount).toBe(counts["nsm-1"]! - 1);
    });

    test("manifest commits assert the previous version: one racing overwrite wins, garbage is recorded", async () => {
      const namespace = await manager.createNamespace("commits");
      const nsm = await manager.nsm(namespace.nsmId);
      const asdId = "ab".repeat(16);
      const v1 = manifestFor("obj", "01".repeat(16), asdId);
      await nsm.beginUpload(namespace.namespaceId, v1.objectId, 1);
      await nsm.commit(namespace.namespaceId, [{ name: "obj", previous: undefined, next: { bytes: encodeManifest(v1), manifest: v1, strays: [] } }], 2);
      const read = await nsm.getManifest(namespace.namespaceId, "obj");
      expect(read!.manifest).toEqual(v1);
      expect((await nsm.listGarbage(namespace.namespaceId, { limit: 10 })).entries).toEqual([]);
      const contenders = ["02", "03", "04", "05"].map((byte) => manifestFor("obj", byte.repeat(16), asdId));
      const outcomes = await Promise.allSettled(
        contenders.map((next) => nsm.commit(namespace.namespaceId, [{ name: "obj", previous: read, next: { bytes: encodeManifest(next), manifest: next, strays: [] } }], 3)),
      );
      expect(outcomes.filter((outcome) => outcome.status === "fulfilled").length).toBe(1);
      for (const outcome of outcomes) if (outcome.status === "rejected") expect(isOvsError(outcome.reason, "ASSERT_FAILED")).toBe(true);
      const garbage = (await nsm.listGarbage(namespace.namespaceId, { limit: 10 })).entries.map((entry) => entry.record);
      expect(garbage).toEqual([{ kind: "object", objectId: v1.objectId, asdIds: [asdId], reason: "overwritten", atMs: 3 }]);
      await expectCode(nsm.commit(namespace.namespaceId, [{ name: "obj", previous: undefined, next: undefined }], 4), "ASSERT_FAILED");
      const names = await nsm.listNames(namespace.namespaceId, { prefix: "", after: undefined, limit: 10 });
      expect(names).toEqual({ names: ["obj"], more: false });
      await manager.deleteNamespace("commits");
      await expectCode(nsm.commit(namespace.namespaceId, [{ name: "new", previous: undefined, next: { bytes: encodeManifest(v1), manifest: v1, strays: [] } }], 5), "NOT_FOUND");
    });
  });
}

const dirs: string[] = [];
let etcd: EtcdTestCluster | undefined;

afterAll(async () => {
  await etcd?.stop();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
}, 60_000);

managerSuite("EmbeddedStore", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "ovs-alba-manager-"));
  dirs.push(dir);
  return EmbeddedStore.open({ dir });
});

managerSuite("EtcdStore", async () => {
  etcd = await startEtcdCluster({ members: 1 });
  return EtcdStore.open({ endpoints: etcd.endpoints, prefix: `alba-${randomBytes(4).toString("hex")}/` });
});

describe("AlbaManager with an NSM host on another store", () => {
  test("namespaces placed on the other store keep their manifests there", async () => {
    const dirA = await mkdtemp(path.join(os.tmpdir(), "ovs-alba-manager-a-"));
    const dirB = await mkdtemp(path.join(os.tmpdir(), "ovs-alba-manager-b-"));
    dirs.push(dirA, dirB);
    const managerStore = await EmbeddedStore.open({ dir: dirA });
    const nsmStore = await EmbeddedStore.open({ dir: dirB });
    try {
      const manager = await AlbaManager.open({ store: managerStore, nsmResolver: (record) => {
        expect(record.location).toBe("store-b");
        return nsmStore;
      } });
      await manager.createPreset(singleNodePreset());
      await manager.createNamespace("on-local");
      await manager.addNsm("nsm-b", "store-b", "nsm-b/");
      const remote = await manager.createNamespace("on-b");
      expect(remote.nsmId).toBe("nsm-b");
      const nsm = await manager.nsm("nsm-b");
      const v1 = manifestFor("obj", "0a".repeat(16), "cd".repeat(16));
      await nsm.beginUpload(remote.namespaceId, v1.objectId, 1);
      await nsm.commit(remote.namespaceId, [{ name: "obj", previous: undefined, next: { bytes: encodeManifest(v1), manifest: v1, strays: [] } }], 2);
      expect((await nsmStore.prefix("nsm-b/", { limit: 10 })).entries.map((entry) => entry.key.split("/").slice(2).join("/"))).toEqual(["info", "o/obj"]);
      expect((await managerStore.prefix("ovs/alba/nsm/", { limit: 10 })).entries.every((entry) => !entry.key.includes("/o/obj"))).toBe(true);
      await manager.deleteNamespace("on-b");
      expect((await nsmStore.prefix("nsm-b/", { limit: 10 })).entries).toEqual([]);
    } finally {
      await managerStore.close();
      await nsmStore.close();
    }
  });
});

