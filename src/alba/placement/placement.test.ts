// Placement unit tests (seeded): at most x fragments per node, distinct ASDs, weights by free space,
// least-loaded node first, the first satisfiable policy wins with holes at the end, no satisfiable
// policy is a clear error, rack labels spread fragments, placeMore respects what is already placed.
import { describe, expect, test } from "vitest";
import { isOvsError } from "../../base/index.js";
import { placeableCount, placeChunk, placeMore, seededRandom, validatePolicy, type PlacementCandidate, type Policy } from "./placement.js";

const singleNode: Policy[] = [{ k: 4, m: 2, c: 5, x: 6 }, { k: 2, m: 2, c: 3, x: 6 }];
const multiNode: Policy[] = [{ k: 5, m: 4, c: 8, x: 3 }, { k: 2, m: 2, c: 3, x: 4 }];
const GiB = 2 ** 30;

function asds(nodeCount: number, perNode: number, freeBytes = 100 * GiB): PlacementCandidate[] {
  const result: PlacementCandidate[] = [];
  for (let node = 0; node < nodeCount; node++) {
    for (let index = 0; index < perNode; index++) {
      result.push({ asdId: `n${node}-a${index}`, nodeId: `n${node}`, freeBytes, usable: true });
    }
  }
  return result;
}

function nodeCounts(asdIds: ReadonlyArray<string | undefined>, candidates: readonly PlacementCandidate[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const asdId of asdIds) {
    if (asdId === undefined) continue;
    const nodeId = candidates.find((candidate) => candidate.asdId === asdId)!.nodeId;
    counts.set(nodeId, (counts.get(nodeId) ?? 0) + 1);
  }
  return counts;
}

