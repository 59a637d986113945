// Hourly automatic snapshots with the retention of DESIGN.md §6, end to end with a controllable clock:
// a real node's parts in-process (embedded store, local backend, vDisk service, scheduler, task service,
// the REST API listening on 127.0.0.1) — only the clock of the scheduler and its tasks is ours. Over 31
// "days" of hourly slots the test checks, through the API, exactly which snapshots each run kept: one per
// hour for a day, one per day for a week, one per week for 4 weeks; sticky snapshots and the snapshot a
// clone was made from are kept whatever their age; a template is left alone; every run is a task in the
// history.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { EmbeddedStore } from "../../store/index.js";
import { LocalBackend } from "../../backend/index.js";
import { silentLogger } from "../../base/index.js";
import { VDiskService } from "../vdisk-service.js";
import { AuthService } from "../auth/auth-service.js";
import { buildApi } from "../api.js";
import { Scheduler } from "../scheduler/scheduler.js";
import { frameworkTasks } from "../scheduler/tasks.js";
import { snapshotsToDelete, type RetainedSnapshot } from "../scheduler/retention.js";
import { TaskService } from "./task-service.js";
import { autoSnapshotName, autoSnapshotTimeMs } from "./auto-snapshots.js";
import type { TaskRecord } from "./task-record.js";

const hourMs = 3_600_000;
const dayMs = 24 * hourMs;

let dir: string;
let store: EmbeddedStore;
let backend: LocalBackend;
let vdisks: VDiskService;
let tasks: TaskService;
let scheduler: Scheduler;
let app: FastifyInstance;
let baseUrl: string;
let token: string;
let nowMs: number;

interface SnapshotView { name: string; createdAt: string; sticky: boolean; state: string; metadata?: string }

async function api<T>(method: string, pathAndQuery: string, body?: unknown): Promise<{ status: number; body: T }> {
  const response = await fetch(baseUrl + pathAndQuery, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: (text === "" ? undefined : JSON.parse(text)) as T };
}

async function snapshots(vdisk: string): Promise<SnapshotView[]> {
  const { status, body } = await api<{ snapshots: SnapshotView[] }>("GET", `/api/v1/vdisks/${vdisk}/snapshots`);
  expect(status).toBe(200);
  return body.snapshots;
}

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-retention-"));
  store = await EmbeddedStore.open({ dir: path.join(dir, "store") });
  backend = await LocalBackend.open({ dir: path.join(dir, "backend") });
  const log = silentLogger();
  vdisks = new VDiskService({ dataDir: dir, nodeId: "n1", store, backend, log });
  await vdisks.start();
  const auth = new AuthService({ store, log }); // real clock: tokens stay valid while the scheduler's clock runs ahead
  await auth.bootstrap("admin password");
  token = (await auth.issueForPassword("admin", "admin password")).access_token;
  // The clock starts at the next 00:00 UTC after now, so snapshots taken by hand (stamped with the real
  // time by the volume) are a little older than the first automatic one.
  nowMs = Math.ceil(Date.now() / dayMs) * dayMs;
  const now = (): number => nowMs;
  tasks = new TaskService({ store, nodeId: "n1", log, now });
  await tasks.start();
  const health = () => ({ nodeId: "n1", dataDir: dir, store, backend, vdisks: () => vdisks.list(), nbd: () => undefined, alba: {} });
  scheduler = new Scheduler({ store, nodeId: "n1", log, now, tickMs: 3_600_000, taskService: tasks, tasks: frameworkTasks({ auth, health, vdisks }) });
  await scheduler.start();
  app = await buildApi({
    vdisks, store, backend, auth, scheduler, tasks, log, now,
    nodeInfo: () => ({ version: "t", nodeId: "n1", dataDir: dir, store: "s", backend: "b", nbd: { host: "127.0.0.1", port: 1 }, api: { host: "127.0.0.1", port: 0 }, asds: [] }),
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address();
  baseUrl = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
}, 60_000);

