// Placement: which ASD stores which fragment of a chunk, and which policy of a preset applies. Pure
// functions (no I/O, no clock); randomness is passed in as a seeded generator so a run replays.
// Imported by src/alba/client/ and (later) maintenance, through src/alba/placement/index.ts.
//
// The rules (the original's src/model/policy.ml and src/choose.ml, plus optional rack/site labels):
// - A policy (k, m, c, x) is satisfiable when c ≤ Σ over nodes of min(x, usable ASDs on the node). The
//   first satisfiable policy of the ordered list wins; with none, the backend is read-only for writes
//   (OvsError UNAVAILABLE, details.reason "noSatisfiablePolicy").
// - The winning policy writes min(that sum, k+m) fragments; the rest are holes (the highest fragment
//   indices, so data fragments are placed first and partial reads stay possible), for maintenance to
//   fill.
// - Each fragment goes to the least-loaded failure domain so far, site first, then rack, then node (a
//   domain's load is the fragments already placed in it), chosen at random among the equally loaded ones,
//   weighted by their free bytes; then to an unused ASD of that node, weighted by free bytes. At most x
//   fragments per node; never two fragments of one chunk on one ASD.
// Invariants (asserted): every placed ASD is usable and distinct; per node ≤ x; placed count ≥ c.
// Limits: the candidate list is the ASD registry (hundreds); the work is O(fragments × ASDs).

import { assert, OvsError, type RandomSource } from "../../base/index.js";

export interface Policy {
  /** Data fragments. */
  k: number;
  /** Parity fragments. */
  m: number;
  /** Fewest fragments that must be stored for an upload to succeed (k ≤ c ≤ k+m). */
  c: number;
  /** Most fragments of one chunk on one node (the failure domain). */
  x: number;
}

export interface PlacementCandidate {
  asdId: string;
  nodeId: string;
  rack?: string;
  site?: string;
  /** Free bytes as last reported; the weight (at least 1). */
  freeBytes: number;
  /** False when the ASD must not get writes (down, full, decommissioned). */
  usable: boolean;
}

export interface PlacementResult {
  policyIndex: number;
  policy: Policy;
  /** k+m slots, fragment index order: the ASD id, or undefined for a hole. */
  asdIds: Array<string | undefined>;
  /** How many slots have an ASD (≥ c). */
  placedCount: number;
}

// The seeded generator lives in base/ (tests of every layer use it); re-exported for placement's callers.
export { seededRandom, type RandomSource } from "../../base/index.js";

/** Throws INVALID_ARGUMENT unless the policy is well formed: k ≥ 1, m ≥ 0, k ≤ c ≤ k+m, x ≥ 1. */
export function validatePolicy(policy: Policy): void {
  const { k, m, c, x } = policy;
  const ok = [k, m, c, x].every((value) => Number.isInteger(value)) && k >= 1 && m >= 0 && k <= c && c <= k + m && x >= 1;
  if (!ok) {
    throw new OvsError("INVALID_ARGUMENT", `Policy (${k}, ${m}, ${c}, ${x}) is invalid: need k ≥ 1, m ≥ 0, k ≤ c ≤ k+m and x ≥ 1.`, { policy });
  }
}

/** How many fragments of a chunk the usable candidates can take under `policy`: Σ nodes min(x, usable ASDs). */
export function placeableCount(policy: Policy, candidates: readonly PlacementCandidate[], excluded: ReadonlySet<string> = new Set()): number {
  const perNode = new Map<string, number>();
  for (const candidate of candidates) {
    if (!candidate.usable || excluded.has(candidate.asdId)) continue;
    perNode.set(candidate.nodeId, (perNode.get(candidate.nodeId) ?? 0) + 1);
  }
  let total = 0;
  for (const count of perNode.values()) total += Math.min(policy.x, count);
  return total;
}

/** The index of the first satisfiable policy, or -1. */
export function chooseFirstSatisfiable(policies: readonly Policy[], candidates: readonly PlacementCandidate[]): number {
  return policies.findIndex((policy) => placeableCount(policy, candidates) >= policy.c);
}

/**
 * Places the k+m fragments of one chunk under the first satisfiable policy. Throws UNAVAILABLE
 * (reason noSatisfiablePolicy) when no policy can be met: the backend then refuses writes.
 */
export function placeChunk(policies: readonly Policy[], candidates: readonly PlacementCandidate[], random: RandomSource): PlacementResult {
  assert(policies.length > 0, "a preset has at least one policy");
  const policyIndex = chooseFirstSatisfiable(policies, candidates);
  if (policyIndex < 0) {
    const usableCount = candidates.filter((candidate) => candidate.usable).length;
    const nodeCount = new Set(candidates.filter((candidate) => candidate.usable).map((candidate) => candidate.nodeId)).size;
    throw new OvsError(
      "UNAVAILABLE",
      `No policy of the preset can be satisfied with ${usableCount} usable ASDs on ${nodeCount} nodes ` +
        `(policies ${policies.map((p) => `(${p.k},${p.m},${p.c},${p.x})`).join(", ")}); the backend is read-only until ASDs return or are added.`,
      { reason: "noSatisfiablePolicy", usableAsdCount: usableCount, nodeCount },
    );
  }
  const policy = policies[policyIndex]!;
  const count = Math.min(placeableCount(policy, candidates), policy.k + policy.m);
  const chosen = placeFragments(policy, candidates, count, new Map(), new Set(), random);
  const asdIds: Array<string | undefined> = new Array<string | undefined>(policy.k + policy.m).fill(undefined);
  chosen.forEach((asdId, index) => (asdIds[index] = asdId));
  const result = { policyIndex, policy, asdIds, placedCount: chosen.length };
  checkPlacement(result.asdIds, candidates, policy, new Map());
  assert(result.placedCount >= policy.c, "a placement stores at least c fragments");
  return result;
}

