// The volume metadata store: the paged cluster map (golden vectors of docs/formats/volume-metadata.md),
// lookups across commits, range listing, the written-cluster count and the format check at open.

import { afterEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { open } from "lmdb";
import { clustersPerPage, mapFormat, MetadataStore, pageSizeBytes, readSlot, writeSlot, zeroLocation, type ClusterLocation } from "./metadata-store.js";

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => fsp.rm(dir, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-metadata-"));
  dirs.push(dir);
  return dir;
}

const at = (scoNumber: number, offsetClusters: number, dataCrc: number): ClusterLocation => ({ cloneId: 0, scoNumber, scoVersion: 0, offsetClusters, dataCrc });

describe("map page format (golden vectors)", () => {
  it("encodes a slot as in docs/formats/volume-metadata.md", () => {
    const page = Buffer.alloc(pageSizeBytes);
    writeSlot(page, 5 * 12, { cloneId: 2, scoNumber: 1, scoVersion: 3, offsetClusters: 0x0102, dataCrc: 0x12345678 });
    expect(page.subarray(60, 72).toString("hex")).toBe("010000000201" + "0203" + "78563412");
    expect(readSlot(page, 5)).toEqual({ cloneId: 2, scoNumber: 1, scoVersion: 3, offsetClusters: 0x0102, dataCrc: 0x12345678 });
    expect(readSlot(page, 4)).toBeUndefined();
    writeSlot(page, 5 * 12, zeroLocation);
    expect(page.equals(Buffer.alloc(pageSizeBytes))).toBe(true);
  });

  it("stores cluster 69 in page 1, slot 5, under an 8-byte big-endian page key", async () => {
    const dir = await tempDir();
    const store = MetadataStore.open(dir);
    await store.commit({ config: { name: "v" }, updates: [[69, at(1, 0, 0x12345678)]] });
    await store.close();
    const raw = open({ path: dir, maxDbs: 4, compression: false });
    const pages = raw.openDB<Buffer, Buffer>({ name: "map-pages", keyEncoding: "binary", encoding: "binary" });
    const entries = [...pages.getRange()].map(({ key, value }) => [Buffer.from(key).toString("hex"), Buffer.from(value)] as const);
    expect(entries).toHaveLength(1);
    expect(entries[0]![0]).toBe("0000000000000001");
    const value = entries[0]![1];
    expect(value.length).toBe(768);
    const expected = Buffer.alloc(768);
    Buffer.from("010000000000000078563412", "hex").copy(expected, 5 * 12);
    expect(value.equals(expected)).toBe(true);
    const meta = raw.openDB<string, string>({ name: "meta", encoding: "string" });
    expect(meta.get("mapFormat")).toBe(mapFormat);
    expect(meta.get("mapClusterCount")).toBe("1");
    await raw.close();
  });
});

describe("MetadataStore", () => {
  it("looks up what was committed, the last update per address winning, across page boundaries", async () => {
    const store = MetadataStore.open(await tempDir());
    expect(store.lookup(0)).toBeUndefined();
    await store.commit({ updates: [[0, at(1, 0, 10)], [63, at(1, 1, 11)], [64, at(1, 2, 12)], [0, at(2, 5, 13)]] });
    expect(store.lookup(0)).toEqual(at(2, 5, 13));
    expect(store.lookup(63)).toEqual(at(1, 1, 11));
    expect(store.lookup(64)).toEqual(at(1, 2, 12));
    expect(store.lookup(65)).toBeUndefined();
    expect(store.committedClusterCount()).toBe(3);
    // A lookup caches its page: a later commit must not be hidden by it.
    expect(store.lookup(1)).toBeUndefined();
    await store.commit({ updates: [[1, at(3, 0, 14)], [63, zeroLocation]] });
    expect(store.lookup(1)).toEqual(at(3, 0, 14));
    expect(store.lookup(63)).toBeUndefined();
    expect(store.committedClusterCount()).toBe(3);
    await store.close();
  });

  it("removes a page whose clusters are all unmapped and keeps the count exact", async () => {
    const dir = await tempDir();
    const store = MetadataStore.open(dir);
    const updates: Array<[number, ClusterLocation]> = [];
    for (let address = 128; address < 128 + clustersPerPage; address++) updates.push([address, at(7, address - 128, address)]);
    await store.commit({ updates });
    expect(store.committedClusterCount()).toBe(clustersPerPage);
    // Unmapping an unwritten cluster changes nothing.
    await store.commit({ updates: [[5, zeroLocation]] });
    expect(store.committedClusterCount()).toBe(clustersPerPage);
    await store.commit({ updates: updates.map(([address]) => [address, zeroLocation] as [number, ClusterLocation]) });
    expect(store.committedClusterCount()).toBe(0);
    expect([...store.writtenClustersInRange(0, 1 << 20)]).toEqual([]);
    await store.close();
  });

  it("lists the written clusters of a range, in order, clipped to the range", async () => {
    const store = MetadataStore.open(await tempDir());
    const written = [3, 60, 64, 100, 127, 128, 5000, 2 ** 33 + 7];
    await store.commit({ updates: written.map((address, i) => [address, at(1, i, i)] as [number, ClusterLocation]) });
    expect([...store.writtenClustersInRange(0, 2 ** 34)]).toEqual(written);
    expect([...store.writtenClustersInRange(4, 128)]).toEqual([60, 64, 100, 127]);
    expect([...store.writtenClustersInRange(128, 129)]).toEqual([128]);
    expect([...store.writtenClustersInRange(129, 5000)]).toEqual([]);
    expect([...store.writtenClustersInRange(10, 10)]).toEqual([]);
    expect(store.lookup(2 ** 33 + 7)).toEqual(at(1, 7, 7));
    await store.close();
  });

  it("persists across a reopen and refuses a map in another format", async () => {
    const dir = await tempDir();
    const store = MetadataStore.open(dir);
    await store.commit({ config: { name: "v" }, updates: [[9, at(4, 1, 99)]] });
    await store.flushed();
    await store.close();
    const again = MetadataStore.open(dir);
    expect(again.lookup(9)).toEqual(at(4, 1, 99));
    await again.close();
    const raw = open({ path: dir, maxDbs: 4, compression: false });
    await raw.openDB<string, string>({ name: "meta", encoding: "string" }).put("mapFormat", "per-cluster");
    await raw.close();
    expect(() => MetadataStore.open(dir)).toThrow(/map format per-cluster/);
  });
});
