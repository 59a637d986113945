// Unit tests of the pure maintenance planners (seeded, so a failure replays from the printed seed):
// assessment and repair order, repair targets under the placement rules, rebalance classes and moves,
// garbage decisions and the orphan tracker, the failure detector, and the throttle.
import { describe, expect, test } from "vitest";
import type { Manifest, ManifestFragment } from "../manager/index.js";
import { seededRandom, type PlacementCandidate, type Policy } from "../placement/index.js";
import { gcDecision, OrphanTracker } from "./garbage.js";
import { assessManifest, fragmentId, orderRepairs, planChunkMove, planChunkTargets, rebalanceClasses, upgradePolicyIndex, type AsdFill, type AsdHealth } from "./planner.js";
import { ReachabilityTracker } from "./reachability.js";
import { Throttle } from "./throttle.js";

const asd = (index: number) => index.toString(16).padStart(32, "0");
const fragment = (index: number, version = 0): ManifestFragment => ({ asdId: asd(index), version, checksumValue: 0, packedSizeBytes: 100 });

function manifestOf(policy: Policy, chunks: Array<Array<ManifestFragment | undefined>>): Manifest {
  return {
    name: "obj", objectId: "0".repeat(32), sizeBytes: chunks.length * 10, objectCrc32c: 0, presetName: "default", presetVersion: 1, policy, policyIndex: 0,
    fragmentSizeMaxBytes: 1 << 20, compression: "none", encryption: "none", fragmentChecksum: "crc32c", timestampMs: 0,
    chunks: chunks.map((fragments) => ({ chunkSizeBytes: 10, fragments })),
  };
}

function candidates(nodeOf: (index: number) => string, count: number, usable: (index: number) => boolean = () => true): PlacementCandidate[] {
  return Array.from({ length: count }, (_unused, index) => ({ asdId: asd(index), nodeId: nodeOf(index), freeBytes: 1000 + index * 100, usable: usable(index) }));
}

describe("assessManifest and orderRepairs", () => {
  test("classifies holes, failed, decommissioned, unknown, bad and waiting fragments; safety is the weakest chunk's", () => {
    const policy = { k: 4, m: 2, c: 5, x: 6 };
    const health: Record<string, AsdHealth> = { [asd(0)]: "ok", [asd(1)]: "failed", [asd(2)]: "decommissioned", [asd(3)]: "unreachable", [asd(4)]: "ok", [asd(5)]: "ok" };
    const manifest = manifestOf(policy, [
      [fragment(0), fragment(1), fragment(2), fragment(3), fragment(4), undefined],
      [fragment(0), fragment(4), fragment(5), fragment(9), fragment(3, 2), fragment(2)],
    ]);
    const bad = new Set([fragmentId(1, 2, fragment(5))]);
    const assessment = assessManifest(manifest, (asdId) => health[asdId] ?? "unknown", bad);
    expect(assessment.chunks[0]).toEqual({ chunkIndex: 0, healthyCount: 2, replace: [1, 2, 5], reasons: ["failed", "decommissioned", "hole"], waiting: [3] });
    expect(assessment.chunks[1]).toEqual({ chunkIndex: 1, healthyCount: 2, replace: [2, 3, 5], reasons: ["bad", "unknown", "decommissioned"], waiting: [4] });
    expect(assessment.safety).toBe(-2);
    expect(assessment.replaceCount).toBe(6);
    const healthy = assessManifest(manifestOf(policy, [[0, 1, 2, 3, 4, 5].map((index) => fragment(index))]), () => "ok");
    expect(healthy).toMatchObject({ safety: 2, replaceCount: 0 });
  });

  test("orders repairs least safe first, then most to rebuild, then by name; at most a batch", () => {
    const ordered = orderRepairs(
      [
        { namespace: "a", name: "safe", safety: 1, replaceCount: 1 },
        { namespace: "a", name: "fine", safety: 2, replaceCount: 0 },
        { namespace: "b", name: "danger", safety: -1, replaceCount: 3 },
        { namespace: "a", name: "low-2", safety: 0, replaceCount: 2 },
        { namespace: "a", name: "low-1", safety: 0, replaceCount: 1 },
        { namespace: "a", name: "low-1b", safety: 0, replaceCount: 1 },
      ],
      4,
    );
    expect(ordered.map((item) => item.name)).toEqual(["danger", "low-2", "low-1", "low-1b"]);
  });
});