/**
 * Re-places `count` more fragments of a chunk under `policy` after some writes failed: `used` are the
 * ASDs that already hold (or failed) a fragment of this chunk, `nodeLoad` the fragments per node already
 * stored. Returns up to `count` ASD ids (fewer when the candidates run out).
 */
export function placeMore(
  policy: Policy,
  candidates: readonly PlacementCandidate[],
  count: number,
  nodeLoad: ReadonlyMap<string, number>,
  used: ReadonlySet<string>,
  random: RandomSource,
): string[] {
  return placeFragments(policy, candidates, count, new Map(nodeLoad), used, random);
}

function placeFragments(
  policy: Policy,
  candidates: readonly PlacementCandidate[],
  count: number,
  nodeLoad: Map<string, number>,
  used: ReadonlySet<string>,
  random: RandomSource,
): string[] {
  const taken = new Set(used);
  const chosen: string[] = [];
  const siteLoad = new Map<string, number>();
  const rackLoad = new Map<string, number>();
  const byAsd = new Map(candidates.map((candidate) => [candidate.asdId, candidate]));
  for (const [nodeId, load] of nodeLoad) {
    const sample = candidates.find((candidate) => candidate.nodeId === nodeId);
    if (sample === undefined) continue;
    bump(siteLoad, sample.site ?? "", load);
    bump(rackLoad, rackKey(sample), load);
  }
  while (chosen.length < count) {
    const open = candidates.filter(
      (candidate) => candidate.usable && !taken.has(candidate.asdId) && (nodeLoad.get(candidate.nodeId) ?? 0) < policy.x,
    );
    if (open.length === 0) break;
    // Narrow by least-loaded site, then rack, then node.
    const bySite = leastLoaded(open, (candidate) => siteLoad.get(candidate.site ?? "") ?? 0);
    const byRack = leastLoaded(bySite, (candidate) => rackLoad.get(rackKey(candidate)) ?? 0);
    const byNode = leastLoaded(byRack, (candidate) => nodeLoad.get(candidate.nodeId) ?? 0);
    const nodeWeights = new Map<string, number>();
    for (const candidate of byNode) nodeWeights.set(candidate.nodeId, (nodeWeights.get(candidate.nodeId) ?? 0) + weightOf(candidate));
    const nodeId = weightedPick([...nodeWeights.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)), random);
    const inNode = byNode.filter((candidate) => candidate.nodeId === nodeId).sort((a, b) => (a.asdId < b.asdId ? -1 : 1));
    const asdId = weightedPick(inNode.map((candidate) => [candidate.asdId, weightOf(candidate)] as [string, number]), random);
    const candidate = byAsd.get(asdId)!;
    taken.add(asdId);
    chosen.push(asdId);
    bump(nodeLoad, candidate.nodeId, 1);
    bump(siteLoad, candidate.site ?? "", 1);
    bump(rackLoad, rackKey(candidate), 1);
  }
  return chosen;
}

/** Asserts the invariants of a placement: usable, distinct ASDs, at most x per node (counting `nodeLoad`). */
export function checkPlacement(
  asdIds: ReadonlyArray<string | undefined>,
  candidates: readonly PlacementCandidate[],
  policy: Policy,
  nodeLoad: ReadonlyMap<string, number>,
): void {
  const byAsd = new Map(candidates.map((candidate) => [candidate.asdId, candidate]));
  const seen = new Set<string>();
  const perNode = new Map(nodeLoad);
  for (const asdId of asdIds) {
    if (asdId === undefined) continue;
    const candidate = byAsd.get(asdId);
    assert(candidate !== undefined && candidate.usable, "placed on a usable candidate");
    assert(!seen.has(asdId), "one fragment per ASD");
    seen.add(asdId);
    bump(perNode, candidate.nodeId, 1);
    assert((perNode.get(candidate.nodeId) ?? 0) <= policy.x, "at most x fragments per node");
  }
}

function rackKey(candidate: PlacementCandidate): string {
  return `${candidate.site ?? ""}\u0000${candidate.rack ?? ""}`;
}

function weightOf(candidate: PlacementCandidate): number {
  return Math.max(1, candidate.freeBytes);
}

function bump(map: Map<string, number>, key: string, by: number): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

function leastLoaded<T>(items: readonly T[], load: (item: T) => number): T[] {
  let least = Infinity;
  for (const item of items) least = Math.min(least, load(item));
  return items.filter((item) => load(item) === least);
}

function weightedPick(entries: ReadonlyArray<[string, number]>, random: RandomSource): string {
  assert(entries.length > 0, "something to pick from");
  let total = 0;
  for (const [, weight] of entries) total += weight;
  let target = random() * total;
  for (const [key, weight] of entries) {
    if (target < weight) return key;
    target -= weight;
  }
  return entries[entries.length - 1]![0];
}
