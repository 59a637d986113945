// The maintenance agent against real in-process ASDs, an EmbeddedStore and AlbaBackend: holes filled once
// an ASD returns; ASDs unreachable past failAfterMs repaired away onto new ASDs (and their stale copies
// collected when they return); flipped bytes found by verify and fixed by repair while reads stay
// correct; the garbage of an upload killed halfway, of an overwrite and an orphan collected after their
// grace periods; decommission drains an ASD; rebalance moves fragments off a fuller ASD; the loop repairs
// by itself and reports its status.
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, test } from "vitest";
import { MiB } from "../../base/index.js";
import { fragmentKey, type Manifest } from "../manager/index.js";
import { seededRandom } from "../placement/index.js";
import { fullyRedundant, sleep, TestCluster } from "./test-support.js";

let cluster: TestCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

function asdIdsOf(manifest: Manifest): Set<string> {
  return new Set(manifest.chunks.flatMap((chunk) => chunk.fragments.flatMap((fragment) => (fragment === undefined ? [] : [fragment.asdId]))));
}

function fragmentKeysOf(keys: readonly string[]): string[] {
  return keys.filter((key) => key.startsWith("46") && key.length === 68);
}

describe("MaintenanceAgent", () => {
  test("holes left while an ASD was down are filled once it returns", async () => {
    cluster = await TestCluster.start(6);
    const backend = await cluster.backend({ random: seededRandom(1) });
    await backend.createNamespace("ns");
    await cluster.stopAsd(0);
    const objects = new Map<string, Buffer>();
    let holeCount = 0;
    for (let index = 0; index < 4; index++) {
      const data = randomBytes(100_000 + index);
      holeCount += (await backend.putWithReport("ns", `obj-${index}`, data)).holeCount;
      objects.set(`obj-${index}`, data);
    }
    expect(holeCount).toBeGreaterThanOrEqual(4);
    await cluster.startAsd(0);
    const agent = cluster.agent({ failAfterMs: 1_000, random: seededRandom(2) });
    const summary = await agent.repair();
    expect(summary.objectsRepaired).toBe(4);
    expect(summary.fragmentsRebuilt).toBe(holeCount);
    const all = new Set(cluster.asds.map((asd) => asd.asdId));
    const reader = await cluster.backend();
    for (const [name, data] of objects) {
      const manifest = (await backend.manifest("ns", name))!;
      expect(fullyRedundant(manifest, all)).toBe(true);
      expect(manifest.chunks[0]!.fragments.some((fragment) => fragment!.asdId === cluster!.asds[0]!.asdId && fragment!.version === 1)).toBe(true);
      expect((await reader.get("ns", name)).equals(data)).toBe(true);
    }
    expect((await agent.repair()).objectsRepaired).toBe(0); // nothing left to do
    expect(agent.status().counters.objectsRepaired).toBe(4);
  });

  test("objects written under the fallback policy while 2 ASDs were down are rewritten under the best one when they return", async () => {
    cluster = await TestCluster.start(6);
    const backend = await cluster.backend({ random: seededRandom(15) });
    await backend.createNamespace("ns");
    await cluster.stopAsd(2);
    await cluster.stopAsd(3);
    const objects = new Map<string, Buffer>();
    for (let index = 0; index < 3; index++) {
      const data = randomBytes(1 * MiB + 100 * index);
      expect((await backend.putWithReport("ns", `obj-${index}`, data)).policyIndex).toBe(1);
      objects.set(`obj-${index}`, data);
    }
    const agent = cluster.agent({ random: seededRandom(16) });
    expect((await agent.repair()).objectsUpgraded).toBe(0); // (2,2,3,6) is full redundancy for them; the best does not fit yet
    await cluster.startAsd(2);
    await cluster.startAsd(3);
    await agent.probe();
    const summary = await agent.repair();
    expect(summary.objectsUpgraded).toBe(3);
    const all = new Set(cluster.asds.map((asd) => asd.asdId));
    const reader = await cluster.backend();
    let chunkCount = 0;
    for (const [name, data] of objects) {
      const manifest = (await reader.manifest("ns", name))!;
      expect(manifest.policyIndex).toBe(0);
      expect(manifest.policy).toEqual({ k: 4, m: 2, c: 5, x: 6 });
      expect(fullyRedundant(manifest, all)).toBe(true);
      chunkCount += manifest.chunks.length;
      expect((await reader.get("ns", name)).equals(data)).toBe(true);
    }
    await agent.collectGarbage(); // the fallback copies go
    let keyCount = 0;
    for (let index = 0; index < 6; index++) keyCount += fragmentKeysOf(await cluster.keysOn(index)).length;
    expect(keyCount).toBe(chunkCount * 6);
    expect((await agent.repair()).objectsUpgraded).toBe(0);
  });

  test("2 of 6 ASDs unreachable past failAfterMs are repaired away onto 2 new ASDs; their stale copies are collected when they return", async () => {
    cluster = await TestCluster.start(6);
    const backend = await cluster.backend({ random: seededRandom(3) });
    await backend.createNamespace("ns");
    const objects = new Map<string, Buffer>();
    for (let index = 0; index < 3; index++) {
      const data = randomBytes(2 * MiB + index * 1000);
      await backend.put("ns", `before-${index}`, data);
      objects.set(`before-${index}`, data);
    }
    const agent = cluster.agent({ failAfterMs: 1_500, orphanGraceMs: 300, random: seededRandom(4) });
    expect((await agent.probe()).every((item) => item.state === "ok")).toBe(true);
    await cluster.stopAsd(4);
    await cluster.stopAsd(5);
    for (let index = 0; index < 3; index++) {
      const data = randomBytes(300_000 + index);
      const report = await backend.putWithReport("ns", `during-${index}`, data);
      expect(report.policyIndex).toBe(1); // the fallback policy (2,2,3,6) on the 4 left
      objects.set(`during-${index}`, data);
    }
    const early = await agent.probe();
    expect(early.filter((item) => item.state === "unreachable").map((item) => item.asdId).sort()).toEqual([cluster.asds[4]!.asdId, cluster.asds[5]!.asdId].sort());
    expect((await agent.repair()).objectsRepaired).toBe(0); // unreachable, not failed yet: wait
    await sleep(1_600);
    const late = await agent.probe();
    expect(late.filter((item) => item.state === "failed").length).toBe(2);
    const stuck = await agent.repair(); // failed, but all 4 healthy ASDs already hold a fragment of every chunk
    expect(stuck.objectsRepaired).toBe(0);
    expect(stuck.remaining).toBe(3);
    await cluster.addAsd();
    await cluster.addAsd();
    await agent.probe();
    const repaired = await agent.repair();
    expect(repaired.objectsRepaired).toBe(3);
    const healthy = new Set([0, 1, 2, 3, 6, 7].map((index) => cluster!.asds[index]!.asdId));
    const reader = await cluster.backend();
    for (const [name, data] of objects) {
      const manifest = (await reader.manifest("ns", name))!;
      expect(fullyRedundant(manifest, healthy)).toBe(true);
      expect(manifest.chunks[0]!.fragments.length).toBe(manifest.policy.k + manifest.policy.m);
      expect((await reader.get("ns", name)).equals(data)).toBe(true);
    }
    // The failed ASDs return: their stale fragments are orphans now, deleted after the grace period.
    await agent.collectGarbage(); // while they are failed: strays on them are given up
    await cluster.startAsd(4);
    await cluster.startAsd(5);
    await agent.probe();
    expect(fragmentKeysOf(await cluster.keysOn(4)).length).toBeGreaterThan(0);
    const first = await agent.collectGarbage();
    expect(first.orphansDeleted).toBe(0);
    await sleep(350);
    const second = await agent.collectGarbage();
    expect(second.orphansDeleted).toBeGreaterThan(0);
    expect(fragmentKeysOf(await cluster.keysOn(4))).toEqual([]);
    expect(fragmentKeysOf(await cluster.keysOn(5))).toEqual([]);
    for (const [name, data] of objects) expect((await reader.get("ns", name)).equals(data)).toBe(true);
  });

  test("flipped bytes: verify reports them, repair fixes them, reads stay correct throughout", async () => {
    cluster = await TestCluster.start(6);
    const backend = await cluster.backend({ random: seededRandom(5) });
    await backend.createNamespace("ns");
    const file = randomBytes(1 * MiB);
    await backend.put("ns", "file", file);
    const fileManifest = (await backend.manifest("ns", "file"))!;
    await cluster.flipFileByte(cluster.indexOf(fileManifest.chunks[0]!.fragments[0]!.asdId), 1000);
    const proto = randomBytes(64 * 1024 + 5);
    await backend.put("ns", "proto", proto);
    const protoManifest = (await backend.manifest("ns", "proto"))!;
    await cluster.rewriteFlipped("ns", protoManifest, 0, 2);

    let reading = true;
    let readCount = 0;
    const readLoop = (async () => {
      const reader = await cluster!.backend();
      while (reading) {
        expect((await reader.get("ns", "file")).equals(file)).toBe(true);
        expect((await reader.get("ns", "proto")).equals(proto)).toBe(true);
        readCount++;
      }
    })();

    const agent = cluster.agent({ random: seededRandom(6) });
    const report = await agent.verifyNamespace("ns");
    expect(report.objectCount).toBe(2);
    expect(report.fragmentsChecked).toBe(12);
    expect(report.badCount).toBe(2);
    expect(report.bad.map((bad) => [bad.name, bad.chunkIndex, bad.fragmentIndex, bad.asdId])).toEqual([
      ["file", 0, 0, fileManifest.chunks[0]!.fragments[0]!.asdId],
      ["proto", 0, 2, protoManifest.chunks[0]!.fragments[2]!.asdId],
    ]);
    expect(agent.status().queued.repairs).toBe(2);
    const summary = await agent.repair();
    expect(summary.objectsRepaired).toBe(2);
    expect(summary.fragmentsRebuilt).toBe(2);
    expect(agent.status().queued.repairs).toBe(0);
    const fixed = (await backend.manifest("ns", "file"))!;
    expect(fixed.chunks[0]!.fragments[0]!.version).toBe(1);
    expect((await backend.manifest("ns", "proto"))!.chunks[0]!.fragments[2]!.version).toBe(1);
    const again = await agent.verifyNamespace("ns");
    expect(again.badCount).toBe(0);
    expect(again.fragmentsChecked).toBe(12);
    // The bad copies are strays now; garbage collection deletes them.
    const gc = await agent.collectGarbage();
    expect(gc.fragmentsDeleted).toBe(2);
    const namespaceId = await cluster.namespaceId("ns");
    const oldKey = fragmentKey(namespaceId, fileManifest.objectId, 0, 0, 0).toString("hex");
    expect(await cluster.keysOn(cluster.indexOf(fileManifest.chunks[0]!.fragments[0]!.asdId))).not.toContain(oldKey);
    reading = false;
    await readLoop;
    expect(readCount).toBeGreaterThan(0);
    const fresh = await cluster.backend();
    expect((await fresh.get("ns", "file")).equals(file)).toBe(true);
    expect(fresh.statistics().badFragments).toBe(0); // every fragment verifies again
  });

  test("a bad fragment a reader finds is queued for repair and fixed", async () => {
    cluster = await TestCluster.start(6);
    const agent = cluster.agent({ random: seededRandom(13) });
    const backend = await cluster.backend({ random: seededRandom(14), onBadFragment: (report) => agent.reportBadFragment(report) });
    await backend.createNamespace("ns");
    const data = randomBytes(80_000);
    await backend.put("ns", "obj", data);
    const manifest = (await backend.manifest("ns", "obj"))!;
    await cluster.rewriteFlipped("ns", manifest, 0, 1);
    expect((await backend.get("ns", "obj")).equals(data)).toBe(true);
    expect(agent.status().queued.repairs).toBe(1);
    const summary = await agent.repair();
    expect(summary).toMatchObject({ objectsRepaired: 1, fragmentsRebuilt: 1 });
    const repaired = (await backend.manifest("ns", "obj"))!;
    expect(repaired.chunks[0]!.fragments[1]!.version).toBe(1);
    expect(repaired.chunks[0]!.fragments.filter((fragment, index) => index !== 1 && fragment!.version !== 0)).toEqual([]);
    expect((await agent.verifyNamespace("ns")).badCount).toBe(0);
    // A report about an object overwritten since is void.
    agent.reportBadFragment({ namespace: "ns", name: "obj", objectId: manifest.objectId, chunkIndex: 0, fragmentIndex: 2, asdId: repaired.chunks[0]!.fragments[2]!.asdId, version: 0 });
    await backend.put("ns", "obj", data);
    expect((await agent.repair()).objectsRepaired).toBe(0);
  });

  test("an overwrite during a repair wins: the repair is dropped and its new fragment deleted", async () => {
    cluster = await TestCluster.start(6);
    const backend = await cluster.backend({ random: seededRandom(17) });
    await backend.createNamespace("ns");
    await cluster.stopAsd(0);
    await backend.put("ns", "obj", randomBytes(60_000));
    const old = (await backend.manifest("ns", "obj"))!;
    await cluster.startAsd(0);
    const agent = cluster.agent({ random: seededRandom(18) });
    await agent.probe();
    cluster.asds[0]!.server!.setFaults({ delayMs: 800 }); // the repair's write to ASD 0 (the only place for the hole) is slow
    const repairing = agent.repair();
    await sleep(100);
    const fresh = randomBytes(60_000);
    await backend.put("ns", "obj", fresh); // commits while the repair still writes
    const summary = await repairing;
    expect(summary).toMatchObject({ objectsRepaired: 0, dropped: 1 });
    expect(agent.status().counters.repairsDropped).toBe(1);
    const now = (await backend.manifest("ns", "obj"))!;
    expect(now.objectId).not.toBe(old.objectId);
    expect((await backend.get("ns", "obj")).equals(fresh)).toBe(true);
    cluster.asds[0]!.server!.setFaults({});
    const namespaceId = await cluster.namespaceId("ns");
    const holeIndex = old.chunks[0]!.fragments.findIndex((fragment) => fragment === undefined);
    expect(await cluster.keysOn(0)).not.toContain(fragmentKey(namespaceId, old.objectId, 0, holeIndex, 1).toString("hex"));
  });

  test("verify is throttled to bytesPerSecondMax", async () => {
    cluster = await TestCluster.start(6);
    const backend = await cluster.backend();
    await backend.createNamespace("ns");
    await backend.put("ns", "obj", randomBytes(1 * MiB)); // 6 fragments of 256 KiB: 1.5 MiB to read
    const agent = cluster.agent({ bytesPerSecondMax: 512 * 1024 });
    const startMs = Date.now();
    const report = await agent.verifyNamespace("ns");
    const elapsedMs = Date.now() - startMs;
    expect(report.fragmentsChecked).toBe(6);
    expect(elapsedMs).toBeGreaterThanOrEqual(1_500); // the first 512 KiB are in the bucket, 1 MiB more takes 2 s
  });

  test("the fragments of an upload killed halfway, of an overwrite and an orphan are collected after their grace periods", async () => {
    cluster = await TestCluster.start(6);
    const backend = await cluster.backend({ random: seededRandom(7) });
    await backend.createNamespace("ns");
    const namespaceId = await cluster.namespaceId("ns");
    const namespace = (await cluster.manager.getNamespace("ns"))!;
    const nsm = await cluster.manager.nsm(namespace.nsmId);
    // An upload that died after 3 fragments: its record says uploading; no manifest.
    const killed = randomBytes(16).toString("hex");
    await nsm.beginUpload(namespaceId, killed, Date.now());
    for (const index of [0, 1, 2]) {
      const client = await cluster.client(index);
      await client.apply([], [{ kind: "set", key: fragmentKey(namespaceId, killed, 0, index, 0), value: randomBytes(20_000) }]);
      await client.close();
    }
    // A fragment no record covers (a crash before any record: not possible through the client, but disks lie).
    const orphan = randomBytes(16).toString("hex");
    const client3 = await cluster.client(3);
    await client3.apply([], [{ kind: "set", key: fragmentKey(namespaceId, orphan, 0, 0, 0), value: randomBytes(100) }]);
    await client3.close();
    // An overwrite: v1's fragments are garbage at once.
    await backend.put("ns", "obj", randomBytes(50_000));
    const v1 = (await backend.manifest("ns", "obj"))!;
    const v2Data = randomBytes(50_000);
    await backend.put("ns", "obj", v2Data);

    const countKeys = async (objectId: string) => {
      let count = 0;
      for (let index = 0; index < 6; index++) count += fragmentKeysOf(await cluster!.keysOn(index)).filter((key) => key.slice(18, 50) === objectId).length;
      return count;
    };
    expect(await countKeys(killed)).toBe(3);
    expect(await countKeys(v1.objectId)).toBe(6);
    const agent = cluster.agent({ uploadGraceMs: 600, orphanGraceMs: 600 });
    const first = await agent.collectGarbage();
    expect(first.recordsCollected).toBe(1); // v1
    expect(first.recordsWaiting).toBe(1); // the upload, too young
    expect(first.orphansDeleted).toBe(0);
    expect(await countKeys(v1.objectId)).toBe(0);
    expect(await countKeys(killed)).toBe(3);
    expect(await countKeys(orphan)).toBe(1);
    await sleep(700);
    const second = await agent.collectGarbage();
    expect(second.recordsCollected).toBe(1); // the upload
    expect(second.orphansDeleted).toBe(1);
    expect(await countKeys(killed)).toBe(0);
    expect(await countKeys(orphan)).toBe(0);
    expect((await nsm.listGarbage(namespaceId, { limit: 100 })).entries).toEqual([]);
    expect((await backend.get("ns", "obj")).equals(v2Data)).toBe(true);
    const counters = agent.status().counters;
    expect(counters.gcRecordsCollected).toBe(2);
    expect(counters.orphansCollected).toBe(1);
  });

  test("a manifest that does not decode keeps its namespace's fragments from the orphan scan", async () => {
    cluster = await TestCluster.start(6);
    const backend = await cluster.backend();
    await backend.createNamespace("ns");
    for (let index = 0; index < 3; index++) await backend.put("ns", `obj-${index}`, randomBytes(20_000));
    const namespace = (await cluster.manager.getNamespace("ns"))!;
    const nsm = await cluster.manager.nsm(namespace.nsmId);
    const key = nsm.keys.object(namespace.namespaceId, "obj-1");
    const bytes = (await cluster.store.get(key))!;
    bytes[20] = bytes[20]! ^ 0xff;
    await cluster.store.put(key, bytes);
    const agent = cluster.agent({ orphanGraceMs: 0 });
    const summary = await agent.collectGarbage();
    expect(summary.orphansDeleted).toBe(0);
    let keyCount = 0;
    for (let index = 0; index < 6; index++) keyCount += fragmentKeysOf(await cluster.keysOn(index)).length;
    expect(keyCount).toBe(18);
    expect(agent.status().lastErrors.some((error) => /corrupt/i.test(error.message))).toBe(true);
    expect((await agent.repair()).objectsRepaired).toBe(0); // the others are fine and still seen
  });

  test("an upload marked abandoned whose commit did land keeps its fragments", async () => {
    cluster = await TestCluster.start(6);
    const backend = await cluster.backend();
    await backend.createNamespace("ns");
    const data = randomBytes(30_000);
    await backend.put("ns", "obj", data);
    const manifest = (await backend.manifest("ns", "obj"))!;
    const namespace = (await cluster.manager.getNamespace("ns"))!;
    const nsm = await cluster.manager.nsm(namespace.nsmId);
    await nsm.abandonUpload(namespace.namespaceId, manifest.objectId, Date.now()); // as if the commit's reply was lost
    const agent = cluster.agent();
    const summary = await agent.collectGarbage();
    expect(summary.fragmentsDeleted).toBe(0);
    expect(summary.recordsCollected).toBe(1); // the wrong record goes, the fragments stay
    expect((await nsm.listGarbage(namespace.namespaceId, { limit: 10 })).entries).toEqual([]);
    expect(agent.status().lastErrors.some((error) => error.task === "gc" && /live object/.test(error.message))).toBe(true);
    expect((await (await cluster.backend()).get("ns", "obj")).equals(data)).toBe(true);
  });

  test("a deleted namespace's fragments are collected", async () => {
    cluster = await TestCluster.start(6);
    const backend = await cluster.backend();
    await backend.createNamespace("gone");
    const namespaceId = await cluster.namespaceId("gone");
    for (let index = 0; index < 3; index++) await backend.put("gone", `obj-${index}`, randomBytes(30_000));
    await backend.deleteNamespace("gone");
    expect((await cluster.manager.listDeletedNamespaces()).map((item) => item.namespaceId)).toEqual([namespaceId]);
    const agent = cluster.agent();
    const summary = await agent.collectGarbage();
    expect(summary.namespacesPurged).toBe(1);
    expect(summary.fragmentsDeleted).toBe(18);
    for (let index = 0; index < 6; index++) expect(fragmentKeysOf(await cluster.keysOn(index))).toEqual([]);
    expect(await cluster.manager.listDeletedNamespaces()).toEqual([]);
  });

  test("decommission drains an ASD and marks it decommissioned", async () => {
    cluster = await TestCluster.start(7);
    const backend = await cluster.backend({ random: seededRandom(8) });
    await backend.createNamespace("ns");
    const objects = new Map<string, Buffer>();
    for (let index = 0; index < 5; index++) {
      const data = randomBytes(200_000 + index);
      await backend.put("ns", `obj-${index}`, data);
      objects.set(`obj-${index}`, data);
    }
    const target = (await backend.manifest("ns", "obj-0"))!.chunks[0]!.fragments[0]!.asdId;
    let onTarget = 0;
    for (const name of objects.keys()) if (asdIdsOf((await backend.manifest("ns", name))!).has(target)) onTarget++;
    const agent = cluster.agent({ random: seededRandom(9) });
    const drain = await agent.decommission(target);
    expect(drain).toEqual({ asdId: target, remainingFragments: 0 });
    expect((await cluster.manager.getAsd(target))!.state).toBe("decommissioned");
    expect(agent.status().counters.fragmentsCopied).toBe(onTarget); // its copies were intact: copied, not rebuilt
    expect(agent.status().queued.decommissions).toEqual([]);
    const reader = await cluster.backend();
    for (const [name, data] of objects) {
      const manifest = (await reader.manifest("ns", name))!;
      expect(asdIdsOf(manifest).has(target)).toBe(false);
      expect(fullyRedundant(manifest, new Set(cluster.asds.map((asd) => asd.asdId).filter((asdId) => asdId !== target)))).toBe(true);
      expect((await reader.get("ns", name)).equals(data)).toBe(true);
    }
    await agent.collectGarbage();
    expect(fragmentKeysOf(await cluster.keysOn(cluster.indexOf(target)))).toEqual([]);
    // New uploads avoid it.
    await reader.refresh();
    await reader.put("ns", "after", randomBytes(10_000));
    expect(asdIdsOf((await reader.manifest("ns", "after"))!).has(target)).toBe(false);
  });

  test("rebalance moves fragments from a fuller ASD to emptier ones", async () => {
    cluster = await TestCluster.start(7);
    const backend = await cluster.backend({ random: seededRandom(10) });
    await backend.createNamespace("ns");
    const objects = new Map<string, Buffer>();
    for (let index = 0; index < 8; index++) {
      const data = randomBytes(40_000 + index);
      await backend.put("ns", `obj-${index}`, data);
      objects.set(`obj-${index}`, data);
    }
    const countOn = async (asdId: string) => {
      let count = 0;
      for (const name of objects.keys()) if (asdIdsOf((await backend.manifest("ns", name))!).has(asdId)) count++;
      return count;
    };
    const full = cluster.asds[0]!;
    const before = await countOn(full.asdId);
    expect(before).toBeGreaterThan(0);
    for (const asd of cluster.asds) asd.statfs.fill(asd === full ? 0.8 : 0.1);
    const agent = cluster.agent({ random: seededRandom(11), rebalanceSpreadMax: 0.1 });
    await agent.probe();
    const summary = await agent.rebalance();
    expect(summary.spreadBefore).toBeCloseTo(0.7, 2);
    expect(summary.moved).toBe(before); // the simulated fill does not change: everything movable moves
    expect(await countOn(full.asdId)).toBe(0);
    for (const [name, data] of objects) {
      const manifest = (await backend.manifest("ns", name))!;
      expect(fullyRedundant(manifest, new Set(cluster.asds.map((asd) => asd.asdId)))).toBe(true);
      expect((await backend.get("ns", name)).equals(data)).toBe(true);
    }
    for (const asd of cluster.asds) asd.statfs.fill(0.1);
    await agent.probe();
    expect((await agent.rebalance()).moved).toBe(0); // balanced
  });

  test("the loop repairs by itself, and status shows what it did", async () => {
    cluster = await TestCluster.start(6);
    const backend = await cluster.backend({ random: seededRandom(12) });
    await backend.createNamespace("ns");
    await cluster.stopAsd(1);
    const data = randomBytes(123_456);
    await backend.put("ns", "obj", data);
    expect((await backend.manifest("ns", "obj"))!.chunks[0]!.fragments.includes(undefined)).toBe(true);
    await cluster.startAsd(1);
    const agent = cluster.agent({ probeIntervalMs: 50, passIntervalMs: 100 });
    agent.start();
    expect(agent.status().looping).toBe(true);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && (await backend.manifest("ns", "obj"))!.chunks[0]!.fragments.includes(undefined)) await sleep(50);
    expect(fullyRedundant((await backend.manifest("ns", "obj"))!, new Set(cluster.asds.map((asd) => asd.asdId)))).toBe(true);
    const status = agent.status();
    expect(status.counters.objectsRepaired).toBe(1);
    expect(status.asds.length).toBe(6);
    expect(status.asds.every((asd) => asd.health === "ok" && asd.capacityBytes! > 0)).toBe(true);
    expect(status.lastFinishedMs.repair).toBeGreaterThan(0);
    agent.queueVerify("ns");
    expect(agent.status().queued.verifies).toEqual(["ns"]);
    const verifyDeadline = Date.now() + 10_000;
    while (Date.now() < verifyDeadline && agent.status().lastFinishedMs.verify === undefined) await sleep(50);
    expect(agent.status().counters.fragmentsVerified).toBe(6);
    await agent.close();
    expect(agent.status().looping).toBe(false);
    expect((await backend.get("ns", "obj")).equals(data)).toBe(true);
  });
});
