// TaskService on a real embedded store with a controllable clock: a task's record through its life
// (queued, running with progress, succeeded or failed), cancellation (queued, running, not cancellable,
// from another node through the store), tasks interrupted by a crash marked failed at the next start,
// the bounded queue, listing with filters and pages, and the bounded history.

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EmbeddedStore } from "../../store/index.js";
import { OvsError, silentLogger } from "../../base/index.js";
import { TaskService, type TaskContext } from "./task-service.js";
import { decodeTask, taskKey, type TaskRecord } from "./task-record.js";

let dir: string;
let store: EmbeddedStore;
let nowMs: number;
const services: TaskService[] = [];

function service(nodeId: string, limits: ConstructorParameters<typeof TaskService>[0]["limits"] = {}): TaskService {
  const created = new TaskService({ store, nodeId, log: silentLogger(), now: () => nowMs, limits: { progressWriteMs: 10, stopWaitMs: 200, stopWaitNotCancellableMs: 400, ...limits } });
  services.push(created);
  return created;
}

async function stored(id: string): Promise<TaskRecord> {
  const bytes = await store.get(taskKey(id));
  const decoded = decodeTask(bytes!);
  if (!decoded.ok) throw new Error(decoded.reason);
  return decoded.value;
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Work that reports progress and waits until released (or its signal aborts, when it honours it). */
function gate(): { run: (context: TaskContext) => Promise<string>; release: () => void; context: () => TaskContext | undefined } {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let seen: TaskContext | undefined;
  return {
    release,
    context: () => seen,
    run: async (context) => {
      seen = context;
      context.progress({ done: 1, total: 4, detail: "first" });
      await Promise.race([released, new Promise((_, reject) => context.signal.addEventListener("abort", () => reject(context.signal.reason as Error)))]);
      return "released";
    },
  };
}

beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-tasks-"));
  store = await EmbeddedStore.open({ dir });
  nowMs = Date.UTC(2026, 10, 26, 12, 0, 0);
});

