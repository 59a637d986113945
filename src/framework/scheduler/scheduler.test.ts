// The scheduler on a real embedded store with a controllable clock: slots, first sight, downtime (one
// run for the latest missed slot), off and custom schedules, one leader of two nodes, a failing task
// recorded as FAILED, and the bounded history.

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EmbeddedStore } from "../../store/index.js";
import { silentLogger } from "../../base/index.js";
import { dueSlotMs, latestSlotMs, nextSlotMs } from "./schedule.js";
import { Scheduler, historyPerTaskMax, type RunRecord, type ScheduledTask } from "./scheduler.js";
import { TaskService } from "../tasks/task-service.js";

const hour = 3600_000;
let dir: string;
let store: EmbeddedStore;
let nowMs: number;
let runs: Array<{ task: string; nowMs: number }>;
const schedulers: Scheduler[] = [];

function task(name: string, intervalSeconds: number, offsetSeconds = 0, fail = false): ScheduledTask {
  return {
    name,
    description: name,
    defaultSchedule: { intervalSeconds, offsetSeconds },
    run: async (context) => {
      runs.push({ task: name, nowMs: context.nowMs });
      if (fail) throw new Error("the disk is on fire");
      return `ran at ${new Date(context.nowMs).toISOString()}`;
    },
  };
}

async function scheduler(nodeId: string, tasks: ScheduledTask[]): Promise<Scheduler> {
  const created = new Scheduler({ store, nodeId, log: silentLogger(), tasks, now: () => nowMs, tickMs: 3600_000 });
  await created.start();
  schedulers.push(created);
  return created;
}

beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-scheduler-"));
  store = await EmbeddedStore.open({ dir });
  nowMs = Date.UTC(2026, 10, 26, 10, 17, 0);
  runs = [];
});

