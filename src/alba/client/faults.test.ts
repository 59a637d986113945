// AlbaBackend under faults, against real in-process ASDs: reads with 2 of 6 ASDs stopped; uploads with
// ASDs down (one down: the first policy with a hole; two down: the fallback policy, after a first
// attempt that learns they are down); no satisfiable policy; a flipped byte in a fragment (rewritten on
// the ASD, and flipped in the ASD's blob file) still reads correctly by rebuild and is counted; a full
// ASD gets no writes; partial reads fall back to a decode when a data fragment's ASD is down; the
// fragment cache counts hits and misses; overwrites and failed uploads leave garbage records.
import { randomBytes } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, test, vi } from "vitest";
import { isOvsError, MiB } from "../../base/index.js";
import { AsdClient } from "../asd/index.js";
import { fragmentKey, singleNodePreset, type Manifest } from "../manager/index.js";
import { seededRandom } from "../placement/index.js";
import { MaintenanceAgent } from "../maintenance/index.js";
import { startTestCluster, testClusterSecret, type TestCluster } from "./test-support.js";

let cluster: TestCluster | undefined;

afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

async function setup(options: { asdCount?: number; settableStatfs?: boolean } = {}) {
  cluster = await startTestCluster(options);
  const backend = await cluster.backend({ fragmentCacheBytes: 0, random: seededRandom(42) });
  await backend.createNamespace("ns");
  return { cluster, backend };
}

function asdIndexOf(cluster: TestCluster, asdId: string): number {
  const index = cluster.asds.findIndex((asd) => asd.asdId === asdId);
  expect(index).toBeGreaterThanOrEqual(0);
  return index;
}

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected the call to fail");
}

