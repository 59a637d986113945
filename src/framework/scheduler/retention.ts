// Snapshot retention (DESIGN.md §6, the original's generic.delete_snapshots): of a vDisk's snapshots,
// keep one per hour for the last day, one per day for the week before, one per week for the 4 weeks
// before, and none older; sticky snapshots and snapshots with clones are always kept.
//
// Slots are aligned to absolute time (hour, UTC day, week since the epoch), not to "now", so a snapshot
// kept by one run stays kept by the next until its slot ages into a coarser tier; the newest snapshot of
// each slot is the one kept. Pure: the clock is a parameter (tested with a simulated one).

export interface RetentionTier {
  /** Slot length: one snapshot is kept per slot. */
  slotMs: number;
  /** The tier covers snapshots younger than this (and older than the previous tier's limit). */
  maxAgeMs: number;
}

const hourMs = 3_600_000;
const dayMs = 24 * hourMs;

/** DESIGN.md §6: 1 per hour for a day, 1 per day for a week, 1 per week for 4 weeks. */
export const defaultRetention: readonly RetentionTier[] = Object.freeze([
  { slotMs: hourMs, maxAgeMs: dayMs },
  { slotMs: dayMs, maxAgeMs: 7 * dayMs },
  { slotMs: 7 * dayMs, maxAgeMs: 28 * dayMs },
]);

export interface RetainedSnapshot {
  name: string;
  /** Creation time, ms since the epoch. */
  createdAtMs: number;
  sticky: boolean;
  /** A snapshot some clone was made from: deleting it would break the clone. */
  hasClones: boolean;
}

/** Names of the snapshots to delete, oldest first. */
export function snapshotsToDelete(snapshots: readonly RetainedSnapshot[], nowMs: number, tiers: readonly RetentionTier[] = defaultRetention): string[] {
  const newestPerSlot = new Map<string, RetainedSnapshot>();
  for (const snapshot of snapshots) {
    const ageMs = Math.max(0, nowMs - snapshot.createdAtMs);
    const tierIndex = tiers.findIndex((tier) => ageMs < tier.maxAgeMs);
    if (tierIndex === -1) continue; // older than every tier: not kept
    const slot = `${tierIndex}:${Math.floor(snapshot.createdAtMs / tiers[tierIndex]!.slotMs)}`;
    const kept = newestPerSlot.get(slot);
    if (kept === undefined || snapshot.createdAtMs > kept.createdAtMs || (snapshot.createdAtMs === kept.createdAtMs && snapshot.name > kept.name)) {
      newestPerSlot.set(slot, snapshot);
    }
  }
  const keep = new Set([...newestPerSlot.values()]);
  return snapshots
    .filter((snapshot) => !keep.has(snapshot) && !snapshot.sticky && !snapshot.hasClones)
    .sort((a, b) => a.createdAtMs - b.createdAtMs || (a.name < b.name ? -1 : 1))
    .map((snapshot) => snapshot.name);
}
