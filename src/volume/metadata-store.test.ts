// The map page's golden vector (docs/formats/volume-metadata.md), the conversion of the per-cluster map
// of format 1, slots of a page kept apart, and lookups as of a snapshot through the history database.

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
    await store.commit({ updates: [[66, { cloneId: 0, scoNumber: 2, scoVersion: 0, offsetClusters: 7, dataCrc: 0xaabbccdd }, 4], [64, { cloneId: 0, scoNumber: 2, scoVersion: 0, offsetClusters: 6, dataCrc: 0x01020304 }, 4]] });
    await store.close();
    const root = open({ path: dir, maxDbs: 5, compression: false });
    const pages = root.openDB<Buffer, Buffer>({ name: "pages", keyEncoding: "binary", encoding: "binary" });
    const entries = [...pages.getRange({})].map(({ key, value }) => [Buffer.from(key).toString("hex"), Buffer.from(value).toString("hex")]);
    expect(entries).toEqual([
      ["0000000000000000", "2000000000000000" + "01000000000000007856341203000000"],
      ["0000000000000001", "0500000000000000" + "0200000006000000040302010400000002000000070000" + "00ddccbbaa04000000"],
    ]);
    const meta = root.openDB<string, string>({ name: "meta", encoding: "string" });
    expect(meta.get("mapFormat")).toBe("2");
    await root.close();
  });

  it("converts a map of format 1 (one key per cluster, 12- and 16-byte values) at open", async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-metadata-"));
    dirs.push(dir);
    const root = open({ path: dir, maxDbs: 5, compression: false });
    const map = root.openDB<Buffer, Buffer>({ name: "map", keyEncoding: "binary", encoding: "binary" });
    const key = (address: number): Buffer => Buffer.from(address.toString(16).padStart(16, "0"), "hex");
    await map.put(key(5), Buffer.from("01000000000000007856341203000000", "hex"));
    await map.put(key(64), Buffer.from("020000000600000004030201", "hex")); // before snapshots: seq 0
    await map.put(key(2 ** 33 + 3), Buffer.from("03000000010000000000000009000000", "hex"));
    await root.close();
    const store = MetadataStore.open(dir);
    expect(store.lookup(5)).toEqual({ cloneId: 0, scoNumber: 1, scoVersion: 0, offsetClusters: 0, dataCrc: 0x12345678 });
    expect(store.lookup(64)).toEqual({ cloneId: 0, scoNumber: 2, scoVersion: 0, offsetClusters: 6, dataCrc: 0x01020304 });
    expect(store.lookupAsOf(64, 0)?.scoNumber).toBe(2);
    expect(store.lookup(2 ** 33 + 3)?.scoNumber).toBe(3);
    expect(store.lookupAsOf(2 ** 33 + 3, 8)).toBeUndefined();
    expect(store.lookup(6)).toBeUndefined();
    expect([...store.writtenClustersInRange(0, 2 ** 34)]).toEqual([5, 64, 2 ** 33 + 3]);
    expect(store.committedClusterCount()).toBe(3);
    await store.close();
    const again = open({ path: dir, maxDbs: 5, compression: false });
    expect([...again.openDB<Buffer, Buffer>({ name: "map", keyEncoding: "binary", encoding: "binary" }).getRange({})]).toEqual([]);
    await again.close();
    const reopened = MetadataStore.open(dir);
    expect(reopened.lookup(5)?.dataCrc).toBe(0x12345678);
    await reopened.close();
  });

  it("keeps every slot of a page apart: writes, trims, explicit zeros and ranges across page edges", async () => {
    const { store } = await tempStore();
    const reference = new Map<number, ClusterLocation>();
    let seed = 7;
    const random = (max: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % max;
    };
    for (let round = 1; round <= 40; round++) {
      const updates: Array<[number, ClusterLocation, number]> = [];
      for (let i = 0; i < 50; i++) {
        const address = random(300);
        const location = random(5) === 0 ? zeroLocation : at(round * 100 + i, random(2 ** 31));
        updates.push([address, location, round]);
        if (location.scoNumber === 0) reference.delete(address);
        else reference.set(address, location);
      }
      await store.commit({ updates });
      for (let address = 0; address < 300; address++) expect(store.lookup(address), `round ${round} address ${address}`).toEqual(reference.get(address));
      const first = random(300);
      const end = first + random(150);
      expect([...store.writtenClustersInRange(first, end)]).toEqual([...reference.keys()].filter((a) => a >= first && a < end).sort((a, b) => a - b));
    }
    expect(store.committedClusterCount()).toBe(reference.size);
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