describe("planChunkTargets", () => {
  test("respects x per node, never reuses a kept ASD, and only picks usable ones (many seeds)", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const random = seededRandom(seed);
      const policy = { k: 5, m: 4, c: 8, x: 3 };
      // 4 nodes × 4 ASDs; ASDs 0..8 hold the chunk, 2 and 7 are failed (not usable), 13 is full.
      const list = candidates((index) => `node-${Math.floor(index / 4)}`, 16, (index) => index !== 2 && index !== 7 && index !== 13);
      const fragments = [0, 1, 2, 3, 4, 5, 6, 7, 8].map((index) => fragment(index));
      const targets = planChunkTargets(policy, fragments, [2, 7], list, random);
      expect(targets.size, `seed ${seed}`).toBe(2);
      const kept = new Set([0, 1, 3, 4, 5, 6, 8].map(asd));
      const perNode = new Map<string, number>();
      for (const index of [0, 1, 3, 4, 5, 6, 8]) perNode.set(`node-${Math.floor(index / 4)}`, (perNode.get(`node-${Math.floor(index / 4)}`) ?? 0) + 1);
      for (const asdId of targets.values()) {
        const candidate = list.find((item) => item.asdId === asdId)!;
        expect(candidate.usable, `seed ${seed}`).toBe(true);
        expect(kept.has(asdId), `seed ${seed}`).toBe(false);
        perNode.set(candidate.nodeId, (perNode.get(candidate.nodeId) ?? 0) + 1);
      }
      for (const count of perNode.values()) expect(count, `seed ${seed}`).toBeLessThanOrEqual(3);
    }
  });

  test("a bad fragment on a healthy ASD of a full chunk may go back to that ASD; a failed one cannot", () => {
    const policy = { k: 4, m: 2, c: 5, x: 6 };
    const fragments = [0, 1, 2, 3, 4, 5].map((index) => fragment(index));
    const all = candidates(() => "node-1", 6);
    expect([...planChunkTargets(policy, fragments, [3], all, seededRandom(1)).entries()]).toEqual([[3, asd(3)]]);
    const failed = candidates(() => "node-1", 6, (index) => index !== 3);
    expect(planChunkTargets(policy, fragments, [3], failed, seededRandom(1)).size).toBe(0);
  });

  test("places data fragments first when there are fewer targets than holes", () => {
    const policy = { k: 2, m: 2, c: 3, x: 1 };
    const fragments = [undefined, fragment(0), undefined, undefined];
    const targets = planChunkTargets(policy, fragments, [0, 2, 3], candidates((index) => `node-${index}`, 3), seededRandom(5));
    expect([...targets.keys()]).toEqual([0, 2]);
  });
});

describe("upgradePolicyIndex", () => {
  test("picks the best policy the usable ASDs hold without holes, never a worse one", () => {
    const policies = [{ k: 4, m: 2, c: 5, x: 6 }, { k: 2, m: 2, c: 3, x: 6 }];
    const fallback = { ...manifestOf(policies[1]!, [[0, 1, 2, 3].map((index) => fragment(index))]), policyIndex: 1 };
    expect(upgradePolicyIndex(fallback, policies, candidates(() => "node-1", 6))).toBe(0);
    expect(upgradePolicyIndex(fallback, policies, candidates(() => "node-1", 6, (index) => index !== 5))).toBeUndefined(); // 5 would leave a hole
    expect(upgradePolicyIndex({ ...fallback, policyIndex: 0 }, policies, candidates(() => "node-1", 6))).toBeUndefined();
    // x per node counts: 3 nodes × 2 ASDs with x = 1 hold only 3 fragments.
    expect(upgradePolicyIndex(fallback, [{ k: 4, m: 2, c: 5, x: 1 }, policies[1]!], candidates((index) => `node-${index % 3}`, 6))).toBeUndefined();
  });
});

