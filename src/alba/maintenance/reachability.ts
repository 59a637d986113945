// ReachabilityTracker: failure detection for the maintenance agent, as plain logic (no I/O, the clock is
// passed in). The agent feeds it what it saw (probe answers, errors, the registry's last-seen times) and
// asks, per ASD, whether it is ok, unreachable (not answering, but not for long), or failed (no answer
// for failAfterMs: repaired away). Imported by agent.ts and the tests.
//
// Invariants: lastSeenMs only rises; an ASD is failed only if its last contact attempt failed AND nothing
// was heard from it for failAfterMs; one success makes it ok again (its repaired-away fragments are then
// garbage, which the strays records and the orphan scan cover).
// Limits: one entry per registered ASD (the registry is the bound).

import { assert } from "../../base/index.js";

export type AsdReachabilityState = "ok" | "unreachable" | "failed";

export interface AsdReachability {
  asdId: string;
  state: AsdReachabilityState;
  /** When it last answered anyone (ms since the epoch; 0 if never). */
  lastSeenMs: number;
  /** Failed contact attempts since the last success. */
  consecutiveErrorCount: number;
  lastError: string | undefined;
}

interface Entry {
  lastSeenMs: number;
  /** When the tracker started watching it (an ASD never seen is failed failAfterMs after this). */
  sinceMs: number;
  consecutiveErrorCount: number;
  lastError: string | undefined;
}

export class ReachabilityTracker {
  private readonly entries = new Map<string, Entry>();

  constructor(readonly failAfterMs: number) {
    assert(Number.isFinite(failAfterMs) && failAfterMs > 0, "failAfterMs is positive");
  }

  private entry(asdId: string, nowMs: number): Entry {
    let entry = this.entries.get(asdId);
    if (entry === undefined) {
      entry = { lastSeenMs: 0, sinceMs: nowMs, consecutiveErrorCount: 0, lastError: undefined };
      this.entries.set(asdId, entry);
    }
    return entry;
  }

  /** What the registry says (another client or agent heard from it then). */
  noteLastSeen(asdId: string, lastSeenMs: number, nowMs: number): void {
    const entry = this.entry(asdId, nowMs);
    if (lastSeenMs > entry.lastSeenMs) entry.lastSeenMs = Math.min(lastSeenMs, nowMs);
  }

  noteSuccess(asdId: string, nowMs: number): void {
    const entry = this.entry(asdId, nowMs);
    entry.lastSeenMs = Math.max(entry.lastSeenMs, nowMs);
    entry.consecutiveErrorCount = 0;
    entry.lastError = undefined;
  }

  noteFailure(asdId: string, nowMs: number, message: string): void {
    const entry = this.entry(asdId, nowMs);
    entry.consecutiveErrorCount++;
    entry.lastError = message;
  }

  /** Drops ASDs no longer in the registry. */
  retain(asdIds: ReadonlySet<string>): void {
    for (const asdId of this.entries.keys()) if (!asdIds.has(asdId)) this.entries.delete(asdId);
  }

  state(asdId: string, nowMs: number): AsdReachabilityState {
    const entry = this.entries.get(asdId);
    if (entry === undefined) return "unreachable";
    if (entry.consecutiveErrorCount === 0) return entry.lastSeenMs > 0 ? "ok" : "unreachable";
    // Heard of before (by anyone, as the registry says): silent since then. Never: since we started watching.
    const silentSinceMs = entry.lastSeenMs > 0 ? entry.lastSeenMs : entry.sinceMs;
    return nowMs - silentSinceMs >= this.failAfterMs ? "failed" : "unreachable";
  }

  view(nowMs: number): AsdReachability[] {
    return [...this.entries.entries()]
      .map(([asdId, entry]) => ({ asdId, state: this.state(asdId, nowMs), lastSeenMs: entry.lastSeenMs, consecutiveErrorCount: entry.consecutiveErrorCount, lastError: entry.lastError }))
      .sort((a, b) => (a.asdId < b.asdId ? -1 : 1));
  }
}