describe("placement", () => {
  test("single node, 6 ASDs: policy (4,2,5,6), all six distinct ASDs", () => {
    const candidates = asds(1, 6);
    for (let seed = 1; seed <= 50; seed++) {
      const result = placeChunk(singleNode, candidates, seededRandom(seed));
      expect(result.policyIndex).toBe(0);
      expect(result.placedCount).toBe(6);
      expect(new Set(result.asdIds).size).toBe(6);
    }
  });

  test("at most x fragments per node, spread over the least-loaded nodes", () => {
    const candidates = asds(4, 4);
    for (let seed = 1; seed <= 50; seed++) {
      const result = placeChunk(multiNode, candidates, seededRandom(seed));
      expect(result.policyIndex).toBe(0);
      expect(result.placedCount).toBe(9);
      const counts = nodeCounts(result.asdIds, candidates);
      expect(Math.max(...counts.values())).toBeLessThanOrEqual(3);
      // 9 over 4 nodes, least-loaded first: 3,2,2,2
      expect([...counts.values()].sort()).toEqual([2, 2, 2, 3]);
    }
  });

  test("is deterministic for a seed", () => {
    const candidates = asds(3, 4);
    const a = placeChunk(multiNode, candidates, seededRandom(7));
    const b = placeChunk(multiNode, candidates, seededRandom(7));
    expect(a).toEqual(b);
  });

  test("weights ASDs by free space", () => {
    const candidates: PlacementCandidate[] = [
      { asdId: "big", nodeId: "n0", freeBytes: 90 * GiB, usable: true },
      { asdId: "small", nodeId: "n0", freeBytes: 10 * GiB, usable: true },
    ];
    const policy: Policy[] = [{ k: 1, m: 0, c: 1, x: 1 }];
    const random = seededRandom(3);
    let bigCount = 0;
    const rounds = 4000;
    for (let round = 0; round < rounds; round++) if (placeChunk(policy, candidates, random).asdIds[0] === "big") bigCount++;
    expect(bigCount / rounds).toBeGreaterThan(0.86);
    expect(bigCount / rounds).toBeLessThan(0.94);
  });

  test("falls back to the next policy and leaves holes at the highest indices", () => {
    const candidates = asds(1, 6);
    candidates[0]!.usable = false;
    candidates[3]!.usable = false;
    // 4 usable: (4,2,5,6) needs 5 → fallback (2,2,3,6) places all 4.
    const result = placeChunk(singleNode, candidates, seededRandom(1));
    expect(result.policyIndex).toBe(1);
    expect(result.asdIds.length).toBe(4);
    expect(result.placedCount).toBe(4);
    candidates[1]!.usable = false;
    // 5 usable: first policy satisfiable with one hole (fragment 5).
    candidates[0]!.usable = true;
    candidates[3]!.usable = true;
    const withHole = placeChunk(singleNode, candidates, seededRandom(2));
    expect(withHole.policyIndex).toBe(0);
    expect(withHole.placedCount).toBe(5);
    expect(withHole.asdIds[5]).toBeUndefined();
    expect(withHole.asdIds.slice(0, 5).every((asdId) => asdId !== undefined && asdId !== "n0-a1")).toBe(true);
  });

  test("no satisfiable policy is UNAVAILABLE with reason noSatisfiablePolicy", () => {
    const candidates = asds(1, 6);
    for (const index of [0, 1, 2, 3]) candidates[index]!.usable = false;
    try {
      placeChunk(singleNode, candidates, seededRandom(1));
      expect.unreachable("placement should fail");
    } catch (error) {
      expect(isOvsError(error, "UNAVAILABLE")).toBe(true);
      expect((error as { details: { reason: string } }).details.reason).toBe("noSatisfiablePolicy");
      expect((error as Error).message).toMatch(/read-only/);
    }
  });

  test("x per node limits what is placeable", () => {
    expect(placeableCount({ k: 5, m: 4, c: 8, x: 3 }, asds(2, 6))).toBe(6);
    expect(() => placeChunk(multiNode.slice(0, 1), asds(2, 6), seededRandom(1))).toThrow(/No policy/);
    // The fallback (2,2,3,4) on 2 nodes of 6: 4 fragments, 2 per node (least-loaded first).
    const result = placeChunk(multiNode, asds(2, 6), seededRandom(1));
    expect(result.policyIndex).toBe(1);
    expect([...nodeCounts(result.asdIds, asds(2, 6)).values()]).toEqual([2, 2]);
  });

  test("rack labels spread fragments over racks before nodes", () => {
    const candidates: PlacementCandidate[] = [];
    for (let node = 0; node < 4; node++) {
      for (let index = 0; index < 3; index++) {
        candidates.push({ asdId: `n${node}-${index}`, nodeId: `n${node}`, rack: node < 3 ? "r0" : "r1", freeBytes: GiB, usable: true });
      }
    }
    const result = placeChunk([{ k: 2, m: 0, c: 2, x: 2 }], candidates, seededRandom(5));
    const racks = result.asdIds.map((asdId) => candidates.find((candidate) => candidate.asdId === asdId)!.rack);
    expect(new Set(racks).size).toBe(2);
  });

  test("placeMore avoids used ASDs and full nodes", () => {
    const candidates = asds(3, 2);
    const used = new Set(["n0-a0", "n0-a1", "n1-a0"]);
    const load = new Map([["n0", 2], ["n1", 1]]);
    const more = placeMore({ k: 2, m: 2, c: 3, x: 2 }, candidates, 5, load, used, seededRandom(9));
    expect(more.sort()).toEqual(["n1-a1", "n2-a0", "n2-a1"]);
  });

  test("validates policies", () => {
    expect(() => validatePolicy({ k: 4, m: 2, c: 3, x: 1 })).toThrow(/invalid/);
    expect(() => validatePolicy({ k: 0, m: 2, c: 1, x: 1 })).toThrow(/invalid/);
    expect(() => validatePolicy({ k: 2, m: 1, c: 4, x: 1 })).toThrow(/invalid/);
    validatePolicy({ k: 4, m: 2, c: 5, x: 6 });
  });
});