describe("rebalance", () => {
  const fills = (used: number[]): AsdFill[] => used.map((usedBytes, index) => ({ asdId: asd(index), nodeId: "node-1", usedBytes, capacityBytes: 100 }));

  test("does nothing while the spread is within the threshold", () => {
    expect(rebalanceClasses(fills([40, 45, 48]), 0.1)).toBeUndefined();
    expect(rebalanceClasses(fills([40]), 0)).toBeUndefined();
  });

  test("classifies ASDs above and below the mean", () => {
    const classes = rebalanceClasses(fills([90, 10, 12, 50]), 0.1)!;
    expect(classes.spread).toBeCloseTo(0.8);
    expect(classes.meanFill).toBeCloseTo(0.405);
    expect([...classes.high]).toEqual([asd(0), asd(3)]);
    expect([...classes.low]).toEqual([asd(1), asd(2)]);
  });

  test("moves a fragment from the fullest ASD to a low one outside the chunk, within x (many seeds)", () => {
    for (let seed = 1; seed <= 100; seed++) {
      const list = fills([90, 10, 12, 50, 30, 11]);
      const byId = new Map(list.map((item) => [item.asdId, item]));
      const classes = rebalanceClasses(list, 0.1)!;
      const policy = { k: 2, m: 1, c: 2, x: 1 };
      // Nodes: ASDs 0,1 on node-a; 2,3 on node-b; 4,5 on node-c. The chunk is on 0, 3, 4.
      const nodes = ["node-a", "node-a", "node-b", "node-b", "node-c", "node-c"];
      const move = planChunkMove(policy, [fragment(0), fragment(3), fragment(4)], classes, byId, candidates((index) => nodes[index]!, 6), seededRandom(seed));
      // From ASD 0 (fullest) to ASD 1 (low, and node-a frees up as the fragment leaves it); 2 and 5 would break x = 1.
      expect(move, `seed ${seed}`).toEqual({ fragmentIndex: 0, fromAsdId: asd(0), toAsdId: asd(1) });
    }
  });
});

describe("garbage", () => {
  test("upload records wait for the grace period unless abandoned; object and strays records go at once", () => {
    const objectId = "a".repeat(32);
    expect(gcDecision({ kind: "upload", objectId, startedAtMs: 1000, state: "uploading" }, 1500, 1000)).toBe("wait");
    expect(gcDecision({ kind: "upload", objectId, startedAtMs: 1000, state: "uploading" }, 2000, 1000)).toBe("collect");
    expect(gcDecision({ kind: "upload", objectId, startedAtMs: 1000, state: "abandoned" }, 1001, 1000)).toBe("collect");
    expect(gcDecision({ kind: "object", objectId, asdIds: [], reason: "deleted", atMs: 0 }, 0, 1000)).toBe("collect");
    expect(gcDecision({ kind: "strays", objectId, fragments: [], atMs: 0 }, 0, 1000)).toBe("collect");
  });

  test("an orphan is due only after being one in every scan for the grace period", () => {
    const tracker = new OrphanTracker(100, 3);
    expect(tracker.update(["a", "b"], 0)).toEqual([]);
    expect(tracker.update(["a", "b", "c"], 50)).toEqual([]);
    expect(tracker.update(["a", "c"], 100)).toEqual(["a"]); // b was referenced meanwhile: forgotten
    expect(tracker.update(["b", "a", "c"], 120)).toEqual(["a"]); // b starts again at 120
    tracker.forget(["a"]);
    expect(tracker.update(["b", "c", "d", "e"], 160)).toEqual(["c"]);
    expect(tracker.droppedCount).toBe(1); // the table holds 3
    expect(tracker.update(["b", "c"], 220)).toEqual(["b", "c"]);
  });
});

describe("ReachabilityTracker", () => {
  test("ok, unreachable, failed after failAfterMs of silence, ok again on an answer", () => {
    const tracker = new ReachabilityTracker(1000);
    const id = asd(1);
    expect(tracker.state(id, 0)).toBe("unreachable"); // never heard of
    tracker.noteLastSeen(id, 500, 1000);
    expect(tracker.state(id, 1000)).toBe("ok");
    tracker.noteFailure(id, 1200, "connection refused");
    expect(tracker.state(id, 1200)).toBe("unreachable");
    expect(tracker.state(id, 1499)).toBe("unreachable");
    expect(tracker.state(id, 1500)).toBe("failed");
    expect(tracker.view(1500)).toEqual([{ asdId: id, state: "failed", lastSeenMs: 500, consecutiveErrorCount: 1, lastError: "connection refused" }]);
    tracker.noteSuccess(id, 1600);
    expect(tracker.state(id, 5000)).toBe("ok");
    // An ASD never seen fails failAfterMs after the tracker started watching it.
    const other = asd(2);
    tracker.noteFailure(other, 2000, "timeout");
    expect(tracker.state(other, 2999)).toBe("unreachable");
    expect(tracker.state(other, 3000)).toBe("failed");
    tracker.retain(new Set([id]));
    expect(tracker.view(3000).map((item) => item.asdId)).toEqual([id]);
  });
});

describe("Throttle", () => {
  test("lets a second of bytes through, then makes the caller wait off the debt", () => {
    const throttle = new Throttle(1000);
    expect(throttle.spend(600, 0)).toBe(0);
    expect(throttle.spend(400, 0)).toBe(0);
    expect(throttle.spend(500, 0)).toBe(500);
    expect(throttle.spend(0, 500)).toBe(0);
    expect(throttle.spend(2000, 3000)).toBe(1000); // the bucket never holds more than a second
  });
});
