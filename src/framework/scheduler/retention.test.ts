// Retention with a simulated clock: hourly snapshots for 6 weeks, the retention run daily at 02:01.

import { describe, expect, it } from "vitest";
import { snapshotsToDelete, type RetainedSnapshot } from "./retention.js";

const hourMs = 3_600_000;
const dayMs = 24 * hourMs;

describe("snapshot retention", () => {
  it("keeps exactly 1 per hour for a day, 1 per day for a week, 1 per week for 4 weeks, after 6 weeks of hourly snapshots", () => {
    const start = Date.UTC(2026, 0, 5); // a Monday, 00:00 UTC
    let snapshots: RetainedSnapshot[] = [];
    let nowMs = start;
    const endMs = start + 42 * dayMs;
    for (; nowMs <= endMs; nowMs += hourMs) {
      snapshots.push({ name: `auto-${nowMs}`, createdAtMs: nowMs, sticky: false, hasClones: false });
      if (nowMs === start + 3 * dayMs + 5 * hourMs) snapshots.at(-1)!.sticky = true;
      if (nowMs === start + 4 * dayMs + 7 * hourMs) snapshots.at(-1)!.hasClones = true;
      // The daily run at 02:00 UTC.
      if ((nowMs - start) % dayMs === 2 * hourMs) {
        const doomed = new Set(snapshotsToDelete(snapshots, nowMs));
        snapshots = snapshots.filter((s) => !doomed.has(s.name));
      }
    }
    nowMs -= hourMs; // the last snapshot's time
    const finalRun = new Set(snapshotsToDelete(snapshots, nowMs));
    snapshots = snapshots.filter((s) => !finalRun.has(s.name));
    const ages = snapshots.map((s) => nowMs - s.createdAtMs);
    const within = (lo: number, hi: number): number => ages.filter((a) => a >= lo && a < hi).length;
    // The last day: one per hour (24 hourly slots; the slot of "now" included).
    expect(within(0, dayMs)).toBe(24);
    // Days 1-7: one per UTC day slot (7 slots can straddle the tier limits by one).
    expect(within(dayMs, 7 * dayMs)).toBeGreaterThanOrEqual(6);
    expect(within(dayMs, 7 * dayMs)).toBeLessThanOrEqual(7);
    // Weeks 1-4: one per week slot.
    expect(within(7 * dayMs, 28 * dayMs)).toBeGreaterThanOrEqual(3);
    expect(within(7 * dayMs, 28 * dayMs)).toBeLessThanOrEqual(4);
    // Nothing older than 4 weeks but the sticky one and the one with clones.
    const old = snapshots.filter((s) => nowMs - s.createdAtMs >= 28 * dayMs);
    expect(old.map((s) => s.name).sort()).toEqual([`auto-${start + 3 * dayMs + 5 * hourMs}`, `auto-${start + 4 * dayMs + 7 * hourMs}`].sort());
    // Per slot, the newest is the one kept: each kept daily snapshot of a day that has wholly aged into
    // the daily tier is the last of its day (the youngest such day is still migrating out of the hourly tier).
    for (const s of snapshots.filter((x) => nowMs - x.createdAtMs >= 2 * dayMs && nowMs - x.createdAtMs < 7 * dayMs)) {
      expect(s.createdAtMs % dayMs).toBe(23 * hourMs);
    }
  });

  it("keeps a fresh snapshot and the newest of a slot, and deletes an expired one", () => {
    const nowMs = Date.UTC(2026, 5, 1, 12, 30);
    const at = (name: string, createdAtMs: number): RetainedSnapshot => ({ name, createdAtMs, sticky: false, hasClones: false });
    const snapshots = [at("a", nowMs - 10 * 60_000), at("b", nowMs - 20 * 60_000), at("old", nowMs - 29 * dayMs), at("c", nowMs)];
    // a and b share the 12:00 slot with c (12:30): only c, the newest, stays.
    expect(snapshotsToDelete(snapshots, nowMs)).toEqual(["old", "b", "a"]);
    expect(snapshotsToDelete([], nowMs)).toEqual([]);
  });
});
