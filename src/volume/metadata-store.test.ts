// The map value's golden vector (docs/formats/volume-metadata.md) and lookups as of a snapshot through
// the history database.

import { afterEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { open } from "lmdb";
import { MetadataStore, zeroLocation, type ClusterLocation } from "./metadata-store.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await fsp.rm(dir, { recursive: true, force: true });
});

async function tempStore(): Promise<{ store: MetadataStore; dir: string }> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-metadata-"));
  dirs.push(dir);
  return { store: MetadataStore.open(dir), dir };
}

const at = (scoNumber: number, dataCrc = 0x1000 + scoNumber): ClusterLocation => ({ cloneId: 0, scoNumber, scoVersion: 0, offsetClusters: 0, dataCrc });

describe("MetadataStore", () => {
  it("stores the spec's example map page byte for byte", async () => {
    const { store, dir } = await tempStore();
    await store.commit({ updates: [[5, { cloneId: 0, scoNumber: 1, scoVersion: 0, offsetClusters: 0, dataCrc: 0x12345678 }, 3]] });
    await store.commit({ updates: [[70, { cloneId: 2, scoNumber: 0x0a0b0c0d, scoVersion: 1, offsetClusters: 0x0102, dataCrc: 0xdeadbeef }, 0x11223344]] });
    await store.close();
    const root = open({ path: dir, maxDbs: 5, compression: false });
    const pages = root.openDB<Buffer, Buffer>({ name: "pages", keyEncoding: "binary", encoding: "binary" });
    const entries = [...pages.getRange({})].map(({ key, value }) => [Buffer.from(key).toString("hex"), Buffer.from(value).toString("hex")]);
    const page0 = "00".repeat(5 * 16) + "01000000000000007856341203000000" + "00".repeat(26 * 16);
    const page2 = "00".repeat(6 * 16) + "0d0c0b0a02010201efbeadde44332211" + "00".repeat(25 * 16);
    expect(entries).toEqual([["0000000000000000", page0], ["0000000000000002", page2]]);
    const meta = root.openDB<string, string>({ name: "meta", encoding: "string" });
    expect(meta.get("mapFormat")).toBe("pages32");
    await root.close();
  });

  it("moves a map from before pages (one key per cluster, 12- and 16-byte values) into pages at the first open", async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-metadata-"));
    dirs.push(dir);
    const legacy = open({ path: dir, maxDbs: 4, compression: false });
    const map = legacy.openDB<Buffer, Buffer>({ name: "map", keyEncoding: "binary", encoding: "binary" });
    const key = (address: number): Buffer => Buffer.from(address.toString(16).padStart(16, "0"), "hex");
    await map.put(key(5), Buffer.from("01000000000000007856341203000000", "hex")); // the old spec's example
    await map.put(key(40), Buffer.from("020000000300000011223344", "hex")); // 12 bytes: TLog seq 0
    await map.put(key(2 ** 33 + 1), Buffer.from("0700000001000000aabbccdd09000000", "hex"));
    await legacy.close();

    const store = MetadataStore.open(dir);
    expect(store.lookup(5)).toEqual({ scoNumber: 1, offsetClusters: 0, cloneId: 0, scoVersion: 0, dataCrc: 0x12345678 });
    expect(store.lookup(40)).toEqual({ scoNumber: 2, offsetClusters: 3, cloneId: 0, scoVersion: 0, dataCrc: 0x44332211 });
    expect(store.lookupAsOf(40, 0)?.scoNumber).toBe(2); // written before any seq
    expect(store.lookup(2 ** 33 + 1)?.dataCrc).toBe(0xddccbbaa);
    expect(store.lookup(6)).toBeUndefined();
    expect([...store.writtenClustersInRange(0, 2 ** 34)]).toEqual([5, 40, 2 ** 33 + 1]);
    expect([...store.writtenClustersInRange(6, 40)]).toEqual([]);
    await store.close();

    // The old database is gone and a second open changes nothing.
    const root = open({ path: dir, maxDbs: 5, compression: false });
    expect([...root.openDB<Buffer, Buffer>({ name: "map", keyEncoding: "binary", encoding: "binary" }).getKeys({})]).toEqual([]);
    await root.close();
    const again = MetadataStore.open(dir);
    expect(again.lookup(40)?.scoNumber).toBe(2);
    await again.close();
  });

  it("keeps explicit zeros (clones) apart from unmapped clusters, and removes a page once it is empty", async () => {
    const { store, dir } = await tempStore();
    await store.commit({ updates: [[3, at(1), 1], [4, zeroLocation, 1]], keepZeros: true });
    expect(store.lookup(3)?.scoNumber).toBe(1);
    expect(store.lookup(4)).toEqual({ scoNumber: 0, offsetClusters: 0, cloneId: 0, scoVersion: 0, dataCrc: 0 });
    expect(store.lookup(5)).toBeUndefined();
    expect([...store.writtenClustersInRange(0, 32)]).toEqual([3, 4]);
    await store.commit({ updates: [[3, zeroLocation, 2], [4, zeroLocation, 2]] }); // a trim, not a clone
    expect(store.lookup(3)).toBeUndefined();
    expect(store.lookup(4)).toBeUndefined();
    await store.close();
    const root = open({ path: dir, maxDbs: 5, compression: false });
    expect([...root.openDB<Buffer, Buffer>({ name: "pages", keyEncoding: "binary", encoding: "binary" }).getKeys({})]).toEqual([]);
    await root.close();
  });

  it("commits several batches in one transaction, in order (a later batch sees and replaces an earlier one)", async () => {
    const { store } = await tempStore();
    // As the volume groups them: a TLog's record, its map entries, then its "stored" record.
    await store.commitAll([
      { tlogs: [{ seq: 1, id: "tlog_a", closed: true, stored: false }, { seq: 2, id: "tlog_b", closed: false, stored: false }] },
      { updates: [[3, at(1), 1], [4, at(1, 7), 1]], cork: { seq: 1, entryCount: 2 } },
      { updates: [[3, at(2), 1], [4, zeroLocation, 1]], snapshotSeqs: [], cork: { seq: 2, entryCount: 0 } },
      { tlogs: [{ seq: 1, id: "tlog_a", closed: true, stored: true }], scoNumberReservedEnd: 65 },
    ]);
    expect(store.lookup(3)?.scoNumber).toBe(2); // the same page in both batches: the later value
    expect(store.lookup(4)).toBeUndefined(); // trimmed by the later batch
    expect(store.tlogRecords()).toEqual([{ seq: 1, id: "tlog_a", closed: true, stored: true }, { seq: 2, id: "tlog_b", closed: false, stored: false }]);
    expect(store.getCork()).toEqual({ seq: 2, entryCount: 0 });
    expect(store.getScoNumberReservedEnd()).toBe(65);
    await store.close();
  });

  it("answers lookups as of a snapshot after overwrites and trims", async () => {
    const { store } = await tempStore();
    // Snapshots end at TLogs 2 and 4. Address 7: v1 (TLog 1), v2 (TLog 2), v3 (TLog 3), trimmed (TLog 5),
    // v6 (TLog 6). Address 8: written first in TLog 3.
    const snapshotSeqs = [2, 4];
    await store.commit({ updates: [[7, at(1), 1], [7, at(2), 2]], snapshotSeqs });
    await store.commit({ updates: [[7, at(3), 3], [8, at(4), 3]], snapshotSeqs });
    await store.commit({ updates: [[7, zeroLocation, 5]], snapshotSeqs });
    expect(store.lookup(7)).toBeUndefined();
    expect(store.lookupAsOf(7, 2)?.scoNumber).toBe(2);
    expect(store.lookupAsOf(7, 4)?.scoNumber).toBe(3);
    expect(store.lookupAsOf(8, 2)).toBeUndefined();
    expect(store.lookupAsOf(8, 4)?.scoNumber).toBe(4);
    await store.commit({ updates: [[7, at(6), 6]], snapshotSeqs });
    expect(store.lookup(7)?.scoNumber).toBe(6);
    expect(store.lookupAsOf(7, 2)?.scoNumber).toBe(2);
    expect(store.lookupAsOf(7, 4)?.scoNumber).toBe(3);
    expect([...store.everMappedInRange(0, 100)].sort()).toEqual([7, 7, 7, 8]);
    await store.close();
  });
});
