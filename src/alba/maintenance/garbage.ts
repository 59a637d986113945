// Garbage-collection planning, as plain logic: which garbage records may be collected now, and which ASD
// keys are orphans (referenced by no manifest and covered by no garbage record) long enough to delete.
// No I/O; the clock is passed in. Imported by agent.ts and the tests. Records: docs/formats/alba-keys.md.
//
// Rules:
// - An upload record is collected at once when abandoned, and in state uploading only once older than
//   uploadGraceMs (longer than any upload: the upload may still be writing). An object record (overwritten
//   or deleted) and a strays record are collected at once: no manifest references those fragments.
// - An orphan is a fragment key seen unreferenced and uncovered by consecutive scans for at least
//   orphanGraceMs. A scan lists the ASD keys BEFORE reading manifests and garbage records, so a key
//   written by an upload in progress is covered by its upload record; the grace period covers a commit
//   that lands between the two reads (the next scan sees its manifest and forgets the candidate).
// Invariants: a key is reported due only if every scan since its first sighting found it an orphan.
// Limits: orphanTrackedMax candidates (more are ignored until others are resolved).

import { assert } from "../../base/index.js";
import type { GcRecord } from "../manager/index.js";

export type GcDecision = "collect" | "wait";

export function gcDecision(record: GcRecord, nowMs: number, uploadGraceMs: number): GcDecision {
  switch (record.kind) {
    case "upload":
      return record.state === "abandoned" || nowMs - record.startedAtMs >= uploadGraceMs ? "collect" : "wait";
    case "object":
    case "strays":
      return "collect";
  }
}

export class OrphanTracker {
  private readonly firstSeenMs = new Map<string, number>();
  /** Candidates not tracked because the table was full, in the last update. */
  droppedCount = 0;

  constructor(
    readonly graceMs: number,
    readonly trackedMax: number,
  ) {
    assert(graceMs >= 0 && trackedMax >= 1, "orphan grace ≥ 0 and a table of at least one");
  }

  /**
   * One finished scan: `orphans` are the keys it found unreferenced and uncovered (ids chosen by the
   * caller). Forgets candidates no longer orphans; returns the ones due for deletion.
   */
  update(orphans: Iterable<string>, nowMs: number): string[] {
    const current = new Set(orphans);
    for (const key of this.firstSeenMs.keys()) if (!current.has(key)) this.firstSeenMs.delete(key);
    this.droppedCount = 0;
    const due: string[] = [];
    for (const key of current) {
      const first = this.firstSeenMs.get(key);
      if (first === undefined) {
        if (this.firstSeenMs.size >= this.trackedMax) {
          this.droppedCount++;
          continue;
        }
        this.firstSeenMs.set(key, nowMs);
        if (this.graceMs === 0) due.push(key);
      } else if (nowMs - first >= this.graceMs) {
        due.push(key);
      }
    }
    return due.sort();
  }

  /** Forgets keys once deleted. */
  forget(keys: Iterable<string>): void {
    for (const key of keys) this.firstSeenMs.delete(key);
  }

  get trackedCount(): number {
    return this.firstSeenMs.size;
  }
}
