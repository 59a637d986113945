// DirtyMap: the uncommitted map layer; its prefix commit and drop keep the newest update per address.

import { describe, expect, it } from "vitest";
import { seededRandom } from "../base/index.js";
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
    const copied: Array<[number, ClusterLocation, number]> = [];
    for (const [address, location, tlogSeq] of map.updates(count)) copied.push([address, { ...location }, tlogSeq]);
    expect(copied).toEqual([[1, at(1, 0, 1), 1], [2, at(1, 1, 2), 1]]);
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

  it("answers like a reference model through partial commits and sweeps of stale entries", () => {
    // A seeded mix of sequential runs and random addresses; prefixes of various lengths are committed
    // (the address index deletes and regrows many times over).
    const next = seededRandom(12345);
    const map = new DirtyMap();
    const log: Array<{ address: number; location: ClusterLocation }> = []; // uncommitted, in order
    let seq = 1;
    let entry = 0;
    let cursor = 0;
    for (let step = 0; step < 400; step++) {
      const runLength = 1 + Math.floor(next() * 2000);
      const random = next() < 0.3;
      for (let i = 0; i < runLength; i++) {
        const address = random ? Math.floor(next() * 50_000) : cursor++ % 200_000;
        const location = next() < 0.05 ? zeroLocation : at(1 + step, i, (step * 7919 + i) >>> 0);
        if (location === zeroLocation) map.set(address, location, seq, entry++);
        else map.setWritten(address, location.scoNumber, location.offsetClusters, location.dataCrc, seq, entry++);
        log.push({ address, location });
      }
      if (next() < 0.3) {
        seq++;
        entry = 0;
      }
      if (next() < 0.5) {
        const count = Math.floor(next() * (log.length + 1));
        map.drop(count);
        log.splice(0, count);
      }
      const newest = new Map<number, ClusterLocation>();
      for (const { address, location } of log) newest.set(address, location);
      if (map.size !== newest.size) expect.fail(`step ${step}: size ${map.size}, expected ${newest.size}`);
      for (let probe = 0; probe < 200; probe++) {
        const address = Math.floor(next() * 200_000);
        const got = map.get(address);
        const want = newest.get(address);
        if (JSON.stringify(got) !== JSON.stringify(want)) expect.fail(`step ${step}: get(${address}) = ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
      }
      if (step % 50 === 0) {
        const mapped = [...newest].filter(([address, location]) => address < 1000 && location.scoNumber !== 0).map(([address]) => address);
        expect([...map.mappedAddressesInRange(0, 1000)].sort((x, y) => x - y)).toEqual(mapped.sort((x, y) => x - y));
      }
    }
  });
});