afterEach(async () => {
  for (const s of schedulers.splice(0)) await s.stop();
  await store.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

describe("schedule arithmetic", () => {
  it("aligns slots to the epoch plus the offset", () => {
    const daily3am = { intervalSeconds: 86400, offsetSeconds: 3 * 3600 };
    expect(new Date(latestSlotMs(daily3am, Date.UTC(2026, 10, 26, 2, 0))).toISOString()).toBe("2026-11-25T03:00:00.000Z");
    expect(new Date(nextSlotMs(daily3am, Date.UTC(2026, 10, 26, 2, 0))).toISOString()).toBe("2026-11-26T03:00:00.000Z");
    expect(dueSlotMs(null, undefined, 0)).toBeUndefined();
    const hourly = { intervalSeconds: 3600, offsetSeconds: 0 };
    expect(dueSlotMs(hourly, Date.UTC(2026, 0, 1, 9), Date.UTC(2026, 0, 1, 9, 59, 59))).toBeUndefined();
    expect(dueSlotMs(hourly, Date.UTC(2026, 0, 1, 9), Date.UTC(2026, 0, 1, 10))).toBe(Date.UTC(2026, 0, 1, 10));
  });
});

describe("Scheduler", () => {
  it("runs an hourly task once per slot, from the next slot on, and once after downtime", async () => {
    const s = await scheduler("n1", [task("hourly", 3600)]);
    expect(s.isLeader()).toBe(true);
    await s.tick(); // first sight at 10:17: no run
    expect(runs).toEqual([]);
    nowMs = Date.UTC(2026, 10, 26, 10, 59, 59);
    await s.tick();
    expect(runs).toEqual([]);
    nowMs = Date.UTC(2026, 10, 26, 11, 0, 1);
    await s.tick();
    await s.tick();
    expect(runs.map((r) => new Date(r.nowMs).toISOString())).toEqual(["2026-11-26T11:00:01.000Z"]);
    nowMs += 5 * hour; // down for five hours: one run, not five
    await s.tick();
    await s.tick();
    expect(runs).toHaveLength(2);
    const history = await s.history("hourly", 10);
    expect(history.map((r) => [r.trigger, r.state, new Date(r.slotMs!).toISOString()])).toEqual([
      ["schedule", "SUCCESS", "2026-11-26T16:00:00.000Z"],
      ["schedule", "SUCCESS", "2026-11-26T11:00:00.000Z"],
    ]);
    const [status] = await s.status();
    expect(status).toMatchObject({ task: "hourly", lastSlotAt: "2026-11-26T16:00:00.000Z", nextRunAt: "2026-11-26T17:00:00.000Z" });
  });

  it("hands every run it started on its own to the audit, and no run by hand", async () => {
    const audited: RunRecord[] = [];
    const s = new Scheduler({ store, nodeId: "n1", log: silentLogger(), tasks: [task("hourly", 3600), task("broken", 3600, 0, true)], now: () => nowMs, tickMs: 3600_000, audit: (run) => audited.push(run) });
    await s.start();
    schedulers.push(s);
    await s.tick();
    nowMs = Date.UTC(2026, 10, 26, 11, 0, 1);
    await s.tick();
    expect(audited.map((run) => [run.task, run.trigger, run.state])).toEqual([["hourly", "schedule", "SUCCESS"], ["broken", "schedule", "FAILED"]]);
    expect(audited[1]!.message).toBe("the disk is on fire");
    await s.runNow("hourly");
    expect(audited).toHaveLength(2); // a run by hand is audited by the API request that asked for it
  });

  it("follows a changed schedule, turns a task off and restores its default", async () => {
    const s = await scheduler("n1", [task("t", 3600)]);
    await s.tick();
    await s.setSchedule("t", null);
    nowMs += 3 * hour;
    await s.tick();
    expect(runs).toEqual([]);
    expect((await s.status())[0]).toMatchObject({ schedule: null, defaultSchedule: { intervalSeconds: 3600 } });
    await s.setSchedule("t", { intervalSeconds: 600, offsetSeconds: 60 });
    nowMs = Date.UTC(2026, 10, 26, 13, 21, 0);
    await s.tick();
    expect(runs.map((r) => r.task)).toEqual(["t"]);
    await s.setSchedule("t", "default");
    expect((await s.schedules()).t).toEqual({ intervalSeconds: 3600, offsetSeconds: 0 });
    await expect(s.setSchedule("t", { intervalSeconds: 10, offsetSeconds: 0 })).rejects.toThrow(/interval of t must be/);
    await expect(s.setSchedule("nope", null)).rejects.toThrow(/no scheduled task nope/);
  });

  it("runs each slot on one node only: the leader", async () => {
    const a = await scheduler("a", [task("t", 3600)]);
    const b = await scheduler("b", [task("t", 3600)]);
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false]);
    await a.tick();
    nowMs += hour;
    await Promise.all([a.tick(), b.tick()]);
    expect(runs).toHaveLength(1);
    await a.stop();
    schedulers.splice(schedulers.indexOf(a), 1);
    for (let wait = 0; wait < 100 && !b.isLeader(); wait++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(b.isLeader()).toBe(true);
    await b.tick(); // the slot a ran is not run again
    expect(runs).toHaveLength(1);
    nowMs += hour;
    await b.tick();
    expect(runs).toHaveLength(2);
    expect((await b.history("t", 10)).map((r) => r.node)).toEqual(["b", "a"]);
  });

  it("runs a node-scoped task on every node, once per slot each, and not only on the leader", async () => {
    const perNode: ScheduledTask = { ...task("snap", 3600), scope: "node", run: async (context) => { runs.push({ task: "snap", nowMs: context.nowMs }); return "ok"; } };
    const a = await scheduler("a", [perNode]);
    const b = await scheduler("b", [perNode]);
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false]);
    await Promise.all([a.tick(), b.tick()]); // first sight on each node
    nowMs += hour;
    await Promise.all([a.tick(), b.tick()]);
    await Promise.all([a.tick(), b.tick()]);
    expect(runs).toHaveLength(2);
    expect((await a.history("snap", 10)).map((r) => r.node).sort()).toEqual(["a", "b"]);
    expect((await store.get("ovs/scheduler/last/snap@a")) !== undefined && (await store.get("ovs/scheduler/last/snap@b")) !== undefined).toBe(true);
    expect((await a.status())[0]).toMatchObject({ task: "snap", scope: "node", lastSlotAt: new Date(latestSlotMs({ intervalSeconds: 3600, offsetSeconds: 0 }, nowMs)).toISOString() });
  });

  it("records each run as a task when it has a task service: its id in the history, progress and log in the task", async () => {
    const tasks = new TaskService({ store, nodeId: "n1", log: silentLogger(), now: () => nowMs });
    await tasks.start();
    const counting: ScheduledTask = {
      name: "count", description: "count", defaultSchedule: { intervalSeconds: 3600, offsetSeconds: 0 }, unit: "items",
      run: async (context) => {
        context.progress({ done: 0, total: 3 });
        context.progress({ done: 2, detail: "item 2" });
        return `counted with task ${context.taskId}`;
      },
    };
    const failing: ScheduledTask = { ...task("bad", 3600, 0, true) };
    const created = new Scheduler({ store, nodeId: "n1", log: silentLogger(), tasks: [counting, failing], now: () => nowMs, tickMs: 3600_000, taskService: tasks });
    await created.start();
    schedulers.push(created);
    const record = await created.runNow("count", "user:ops", "req-9");
    expect(record.state).toBe("SUCCESS");
    expect(record.message).toBe(`counted with task ${record.taskId}`);
    const taskRecord = await tasks.get(record.taskId!);
    expect(taskRecord).toMatchObject({ kind: "schedule.count", target: "", state: "succeeded", startedBy: "user:ops", requestId: "req-9", progress: { done: 3, total: 3, unit: "items" }, result: record.message });
    const bad = await created.runNow("bad");
    expect(bad).toMatchObject({ state: "FAILED", message: "the disk is on fire" });
    expect(await tasks.get(bad.taskId!)).toMatchObject({ state: "failed", error: { code: "INTERNAL", message: "the disk is on fire" } });
    await tasks.stop();
  });

  it("records a failing run as FAILED with its message and keeps a bounded history", async () => {
    const s = await scheduler("n1", [task("bad", 3600, 0, true)]);
    const record = await s.runNow("bad");
    expect(record).toMatchObject({ task: "bad", trigger: "manual", state: "FAILED", message: "the disk is on fire", node: "n1" });
    for (let index = 0; index < historyPerTaskMax + 5; index++) {
      nowMs += 1000;
      await s.runNow("bad");
    }
    const kept = await store.prefix("ovs/scheduler/history/bad/", { limit: 1000 });
    expect(kept.entries).toHaveLength(historyPerTaskMax);
    expect((await s.history("bad", 1))[0]!.startedAt).toBe(new Date(nowMs).toISOString());
  });
});