afterAll(async () => {
  await app?.close();
  await tasks?.stop();
  await scheduler?.stop();
  await vdisks?.stop();
  await backend?.close();
  await store?.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

describe("vdisk.auto-snapshot with a controllable clock", () => {
  it("keeps exactly 1 per hour for a day, 1 per day for a week, 1 per week for 4 weeks, sticky ones and those with clones, over 31 days", async () => {
    // Only the snapshot task runs (the others are turned off through the API, as an operator would).
    for (const task of ["health.check", "auth.sweep-tokens"]) expect((await api("PUT", `/api/v1/schedule/${task}`, { enabled: false })).status).toBe(200);
    const listed = await api<{ tasks: Array<{ task: string; schedule: unknown; scope: string }> }>("GET", "/api/v1/schedule");
    expect(listed.body.tasks.find((t) => t.task === "vdisk.auto-snapshot")).toMatchObject({ schedule: { intervalSeconds: 3600, offsetSeconds: 0 }, scope: "node" });
    expect((await api("POST", "/api/v1/vdisks", { name: "d1", size: "8M" })).status).toBe(201);
    expect((await api("POST", "/api/v1/vdisks", { name: "tpl", size: "4M" })).status).toBe(201);
    const templated = await api<{ id: string }>("POST", "/api/v1/vdisks/tpl/template"); // a task (202)
    expect(templated.status).toBe(202);
    await tasks.waitLocal(templated.body.id);
    expect((await tasks.get(templated.body.id))?.state).toBe("succeeded");
    const templateSnapshots = await snapshots("tpl");
    expect(templateSnapshots).toHaveLength(1);
    // By hand: one sticky snapshot (kept forever) and one not (it competes in its slot like the others).
    expect((await api("POST", "/api/v1/vdisks/d1/snapshots", { name: "keep-me", sticky: true })).status).toBe(201);
    expect((await api("POST", "/api/v1/vdisks/d1/snapshots", { name: "scratch" })).status).toBe(201);
    let model: RetainedSnapshot[] = (await snapshots("d1")).map((s) => ({ name: s.name, createdAtMs: Date.parse(s.createdAt), sticky: s.sticky, hasClones: false }));

    const startMs = nowMs;
    nowMs = startMs - 1; // the scheduler's first sight of the task: its first run is at the next slot
    await scheduler.tick();
    const endMs = startMs + 31 * dayMs;
    let cloneSnapshot: string | undefined;
    let runs = 0;
    for (nowMs = startMs; nowMs <= endMs; nowMs += hourMs) {
      await scheduler.tick();
      runs++;
      model.push({ name: autoSnapshotName(nowMs), createdAtMs: nowMs, sticky: false, hasClones: false });
      const doomed = new Set(snapshotsToDelete(model, nowMs));
      model = model.filter((s) => !doomed.has(s.name));
      if (nowMs === startMs + dayMs + 7 * hourMs) {
        // A clone of this hour's automatic snapshot, once it is on the backend: that snapshot stays.
        cloneSnapshot = autoSnapshotName(nowMs);
        for (let wait = 0; (await snapshots("d1")).find((s) => s.name === cloneSnapshot)?.state !== "stored"; wait++) {
          expect(wait).toBeLessThan(500);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        expect((await api("POST", "/api/v1/vdisks/d1/clones", { name: "c1", snapshot: cloneSnapshot })).status).toBe(201);
        model.find((s) => s.name === cloneSnapshot)!.hasClones = true;
      }
      if (nowMs % (7 * dayMs) === 0 || nowMs === endMs) {
        // Now and then, and at the end: the API shows exactly the model's snapshots.
        expect((await snapshots("d1")).map((s) => s.name).sort(), new Date(nowMs).toISOString()).toEqual(model.map((s) => s.name).sort());
      }
    }
    expect(runs).toBe(31 * 24 + 1);
    nowMs = endMs;

    // The same result, stated independently of the model: at the end (a run at endMs, 00:00 UTC)...
    const kept = (await snapshots("d1")).filter((s) => s.metadata === "automatic snapshot (ovs scheduler)");
    const ages = kept.map((s) => endMs - autoSnapshotTimeMs(s.name)!);
    // ...the last day: every hour (ages 0 h to 23 h);
    expect(ages.filter((a) => a < dayMs).sort((a, b) => a - b)).toEqual(Array.from({ length: 24 }, (_, h) => h * hourMs));
    // ...the week before: the snapshot of 00:00 today-1 (the only one of that day in this tier) and the
    // last (23:00) of each of the 6 days before it;
    expect(ages.filter((a) => a >= dayMs && a < 7 * dayMs).sort((a, b) => a - b)).toEqual([24, 25, 49, 73, 97, 121, 145].map((h) => h * hourMs));
    // ...the 3 weeks before: one per week slot (Thursday-aligned weeks since the epoch), 3 or 4 of them;
    const weekly = kept.filter((s) => endMs - autoSnapshotTimeMs(s.name)! >= 7 * dayMs && endMs - autoSnapshotTimeMs(s.name)! < 28 * dayMs);
    expect(new Set(weekly.map((s) => Math.floor(autoSnapshotTimeMs(s.name)! / (7 * dayMs)))).size).toBe(weekly.length);
    expect(weekly.length).toBeGreaterThanOrEqual(3);
    expect(weekly.length).toBeLessThanOrEqual(4);
    // ...and nothing older than 4 weeks but the snapshot the clone uses; the sticky one by hand is kept,
    // the other one by hand went with its slot.
    expect(kept.filter((s) => endMs - autoSnapshotTimeMs(s.name)! >= 28 * dayMs).map((s) => s.name)).toEqual([cloneSnapshot]);
    const names = (await snapshots("d1")).map((s) => s.name);
    expect(names).toContain("keep-me");
    expect(names).not.toContain("scratch");
    // The clone has its own automatic snapshots; the template is untouched.
    expect((await snapshots("c1")).filter((s) => endMs - autoSnapshotTimeMs(s.name)! < dayMs)).toHaveLength(24);
    expect(await snapshots("tpl")).toEqual(templateSnapshots);

    // Every run is in the schedule's history and is a task with its progress.
    const history = await api<{ runs: Array<{ task: string; state: string; trigger: string; message: string; taskId: string }> }>("GET", "/api/v1/schedule/history?task=vdisk.auto-snapshot&limit=3");
    expect(history.body.runs).toHaveLength(3);
    const last = history.body.runs[0]!;
    expect(last).toMatchObject({ task: "vdisk.auto-snapshot", state: "SUCCESS", trigger: "schedule" });
    expect(last.message).toMatch(/^2 snapshots taken of 3 vDisks, \d+ deleted by retention$/);
    const task = await api<TaskRecord>("GET", `/api/v1/tasks/${last.taskId}`);
    expect(task.body).toMatchObject({ kind: "schedule.vdisk.auto-snapshot", target: "n1", state: "succeeded", startedBy: "scheduler", progress: { done: 3, total: 3, unit: "vdisks" }, result: last.message });
    expect(task.body.startedAt).toBe(new Date(endMs).toISOString());
  }, 600_000);
});
