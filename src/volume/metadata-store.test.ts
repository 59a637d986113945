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
  it("stores the spec's example map value byte for byte", async () => {
    const { store, dir } = await tempStore();
    await store.commit({ updates: [[5, { cloneId: 0, scoNumber: 1, scoVersion: 0, offsetClusters: 0, dataCrc: 0x12345678 }, 3]] });
    await store.close();
    const root = open({ path: dir, maxDbs: 4, compression: false });
    const map = root.openDB<Buffer, Buffer>({ name: "map", keyEncoding: "binary", encoding: "binary" });
    const entries = [...map.getRange({})].map(({ key, value }) => [Buffer.from(key).toString("hex"), Buffer.from(value).toString("hex")]);
    expect(entries).toEqual([["0000000000000005", "0100000000000000785634120" + "3000000"]]);
    await root.close();
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
