// The scheduled task vdisk.auto-snapshot (DESIGN.md §6; the original's generic.snapshot_all_vdisks and
// generic.delete_snapshots in one): every hour, each node takes an automatic snapshot of every vDisk it
// serves, then applies the retention of scheduler/retention.ts to that vDisk's automatic snapshots.
//
// - An automatic snapshot is named auto-YYYYMMDDTHHMMSSZ (its time, UTC, from the scheduler's clock) and
//   carries the metadata autoSnapshotMetadata; it is not sticky.
// - Retention, as the original's: every snapshot of the vDisk counts (automatic ones at the time in their
//   name, others at their createdAt); of each slot the newest is kept. Kept always: sticky snapshots
//   (how an operator keeps a snapshot taken by hand) and snapshots clones were made from (deleteSnapshot
//   would refuse those anyway). Templates are left alone (no snapshot, no deletion).
// - A vDisk that fails (halted, fenced) does not stop the others; the run fails naming it.
// Imported by scheduler/tasks.ts.

import { isOvsError } from "../../base/index.js";
import { snapshotsToDelete, type RetainedSnapshot } from "../scheduler/retention.js";
import type { ScheduledTask, ScheduledTaskContext } from "../scheduler/scheduler.js";
import type { VDiskService } from "../vdisk-service.js";

export const autoSnapshotTaskName = "vdisk.auto-snapshot";
export const autoSnapshotMetadata = "automatic snapshot (ovs scheduler)";
const autoNamePattern = /^auto-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/** auto-20260105T140000Z for 2026-01-05T14:00:00.xxxZ. */
export function autoSnapshotName(nowMs: number): string {
  return `auto-${new Date(nowMs).toISOString().replace(/\.\d{3}Z$/, "Z").replace(/[-:]/g, "")}`;
}

/** The time in an automatic snapshot's name, or undefined when the name is not one. */
export function autoSnapshotTimeMs(name: string): number | undefined {
  const match = autoNamePattern.exec(name);
  if (!match) return undefined;
  const [, y, mo, d, h, mi, s] = match.map(Number) as [number, number, number, number, number, number, number];
  const ms = Date.UTC(y, mo - 1, d, h, mi, s);
  return autoSnapshotName(ms) === name ? ms : undefined;
}

export interface AutoSnapshotSummary {
  vdisks: number;
  created: number;
  deleted: number;
  failed: string[];
}

/** Snapshots one vDisk (unless it is a template) and applies retention to it. */
async function snapshotOne(vdisks: VDiskService, name: string, nowMs: number, summary: AutoSnapshotSummary, context: ScheduledTaskContext): Promise<void> {
  const info = vdisks.info(name);
  if (info.template) return;
  const snapshotName = autoSnapshotName(nowMs);
  try {
    await vdisks.createSnapshot(name, snapshotName, { metadata: autoSnapshotMetadata });
    summary.created++;
  } catch (error) {
    if (!isOvsError(error, "ALREADY_EXISTS")) throw error; // a second run within the same second
  }
  const usedByClones = new Set(
    info.clones.map((clone) => {
      try {
        return vdisks.info(clone).parent?.snapshot;
      } catch {
        return undefined;
      }
    }),
  );
  const candidates: RetainedSnapshot[] = vdisks.listSnapshots(name).map((snapshot) => {
    const automaticMs = snapshot.metadata === autoSnapshotMetadata ? autoSnapshotTimeMs(snapshot.name) : undefined;
    return { name: snapshot.name, createdAtMs: automaticMs ?? Date.parse(snapshot.createdAt), sticky: snapshot.sticky, hasClones: usedByClones.has(snapshot.name) };
  });
  for (const doomed of snapshotsToDelete(candidates, nowMs)) {
    try {
      await vdisks.deleteSnapshot(name, doomed);
      summary.deleted++;
    } catch (error) {
      if (isOvsError(error, "IN_USE")) continue; // a clone made meanwhile: kept
      throw error;
    }
  }
  context.log.debug({ vdisk: name, snapshot: snapshotName }, "automatic snapshot taken, retention applied");
}

export function autoSnapshotTask(vdisks: VDiskService): ScheduledTask {
  return {
    name: autoSnapshotTaskName,
    description: "take an automatic snapshot of every vDisk of each node, then keep 1 per hour for a day, 1 per day for a week, 1 per week for 4 weeks (sticky ones and those with clones always)",
    defaultSchedule: { intervalSeconds: 3600, offsetSeconds: 0 },
    scope: "node",
    unit: "vdisks",
    run: async (context) => {
      const names = vdisks.list().map((info) => info.name);
      const summary: AutoSnapshotSummary = { vdisks: names.length, created: 0, deleted: 0, failed: [] };
      context.progress({ done: 0, total: names.length });
      for (const [index, name] of names.entries()) {
        context.progress({ done: index, detail: name });
        try {
          await snapshotOne(vdisks, name, context.nowMs, summary, context);
        } catch (error) {
          if (isOvsError(error, "NOT_FOUND")) continue; // deleted meanwhile
          summary.failed.push(`${name} (${error instanceof Error ? error.message.replace(/\.$/, "") : String(error)})`);
          context.log.warn({ err: error, vdisk: name }, "automatic snapshot failed");
        }
      }
      const line = `${summary.created} snapshot${summary.created === 1 ? "" : "s"} taken of ${summary.vdisks} vDisk${summary.vdisks === 1 ? "" : "s"}, ${summary.deleted} deleted by retention`;
      if (summary.failed.length > 0) throw new Error(`${line}; failed: ${summary.failed.join(", ")}`);
      return line;
    },
  };
}
