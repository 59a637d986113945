// The maintenance planners, as pure functions (STYLE.md "a pure core, an I/O shell"): they take what the
// agent knows (a manifest, the health of each ASD, known bad fragments, placement candidates, ASD fill
// levels, a seeded random source) and return what to do. agent.ts does the I/O. Imported by agent.ts and
// the tests.
//
// - assessManifest: per chunk, which fragments are healthy and which must be rebuilt elsewhere: holes,
//   fragments on failed, decommissioned or unknown ASDs, and known bad ones. Fragments on an ASD that is
//   only unreachable (not yet failed) are neither healthy nor replaced: they wait for failAfterMs.
//   Safety = min over chunks of (healthy fragments − k); negative means the object is unreadable now.
// - orderRepairs: least safe first (then most fragments to rebuild, then name), at most a batch.
// - planChunkTargets: new ASDs for the fragments to rebuild, by the placement rules (x per node, failure
//   domains, weighted by free space, never two fragments of a chunk on one ASD), counting the fragments
//   kept (the ASD of a replaced fragment may take its new copy, if usable). Fragments that cannot be placed stay as they are (the next pass tries again).
// - upgradePolicyIndex: an object written under a fallback policy (ASDs were down) is rewritten under
//   the best policy of its preset that the usable ASDs can now hold in full (k+m fragments, no holes).
// - rebalanceClasses / planChunkMove: ASDs above and below the mean fill when the spread (fullest −
//   emptiest) passes a threshold; a move takes one fragment of a chunk from a high ASD to a low one that
//   holds no fragment of the chunk, keeping x per node.
// Invariants (asserted): targets are usable, distinct, not holding a kept fragment of the chunk, and keep ≤ x per node.
// Limits: O(fragments × candidates) per chunk; callers bound the number of objects (limits.ts).

import { assert } from "../../base/index.js";
import type { Manifest, ManifestFragment } from "../manager/index.js";
import { placeableCount, placeMore, type PlacementCandidate, type Policy, type RandomSource } from "../placement/index.js";

export type AsdHealth = "ok" | "unreachable" | "failed" | "decommissioned" | "unknown";

/** Identifies one stored fragment: "chunk/fragment/version@asdId". */
export function fragmentId(chunkIndex: number, fragmentIndex: number, fragment: Pick<ManifestFragment, "asdId" | "version">): string {
  return `${chunkIndex}/${fragmentIndex}/${fragment.version}@${fragment.asdId}`;
}

export type ReplaceReason = "hole" | "failed" | "decommissioned" | "unknown" | "bad";

export interface ChunkAssessment {
  chunkIndex: number;
  healthyCount: number;
  /** Fragment indices to rebuild elsewhere, ascending (data fragments first). */
  replace: number[];
  reasons: ReplaceReason[];
  /** Fragment indices on ASDs that are unreachable but not failed yet. */
  waiting: number[];
}

export interface ObjectAssessment {
  /** min over chunks of (healthy − k); +m when every fragment is healthy. */
  safety: number;
  replaceCount: number;
  chunks: ChunkAssessment[];
}

/** See the header. `bad` holds fragmentId()s known to be bad. */
export function assessManifest(manifest: Manifest, healthOf: (asdId: string) => AsdHealth, bad: ReadonlySet<string> = new Set()): ObjectAssessment {
  const { k, m } = manifest.policy;
  let safety = m;
  let replaceCount = 0;
  const chunks = manifest.chunks.map((chunk, chunkIndex) => {
    assert(chunk.fragments.length === k + m, "a chunk has k+m fragment slots");
    const assessment: ChunkAssessment = { chunkIndex, healthyCount: 0, replace: [], reasons: [], waiting: [] };
    chunk.fragments.forEach((fragment, fragmentIndex) => {
      let reason: ReplaceReason | undefined;
      if (fragment === undefined) reason = "hole";
      else if (bad.has(fragmentId(chunkIndex, fragmentIndex, fragment))) reason = "bad";
      else {
        const health = healthOf(fragment.asdId);
        if (health === "ok") {
          assessment.healthyCount++;
          return;
        }
        if (health === "unreachable") {
          assessment.waiting.push(fragmentIndex);
          return;
        }
        reason = health;
      }
      assessment.replace.push(fragmentIndex);
      assessment.reasons.push(reason);
    });
    safety = Math.min(safety, assessment.healthyCount - k);
    replaceCount += assessment.replace.length;
    return assessment;
  });
  return { safety, replaceCount, chunks };
}

export interface RepairCandidate {
  namespace: string;
  name: string;
  safety: number;
  replaceCount: number;
}

/** Least safe first, then most to rebuild, then by namespace and name; at most `batchMax`. */
export function orderRepairs<T extends RepairCandidate>(candidates: readonly T[], batchMax: number): T[] {
  return candidates
    .filter((candidate) => candidate.replaceCount > 0)
    .sort((a, b) => a.safety - b.safety || b.replaceCount - a.replaceCount || compare(a.namespace, b.namespace) || compare(a.name, b.name))
    .slice(0, batchMax);
}

/**
 * New ASDs for the fragments `replace` of a chunk (fragment slots `fragments`), under `policy`. Returns
 * fragment index → ASD id for those that could be placed (data fragments first).
 */