afterEach(async () => {
  for (const s of services.splice(0)) await s.stop();
  await store.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

describe("TaskService", () => {
  it("records a task queued, running with its progress, then succeeded with its result", async () => {
    const tasks = service("n1");
    await tasks.start();
    const work = gate();
    const started = await tasks.submit({ kind: "test.work", target: "t1", startedBy: "user:admin", requestId: "req-1", unit: "objects", cancellable: true, run: work.run });
    expect(started).toMatchObject({ version: 1, kind: "test.work", target: "t1", node: "n1", state: "queued", startedBy: "user:admin", requestId: "req-1", progress: { done: 0, unit: "objects" } });
    expect(started.createdAt).toBe("2026-11-26T12:00:00.000Z");
    // The progress reaches the store (another node's view) while the task runs.
    await until("progress in the store", async () => (await stored(started.id)).progress.done === 1);
    expect(await stored(started.id)).toMatchObject({ state: "running", progress: { done: 1, total: 4, unit: "objects", detail: "first" } });
    expect(work.context()!.taskId).toBe(started.id);
    nowMs += 2500;
    work.release();
    await tasks.waitLocal(started.id);
    const done = await stored(started.id);
    expect(done).toMatchObject({ state: "succeeded", result: "released", progress: { done: 4, total: 4 }, finishedAt: "2026-11-26T12:00:02.500Z" });
    expect(done.error).toBeUndefined();
    expect(await tasks.get(started.id)).toEqual(done);
  });

  it("records a failure with the error's stable code, or INTERNAL", async () => {
    const tasks = service("n1");
    await tasks.start();
    const notFound = await tasks.run({ kind: "k", target: "", startedBy: "scheduler", unit: "steps", run: async () => { throw new OvsError("NOT_FOUND", "there is no vDisk named x."); } });
    expect(notFound.record).toMatchObject({ state: "failed", error: { code: "NOT_FOUND", message: "there is no vDisk named x." } });
    const plain = await tasks.run({ kind: "k", target: "", startedBy: "scheduler", unit: "steps", run: async () => { throw new Error("boom"); } });
    expect(plain.record.error).toEqual({ code: "INTERNAL", message: "boom" });
    const ok = await tasks.run({ kind: "k", target: "", startedBy: "scheduler", unit: "steps", run: async () => 42 });
    expect(ok).toMatchObject({ result: 42, record: { state: "succeeded", result: 42 } });
  });

  it("marks the tasks a crashed node left queued or running failed (INTERRUPTED) at its next start, and no other node's", async () => {
    const crashed = service("n1", { runningMax: 1 });
    await crashed.start();
    const running = await crashed.submit({ kind: "k", target: "", startedBy: "user:a", unit: "steps", run: gate().run });
    const queued = await crashed.submit({ kind: "k", target: "", startedBy: "user:a", unit: "steps", run: gate().run });
    const other = service("n2");
    await other.start();
    const othersTask = await other.submit({ kind: "k", target: "", startedBy: "user:a", unit: "steps", run: gate().run });
    // Its last progress write is in the store before the "crash" (a crashed node writes nothing more).
    await until("running", async () => (await stored(running.id)).progress.done === 1);
    // The node "crashes": its TaskService is never stopped; a new one starts on the same store.
    services.splice(services.indexOf(crashed), 1);
    nowMs += 60_000;
    const restarted = service("n1");
    await restarted.start();
    for (const id of [running.id, queued.id]) {
      expect(await stored(id)).toMatchObject({ state: "failed", finishedAt: "2026-11-26T12:01:00.000Z", error: { code: "INTERRUPTED" } });
    }
    expect((await stored(running.id)).error!.message).toBe("node n1 stopped while the task was running; start it again if it is still needed.");
    expect((await stored(othersTask.id)).state).not.toBe("failed");
  });

  it("fails another node's unfinished tasks (its node went offline); that node, only paused, adopts the record and stops the work", async () => {
    const leader = service("n1");
    const other = service("n2", { runningMax: 1 });
    await leader.start();
    await other.start();
    const running = gate();
    const first = await other.submit({ kind: "test.work", target: "t1", startedBy: "scheduler", unit: "objects", cancellable: false, run: running.run });
    let queuedRan = false;
    const queued = await other.submit({ kind: "test.work", target: "t2", startedBy: "scheduler", unit: "objects", run: async () => void (queuedRan = true) });
    const own = gate();
    const mine = await leader.submit({ kind: "test.work", target: "t3", startedBy: "scheduler", unit: "objects", run: own.run });
    await until("the first task runs with its progress written", async () => (await stored(first.id)).progress.done === 1);
    nowMs += 60_000;
    expect(await leader.failTasksOf("n1", "never mine")).toBe(0);
    expect(await leader.failTasksOf("n2", "storage router n2 is offline; its last heartbeat was at 2026-11-26T12:00:00.000Z")).toBe(2);
    const message = "the node running this task went offline (storage router n2 is offline; its last heartbeat was at 2026-11-26T12:00:00.000Z); start it again if it is still needed.";
    for (const id of [first.id, queued.id]) {
      expect(await stored(id)).toMatchObject({ state: "failed", finishedAt: "2026-11-26T12:01:00.000Z", error: { code: "INTERRUPTED", message } });
    }
    expect((await stored(mine.id)).state).toBe("running");
    expect(await leader.failTasksOf("n2", "again")).toBe(0); // finished records are left alone
    // n2 was only paused: its next write finds the record finished, adopts it and aborts the work.
    const seen = running.context()!;
    seen.progress({ done: 2 });
    await until("n2 gives the task up", () => seen.signal.aborted);
    await other.waitLocal(first.id);
    expect(await other.get(first.id)).toMatchObject({ state: "failed", error: { code: "INTERRUPTED", message } });
    expect(await stored(first.id)).toMatchObject({ state: "failed", progress: { done: 1 }, error: { message } });
    // The queued one never starts.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await stored(queued.id)).state).toBe("failed");
    expect(queuedRan).toBe(false);
    expect(await other.get(queued.id)).toMatchObject({ state: "failed", error: { message } });
    own.release();
    await leader.waitLocal(mine.id);
    expect((await stored(mine.id)).state).toBe("succeeded");
  });

  it("keeps a task whose record changed but is unfinished (an earlier write that seemed to fail landed)", async () => {
    const tasks = service("n1");
    await tasks.start();
    const work = gate();
    const started = await tasks.submit({ kind: "test.work", target: "t1", startedBy: "scheduler", unit: "objects", run: work.run });
    await until("the progress is written", async () => (await stored(started.id)).progress.done === 1);
    const landed = { ...(await stored(started.id)), progress: { done: 0, total: 4, unit: "objects", detail: "a late write" } };
    await store.put(taskKey(started.id), Buffer.from(JSON.stringify(landed)));
    work.context()!.progress({ done: 3 });
    await until("the progress is written again", async () => (await stored(started.id)).progress.done === 3);
    expect(work.context()!.signal.aborted).toBe(false);
    work.release();
    await tasks.waitLocal(started.id);
    expect(await stored(started.id)).toMatchObject({ state: "succeeded", result: "released" });
  });

  it("cancels a queued task, a running cancellable one, and one running on another node; refuses the rest", async () => {
    const tasks = service("n1", { runningMax: 1 });
    await tasks.start();
    const first = gate();
    const running = await tasks.submit({ kind: "k", target: "", startedBy: "user:a", unit: "steps", cancellable: true, run: first.run });
    const queued = await tasks.submit({ kind: "k", target: "", startedBy: "user:a", unit: "steps", run: gate().run });
    expect((await tasks.cancel(queued.id, "user:b")).state).toBe("cancelled");
    expect(await stored(queued.id)).toMatchObject({ state: "cancelled", error: { code: "CANCELLED", message: "cancelled by user:b before it started." } });
    await expect(tasks.cancel(queued.id, "user:b")).rejects.toThrow(`task ${queued.id} already cancelled.`);
    await until("running", async () => (await stored(running.id)).state === "running");
    await tasks.cancel(running.id, "user:b");
    await tasks.waitLocal(running.id);
    expect(await stored(running.id)).toMatchObject({ state: "cancelled", error: { code: "CANCELLED", message: "cancelled by user:b." } });

    const stubborn = gate();
    const fixed = await tasks.submit({ kind: "vdisk.rollback", target: "d", startedBy: "user:a", unit: "steps", run: stubborn.run });
    await until("running", async () => (await stored(fixed.id)).state === "running");
    await expect(tasks.cancel(fixed.id, "user:b")).rejects.toThrow(/cannot be cancelled once it runs/);
    stubborn.release();
    await tasks.waitLocal(fixed.id);

    // From another node: the request goes through the store to the node that runs it.
    const remote = gate();
    const far = await tasks.submit({ kind: "k", target: "", startedBy: "user:a", unit: "steps", cancellable: true, run: remote.run });
    await until("running", async () => (await stored(far.id)).state === "running");
    const other = service("n2");
    await other.start();
    await other.cancel(far.id, "user:c");
    await until("cancelled through the store", async () => (await stored(far.id)).state === "cancelled");
    expect((await stored(far.id)).error!.message).toBe("cancelled by user:c.");
    await expect(other.cancel("01a2182a-ca72-7123-8567-89abcdef0123", "user:c")).rejects.toThrow(/there is no task/);
  });

  it("bounds the queue: a task over queuedMax is refused and not recorded", async () => {
    const tasks = service("n1", { runningMax: 1, queuedMax: 2 });
    await tasks.start();
    for (let index = 0; index < 3; index++) await tasks.submit({ kind: "k", target: "", startedBy: "u", unit: "steps", run: gate().run });
    await expect(tasks.submit({ kind: "k", target: "", startedBy: "u", unit: "steps", run: gate().run })).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect((await tasks.list({ limit: 100 })).tasks).toHaveLength(3);
  });

  it("lists newest first with filters and pages, and keeps a bounded history", async () => {
    const tasks = service("n1", { historyMax: 5, trimIntervalMs: 0, historyAgeMs: 10 * 86_400_000 });
    await tasks.start();
    const ids: string[] = [];
    for (let index = 0; index < 4; index++) {
      nowMs += 1000;
      const { record } = await tasks.run({ kind: index % 2 === 0 ? "even" : "odd", target: "", startedBy: "u", unit: "steps", run: async () => { if (index === 3) throw new Error("no"); return index; } });
      ids.push(record.id);
    }
    expect((await tasks.list({ limit: 10 })).tasks.map((t) => t.id)).toEqual([...ids].reverse());
    expect((await tasks.list({ limit: 10, kind: "even" })).tasks.map((t) => t.result)).toEqual([2, 0]);
    expect((await tasks.list({ limit: 10, state: "failed" })).tasks.map((t) => t.id)).toEqual([ids[3]]);
    const page1 = await tasks.list({ limit: 3 });
    expect(page1.more).toBe(true);
    const page2 = await tasks.list({ limit: 3, after: page1.tasks.at(-1)!.id });
    expect([...page1.tasks, ...page2.tasks].map((t) => t.id)).toEqual([...ids].reverse());
    expect(page2.more).toBe(false);
    // Beyond historyMax finished records, the oldest go.
    for (let index = 0; index < 4; index++) {
      nowMs += 1000;
      await tasks.run({ kind: "more", target: "", startedBy: "u", unit: "steps", run: async () => index });
    }
    await tasks.trim(true);
    const left = (await tasks.list({ limit: 100 })).tasks.map((t) => t.id);
    expect(left).toHaveLength(5);
    expect(left).not.toContain(ids[0]);
    // Records older than historyAgeMs go too, but never a running one.
    const work = gate();
    const running = await tasks.submit({ kind: "long", target: "", startedBy: "u", unit: "steps", run: work.run });
    nowMs += 11 * 86_400_000;
    await tasks.trim(true);
    expect((await tasks.list({ limit: 100 })).tasks.map((t) => t.id)).toEqual([running.id]);
    work.release();
  });

  it("stop() aborts running tasks and marks those that do not end INTERRUPTED, queued ones too; no task starts after", async () => {
    const tasks = service("n1", { runningMax: 2 });
    await tasks.start();
    const honours = await tasks.submit({ kind: "k", target: "", startedBy: "u", unit: "steps", cancellable: true, run: gate().run });
    const ignores = await tasks.submit({ kind: "k", target: "", startedBy: "u", unit: "steps", run: () => new Promise<string>(() => undefined) });
    const waiting = await tasks.submit({ kind: "k", target: "", startedBy: "u", unit: "steps", run: async () => 1 });
    await until("running", async () => (await stored(ignores.id)).state === "running" && (await stored(honours.id)).state === "running");
    await tasks.stop();
    for (const id of [honours.id, ignores.id, waiting.id]) expect(await stored(id)).toMatchObject({ state: "failed", error: { code: "INTERRUPTED" } });
    expect((await stored(waiting.id)).error!.message).toBe("node n1 stopped before the task started; start it again if it is still needed.");
    await expect(tasks.submit({ kind: "k", target: "", startedBy: "u", unit: "steps", run: async () => 1 })).rejects.toMatchObject({ code: "CLOSED" });
  });
});
