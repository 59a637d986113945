// Throttle: a token bucket of maintenance bytes per second, as plain logic (the clock is passed in). The
// agent asks how long to wait before spending `bytes` on reads and writes of fragments, so that repair,
// verify, rebalance and GC stay below bytesPerSecondMax and client I/O keeps priority (the original's
// alba#716: rebalancing cut VM writes from ~120 to ~60 MB/s). Imported by agent.ts and the tests.
//
// Invariants: the bucket holds at most one second of bytes; spending may take it below zero (one large
// fragment), and the debt is waited off before the next spend.

import { assert } from "../../base/index.js";

export class Throttle {
  private tokens: number;
  private lastMs: number | undefined;

  constructor(readonly bytesPerSecondMax: number) {
    assert(Number.isFinite(bytesPerSecondMax) && bytesPerSecondMax > 0, "a throttle rate is positive");
    this.tokens = bytesPerSecondMax;
  }

  /** Spends `bytes` now; returns how many ms the caller must wait before its next spend. */
  spend(bytes: number, nowMs: number): number {
    assert(bytes >= 0, "bytes spent are not negative");
    this.refill(nowMs);
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.bytesPerSecondMax);
  }

  private refill(nowMs: number): void {
    if (this.lastMs !== undefined && nowMs > this.lastMs) {
      this.tokens = Math.min(this.bytesPerSecondMax, this.tokens + ((nowMs - this.lastMs) * this.bytesPerSecondMax) / 1000);
    }
    this.lastMs = Math.max(this.lastMs ?? nowMs, nowMs);
  }
}
