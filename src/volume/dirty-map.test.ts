// DirtyMap: the uncommitted map layer; its prefix commit and drop keep the newest update per address.

import { describe, expect, it } from "vitest";
import { DirtyMap } from "./dirty-map.js";
import { zeroLocation, type ClusterLocation } from "./metadata-store.js";

const at = (scoNumber: number, offsetClusters: number, dataCrc: number, cloneId = 0, scoVersion = 0): ClusterLocation => ({ cloneId, scoNumber, scoVersion, offsetClusters, dataCrc });

describe("DirtyMap", () => {
  it("returns the newest update, zeroLocation for an unmapped address, undefined when clean", () => {
    const map = new DirtyMap();
    map.set(7, at(1, 0, 11, 2, 3), 1, 0);
    map.set(7, at(1, 1, 12), 1, 1);
    map.set(8, zeroLocation, 1, 2);
    expect(map.get(7)).toEqual(at(1, 1, 12));
    expect(map.get(8)).toBe(zeroLocation);
    expect(map.get(9)).toBeUndefined();
    expect(map.size).toBe(2);
    expect([...map.mappedAddressesInRange(0, 100)]).toEqual([7]);
    map.set(9, at(4, 2, 5, 2, 3), 2, 0);
    expect(map.get(9)).toEqual(at(4, 2, 5, 2, 3));
  });

  it("commits a covered prefix and keeps newer updates of the same addresses", () => {
    const map = new DirtyMap();
    map.set(1, at(1, 0, 1), 1, 0);
    map.set(2, at(1, 1, 2), 1, 1);
    map.set(1, at(1, 2, 3), 2, 0);
    const count = map.coveredCount({ seq: 2, entryCount: 0 });
    expect(count).toBe(2);
    const copied: Array<[number, ClusterLocation]> = [];
    for (const [address, location] of map.updates(count)) copied.push([address, { ...location }]);
    expect(copied).toEqual([[1, at(1, 0, 1)], [2, at(1, 1, 2)]]);
    map.drop(count);
    expect(map.get(2)).toBeUndefined(); // committed: the metadata store has it now
    expect(map.get(1)).toEqual(at(1, 2, 3)); // newer than the commit
    expect(map.size).toBe(1);
    expect(map.coveredCount({ seq: 3, entryCount: 0 })).toBe(1);
  });

  it("grows and shrinks over many updates without losing any", () => {
    const map = new DirtyMap();
    let seq = 1;
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 10_000; i++) map.set(i % 3000, at(round + 1, i % 1024, i), seq, i);
      seq++;
      expect(map.size).toBe(3000);
      expect(map.get(2999)).toEqual(at(round + 1, 8999 % 1024, 8999));
      const count = map.coveredCount({ seq, entryCount: 0 });
      expect(count).toBe(10_000);
      map.drop(count);
      expect(map.size).toBe(0);
    }
  });

  it("refuses updates out of TLog order", () => {
    const map = new DirtyMap();
    map.set(1, at(1, 0, 1), 2, 5);
    expect(() => map.set(2, at(1, 1, 1), 2, 4)).toThrow(/out of TLog order/);
    expect(() => map.set(2, at(1, 1, 1), 1, 9)).toThrow(/out of TLog order/);
  });
});
