// The scheduler on a real embedded store with a simulated clock: runs at the scheduled instants, one
// leader among several nodes, on/off and validated configuration, failures and overlaps in the history.

import { afterEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { silentLogger } from "../../base/index.js";
import { EmbeddedStore } from "../../store/index.js";
import { historyKey, lastInstantAtOrBefore, Scheduler, type Clock, type JobSpec } from "./scheduler.js";

const hourMs = 3_600_000;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function openStore(): Promise<EmbeddedStore> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-scheduler-"));
  const store = await EmbeddedStore.open({ dir });
  cleanups.push(async () => {
    await store.close();
    await fsp.rm(dir, { recursive: true, force: true });
  });
  return store;
}

/** A clock that only moves when told; timers never fire by themselves (the test calls tick()). */
function manualClock(startMs: number): Clock & { ms: number } {
  const clock = { ms: startMs, now: () => clock.ms, setTimer: () => () => undefined };
  return clock;
}

function countingJob(name: string, everyMs: number, offsetMs = 0, body?: () => Promise<unknown>): JobSpec & { runs: number[] } {
  const job = {
    name,
    description: `test job ${name}`,
    schedule: { everyMs, offsetMs },
    enabledByDefault: true,
    runs: [] as number[],
    async run(context: { scheduledAtMs: number }): Promise<unknown> {
      job.runs.push(context.scheduledAtMs);
      return body ? body() : { ran: context.scheduledAtMs };
    },
  };
  return job;
}

async function startScheduler(store: EmbeddedStore, nodeId: string, jobs: JobSpec[], clock: Clock): Promise<Scheduler> {
  const scheduler = new Scheduler({ store, nodeId, log: silentLogger(), jobs, clock });
  await scheduler.start();
  cleanups.push(() => scheduler.stop());
  return scheduler;
}

async function advance(clock: { ms: number }, schedulers: Scheduler[], stepMs: number, steps: number): Promise<void> {
  for (let i = 0; i < steps; i++) {
    clock.ms += stepMs;
    for (const scheduler of schedulers) await scheduler.tick();
    for (const scheduler of schedulers) await scheduler.idle();
  }
}

