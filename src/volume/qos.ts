// Per-vDisk QoS: limits on IOPS and bandwidth for reads, writes and both together, changeable while the
// vDisk serves I/O (the original's users asked for this and never got it).
//
// Each limit is a rate with a burst of `burstSeconds` of it, enforced by reservation (GCRA, the
// "theoretical arrival time" form of a token bucket): a request reserves its cost on every bucket that
// applies to it at arrival and starts when the slowest of them allows. Requests therefore start in arrival
// order, a request larger than the burst is not starved (it waits for its share, then runs), and an idle
// vDisk builds up at most one burst. Nothing waits when no limit applies (no timer, no promise).
//
// Used by the frontends (VolumeExport) in front of Volume.read / write / trim / writeZeroes; counted in
// bytes of the request (trim and write-zeroes count as one write operation of no bytes).

import { OvsError } from "../base/index.js";

export interface QosLimits {
  /** Operations per second; 0 = no limit. */
  readIops: number;
  writeIops: number;
  totalIops: number;
  /** Bytes per second; 0 = no limit. */
  readBytesPerSecond: number;
  writeBytesPerSecond: number;
  totalBytesPerSecond: number;
}

export const noQosLimits: Readonly<QosLimits> = Object.freeze({
  readIops: 0, writeIops: 0, totalIops: 0, readBytesPerSecond: 0, writeBytesPerSecond: 0, totalBytesPerSecond: 0,
});

export const qosLimitKeys = Object.keys(noQosLimits) as Array<keyof QosLimits>;

/** The burst each bucket allows, in seconds of its rate. */
export const qosBurstSeconds = 0.1;

/** Refuses limits that are not whole non-negative numbers (nothing is changed then). */
export function validateQosLimits(limits: QosLimits): void {
  for (const key of qosLimitKeys) {
    const value = limits[key];
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new OvsError("INVALID_ARGUMENT", `QoS limit ${key} must be a whole number ≥ 0 (0 = no limit), not ${String(value)}`);
    }
  }
}

class Bucket {
  /** When (ms, clock time) the bucket is "paid up": the theoretical arrival time. */
  private paidUntilMs = 0;
  constructor(private readonly ratePerSecond: number) {}

  /** Earliest start (ms) for a request arriving at nowMs, given the burst tolerance. */
  earliestStartMs(nowMs: number): number {
    return Math.max(nowMs, this.paidUntilMs - qosBurstSeconds * 1000);
  }

  reserve(startMs: number, cost: number): void {
    this.paidUntilMs = Math.max(this.paidUntilMs, startMs) + (cost / this.ratePerSecond) * 1000;
  }
}

export type QosKind = "read" | "write";

export class QosLimiter {
  private limits: QosLimits = { ...noQosLimits };
  private buckets: Record<QosKind, Array<{ bucket: Bucket; perByte: boolean }>> = { read: [], write: [] };
  private delayedCount = 0;
  private delayedMsTotal = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  get current(): QosLimits {
    return { ...this.limits };
  }

  /** Replaces the limits; requests already waiting keep their start times, new ones see the new limits. */
  set(limits: QosLimits): void {
    validateQosLimits(limits);
    this.limits = { ...limits };
    const total: Array<{ bucket: Bucket; perByte: boolean }> = [];
    if (limits.totalIops > 0) total.push({ bucket: new Bucket(limits.totalIops), perByte: false });
    if (limits.totalBytesPerSecond > 0) total.push({ bucket: new Bucket(limits.totalBytesPerSecond), perByte: true });
    const of = (iops: number, bytesPerSecond: number): Array<{ bucket: Bucket; perByte: boolean }> => {
      const own: Array<{ bucket: Bucket; perByte: boolean }> = [];
      if (iops > 0) own.push({ bucket: new Bucket(iops), perByte: false });
      if (bytesPerSecond > 0) own.push({ bucket: new Bucket(bytesPerSecond), perByte: true });
      return [...own, ...total];
    };
    this.buckets = { read: of(limits.readIops, limits.readBytesPerSecond), write: of(limits.writeIops, limits.writeBytesPerSecond) };
  }

  /**
   * Milliseconds the request must wait before it starts (0 = start now); the cost is reserved. Callers
   * without a limit pay one array-length check.
   */
  reserve(kind: QosKind, bytes: number): number {
    const buckets = this.buckets[kind];
    if (buckets.length === 0) return 0;
    const nowMs = this.now();
    let startMs = nowMs;
    for (const { bucket } of buckets) startMs = Math.max(startMs, bucket.earliestStartMs(nowMs));
    for (const { bucket, perByte } of buckets) bucket.reserve(startMs, perByte ? bytes : 1);
    const waitMs = startMs - nowMs;
    if (waitMs > 0) {
      this.delayedCount++;
      this.delayedMsTotal += waitMs;
    }
    return waitMs;
  }

  /** Resolves when the request may start; undefined (no promise) when it may start now. */
  admit(kind: QosKind, bytes: number): Promise<void> | undefined {
    const waitMs = this.reserve(kind, bytes);
    if (waitMs <= 0) return undefined;
    return new Promise((resolve) => setTimeout(resolve, waitMs));
  }

  stats(): { delayedRequests: number; delayedMsTotal: number } {
    return { delayedRequests: this.delayedCount, delayedMsTotal: Math.round(this.delayedMsTotal) };
  }
}
