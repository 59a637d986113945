// Backend safety per preset policy (the original's calculate_safety, as numbers an operator can act on):
// for an object written now under policy (k, m, c, x) on the usable ASDs, how many ASDs, nodes and
// domains can fail before it is lost. Pure function, no I/O. Imported by the model service.
//
// Rules (those of alba/placement): a chunk gets P = min(k+m, Σ nodes min(x, usable ASDs on the node))
// fragments, at most one per ASD and x per node; it is readable while k of them survive. So:
// - asdFailuresTolerated = P − k (any P − k ASDs may fail);
// - nodeFailuresTolerated: the worst case, nodes taken away largest first (each holds up to
//   min(x, its usable ASDs) fragments) while the fragments lost stay ≤ P − k;
// - domainFailuresTolerated: the same with domains (an ASD's domain in the model; ASDs without one are
//   not counted in any domain); null when no usable ASD has a domain.
// The policy is satisfiable (the backend takes writes under it) when P ≥ c.

export interface SafetyAsd {
  asdId: string;
  nodeId: string;
  domain?: string;
  /** Claimed, answering and not full. */
  usable: boolean;
}

export interface PolicySafety {
  k: number;
  m: number;
  c: number;
  x: number;
  satisfiable: boolean;
  /** Fragments a chunk written now gets (holes are the rest of k+m). */
  fragmentsPlaced: number;
  asdFailuresTolerated: number;
  nodeFailuresTolerated: number;
  domainFailuresTolerated: number | null;
}

export function policySafety(policy: { k: number; m: number; c: number; x: number }, asds: readonly SafetyAsd[]): PolicySafety {
  const usable = asds.filter((asd) => asd.usable);
  const perNode = countBy(usable, (asd) => asd.nodeId);
  const nodeCapacity = [...perNode.values()].map((count) => Math.min(policy.x, count));
  const placed = Math.min(policy.k + policy.m, nodeCapacity.reduce((sum, n) => sum + n, 0));
  const satisfiable = placed >= policy.c;
  const spare = Math.max(0, placed - policy.k);
  // Per domain: Σ over its nodes of min(x, that node's usable ASDs in the domain), capped at P.
  const withDomain = usable.filter((asd) => asd.domain !== undefined);
  let domainFailuresTolerated: number | null = null;
  if (withDomain.length > 0) {
    const byDomain = new Map<string, SafetyAsd[]>();
    for (const asd of withDomain) byDomain.set(asd.domain!, [...(byDomain.get(asd.domain!) ?? []), asd]);
    const domainCapacity = [...byDomain.values()].map((members) => Math.min(placed, [...countBy(members, (asd) => asd.nodeId).values()].reduce((sum, n) => sum + Math.min(policy.x, n), 0)));
    domainFailuresTolerated = satisfiable ? tolerated(domainCapacity, spare) : 0;
  }
  return {
    ...policy,
    satisfiable,
    fragmentsPlaced: placed,
    asdFailuresTolerated: satisfiable ? spare : 0,
    nodeFailuresTolerated: satisfiable ? tolerated(nodeCapacity, spare) : 0,
    domainFailuresTolerated,
  };
}

/** How many groups can be lost, largest first, with the fragments lost staying within `spare`. */
function tolerated(capacities: readonly number[], spare: number): number {
  let lost = 0;
  let count = 0;
  for (const capacity of [...capacities].sort((a, b) => b - a)) {
    if (lost + capacity > spare) break;
    lost += capacity;
    count++;
  }
  return count;
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
}