export function planChunkTargets(
  policy: Policy,
  fragments: ReadonlyArray<ManifestFragment | undefined>,
  replace: readonly number[],
  candidates: readonly PlacementCandidate[],
  random: RandomSource,
): Map<number, string> {
  const nodeOf = new Map(candidates.map((candidate) => [candidate.asdId, candidate.nodeId]));
  const replacing = new Set(replace);
  const nodeLoad = new Map<string, number>();
  const used = new Set<string>();
  fragments.forEach((fragment, fragmentIndex) => {
    // A replaced fragment's ASD may take its new copy (under a new version) if it is usable: a bad
    // fragment on a healthy ASD of a full chunk has nowhere else to go.
    if (fragment === undefined || replacing.has(fragmentIndex)) return;
    used.add(fragment.asdId);
    const nodeId = nodeOf.get(fragment.asdId);
    if (nodeId !== undefined) nodeLoad.set(nodeId, (nodeLoad.get(nodeId) ?? 0) + 1);
  });
  const chosen = placeMore(policy, candidates, replace.length, nodeLoad, used, random);
  const targets = new Map<number, string>();
  const sorted = [...replace].sort((a, b) => a - b);
  chosen.forEach((asdId, position) => targets.set(sorted[position]!, asdId));
  // Invariants of the result.
  const perNode = new Map(nodeLoad);
  for (const asdId of targets.values()) {
    const candidate = candidates.find((item) => item.asdId === asdId);
    assert(candidate !== undefined && candidate.usable, "a repair target is usable");
    assert(!used.has(asdId), "a repair target holds no kept fragment of the chunk");
    perNode.set(candidate.nodeId, (perNode.get(candidate.nodeId) ?? 0) + 1);
    assert(perNode.get(candidate.nodeId)! <= policy.x, "a repair keeps at most x fragments per node");
  }
  assert(new Set(targets.values()).size === targets.size, "repair targets are distinct");
  return targets;
}

/**
 * The index of a better policy of `policies` (the object's preset's, best first) than the manifest's,
 * which the usable candidates can hold without holes; undefined when there is none.
 */
export function upgradePolicyIndex(manifest: Manifest, policies: readonly Policy[], candidates: readonly PlacementCandidate[]): number | undefined {
  for (let index = 0; index < Math.min(manifest.policyIndex, policies.length); index++) {
    const policy = policies[index]!;
    if (placeableCount(policy, candidates) >= policy.k + policy.m) return index;
  }
  return undefined;
}

export interface AsdFill {
  asdId: string;
  nodeId: string;
  usedBytes: number;
  capacityBytes: number;
}

export interface RebalanceClasses {
  meanFill: number;
  spread: number;
  /** Above the mean fill: fragments move away from these. */
  high: Set<string>;
  /** Below the mean fill: fragments move to these. */
  low: Set<string>;
}

export function fillOf(asd: AsdFill): number {
  return asd.capacityBytes > 0 ? asd.usedBytes / asd.capacityBytes : 1;
}

/** The high and low ASDs when the spread of fill levels passes `spreadMax`, else undefined (balanced). */
export function rebalanceClasses(asds: readonly AsdFill[], spreadMax: number): RebalanceClasses | undefined {
  assert(spreadMax >= 0, "the spread threshold is not negative");
  if (asds.length < 2) return undefined;
  const fills = asds.map(fillOf);
  const spread = Math.max(...fills) - Math.min(...fills);
  if (spread <= spreadMax) return undefined;
  const meanFill = fills.reduce((sum, fill) => sum + fill, 0) / fills.length;
  const high = new Set<string>();
  const low = new Set<string>();
  asds.forEach((asd, index) => {
    // Halfway between the mean and the extremes, so that a move never makes a low ASD high.
    if (fills[index]! > meanFill + spreadMax / 4) high.add(asd.asdId);
    else if (fills[index]! < meanFill - spreadMax / 4) low.add(asd.asdId);
  });
  if (high.size === 0 || low.size === 0) return undefined;
  return { meanFill, spread, high, low };
}

export interface ChunkMove {
  fragmentIndex: number;
  fromAsdId: string;
  toAsdId: string;
}

/**
 * One move for a chunk: a fragment on the fullest high ASD to a low ASD (weighted by free space) that
 * holds no fragment of the chunk, keeping x per node; undefined when none fits.
 */
export function planChunkMove(
  policy: Policy,
  fragments: ReadonlyArray<ManifestFragment | undefined>,
  classes: RebalanceClasses,
  fills: ReadonlyMap<string, AsdFill>,
  candidates: readonly PlacementCandidate[],
  random: RandomSource,
): ChunkMove | undefined {
  const sources = fragments
    .map((fragment, fragmentIndex) => ({ fragment, fragmentIndex }))
    .filter((item): item is { fragment: ManifestFragment; fragmentIndex: number } => item.fragment !== undefined && classes.high.has(item.fragment.asdId))
    .sort((a, b) => fillOf(fills.get(b.fragment.asdId)!) - fillOf(fills.get(a.fragment.asdId)!) || a.fragmentIndex - b.fragmentIndex);
  if (sources.length === 0) return undefined;
  // Every candidate stays in the list (their nodes count towards x); only low ones may receive.
  const lowCandidates = candidates.map((candidate) => ({ ...candidate, usable: candidate.usable && classes.low.has(candidate.asdId) }));
  for (const source of sources) {
    const targets = planChunkTargets(policy, fragments, [source.fragmentIndex], lowCandidates, random);
    const toAsdId = targets.get(source.fragmentIndex);
    if (toAsdId !== undefined) return { fragmentIndex: source.fragmentIndex, fromAsdId: source.fragment.asdId, toAsdId };
  }
  return undefined;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