describe("Scheduler", () => {
  it("names history records as in docs/formats/scheduler.md (golden vector)", () => {
    expect(historyKey("delete-snapshots", 1767319260000)).toBe("ovs/scheduler/history/delete-snapshots/0000019b7c6fcb60");
    expect(Date.UTC(2026, 0, 2, 2, 1)).toBe(1767319260000);
  });

  it("aligns instants to the epoch with an offset", () => {
    expect(lastInstantAtOrBefore({ everyMs: hourMs, offsetMs: 0 }, 5 * hourMs + 59 * 60_000)).toBe(5 * hourMs);
    expect(lastInstantAtOrBefore({ everyMs: 24 * hourMs, offsetMs: 2 * hourMs + 60_000 }, 24 * hourMs + 2 * hourMs)).toBe(2 * hourMs + 60_000);
  });

  it("runs each job once per scheduled instant on the one leader of several nodes, and keeps a history", async () => {
    const store = await openStore();
    const clock = manualClock(Date.UTC(2026, 0, 1, 0, 30));
    const hourlyA = countingJob("hourly", hourMs);
    const hourlyB = countingJob("hourly", hourMs);
    const dailyA = countingJob("daily", 24 * hourMs, 2 * hourMs + 60_000);
    const dailyB = countingJob("daily", 24 * hourMs, 2 * hourMs + 60_000);
    const a = await startScheduler(store, "node-a", [hourlyA, dailyA], clock);
    const b = await startScheduler(store, "node-b", [hourlyB, dailyB], clock);
    expect([a.isLeader(), b.isLeader()].filter(Boolean)).toHaveLength(1);
    await advance(clock, [a, b], 10 * 60_000, 6 * 26); // 26 hours in 10-minute steps
    const hourlyRuns = [...hourlyA.runs, ...hourlyB.runs];
    expect(hourlyRuns).toHaveLength(26);
    expect(new Set(hourlyRuns).size).toBe(26);
    for (const at of hourlyRuns) expect(at % hourMs).toBe(0);
    expect([...dailyA.runs, ...dailyB.runs]).toEqual([Date.UTC(2026, 0, 1, 2, 1), Date.UTC(2026, 0, 2, 2, 1)]);
    const leader = a.isLeader() ? a : b;
    const history = await leader.history("daily");
    expect(history).toHaveLength(2);
    expect(history[0]).toMatchObject({ job: "daily", outcome: "ok", scheduledAtMs: Date.UTC(2026, 0, 2, 2, 1), result: { ran: Date.UTC(2026, 0, 2, 2, 1) } });
    expect((await leader.history("hourly", 5)).map((r) => r.scheduledAtMs)).toEqual(hourlyRuns.slice(-5).reverse());
  });

  it("takes over when the leader stops", async () => {
    const store = await openStore();
    const clock = manualClock(Date.UTC(2026, 0, 1));
    const jobA = countingJob("hourly", hourMs);
    const jobB = countingJob("hourly", hourMs);
    const a = await startScheduler(store, "node-a", [jobA], clock);
    const b = await startScheduler(store, "node-b", [jobB], clock);
    const [leader, follower] = a.isLeader() ? [a, b] : [b, a];
    await leader.stop();
    for (let i = 0; i < 50 && !follower.isLeader(); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(follower.isLeader()).toBe(true);
    await advance(clock, [follower], hourMs, 2);
    expect([...jobA.runs, ...jobB.runs]).toHaveLength(2);
  });

  it("can be turned off and rescheduled, and refuses an invalid configuration without changing it", async () => {
    const store = await openStore();
    const clock = manualClock(Date.UTC(2026, 0, 1));
    const job = countingJob("hourly", hourMs);
    const scheduler = await startScheduler(store, "node-a", [job], clock);
    await scheduler.configure("hourly", { enabled: false, everyMs: hourMs, offsetMs: 0 });
    await advance(clock, [scheduler], hourMs, 3);
    expect(job.runs).toHaveLength(0);
    await expect(scheduler.configure("hourly", { enabled: true, everyMs: 10, offsetMs: 0 })).rejects.toThrow(/everyMs/);
    await expect(scheduler.configure("hourly", { enabled: true, everyMs: hourMs, offsetMs: hourMs })).rejects.toThrow(/offsetMs/);
    await expect(scheduler.configure("nope", { enabled: true, everyMs: hourMs, offsetMs: 0 })).rejects.toThrow(/no scheduled task/);
    expect((await scheduler.configs())[0]).toMatchObject({ name: "hourly", enabled: false });
    await scheduler.configure("hourly", { enabled: true, everyMs: 2 * hourMs, offsetMs: 0 });
    await advance(clock, [scheduler], hourMs, 4);
    expect(job.runs).toHaveLength(2);
  });

  it("records failures, and skips a run while the previous one is still going", async () => {
    const store = await openStore();
    const clock = manualClock(Date.UTC(2026, 0, 1));
    let release!: () => void;
    const slow = countingJob("slow", hourMs, 0, () => new Promise((resolve) => (release = () => resolve("done"))));
    const failing = countingJob("failing", hourMs, 0, () => Promise.reject(new Error("disk on fire")));
    const scheduler = await startScheduler(store, "node-a", [slow, failing], clock);
    clock.ms += hourMs;
    await scheduler.tick();
    // Let the failing job's first run finish (the slow one keeps going).
    for (let i = 0; i < 100 && (await scheduler.history("failing")).every((r) => r.outcome === "running"); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    clock.ms += hourMs;
    await scheduler.tick();
    release();
    await scheduler.idle();
    const slowHistory = await scheduler.history("slow");
    expect(slowHistory.map((r) => r.outcome).sort()).toEqual(["ok", "skipped"]);
    const failingHistory = await scheduler.history("failing");
    expect(failingHistory.map((r) => r.outcome)).toEqual(["failed", "failed"]);
    expect(failingHistory[0]!.error).toBe("disk on fire");
  });
});
