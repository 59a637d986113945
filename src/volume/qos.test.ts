// QoS limiter: rates hold over a simulated clock, kinds and totals combine, limits change live.

import { describe, expect, it } from "vitest";
import { noQosLimits, QosLimiter, type QosLimits } from "./qos.js";

function limiterWithClock(): { limiter: QosLimiter; clock: { ms: number } } {
  const clock = { ms: 1_000_000 };
  return { limiter: new QosLimiter(() => clock.ms), clock };
}

/**
 * Runs `count` back-to-back requests (each starts when allowed); returns the simulated seconds from the
 * first start to the moment the last one is paid for (its start plus its own cost), i.e. the time the
 * limit gives the whole series, minus the one burst an idle bucket grants.
 */
function run(limiter: QosLimiter, clock: { ms: number }, kind: "read" | "write", count: number, bytes: number): number {
  const startMs = clock.ms;
  for (let i = 0; i < count; i++) clock.ms += limiter.reserve(kind, bytes);
  return (clock.ms - startMs) / 1000;
}

/** Rate of a series of `count` requests, counting the last one as done when its cost is paid. */
function rateOf(count: number, costEach: number, seconds: number, ratePerSecond: number): number {
  return (count * costEach) / (seconds + costEach / ratePerSecond);
}

const limits = (partial: Partial<QosLimits>): QosLimits => ({ ...noQosLimits, ...partial });

describe("QosLimiter", () => {
  it("lets everything through without limits", () => {
    const { limiter, clock } = limiterWithClock();
    expect(run(limiter, clock, "write", 10_000, 1 << 20)).toBe(0);
    expect(limiter.admit("read", 4096)).toBeUndefined();
  });

  it("holds an IOPS limit within 1 % over many requests, burst included", () => {
    const { limiter, clock } = limiterWithClock();
    limiter.set(limits({ writeIops: 200 }));
    const seconds = run(limiter, clock, "write", 2000, 4096);
    const iops = rateOf(2000, 1, seconds, 200);
    expect(iops).toBeGreaterThan(200 * 0.99);
    expect(iops).toBeLessThan(200 * 1.02); // one burst of 0.1 s comes free over 10 s
    // Reads are not limited by a write limit.
    expect(run(limiter, clock, "read", 1000, 4096)).toBe(0);
  });

  it("holds a bandwidth limit with requests larger than the burst", () => {
    const { limiter, clock } = limiterWithClock();
    limiter.set(limits({ readBytesPerSecond: 10 * 1024 * 1024 }));
    const seconds = run(limiter, clock, "read", 100, 4 * 1024 * 1024); // 4 MiB requests, burst is 1 MiB
    const rate = rateOf(100, 4 * 1024 * 1024, seconds, 10 * 1024 * 1024);
    expect(rate).toBeGreaterThan(10 * 1024 * 1024 * 0.99);
    expect(rate).toBeLessThan(10 * 1024 * 1024 * 1.01);
  });

  it("shares a total limit between reads and writes, the stricter limit winning", () => {
    const { limiter, clock } = limiterWithClock();
    limiter.set(limits({ totalIops: 100, writeIops: 1000 }));
    const startMs = clock.ms;
    for (let i = 0; i < 5000; i++) clock.ms += limiter.reserve(i % 2 === 0 ? "read" : "write", 4096);
    const iops = rateOf(5000, 1, (clock.ms - startMs) / 1000, 100);
    expect(iops).toBeGreaterThan(99);
    expect(iops).toBeLessThan(101);
  });

  it("applies new limits to new requests at once and refuses invalid ones, keeping the old", () => {
    const { limiter, clock } = limiterWithClock();
    limiter.set(limits({ writeIops: 10 }));
    expect(run(limiter, clock, "write", 21, 0)).toBeCloseTo(1.9, 5); // 20 × 0.1 s, less the 0.1 s burst
    limiter.set(limits({ writeIops: 1000 }));
    const seconds = run(limiter, clock, "write", 1000, 0);
    expect(seconds).toBeCloseTo(0.899, 5);
    expect(() => limiter.set(limits({ writeIops: -1 }))).toThrow(/writeIops/);
    expect(() => limiter.set(limits({ readBytesPerSecond: 1.5 }))).toThrow(/readBytesPerSecond/);
    expect(limiter.current.writeIops).toBe(1000);
  });

  it("admits after the computed wait on the real clock", async () => {
    const limiter = new QosLimiter();
    limiter.set(limits({ writeIops: 50 }));
    const started = performance.now();
    for (let i = 0; i < 15; i++) await limiter.admit("write", 4096);
    const elapsedMs = performance.now() - started;
    // 15 requests at 50/s: the 15th starts 14 × 20 ms after the first, less the 100 ms burst.
    expect(elapsedMs).toBeGreaterThan(175);
    expect(elapsedMs).toBeLessThan(2000);
    expect(limiter.stats().delayedRequests).toBeGreaterThan(0);
  });
});