describe("AlbaBackend faults", () => {
  test("an object stays readable (whole and ranges) with 2 of 6 ASDs stopped", async () => {
    const { cluster, backend } = await setup();
    const data = randomBytes(3 * MiB + 12345);
    await backend.put("ns", "obj", data);
    const manifest = (await backend.manifest("ns", "obj"))!;
    expect(manifest.policy).toEqual({ k: 4, m: 2, c: 5, x: 6 });
    // Stop the ASDs of data fragments 0 and 2: reads need parity.
    await cluster.stopAsd(asdIndexOf(cluster, manifest.chunks[0]!.fragments[0]!.asdId));
    await cluster.stopAsd(asdIndexOf(cluster, manifest.chunks[0]!.fragments[2]!.asdId));
    for (const readStrategy of ["data-first", "all"] as const) {
      const reader = await cluster.backend({ fragmentCacheBytes: 0, readStrategy });
      expect((await reader.get("ns", "obj")).equals(data)).toBe(true);
      expect(reader.statistics().chunkRebuilds).toBe(1);
    }
    const reader = await cluster.backend({ fragmentCacheBytes: 0 });
    expect((await reader.get("ns", "obj")).equals(data)).toBe(true);
    const ranges = [{ offsetBytes: 0, lengthBytes: 100 }, { offsetBytes: MiB - 7, lengthBytes: 2 * MiB }, { offsetBytes: data.length - 1, lengthBytes: 1 }];
    const read = await reader.getRanges("ns", "obj", ranges);
    ranges.forEach((range, index) => expect(read[index]!.equals(data.subarray(range.offsetBytes, range.offsetBytes + range.lengthBytes))).toBe(true));
    const statistics = reader.statistics();
    expect(statistics.chunkRebuilds).toBeGreaterThan(0);
    expect(statistics.partialReadFallbacks).toBeGreaterThan(0);
  });

  test("uploads with one ASD down use the first policy with a hole; with two down the fallback policy", async () => {
    const { cluster, backend } = await setup();
    await cluster.stopAsd(0);
    const one = await backend.putWithReport("ns", "one", Buffer.from("one ASD down"));
    expect(one.policyIndex).toBe(0);
    expect(one.holeCount).toBe(1);
    expect((await backend.manifest("ns", "one"))!.chunks[0]!.fragments.filter((fragment) => fragment === undefined).length).toBe(1);

    await cluster.stopAsd(1);
    const data = randomBytes(2 * MiB + 3);
    const two = await backend.putWithReport("ns", "two", data);
    expect(two.policyIndex).toBe(1);
    expect(two.policy).toEqual({ k: 2, m: 2, c: 3, x: 6 });
    expect(two.holeCount).toBe(0);
    const manifest = (await backend.manifest("ns", "two"))!;
    const used = new Set(manifest.chunks.flatMap((chunk) => chunk.fragments.map((fragment) => fragment!.asdId)));
    expect(used.has(cluster.asds[0]!.asdId) || used.has(cluster.asds[1]!.asdId)).toBe(false);
    expect((await backend.get("ns", "two")).equals(data)).toBe(true);
    expect(backend.statistics().uploadsWithFallbackPolicy).toBe(1);

    // Back to 6: the next upload uses the best policy again (once the down marks expire).
    await cluster.startAsd(0);
    await cluster.startAsd(1);
    const fresh = await cluster.backend({ fragmentCacheBytes: 0 });
    expect((await fresh.putWithReport("ns", "three", Buffer.from("all back"))).policyIndex).toBe(0);
  });

  test("an upload that finds ASDs down only while writing retries with the fallback policy", async () => {
    const { cluster, backend } = await setup();
    await backend.put("ns", "warm", Buffer.from("connects to every ASD"));
    await cluster.stopAsd(2);
    await cluster.stopAsd(4);
    const data = randomBytes(100_000);
    const report = await backend.putWithReport("ns", "late", data);
    expect(report.policyIndex).toBe(1);
    expect(report.attemptCount).toBe(2);
    expect(backend.statistics().uploadRetries).toBe(1);
    expect((await backend.get("ns", "late")).equals(data)).toBe(true);
    // The abandoned first attempt is recorded as garbage.
    const namespace = (await cluster.manager.getNamespace("ns"))!;
    const nsm = await cluster.manager.nsm(namespace.nsmId);
    const garbage = (await nsm.listGarbage(namespace.namespaceId, { limit: 100 })).entries.map((entry) => entry.record);
    expect(garbage.some((record) => record.kind === "upload" && record.state === "abandoned")).toBe(true);
  });

  test("concurrent uploads reuse fragment buffers without mixing bytes, also when a fragment is retried on another ASD", async () => {
    const { cluster, backend } = await setup({ asdCount: 8 });
    await backend.put("ns", "warm", Buffer.from("connects to every ASD"));
    const objects = Array.from({ length: 24 }, (_, index) => ({ name: `o${index}`, data: randomBytes(3 * MiB + index * 4096) }));
    // Stop an ASD while the uploads run: its fragments fail and are retried on the spare ASDs, while
    // the other chunks' buffers go back to the pool and are handed out again.
    const uploads = objects.map(({ name, data }, index) => (async () => {
      if (index === 6) await cluster.stopAsd(3);
      await backend.put("ns", name, data);
    })());
    await Promise.all(uploads);
    expect(backend.statistics().fragmentWriteRetries).toBeGreaterThan(0);
    // Every chunk got all 6 fragments: a retried fragment whose buffer had been reused would fail its
    // CRC32C at the ASD and leave a hole.
    expect(backend.statistics().uploadsWithHoles).toBe(0);
    expect(backend.statistics().uploadRetries).toBe(0);
    for (const { name, data } of objects) expect((await backend.get("ns", name)).equals(data)).toBe(true);
  });

  test("with 4 of 6 ASDs down no policy is satisfiable: writes fail clearly, nothing is committed", async () => {
    const { cluster, backend } = await setup();
    for (const index of [0, 1, 2, 3]) await cluster.stopAsd(index);
    const error = await caught(backend.put("ns", "nope", Buffer.from("x")));
    expect(isOvsError(error, "UNAVAILABLE")).toBe(true);
    expect((error as { details: { reason: string } }).details.reason).toMatch(/noSatisfiablePolicy|belowMinimum/);
    const again = await caught(backend.put("ns", "nope", Buffer.from("x")));
    expect((again as { details: { reason: string } }).details.reason).toBe("noSatisfiablePolicy");
    expect((again as Error).message).toMatch(/read-only/);
    expect(await backend.exists("ns", "nope")).toBe(false);
  });

  test("a fragment rewritten with a flipped byte is detected, counted and rebuilt around", async () => {
    const { cluster, backend } = await setup();
    const data = randomBytes(64 * 1024 + 5);
    await backend.put("ns", "obj", data);
    const manifest: Manifest = (await backend.manifest("ns", "obj"))!;
    const namespace = (await cluster.manager.getNamespace("ns"))!;
    const fragment = manifest.chunks[0]!.fragments[1]!;
    const asd = cluster.asds[asdIndexOf(cluster, fragment.asdId)]!;
    const client = await AsdClient.connect({ host: "127.0.0.1", port: asd.port, clusterSecret: testClusterSecret, backendId: cluster.manager.backendId });
    const key = fragmentKey(namespace.namespaceId, manifest.objectId, 0, 1, fragment.version);
    const value = Buffer.from((await client.get(key))!);
    value[100] = value[100]! ^ 0x01; // payload byte: the ASD's own checksum is recomputed, the fragment's is not
    await client.apply([], [{ kind: "set", key, value }]);
    await client.close();
    // Whole reads check the fragment's own CRC32C. (Partial reads rely on the ASD's checksum of the value,
    // which a rewrite through the protocol keeps valid: see the flipped-file test for them.)
    expect((await backend.get("ns", "obj")).equals(data)).toBe(true);
    expect(backend.statistics().badFragments).toBeGreaterThanOrEqual(1);
    expect(backend.statistics().chunkRebuilds).toBeGreaterThanOrEqual(1);
    const dataFirst = await cluster.backend({ fragmentCacheBytes: 0, readStrategy: "data-first" });
    expect((await dataFirst.get("ns", "obj")).equals(data)).toBe(true);
    expect(dataFirst.statistics()).toMatchObject({ badFragments: 1, chunkRebuilds: 1 });
    await backend.flushObservations();
    expect((await cluster.manager.getAsd(fragment.asdId))!.errorCounts.checksumErrors).toBeGreaterThanOrEqual(1);
  });

  test("a byte flipped in an ASD's blob file is caught by the ASD, counted, and rebuilt around", async () => {
    const { cluster, backend } = await setup();
    const data = randomBytes(1 * MiB);
    await backend.put("ns", "obj", data);
    const manifest = (await backend.manifest("ns", "obj"))!;
    const asd = cluster.asds[asdIndexOf(cluster, manifest.chunks[0]!.fragments[0]!.asdId)]!;
    const blobs = path.join(asd.dir, "blobs");
    const files: string[] = [];
    for (const sub of await readdir(blobs)) for (const file of await readdir(path.join(blobs, sub))) files.push(path.join(blobs, sub, file));
    expect(files.length).toBe(1);
    const bytes = await readFile(files[0]!);
    bytes[1000] = bytes[1000]! ^ 0x80;
    await writeFile(files[0]!, bytes);
    const ranges = await backend.getRanges("ns", "obj", [{ offsetBytes: 0, lengthBytes: 4096 }, { offsetBytes: 900, lengthBytes: 200 }]);
    expect(ranges[0]!.equals(data.subarray(0, 4096))).toBe(true);
    expect(ranges[1]!.equals(data.subarray(900, 1100))).toBe(true);
    expect(backend.statistics().partialReadFallbacks).toBe(1);
    expect(backend.statistics().badFragments).toBeGreaterThanOrEqual(1); // the partial read (and maybe its fallback)
    expect((await backend.get("ns", "obj")).equals(data)).toBe(true);
    expect(backend.statistics().chunkRebuilds).toBe(2); // fragment 0 never verifies: both decodes rebuild it
    await backend.flushObservations();
    expect((await cluster.manager.getAsd(asd.asdId))!.errorCounts.checksumErrors).toBeGreaterThanOrEqual(1);
  });

  test("a full ASD gets no new fragments; writes go to the others", async () => {
    const { cluster } = await setup({ asdCount: 7, settableStatfs: true });
    // A long slack, so that a re-placed write always makes it into the manifest.
    const backend = await cluster.backend({ fragmentCacheBytes: 0, random: seededRandom(7), uploadSlackMsMin: 5_000, uploadSlackMsMax: 5_000 });
    cluster.asds[3]!.statfs!.fill(0.995);
    // The client has not refreshed disk usage yet: the first writes that hit the full ASD are re-placed.
    for (let index = 0; index < 6; index++) {
      const report = await backend.putWithReport("ns", `before-${index}`, randomBytes(50_000));
      expect(report.holeCount).toBe(0);
    }
    expect(backend.statistics().fragmentWriteRetries).toBeGreaterThan(0); // NO_SPACE, moved to the 7th ASD
    await backend.refresh();
    const retriesBefore = backend.statistics().fragmentWriteRetries;
    for (let index = 0; index < 6; index++) await backend.put("ns", `after-${index}`, randomBytes(50_000));
    expect(backend.statistics().fragmentWriteRetries).toBe(retriesBefore); // placement knew it was full
    for (const prefix of ["before-", "after-"]) {
      for (let index = 0; index < 6; index++) {
        const manifest = (await backend.manifest("ns", `${prefix}${index}`))!;
        const asdIds = manifest.chunks[0]!.fragments.map((fragment) => fragment!.asdId);
        expect(asdIds).not.toContain(cluster.asds[3]!.asdId);
      }
    }
    expect((await backend.get("ns", "after-5")).length).toBe(50_000);
  });

  test("the fragment cache serves repeated reads and counts hits and misses", async () => {
    const { cluster } = await setup();
    const backend = await cluster.backend({ fragmentCacheBytes: 16 * MiB });
    const data = randomBytes(1 * MiB + 1);
    await backend.put("ns", "obj", data);
    expect((await backend.get("ns", "obj")).equals(data)).toBe(true);
    const first = backend.statistics().cache;
    expect(first.misses).toBe(4); // the 4 data fragments were looked up
    await new Promise((resolve) => setTimeout(resolve, 100)); // a data fragment that arrived after the decode is cached too
    expect(backend.statistics().cache.entryCount).toBe(4);
    expect((await backend.get("ns", "obj")).equals(data)).toBe(true);
    const range = await backend.getRanges("ns", "obj", [{ offsetBytes: 5, lengthBytes: 500_000 }]);
    expect(range[0]!.equals(data.subarray(5, 500_005))).toBe(true);
    const second = backend.statistics().cache;
    expect(second.hits).toBeGreaterThanOrEqual(4 + 2);
    expect(second.storedBytes).toBeLessThanOrEqual(16 * MiB);
  });

  test("overwrites and deletes record the superseded object for garbage collection", async () => {
    const { cluster, backend } = await setup();
    await backend.put("ns", "obj", Buffer.from("v1"));
    const v1 = (await backend.manifest("ns", "obj"))!;
    await backend.put("ns", "obj", Buffer.from("v2"));
    const v2 = (await backend.manifest("ns", "obj"))!;
    expect(v2.objectId).not.toBe(v1.objectId);
    await backend.delete("ns", "obj");
    const namespace = (await cluster.manager.getNamespace("ns"))!;
    const nsm = await cluster.manager.nsm(namespace.nsmId);
    const garbage = (await nsm.listGarbage(namespace.namespaceId, { limit: 100 })).entries.map((entry) => entry.record);
    expect(garbage.map((record) => [record.kind, record.objectId, record.kind === "object" ? record.reason : ""]).sort()).toEqual(
      [["object", v1.objectId, "overwritten"], ["object", v2.objectId, "deleted"]].sort(),
    );
  });

  test("garbage collection deletes the fragments of overwritten, deleted, failed and namespace-deleted objects only", async () => {
    const { cluster, backend } = await setup();
    const live = randomBytes(300_000);
    await backend.put("ns", "kept", randomBytes(200_000));
    await backend.put("ns", "kept", live); // overwrite: the first version is garbage
    await backend.put("ns", "gone", randomBytes(100_000));
    await backend.delete("ns", "gone");
    await expect(backend.apply("ns", [{ kind: "absent", name: "kept" }], [{ kind: "put", name: "lost", data: randomBytes(50_000) }])).rejects.toThrow();
    await backend.createNamespace("other");
    await backend.put("other", "x", randomBytes(70_000));
    await backend.deleteNamespace("other");

    const countFragmentKeys = async (): Promise<number> => {
      let total = 0;
      for (const asd of cluster.asds) {
        const client = await AsdClient.connect({ host: "127.0.0.1", port: asd.port, clusterSecret: testClusterSecret, backendId: cluster.manager.backendId });
        total += (await client.range({ limit: 10_000 })).keys.length;
        await client.close();
      }
      return total;
    };
    expect(await countFragmentKeys()).toBe(5 * 6); // kept (twice), gone, lost, other/x
    const agent = new MaintenanceAgent({ manager: cluster.manager, clusterSecret: testClusterSecret });
    try {
      const report = await agent.collectGarbage();
      expect(report).toMatchObject({ recordsCollected: 3, recordsWaiting: 0, namespacesPurged: 1 });
      expect(report.fragmentsDeleted).toBe(4 * 6);
      expect(await countFragmentKeys()).toBe(6); // the live object's fragments only
      expect((await backend.get("ns", "kept")).equals(live)).toBe(true);
      expect(await agent.collectGarbage()).toMatchObject({ recordsCollected: 0, fragmentsDeleted: 0 });
    } finally {
      await agent.close();
    }
  });

  test("an encrypted, compressed preset round-trips; its partial reads decode whole chunks", async () => {
    const { cluster } = await setup();
    await cluster.manager.createPreset({ ...singleNodePreset("sealed"), fragmentSizeMaxBytes: 64 * 1024, compression: "zstd", encryption: "aes-256-gcm", encryptionKeyHex: "5a".repeat(32) });
    const backend = await cluster.backend({ presetName: "sealed", fragmentCacheBytes: 0 });
    await backend.createNamespace("sealed-ns");
    const data = Buffer.concat([Buffer.alloc(300_000, 0x61), randomBytes(300_000)]); // half compressible, 3 chunks
    await backend.put("sealed-ns", "obj", data);
    const manifest = (await backend.manifest("sealed-ns", "obj"))!;
    expect(manifest).toMatchObject({ encryption: "aes-256-gcm", compression: "zstd" });
    expect(manifest.chunks.length).toBe(3);
    expect(manifest.encryptionKeySha256).toMatch(/^[0-9a-f]{64}$/);
    expect((await backend.get("sealed-ns", "obj")).equals(data)).toBe(true);
    const [range] = await backend.getRanges("sealed-ns", "obj", [{ offsetBytes: 250_000, lengthBytes: 100_000 }]);
    expect(range!.equals(data.subarray(250_000, 350_000))).toBe(true);
    expect(backend.statistics().partialReads).toBe(0);
  });

  test("an object too large for its preset's manifest is refused before anything is written", async () => {
    const { cluster } = await setup();
    await cluster.manager.createPreset({ ...singleNodePreset("tiny"), fragmentSizeMaxBytes: 16 });
    const backend = await cluster.backend({ presetName: "tiny" });
    await backend.createNamespace("tiny-ns");
    const error = await caught(backend.put("tiny-ns", "big", randomBytes(1 * MiB)));
    expect(isOvsError(error, "INVALID_ARGUMENT")).toBe(true);
    expect((error as Error).message).toMatch(/too large/);
    await backend.put("tiny-ns", "small", Buffer.from("fits in a few chunks"));
    expect((await backend.get("tiny-ns", "small")).toString()).toBe("fits in a few chunks");
  });

  test("a read that finds its manifest's fragments gone retries once with the current manifest", async () => {
    const { cluster, backend } = await setup();
    await backend.put("ns", "obj", randomBytes(100_000));
    const namespace = (await cluster.manager.getNamespace("ns"))!;
    const nsm = await cluster.manager.nsm(namespace.nsmId);
    const stale = await nsm.getManifest(namespace.namespaceId, "obj");
    const v2 = randomBytes(120_000);
    await backend.put("ns", "obj", v2);
    const agent = new MaintenanceAgent({ manager: cluster.manager, clusterSecret: testClusterSecret });
    await agent.collectGarbage(); // the first version's fragments are deleted
    await agent.close();
    const real = nsm.getManifest.bind(nsm);
    let calls = 0;
    const spy = vi.spyOn(nsm, "getManifest").mockImplementation(async (namespaceId, name) => (calls++ === 0 ? stale : real(namespaceId, name)));
    try {
      expect((await backend.get("ns", "obj")).equals(v2)).toBe(true);
      expect(calls).toBe(2);
    } finally {
      spy.mockRestore();
    }
  });
});
